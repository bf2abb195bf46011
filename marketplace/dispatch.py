"""Direct dispatch: each open order goes to the nearest idle robot, as a signed ``deliver`` command.

The dispatcher is a fleet service. It learns where robots are and what they do
only from verified messages (it is an ingest consumer), and it speaks only in
signed commands on each robot's command topic. An order whose robot fails or
never acknowledges goes back in the queue. (The auction of bids and awards
replaces the choice of robot in the marketplace proper; the rest stays.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import topic_root
from identity.envelope import Envelope, EnvelopeSigner

ACK_TIMEOUT_S = 15.0  # a robot that has not shown the task in its telemetry by then did not get it
MIN_BATTERY = 0.35
MAX_ATTEMPTS = 3


class OrderLike(Protocol):
    """What the dispatcher needs of an order."""

    id: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    payload_kg: float


@dataclass(slots=True)
class RobotView:
    """What the dispatcher believes about one robot, from its latest verified telemetry."""

    x: float
    y: float
    battery: float
    state: str
    task: str | None
    seen_s: float


@dataclass(slots=True)
class _Assignment:
    order: OrderLike
    robot: str
    sent_s: float
    acknowledged: bool = False
    attempts: int = 1


class Dispatcher:
    """Assigns orders to robots and follows them to delivery or failure."""

    def __init__(self, signer: EnvelopeSigner, *, clock: Callable[[], float], stale_s: float = 10.0) -> None:
        self.signer = signer
        self.clock = clock
        self.stale_s = stale_s
        self.robots: dict[str, RobotView] = {}
        self.delivered: list[str] = []
        self.failed: list[str] = []
        self._open: deque[tuple[OrderLike, int]] = deque()
        self._assigned: dict[str, _Assignment] = {}
        self._lock = threading.Lock()

    @property
    def did(self) -> str:
        """The service DID robots must trust to take its commands."""
        return self.signer.did

    def offer(self, order: OrderLike) -> None:
        """Queue a new order for the next free robot."""
        with self._lock:
            self._open.append((order, 1))

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: telemetry updates the robot's view; task events close assignments."""
        body, robot = envelope.body, envelope.issuer
        with self._lock:
            if envelope.kind == "telemetry":
                pose = body["pose"]
                self.robots[robot] = RobotView(pose["x"], pose["y"], body["battery"], body.get("state", "idle"),
                                               body.get("task"), self.clock())
                held = self._assigned.get(body.get("task", ""))
                if held is not None and held.robot == robot:
                    held.acknowledged = True
            elif envelope.kind == "event" and body.get("task") in self._assigned:
                self._on_task_event(robot, body)

    def _on_task_event(self, robot: str, body: dict) -> None:
        held = self._assigned[body["task"]]
        if held.robot != robot:
            return
        kind = body["type"]
        if kind == "task.delivered":
            del self._assigned[body["task"]]
            self.delivered.append(body["task"])
        elif kind in ("task.failed", "command.rejected"):
            del self._assigned[body["task"]]
            self._requeue(held)
        else:
            held.acknowledged = True

    def _requeue(self, held: _Assignment) -> None:
        if held.attempts >= MAX_ATTEMPTS:
            self.failed.append(held.order.id)
        else:
            self._open.appendleft((held.order, held.attempts + 1))

    @property
    def open_orders(self) -> int:
        """Orders waiting for a robot."""
        return len(self._open)

    @property
    def in_progress(self) -> int:
        """Orders a robot is working on."""
        return len(self._assigned)

    def step(self) -> list[Outgoing]:
        """The deliver commands to send now: one per open order that has a free robot."""
        now = self.clock()
        with self._lock:
            for task_id, held in list(self._assigned.items()):
                if not held.acknowledged and now - held.sent_s > ACK_TIMEOUT_S:
                    del self._assigned[task_id]
                    self._requeue(held)
            busy = {held.robot for held in self._assigned.values()}
            free = {did: view for did, view in self.robots.items()
                    if did not in busy and view.state == "idle" and view.battery >= MIN_BATTERY
                    and now - view.seen_s <= self.stale_s}
            commands = []
            while self._open and free:
                order, attempts = self._open.popleft()
                px, py = order.pickup
                robot = min(free, key=lambda did: abs(free[did].x - px) + abs(free[did].y - py))
                del free[robot]
                self._assigned[order.id] = _Assignment(order, robot, now, attempts=attempts)
                commands.append(self._deliver(robot, order))
        return commands

    def _deliver(self, robot: str, order: OrderLike) -> Outgoing:
        spec = BY_KIND["command"]
        body = {"to": robot, "type": "deliver", "task": order.id, "args": {
            "pickup": {"x": order.pickup[0], "y": order.pickup[1]},
            "dropoff": {"x": order.dropoff[0], "y": order.dropoff[1]},
            "payload_kg": order.payload_kg, "parcel": f"parcel-{order.id}"}}
        topic = f"{topic_root(robot)}/{spec.channel}"
        return Outgoing(topic, self.signer.seal("command", body), spec.qos, spec.retain)
