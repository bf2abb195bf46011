"""The signed envelope: the one message format every process boundary in the fleet uses.

Wire form: RFC 8785 canonical JSON of an object with exactly these members
(in canonical order)::

    body  any JSON value, the message itself
    exp   expiry, integer ms since the Unix epoch
    iat   issued-at, integer ms since the Unix epoch
    iss   issuer DID
    kid   key id within the issuer's DID document (``key-N``)
    kind  message kind, e.g. ``telemetry`` (lowercase, [a-z0-9._-])
    seq   per-issuer sequence number, strictly advancing
    sig   base64url (no padding) 64-byte signature: Ed25519, or ES256K for a did:peaq:0x… issuer
    v     envelope version, 1

The signature covers a domain-separated digest, so a signature made for one kind
can never pass as another, nor as any other use of the same key::

    digest = SHA-256("depai/envelope/v1" || 0x00 || kind || 0x00 || canonical bytes without "sig")

The issuer's key signs the 32 digest bytes as its message: Ed25519 (RFC 8032) signs
them directly; a secp256k1 key signs them with ES256K (identity/secp256k1.py: ECDSA
over SHA-256(digest), r ‖ s, low s). The registered key decides which is checked.

Verification is in one place, ``EnvelopeVerifier.verify``; every refusal is an
``EnvelopeRefused`` whose ``reason`` is a ``Refusal``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import orjson

from identity.canonical import CanonicalError, canonicalize, parse_canonical
from identity.did import parse_did
from identity.errors import DidError, IdentityError, RegistryError
from identity import secp256k1
from identity.keys import Signer, verify
from identity.registry import KeyRecord
from identity.replay import ReplayGuard, ReplayVerdict

ENVELOPE_VERSION = 1
DOMAIN = b"depai/envelope/v1"
MAX_SAFE_INTEGER = 2**53 - 1
DEFAULT_MAX_SIZE = 64 * 1024
_FIELDS = frozenset({"body", "exp", "iat", "iss", "kid", "kind", "seq", "sig", "v"})
_KIND = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_TAIL = b',"v":%d}' % ENVELOPE_VERSION
_SIGNATURE_TEXT_SIZE = 86


class Refusal(StrEnum):
    """Why an envelope was refused: the reason code that metrics and quarantine logs count."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NON_CANONICAL = "non_canonical"
    MALFORMED = "malformed_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    WRONG_KIND = "wrong_kind"
    MALFORMED_DID = "malformed_did"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KEY = "unknown_key"
    DEACTIVATED = "deactivated"
    KEY_ROTATED = "key_rotated"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    EXPIRED = "expired"
    FUTURE_DATED = "future_dated"
    TTL_TOO_LONG = "ttl_too_long"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"
    STALE_SEQUENCE = "stale_sequence"


class EnvelopeRefused(IdentityError):
    """An envelope that failed verification; ``reason`` says which check, ``issuer`` who claimed to send it."""

    def __init__(self, reason: Refusal, message: str, *, issuer: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, code=reason.value, hint=hint)
        self.reason = reason
        self.issuer = issuer


class KeyResolver(Protocol):
    """Where a verifier looks up issuers' keys; the DID registry is one."""

    def key(self, did: str, key_id: str) -> KeyRecord:
        """The key ``did#key_id`` with its validity window; RegistryError if unknown."""
        ...

    def history(self, did: str) -> list[Any]:
        """Every version of ``did``, oldest first (used only to explain a bad signature)."""
        ...


class Envelope(NamedTuple):
    """A verified envelope, with the exact wire bytes it came from (a tuple: cheap to build per message)."""

    kind: str
    issuer: str
    key_id: str
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    body: Any
    signature: bytes
    wire: bytes


def reread(wire: bytes) -> Envelope:
    """An envelope that a verifier this process trusts already checked, read back from its exact wire bytes.

    Only for what arrives on a channel that nobody but that verifier may write (the ingest role's
    ``depai/v1/verified/...``): the shape is checked, the signature, time window and replay are not.
    """
    try:
        obj = orjson.loads(wire)
    except orjson.JSONDecodeError as err:
        raise _refuse(Refusal.MALFORMED_JSON, f"not JSON: {err}") from None
    return EnvelopeVerifier._shape(obj, wire)


