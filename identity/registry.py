"""A persistent DID registry with version history, key rotation and deactivation, in SQLite or PostgreSQL.

``DidRegistry(target)`` keeps its versions in one SQLite file (a path or
``sqlite:///path``) or in a PostgreSQL database (``postgresql://...``) that the
fleet's processes share, next to the ledger's tables (identity/registry_db.py).
Every rule below holds the same on both, and the database itself refuses to
rewrite or delete a version.

Rules, so that nobody but a DID's holder or controller can change it:
- genesis: the first document must carry the key the DID was derived from, as
  ``#key-1``, and be signed by it (for a ``did:peaq:0x…``, a secp256k1 key whose
  EVM address is the DID's);
- update or rotation: the new document is signed by the DID's current key or by
  the current key of the controller named in the current version; a rotation
  introduces ``#key-(N+1)``; a did:key, being its own key, never rotates;
- deactivation: a signed ``{"id", "deactivated": true}`` statement, by the same rule.
The registry's clock, not the document, decides when a version takes effect, so
a key's validity window cannot be backdated. Versions are never rewritten.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from identity.canonical import canonicalize
from identity.did import Method, parse_did, split_did_url
from identity.document import controller_of, current_key, key_index
from identity.errors import DidError, ProofError, RegistryError
from identity.proof import proof_of, verify_proof
from identity.registry_db import Executor, VersionTaken, open_backend


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key of a DID and when it was valid: from its version's start until the next rotation."""

    did: str
    key_id: str
    public_key: bytes
    valid_from_ms: int
    valid_until_ms: int | None
    deactivated_at_ms: int | None

    def valid_at(self, ms: int) -> bool:
        """True when this key could sign at time ``ms`` (inside its window, before any deactivation)."""
        if ms < self.valid_from_ms:
            return False
        if self.valid_until_ms is not None and ms >= self.valid_until_ms:
            return False
        return self.deactivated_at_ms is None or ms < self.deactivated_at_ms


@dataclass(frozen=True, slots=True)
class Resolution:
    """A DID resolved at one version: the document and its metadata."""

    did: str
    version: int
    document: dict[str, Any]
    key_id: str | None
    public_key: bytes | None
    valid_from_ms: int
    authorized_by: str
    deactivated: bool


