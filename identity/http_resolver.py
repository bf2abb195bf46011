"""DIDs resolved over HTTP (the W3C DID Resolution HTTP binding), for a verifier on a machine without the registry.

``HttpResolver("http://fleet:8080")`` reads ``GET {base}/1.0/identifiers/{did}/history``
(every version of a DID, oldest first, each with its ``versionTime``) and offers
what ``EnvelopeVerifier`` needs from a registry: ``key(did, key_id)``, a
``KeyRecord`` with the window in which that key could sign, ``history(did)``
and ``active(did)``. A signature made before a rotation still verifies; one by
a retired key after its window is refused, as with the registry itself.

The resolver is not trusted. Every version's proof is checked as the registry
checked it when it was written: the genesis document is self-signed by the key
the DID was derived from, and each later version (an update, a rotation, a
deactivation) by the DID's key of the version before, or by its controller's
key of that time (the controller resolved the same way). A resolver can only
withhold the newest versions, never invent a key; the cache TTL bounds how long
a rotation or deactivation may go unseen.

Caching: a DID's history is kept ``ttl_s`` seconds. A key id it does not know
makes it fetch again at once, so a rotation is followed from the first message
signed with the new key (made-up key ids get one fetch per ``min_refetch_s``
per DID, and an unknown DID is remembered as unknown that long). When the
resolver cannot be reached, a history fetched less than ``max_stale_s`` ago is
used; after that, lookups fail with ``resolver_unreachable``.

``versionTime`` is an XML Schema dateTime in UTC; milliseconds (``.123Z``) keep
the windows exact. With whole seconds, a rotation's time is known only to the
second: the new key counts from the start of that second and the old one until
its end, both sides of the uncertainty accepted.

Every failure is a ``ResolverError`` (a ``RegistryError``, so a verifier
refuses the message as ``unknown_issuer`` or ``unknown_key``), with a code:
``unknown_did``, ``unknown_key``, ``deactivated``, ``resolver_unreachable``,
``resolver_malformed`` or ``history_invalid``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from identity.did import parse_did, split_did_url
from identity.document import controller_of, current_key, key_index
from identity.errors import DidError, ProofError, RegistryError
from identity.proof import proof_of, verify_proof
from identity.registry import KeyRecord, Resolution

MAX_CONTROLLER_DEPTH = 4  # a controller's controller's ... : deeper than a fleet ever nests
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:Z|\+00:00)")


class ResolverError(RegistryError):
    """A DID that could not be resolved over HTTP, or whose history does not hold together; ``code`` says which."""

    code = "resolver_error"


@dataclass(frozen=True, slots=True)
class _Held:
    """One DID's verified history, its keys, and when it was fetched (monotonic seconds)."""

    versions: list[Resolution]
    keys: dict[str, KeyRecord]
    fetched_at: float


