"""DIDs resolved over HTTP: key windows from the version history, rotations followed, a lying resolver caught.

``ResolverServer`` is a small stand-in of the fleet's resolver (the W3C DID Resolution HTTP binding the
dashboard serves): ``GET /1.0/identifiers/{did}`` and ``.../history`` from a real DidRegistry, over a real
socket. ``rewrite`` lets a test make it lie; ``routes`` serves more JSON (a fleet descriptor).
tests/robots/test_js_robot.py uses it too.
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from identity.did import did_peaq
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from identity.errors import DepaiError, RegistryError
from identity.http_resolver import HttpResolver, ResolverError, parse_time
from identity.keys import Signer
from identity.lifecycle import create_identity, current_method, deactivate_identity, rotate_key
from identity.proof import add_proof
from identity.registry import DidRegistry, Resolution
from tests.conftest import ManualClock

History = dict[str, Any]


def version_time(ms: int, *, whole_seconds: bool = False) -> str:
    """An XML Schema dateTime in UTC, with milliseconds unless ``whole_seconds``."""
    from datetime import UTC, datetime
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}Z" if whole_seconds else f"{text}.{ms % 1000:03d}Z"


def history_json(versions: list[Resolution], *, whole_seconds: bool = False) -> History:
    """A DID's history as the resolver serves it."""
    return {"did": versions[0].did, "versions": [
        {"versionId": str(v.version), "versionTime": version_time(v.valid_from_ms, whole_seconds=whole_seconds),
         "didDocument": v.document, "deactivated": v.deactivated} for v in versions]}


class ResolverServer:
    """The resolver routes over a registry, on 127.0.0.1:any port, in a thread; ``requests`` counts them."""

    def __init__(self, registry: DidRegistry, *, whole_seconds: bool = False) -> None:
        self.registry, self.whole_seconds = registry, whole_seconds
        self.rewrite: Callable[[str, History], History] = lambda _did, body: body
        self.routes: dict[str, Callable[[], Any]] = {}  # more paths to serve: path -> the JSON body, or bytes (200)
        self.requests: list[str] = []
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                status, body = server.answer(self.path)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    def answer(self, path: str) -> tuple[int, Any]:
        if self.down:
            return 503, {"error": "down"}
        parts = urllib.parse.urlsplit(path)
        if parts.path in self.routes:
            return 200, self.routes[parts.path]()
        prefix = "/1.0/identifiers/"
        if not parts.path.startswith(prefix):
            return 404, {"error": "notFound"}
        rest = urllib.parse.unquote(parts.path[len(prefix):])
        did, _, tail = rest.partition("/")
        if did not in self.registry:
            return 404, {"didResolutionMetadata": {"error": "notFound"}}
        body = self.rewrite(did, history_json(self.registry.history(did), whole_seconds=self.whole_seconds))
        if tail == "history":
            return 200, body
        wanted = urllib.parse.parse_qs(parts.query).get("versionId", [None])[0]
        entry = next((v for v in body["versions"] if v["versionId"] == wanted), None) if wanted \
            else body["versions"][-1]
        if entry is None:
            return 404, {"didResolutionMetadata": {"error": "notFound"}}
        return 200, {"didDocument": entry["didDocument"], "didResolutionMetadata": {"contentType": "application/did+json"},
                     "didDocumentMetadata": {k: entry[k] for k in ("versionId", "versionTime", "deactivated")}}

    def __enter__(self) -> ResolverServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