class DidRegistry:
    """DID documents and their history in a SQLite file or a PostgreSQL database; safe to share between threads
    and processes.

    ``target`` is a filesystem path, ``sqlite:///path`` or ``postgresql://user@host:port/database``; ``path``
    is the SQLite file, None on PostgreSQL. Keys are cached in memory; the cache is dropped when another
    process has written, checked at most every ``refresh_interval_s`` by ``key()``.
    """

    def __init__(
        self,
        target: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval_s: float = 0.5,
    ) -> None:
        self._clock = clock
        self._refresh_interval = refresh_interval_s
        self._lock = threading.RLock()
        self._db = open_backend(target)
        self.path: Path | None = self._db.path
        self._keys: dict[str, dict[str, KeyRecord]] = {}
        self._change_marker = self._db.change_marker()
        self._checked_at = time.monotonic()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> DidRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------

    def dids(self) -> list[str]:
        """Every registered DID, sorted."""
        with self._lock:
            return [row[0] for row in self._db.read("SELECT DISTINCT did FROM did_versions ORDER BY did")]

    def __contains__(self, did: object) -> bool:
        with self._lock:
            rows = self._db.read("SELECT 1 FROM did_versions WHERE did = ? LIMIT 1", (did,))
        return bool(rows)

    def history(self, did: str) -> list[Resolution]:
        """Every version of ``did``, oldest first; RegistryError if it was never registered."""
        with self._lock:
            rows = self._db.read(
                "SELECT did, version, document, key_id, public_key, valid_from, authorized_by, deactivated"
                " FROM did_versions WHERE did = ? ORDER BY version",
                (did,),
            )
        if not rows:
            raise _unknown(did)
        return [
            Resolution(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], bool(r[7])) for r in rows
        ]

    def resolve(self, did: str, *, at_ms: int | None = None) -> Resolution:
        """The version of ``did`` in force at ``at_ms`` (default: now)."""
        versions = self.history(did)
        at = self.now_ms() if at_ms is None else at_ms
        in_force = [v for v in versions if v.valid_from_ms <= at]
        if not in_force:
            raise RegistryError(f"{did} was not yet registered at {at}", code="unknown_did")
        return in_force[-1]

    def active(self, did: str) -> Resolution:
        """The latest version of ``did``; RegistryError if it was deactivated."""
        current = self.history(did)[-1]
        if current.deactivated:
            raise RegistryError(f"{did} is deactivated", code="deactivated", hint="register a new DID")
        return current

    def key(self, did: str, key_id: str) -> KeyRecord:
        """The key ``did#key_id`` with its validity window: what a verifier needs for every message."""
        self._maybe_refresh()
        keys = self._keys.get(did)
        if keys is None:
            keys = self._load_keys(did)
        record = keys.get(key_id)
        if record is None:
            raise RegistryError(
                f"{did} has no key {key_id!r}",
                code="unknown_key",
                hint=f"its keys are {', '.join(sorted(keys)) or 'none'}",
            )
        return record

    def now_ms(self) -> int:
        """The registry clock in integer milliseconds since the Unix epoch."""
        return int(self._clock() * 1000)

    # -- writes ----------------------------------------------------------------

    def register(self, document: dict[str, Any]) -> Resolution:
        """Register a new DID from its self-signed genesis document; idempotent for the same document."""
        did = _document_did(document)
        public_key, fragment = _shape(document)
        if key_index(fragment) != 1:
            raise RegistryError(f"a genesis document introduces key-1, not {fragment}", code="genesis_mismatch")
        parsed = parse_did(did)
        if not parsed.derives_from(public_key):
            raise RegistryError(
                f"the genesis key of {did} is not the key the DID was derived from",
                code="genesis_mismatch",
                hint="derive the DID from the key with `depai id did PUBKEY_HEX`" if parsed.address is None
                else "a did:peaq:0x... is the EIP-55 address of its secp256k1 key: keccak256(point)[-20:]",
            )
        method = f"{did}#{fragment}"
        _check_proof(document, public_key, method)
        with self._write() as db:
            existing = db.execute(
                "SELECT document FROM did_versions WHERE did = ? AND version = 1", (did,)
            ).fetchone()
            if existing is not None:
                if canonicalize(json.loads(existing[0])) == canonicalize(document):
                    return self.resolve(did, at_ms=self.now_ms())
                raise _already_registered(did)
            self._insert(db, did, 1, fragment, public_key, document, method, deactivated=False)
        return self.history(did)[0]

    def update(self, document: dict[str, Any]) -> Resolution:
        """Record a new version of a registered DID: a metadata change, or a rotation to ``key-(N+1)``."""
        did = _document_did(document)
        current = self.active(did)
        public_key, fragment = _shape(document)
        new_index, old_index = key_index(fragment), key_index(current.key_id or "")
        if new_index == old_index:
            if public_key != current.public_key:
                raise RegistryError(
                    f"{fragment} already names another key; a new key needs key-{old_index + 1}",
                    code="bad_key_id",
                )
        elif new_index == old_index + 1:
            if parse_did(did).method is Method.KEY:
                raise RegistryError(
                    f"{did} cannot rotate: a did:key is its key",
                    code="not_rotatable",
                    hint="use a did:peaq identity for machines that rotate keys",
                )
            if any(v.public_key == public_key for v in self.history(did)):
                raise RegistryError("a rotation must introduce a key never used by this DID", code="key_reused")
        else:
            raise RegistryError(
                f"the next key of {did} is key-{old_index + 1}, not {fragment}", code="bad_key_id"
            )
        return self._append(did, current, document, public_key, fragment, deactivated=False)

    def deactivate(self, statement: dict[str, Any]) -> Resolution:
        """Deactivate a DID for good with a signed ``{"id": DID, "deactivated": true}`` statement."""
        did = _document_did(statement)
        if statement.get("deactivated") is not True or set(statement) - {"id", "deactivated", "proof"}:
            raise RegistryError(
                'a deactivation statement is exactly {"id": DID, "deactivated": true} plus its proof',
                code="document_malformed",
            )
        current = self.active(did)
        return self._append(did, current, statement, None, None, deactivated=True)

    # -- internals -------------------------------------------------------------

    def _append(
        self,
        did: str,
        current: Resolution,
        document: dict[str, Any],
        public_key: bytes | None,
        fragment: str | None,
        *,
        deactivated: bool,
    ) -> Resolution:
        method = self._authorize(current, document)
        with self._write() as db:
            latest = db.execute("SELECT MAX(version) FROM did_versions WHERE did = ?", (did,)).fetchone()[0]
            if latest != current.version:
                raise _stale_update(did, latest)
            self._insert(db, did, latest + 1, fragment, public_key, document, method, deactivated=deactivated)
        return self.history(did)[-1]

    def _authorize(self, current: Resolution, signed: dict[str, Any]) -> str:
        """Verify ``signed`` was signed by the DID's current key or its controller's; returns the method used."""
        proof = _proof_or_refuse(signed)
        method = proof["verificationMethod"]
        try:
            signer_did, fragment = split_did_url(method)
        except DidError as err:
            raise RegistryError(f"proof names no usable key: {err}", code="unauthorized") from None
        controller = controller_of(current.document)
        if signer_did == current.did:
            if fragment != current.key_id:
                raise RegistryError(
                    f"{method} is not the current key of {current.did} ({current.key_id})",
                    code="unauthorized",
                    hint="sign with the current key; a rotated-out key cannot authorize anything",
                )
            key = current.public_key
        elif signer_did == controller:
            controller_now = self.active(controller)
            if fragment != controller_now.key_id:
                raise RegistryError(f"{method} is not the controller's current key", code="unauthorized")
            key = controller_now.public_key
        else:
            raise RegistryError(
                f"{signer_did} is neither {current.did} nor its controller {controller}",
                code="unauthorized",
            )
        assert key is not None
        _check_proof(signed, key, method)
        return method

    def _insert(
        self,
        db: Executor,
        did: str,
        version: int,
        fragment: str | None,
        public_key: bytes | None,
        document: dict[str, Any],
        method: str,
        *,
        deactivated: bool,
    ) -> None:
        try:
            db.execute(
                "INSERT INTO did_versions (did, version, key_id, public_key, document, valid_from, authorized_by,"
                " deactivated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (did, version, fragment, public_key, canonicalize(document).decode(), self.now_ms(), method,
                 int(deactivated)),
            )
        except VersionTaken:
            if version == 1:
                raise _already_registered(did) from None
            raise _stale_update(did, version) from None
        self._keys.pop(did, None)

    @contextmanager
    def _write(self) -> Iterator[Executor]:
        """A write transaction under the registry lock: the only writer of the versions while it runs."""
        with self._lock, self._db.write() as db:
            yield db

    def _load_keys(self, did: str) -> dict[str, KeyRecord]:
        versions = self.history(did)
        deactivated_at = next((v.valid_from_ms for v in versions if v.deactivated), None)
        starts: dict[str, int] = {}
        ends: dict[str, int] = {}
        keys: dict[str, bytes] = {}
        for version in versions:
            if version.key_id is None or version.public_key is None:
                continue
            if version.key_id not in starts:
                for previous in starts:
                    ends.setdefault(previous, version.valid_from_ms)
                starts[version.key_id] = version.valid_from_ms
                keys[version.key_id] = version.public_key
        records = {
            kid: KeyRecord(did, kid, keys[kid], starts[kid], ends.get(kid), deactivated_at) for kid in starts
        }
        with self._lock:
            self._keys[did] = records
        return records

    def _maybe_refresh(self) -> None:
        """Drop cached keys when another process wrote to the database, checked at most every refresh interval."""
        now = time.monotonic()
        if now - self._checked_at < self._refresh_interval:
            return
        self._checked_at = now
        marker = self._db.change_marker()
        if marker != self._change_marker:
            self._change_marker = marker
            with self._lock:
                self._keys.clear()


