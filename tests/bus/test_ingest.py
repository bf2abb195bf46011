"""The ingest pipeline on its own: every refusal reason, in order, and nothing disturbed by bad input."""

import json
from typing import Any

import pytest

from bus.ingest import Ingest
from bus.session import MachineSession, Outgoing
from bus.topics import topic_root
from identity.canonical import canonicalize
from identity.did import did_key
from identity.document import MachineProfile
from identity.envelope import Envelope, EnvelopeSigner, Sequencer
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry


class Robot:
    """A registered machine with its session and a clock-driven telemetry helper."""

    def __init__(self, registry: DidRegistry, clock, *, max_speed: float = 2.0, via: str | None = None) -> None:
        self.key = Signer.generate()
        self.did = create_identity(registry, self.key, machine=MachineProfile("test", [], max_speed, 10.0)).did
        self.clock = clock
        self.signer = EnvelopeSigner(self.key, self.did, clock=clock, sequencer=Sequencer(1000))
        self.session = MachineSession(self.signer, topic_root(self.did), registry.resolve(self.did).document, via=via)
        self.x = 0.0

    def telemetry(self, *, dx: float = 0.5, v: float = 1.0, **overrides: Any) -> Outgoing:
        self.x += dx
        body = {"t": int(self.clock.now * 1000), "pose": {"x": self.x, "y": 0.0, "theta": 0.0},
                "twist": {"v": v, "w": 0.0}, "battery": 0.8, **overrides}
        return self.session.message("telemetry", body)


@pytest.fixture
def received() -> list[Envelope]:
    return []


@pytest.fixture
def ingest(registry: DidRegistry, clock, received: list[Envelope]) -> Ingest:
    return Ingest(registry, lambda topic, envelope: received.append(envelope), clock=clock, rate=20, burst=40)


@pytest.fixture
def robot(registry: DidRegistry, clock) -> Robot:
    return Robot(registry, clock)


def send(ingest: Ingest, message: Outgoing) -> Envelope | None:
    return ingest.handle(message.topic, message.payload)


def stale(ingest: Ingest, message: Outgoing) -> None:
    """``message`` is counted as stale: not handed on, not refused, not quarantined."""
    kind = message.topic.rsplit("/", 1)[-1]
    before = (ingest.metrics.total("depai_ingest_stale_total", kind=kind), len(ingest.quarantine),
              ingest.metrics.total("depai_ingest_refused_total"))
    assert ingest.handle(message.topic, message.payload) is None
    after = (ingest.metrics.total("depai_ingest_stale_total", kind=kind), len(ingest.quarantine),
             ingest.metrics.total("depai_ingest_refused_total"))
    assert after == (before[0] + 1, before[1], before[2])


def refused(ingest: Ingest, topic: str, payload: bytes) -> str:
    before = len(ingest.quarantine)
    assert ingest.handle(topic, payload) is None
    assert len(ingest.quarantine) == before + 1
    return ingest.quarantine.entries()[-1].reason


def moving(robot: Robot, clock, seconds: float = 0.5, **kwargs: Any) -> Outgoing:
    clock.advance(seconds)
    return robot.telemetry(**kwargs)


def test_birth_then_telemetry_in_order(ingest, robot, clock, received) -> None:
    assert send(ingest, robot.session.birth()) is not None
    for _ in range(20):
        assert send(ingest, moving(robot, clock)) is not None
    assert [e.kind for e in received] == ["birth"] + ["telemetry"] * 20
    assert [e.body["pose"]["x"] for e in received[1:]] == sorted(e.body["pose"]["x"] for e in received[1:])
    assert ingest.online() == {robot.did: received[0].body["epoch"]}
    assert ingest.metrics.value("depai_ingest_accepted_total", kind="telemetry") == 20


