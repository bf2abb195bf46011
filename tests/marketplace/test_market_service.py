"""The market service takes signed tasks only: a customer's is posted and announced; anything else is refused,
counted by its code, and leaves the ledger as it was. Simulated customers sign the simulator's orders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bus.topics import MARKET_AWARDS, MARKET_TASKS
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.lifecycle import create_identity
from ledger.journal import Ledger
from marketplace.market import AWARDED, OPEN, Marketplace
from marketplace.policy import MarketPolicy
from marketplace.service import DECLARED_KINDS, MarketService
from sim.customers import CustomerOrders, Customers
from sim.demand import Order
from tests.marketplace.stand_ins import envelope

ROOT = Path(__file__).resolve().parents[2]
ORDER = Order("order-1", (100.0, 200.0), (1100.0, 1545.0), 2.5, 0.0)  # 2.345 km: 600 + 2111 = 2711 cents


class Party:
    """A registered DID that signs envelopes."""

    def __init__(self, registry, clock) -> None:
        self.key = Signer.generate()
        self.did = create_identity(registry, self.key).did
        self.signer = EnvelopeSigner(self.key, self.did, clock=clock)


class Stage:
    """A market service over a SQLite ledger, a funded customer, a second one, and a registered stranger."""

    def __init__(self, registry, clock, tmp_path: Path) -> None:
        self.clock = clock
        self.customer, self.other, self.stranger = (Party(registry, clock) for _ in range(3))
        market_id = Party(registry, clock)
        clock.advance(1)
        self.ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", Signer.generate(), clock=clock)
        self.market = Marketplace(self.ledger, market_id.signer, clock=clock)
        self.market.fund(self.customer.did, 100_000, "EUR", key="c1")
        self.market.fund(self.other.did, 100_000, "EUR", key="c2")
        self.policy = MarketPolicy(bid_window_s=3.0, task_life_s=600.0)
        self.service = MarketService(self.market, EnvelopeVerifier(registry, clock=clock), clock=clock,
                                     policy=self.policy, currency="EUR")
        self.customers = Customers([self.customer.signer, self.other.signer], self.policy.quote, clock=clock,
                                   currency="EUR", task_life_s=self.policy.task_life_s)

    def body(self, **changes) -> dict:
        body = {"id": "t1", "customer": self.customer.did, "pickup": {"x": 0.0, "y": 0.0},
                "dropoff": {"x": 50.0, "y": 20.0}, "deadline": int((self.clock() + 600) * 1000),
                "max_price": 1_000, "currency": "EUR", "payload_kg": 2.0}
        return {**body, **changes}


@pytest.fixture
def stage(registry, clock, tmp_path):
    made = Stage(registry, clock, tmp_path)
    yield made
    made.ledger.close()


def test_a_customers_signed_task_is_posted_and_announced_at_the_next_step(stage) -> None:
    body = stage.body()
    task = stage.service.post(stage.customer.signer.seal("task", body))
    assert task is not None and task.state == OPEN and task.max_price == 1_000
    assert stage.service.posted == 1 and not stage.service.refused
    assert stage.ledger.balance("escrow:t1") == 1_000
    out = stage.service.step()
    assert [message.topic for message in out] == [MARKET_TASKS]
    announced = stage.service.verifier.verify(out[0].payload)  # signed by the marketplace
    assert (announced.kind, announced.body) == ("task", body)


def test_the_policys_bid_window_decides_when_an_untaken_task_is_announced_again(stage) -> None:
    stage.service.post(stage.customer.signer.seal("task", stage.body()))
    assert len(stage.service.step()) == 1  # the first announcement
    stage.clock.advance(2.9)
    assert stage.service.step() == []  # bidding still open (3 s)
    stage.clock.advance(0.1)
    assert [message.topic for message in stage.service.step()] == [MARKET_TASKS]  # nobody bid: again


def test_simulated_customers_sign_the_order_as_it_was_always_signed(stage) -> None:
    envelope = stage.service.verifier.verify(stage.customers.order(ORDER))
    assert envelope.kind == "task" and envelope.issuer == stage.customer.did
    assert envelope.body == {"id": "order-1", "customer": stage.customer.did,
                             "pickup": {"x": 100.0, "y": 200.0}, "dropoff": {"x": 1100.0, "y": 1545.0},
                             "deadline": int((stage.clock() + 600.0) * 1000), "max_price": 2711,
                             "currency": "EUR", "payload_kg": 2.5}


def test_customers_take_turns(stage) -> None:
    orders = [Order(f"order-{i}", (0.0, 0.0), (10.0, 0.0), 1.0, 0.0) for i in range(3)]
    sink = CustomerOrders(stage.customers, stage.service)
    for order in orders:
        sink.offer(order)
    assert stage.service.posted == 3 and not stage.service.refused
    assert [stage.market.task(order.id).customer for order in orders] == \
        [stage.customer.did, stage.other.did, stage.customer.did]
    assert stage.customers.dids == [stage.customer.did, stage.other.did]
    assert sink.delivered is stage.service.delivered and sink.failed is stage.service.failed


def _unregistered(stage) -> bytes:
    key = Signer.generate()
    did = did_peaq(key.public_key)
    return EnvelopeSigner(key, did, clock=stage.clock).seal("task", stage.body(customer=did))


def _forged(stage) -> bytes:
    wire = stage.customer.signer.seal("task", stage.body())
    return wire[:-10] + (b"A" if wire[-10:-9] != b"A" else b"B") + wire[-9:]


REFUSALS = {
    # signed by someone who is not the task's customer: a registered stranger naming the customer ...
    "not_the_customer": lambda stage: stage.stranger.signer.seal("task", stage.body()),
    # ... or naming itself, with no money in the marketplace
    "insufficient_funds": lambda stage: stage.stranger.signer.seal("task", stage.body(customer=stage.stranger.did)),
    # by a key no registry knows
    "unknown_issuer": _unregistered,
    "malformed_json": lambda stage: b"not an envelope",
    "malformed_envelope": lambda stage: b'{"kind":"task","v":1}',
    "bad_signature": _forged,
    "wrong_kind": lambda stage: stage.customer.signer.seal("bid", {"task": "t1", "price": 5, "currency": "EUR",
                                                                   "eta_ms": 1}),
    "schema_invalid": lambda stage: stage.customer.signer.seal("task", {**stage.body(), "max_price": -5}),
    "wrong_currency": lambda stage: stage.customer.signer.seal("task", stage.body(currency="USD")),
    "past_deadline": lambda stage: stage.customer.signer.seal("task", stage.body(deadline=1_000)),
}


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_a_task_that_is_not_a_customers_own_is_refused_counted_and_changes_nothing(stage, code: str) -> None:
    entries, balances = stage.ledger.size(), stage.ledger.balances()
    assert stage.service.post(REFUSALS[code](stage)) is None
    assert dict(stage.service.refused) == {code: 1}
    assert stage.service.posted == 0 and stage.service.step() == []
    assert stage.market.tasks(OPEN) == []
    assert (stage.ledger.size(), stage.ledger.balances()) == (entries, balances)


def test_the_same_signed_task_twice_is_a_replay(stage) -> None:
    wire = stage.customer.signer.seal("task", stage.body())
    assert stage.service.post(wire) is not None
    entries = stage.ledger.size()
    assert stage.service.post(wire) is None
    assert dict(stage.service.refused) == {"replayed": 1} and stage.service.posted == 1
    assert stage.ledger.size() == entries


def test_the_service_declares_the_robot_messages_it_consumes() -> None:
    assert MarketService.declared_kinds == DECLARED_KINDS == ("birth", "death", "telemetry", "bid", "receipt", "event")


def test_the_marketplace_never_imports_the_simulator() -> None:
    probe = ("import sys, marketplace.service, marketplace.policy, marketplace.market, marketplace.auction, "
             "marketplace.dispatch, marketplace.proof; "
             "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _awarded(stage) -> str:
    """Task t1 posted and awarded to a bonded robot through the service; the robot's DID."""
    robot, owner = "did:peaq:robot-under-test", stage.other.did
    stage.market.fund(owner, 10_000, "EUR", key="owner", role="owner")
    stage.market.register_robot(robot, owner, 5_000, "EUR")
    stage.service.post(stage.customer.signer.seal("task", stage.body()))
    stage.service.step()
    stage.service.observe("t", envelope("bid", robot, {"task": "t1", "price": 800, "currency": "EUR", "eta_ms": 9},
                                        at_ms=int(stage.clock() * 1000)))  # heard by the service
    stage.clock.advance(3.0)
    assert [m.topic for m in stage.service.step()] == [MARKET_AWARDS]
    assert stage.market.task("t1").state == AWARDED
    return robot


