"""The signed envelope: sealing, every refusal reason, tampering, replay, rotation and deactivation."""

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.canonical import canonicalize
from identity.envelope import (
    DOMAIN,
    EnvelopeRefused,
    EnvelopeSigner,
    EnvelopeVerifier,
    Refusal,
    Sequencer,
    digest,
)
from identity.keys import Signer, verify
from identity.lifecycle import create_identity, deactivate_identity, rotate_key
from identity.registry import DidRegistry, Resolution

# The worked example of docs/protocol.md: seed 00 01 … 1f, clock 1790000000 s, seq 100.
GOLDEN_DIGEST = "ea3c187aef16db3a733f610515d31f53f18d23cd186963467bca237d32e24a59"
GOLDEN_SIG = "s4OouPGAMsU0lol0bVxdvpv3g4gPqTlqlmwOSnhPxVp4dl3RfcqlEfGhF3eBHrIXeOEQS0lkyIIqjJfHNAhpCg"
TELEMETRY = {"pose": {"x": 12.5, "y": -3.25, "theta": 1.5708}, "speed": 0.8, "battery": 0.93}


@pytest.fixture
def robot(registry: DidRegistry) -> tuple[Signer, Resolution]:
    key = Signer(bytes(range(32)))
    return key, create_identity(registry, key)


@pytest.fixture
def sealer(robot: tuple[Signer, Resolution], clock) -> EnvelopeSigner:
    key, resolution = robot
    return EnvelopeSigner(key, resolution.did, "key-1", clock=clock, sequencer=Sequencer(100))


@pytest.fixture
def verifier(registry: DidRegistry, clock) -> EnvelopeVerifier:
    return EnvelopeVerifier(registry, clock=clock)


def refusal(verifier: EnvelopeVerifier, wire: bytes, **kwargs: Any) -> Refusal:
    with pytest.raises(EnvelopeRefused) as caught:
        verifier.verify(wire, **kwargs)
    return caught.value.reason


