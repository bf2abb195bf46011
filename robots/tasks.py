"""The delivery task state machine: idle, to pickup, loaded, to dropoff, then delivered or failed.

The agent drives it from what happens (arrived, loaded, unloaded) and from the
signed commands it receives (deliver, abort). Every transition returns the event
the robot publishes, so what the fleet hears is exactly what the machine did;
an impossible transition raises and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from identity.errors import DepaiError


class TaskState(StrEnum):
    IDLE = "idle"
    TO_PICKUP = "to_pickup"
    LOADED = "loaded"
    TO_DROPOFF = "to_dropoff"
    DELIVERED = "delivered"
    FAILED = "failed"


_NEXT: dict[TaskState, frozenset[TaskState]] = {
    TaskState.IDLE: frozenset({TaskState.TO_PICKUP}),
    TaskState.TO_PICKUP: frozenset({TaskState.LOADED, TaskState.FAILED}),
    TaskState.LOADED: frozenset({TaskState.TO_DROPOFF, TaskState.FAILED}),
    TaskState.TO_DROPOFF: frozenset({TaskState.DELIVERED, TaskState.FAILED}),
    TaskState.DELIVERED: frozenset({TaskState.IDLE}),
    TaskState.FAILED: frozenset({TaskState.IDLE}),
}


class IllegalTransition(DepaiError, ValueError):
    """A transition the task life cycle does not allow (e.g. delivered before loaded)."""

    code = "illegal_transition"


@dataclass(frozen=True, slots=True)
class DeliveryTask:
    """One delivery: carry ``parcel`` (``payload_kg``) from ``pickup`` to ``dropoff``."""

    id: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    payload_kg: float
    parcel: str

    @classmethod
    def from_command(cls, task_id: str, args: dict[str, Any]) -> DeliveryTask:
        """The task a ``deliver`` command describes; ValueError names the missing or bad argument."""
        try:
            pickup = (float(args["pickup"]["x"]), float(args["pickup"]["y"]))
            dropoff = (float(args["dropoff"]["x"]), float(args["dropoff"]["y"]))
            payload_kg = float(args.get("payload_kg", 0.0))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"a deliver command needs args pickup{{x,y}} and dropoff{{x,y}}: {err!r}") from None
        if payload_kg < 0:
            raise ValueError(f"payload_kg must not be negative, got {payload_kg}")
        return cls(task_id, pickup, dropoff, payload_kg, str(args.get("parcel", task_id)))


class TaskMachine:
    """Where the robot is in its current task; each move returns the event to publish."""

    def __init__(self) -> None:
        self.state = TaskState.IDLE
        self.task: DeliveryTask | None = None
        self.history: list[tuple[str | None, TaskState]] = []

    @property
    def busy(self) -> bool:
        """Whether a task is under way (it owns the robot's route)."""
        return self.state in (TaskState.TO_PICKUP, TaskState.LOADED, TaskState.TO_DROPOFF)

    @property
    def goal(self) -> tuple[float, float] | None:
        """Where the current task wants the robot to be, or None."""
        if self.task is None:
            return None
        if self.state is TaskState.TO_PICKUP:
            return self.task.pickup
        if self.state in (TaskState.LOADED, TaskState.TO_DROPOFF):
            return self.task.dropoff
        return None

    def _move(self, to: TaskState, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        if to not in _NEXT[self.state]:
            raise IllegalTransition(f"task {self.task.id if self.task else '-'}: {self.state} cannot become {to}")
        self.state = to
        task_id = self.task.id if self.task else None
        self.history.append((task_id, to))
        event: dict[str, Any] = {"type": f"task.{to.value}"}
        if task_id is not None:
            event["task"] = task_id
        if detail:
            event["detail"] = detail
        return event

    def assign(self, task: DeliveryTask) -> dict[str, Any]:
        """Take a new task (only when idle)."""
        if self.state is not TaskState.IDLE:
            raise IllegalTransition(f"busy with {self.task.id if self.task else '-'} ({self.state}); "
                                    f"cannot take {task.id}")
        self.task = task
        return self._move(TaskState.TO_PICKUP)

    def loaded(self) -> dict[str, Any]:
        """The parcel is aboard."""
        return self._move(TaskState.LOADED)

    def depart(self) -> dict[str, Any]:
        """Leave the pickup for the dropoff."""
        return self._move(TaskState.TO_DROPOFF)

    def delivered(self) -> dict[str, Any]:
        """The parcel was handed over at the dropoff."""
        return self._move(TaskState.DELIVERED)

    def fail(self, reason: str) -> dict[str, Any]:
        """The task cannot be finished (aborted, no route, battery, load refused)."""
        return self._move(TaskState.FAILED, {"reason": reason})

    def finish(self) -> None:
        """Close a delivered or failed task and become idle (the closing event already went out)."""
        self._move(TaskState.IDLE)
        self.task = None
