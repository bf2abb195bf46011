"""An ingest that is restarted on its state file goes on where it stopped (issue 15).

Without the file, a fresh ingest would accept every old message still inside its lifetime once more; with it,
the sessions and replay windows of every issuer come back, written in batches.
"""

import time
from pathlib import Path

import pytest

from bus.ingest import DurableReplayGuard, Ingest
from bus.session import Outgoing
from identity.envelope import Envelope, EnvelopeVerifier
from identity.registry import DidRegistry
from tests.bus.test_ingest import Robot, moving, stale


class Run:
    """An ingest on a state file, and what it handed on."""

    def __init__(self, registry: DidRegistry, clock, path: Path, **options) -> None:
        self.received: list[Envelope] = []
        self.ingest = Ingest(registry, lambda topic, envelope: self.received.append(envelope), clock=clock,
                             state_path=path, rate=1000, burst=1000, **options)

    def send(self, messages: list[Outgoing]) -> list[Envelope | None]:
        return [self.ingest.handle(m.topic, m.payload) for m in messages]

    def refused(self) -> dict[str, float]:
        return self.ingest.metrics.by("depai_ingest_refused_total", "reason")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "ingest-0-of-1.sqlite3"


def test_a_restarted_ingest_refuses_what_it_accepted_before(registry, clock, state: Path) -> None:
    robots = [Robot(registry, clock) for _ in range(4)]
    first = Run(registry, clock, state)
    sent = [robot.session.birth() for robot in robots]
    old: list[Outgoing] = []
    for _ in range(10):
        clock.advance(0.5)
        old += [robot.telemetry() for robot in robots]
    assert all(first.send(sent + old)) and len(first.received) == 44
    first.ingest.close()

    clock.advance(5)  # restarted, every old message still inside its 60 s lifetime
    second = Run(registry, clock, state)
    assert second.send(sent) == [None] * 4  # the retained births, delivered again: stale, not refusals
    assert second.send(old) == [None] * 40
    assert second.refused() == {"replayed": 40} and second.received == []
    assert second.ingest.metrics.total("depai_ingest_stale_total", kind="birth") == 4
    assert second.ingest.online() == first.ingest.online()  # the sessions came back with the windows
    clock.advance(0.5)
    assert all(second.send([robot.telemetry() for robot in robots])), "new messages go on, with no new birth"

    without = Ingest(registry, lambda topic, envelope: None, clock=clock)  # what a restart did before
    assert all(without.handle(m.topic, m.payload) for m in sent + old)


def test_the_state_is_written_in_batches_and_a_crash_forgets_at_most_the_last(registry, clock, state) -> None:
    robot = Robot(registry, clock)
    first = Run(registry, clock, state, state_batch=10, state_interval_s=3600)
    messages = [robot.session.birth()]
    for _ in range(24):
        messages.append(moving(robot, clock, 0.2))
    assert all(first.send(messages))  # 25 accepted: two batches of 10 written, 5 not yet
    # kill -9 now: no close(), the file has what the batches wrote
    second = Run(registry, clock, state)
    assert second.send(messages[:20]) == [None] * 20
    assert second.refused() == {"replayed": 19}  # the birth is stale; the 19 telemetry of the batches replayed
    assert all(second.send(messages[20:])), "the unwritten batch is forgotten: its 5 pass once more"


def test_the_state_is_written_at_least_every_interval(registry, clock, state) -> None:
    robot = Robot(registry, clock)
    first = Run(registry, clock, state, state_batch=10**6, state_interval_s=0.0)
    birth, message = robot.session.birth(), moving(robot, clock)
    assert all(first.send([birth, message]))
    second = Run(registry, clock, state)
    assert second.send([message]) == [None] and second.refused() == {"replayed": 1}


def test_ended_sessions_and_gateways_come_back(registry, clock, state) -> None:
    gateway = Robot(registry, clock)
    machines = [Robot(registry, clock, via=gateway.did) for _ in range(2)]
    loner = Robot(registry, clock)
    first = Run(registry, clock, state)
    loner_birth, loner_death = loner.session.birth(), None
    first.send([gateway.session.birth(), *(m.session.birth() for m in machines), loner_birth])
    loner_death = loner.session.death()
    first.send([loner_death])
    first.ingest.close()

    second = Run(registry, clock, state)
    assert set(second.ingest.online()) == {gateway.did, *(m.did for m in machines)}
    stale(second.ingest, loner_birth)  # its retained birth does not reopen the ended session
    assert loner.did not in second.ingest.online()
    second.send([gateway.session.will()])
    assert second.ingest.online() == {}, "the gateway's death still ends the machines that named it"
    second.ingest.close()
    assert Run(registry, clock, state).ingest.online() == {}


def test_a_given_verifier_must_keep_a_durable_window(registry, clock, state) -> None:
    with pytest.raises(ValueError, match="DurableReplayGuard"):
        Ingest(registry, lambda topic, envelope: None, clock=clock, state_path=state,
               verifier=EnvelopeVerifier(registry, clock=clock))
    verifier = EnvelopeVerifier(registry, clock=clock, replay=DurableReplayGuard())
    Ingest(registry, lambda topic, envelope: None, clock=clock, state_path=state, verifier=verifier).close()


def test_a_restarted_worker_refuses_40_of_40_old_messages_over_a_broker(broker, tmp_path: Path) -> None:
    from bus.client import BusClient
    from bus.worker import IngestWorker
    from tests.bus.test_pipeline import Fleet, Received, publish

    def wait_until(condition, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    registry_path, state = tmp_path / "registry.sqlite3", tmp_path / "ingest-0-of-1.sqlite3"
    with DidRegistry(registry_path) as registry:
        fleet = Fleet(registry, 4)
    first = Received()
    worker = IngestWorker(broker.url, registry_path, first, state_path=state).start()
    publisher = BusClient(broker.url, client_id="fleet-sim", outbox_path=tmp_path / "outbox.sqlite3").start()
    try:
        publish(publisher, fleet.births())
        old = [message for _ in range(10) for message in fleet.telemetry()]
        publish(publisher, old)
        assert first.wait_for(40)
        worker.close()

        again = Received()
        worker = IngestWorker(broker.url, registry_path, again, state_path=state).start()
        metrics = worker.ingest.metrics
        # the retained births, delivered on subscribe (twice each by amqtt): stale, not refused
        assert wait_until(lambda: len(metrics.by("depai_ingest_stale_total", "did")) == 4), metrics.render()
        publish(publisher, old)  # the same 40, sent again while still inside their lifetime
        assert wait_until(lambda: metrics.total("depai_ingest_refused_total") >= 40)
        assert metrics.by("depai_ingest_refused_total", "reason") == {"replayed": 40}
        assert again.telemetry() == [] and len(worker.ingest.online()) == 4
        publish(publisher, fleet.telemetry())
        assert again.wait_for(4), "new messages go on under the sessions the worker remembered"
    finally:
        publisher.close()
        worker.close()