def _already_registered(did: str) -> RegistryError:
    return RegistryError(
        f"{did} is already registered",
        code="already_registered",
        hint="update it with a document signed by its current key",
    )


def _stale_update(did: str, latest: int) -> RegistryError:
    return RegistryError(
        f"{did} changed while this update was prepared (now at version {latest})",
        code="stale_update",
        hint="resolve it again and re-sign the update",
    )


def _unknown(did: str) -> RegistryError:
    return RegistryError(
        f"{did} is not in the registry",
        code="unknown_did",
        hint="register it first (depai id new) or check the spelling",
    )


def _document_did(document: dict[str, Any]) -> str:
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        raise RegistryError("a DID document is a JSON object with a string 'id'", code="document_malformed")
    try:
        parse_did(document["id"])
    except DidError as err:
        raise RegistryError(str(err), code=err.code, hint=err.hint) from None
    return document["id"]


def _shape(document: dict[str, Any]) -> tuple[bytes, str]:
    try:
        controller_of(document)
        return current_key(document)
    except DidError as err:
        raise RegistryError(str(err), code=err.code, hint=err.hint) from None


def _proof_or_refuse(document: dict[str, Any]) -> dict[str, Any]:
    try:
        return proof_of(document)
    except ProofError as err:
        raise RegistryError(str(err), code="unauthorized", hint=err.hint) from None


def _check_proof(document: dict[str, Any], public_key: bytes, method: str) -> None:
    proof = _proof_or_refuse(document)
    if proof["verificationMethod"] != method:
        raise RegistryError(
            f"the proof is by {proof['verificationMethod']}, expected {method}", code="unauthorized"
        )
    try:
        verify_proof(document, public_key)
    except ProofError as err:
        raise RegistryError(str(err), code="unauthorized", hint=err.hint) from None
