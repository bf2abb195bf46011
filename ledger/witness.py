"""Witnesses: keep the latest checkpoint of a ledger outside its database and cosign only what extends it.

A witness follows C2SP tlog-witness: for each log (named by its origin) it keeps
the latest checkpoint it verified, and ``Witness.add_checkpoint(note, old_size,
proof)`` cosigns a new one only when the log's own key signed it, ``old_size``
is the size the witness kept, and an RFC 6962 consistency proof shows the new
tree extends the kept one. A smaller tree is a rollback; the same size with
another root, or a proof that does not verify, a fork. The cosignature is a C2SP
tlog-cosignature ``cosignature/v1`` line: the witness's Ed25519 signature over
``cosignature/v1\\ntime <unix seconds>\\n`` and the checkpoint body, written as
``— <name> base64(key ID || uint64 big-endian time || signature)`` with key ID
``SHA-256(name || 0x0A || 0x04 || public key)[:4]``.

Once a checkpoint is witnessed, deleting the ledger's tail together with the
checkpoints that covered it no longer goes unseen: ``witnessed_problems``
compares the database's recomputed roots with what witnesses cosigned.

Nothing here reads the network; the state file is the one thing written, through
a temporary file, fsync and rename, owner-only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from identity.errors import DepaiError
from identity.keys import SIGNATURE_SIZE, Signer, verify
from identity.keystore import write_private
from ledger.checkpoint import (
    SIGNATURE_PREFIX,
    Checkpoint,
    NoteError,
    check_name,
    key_hash,
    open_note,
    parse_signature_line,
    split_note,
    verifier_key,
)
from ledger.merkle import EMPTY_ROOT, ProofError, verify_consistency

COSIGNATURE_V1 = b"\x04"  # the key ID algorithm byte of Ed25519 cosignature/v1 (tlog-cosignature, "Format")
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = 2**63 - 1
MAX_PROOF_HASHES = 63  # tlog-witness: a client sends at most 63 consistency proof lines
MAX_EVIDENCE = 16  # refused checkpoints kept as evidence of a log's misbehaviour
STATE_VERSION = 1


class WitnessError(DepaiError, ValueError):
    """A checkpoint a witness will not cosign; ``code`` says why."""

    code = "witness_refused"


class UntrustedCheckpoint(WitnessError):
    """Not a checkpoint of the witnessed log: another origin, or no signature by a trusted log key
    (tlog-witness answers 404 and 403)."""

    code = "checkpoint_untrusted"


class Conflict(WitnessError):
    """The old size the request builds on is not the size the witness kept (tlog-witness 409, body: ``size``)."""

    code = "witness_conflict"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, hint=f"build on the witness's size {size}: send old size {size} and a "
                                       f"consistency proof from it")
        self.size = size


class Rollback(WitnessError):
    """A checkpoint of a smaller tree than the one the witness kept: the log lost or removed entries."""

    code = "ledger_rollback"


class Fork(WitnessError):
    """A checkpoint that does not extend the kept one: the same size with another root, or a consistency
    proof that does not verify."""

    code = "ledger_fork"


# --- cosignatures (C2SP tlog-cosignature, cosignature/v1) --------------------------------------------------

def cosigner_key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of a cosignature/v1 key: SHA-256(name || 0x0A || 0x04 || public key)[:4]."""
    return key_hash(name, public_key, COSIGNATURE_V1)


def cosigner_key(name: str, public_key: bytes) -> str:
    """The witness's verifier key ``<name>+<hex key ID>+<base64(0x04 || key)>`` (signed-note vkey, type 0x04)."""
    return verifier_key(name, public_key, COSIGNATURE_V1)


def parse_cosigner_key(vkey: str) -> tuple[str, bytes]:
    """(name, public key) of a cosignature/v1 verifier key; NoteError when it is not one or its ID is wrong."""
    parts = vkey.strip().split("+", 2)
    try:
        name, key_id, encoded = parts
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise NoteError(f"{vkey[:60]!r} is not a witness key <name>+<key ID>+<base64 key>") from None
    if raw[:1] != COSIGNATURE_V1 or len(raw) != 33:
        raise NoteError(f"{vkey[:60]!r} is not an Ed25519 cosignature/v1 key (type 0x04, 32 bytes)")
    check_name(name)
    if cosigner_key_hash(name, raw[1:]).hex() != key_id.lower():
        raise NoteError(f"the key ID {key_id} of witness key {name} does not match its key")
    return name, raw[1:]


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: ``cosignature/v1``, ``time <timestamp>``, then the checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"the cosignature time {timestamp} is outside 0..2^63-1")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign(note: str, name: str, sign: Callable[[bytes], bytes], public_key: bytes, timestamp: int) -> str:
    """``note`` (a signed checkpoint) with one more signature line: the cosignature of key ``name`` at
    ``timestamp`` (POSIX seconds) over its body."""
    check_name(name)
    text, _ = split_note(note)
    Checkpoint.parse(text)  # a cosignature vouches for a checkpoint, and for nothing else
    signature = sign(cosignature_message(text, timestamp))
    raw = cosigner_key_hash(name, public_key) + timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    return f"{note}{SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode('ascii')}\n"