def test_a_robot_born_again_that_does_not_name_its_task_loses_the_award_without_a_slash(stage) -> None:
    robot = _awarded(stage)
    bond, reputation = stage.ledger.balance(f"bond:{robot}"), stage.market.reputation(robot)
    stage.service.observe("t", envelope("birth", robot, {"epoch": 2}))
    stage.service.observe("t", envelope("telemetry", robot, {"t": 1, "pose": {"x": 0, "y": 0}, "state": "idle"}))
    stage.clock.advance(stage.policy.release_after_s - 0.5)
    stage.service.step()
    assert stage.market.task("t1").state == AWARDED  # not yet: it may still say it kept the task
    stage.clock.advance(1.0)
    out = stage.service.step()
    task = stage.market.task("t1")
    assert (task.state, task.robot, task.outcome) == (OPEN, None, None) and stage.service.released == ["t1"]
    assert [m.topic for m in out] == [MARKET_TASKS]  # announced again for new bids
    assert stage.ledger.balance(f"bond:{robot}") == bond and stage.market.reputation(robot) == reputation
    assert stage.ledger.balance("escrow:t1") == 1_000 and stage.market.offers("t1") == []


def test_a_robot_born_again_that_names_its_task_in_telemetry_keeps_it(stage) -> None:
    robot = _awarded(stage)
    stage.service.observe("t", envelope("birth", robot, {"epoch": 2}))
    stage.service.observe("t", envelope("telemetry", robot, {"t": 1, "pose": {"x": 0, "y": 0}, "task": "t1"}))
    stage.clock.advance(stage.policy.release_after_s + 1)
    stage.service.step()
    assert stage.market.task("t1").state == AWARDED and stage.service.released == []


