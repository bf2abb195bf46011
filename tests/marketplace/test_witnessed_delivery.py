"""Proof of delivery witnessed by peers: the rule on constructed map.presence verdicts, held receipts that survive
a restart and are paid once, and the market service believing only the map service's signed verdicts."""

from __future__ import annotations

import base64

import pytest

from bus.topics import MAP_GRAPH, MAP_PRESENCE
from identity.envelope import EnvelopeVerifier
from ledger.journal import Ledger
from marketplace.market import AWARDED, REFUNDED, SETTLED, Marketplace
from marketplace.policy import MarketPolicy
from marketplace.proof import Sighting, WitnessRule, countersignature_message, judge_presence
from marketplace.service import MarketService
from tests.marketplace.test_market import DROPOFF, Party, World

RULE = WitnessRule(near_m=10.0, dropoff_window_s=30.0, after_s=5.0, pay_share=0.4, contradict_share=0.2,
                   unseen_allowance=2, impossible_allowance=0, later_seen=2, hold_s=120.0)
PICKUP = (0.0, 0.0)
T0 = 1_000_000  # the award, ms


def _judge(sightings: list[Sighting], *, now_ms: int = T0 + 60_000) -> str:
    verdict = judge_presence(sightings, pickup=PICKUP, dropoff=DROPOFF, awarded_ms=T0, receipt_ms=T0 + 50_000,
                             arrived_ms=T0 + 50_000, now_ms=now_ms, rule=RULE)
    return "held" if verdict.held else verdict.reason.split(":")[0] if not verdict.accepted else \
        "paid:" + verdict.reason.split(":")[0]


def _seen(t_s: float, at: tuple[float, float]) -> Sighting:
    return Sighting(T0 + int(t_s * 1000), at[0], at[1], "seen")


def test_seen_leaving_the_pickup_and_reaching_the_dropoff_is_paid_at_once() -> None:
    assert _judge([_seen(2, (3.0, 1.0)), _seen(45, (45.0, 18.0))]) == "paid:witnessed"


def test_seen_only_on_one_end_or_not_at_all_is_held_then_refused_unwitnessed() -> None:
    assert _judge([_seen(45, (45.0, 18.0))]) == "held"
    assert _judge([_seen(2, (3.0, 1.0))]) == "held"
    assert _judge([]) == "held"
    assert _judge([], now_ms=T0 + 50_000 + 119_999) == "held"
    assert _judge([], now_ms=T0 + 50_000 + 120_000) == "unwitnessed"
    # seen too early to count as reaching the dropoff (more than 30 s before the receipt)
    assert _judge([_seen(2, (3.0, 1.0)), _seen(19, (45.0, 18.0))]) == "held"


def test_later_sightings_pay_a_held_receipt_unless_peers_mostly_saw_through_it() -> None:
    later = [_seen(45, (45.0, 18.0)), _seen(80, (90.0, 20.0)), _seen(90, (95.0, 20.0))]
    assert _judge(later[:2]) == "held"  # one sighting since the delivery: not yet enough
    assert _judge(later) == "paid:witnessed_later"
    assert _judge(later[1:] + [_seen(100, (99.0, 20.0))]) == "held"  # never seen on the task: a ghost at a busy spot
    through = [Sighting(T0 + 60_000 + 1000 * i, 100.0, 20.0, "unseen") for i in range(5)]
    assert _judge(later + through) == "held"  # 3 seen of 8 since the award: a ghost a peer brushed by


def test_seeing_the_robot_only_rarely_does_not_pay_at_once() -> None:
    ends = [_seen(2, (3.0, 1.0)), _seen(45, (45.0, 18.0))]
    unseen = [Sighting(T0 + 1000 * i, 10.0 * i, 0.0, "unseen") for i in range(10, 14)]
    assert _judge(ends + unseen) == "held"  # 2 seen of 6: seen at both ends, but not where it said most of the way


def test_peers_seeing_through_the_claimed_poses_contradict_it_beyond_the_allowance() -> None:
    unseen = [Sighting(T0 + 1000 * i, 10.0 * i, 0.0, "unseen") for i in range(1, 4)]
    assert _judge(unseen[:2]) == "held"  # two false unseens: within the honest noise allowance
    assert _judge(unseen) == "contradicted"
    witnessed = [_seen(2, (3.0, 1.0)), _seen(45, (45.0, 18.0)), _seen(30, (30.0, 10.0))]
    assert _judge(unseen + witnessed) == "paid:witnessed"  # as often seen as not: noise, not a ghost
    assert _judge([Sighting(T0 + 9_000, 20.0, 5.0, "impossible"), *witnessed]) == "contradicted"
    before_award = [Sighting(T0 - 1000 * i, 0.0, 0.0, "unseen") for i in range(1, 9)]
    assert _judge(before_award) == "held"  # another task's trail does not judge this one


@pytest.fixture
def world(registry, clock, database_url):
    made = World(registry, clock, database_url)
    made.market.witness = RULE
    yield made
    made.ledger.close()


def _awarded_and_delivered(world: World, task_id: str = "t1", deadline_s: float = 600):
    world.post(task_id, deadline_s=deadline_s)
    world.bid(world.robots[0], task_id)
    world.market.award_to(task_id, world.robots[0].did)
    world.clock.advance(20)
    world.at_dropoff(world.robots[0])
    return world.receipt(world.robots[0], task_id)


def _presence(world: World, verdict: str, at: tuple[float, float], *, dt_s: float = 0.0) -> dict:
    return {"robot": world.robots[0].did, "t": int((world.clock() + dt_s) * 1000), "x": at[0], "y": at[1],
            "verdict": verdict, "by": [world.robots[1].did]}