class HttpResolver:
    """The registry interface a verifier uses, over a fleet's HTTP DID resolver, with a short cache.

    ``base_url`` is where the resolver is served (``http://host:port``; its ``/1.0/identifiers/...`` routes).
    ``verify_history=False`` skips checking the versions' proofs (only for a resolver you run yourself).
    ``opener`` replaces ``urllib.request.urlopen``; ``clock`` is the wall clock of ``now_ms`` and ``monotonic``
    the cache's (both for tests).
    """

    def __init__(self, base_url: str, *, ttl_s: float = 5.0, min_refetch_s: float = 1.0, max_stale_s: float = 60.0,
                 timeout_s: float = 5.0, verify_history: bool = True,
                 opener: Callable[..., Any] | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ResolverError(f"resolver URL {base_url!r} is not http(s)://host[:port]", code="resolver_malformed",
                                hint="give the fleet's dashboard address, e.g. http://fleet.example:8080")
        self.base_url = base_url.rstrip("/")
        self.ttl_s, self.min_refetch_s, self.max_stale_s = ttl_s, min_refetch_s, max_stale_s
        self.timeout_s, self.verify_history = timeout_s, verify_history
        self._open = opener or urllib.request.urlopen
        self._clock, self._monotonic = clock, monotonic
        self._lock = threading.RLock()
        self._held: dict[str, _Held] = {}
        self._missing: dict[str, tuple[float, ResolverError]] = {}  # DID -> (when, why): unknown DIDs, briefly
        self._forced: dict[str, float] = {}  # DID -> when an unknown key id last made it fetch again
        self._resolving = threading.local()
        self.fetches = 0  # HTTP requests made: what the cache saves

    def close(self) -> None:
        """Forget what is cached (there is no connection to close)."""
        with self._lock:
            self._held.clear()
            self._missing.clear()

    def __enter__(self) -> HttpResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the registry interface ------------------------------------------------

    def key(self, did: str, key_id: str) -> KeyRecord:
        """The key ``did#key_id`` with its validity window; fetched again at once when the key id is new."""
        held = self._get(did)
        record = held.keys.get(key_id)
        if record is None:
            now = self._monotonic()
            with self._lock:
                due = now - self._forced.get(did, -math.inf) >= self.min_refetch_s
                if due:
                    self._forced[did] = now
            if due:  # perhaps a rotation the cache has not seen yet (made-up key ids: one fetch a period)
                held = self._get(did, force=True)
                record = held.keys.get(key_id)
        if record is None:
            raise ResolverError(f"{did} has no key {key_id!r}", code="unknown_key",
                                hint=f"its keys are {', '.join(sorted(held.keys)) or 'none'}")
        return record

    def history(self, did: str) -> list[Resolution]:
        """Every version of ``did``, oldest first, each checked against the one before."""
        return list(self._get(did).versions)

    def resolve(self, did: str, *, at_ms: int | None = None) -> Resolution:
        """The version of ``did`` in force at ``at_ms`` (default: now)."""
        at = self.now_ms() if at_ms is None else at_ms
        in_force = [v for v in self.history(did) if v.valid_from_ms <= at]
        if not in_force:
            raise ResolverError(f"{did} was not yet registered at {at}", code="unknown_did")
        return in_force[-1]

    def active(self, did: str) -> Resolution:
        """The latest version of ``did``; ResolverError (``deactivated``) if it was deactivated."""
        current = self.history(did)[-1]
        if current.deactivated:
            raise ResolverError(f"{did} is deactivated", code="deactivated")
        return current

    def __contains__(self, did: object) -> bool:
        if not isinstance(did, str):
            return False
        try:
            self._get(did)
        except ResolverError as err:
            if err.code == "unknown_did":
                return False
            raise
        return True

    def now_ms(self) -> int:
        """This machine's clock in integer milliseconds since the Unix epoch."""
        return int(self._clock() * 1000)

    def refresh(self, did: str) -> list[Resolution]:
        """Fetch ``did``'s history now, whatever the cache holds."""
        return list(self._get(did, force=True).versions)

    # -- fetching and checking -------------------------------------------------

    def _get(self, did: str, *, force: bool = False) -> _Held:
        now = self._monotonic()
        with self._lock:
            held = self._held.get(did)
            if held is not None and not force and now - held.fetched_at < self.ttl_s:
                return held
            missing = self._missing.get(did)
            if held is None and missing is not None and now - missing[0] < self.min_refetch_s:
                raise missing[1]
        try:
            fresh = self._fetch(did)
        except ResolverError as err:
            with self._lock:
                if err.code == "unknown_did":
                    self._held.pop(did, None)
                    self._missing[did] = (self._monotonic(), err)
                    raise
                if err.code == "resolver_unreachable" and held is not None \
                        and self._monotonic() - held.fetched_at < self.max_stale_s:
                    return held  # the resolver is away for a moment: what we had is still the best we know
            raise
        with self._lock:
            self._missing.pop(did, None)
            self._held[did] = fresh
        return fresh

    def _fetch(self, did: str) -> _Held:
        try:
            parse_did(did)
        except DidError as err:
            raise ResolverError(str(err), code=err.code, hint=err.hint) from None
        data = self._request(f"/1.0/identifiers/{urllib.parse.quote(did, safe=':')}/history", did)
        if not isinstance(data, dict) or data.get("did", did) != did or not isinstance(data.get("versions"), list) \
                or not data["versions"]:
            raise ResolverError(f"the resolver's history of {did} is not {{did, versions: [...]}}",
                                code="resolver_malformed")
        depth = getattr(self._resolving, "stack", ())
        if did in depth or len(depth) >= MAX_CONTROLLER_DEPTH:
            raise ResolverError(f"{did}'s controllers go round in a circle or nest too deep: {' -> '.join(depth)}",
                                code="history_invalid")
        self._resolving.stack = (*depth, did)
        try:
            versions, coarse = self._versions(did, data["versions"])
        finally:
            self._resolving.stack = depth
        return _Held(versions, _key_records(did, versions, coarse), self._monotonic())

    def _request(self, path: str, did: str) -> Any:
        url = self.base_url + path
        request = urllib.request.Request(url, headers={"Accept": "application/did-resolution, application/json"})
        self.fetches += 1
        try:
            with self._open(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as err:
            err.close()  # it holds the response's socket
            if err.code in (404, 410):
                raise ResolverError(f"{did} is not known to the resolver at {self.base_url}", code="unknown_did",
                                    hint="enroll it with the fleet first, or check the spelling") from None
            raise ResolverError(f"the resolver at {self.base_url} answered {err.code} for {did}",
                                code="resolver_unreachable", hint="try again; check the fleet is up") from None
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise ResolverError(f"cannot reach the resolver at {self.base_url}: {reason}",
                                code="resolver_unreachable",
                                hint="check the fleet's address (--fleet) and the network") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise ResolverError(f"the resolver's answer for {did} exceeds {MAX_RESPONSE_BYTES} bytes",
                                code="resolver_malformed")
        try:
            return json.loads(body)
        except ValueError:
            raise ResolverError(f"the resolver's answer for {did} is not JSON", code="resolver_malformed") from None

    def _versions(self, did: str, raw: list[Any]) -> tuple[list[Resolution], set[int]]:
        """The versions as Resolutions, each checked against the one before (its proof, its key's succession)."""
        versions: list[Resolution] = []
        coarse: set[int] = set()  # versions whose time is given in whole seconds
        for number, entry in enumerate(raw, start=1):
            if not isinstance(entry, dict) or str(entry.get("versionId")) != str(number) \
                    or not isinstance(entry.get("didDocument"), dict):
                raise ResolverError(f"version {number} of {did} is missing or out of order",
                                    code="resolver_malformed")
            document = entry["didDocument"]
            at_ms, exact = _parse_time(entry.get("versionTime"))
            if not exact:
                coarse.add(number)
            deactivated = entry.get("deactivated") is True or document.get("deactivated") is True
            if document.get("id") != did:
                raise ResolverError(f"version {number} of {did} is the document of {document.get('id')!r}",
                                    code="history_invalid")
            previous = versions[-1] if versions else None
            if previous is not None:
                if previous.deactivated:
                    raise ResolverError(f"{did} has versions after its deactivation", code="history_invalid")
                if at_ms < previous.valid_from_ms:
                    raise ResolverError(f"version {number} of {did} is older than the one before",
                                        code="history_invalid")
            key_id: str | None = None
            public_key: bytes | None = None
            if not deactivated:
                try:
                    public_key, key_id = current_key(document)
                    controller_of(document)
                except DidError as err:
                    raise ResolverError(f"version {number} of {did}: {err}", code="history_invalid") from None
                _check_succession(did, number, previous, key_id, public_key)
            authorized_by = self._check_proof(did, number, document, previous, at_ms, key_id, public_key)
            versions.append(Resolution(did, number, document, key_id, public_key, at_ms, authorized_by,
                                       deactivated))
        return versions, coarse

    def _check_proof(self, did: str, number: int, document: dict[str, Any], previous: Resolution | None,
                     at_ms: int, key_id: str | None, public_key: bytes | None) -> str:
        """Who signed version ``number``, after checking it was someone allowed to; the proof's method."""
        try:
            method = proof_of(document)["verificationMethod"]
        except ProofError as err:
            if not self.verify_history:
                return ""
            raise ResolverError(f"version {number} of {did} carries no valid proof: {err}",
                                code="history_invalid") from None
        if not self.verify_history:
            return method
        try:
            signer, fragment = split_did_url(method)
        except DidError:
            raise ResolverError(f"version {number} of {did} is signed by {method!r}, not a key",
                                code="history_invalid") from None
        if previous is None:  # genesis: self-signed by the key the DID was derived from
            if public_key is None or not _derives(did, public_key) or method != f"{did}#{key_id}":
                raise ResolverError(f"the first version of {did} is not self-signed by the key it was derived from",
                                    code="history_invalid")
            key = public_key
        elif signer == did:  # the DID's own key of the version before
            if fragment != previous.key_id:
                raise ResolverError(f"version {number} of {did} is signed by {fragment}, not its key then "
                                    f"({previous.key_id})", code="history_invalid")
            key = previous.public_key
        elif signer == controller_of(previous.document):  # its controller's key of that time
            record = self.key(signer, fragment)
            if not _held_around(record, at_ms):
                raise ResolverError(f"version {number} of {did} is signed by {method}, which was not the "
                                    f"controller's key at {at_ms}", code="history_invalid")
            key = record.public_key
        else:
            raise ResolverError(f"version {number} of {did} is signed by {signer}, neither {did} nor its "
                                f"controller", code="history_invalid")
        assert key is not None
        try:
            verify_proof(document, key)
        except ProofError as err:
            raise ResolverError(f"version {number} of {did}: {err}", code="history_invalid") from None
        return method


def parse_time(text: Any) -> int:
    """Milliseconds since the epoch of an XML Schema dateTime in UTC (``2026-09-21T14:13:20.123Z``)."""
    return _parse_time(text)[0]


def _parse_time(text: Any) -> tuple[int, bool]:
    """The milliseconds of ``text``, and whether it was given to the millisecond (False: whole seconds)."""
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ResolverError(f"versionTime {text!r} is not a UTC dateTime like 2026-09-21T14:13:20Z",
                            code="resolver_malformed")
    seconds = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    fraction = match.group(2)
    return int(seconds) * 1000 + int((fraction or "").ljust(3, "0")[:3]), fraction is not None


def _derives(did: str, public_key: bytes) -> bool:
    """Whether ``did`` is the DID of ``public_key`` (a 0x did:peaq holds only its key's address)."""
    parsed = parse_did(did)
    derives_from = getattr(parsed, "derives_from", None)
    return derives_from(public_key) if derives_from is not None else parsed.public_key == public_key


def _check_succession(did: str, number: int, previous: Resolution | None, key_id: str,
                      public_key: bytes) -> None:
    """A version keeps the key of the one before, or rotates to the next key-N with a key never used before."""
    if previous is None:
        if key_id != "key-1":
            raise ResolverError(f"the first version of {did} introduces {key_id}, not key-1", code="history_invalid")
        return
    old, new = key_index(previous.key_id or "key-0"), key_index(key_id)
    if new == old and public_key != previous.public_key:
        raise ResolverError(f"version {number} of {did} gives {key_id} another key", code="history_invalid")
    if new not in (old, old + 1):
        raise ResolverError(f"version {number} of {did} jumps from key-{old} to {key_id}", code="history_invalid")


def _held_around(record: KeyRecord, at_ms: int, slack_ms: int = 999) -> bool:
    """Whether ``record`` was its DID's key at ``at_ms``, give or take a second (versionTime may be whole seconds)."""
    if at_ms + slack_ms < record.valid_from_ms:
        return False
    if record.deactivated_at_ms is not None and at_ms >= record.deactivated_at_ms + slack_ms:
        return False
    return record.valid_until_ms is None or at_ms < record.valid_until_ms + slack_ms


def _key_records(did: str, versions: list[Resolution], coarse: set[int]) -> dict[str, KeyRecord]:
    """Each key of ``did`` with its window: from the version that introduced it to the one that replaced it.

    A version whose time is in ``coarse`` (whole seconds) is known only to the second: what it ends (the old
    key's window, or every key at a deactivation) then ends with that second, not at its start.
    """
    def end(version: Resolution) -> int:
        return version.valid_from_ms + (999 if version.version in coarse else 0)

    deactivated_at = next((end(v) for v in versions if v.deactivated), None)
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    keys: dict[str, bytes] = {}
    for version in versions:
        if version.key_id is None or version.public_key is None or version.key_id in starts:
            continue
        for previous in starts:
            ends.setdefault(previous, end(version))
        starts[version.key_id] = version.valid_from_ms
        keys[version.key_id] = version.public_key
    return {kid: KeyRecord(did, kid, keys[kid], starts[kid], ends.get(kid), deactivated_at) for kid in starts}