def test_an_offer_that_would_arrive_after_the_deadline_is_not_awarded(stage) -> None:
    robot, owner = "did:peaq:robot-too-far", stage.other.did
    stage.market.fund(owner, 10_000, "EUR", key="owner", role="owner")
    stage.market.register_robot(robot, owner, 5_000, "EUR")
    stage.service.post(stage.customer.signer.seal("task", stage.body()))  # deadline in 600 s
    stage.service.step()
    stage.service.observe("t", envelope("bid", robot, {"task": "t1", "price": 800, "currency": "EUR",
                                                       "eta_ms": 700_000}))
    stage.clock.advance(3.0)
    assert [m.topic for m in stage.service.step()] == [MARKET_TASKS]  # announced again, not awarded
    assert stage.market.task("t1").state == OPEN and stage.service.awarded == 0


@pytest.mark.parametrize("kind, body", [("birth", {"epoch": 2}), ("death", {"reason": "shutdown"})])
def test_a_robot_born_again_or_dead_has_its_standing_bids_withdrawn(stage, kind: str, body: dict) -> None:
    """Reborn, it forgot what it offered; dead, it cannot deliver: either way it is not awarded the task."""
    robot, owner = "did:peaq:robot-restarted", stage.other.did
    stage.market.fund(owner, 10_000, "EUR", key="owner", role="owner")
    stage.market.register_robot(robot, owner, 5_000, "EUR")
    stage.service.post(stage.customer.signer.seal("task", stage.body()))
    stage.service.step()
    stage.service.observe("t", envelope("bid", robot, {"task": "t1", "price": 800, "currency": "EUR", "eta_ms": 9}))
    stage.service.observe("t", envelope(kind, robot, body))  # before the window closed
    stage.clock.advance(3.0)
    assert [m.topic for m in stage.service.step()] == [MARKET_TASKS]  # no award: announced again for a new bid
    assert stage.market.task("t1").state == OPEN and stage.market.offers("t1") == []


def test_a_robot_that_declines_its_award_puts_the_task_back_on_offer_without_a_slash(stage) -> None:
    robot = _awarded(stage)
    bond = stage.ledger.balance(f"bond:{robot}")
    stage.service.observe("t", envelope("event", robot, {"type": "command.rejected", "task": "t1",
                                                         "detail": {"command": "award", "why": "no open bid"}}))
    task = stage.market.task("t1")
    assert (task.state, task.robot) == (OPEN, None) and stage.ledger.balance(f"bond:{robot}") == bond
    assert [m.topic for m in stage.service.step()] == [MARKET_TASKS] and stage.service.failed == []


def test_a_robot_that_fails_its_delivery_is_refunded_and_slashed(stage) -> None:
    robot = _awarded(stage)
    bond = stage.ledger.balance(f"bond:{robot}")
    stage.service.observe("t", envelope("event", robot, {"type": "task.failed", "task": "t1"}))
    assert stage.market.task("t1").state == "refunded" and stage.ledger.balance(f"bond:{robot}") < bond


def test_a_task_held_by_a_robot_not_heard_since_the_service_started_expires_without_a_slash(stage, registry) -> None:
    robot = _awarded(stage)  # the robot bid through this service: heard
    bond, reputation = stage.ledger.balance(f"bond:{robot}"), stage.market.reputation(robot)
    restarted = MarketService(stage.market, EnvelopeVerifier(registry, clock=stage.clock), clock=stage.clock,
                              policy=stage.policy, currency="EUR")  # the marketplace came back from a crash
    restarted.resume()
    old = int(stage.clock() * 1000) - 5_000  # queued for it before it started: not news from the robot
    restarted.observe("t", envelope("telemetry", robot, {"t": old, "pose": {"x": 0.0, "y": 0.0}}, at_ms=old))
    stage.clock.advance(stage.policy.task_life_s + 1)
    restarted.step()
    task = stage.market.task("t1")
    assert (task.state, task.outcome) == ("refunded", "expired") and stage.ledger.balance(f"bond:{robot}") == bond
    assert stage.market.reputation(robot) == reputation


def test_a_task_held_by_a_robot_heard_since_expires_with_its_slash(stage) -> None:
    robot = _awarded(stage)
    bond = stage.ledger.balance(f"bond:{robot}")
    stage.clock.advance(stage.policy.task_life_s + 1)
    stage.service.step()
    assert stage.market.task("t1").state == "refunded" and stage.ledger.balance(f"bond:{robot}") < bond