def test_each_kind_of_bad_input_is_refused_with_its_reason_and_disturbs_nothing(
    ingest, robot, registry, clock, received
) -> None:
    send(ingest, robot.session.birth())
    good = moving(robot, clock)
    stranger = Robot(registry, clock)
    forger = EnvelopeSigner(Signer.generate(), robot.did, clock=clock)
    unknown = EnvelopeSigner(Signer.generate(), "did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR", clock=clock)
    body = json.loads(good.payload)["body"]
    cases = {
        "bad_signature": (good.topic, forger.seal("telemetry", body)),
        "non_canonical": (good.topic, good.payload.replace(b",", b", ", 1)),
        "malformed_json": (good.topic, b"{not json"),
        "oversized": (good.topic, robot.signer.seal("telemetry", {**body, "state": "x" * 70_000})),
        "unknown_issuer": (good.topic, unknown.seal("telemetry", body)),
        "expired": (good.topic, EnvelopeSigner(robot.key, robot.did, clock=lambda: clock.now - 100).seal(
            "telemetry", body, ttl_s=30)),
        "wrong_topic": (topic_root(stranger.did) + "/telemetry", good.payload),
        "schema_invalid": (good.topic, robot.signer.seal("telemetry", {**body, "battery": 7})),
        "wrong_kind": (good.topic, robot.signer.seal("command", {"to": robot.did, "type": "x"})),
    }
    clock.advance(0.01)
    for reason, (topic, payload) in cases.items():
        assert refused(ingest, topic, payload) == reason, reason
    assert send(ingest, good) is not None, "the genuine message still goes through"
    assert refused(ingest, good.topic, good.payload) == "replayed"
    assert [e.kind for e in received] == ["birth", "telemetry"]
    refusals = ingest.metrics.total("depai_ingest_refused_total")
    assert refusals == len(cases) + 1
    assert ingest.metrics.value("depai_ingest_refused_by_robot_total", reason="bad_signature", did=robot.did) == 1


def test_wrong_channel_and_partition(ingest, robot, clock) -> None:
    send(ingest, robot.session.birth())
    message = moving(robot, clock)
    root = topic_root(robot.did)
    assert refused(ingest, root + "/event", message.payload) == "wrong_topic"
    other_partition = root.replace(f"/robots/{root.split('/')[3]}/", "/robots/{}/".format(
        "0" if root.split("/")[3] != "0" else "1"))
    assert refused(ingest, other_partition + "/telemetry", message.payload) == "wrong_topic"
    assert refused(ingest, "depai/v1/market/tasks", message.payload) == "wrong_topic"


def test_no_telemetry_before_birth(ingest, robot, clock) -> None:
    message = moving(robot, clock)
    assert refused(ingest, message.topic, message.payload) == "no_birth"
    send(ingest, robot.session.birth())
    assert send(ingest, message) is not None, "the refused message did not burn its sequence number"


def test_death_must_name_the_live_epoch(ingest, robot, clock) -> None:
    first = robot.session.birth()
    old_will = robot.session.will()
    send(ingest, first)
    clock.advance(1)
    send(ingest, robot.session.birth())
    stale(ingest, old_will)  # an older session's will, arriving late: changes nothing, refuses nothing
    assert robot.did in ingest.online()
    assert send(ingest, robot.session.death()) is not None
    assert robot.did not in ingest.online()
    message = moving(robot, clock)
    assert refused(ingest, message.topic, message.payload) == "no_birth"


def test_retained_birth_delivered_again_is_stale_not_a_refusal(ingest, robot, clock) -> None:
    """Every re-subscribe gets the retained birth again (issue 15: a resume counted these as replayed)."""
    birth = robot.session.birth()
    send(ingest, birth)
    stale(ingest, birth)
    stale(ingest, birth)
    assert ingest.metrics.value("depai_ingest_stale_total", kind="birth", did=robot.did) == 2
    assert robot.did in ingest.online()
    telemetry = moving(robot, clock)
    assert send(ingest, telemetry) is not None
    assert refused(ingest, telemetry.topic, telemetry.payload) == "replayed", "other kinds still count as replays"
    assert "depai_ingest_stale_total" in ingest.metrics.render()


def test_a_death_for_an_epoch_never_opened_is_refused(ingest, robot, registry, clock) -> None:
    early_birth = robot.session.birth()
    send(ingest, early_birth)
    robot.session.birth()  # a newer session whose birth this ingest never saw
    death = robot.session.death()
    assert refused(ingest, death.topic, death.payload) == "stale_epoch"
    assert robot.did in ingest.online()
    stranger = robot.session.death()
    fresh = Ingest(registry, lambda topic, envelope: None, clock=clock)
    assert refused(fresh, stranger.topic, stranger.payload) == "stale_epoch"  # no birth at all