class Monotonic:
    """The resolver's cache clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(registry: DidRegistry) -> Iterator[ResolverServer]:
    with ResolverServer(registry) as server:
        yield server


@pytest.fixture
def tick() -> Monotonic:
    return Monotonic()


@pytest.fixture
def resolver(served: ResolverServer, clock: ManualClock, tick: Monotonic) -> HttpResolver:
    return HttpResolver(served.url, ttl_s=5.0, min_refetch_s=1.0, clock=clock, monotonic=tick)


def refusal(verifier: EnvelopeVerifier, wire: bytes) -> str:
    with pytest.raises(EnvelopeRefused) as caught:
        verifier.verify(wire)
    return caught.value.reason.value


def code_of(action: Callable[[], object]) -> str:
    with pytest.raises(ResolverError) as caught:
        action()
    assert isinstance(caught.value, RegistryError) and isinstance(caught.value, DepaiError)
    return caught.value.code


def test_keys_come_with_the_registrys_windows_and_the_history_matches(registry: DidRegistry, clock: ManualClock,
                                                                     resolver: HttpResolver) -> None:
    old, new = Signer.generate(), Signer.generate()
    did = create_identity(registry, old).did
    clock.advance(10)
    rotate_key(registry, did, new.public_key, old, current_method(registry, did))
    for key_id in ("key-1", "key-2"):
        assert resolver.key(did, key_id) == registry.key(did, key_id)  # the same windows, to the millisecond
    assert resolver.history(did) == registry.history(did)
    assert resolver.active(did) == registry.active(did) and resolver.active(did).key_id == "key-2"
    assert resolver.resolve(did, at_ms=registry.history(did)[0].valid_from_ms).key_id == "key-1"
    assert did in resolver and did_peaq(Signer.generate().public_key) not in resolver


def test_a_message_signed_before_a_rotation_verifies_and_one_by_the_retired_key_after_it_is_refused(
        registry: DidRegistry, clock: ManualClock, resolver: HttpResolver, tick: Monotonic) -> None:
    old, new = Signer.generate(), Signer.generate()
    did = create_identity(registry, old).did
    verifier = EnvelopeVerifier(resolver, clock=clock)
    clock.advance(1)
    before = EnvelopeSigner(old, did, "key-1", clock=clock).seal("task", {"n": 1})
    assert verifier.verify(before).issuer == did
    clock.advance(1)
    rotate_key(registry, did, new.public_key, old, current_method(registry, did))
    clock.advance(1)
    retired = EnvelopeSigner(old, did, "key-1", clock=clock).seal("task", {"n": 2})
    current = EnvelopeSigner(new, did, "key-2", clock=clock).seal("task", {"n": 3})
    assert verifier.verify(current).body == {"n": 3}  # key-2 is new to the cache: fetched again at once
    assert refusal(verifier, retired) == "key_rotated"
    assert verifier.verify_archived(before).body == {"n": 1}  # still verifiable after the rotation
    forged = EnvelopeSigner(new, did, "key-1", clock=clock).seal("task", {"n": 4})  # new key, old key id
    assert refusal(verifier, forged) == "key_rotated"  # the explanation comes from the resolved history


def test_the_cache_saves_requests_and_a_rotation_is_seen_within_its_ttl(
        registry: DidRegistry, clock: ManualClock, served: ResolverServer, resolver: HttpResolver,
        tick: Monotonic) -> None:
    old, new = Signer.generate(), Signer.generate()
    did = create_identity(registry, old).did
    for _ in range(20):
        resolver.key(did, "key-1")
    assert resolver.fetches == 1
    rotate_key(registry, did, new.public_key, old, current_method(registry, did))
    assert resolver.key(did, "key-1").valid_until_ms is None  # cached: not seen yet
    tick.now += 5.0  # the TTL passes
    assert resolver.key(did, "key-1").valid_until_ms == registry.key(did, "key-1").valid_until_ms
    assert resolver.fetches == 2


def test_unknown_key_ids_and_dids_are_refused_and_do_not_flood_the_resolver(
        registry: DidRegistry, clock: ManualClock, served: ResolverServer, resolver: HttpResolver,
        tick: Monotonic) -> None:
    signer = Signer.generate()
    did = create_identity(registry, signer).did
    verifier = EnvelopeVerifier(resolver, clock=clock)
    assert refusal(verifier, EnvelopeSigner(signer, did, "key-7", clock=clock).seal("task", {})) == "unknown_key"
    for n in range(10):  # a sender making up key ids: at most one fetch per DID per second
        assert code_of(lambda: resolver.key(did, f"key-{n + 8}")) == "unknown_key"
    stranger = Signer.generate()
    wire = EnvelopeSigner(stranger, did_peaq(stranger.public_key), clock=clock).seal("task", {})
    assert refusal(verifier, wire) == "unknown_issuer"
    for _ in range(10):
        assert code_of(lambda: resolver.key(did_peaq(stranger.public_key), "key-1")) == "unknown_did"
    assert resolver.fetches == 3  # the robot's history, once more for the first unknown key id; the stranger's
    tick.now += 1.0
    assert code_of(lambda: resolver.key(did, "key-9")) == "unknown_key" and resolver.fetches == 4
    assert code_of(lambda: resolver.key("did:peaq:nonsense", "key-1")) == "ss58_length"  # the DID's own error
    assert resolver.fetches == 4  # and nothing was asked for it


def test_a_rotation_by_the_controller_is_followed_and_checked_against_the_controllers_keys(
        registry: DidRegistry, clock: ManualClock, resolver: HttpResolver) -> None:
    operator, market_key, market_next = Signer.generate(), Signer.generate(), Signer.generate()
    operator_did = create_identity(registry, operator).did
    market = create_identity(registry, market_key, controller=operator_did).did
    clock.advance(5)
    rotate_key(registry, market, market_next.public_key, operator, current_method(registry, operator_did))
    record = resolver.key(market, "key-2")
    assert record.public_key == market_next.public_key and record.valid_from_ms == registry.key(market,
                                                                                               "key-2").valid_from_ms
    assert resolver.history(market)[1].authorized_by == f"{operator_did}#key-1"


def test_a_resolver_that_invents_a_key_is_caught(registry: DidRegistry, clock: ManualClock,
                                                 served: ResolverServer, resolver: HttpResolver) -> None:
    honest, attacker = Signer.generate(), Signer.generate()
    did = create_identity(registry, honest).did
    clock.advance(1)
    rotate_key(registry, did, Signer.generate().public_key, honest, current_method(registry, did))

    def swap_key(_did: str, body: History) -> History:  # the rotation, re-signed by the attacker's key
        forged = copy.deepcopy(body)
        document = forged["versions"][1]["didDocument"]
        document["verificationMethod"][0]["publicKeyMultibase"] = _multikey(attacker.public_key)
        forged["versions"][1]["didDocument"] = add_proof(document, attacker, f"{did}#key-1", created_ms=0)
        return forged

    served.rewrite = swap_key
    assert code_of(lambda: resolver.key(did, "key-2")) == "history_invalid"

    def fake_genesis(_did: str, body: History) -> History:  # a whole history of a key that is not the DID's
        forged = copy.deepcopy(body)
        document = forged["versions"][0]["didDocument"]
        document["verificationMethod"][0]["publicKeyMultibase"] = _multikey(attacker.public_key)
        forged["versions"] = [{**forged["versions"][0], "didDocument": add_proof(document, attacker,
                                                                                 f"{did}#key-1", created_ms=0)}]
        return forged

    served.rewrite = fake_genesis
    assert code_of(lambda: resolver.refresh(did)) == "history_invalid"
    served.rewrite = lambda _did, body: {**body, "versions": body["versions"][::-1]}
    assert code_of(lambda: resolver.refresh(did)) == "resolver_malformed"
    served.rewrite = lambda _did, body: {"versions": "none"}
    assert code_of(lambda: resolver.refresh(did)) == "resolver_malformed"
    unchecked = HttpResolver(served.url, verify_history=False)
    served.rewrite = swap_key
    assert unchecked.key(did, "key-2").public_key == attacker.public_key  # what verify_history=False risks


def test_after_a_deactivation_messages_are_refused_and_earlier_ones_still_verify(
        registry: DidRegistry, clock: ManualClock, resolver: HttpResolver, tick: Monotonic) -> None:
    signer = Signer.generate()
    did = create_identity(registry, signer).did
    sealer = EnvelopeSigner(signer, did, clock=clock)
    clock.advance(1)
    before = sealer.seal("task", {})
    clock.advance(1)
    deactivate_identity(registry, did, signer, current_method(registry, did))
    clock.advance(1)
    after = sealer.seal("task", {})
    verifier = EnvelopeVerifier(resolver, clock=clock)
    assert refusal(verifier, after) == "deactivated"
    assert verifier.verify_archived(before).issuer == did
    assert code_of(lambda: resolver.active(did)) == "deactivated"


def test_whole_second_version_times_accept_both_keys_within_the_second_of_the_rotation(
        registry: DidRegistry, clock: ManualClock, tick: Monotonic) -> None:
    old, new = Signer.generate(), Signer.generate()
    clock.now = 1_790_000_000.250
    did = create_identity(registry, old).did
    clock.now = 1_790_000_010.400
    rotate_key(registry, did, new.public_key, old, current_method(registry, did))
    with ResolverServer(registry, whole_seconds=True) as served:
        resolver = HttpResolver(served.url, clock=clock, monotonic=tick)
        assert resolver.key(did, "key-1").valid_from_ms == 1_790_000_000_000
        assert resolver.key(did, "key-1").valid_until_ms == 1_790_000_010_999
        assert resolver.key(did, "key-2").valid_from_ms == 1_790_000_010_000
    assert parse_time("2026-09-21T14:13:20.5Z") == parse_time("2026-09-21T14:13:20Z") + 500
    assert code_of(lambda: parse_time("2026-09-21 14:13:20")) == "resolver_malformed"


def test_an_unreachable_resolver_is_named_and_a_recent_history_carries_over_a_blip(
        registry: DidRegistry, clock: ManualClock, served: ResolverServer, resolver: HttpResolver,
        tick: Monotonic) -> None:
    did = create_identity(registry, Signer.generate()).did
    resolver.key(did, "key-1")
    served.down = True
    tick.now += 10.0  # past the TTL, within max_stale_s
    assert resolver.key(did, "key-1").did == did
    tick.now += 60.0
    assert code_of(lambda: resolver.key(did, "key-1")) == "resolver_unreachable"
    nowhere = HttpResolver("http://127.0.0.1:9", timeout_s=1.0)
    with pytest.raises(ResolverError) as caught:
        nowhere.key(did, "key-1")
    assert caught.value.code == "resolver_unreachable" and "--fleet" in str(caught.value)
    assert code_of(lambda: HttpResolver("fleet:8080")) == "resolver_malformed"


def _multikey(public_key: bytes) -> str:
    from identity.multikey import encode_multikey
    return encode_multikey(public_key)
