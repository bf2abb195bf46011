"""Direct dispatch: nearest idle robot gets a signed deliver command; failures and silence requeue."""

import pytest

from identity.envelope import Envelope, EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.lifecycle import create_identity
from marketplace.dispatch import ACK_TIMEOUT_S, MAX_ATTEMPTS, REASSIGN_EVERY_S, REASSIGN_GAIN_M, Dispatcher
from sim.demand import Order

NEAR, FAR = "did:peaq:5NearRobot", "did:peaq:5FarRobot"


def _envelope(kind: str, issuer: str, body: dict) -> Envelope:
    return Envelope(kind, issuer, "key-1", 1, 0, 1, body, b"", b"")


def _telemetry(robot: str, x: float, state: str = "idle", battery: float = 0.9, task: str | None = None) -> Envelope:
    body = {"t": 0, "pose": {"x": x, "y": 0.0, "theta": 0.0}, "twist": {"v": 0, "w": 0},
            "battery": battery, "state": state}
    if task:
        body["task"] = task
    return _envelope("telemetry", robot, body)


@pytest.fixture
def dispatcher(registry, clock):
    key = Signer.generate()
    did = create_identity(registry, key).did
    clock.advance(1)
    return Dispatcher(EnvelopeSigner(key, did, clock=clock), clock=clock)


ORDER = Order("order-1", (1.0, 0.0), (50.0, 0.0), 2.0, 0.0)


def test_the_nearest_idle_robot_gets_a_signed_command(dispatcher, registry, clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0))
    dispatcher.observe("t", _telemetry(FAR, 90.0))
    dispatcher.offer(ORDER)
    [command] = dispatcher.step()
    assert command.topic.endswith("/5NearRobot/cmd")
    envelope = EnvelopeVerifier(registry, clock=clock).verify(command.payload, kinds=["command"])
    assert envelope.issuer == dispatcher.did
    assert envelope.body["to"] == NEAR and envelope.body["type"] == "deliver"
    assert envelope.body["args"]["pickup"] == {"x": 1.0, "y": 0.0}
    assert dispatcher.step() == [] and dispatcher.in_progress == 1


def test_busy_low_battery_and_silent_robots_are_passed_over(dispatcher, clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0, state="to_pickup", task="other"))
    dispatcher.observe("t", _telemetry(FAR, 90.0, battery=0.1))
    dispatcher.offer(ORDER)
    assert dispatcher.step() == []
    dispatcher.observe("t", _telemetry(FAR, 90.0))
    clock.advance(dispatcher.stale_s + 1)
    assert dispatcher.step() == [] and dispatcher.open_orders == 1


def test_delivery_closes_the_order(dispatcher) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0))
    dispatcher.offer(ORDER)
    dispatcher.step()
    dispatcher.observe("e", _envelope("event", FAR, {"t": 0, "type": "task.delivered", "task": "order-1"}))
    assert dispatcher.delivered == []  # only the assigned robot can close it
    dispatcher.observe("e", _envelope("event", NEAR, {"t": 0, "type": "task.delivered", "task": "order-1"}))
    assert dispatcher.delivered == ["order-1"] and dispatcher.in_progress == 0


def test_a_failed_order_goes_back_and_is_given_up_after_its_attempts(dispatcher) -> None:
    dispatcher.offer(ORDER)
    for attempt in range(MAX_ATTEMPTS):
        dispatcher.observe("t", _telemetry(NEAR, 2.0))
        assert len(dispatcher.step()) == 1, attempt
        dispatcher.observe("e", _envelope("event", NEAR, {"t": 0, "type": "task.failed", "task": "order-1"}))
    assert dispatcher.failed == ["order-1"] and dispatcher.open_orders == 0


def test_an_unacknowledged_command_is_requeued(dispatcher, clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0))
    dispatcher.offer(ORDER)
    dispatcher.step()
    clock.advance(ACK_TIMEOUT_S + 1)
    dispatcher.observe("t", _telemetry(FAR, 5.0))
    [again] = dispatcher.step()
    assert again.topic.endswith("/5FarRobot/cmd")


MID = "did:peaq:5MidRobot"


def _goto_of(command, registry, clock) -> dict:
    body = EnvelopeVerifier(registry, clock=clock).verify(command.payload, kinds=["command"]).body
    assert body["type"] == "goto"
    return body


def test_a_survey_sends_the_nearest_idle_robot_that_is_not_a_witness_first(dispatcher, registry, clock) -> None:
    for robot, x in ((NEAR, 2.0), (MID, 30.0), (FAR, 90.0)):
        dispatcher.observe("t", _telemetry(robot, x))
    dispatcher.offer(ORDER)
    assert dispatcher.survey("survey-a-b", [(10.0, 0.0), (60.0, 0.0)], exclude=[NEAR])
    assert not dispatcher.survey("survey-a-b", [(10.0, 0.0)])  # one at a time per key
    survey, order = dispatcher.step()
    goto = _goto_of(survey, registry, clock)
    assert goto["to"] == MID and goto["task"] == "survey-a-b" and goto["args"] == {"x": 10.0, "y": 0.0}
    assert order.topic.endswith("/5NearRobot/cmd")  # orders get the robots the surveys left
    assert dispatcher.open_surveys == 1 and dispatcher.step() == []