def test_old_birth_and_will_verify_after_they_expire(ingest, robot, clock) -> None:
    """A retained birth or a will is old when it arrives; it is checked as of its issue time."""
    birth, will = robot.session.birth(), robot.session.will()
    clock.advance(7200)
    assert send(ingest, birth) is not None
    assert send(ingest, will) is not None


def test_gateway_death_ends_its_machines(ingest, registry, clock) -> None:
    gateway = Robot(registry, clock)
    machines = [Robot(registry, clock, via=gateway.did) for _ in range(3)]
    send(ingest, gateway.session.birth())
    for machine in machines:
        send(ingest, machine.session.birth())
    assert len(ingest.online()) == 4
    send(ingest, gateway.session.will())
    assert ingest.online() == {}


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda r, c: moving(r, c, v=9.0), "speed"),
        (lambda r, c: moving(r, c, dx=25.0), "moved"),
        (lambda r, c: moving(r, c, seconds=0.5, v=1.0, t=int(c.now * 1000) - 60_000), "issue time"),
        (lambda r, c: moving(r, c, seconds=0.0), "does not advance"),
        (lambda r, c: moving(r, c, v=-1.9), "speed changed"),
    ],
)
def test_implausible_motion(ingest, robot, clock, make, why: str) -> None:
    send(ingest, robot.session.birth())
    send(ingest, moving(robot, clock))
    message = make(robot, clock)
    assert refused(ingest, message.topic, message.payload) == "implausible"
    assert why in ingest.quarantine.entries()[-1].detail
    robot.x -= 25.0 if why == "moved" else 0.0
    assert send(ingest, moving(robot, clock)) is not None, "the robot's motion state was not disturbed"


def test_scan_with_impossible_range(ingest, robot, clock) -> None:
    send(ingest, robot.session.birth())
    clock.advance(0.1)
    scan = {"t": int(clock.now * 1000), "pose": {"x": 0.0, "y": 0.0, "theta": 0.0}, "angle_min": -1.57,
            "angle_increment": 0.05, "range_max": 10.0, "ranges": [1.0, None, 12.5]}
    message = robot.session.message("scan", scan)
    assert refused(ingest, message.topic, message.payload) == "implausible"
    scan["ranges"] = [1.0, None, 9.5]
    assert send(ingest, robot.session.message("scan", scan)) is not None


def test_flood_from_one_robot_is_rate_limited_and_others_are_not(ingest, robot, registry, clock) -> None:
    other = Robot(registry, clock)
    send(ingest, robot.session.birth())
    send(ingest, other.session.birth())
    accepted = 0
    for _ in range(100):
        clock.advance(0.002)
        accepted += send(ingest, robot.telemetry(dx=0.0, v=0.0)) is not None
    assert 35 <= accepted <= 45, accepted
    assert ingest.metrics.value("depai_ingest_refused_by_robot_total", reason="rate_limited", did=robot.did) == 100 - accepted
    assert send(ingest, moving(other, clock)) is not None


def test_consumer_failure_is_logged_not_fatal(registry, clock, robot, caplog) -> None:
    def broken(topic: str, envelope: Envelope) -> None:
        raise RuntimeError("consumer bug")

    ingest = Ingest(registry, broken, clock=clock)
    assert send(ingest, robot.session.birth()) is not None
    assert "consumer failed" in caplog.text


def test_metrics_render_in_prometheus_text_format(ingest, robot, clock) -> None:
    send(ingest, robot.session.birth())
    ingest.handle(topic_root(robot.did) + "/telemetry", b"junk")
    text = ingest.metrics.render()
    assert "# TYPE depai_ingest_accepted_total counter" in text
    assert 'depai_ingest_accepted_total{kind="birth"} 1' in text
    assert 'depai_ingest_refused_total{reason="malformed_json"} 1' in text
    assert "depai_ingest_refused_by_robot_total" not in text  # a DID no key was resolved for is not a series