def digest(kind: str, unsigned: bytes) -> bytes:
    """The domain-separated SHA-256 digest that the signature of an envelope covers (Ed25519 or ES256K)."""
    return hashlib.sha256(DOMAIN + b"\x00" + kind.encode() + b"\x00" + unsigned).digest()


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 for a 32-byte key, ES256K for a 33-byte compressed secp256k1 key (the only kinds registered)."""
    if len(public_key) == secp256k1.PUBLIC_KEY_SIZE:
        return secp256k1.verify(public_key, message, signature)
    return verify(public_key, message, signature)


def _b64(signature: bytes) -> str:
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# 64 bytes fill 86 base64 characters with 4 bits to spare, which must be zero:
# only these final characters leave them so (RFC 4648, section 3.5, canonical encoding).
_CANONICAL_LAST = frozenset(b"AQgw")


def _unb64_signature(text: str) -> bytes | None:
    """The 64 signature bytes of canonical unpadded base64url ``text``, or None."""
    raw = text.encode("ascii", "replace")
    if len(raw) != _SIGNATURE_TEXT_SIZE or raw.translate(None, _B64URL_ALPHABET) or raw[-1] not in _CANONICAL_LAST:
        return None
    return binascii.a2b_base64(raw.translate(_B64URL_TO_STANDARD) + b"==")


class Sequencer:
    """A per-issuer sequence that advances across restarts without stored state.

    It starts at the wall clock in microseconds and counts up by one, so a robot
    that restarts continues above every number it used before (unless it sent
    more than a million messages a second, or its clock went back). One signer
    cannot outrun it: an Ed25519 signature alone takes tens of microseconds.

    ``clock`` is for tests. Give it the real wall clock, never a simulation's
    (a fleet clock starts near 0 until its epoch is set, and a resumed run may
    set it to a time before the last run's end): session epochs are taken from
    this sequence, and must grow across runs and crashes.
    """

    def __init__(self, start: int | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._next = int(clock() * 1_000_000) if start is None else start
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next sequence number."""
        with self._lock:
            value = self._next
            self._next += 1
        return value


class EnvelopeSigner:
    """Seals messages as one identity: its key, DID, key id and sequence.

    ``clock`` gives the issue time (``iat``) and may be a fleet's simulated clock; the
    sequence is a ``Sequencer`` on the wall clock unless one is given, whatever ``clock`` is,
    so the sequence numbers and session epochs of a restarted signer continue above the old ones.
    """

    def __init__(
        self,
        signer: Signer | secp256k1.Signer,
        did: str,
        key_id: str = "key-1",
        *,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sequencer: Sequencer | None = None,
    ) -> None:
        self.signer = signer
        self.did = did
        self.key_id = key_id
        self.ttl_ms = int(ttl_s * 1000)
        self._clock = clock
        self.sequencer = sequencer or Sequencer()  # the wall clock, not ``clock``: see the class docstring

    def seal(self, kind: str, body: Any, *, ttl_s: float | None = None, seq: int | None = None) -> bytes:
        """The wire bytes of a signed envelope of ``kind`` carrying ``body``."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"message kind {kind!r} must match {_KIND.pattern}")
        issued = int(self._clock() * 1000)
        unsigned = canonicalize(
            {
                "body": body,
                "exp": issued + (self.ttl_ms if ttl_s is None else int(ttl_s * 1000)),
                "iat": issued,
                "iss": self.did,
                "kid": self.key_id,
                "kind": kind,
                "seq": self.sequencer.next() if seq is None else seq,
                "v": ENVELOPE_VERSION,
            }
        )
        signature = self.signer.sign(digest(kind, unsigned))
        return unsigned[: -len(_TAIL)] + b',"sig":"' + _b64(signature).encode() + b'"' + _TAIL


def _bad_numbers(seq: Any, iat: Any, exp: Any) -> str:
    """Which of seq, iat and exp is wrong, for the refusal message."""
    for name, value in (("seq", seq), ("iat", iat), ("exp", exp)):
        if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
            return f"{name} must be an integer in 0..2^53-1, got {value!r}"
    return f"exp {exp} is not after iat {iat}"


def _refuse(reason: Refusal, message: str, issuer: str | None = None, hint: str | None = None) -> EnvelopeRefused:
    return EnvelopeRefused(reason, message, issuer=issuer, hint=hint)


class EnvelopeVerifier:
    """Checks envelopes: size, canonical form, shape, kind, time, issuer key, signature, replay."""

    def __init__(
        self,
        keys: KeyResolver,
        *,
        replay: ReplayGuard | None = None,
        clock: Callable[[], float] = time.time,
        max_size: int = DEFAULT_MAX_SIZE,
        max_skew_s: float = 5.0,
        max_ttl_s: float = 3600.0,
    ) -> None:
        self.keys = keys
        self.replay = replay if replay is not None else ReplayGuard()
        self._clock = clock
        self.max_size = max_size
        self.max_skew_ms = int(max_skew_s * 1000)
        self.max_ttl_ms = int(max_ttl_s * 1000)

    def verify(
        self,
        wire: bytes,
        *,
        kinds: Collection[str] | None = None,
        check: Callable[[Envelope], None] | None = None,
    ) -> Envelope:
        """The verified envelope, recorded against replay; EnvelopeRefused says why not (and nothing changes).

        ``check`` runs the receiver's own checks on the authenticated envelope
        before its sequence number is recorded, so a message it refuses (by
        raising) leaves the replay window as it was.
        """
        envelope = self._authenticate(wire, kinds, now_ms=int(self._clock() * 1000))
        if check is not None:
            seen = self.replay.check(envelope.issuer, envelope.seq)
            if seen is not None:
                raise self._replay_refusal(seen, envelope.issuer, envelope.seq)
            check(envelope)
        verdict = self.replay.accept(envelope.issuer, envelope.seq)
        if verdict is not None:
            raise self._replay_refusal(verdict, envelope.issuer, envelope.seq)
        return envelope

    def verify_archived(self, wire: bytes, *, kinds: Collection[str] | None = None) -> Envelope:
        """Verify a stored envelope as of the time it was issued: no expiry, skew or replay checks."""
        return self._authenticate(wire, kinds, now_ms=None)

    def _authenticate(self, wire: bytes, kinds: Collection[str] | None, now_ms: int | None) -> Envelope:
        if len(wire) > self.max_size:
            raise _refuse(Refusal.OVERSIZED, f"envelope is {len(wire)} bytes; the limit is {self.max_size}")
        try:
            obj = parse_canonical(wire)
        except CanonicalError as err:
            reason = Refusal.MALFORMED_JSON if err.code == "malformed_json" else Refusal.NON_CANONICAL
            raise _refuse(reason, str(err), hint="serialize the envelope with RFC 8785 (JCS)") from None
        envelope = self._shape(obj, wire, kinds)
        issuer = envelope.issuer
        if kinds is not None and envelope.kind not in kinds:
            raise _refuse(Refusal.WRONG_KIND, f"kind {envelope.kind!r} is not accepted here", issuer)
        if now_ms is not None:
            self._check_time(envelope, now_ms)
        record = self._key(issuer, envelope.key_id)
        at = envelope.issued_at_ms
        if record.deactivated_at_ms is not None and at >= record.deactivated_at_ms:
            raise _refuse(Refusal.DEACTIVATED, f"{issuer} was deactivated before this message was issued", issuer)
        if at < record.valid_from_ms:
            raise _refuse(Refusal.KEY_NOT_YET_VALID, f"{envelope.key_id} was not yet in force at iat {at}", issuer)
        if record.valid_until_ms is not None and at >= record.valid_until_ms:
            raise _refuse(
                Refusal.KEY_ROTATED,
                f"{issuer}#{envelope.key_id} was rotated out at {record.valid_until_ms}; this message is newer",
                issuer,
                hint="sign with the DID's current key",
            )
        unsigned = wire[: -len(_TAIL) - _SIGNATURE_TEXT_SIZE - 9] + _TAIL
        if not _verify(record.public_key, digest(envelope.kind, unsigned), envelope.signature):
            raise self._bad_signature(envelope, unsigned)
        return envelope

    @staticmethod
    def _shape(obj: Any, wire: bytes, kinds: Collection[str] | None = None) -> Envelope:
        """The envelope's fields, type-checked; refuses missing, extra or mistyped members."""
        if type(obj) is not dict or obj.keys() != _FIELDS:
            found = set(obj) if type(obj) is dict else set()
            missing, extra = sorted(_FIELDS - found), sorted(found - _FIELDS)
            raise _refuse(
                Refusal.MALFORMED,
                f"an envelope is an object with exactly {sorted(_FIELDS)}; missing {missing}, unexpected {extra}",
            )
        version = obj["v"]
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise _refuse(Refusal.UNSUPPORTED_VERSION, f"envelope version {version!r}; this verifier reads 1")
        issuer, key_id, kind, seq, iat, exp, sig = (
            obj["iss"], obj["kid"], obj["kind"], obj["seq"], obj["iat"], obj["exp"], obj["sig"]
        )
        if type(issuer) is not str or type(key_id) is not str:
            raise _refuse(Refusal.MALFORMED, "iss and kid must be strings")
        if type(kind) is not str or (not (kinds and kind in kinds) and not _KIND.fullmatch(kind)):
            raise _refuse(Refusal.MALFORMED, f"kind {kind!r} must match {_KIND.pattern}", issuer)
        if not (type(seq) is int and type(iat) is int and type(exp) is int
                and 0 <= seq <= MAX_SAFE_INTEGER and 0 <= iat < exp <= MAX_SAFE_INTEGER):
            raise _refuse(Refusal.MALFORMED, _bad_numbers(seq, iat, exp), issuer)
        signature = _unb64_signature(sig) if type(sig) is str else None
        if signature is None:
            raise _refuse(Refusal.MALFORMED, "sig must be 86 characters of canonical unpadded base64url", issuer)
        return Envelope(kind, issuer, key_id, seq, iat, exp, obj["body"], signature, wire)

    def _check_time(self, envelope: Envelope, now_ms: int) -> None:
        issuer = envelope.issuer
        if envelope.issued_at_ms > now_ms + self.max_skew_ms:
            raise _refuse(
                Refusal.FUTURE_DATED,
                f"issued {envelope.issued_at_ms - now_ms} ms in the future (allowed skew {self.max_skew_ms} ms)",
                issuer,
                hint="synchronize the sender's clock (NTP)",
            )
        if now_ms >= envelope.expires_at_ms + self.max_skew_ms:
            raise _refuse(Refusal.EXPIRED, f"expired {now_ms - envelope.expires_at_ms} ms ago", issuer)
        if envelope.expires_at_ms - envelope.issued_at_ms > self.max_ttl_ms:
            raise _refuse(
                Refusal.TTL_TOO_LONG,
                f"lifetime {envelope.expires_at_ms - envelope.issued_at_ms} ms exceeds {self.max_ttl_ms} ms",
                issuer,
            )

    def _key(self, issuer: str, key_id: str) -> KeyRecord:
        try:
            return self.keys.key(issuer, key_id)
        except RegistryError as err:
            if err.code == "unknown_key":
                raise _refuse(Refusal.UNKNOWN_KEY, str(err), issuer) from None
            try:
                parse_did(issuer)
            except DidError as did_err:
                raise _refuse(Refusal.MALFORMED_DID, str(did_err), None, did_err.hint) from None
            raise _refuse(Refusal.UNKNOWN_ISSUER, str(err), issuer, "the issuer must be registered first") from None

    def _bad_signature(self, envelope: Envelope, unsigned: bytes) -> EnvelopeRefused:
        """A bad-signature refusal that names a rotated-out key when that is what signed the message."""
        message_digest = digest(envelope.kind, unsigned)
        for version in self.keys.history(envelope.issuer):
            if version.public_key is None or version.key_id == envelope.key_id:
                continue
            if _verify(version.public_key, message_digest, envelope.signature):
                record = self.keys.key(envelope.issuer, version.key_id)
                if record.valid_until_ms is not None and envelope.issued_at_ms >= record.valid_until_ms:
                    return _refuse(
                        Refusal.KEY_ROTATED,
                        f"signed by {version.key_id}, which was rotated out at {record.valid_until_ms}",
                        envelope.issuer,
                        hint="sign with the DID's current key",
                    )
        return _refuse(
            Refusal.BAD_SIGNATURE,
            f"signature does not verify under {envelope.issuer}#{envelope.key_id}",
            envelope.issuer,
        )

    @staticmethod
    def _replay_refusal(verdict: ReplayVerdict, issuer: str, seq: int) -> EnvelopeRefused:
        if verdict is ReplayVerdict.REPLAYED:
            return _refuse(Refusal.REPLAYED, f"sequence {seq} from {issuer} was already accepted", issuer)
        return _refuse(Refusal.STALE_SEQUENCE, f"sequence {seq} is below the replay window of {issuer}", issuer)