def reseal(wire: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The envelope with one field changed and re-serialized canonically (the signature left as it was)."""
    obj = json.loads(wire)
    change(obj)
    return canonicalize(obj)


def test_round_trip(sealer: EnvelopeSigner, verifier: EnvelopeVerifier, robot, clock) -> None:
    wire = sealer.seal("telemetry", TELEMETRY)
    envelope = verifier.verify(wire, kinds={"telemetry"})
    assert envelope.body == TELEMETRY
    assert envelope.issuer == robot[1].did and envelope.key_id == "key-1" and envelope.seq == 100
    assert envelope.issued_at_ms == int(clock.now * 1000)
    assert envelope.expires_at_ms == envelope.issued_at_ms + 60_000
    assert canonicalize(json.loads(wire)) == wire


def test_golden_vector_for_other_languages(sealer: EnvelopeSigner) -> None:
    """Pinned bytes: the worked example in docs/protocol.md; any change to the format breaks this on purpose."""
    wire = sealer.seal("telemetry", {"battery": 0.93, "x": 1.5})
    obj = json.loads(wire)
    unsigned = canonicalize({k: v for k, v in obj.items() if k != "sig"})
    expected_digest = hashlib.sha256(DOMAIN + b"\x00telemetry\x00" + unsigned).digest()
    assert digest("telemetry", unsigned) == expected_digest
    assert unsigned == (
        b'{"body":{"battery":0.93,"x":1.5},"exp":1790000060000,"iat":1790000000000,'
        b'"iss":"did:peaq:5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuRSf","kid":"key-1",'
        b'"kind":"telemetry","seq":100,"v":1}'
    )
    assert expected_digest.hex() == GOLDEN_DIGEST
    assert obj["sig"] == GOLDEN_SIG
    assert verify(Signer(bytes(range(32))).public_key, expected_digest, base64.urlsafe_b64decode(obj["sig"] + "=="))



@pytest.mark.parametrize(
    ("field", "change", "reason"),
    [
        ("body", lambda o: o["body"].__setitem__("battery", 0.99), Refusal.BAD_SIGNATURE),
        ("exp", lambda o: o.__setitem__("exp", o["exp"] + 1), Refusal.BAD_SIGNATURE),
        ("iat", lambda o: o.__setitem__("iat", o["iat"] + 1), Refusal.BAD_SIGNATURE),
        ("kind", lambda o: o.__setitem__("kind", "event"), Refusal.BAD_SIGNATURE),
        ("seq", lambda o: o.__setitem__("seq", o["seq"] + 1), Refusal.BAD_SIGNATURE),
        ("sig", lambda o: o.__setitem__("sig", ("B" if o["sig"][0] == "A" else "A") + o["sig"][1:]), Refusal.BAD_SIGNATURE),
        ("kid", lambda o: o.__setitem__("kid", "key-2"), Refusal.UNKNOWN_KEY),
        ("v", lambda o: o.__setitem__("v", 2), Refusal.UNSUPPORTED_VERSION),
        ("iss", lambda o: o.__setitem__("iss", "did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR"), Refusal.UNKNOWN_ISSUER),
    ],
)
def test_tampering_with_each_field(sealer, verifier, field: str, change, reason: Refusal) -> None:
    wire = sealer.seal("telemetry", TELEMETRY)
    assert refusal(verifier, reseal(wire, change)) is reason
    assert verifier.verify(wire).seq == 100, "a refusal must not disturb the genuine message"


def test_issuer_swapped_to_another_registered_robot(sealer, verifier, registry) -> None:
    other = create_identity(registry, Signer.generate())
    wire = sealer.seal("telemetry", TELEMETRY)
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("iss", other.did))) is Refusal.BAD_SIGNATURE


def test_every_single_byte_flip_is_refused(sealer, verifier) -> None:
    wire = sealer.seal("telemetry", TELEMETRY)
    for position in range(len(wire)):
        for flip in (0x01, 0x20):
            forged = bytearray(wire)
            forged[position] ^= flip
            with pytest.raises(EnvelopeRefused):
                verifier.verify(bytes(forged))
    assert verifier.verify(wire).body == TELEMETRY


def test_domain_separation_between_kinds(sealer, verifier) -> None:
    """The same body signed as 'event' cannot be relabelled 'command', even with a valid-looking envelope."""
    wire = sealer.seal("event", {"type": "arrived"})
    relabelled = reseal(wire, lambda o: o.__setitem__("kind", "command"))
    assert refusal(verifier, relabelled) is Refusal.BAD_SIGNATURE
    assert refusal(verifier, wire, kinds={"command"}) is Refusal.WRONG_KIND


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda w: w.replace(b",", b", ", 1), Refusal.NON_CANONICAL),
        (lambda w: json.dumps(json.loads(w), sort_keys=False, separators=(",", ":"))[::-1].encode()[::-1]
         .replace(b'{"body"', b'{"v":1,"body"', 1), Refusal.NON_CANONICAL),
        (lambda w: w[:-1], Refusal.MALFORMED_JSON),
        (lambda w: b"\xff" + w, Refusal.MALFORMED_JSON),
        (lambda w: b"[1,2,3]", Refusal.MALFORMED),
        (lambda w: b'"hello"', Refusal.MALFORMED),
        (lambda w: w.replace(b'"battery":0.93', b'"battery":0.930'), Refusal.NON_CANONICAL),
    ],
)
def test_malformed_and_non_canonical(sealer, verifier, mangle, reason: Refusal) -> None:
    assert refusal(verifier, mangle(sealer.seal("telemetry", TELEMETRY))) is reason


def test_missing_and_extra_fields(sealer, verifier) -> None:
    wire = sealer.seal("telemetry", TELEMETRY)
    assert refusal(verifier, reseal(wire, lambda o: o.pop("exp"))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("extra", 1))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("seq", "100"))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("seq", -1))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("exp", o["iat"]))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("sig", o["sig"] + "A"))) is Refusal.MALFORMED
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("kind", "Tele metry"))) is Refusal.MALFORMED


def test_malformed_issuer_did(sealer, verifier) -> None:
    wire = sealer.seal("telemetry", TELEMETRY)
    assert refusal(verifier, reseal(wire, lambda o: o.__setitem__("iss", "did:peaq:notanaddress"))) is Refusal.MALFORMED_DID


def test_oversized(registry, sealer, clock) -> None:
    small = EnvelopeVerifier(registry, clock=clock, max_size=512)
    assert refusal(small, sealer.seal("telemetry", {"blob": "x" * 600})) is Refusal.OVERSIZED


def test_time_checks(sealer, verifier, clock) -> None:
    expired = sealer.seal("telemetry", TELEMETRY, ttl_s=1)
    clock.advance(1 + 5 + 0.001)
    assert refusal(verifier, expired) is Refusal.EXPIRED
    future = sealer.seal("telemetry", TELEMETRY)
    clock.advance(-6)
    assert refusal(verifier, future) is Refusal.FUTURE_DATED
    clock.advance(6)
    assert refusal(verifier, sealer.seal("telemetry", TELEMETRY, ttl_s=3601)) is Refusal.TTL_TOO_LONG


def test_clock_skew_is_tolerated_within_bounds(sealer, verifier, clock) -> None:
    ahead = sealer.seal("telemetry", TELEMETRY)
    clock.advance(-4.9)
    assert verifier.verify(ahead).seq == 100


def test_replay_window(sealer, verifier) -> None:
    first, second, third = (sealer.seal("telemetry", {"n": n}) for n in range(3))
    verifier.verify(third)
    verifier.verify(first)  # out of order, inside the window: redelivery is fine once
    assert refusal(verifier, first) is Refusal.REPLAYED
    assert refusal(verifier, third) is Refusal.REPLAYED
    verifier.verify(second)


def test_sequence_below_the_window_is_stale(sealer, registry, clock) -> None:
    from identity.replay import ReplayGuard

    verifier = EnvelopeVerifier(registry, clock=clock, replay=ReplayGuard(window=4))
    old = sealer.seal("telemetry", {"n": 0})
    for n in range(1, 6):
        verifier.verify(sealer.seal("telemetry", {"n": n}))
    assert refusal(verifier, old) is Refusal.STALE_SEQUENCE


def test_forged_message_does_not_advance_the_window(sealer, verifier) -> None:
    genuine = sealer.seal("telemetry", {"n": 1})
    forged = reseal(sealer.seal("telemetry", {"n": 2}), lambda o: o.__setitem__("seq", 10**9))
    assert refusal(verifier, forged) is Refusal.BAD_SIGNATURE
    assert verifier.verify(genuine).seq == 100


def test_rotation_refuses_new_messages_by_the_old_key(robot, sealer, verifier, registry, clock) -> None:
    old_key, resolution = robot
    before = sealer.seal("telemetry", {"n": "before"})
    clock.advance(1)
    new_key = Signer.generate()
    rotate_key(registry, resolution.did, new_key.public_key, old_key, f"{resolution.did}#key-1")
    clock.advance(1)
    after = sealer.seal("telemetry", {"n": "after"})
    assert refusal(verifier, after) is Refusal.KEY_ROTATED
    # Even when the forger claims the new key id, the reason names the rotated-out key.
    claimed = EnvelopeSigner(old_key, resolution.did, "key-2", clock=clock).seal("telemetry", {"n": "x"})
    with pytest.raises(EnvelopeRefused) as caught:
        verifier.verify(claimed)
    assert caught.value.reason is Refusal.KEY_ROTATED and "key-1" in str(caught.value)
    # An old message stays verifiable as of its time, and live while it has not expired.
    assert verifier.verify_archived(before).body == {"n": "before"}
    assert verifier.verify(before).body == {"n": "before"}
    fresh = EnvelopeSigner(new_key, resolution.did, "key-2", clock=clock).seal("telemetry", {"n": "new"})
    assert verifier.verify(fresh).body == {"n": "new"}


def test_new_key_cannot_backdate_before_its_rotation(robot, registry, verifier, clock) -> None:
    old_key, resolution = robot
    new_key = Signer.generate()
    rotate_key(registry, resolution.did, new_key.public_key, old_key, f"{resolution.did}#key-1")
    clock.advance(-1)
    backdated = EnvelopeSigner(new_key, resolution.did, "key-2", clock=clock).seal("telemetry", {})
    clock.advance(1)
    assert refusal(verifier, backdated) is Refusal.KEY_NOT_YET_VALID


def test_deactivated_issuer(robot, sealer, verifier, registry, clock) -> None:
    key, resolution = robot
    before = sealer.seal("telemetry", {"n": 1})
    clock.advance(1)
    deactivate_identity(registry, resolution.did, key, f"{resolution.did}#key-1")
    assert refusal(verifier, sealer.seal("telemetry", {"n": 2})) is Refusal.DEACTIVATED
    assert verifier.verify_archived(before).body == {"n": 1}


def test_sequencer_starts_from_the_clock_and_advances() -> None:
    sequencer = Sequencer(clock=lambda: 1_790_000_000.25)
    assert [sequencer.next() for _ in range(3)] == [1_790_000_000_250_000 + i for i in range(3)]
    restarted = Sequencer(clock=lambda: 1_790_000_000.26)
    assert restarted.next() > 1_790_000_000_250_002


def test_a_signer_on_a_simulated_clock_still_numbers_from_the_wall_clock() -> None:
    """A fleet clock reads near 0 until its epoch is set (issue 15): the sequence must not start there."""
    key = Signer.generate()
    did = "did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR"
    before = int(time.time() * 1_000_000)
    first = EnvelopeSigner(key, did, clock=lambda: 0.0)
    seqs = [json.loads(first.seal("telemetry", {"n": n}))["seq"] for n in range(3)]
    assert before <= seqs[0] <= int(time.time() * 1_000_000) and seqs == [seqs[0] + n for n in range(3)]
    assert json.loads(first.seal("telemetry", {}))["iat"] == 0, "the issue time still follows the given clock"
    rerun = EnvelopeSigner(key, did, clock=lambda: 0.0)  # the same identity in the next run, same fleet time
    assert json.loads(rerun.seal("telemetry", {}))["seq"] > seqs[-1] + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(body=json_values, kind=st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True))
def test_any_json_body_round_trips(tmp_path_factory, body: Any, kind: str) -> None:
    key = Signer.generate()
    with DidRegistry(tmp_path_factory.mktemp("reg") / "r.sqlite3") as registry:
        did = create_identity(registry, key).did
        wire = EnvelopeSigner(key, did).seal(kind, body)
        envelope = EnvelopeVerifier(registry).verify(wire)
    assert envelope.kind == kind
    assert canonicalize(envelope.body) == canonicalize(body)


def test_docs_carry_the_golden_vector() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "identity.md").read_text()
    assert GOLDEN_DIGEST in doc and GOLDEN_SIG in doc