def test_forged_envelopes_from_fresh_did_keys_add_no_series(ingest, robot, clock) -> None:
    """500 envelopes, each signed by a fresh key as its own did:key, are counted under their reason only: the
    metrics hold as many series after them as before. A registered robot's refusal is counted under its DID too."""
    send(ingest, robot.session.birth())
    forged = EnvelopeSigner(Signer.generate(), robot.did, clock=clock).seal("telemetry", {"battery": 0.5})
    ingest.handle(topic_root(robot.did) + "/telemetry", forged)
    assert ingest.metrics.value("depai_ingest_refused_by_robot_total", did=robot.did, reason="bad_signature") == 1
    series = None
    for forgery in range(501):  # the first makes the reason's own series; the 500 after it add none
        key = Signer.generate()
        stranger = EnvelopeSigner(key, did_key(key.public_key), clock=clock)
        ingest.handle(topic_root(stranger.did) + "/telemetry", stranger.seal("telemetry", {"battery": 0.5}))
        series = ingest.metrics.render().count("\n") if forgery == 0 else series
    text = ingest.metrics.render()
    assert text.count("\n") == series, text
    assert 'depai_ingest_refused_total{reason="unknown_issuer"} 501' in text
    assert "did:key" not in text
    counted = ingest.counters()
    assert counted["refused_by_robot"] == {robot.did: {"bad_signature": 1}}
    assert counted["messages_by_robot"] == {robot.did: {"birth": 1}} and counted["robots_left_out"] == 0


def test_quarantine_is_bounded(registry, clock) -> None:
    ingest = Ingest(registry, lambda t, e: None, clock=clock, quarantine_size=5)
    for i in range(50):
        ingest.handle("depai/v1/robots/0/x/telemetry", canonicalize({"junk": i}))
    assert len(ingest.quarantine) == 5
    assert ingest.metrics.total("depai_ingest_refused_total") == 50


def test_subscriptions_put_births_first(ingest) -> None:
    filters = ingest.subscriptions()
    assert filters[0] == "depai/v1/robots/+/+/birth"
    assert ingest.subscriptions([3])[0] == "depai/v1/robots/3/+/birth"


def test_an_old_birth_cannot_reopen_a_dead_session(ingest, robot) -> None:
    birth = robot.session.birth()
    send(ingest, birth)
    death = robot.session.death()
    send(ingest, death)
    stale(ingest, birth)
    stale(ingest, death)  # the retained death, delivered again
    assert robot.did not in ingest.online()


def test_clearing_a_retained_birth_is_ignored_not_refused(ingest, robot) -> None:
    birth = robot.session.birth()
    send(ingest, birth)
    assert ingest.handle(birth.topic, b"") is None
    assert len(ingest.quarantine) == 0
    assert robot.did in ingest.online()


def test_scans_and_telemetry_are_separate_motion_streams(ingest, robot, clock) -> None:
    send(ingest, robot.session.birth())
    clock.advance(0.5)
    t = int(clock.now * 1000)
    telemetry = robot.session.message("telemetry", {"t": t, "pose": {"x": 0.0, "y": 0.0, "theta": 0.0},
                                                    "twist": {"v": 0.0, "w": 0.0}, "battery": 0.9})
    scan = robot.session.message("scan", {"t": t, "pose": {"x": 0.0, "y": 0.0, "theta": 0.0}, "angle_min": 0.0,
                                          "angle_increment": 0.1, "range_max": 5.0, "ranges": [1.0]})
    assert send(ingest, telemetry) is not None
    assert send(ingest, scan) is not None


def test_a_robots_backlog_arriving_at_once_is_judged_by_when_it_was_signed(ingest, robot, clock) -> None:
    """After an outage a robot sends what it queued: 150 messages issued 0.2 s apart arrive in one burst. Their own
    rate is 5 a second (the limit is 20, in bursts of 40), so none is refused; 150 signed within 0.15 s are a flood."""
    send(ingest, robot.session.birth())
    backlog = []
    for _ in range(150):
        clock.advance(0.2)
        backlog.append(robot.telemetry(dx=0.0, v=0.0))
    assert all(send(ingest, message) is not None for message in backlog)
    flood = []
    for _ in range(150):
        clock.advance(0.001)
        flood.append(robot.telemetry(dx=0.0, v=0.0))
    accepted = sum(send(ingest, message) is not None for message in flood)
    assert 40 <= accepted <= 45, accepted
    assert ingest.metrics.value("depai_ingest_refused_by_robot_total", reason="rate_limited", did=robot.did) == 150 - accepted
