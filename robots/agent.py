"""The robot agent: one mind that runs the same on a simulated body and on real hardware.

Each control tick it reads its body's sensors, estimates where it is (odometry
fused with GNSS), takes in the verified commands that arrived, keeps an eye on
its battery, plans on the road graph, follows the route while the lidar keeps it
off obstacles, replans when a street turns out blocked, and publishes its signed
telemetry and events through its own machine session. It never sees ground truth.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bus.session import MachineSession, Outgoing
from bus.topics import MARKET_AWARDS, MARKET_TASKS
from bus.trusted import Refused
from identity.canonical import canonicalize
from identity.envelope import Envelope
from robots.avoid import Avoider, BlockageDetector
from robots.bidding import Pricing, quote
from robots.body import Body, LidarScan, Sensors
from robots.commands import CommandGate
from robots.energy import charge_time_s, must_charge
from robots.follow import PurePursuit
from robots.lanes import keep_right
from robots.localize import PoseEstimator
from robots.planner import NoRoute, RoadPlanner
from robots.scan_match import Match, field_for, match, scan_points
from robots.tasks import DeliveryTask, IllegalTransition, TaskMachine, TaskState
from spatial.view import MapView

FIRST_FIX_WAIT_S = 3.0  # how long a robot waits for GNSS before trusting its odometry pose alone
MAX_OPEN_OFFERS = 32  # bids a robot remembers while waiting for awards; the oldest is forgotten first
_UNBELIEVED_VAR = 1e4  # m^2: the variance given a map match's position when only its heading is taken
REBID_S = 30.0  # a standing bid is not sent again for a re-announced task sooner than this (the market keeps it)
EdgeCost = Callable[[str, str, dict], float | None]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How often the agent speaks and how careful it is with its battery and blocked streets."""

    telemetry_hz: float = 2.0
    scan_hz: float = 0.0  # 0: scans are not published
    telemetry_phase: float = 0.0  # fraction of a period, so a fleet does not speak all at once
    battery_check_s: float = 1.0
    reserve: float = 0.15  # battery fraction kept for the unexpected
    charge_target: float = 0.95
    block_memory_s: float = 300.0  # how long a street found blocked is avoided
    lookahead_m: float = 2.0
    lane_offset_m: float = 1.5  # keep right of the centreline (roads are 8 m wide in the simulated city)
    backoff_s: float = 1.5  # when stuck, reverse this long ...
    backoff_mps: float = 0.3
    max_hold_s: float = 2.0  # ... then wait up to this long (drawn at random) before going on
    goal_street_tries: int = 3  # blocked this often on the goal's own street in a row: the goal is out of reach
    pricing: Pricing = Pricing()  # what this robot's owner charges for a task
    seed: int = 0  # the robot's own randomness (how long it holds back), for repeatable runs
    map_match_hz: float = 2.0  # how often a robot with a shared map matches its lidar scan to it (0: never)
    map_match_position: bool = False  # take the match's position too, not only its heading (a surveyed map)


