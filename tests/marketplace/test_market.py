"""The marketplace: escrow, bids, awards, proof of delivery and settlement, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import pytest

from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.lifecycle import create_identity
from ledger.journal import Ledger
from marketplace.market import AWARDED, OPEN, REFUNDED, SETTLED, MarketError, Marketplace
from marketplace.proof import countersignature_message

DROPOFF = (50.0, 20.0)


class Party:
    """A registered DID that signs envelopes."""

    def __init__(self, registry, clock) -> None:
        self.key = Signer.generate()
        self.did = create_identity(registry, self.key).did
        self.signer = EnvelopeSigner(self.key, self.did, clock=clock)


class World:
    """A marketplace with a funded customer, two robots of one owner, and a verifier for what they send."""

    def __init__(self, registry, clock, url: str) -> None:
        self.clock = clock
        self.customer, self.owner = Party(registry, clock), Party(registry, clock)
        self.robots = [Party(registry, clock) for _ in range(2)]
        self.stranger = Party(registry, clock)
        clock.advance(1)
        self.ledger = Ledger.open(url, Signer.generate(), clock=clock)
        self.market = Marketplace(self.ledger, Party(registry, clock).signer, fee_bps=500, clock=clock,
                                  recipient_keys=lambda did: self.customer.key.public_key if did == self.customer.did
                                  else None)
        self.verifier = EnvelopeVerifier(registry, clock=clock)
        self.market.fund(self.customer.did, 10_000, "EUR", key="c1")
        self.market.fund(self.owner.did, 2_000, "EUR", key="o1", role="owner")
        for robot in self.robots:
            self.market.register_robot(robot.did, self.owner.did, 500, "EUR")

    def signed(self, party: Party, kind: str, body: dict):
        return self.verifier.verify(party.signer.seal(kind, body))

    def post(self, task_id: str = "t1", max_price: int = 1_000, deadline_s: float = 600):
        body = {"id": task_id, "customer": self.customer.did, "pickup": {"x": 0.0, "y": 0.0},
                "dropoff": {"x": DROPOFF[0], "y": DROPOFF[1]}, "deadline": int((self.clock() + deadline_s) * 1000),
                "max_price": max_price, "currency": "EUR", "payload_kg": 2.0}
        return self.market.post(self.signed(self.customer, "task", body))

    def bid(self, robot: Party, task_id: str = "t1", price: int = 600, eta_s: float = 120):
        self.market.bid(self.signed(robot, "bid", {"task": task_id, "price": price, "currency": "EUR",
                                                   "eta_ms": int(eta_s * 1000)}))

    def at_dropoff(self, robot: Party, x: float = DROPOFF[0], y: float = DROPOFF[1]) -> None:
        self.clock.advance(0.5)
        body = {"t": int(self.clock() * 1000), "pose": {"x": x, "y": y, "theta": 0.0}, "twist": {"v": 0, "w": 0},
                "battery": 0.8}
        self.market.observe("t", self.signed(robot, "telemetry", body))

    def receipt(self, robot: Party, task_id: str = "t1", x: float = DROPOFF[0], y: float = DROPOFF[1],
                recipient: str | None = None):
        body = {"task": task_id, "t": int(self.clock() * 1000), "pose": {"x": x, "y": y, "theta": 0.0}}
        if recipient is not None:
            body["recipient"] = recipient
        return self.market.deliver(self.signed(robot, "receipt", body))

    def balance(self, account: str) -> int:
        return self.ledger.balance(account)


@pytest.fixture
def world(registry, clock, database_url):
    made = World(registry, clock, database_url)
    yield made
    made.ledger.close()


def test_posting_locks_the_reward_in_escrow_once(world) -> None:
    task = world.post()
    assert task.state == OPEN and world.balance("escrow:t1") == 1_000 and world.balance(
        f"customer:{world.customer.did}") == 9_000
    size = world.ledger.size()
    assert world.post().state == OPEN and world.ledger.size() == size  # posted once: no second entry of any kind
    assert len([entry for entry in world.ledger.entries() if entry.postings]) == 5  # 2 deposits, 2 bonds, 1 escrow


def test_a_delivery_settles_once_to_owner_fee_and_refund(world) -> None:
    world.post()
    world.bid(world.robots[0], price=700)
    world.bid(world.robots[1], price=600)
    award = world.verifier.verify(world.market.award("t1", "cheapest"))
    assert award.body["robot"] == world.robots[1].did and award.body["price"] == 600
    assert world.market.task("t1").state == AWARDED
    world.at_dropoff(world.robots[1])
    assert world.receipt(world.robots[1]).state == SETTLED
    assert world.balance(f"owner:{world.owner.did}") == 2_000 - 1_000 + 570  # 600 less a 5 % fee
    assert world.balance("fees:EUR") == 30 and world.balance("escrow:t1") == 0
    assert world.balance(f"customer:{world.customer.did}") == 9_400
    with pytest.raises(MarketError) as refused:
        world.receipt(world.robots[1])
    assert refused.value.code == "not_awarded" and world.balance("fees:EUR") == 30
    assert world.ledger.verify() == []


def test_listings_counts_and_records_for_a_dashboard(world) -> None:
    world.post("t1", deadline_s=600)
    world.post("t2", deadline_s=900)
    world.post("t3", deadline_s=300)
    world.bid(world.robots[0], "t2")
    world.market.award("t2", "cheapest")
    assert world.market.counts() == {"open": 2, "awarded": 1, "settled": 0, "refunded": 0}
    assert [t.id for t in world.market.recent()] == ["t2", "t1", "t3"]  # latest deadline first
    assert [t.id for t in world.market.recent("open", limit=1)] == ["t1"]
    assert [t.id for t in world.market.recent(robot=world.robots[0].did)] == ["t2"]
    records = world.market.records()
    assert set(records) == {r.did for r in world.robots}
    assert records[world.robots[0].did] == {"owner": world.owner.did, "delivered": 0, "failed": 0, "faked": 0}
    read_only = Marketplace(world.ledger, None)
    assert read_only.counts() == world.market.counts()
    world.bid(world.robots[1], "t1")
    with pytest.raises(MarketError) as refused:
        read_only.award("t1", "cheapest")
    assert refused.value.code == "read_only" and world.market.task("t1").state == OPEN


def test_a_receipt_far_from_the_dropoff_is_a_fake_refunded_and_slashed(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.at_dropoff(world.robots[0], 0.0, 0.0)  # its trail says it stayed at the depot
    task = world.receipt(world.robots[0], x=DROPOFF[0], y=DROPOFF[1])
    assert task.state == REFUNDED and task.outcome.startswith("faked: no_trail")
    assert world.balance(f"bond:{world.robots[0].did}") == 0
    assert world.balance(f"customer:{world.customer.did}") == 10_000 + 500
    assert world.market.reputation(world.robots[0].did) < world.market.reputation(world.robots[1].did)


def test_a_receipt_with_a_pose_nowhere_near_the_dropoff_is_refused(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.at_dropoff(world.robots[0])
    assert world.receipt(world.robots[0], x=400.0, y=400.0).outcome.startswith("faked: far_from_dropoff")


def test_a_receipt_from_a_robot_not_awarded_changes_nothing(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.at_dropoff(world.robots[1])
    with pytest.raises(MarketError) as refused:
        world.receipt(world.robots[1])
    assert refused.value.code == "not_awarded" and world.market.task("t1").state == AWARDED


def test_a_recipients_countersignature_is_checked(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.at_dropoff(world.robots[0])
    forged = base64.urlsafe_b64encode(Signer.generate().sign(b"x")).decode().rstrip("=")
    assert world.receipt(world.robots[0], recipient=forged).outcome == "faked: bad_countersignature: the " \
        "recipient's signature does not verify"
    world.post("t2")
    world.bid(world.robots[1], "t2")
    world.market.award_to("t2", world.robots[1].did)
    world.at_dropoff(world.robots[1])
    t_ms = int(world.clock() * 1000)
    good = world.customer.key.sign(countersignature_message("t2", world.robots[1].did, t_ms))
    assert world.receipt(world.robots[1], "t2",
                         recipient=base64.urlsafe_b64encode(good).decode().rstrip("=")).state == SETTLED


def test_bids_from_strangers_above_the_price_or_on_closed_tasks_are_refused(world) -> None:
    world.post()
    for robot, price, code in ((world.stranger, 500, "unknown_robot"), (world.robots[0], 1_001, "bad_price")):
        with pytest.raises(MarketError) as refused:
            world.bid(robot, price=price)
        assert refused.value.code == code
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    with pytest.raises(MarketError) as refused:
        world.bid(world.robots[1])
    assert refused.value.code == "not_open"


def test_an_award_is_single_use(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.bid(world.robots[1])
    world.market.award_to("t1", world.robots[0].did)
    with pytest.raises(MarketError) as refused:
        world.market.award_to("t1", world.robots[1].did)
    assert refused.value.code == "not_open" and world.market.task("t1").robot == world.robots[0].did


def test_a_task_for_someone_else_or_beyond_the_customers_funds_is_refused(world) -> None:
    body = {"id": "t9", "customer": world.customer.did, "pickup": {"x": 0.0, "y": 0.0},
            "dropoff": {"x": 1.0, "y": 1.0}, "deadline": int((world.clock() + 60) * 1000), "max_price": 10,
            "currency": "EUR", "payload_kg": 1.0}
    with pytest.raises(MarketError) as refused:
        world.market.post(world.signed(world.stranger, "task", body))
    assert refused.value.code == "not_the_customer"
    with pytest.raises(MarketError) as refused:
        world.post("t3", max_price=1_000_000)
    assert refused.value.code == "insufficient_funds" and world.market.tasks() == []


def test_expiry_and_failure_refund_the_customer(world) -> None:
    world.post("t1", deadline_s=60)
    world.post("t2", deadline_s=60)
    world.bid(world.robots[0], "t2")
    world.market.award_to("t2", world.robots[0].did)
    world.post("t3", deadline_s=600)
    world.bid(world.robots[1], "t3")
    world.market.award_to("t3", world.robots[1].did)
    assert world.market.fail("t3", world.robots[1].did, "no_route").state == REFUNDED
    world.clock.advance(61)
    assert sorted(t.id for t in world.market.expire()) == ["t1", "t2"]
    assert world.market.expire() == []
    assert world.balance(f"customer:{world.customer.did}") == 10_000 + 50 + 50  # refunds plus two slashes
    assert all(world.balance(f"escrow:{t}") == 0 for t in ("t1", "t2", "t3"))
    assert world.ledger.verify() == []


def test_a_receipt_with_no_telemetry_to_judge_it_by_changes_nothing(world) -> None:
    """After a restart the trail is empty: the receipt waits for evidence instead of slashing an honest robot."""
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    with pytest.raises(MarketError) as refused:
        world.receipt(world.robots[0])
    assert refused.value.code == "no_evidence" and world.market.task("t1").state == AWARDED
    world.at_dropoff(world.robots[0])
    assert world.receipt(world.robots[0]).state == SETTLED


def test_receipts_settled_together_keep_their_own_outcomes(world) -> None:
    """A group commit: one good receipt, one fake, one from the wrong robot; each ends as it should."""
    for task_id, robot in (("t1", 0), ("t2", 1), ("t3", 0)):
        world.post(task_id)
        world.bid(world.robots[robot], task_id)
        world.market.award_to(task_id, world.robots[robot].did)
    world.at_dropoff(world.robots[0])
    world.at_dropoff(world.robots[1], 0.0, 0.0)
    t_ms = int(world.clock() * 1000)

    def receipt(robot: int, task_id: str):
        return world.signed(world.robots[robot], "receipt", {"task": task_id, "t": t_ms,
                                                             "pose": {"x": DROPOFF[0], "y": DROPOFF[1], "theta": 0}})

    good, fake, wrong = world.market.deliver_many([receipt(0, "t1"), receipt(1, "t2"), receipt(1, "t3")])
    assert good.state == SETTLED and fake.state == REFUNDED and fake.outcome.startswith("faked")
    assert isinstance(wrong, MarketError) and wrong.code == "not_awarded"
    assert world.market.task("t3").state == AWARDED and world.ledger.verify() == []


def test_a_retired_robot_bids_no_more_and_its_bond_goes_home(world) -> None:
    world.post()
    owner_before = world.balance(f"owner:{world.owner.did}")
    assert world.market.retire_robot(world.robots[0].did) == 500
    assert world.balance(f"owner:{world.owner.did}") == owner_before + 500
    with pytest.raises(MarketError) as refused:
        world.bid(world.robots[0])
    assert refused.value.code == "unknown_robot"
    with pytest.raises(MarketError):
        world.market.retire_robot(world.robots[0].did)