def test_a_survey_with_a_route_cost_sends_the_cheapest_robot_and_never_one_that_cannot_get_there(
        dispatcher, registry, clock) -> None:
    """A closed road between NEAR and the vantage points: NEAR is nearest as the crow flies, but cannot get there."""
    for robot, x in ((NEAR, 2.0), (MID, 30.0), (FAR, 90.0)):
        dispatcher.observe("t", _telemetry(robot, x))
    asked: list[tuple[tuple[float, float], list[tuple[float, float]]]] = []
    by_road = {(10.0, 0.0): {2.0: None, 30.0: 120.0, 90.0: 150.0}, (60.0, 0.0): {2.0: None, 30.0: 130.0, 90.0: 35.0}}

    def cost(point: tuple[float, float], starts: list[tuple[float, float]]) -> list[float | None]:
        asked.append((point, starts))
        return [by_road[point][x] for x, _ in starts]

    dispatcher.survey("survey-a-b", [(10.0, 0.0), (60.0, 0.0)], cost=cost)
    [command] = dispatcher.step()
    goto = _goto_of(command, registry, clock)
    assert goto["to"] == FAR and goto["args"] == {"x": 60.0, "y": 0.0}  # by Manhattan it would be NEAR to (10, 0)
    assert [point for point, _ in asked] == [(10.0, 0.0), (60.0, 0.0)]  # one call per vantage point, all robots
    assert sorted(asked[0][1]) == [(2.0, 0.0), (30.0, 0.0), (90.0, 0.0)]
    dispatcher.survey("survey-c-d", [(10.0, 0.0)], cost=lambda point, starts: [None] * len(starts))
    assert dispatcher.step() == [] and dispatcher.open_surveys == 2  # nobody can get there: it waits


def test_a_survey_under_way_goes_to_an_idle_robot_whose_route_became_much_shorter(dispatcher, registry,
                                                                                  clock) -> None:
    """MID set off; then a road closed on its way (its trip became a detour): FAR, now idle, goes instead."""
    metres = {30.0: 50.0}

    def cost(point: tuple[float, float], starts: list[tuple[float, float]]) -> list[float | None]:
        return [metres.get(x) for x, _ in starts]

    dispatcher.observe("t", _telemetry(MID, 30.0))
    dispatcher.survey("survey-a-b", [(10.0, 0.0)], cost=cost)
    assert _goto_of(dispatcher.step()[0], registry, clock)["to"] == MID
    dispatcher.observe("t", _telemetry(MID, 25.0, state="goto"))
    dispatcher.observe("t", _telemetry(FAR, 90.0))
    metres.update({25.0: 200.0, 90.0: 200.0 - REASSIGN_GAIN_M})  # not enough shorter
    clock.advance(REASSIGN_EVERY_S)
    assert dispatcher.step() == []
    metres[90.0] = 35.0
    assert dispatcher.step() == []  # reconsidered only every REASSIGN_EVERY_S
    clock.advance(REASSIGN_EVERY_S)
    [command] = dispatcher.step()
    assert _goto_of(command, registry, clock)["to"] == FAR and dispatcher.open_surveys == 1
    dispatcher.observe("e", _envelope("event", MID, {"t": 0, "type": "goto.arrived"}))
    assert dispatcher.open_surveys == 1  # no longer MID's survey
    dispatcher.observe("e", _envelope("event", FAR, {"t": 0, "type": "goto.arrived"}))
    assert dispatcher.surveyed == ["survey-a-b"]


def test_a_survey_ends_when_the_robot_arrives_and_passes_over_charging_robots(dispatcher, registry, clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0, state="charging"))
    dispatcher.survey("survey-a-b", [(10.0, 0.0)])
    assert dispatcher.step() == []  # a goto would take it off its charger
    dispatcher.observe("t", _telemetry(FAR, 90.0))
    [command] = dispatcher.step()
    assert _goto_of(command, registry, clock)["to"] == FAR
    dispatcher.observe("t", _telemetry(FAR, 80.0, state="goto"))
    dispatcher.observe("e", _envelope("event", NEAR, {"t": 0, "type": "goto.arrived"}))
    assert dispatcher.open_surveys == 1  # not its survey
    dispatcher.observe("e", _envelope("event", FAR, {"t": 0, "type": "goto.arrived"}))
    assert dispatcher.open_surveys == 0 and dispatcher.surveyed == ["survey-a-b"]


def test_a_refused_or_unacknowledged_survey_goes_to_another_robot(dispatcher, registry, clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0))
    dispatcher.survey("survey-a-b", [(10.0, 0.0)])
    [first] = dispatcher.step()
    dispatcher.observe("e", _envelope("event", NEAR, {"t": 0, "type": "command.rejected", "task": "survey-a-b"}))
    [again] = dispatcher.step()
    assert _goto_of(again, registry, clock)["to"] == NEAR
    clock.advance(ACK_TIMEOUT_S + 1)
    dispatcher.observe("t", _telemetry(FAR, 90.0))
    dispatcher.observe("t", _telemetry(NEAR, 2.0, battery=0.1))
    [third] = dispatcher.step()
    assert _goto_of(third, registry, clock)["to"] == FAR


def test_a_robot_that_leaves_goto_ends_its_survey_and_a_cancelled_survey_sends_nobody(dispatcher, registry,
                                                                                      clock) -> None:
    dispatcher.observe("t", _telemetry(NEAR, 2.0))
    dispatcher.survey("survey-a-b", [(10.0, 0.0)])
    dispatcher.step()
    dispatcher.observe("t", _telemetry(NEAR, 5.0, state="goto"))
    dispatcher.observe("t", _telemetry(NEAR, 6.0, state="idle"))  # e.g. no route: it gave up
    assert dispatcher.open_surveys == 0
    dispatcher.survey("survey-c-d", [(10.0, 0.0)])
    assert dispatcher.cancel_survey("survey-c-d") and not dispatcher.cancel_survey("survey-c-d")
    assert dispatcher.step() == []
    with pytest.raises(ValueError, match="vantage point"):
        dispatcher.survey("survey-e-f", [])