def test_a_witnessed_delivery_is_paid_when_its_receipt_arrives(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.clock.advance(1)
    world.market.record_presence([_presence(world, "seen", PICKUP)])
    world.clock.advance(20)
    world.market.record_presence([_presence(world, "seen", DROPOFF)])
    world.at_dropoff(world.robots[0])
    assert world.receipt(world.robots[0]).state == SETTLED and world.market.held() == {}


def test_a_held_receipt_survives_a_restart_and_is_paid_once(world, registry) -> None:
    task = _awarded_and_delivered(world, deadline_s=30)
    assert task.state == AWARDED and list(world.market.held()) == ["t1"]
    owner = world.balance(f"owner:{world.owner.did}")
    world.clock.advance(20)  # past the task's deadline: a held receipt was delivered in time, so not expired
    assert world.market.expire() == [] and world.market.task("t1").state == AWARDED
    reopened = Marketplace(world.ledger, None, clock=world.clock, witness=RULE)  # the process was killed
    assert list(reopened.held()) == ["t1"] and reopened.judge_held() == []
    reopened.record_presence([_presence(world, "seen", (25.0, 10.0), dt_s=-30)])  # on its way, not at the ends
    assert reopened.judge_held() == []
    reopened.record_presence([_presence(world, "seen", (80.0, 20.0), dt_s=dt) for dt in (1, 2)])
    done = reopened.judge_held()
    assert [(t.id, t.state, t.outcome) for t in done] == [("t1", SETTLED, "delivered")]
    assert reopened.judge_held() == [] and reopened.held() == {}
    assert world.balance(f"owner:{world.owner.did}") == owner + 570
    assert world.ledger.verify() == []


def test_an_unwitnessed_receipt_is_refunded_after_the_hold_without_a_slash(world) -> None:
    _awarded_and_delivered(world)
    world.clock.advance(RULE.hold_s - 1)
    assert world.market.judge_held() == []
    world.clock.advance(1)
    [task] = world.market.judge_held()
    assert task.state == REFUNDED and task.outcome.startswith("unwitnessed")
    assert world.balance(f"bond:{world.robots[0].did}") == 500
    assert world.market.records()[world.robots[0].did]["faked"] == 0


def test_a_contradicted_receipt_is_a_fake_refunded_and_slashed(world) -> None:
    _awarded_and_delivered(world)
    world.market.record_presence([_presence(world, "unseen", (40.0 + i, 20.0), dt_s=-i) for i in range(1, 4)])
    [task] = world.market.judge_held()
    assert task.state == REFUNDED and task.outcome.startswith("faked: contradicted")
    assert world.balance(f"bond:{world.robots[0].did}") == 0
    assert world.market.records()[world.robots[0].did]["faked"] == 1


def test_verdicts_older_than_an_hour_are_pruned_once_a_minute(world) -> None:
    robot = world.robots[0].did
    world.market.record_presence([_presence(world, "seen", PICKUP)])
    world.clock.advance(3_590)
    world.market.record_presence([_presence(world, "unseen", PICKUP)])  # pruned: nothing was an hour old
    world.clock.advance(20)
    world.market.record_presence([])  # the seen is an hour old now, but the last pruning was 20 s ago
    assert [s.verdict for s in world.market.sightings(robot, 0)] == ["seen", "unseen"]
    world.clock.advance(40)
    world.market.record_presence([])
    assert [s.verdict for s in world.market.sightings(robot, 0)] == ["unseen"]


def test_the_recipients_countersignature_still_pays_at_once(world) -> None:
    world.post()
    world.bid(world.robots[0])
    world.market.award_to("t1", world.robots[0].did)
    world.at_dropoff(world.robots[0])
    t_ms = int(world.clock() * 1000)
    signature = world.customer.key.sign(countersignature_message("t1", world.robots[0].did, t_ms))
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert world.receipt(world.robots[0], recipient=encoded).state == SETTLED and world.market.held() == {}


def test_the_service_believes_only_the_map_services_signed_presence(registry, clock, tmp_path) -> None:
    map_service, impostor, robot = Party(registry, clock), Party(registry, clock), Party(registry, clock)
    clock.advance(1)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", Party(registry, clock).key, clock=clock)
    try:
        market = Marketplace(ledger, Party(registry, clock).signer, clock=clock, witness=RULE)
        service = MarketService(market, EnvelopeVerifier(registry, clock=clock), clock=clock, policy=MarketPolicy(),
                                map_services=[map_service.did])
        clock.advance(1)
        body = {"version": 1, "verdicts": [{"robot": robot.did, "t": int(clock() * 1000), "x": 1.0, "y": 2.0,
                                            "verdict": "seen", "by": [impostor.did]}]}
        service.presence(MAP_PRESENCE, impostor.signer.seal("map.presence", body))
        service.presence(MAP_GRAPH, map_service.signer.seal("map.presence", body))
        service.presence(MAP_PRESENCE, map_service.signer.seal("map.presence", {**body, "version": -1}))
        assert service.presence_refused == {"untrusted_sender": 1, "wrong_topic": 1, "schema_invalid": 1}
        assert market.sightings(robot.did, 0) == []
        service.presence(MAP_PRESENCE, map_service.signer.seal("map.presence", body))
        assert service.sightings == 1 and [s.verdict for s in market.sightings(robot.did, 0)] == ["seen"]
    finally:
        ledger.close()
