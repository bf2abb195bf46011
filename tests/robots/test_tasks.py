"""The delivery task life cycle: legal moves produce events, illegal ones raise and change nothing."""

import pytest

from robots.tasks import DeliveryTask, IllegalTransition, TaskMachine, TaskState

TASK = DeliveryTask("t-1", (0.0, 0.0), (10.0, 5.0), 2.5, "parcel-1")


def test_a_delivery_walks_every_state_and_says_so() -> None:
    machine = TaskMachine()
    events = [machine.assign(TASK), machine.loaded(), machine.depart(), machine.delivered()]
    assert [e["type"] for e in events] == ["task.to_pickup", "task.loaded", "task.to_dropoff", "task.delivered"]
    assert all(e["task"] == "t-1" for e in events)
    machine.finish()
    assert machine.state is TaskState.IDLE and machine.task is None
    assert [state for _, state in machine.history][-1] is TaskState.IDLE


def test_goal_follows_the_leg() -> None:
    machine = TaskMachine()
    assert machine.goal is None
    machine.assign(TASK)
    assert machine.goal == (0.0, 0.0) and machine.busy
    machine.loaded()
    assert machine.goal == (10.0, 5.0)


@pytest.mark.parametrize("move", ["loaded", "depart", "delivered", "finish"])
def test_moves_out_of_order_raise_and_change_nothing(move: str) -> None:
    machine = TaskMachine()
    with pytest.raises(IllegalTransition):
        getattr(machine, move)()
    assert machine.state is TaskState.IDLE and machine.history == []


def test_a_busy_robot_refuses_a_second_task() -> None:
    machine = TaskMachine()
    machine.assign(TASK)
    with pytest.raises(IllegalTransition, match="busy with t-1"):
        machine.assign(DeliveryTask("t-2", (0, 0), (1, 1), 1.0, "p"))
    assert machine.task == TASK


def test_failure_carries_its_reason() -> None:
    machine = TaskMachine()
    machine.assign(TASK)
    event = machine.fail("no_route")
    assert event == {"type": "task.failed", "task": "t-1", "detail": {"reason": "no_route"}}
    machine.finish()
    assert machine.state is TaskState.IDLE


def test_deliver_command_arguments_are_checked() -> None:
    task = DeliveryTask.from_command("t-9", {"pickup": {"x": 1, "y": 2}, "dropoff": {"x": 3, "y": 4},
                                             "payload_kg": 1.5})
    assert task == DeliveryTask("t-9", (1.0, 2.0), (3.0, 4.0), 1.5, "t-9")
    with pytest.raises(ValueError, match="pickup"):
        DeliveryTask.from_command("t", {"dropoff": {"x": 3, "y": 4}})
    with pytest.raises(ValueError, match="negative"):
        DeliveryTask.from_command("t", {"pickup": {"x": 1, "y": 2}, "dropoff": {"x": 3, "y": 4}, "payload_kg": -1})