class RobotAgent:
    """One robot's mind; call ``step()`` once per control tick of its body."""

    def __init__(
        self,
        body: Body,
        session: MachineSession,
        planner: RoadPlanner,
        *,
        send: Callable[[Outgoing], None],
        clock: Callable[[], float],
        chargers: Sequence[tuple[float, float]] = (),
        gate: CommandGate | None = None,
        config: AgentConfig = AgentConfig(),
        map_view: MapView | None = None,
    ) -> None:
        self.body = body
        self.session = session
        self.planner = planner
        self.send = send
        self.clock = clock
        self.chargers = tuple(chargers)
        self.gate = gate
        self.config = config
        self.map_view = map_view
        self.edge_cost: EdgeCost | None = map_view.edge_cost if map_view is not None else None
        self._map_version = map_view.version if map_view is not None else -1
        profile = body.profile
        self.follower = PurePursuit(lookahead_m=config.lookahead_m, max_speed_mps=profile.max_speed_mps,
                                    max_turn_rps=profile.max_turn_rps)
        self.avoider = Avoider(profile.radius_m)
        self.detector = BlockageDetector()
        self.tasks = TaskMachine()
        self.estimator: PoseEstimator | None = None
        self.mode = "idle"  # idle | task | charging | goto | return
        self.refused: Counter[str] = Counter()
        self.blocked_until: dict[str, float] = {}
        self._inbox: deque[Envelope | Refused] = deque()
        self._commands_waiting = False  # a command (or its refusal) is in the inbox: it may free the robot
        self._goto: tuple[float, float] | None = None
        self._charger: tuple[float, float] | None = None
        self._return_to: tuple[float, float] | None = None
        self._route_goal: tuple[float, float] | None = None
        self._goal_blocks: tuple[tuple[float, float] | None, int] = (None, 0)  # (goal, blocked on its street)
        self._offers: dict[str, dict[str, Any]] = {}  # tasks bid for, by id, until awarded or forgotten
        self._bid_at: dict[str, float] = {}  # when each of those bids was sent
        self._next_battery_check = 0.0
        period = 1.0 / config.telemetry_hz if config.telemetry_hz > 0 else math.inf
        self._telemetry_period = period
        self._next_telemetry = config.telemetry_phase * period if period != math.inf else math.inf
        self._scan_period = 1.0 / config.scan_hz if config.scan_hz > 0 else math.inf
        self._next_scan = self._next_telemetry if self._scan_period != math.inf else math.inf
        self._last: Sensors | None = None
        self._booted_s: float | None = None
        self._backoff_until = -math.inf
        self._hold_until = -math.inf
        self._random = random.Random(config.seed)
        self._match_period = 1.0 / config.map_match_hz if config.map_match_hz > 0 else math.inf
        self._next_match = 0.0
        self.localization: Counter[str] = Counter()  # map matches used, gated out, or refused (by reason)

    @property
    def did(self) -> str:
        """This robot's DID: who signs everything it says."""
        return self.session.signer.did

    @property
    def state(self) -> TaskState:
        """Where the robot is in its task life cycle."""
        return self.tasks.state

    @property
    def pose(self) -> tuple[float, float, float]:
        """Where the robot believes it is (x, y, theta), from its own sensors."""
        if self.estimator is None:
            raise RuntimeError("the agent has not sensed yet: call step() first")
        return self.estimator.pose

    # --- input -------------------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes) -> None:
        """A command, or a marketplace announcement or award: verified now, acted on at the next step."""
        if self.gate is None:
            self.refused["no_gate"] += 1
            return
        if topic in (MARKET_TASKS, MARKET_AWARDS):
            try:
                envelope = self.gate.admit_market(topic, payload)
            except Refused as refusal:  # counted, not answered: market traffic is broadcast
                self.refused[refusal.code] += 1
                return
            self.receive_market(envelope)
            return
        self._commands_waiting = True
        try:
            self._inbox.append(self.gate.admit(topic, payload))
        except Refused as refusal:
            self.refused[refusal.code] += 1
            self._inbox.append(refusal)

    def receive_market(self, envelope: Envelope) -> None:
        """A task announcement or award that whoever relays the market for this robot (its simulator or site
        gateway, one trust domain with it) has verified already: acted on at the next step. An award for another
        robot, or another kind, is ignored."""
        if envelope.kind == "task" or (envelope.kind == "award" and envelope.body["robot"] == self.did):
            self._inbox.append(envelope)

    def wants_tasks(self) -> bool:
        """Whether a task announcement handed over now could make this robot bid at its next step: it is free
        (idle, or charging with no task), or a command waiting in its inbox may free it. When False, it would
        ignore any announcement, so a relay need not hand it one."""
        return self._commands_waiting or (not self.tasks.busy and self.mode in ("idle", "charging"))

    # --- the control tick --------------------------------------------------------------------------

    def step(self) -> None:
        """Sense, think, act and report, once."""
        sensors = self.body.sense()
        now = sensors.t_s
        self._last = sensors
        if self._booted_s is None:
            self._booted_s = now
        self._localize(sensors)
        if self.estimator is None:  # not localized yet: stand still and say nothing
            self.body.drive(0.0, 0.0)
            return
        while self._inbox:
            self._act_on(self._inbox.popleft(), now)
        self._commands_waiting = False
        if now >= self._next_battery_check:
            self._next_battery_check = now + self.config.battery_check_s
            self._check_battery(sensors)
        v, w = self._drive(sensors, now)
        self.body.drive(v, w)
        if now >= self._next_telemetry:
            self._next_telemetry += self._telemetry_period * max(1, math.ceil((now - self._next_telemetry)
                                                                              / self._telemetry_period))
            self._publish("telemetry", self.telemetry())
        if now >= self._next_scan and sensors.scan is not None:
            self._next_scan = now + self._scan_period
            self._publish("scan", self._scan_body(sensors))

    def _localize(self, sensors: Sensors) -> None:
        """Dead reckoning corrected by GNSS; the estimate starts at the first fix (or, with no GNSS after
        FIRST_FIX_WAIT_S, at the odometry pose), so what the robot reports never snaps across the map."""
        odometry, fix = sensors.odometry, sensors.gnss
        if self.estimator is None:
            if fix is None and sensors.t_s - self._booted_s < FIRST_FIX_WAIT_S:
                return
            x, y = (fix.x, fix.y) if fix is not None else (odometry.x, odometry.y)
            self.estimator = PoseEstimator(x, y, odometry.theta, sigma_xy=fix.sigma_m if fix is not None else 0.5)
        self.estimator.predict(odometry)
        if fix is not None:
            self.estimator.correct(fix)  # a fix it already used is ignored
        scan = sensors.scan
        fresh = scan is not None and scan.t_s == sensors.t_s
        if self.map_view is not None and fresh and sensors.t_s >= self._next_match:
            self._next_match = sensors.t_s + self._match_period
            self._match_map(scan)

    def _match_map(self, scan: LidarScan) -> None:
        """Match a fresh lidar scan against the shared map around the estimate and, if it fits, correct by it: its
        heading always, its position only with map_match_position (a map the fleet built from consumer-GNSS poses
        has its walls deeper than they are, and following their position made the fleet's poses worse)."""
        assert self.estimator is not None and self.map_view is not None
        field = field_for(self.map_view, scan.t_s)
        if field is None:
            self.localization["no_map"] += 1
            return
        found = match(field, scan_points(scan.ranges, scan.angle_min, scan.angle_increment), self.estimator.pose)
        if not isinstance(found, Match):
            self.localization[found.reason] += 1
            return
        covariance = found.covariance
        if not self.config.map_match_position:  # see docs/map.md, "Localizing against the map"
            covariance = np.diag((_UNBELIEVED_VAR, _UNBELIEVED_VAR, covariance[2, 2]))
        self.localization["matched" if self.estimator.correct_pose(found.pose, covariance) else "gated"] += 1

    def _goal(self) -> tuple[float, float] | None:
        if self.mode == "charging":
            return self._charger
        if self.mode == "return":
            return self._return_to
        if self.mode == "task":
            return self.tasks.goal
        if self.mode == "goto":
            return self._goto
        return None

    def _drive(self, sensors: Sensors, now: float) -> tuple[float, float]:
        goal = self._goal()
        if goal is None:
            return 0.0, 0.0
        if self.map_view is not None and self.map_view.version != self._map_version:
            self._map_version = self.map_view.version
            self._route_goal = None  # the shared map changed: plan again on it
        x, y, theta = self.pose
        if goal != self._route_goal and not self._plan(goal, now):
            return 0.0, 0.0
        if self.follower.done:
            self._arrived(sensors, now)
            return 0.0, 0.0
        if now < self._backoff_until:
            v, w = -self.config.backoff_mps, 0.0
        elif now < self._hold_until:
            return 0.0, 0.0
        else:
            v, w = self.follower.command(x, y, theta)
        scan = sensors.scan
        blocked = False
        if scan is not None:
            v, w, blocked = self.avoider.adjust(v, w, scan.ranges, scan.angle_min, scan.angle_increment,
                                                scan.nearest)
        if now >= self._hold_until and self.detector.update(now, x, y, blocked):
            self._blocked(now)
        return v, w

    # --- planning ----------------------------------------------------------------------------------

    def _avoided(self, now: float) -> list[str]:
        for street in [s for s, until in self.blocked_until.items() if until <= now]:
            del self.blocked_until[street]
        return list(self.blocked_until)

    def _plan(self, goal: tuple[float, float], now: float, heading: float | None = None) -> bool:
        """Route from here to ``goal`` (``heading``: turn back if the street ahead is closed). With no route,
        it forgets its own blocked-street notes, then the shared map's, before giving up."""
        x, y, _ = self.pose
        attempts = ((self._avoided(now), self.edge_cost, heading), ((), self.edge_cost, None), ((), None, None))
        for blocked, cost, turn in attempts:
            try:
                route = self.planner.plan((x, y), goal, blocked_streets=blocked, cost=cost, heading=turn)
                break
            except NoRoute as err:
                why = str(err)
        else:
            self.blocked_until.clear()
            self._unreachable(why, now)
            return False
        self.follower.reset(keep_right(route.waypoints, self.config.lane_offset_m))
        self.detector.reset()
        self._route_goal = goal
        return True

    def _blocked(self, now: float) -> None:
        """The way ahead stayed blocked: back off, hold a random moment (two robots nose to nose must
        not move in step), note the street and plan around it."""
        config = self.config
        self._backoff_until = now + config.backoff_s
        self._hold_until = self._backoff_until + self._random.uniform(0.0, config.max_hold_s)
        x, y, theta = self.pose
        u, v = self.planner.nearest_edge(x + 3.0 * math.cos(theta), y + 3.0 * math.sin(theta))
        street = self.planner.graph.edges[u, v]["street"]
        self.blocked_until[street] = now + self.config.block_memory_s
        self._event("route.blocked", detail={"street": street})
        goal = self._route_goal
        self._route_goal = None
        if goal is None:
            return
        gu, gv = self.planner.nearest_edge(*goal)
        if self.planner.graph.edges[gu, gv]["street"] == street:  # every way round ends on this street
            tries = self._goal_blocks[1] + 1 if self._goal_blocks[0] == goal else 1
            self._goal_blocks = (goal, tries)
            if tries >= config.goal_street_tries:
                self._goal_blocks = (None, 0)
                self._unreachable(f"the goal's street {street} stayed blocked after {tries} tries", now)
                return
        self._plan(goal, now, heading=theta)

    def _unreachable(self, why: str, now: float) -> None:
        self._route_goal = None
        if self.mode == "task":
            self._fail("no_route", why)
        elif self.mode == "return":  # the parcel stays aboard; the operator must fetch it
            self._event("parcel.stranded", detail={"why": why[:200]})
            self._return_to = None
            self.tasks.finish()
            self.mode = "idle"
        else:
            self._event("route.none", detail={"why": why[:200]})
            self.mode = "task" if self.tasks.busy else "idle"
            self._charger = None

    # --- arriving ----------------------------------------------------------------------------------

    def _arrived(self, sensors: Sensors, now: float) -> None:
        mode = self.mode
        if mode == "charging":
            if sensors.battery >= self.config.charge_target:
                self._event("charge.done", detail={"battery": round(sensors.battery, 3)})
                self._charger = None
                self._route_goal = None
                self.mode = "task" if self.tasks.busy else "idle"
            return
        self._route_goal = None
        if mode == "goto":
            self._event("goto.arrived")
            self._goto = None
            self.mode = "idle"
        elif mode == "return":
            parcel = self.body.unload()
            self._event("parcel.returned", detail={"parcel": parcel or ""})
            self._return_to = None
            self.tasks.finish()
            self.mode = "idle"
        elif mode == "task":
            self._task_leg_done(sensors, now)

    def _task_leg_done(self, sensors: Sensors, now: float) -> None:
        task = self.tasks.task
        assert task is not None
        if self.tasks.state is TaskState.TO_PICKUP:
            try:
                self.body.load(task.parcel, task.payload_kg)
            except ValueError as err:
                self._fail("load_refused", str(err))
                return
            self._event(**self.tasks.loaded())
            self._event(**self.tasks.depart())
        elif self.tasks.state is TaskState.TO_DROPOFF:
            parcel = self.body.unload()
            self._event(**self.tasks.delivered(), detail={"parcel": parcel or ""})
            x, y, theta = self.pose
            self._publish("receipt", {"task": task.id, "t": self._ms(), "pose": _pose(x, y, theta)})
            self.tasks.finish()
            self.mode = "idle"

    def _fail(self, reason: str, why: str) -> None:
        task = self.tasks.task
        event = self.tasks.fail(reason)
        event.setdefault("detail", {})["why"] = why[:200]
        self._event(**event)
        self._route_goal = None
        aboard = self._last is not None and self._last.payload is not None
        if aboard and task is not None:
            self._return_to = task.pickup
            self.mode = "return"
        else:
            self.tasks.finish()
            self.mode = "idle"

    # --- battery -----------------------------------------------------------------------------------

    def _nearest_charger(self, x: float, y: float) -> tuple[tuple[float, float], float] | None:
        """The charger closest by street distance (Manhattan on the grid is a tight upper guess)."""
        best = None
        for cx, cy in self.chargers:
            d = abs(cx - x) + abs(cy - y)
            if best is None or d < best[1]:
                best = ((cx, cy), d)
        return best

    def _check_battery(self, sensors: Sensors) -> None:
        if self.mode == "charging" or not self.chargers:
            return
        x, y, _ = self.pose
        goal = self._goal()
        to_goal = self.follower.remaining_m if goal is not None and goal == self._route_goal else 0.0
        gx, gy = goal if goal is not None else (x, y)
        found = self._nearest_charger(gx, gy)
        assert found is not None
        profile = self.body.profile
        if must_charge(profile, sensors.battery, to_goal_m=to_goal, goal_to_charger_m=found[1],
                       load_kg=sensors.load_kg, reserve=self.config.reserve):
            here = self._nearest_charger(x, y)
            assert here is not None
            self._charger = here[0]
            self._route_goal = None
            self.mode = "charging"
            self._event("battery.low", detail={"battery": round(sensors.battery, 3)})

    # --- commands ----------------------------------------------------------------------------------

    def _act_on(self, item: Envelope | Refused, now: float) -> None:
        if isinstance(item, Refused):
            self._event("command.refused", detail={"reason": item.code})
            return
        body = item.body
        if item.kind == "task":
            self._offer(body, now)
            return
        if item.kind == "award":
            self._awarded(body)
            return
        kind, task_id, args = body["type"], body.get("task"), body.get("args", {})
        try:
            if kind == "deliver":
                self._deliver(DeliveryTask.from_command(task_id or "", args))
            elif kind == "abort":
                if self.tasks.task is None or self.tasks.task.id != task_id or not self.tasks.busy:
                    raise ValueError(f"no task {task_id} under way")
                self._fail("aborted", f"aborted by {item.issuer}")
            elif kind == "charge":
                found = self._nearest_charger(*self.pose[:2])
                if found is None:
                    raise ValueError("this robot knows no charger")
                self._charger, self._route_goal, self.mode = found[0], None, "charging"
                self._event("charge.start")
            elif kind == "goto":
                if self.tasks.busy or self.mode == "return":
                    raise ValueError("busy with a task")
                self._goto = (float(args["x"]), float(args["y"]))
                self._route_goal, self.mode = None, "goto"
            else:
                raise ValueError(f"unknown command type {kind!r}")
        except (ValueError, KeyError, TypeError, IllegalTransition) as err:
            self._event("command.rejected", task=task_id, detail={"command": kind, "why": str(err)[:200]})

    def _offer(self, task: dict[str, Any], now: float) -> None:
        """Bid for an announced task when free to take it: priced from its own route, battery and queue."""
        if self.tasks.busy or self.mode not in ("idle", "charging") or task["deadline"] <= self._ms():
            return
        if self.clock() - self._bid_at.get(task["id"], -REBID_S) < REBID_S:
            return  # its bid stands; sending it again would only load the marketplace (each bid is a commit)
        sensors = self._last
        assert sensors is not None
        pickup = (float(task["pickup"]["x"]), float(task["pickup"]["y"]))
        dropoff = (float(task["dropoff"]["x"]), float(task["dropoff"]["y"]))
        try:
            to_pickup = self.planner.plan(self.pose[:2], pickup, cost=self.edge_cost).length_m
            delivery = self.planner.plan(pickup, dropoff, cost=self.edge_cost).length_m
        except NoRoute:
            return
        charger = self._nearest_charger(*dropoff)
        queue_s = 0.0
        if self.mode == "charging":
            queue_s = charge_time_s(self.body.profile, sensors.battery, self.config.charge_target,
                                    self.config.pricing.charge_w)
        offer = quote(self.body.profile, self.config.pricing, soc=sensors.battery, to_pickup_m=to_pickup,
                      delivery_m=delivery, to_charger_m=charger[1] if charger else 0.0,
                      payload_kg=float(task["payload_kg"]), queue_s=queue_s, max_price=int(task["max_price"]))
        if offer is None or self._ms() + offer.eta_s * 1000 > task["deadline"]:
            return  # too dear, or it could not be there before the deadline: a bid it cannot keep costs its bond
        self._offers[task["id"]] = task
        self._bid_at[task["id"]] = self.clock()
        while len(self._offers) > MAX_OPEN_OFFERS:
            oldest = next(iter(self._offers))
            del self._offers[oldest], self._bid_at[oldest]
        self._publish("bid", {"task": task["id"], "price": offer.price, "currency": task["currency"],
                              "eta_ms": int(offer.eta_s * 1000)})

    def _awarded(self, award: dict[str, Any]) -> None:
        """Take on a task awarded to this robot: only one it bid for, whose announcement matches the award."""
        task = self._offers.pop(award["task"], None)
        self._bid_at.pop(award["task"], None)
        try:
            if task is None:
                raise ValueError(f"no open bid of this robot for {award['task']} (or the award was used already)")
            if hashlib.sha256(canonicalize(task)).hexdigest() != award["task_hash"]:
                raise ValueError("the award's task hash does not match the task this robot bid for")
            self._deliver(DeliveryTask(task["id"], (float(task["pickup"]["x"]), float(task["pickup"]["y"])),
                                       (float(task["dropoff"]["x"]), float(task["dropoff"]["y"])),
                                       float(task["payload_kg"]), f"parcel-{task['id']}"))
        except (ValueError, IllegalTransition) as err:
            self._event("command.rejected", task=award["task"], detail={"command": "award", "why": str(err)[:200]})

    def _deliver(self, task: DeliveryTask) -> None:
        if not task.id:
            raise ValueError("a deliver command needs a task id")
        if self.mode == "return":
            raise IllegalTransition(f"returning a parcel; cannot take {task.id}")
        self._event(**self.tasks.assign(task))
        if self.mode != "charging":
            self.mode = "task"
            self._route_goal = None

    # --- output ------------------------------------------------------------------------------------

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        self.send(self.session.message(kind, body))

    def _event(self, type: str, task: str | None = None, detail: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"t": self._ms(), "type": type}
        if task is not None:
            body["task"] = task
        if detail:
            body["detail"] = detail
        self._publish("event", body)

    @property
    def activity(self) -> str:
        """What the robot is doing, as telemetry says it: the task's state while a task is under way, else its
        mode when that is not idle (goto, charging, return), else the task machine's resting state."""
        if not self.tasks.busy and self.mode in ("goto", "charging", "return"):
            return self.mode
        return self.tasks.state.value

    def telemetry(self) -> dict[str, Any]:
        """The telemetry body as of the last step: believed pose, measured twist, battery, task."""
        sensors = self._last
        if sensors is None:
            raise RuntimeError("the agent has not sensed yet: call step() first")
        x, y, theta = self.pose
        body: dict[str, Any] = {
            "t": self._ms(), "pose": _pose(x, y, theta),
            "twist": {"v": round(sensors.odometry.v, 3), "w": round(sensors.odometry.w, 3)},
            "battery": round(min(1.0, max(0.0, sensors.battery)), 4),
            "odometer_m": round(sensors.odometry.distance_m, 2), "state": self.activity,
            "load_kg": sensors.load_kg,
        }
        if self.tasks.task is not None:
            body["task"] = self.tasks.task.id
        return body

    def _scan_body(self, sensors: Sensors) -> dict[str, Any]:
        scan = sensors.scan
        assert scan is not None
        x, y, theta = self.pose
        return {
            "t": self._ms(), "pose": _pose(x, y, theta), "angle_min": scan.angle_min,
            "angle_increment": scan.angle_increment, "range_max": scan.range_max,
            "ranges": [None if r == math.inf else round(float(r), 3) for r in scan.ranges.tolist()],
        }


def _pose(x: float, y: float, theta: float) -> dict[str, float]:
    return {"x": round(x, 3), "y": round(y, 3), "theta": round(theta, 4)}