def open_cosignature(note: str, name: str, public_key: bytes) -> tuple[str, int]:
    """(checkpoint body, time) of the newest valid cosignature of key ``name`` on ``note``; other keys' lines
    are ignored. NoteError when the key has no cosignature there or one of its lines does not verify."""
    key_id = cosigner_key_hash(name, public_key)
    text, lines = split_note(note)
    times = []
    for line in lines:
        signer, signed_id, raw = parse_signature_line(line)
        if (signer, signed_id) != (name, key_id):
            continue
        if len(raw) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
            raise NoteError(f"the cosignature of {name}+{key_id.hex()} is {len(raw)} bytes, not a time and a signature")
        timestamp = int.from_bytes(raw[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP or not verify(public_key, cosignature_message(text, timestamp),
                                                   raw[TIMESTAMP_SIZE:]):
            raise NoteError(f"invalid cosignature for key {name}+{key_id.hex()}")
        times.append(timestamp)
    if not times:
        raise NoteError(f"the note has no cosignature by witness key {name}+{key_id.hex()}")
    return text, max(times)


def cosignature_lines(note: str) -> list[tuple[str, int]]:
    """(name, time) of each line shaped like a cosignature/v1 (a key ID, a time and a 64-byte signature),
    unverified: for naming a witness whose key the reader does not hold."""
    _, lines = split_note(note)
    found = []
    for line in lines:
        signer, _, raw = parse_signature_line(line)
        if len(raw) == TIMESTAMP_SIZE + SIGNATURE_SIZE:
            found.append((signer, int.from_bytes(raw[:TIMESTAMP_SIZE], "big")))
    return found


def open_checkpoint(note: str, origin: str | None, log_keys: Sequence[bytes]) -> Checkpoint:
    """The checkpoint ``note`` states once one of ``log_keys`` signed it as ``origin`` (None: the note's own
    origin); UntrustedCheckpoint otherwise."""
    try:
        text, _ = split_note(note)
        stated = Checkpoint.parse(text)
    except NoteError as err:
        raise UntrustedCheckpoint(f"not a signed checkpoint: {err}") from None
    if origin is not None and stated.origin != origin:
        raise UntrustedCheckpoint(f"the checkpoint is of log {stated.origin!r}; this witness follows {origin!r}")
    for key in log_keys:
        try:
            return Checkpoint.parse(open_note(note, stated.origin, key))
        except NoteError:
            continue
    keys = ", ".join(key.hex()[:16] + "..." for key in log_keys) or "none"
    raise UntrustedCheckpoint(f"the checkpoint of {stated.origin} is not signed by a trusted key of the ledger "
                              f"({keys})", hint="check the ledger's key (--key, --did) against the one it publishes")


# --- the witness and its state --------------------------------------------------------------------------

@dataclass(frozen=True)
class WitnessState:
    """What a witness keeps of one log: its origin and trusted keys, the latest checkpoint it verified (size,
    root, the log's signed note, the note with its cosignature, when), its own name and public key, and the
    refused checkpoints kept as evidence."""

    origin: str
    log_keys: tuple[bytes, ...]
    name: str
    public_key: bytes
    size: int = 0
    root: bytes = EMPTY_ROOT
    note: str | None = None
    cosigned: str | None = None
    at: int | None = None
    evidence: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The state as JSON (hex for keys and the root)."""
        return {"version": STATE_VERSION, "origin": self.origin, "log_keys": [k.hex() for k in self.log_keys],
                "witness": {"name": self.name, "public_key": self.public_key.hex(),
                            "vkey": cosigner_key(self.name, self.public_key)},
                "size": self.size, "root": self.root.hex(), "note": self.note, "cosigned": self.cosigned,
                "at": self.at, "evidence": list(self.evidence)}

    @classmethod
    def from_json(cls, data: Any) -> WitnessState:
        """The state ``to_json`` wrote; WitnessError when it is not one."""
        try:
            if data["version"] != STATE_VERSION:
                raise WitnessError(f"witness state version {data['version']}; this depai reads {STATE_VERSION}")
            state = cls(origin=str(data["origin"]), log_keys=tuple(bytes.fromhex(k) for k in data["log_keys"]),
                        name=str(data["witness"]["name"]), public_key=bytes.fromhex(data["witness"]["public_key"]),
                        size=int(data["size"]), root=bytes.fromhex(data["root"]), note=data["note"],
                        cosigned=data["cosigned"], at=data["at"], evidence=tuple(data.get("evidence", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if isinstance(err, WitnessError):
                raise
            raise WitnessError(f"not a witness state file: {err!r}", code="witness_state_invalid") from None
        if state.cosigned is not None:  # what the file says it cosigned must be what it cosigned
            try:
                open_cosignature(state.cosigned, state.name, state.public_key)
                checkpoint = open_checkpoint(state.cosigned, state.origin, state.log_keys)
            except (NoteError, WitnessError) as err:
                raise WitnessError(f"the witness state's cosigned checkpoint does not verify: {err}",
                                   code="witness_state_invalid") from None
            if (checkpoint.size, checkpoint.root) != (state.size, state.root):
                raise WitnessError("the witness state's size and root differ from the checkpoint it cosigned",
                                   code="witness_state_invalid")
        return state

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically (temporary file, fsync, rename), readable by its owner only."""
        write_private(Path(path), (json.dumps(self.to_json(), indent=2) + "\n").encode(), replace=True)

    @classmethod
    def load(cls, path: Path) -> WitnessState:
        """The state saved at ``path``; WitnessError when it is not a witness state, OSError when unreadable."""
        try:
            data = json.loads(Path(path).read_text())
        except ValueError:
            raise WitnessError(f"{path} is not a witness state file (not JSON)", code="witness_state_invalid") from None
        return cls.from_json(data)


class Witness:
    """One log's witness: cosigns a checkpoint only if it extends the latest one kept (C2SP tlog-witness)."""

    def __init__(self, signer: Signer, state: WitnessState, *, save: Callable[[WitnessState], None] = lambda s: None,
                 clock: Callable[[], float] = time.time) -> None:
        if signer.public_key != state.public_key:
            raise WitnessError(f"the witness key {signer.public_key.hex()[:16]}... is not the key "
                               f"{state.public_key.hex()[:16]}... this state was cosigned with",
                               code="witness_key_mismatch", hint="use the key file beside the state file")
        self.signer, self.state, self._save, self.clock = signer, state, save, clock
        self._lock = threading.Lock()  # check and persist at once: tlog-witness's rollback race

    @property
    def vkey(self) -> str:
        """The witness's verifier key, to publish so others can check its cosignatures."""
        return cosigner_key(self.state.name, self.signer.public_key)

    def add_checkpoint(self, note: str, old_size: int, proof: Sequence[bytes]) -> str:
        """The cosigned ``note`` once it extends the kept checkpoint from ``old_size`` by ``proof``, after the
        new state is saved. UntrustedCheckpoint, Rollback, Conflict or Fork (kept as evidence) otherwise."""
        with self._lock:
            state = self.state
            checkpoint = open_checkpoint(note, state.origin, state.log_keys)
            if checkpoint.size < state.size:
                raise self._refuse(Rollback(
                    f"the checkpoint is of {checkpoint.size} entries, fewer than the {state.size} this witness "
                    f"cosigned at {_when(state.at)}"), note)
            if old_size != state.size:
                raise Conflict(f"the request builds on size {old_size}, but this witness's latest checkpoint of "
                               f"{state.origin} is of size {state.size}", size=state.size)
            if len(proof) > MAX_PROOF_HASHES:
                raise self._refuse(Fork(f"a consistency proof of {len(proof)} hashes is longer than any tree "
                                        f"needs"), note)
            if checkpoint.size == state.size and checkpoint.root != state.root:
                raise self._refuse(Fork(
                    f"two checkpoints of {checkpoint.size} entries with different roots: "
                    f"{checkpoint.root.hex()} now, {state.root.hex()} cosigned at {_when(state.at)}"), note)
            try:
                verify_consistency(state.size, checkpoint.size, state.root, checkpoint.root, proof)
            except ProofError as err:
                raise self._refuse(Fork(f"the checkpoint of {checkpoint.size} entries does not extend the one of "
                                        f"{state.size} cosigned at {_when(state.at)}: {err}"), note) from None
            at = int(self.clock())
            cosigned = cosign(note, state.name, self.signer.sign, self.signer.public_key, at)
            updated = replace(state, size=checkpoint.size, root=checkpoint.root, note=note, cosigned=cosigned, at=at)
            self._save(updated)  # persisted before it is answered
            self.state = updated
            return cosigned

    def _refuse(self, error: WitnessError, note: str) -> WitnessError:
        """Keep a log-signed checkpoint that failed the checks (it proves the log misbehaved), then the error."""
        state = self.state
        if len(state.evidence) < MAX_EVIDENCE and all(e["note"] != note for e in state.evidence):
            record = {"code": error.code, "message": str(error), "note": note, "at": int(self.clock())}
            updated = replace(state, evidence=(*state.evidence, record))
            self._save(updated)
            self.state = updated
        return error


# --- checking a database against what witnesses saw -------------------------------------------------------

@dataclass(frozen=True)
class Witnessed:
    """A checkpoint the ledger's key signed and a witness cosigned: who (``verified``: its cosignature was
    checked against its key), when, and where it was read."""

    witness: str
    size: int
    root: bytes
    at: int | None
    note: str
    source: str
    verified: bool

    @classmethod
    def from_note(cls, note: str, log_keys: Sequence[bytes], source: str, *,
                  witness_key: tuple[str, bytes] | None = None) -> Witnessed:
        """The witnessed checkpoint a cosigned note states. The ledger's signature must verify under one of
        ``log_keys`` (UntrustedCheckpoint); with ``witness_key`` (name, public key) so must the cosignature
        (NoteError), else the witness is named from its cosignature line, unverified."""
        checkpoint = open_checkpoint(note, None, log_keys)
        if witness_key is not None:
            _, at = open_cosignature(note, *witness_key)
            return cls(witness_key[0], checkpoint.size, checkpoint.root, at, note, source, True)
        lines = cosignature_lines(note)
        if not lines:
            raise WitnessError(f"the checkpoint from {source} carries no witness's cosignature", code="not_witnessed",
                               hint="give a witness's state file or the /checkpoint URL of `depai ledger witness "
                                    "--listen`")
        name, at = max(lines, key=lambda line: line[1])
        return cls(name, checkpoint.size, checkpoint.root, at, note, source, False)

    @classmethod
    def from_state(cls, state: WitnessState, source: str, log_keys: Sequence[bytes]) -> Witnessed:
        """The latest checkpoint a witness's state file holds, checked against ``log_keys`` (not the keys the
        state trusts) and the witness's own key."""
        if state.cosigned is None:
            raise WitnessError(f"the witness at {source} has not cosigned a checkpoint yet", code="nothing_witnessed",
                               hint="run `depai ledger witness` against the fleet first")
        return cls.from_note(state.cosigned, log_keys, source, witness_key=(state.name, state.public_key))

    def describe(self) -> str:
        """``witness W cosigned a checkpoint of N entries (root R) at T``."""
        checked = "" if self.verified else " (its cosignature unchecked: no witness key)"
        return (f"witness {self.witness}{checked} cosigned a checkpoint of {self.size} entries "
                f"(root {self.root.hex()}) at {_when(self.at)}")


def witnessed_problems(root_at: Callable[[int], bytes | None], size: int, witnessed: Iterable[Witnessed]) -> list[str]:
    """What the database contradicts of what witnesses saw. ``root_at(n)``: the RFC 6962 root of the database's
    first n entries, recomputed (None, or an exception, when it holds fewer); ``size``: how many it holds."""
    problems = []
    for seen in witnessed:
        actual = None
        if size >= seen.size:
            try:
                actual = root_at(seen.size)
            except (DepaiError, ValueError, IndexError):
                actual = None
        if actual is None:
            problems.append(f"the ledger was truncated or rolled back: {seen.describe()}; the database holds {size}")
        elif actual != seen.root:
            problems.append(f"the ledger forked: the first {seen.size} entries hash to {actual.hex()} but "
                            f"{seen.describe()}")
    return problems


def _when(at: int | None) -> str:
    """A cosignature time in UTC, ISO 8601."""
    if at is None:
        return "an unknown time"
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
