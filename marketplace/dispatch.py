"""Direct dispatch: each open order goes to the nearest idle robot, as a signed ``deliver`` command.

The dispatcher is a fleet service. It learns where robots are and what they do
only from verified messages (it is an ingest consumer), and it speaks only in
signed commands on each robot's command topic. An order whose robot fails or
never acknowledges goes back in the queue. (The auction of bids and awards
replaces the choice of robot in the marketplace proper; the rest stays.)

It also runs surveys: when the map asks for a second pair of eyes on a place
(a road only one robot has seen blocked), the nearest free robot that is not
one of the first witnesses gets a ``goto`` to the nearest vantage point:
nearest by the survey's route cost when it has one (metres of road around the
roads the map holds closed, given by whoever asks: the dispatcher knows no
roads), else by straight-line (Manhattan) distance. With a route cost, a
survey under way goes to another idle robot when that one's route has become
REASSIGN_GAIN_M shorter (a road closed since turned the first one's trip into
a detour). Surveys go before orders: they are short, and the fleet plans on
their answer.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import topic_root
from identity.envelope import Envelope, EnvelopeSigner

ACK_TIMEOUT_S = 15.0  # a robot that has not shown the task in its telemetry by then did not get it
MIN_BATTERY = 0.35
MAX_ATTEMPTS = 3
REASSIGN_GAIN_M = 40.0  # a survey under way goes to another robot only if that one's route is this much shorter
REASSIGN_EVERY_S = 5.0  # how often a survey under way is reconsidered (one route-cost evaluation each time)
FREE_STATES = ("idle", "charging")  # a charging robot takes a task and sets off once charged

Point = tuple[float, float]
RouteCost = Callable[[Point, list[Point]], Sequence[float | None]]
"""Given a point and robots' positions, each robot's travel cost to it; None where it cannot get there."""


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
class _Survey:
    points: tuple[Point, ...]
    exclude: frozenset[str]
    cost: RouteCost | None = None
    robot: str | None = None
    sent_s: float = 0.0
    acknowledged: bool = False
    checked_s: float = -math.inf  # when a cheaper robot was last looked for, once under way


@dataclass(slots=True)
class _Assignment:
    order: OrderLike
    robot: str
    sent_s: float
    acknowledged: bool = False
    attempts: int = 1


class Dispatcher:
    """Assigns orders to robots and follows them to delivery or failure."""

    declared_kinds: ClassVar[tuple[str, ...]] = ("telemetry", "event")

    def __init__(self, signer: EnvelopeSigner, *, clock: Callable[[], float], stale_s: float = 10.0) -> None:
        self.signer = signer
        self.clock = clock
        self.stale_s = stale_s
        self.robots: dict[str, RobotView] = {}
        self.delivered: list[str] = []
        self.failed: list[str] = []
        self._open: deque[tuple[OrderLike, int]] = deque()
        self._assigned: dict[str, _Assignment] = {}
        self._surveys: dict[str, _Survey] = {}
        self.surveyed: list[str] = []
        self._lock = threading.Lock()

    @property
    def did(self) -> str:
        """The service DID robots must trust to take its commands."""
        return self.signer.did

    def offer(self, order: OrderLike) -> None:
        """Queue a new order for the next free robot."""
        with self._lock:
            self._open.append((order, 1))

    def survey(self, key: str, points: Sequence[Point], exclude: Collection[str] = (),
               cost: RouteCost | None = None) -> bool:
        """Ask for a robot (not one of ``exclude``) to go and look from the nearest of ``points``: the cheapest
        robot and point by ``cost`` (a robot it gives None for cannot get there), else by Manhattan distance.

        ``key`` names the survey (one at a time per key); False when it is already under way.
        """
        if not points:
            raise ValueError(f"survey {key!r} needs at least one vantage point")
        with self._lock:
            if key in self._surveys:
                return False
            self._surveys[key] = _Survey(tuple((float(x), float(y)) for x, y in points), frozenset(exclude), cost)
            return True

    def cancel_survey(self, key: str) -> bool:
        """Call off a survey that is no longer needed (a robot already on its way finishes the trip); False if
        there was none."""
        with self._lock:
            return self._surveys.pop(key, None) is not None

    @property
    def open_surveys(self) -> int:
        """Surveys asked for and not yet done."""
        return len(self._surveys)

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: telemetry updates the robot's view; task events close assignments and surveys."""
        body, robot = envelope.body, envelope.issuer
        with self._lock:
            if envelope.kind == "telemetry":
                pose = body["pose"]
                state = body.get("state", "idle")
                self.robots[robot] = RobotView(pose["x"], pose["y"], body["battery"], state, body.get("task"),
                                               self.clock())
                held = self._assigned.get(body.get("task", ""))
                if held is not None and held.robot == robot:
                    held.acknowledged = True
                for key, survey in list(self._surveys.items()):
                    if survey.robot == robot:
                        if state == "goto":
                            survey.acknowledged = True
                        elif survey.acknowledged:  # it went and is done, or gave up for a charger
                            self._end_survey(key)
            elif envelope.kind == "event" and body.get("task") in self._assigned:
                self._on_task_event(robot, body)
            elif envelope.kind == "event":
                self._on_survey_event(robot, body)

    def _on_survey_event(self, robot: str, body: dict) -> None:
        for key, survey in list(self._surveys.items()):
            if survey.robot != robot:
                continue
            if body["type"] == "goto.arrived":
                self._end_survey(key)
            elif body["type"] == "command.rejected" and body.get("task") == key:
                survey.robot, survey.acknowledged = None, False  # busy after all: someone else goes

    def _end_survey(self, key: str) -> None:
        del self._surveys[key]
        self.surveyed.append(key)

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
            for survey in self._surveys.values():
                if survey.robot is not None and not survey.acknowledged and now - survey.sent_s > ACK_TIMEOUT_S:
                    survey.robot = None
            busy = {held.robot for held in self._assigned.values()}
            busy |= {survey.robot for survey in self._surveys.values() if survey.robot is not None}
            free = {did: view for did, view in self.robots.items()
                    if did not in busy and view.state in FREE_STATES and view.battery >= MIN_BATTERY
                    and now - view.seen_s <= self.stale_s}
            commands = []
            for key, survey in self._surveys.items():
                idle = [did for did in free if did not in survey.exclude and free[did].state == "idle"]
                if not idle:  # a goto would take a robot off its charger
                    continue
                if survey.robot is None:
                    candidates = self._survey_candidates(survey, [(did, free[did]) for did in idle])
                elif self._reconsider(survey, now):
                    candidates = self._cheaper_than_going(survey, [(did, free[did]) for did in idle])
                else:
                    continue
                if not candidates:
                    continue
                _, robot, (x, y) = min(candidates)
                del free[robot]
                survey.robot, survey.sent_s, survey.acknowledged = robot, now, False
                commands.append(self._command(robot, "goto", key, {"x": x, "y": y}))
            while self._open and free:
                order, attempts = self._open.popleft()
                px, py = order.pickup
                robot = min(free, key=lambda did: abs(free[did].x - px) + abs(free[did].y - py))
                del free[robot]
                self._assigned[order.id] = _Assignment(order, robot, now, attempts=attempts)
                commands.append(self._deliver(robot, order))
        return commands

    def _reconsider(self, survey: _Survey, now: float) -> bool:
        """Whether to see, now, if a survey under way has a much cheaper robot: only with a route cost (a road
        closed since may have turned its robot's trip into a detour), once its robot took it, every
        REASSIGN_EVERY_S."""
        if survey.cost is None or not survey.acknowledged or survey.robot not in self.robots:
            return False
        if now - survey.checked_s < REASSIGN_EVERY_S:
            return False
        survey.checked_s = now
        return True

    def _cheaper_than_going(self, survey: _Survey,
                            robots: list[tuple[str, RobotView]]) -> list[tuple[float, str, Point]]:
        """The candidates among ``robots`` at least REASSIGN_GAIN_M cheaper than the survey's robot from where
        it is now (any, when it can no longer get there): the robot sent keeps its trip, the new one goes."""
        assert survey.robot is not None
        going = survey.robot
        candidates = self._survey_candidates(survey, [(going, self.robots[going]), *robots])
        now_cost = min((cost for cost, did, _ in candidates if did == going), default=math.inf)
        return [(cost, did, point) for cost, did, point in candidates
                if did != going and cost + REASSIGN_GAIN_M < now_cost]

    @staticmethod
    def _survey_candidates(survey: _Survey, robots: list[tuple[str, RobotView]]) -> list[tuple[float, str, Point]]:
        """(cost, robot, point) for every robot that can get to every point of ``survey``."""
        out = []
        for point in survey.points:
            if survey.cost is None:
                costs: Sequence[float | None] = [abs(view.x - point[0]) + abs(view.y - point[1]) for _, view in robots]
            else:
                costs = survey.cost(point, [(view.x, view.y) for _, view in robots])
            out += [(cost, did, point) for cost, (did, _) in zip(costs, robots) if cost is not None]
        return out

    def _deliver(self, robot: str, order: OrderLike) -> Outgoing:
        return self._command(robot, "deliver", order.id, {
            "pickup": {"x": order.pickup[0], "y": order.pickup[1]},
            "dropoff": {"x": order.dropoff[0], "y": order.dropoff[1]},
            "payload_kg": order.payload_kg, "parcel": f"parcel-{order.id}"})

    def _command(self, robot: str, kind: str, task: str, args: dict) -> Outgoing:
        """A signed command to ``robot`` on its command topic."""
        spec = BY_KIND["command"]
        body = {"to": robot, "type": kind, "task": task, "args": args}
        topic = f"{topic_root(robot)}/{spec.channel}"
        return Outgoing(topic, self.signer.seal("command", body), spec.qos, spec.retain)
