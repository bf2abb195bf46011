"""Simulated fleet throughput at 10, 100 and 1000 robots, beside bare PyBullet and the pybullet-fleet package.

Run:  python benchmarks/fleet.py [--robots 10,100,1000] [--seconds S] [--warmup S] [--rounds R]
                                 [--rays N] [--seed N] [--no-compare] [--pbf-venv DIR] [--quick] [--market]

For each robot count, in this one process invocation (pybullet-fleet in a subprocess):

  bare PyBullet    a hand-written raw pybullet loop (no framework): the same city buildings, built
                   by sim.bodies.add_boxes exactly as sim/world.py builds them, the same number of
                   robot bodies (static spheres at lidar height) moved every 0.1 s tick with
                   resetBasePositionAndOrientation along straight lines, and the same lidar load:
                   one rayTestBatch per tick per <= 16383 rays (numThreads=1), the same rays per
                   robot, 12 m range, hit fractions read back.
  bare, no robot   the same loop with the buildings alone in PyBullet (robots move and cast the
  bodies           same rays, but no robot is seen): the least PyBullet can spend on the lidar.
  ours             launch.fleet.SimFleet run by launch.fleet.run, as fast as it goes: every robot has
                   its own key, localizes, plans on the road graph, follows its route, avoids with
                   its lidar (10 Hz), keeps its battery, and seals signed telemetry at 2 Hz; the city
                   has its moving obstacles. The link ("patrol") counts the messages and, whenever a
                   robot says goto.arrived (or cannot route), sends it a new signed goto to a random
                   drop-off place (seeded), so every robot always has somewhere to go. Every command
                   is verified by the robot's command gate. Robot messages are not verified (no
                   ingest): that is benchmarks/bus.py's subject.
  ours, --market   the same fleet earning its keep instead of patrolling: customers order at the
                   fleet's rate (one order per robot every four minutes), the marketplace (SQLite
                   ledger, in process) announces each task (again every 2 s while nobody took it),
                   robots bid, win, deliver and are paid. The marketplace needs the robots' bids and
                   receipts verified, so here every robot message goes through ingest (in process).
  pybullet-fleet   the PyPI package pybullet-fleet 0.8.0 (a kinematics-first PyBullet fleet
                   simulator), in a venv of its own built once (it needs numpy<2), in a subprocess
                   running benchmarks/pybullet_fleet_bench.py: the same buildings as static boxes,
                   the same robots (0.35 m spheres, same start poses, same speed, turn and
                   acceleration limits) under its batch differential-drive controller, driving
                   straight to random drop-off places and given a new one on arrival; its default
                   per-step collision check (robot-robot, closest points). It has no lidar, no road
                   planning, no avoidance, no battery and no signing: it does far less per robot.

Every simulation runs a warm-up first (robots get their first GNSS fix and their first goal),
then --rounds measured windows of simulated time; the two bare loops and ours take turns window
by window, so machine noise hits them alike. The real-time factor (RTF) is simulated seconds /
wall seconds over a window. The overhead ratio is ours' wall time / a bare loop's wall time for
the same simulated time in the same round (1.0 = no overhead over raw PyBullet). Figures are
medians over rounds; this 2-core machine is noisy, so every figure is compared with a baseline
measured in the same run.

Goals (issue): on one core, 1000 robots >= 1x real time and 100 robots >= 10x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/fleet.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bus.ingest import Ingest  # noqa: E402
from bus.session import Outgoing  # noqa: E402
from identity.envelope import EnvelopeVerifier  # noqa: E402
from identity.keys import Signer  # noqa: E402
from identity.registry import DidRegistry  # noqa: E402
from launch.fleet import FleetConfig, Identity, SimFleet, register, run  # noqa: E402
from launch.links import LoopbackLink  # noqa: E402
from ledger.journal import Ledger  # noqa: E402
from marketplace.market import Marketplace  # noqa: E402
from marketplace.policy import MarketPolicy  # noqa: E402
from marketplace.service import MarketService  # noqa: E402
from sim.bodies import Shapes, add_boxes  # noqa: E402
from sim.city import generate_city  # noqa: E402
from sim.customers import CustomerOrders, Customers  # noqa: E402
from sim.demand import Demand  # noqa: E402
from sim.lidar import MAX_BATCH, LidarSpec  # noqa: E402
from sim.quiet import import_pybullet, silenced  # noqa: E402
from sim.world import RobotSpec  # noqa: E402

HERE = Path(__file__).resolve().parent
PBF_VERSION = "0.8.0"
PBF_VENV = HERE / ".venv-pybullet-fleet"
PBF_SCRIPT = HERE / "pybullet_fleet_bench.py"
PBF_TIMEOUT_S = 900.0
DT = 0.1
LIDAR_HZ = 10.0
TELEMETRY_HZ = 2.0
RANGE_M = 12.0
BLOCKS = 6
CLEARANCE_M = 0.02  # as sim/lidar.py: rays start just outside the robot's own sphere
DEFAULT_SECONDS = {10: 60.0, 100: 30.0, 1000: 20.0}  # measured per round
_FRACTION = itemgetter(2)
GOALS = ((1000, 1.0), (100, 10.0))  # (robots, least real-time factor)
# Events after which a robot stands idle: it gets a new goto (command.rejected: the robot was busy).
RETRY_EVENTS = frozenset({"route.none", "command.rejected", "command.refused"})


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- the framework's fleet -----------------------------------------------------------------------

class Patrol:
    """A link that counts the robots' messages and keeps every robot driving to a random drop-off place.

    On ``goto.arrived`` (or an event after which the robot stands idle) it seals a new goto for that
    robot as the commander and hands it over at the next pump, as a service behind a broker would.
    """

    def __init__(self, fleet: SimFleet, commander: Identity, seed: int) -> None:
        self.fleet = fleet
        self.signer = commander.envelope_signer(fleet.clock)
        self.places = [(p.x, p.y) for p in fleet.city.places_of("dropoff")]
        self.rng = np.random.default_rng([seed, 2])
        self.robot_of_events = {f"{a.session.topic_root}/event": a for a in fleet.agents}
        self.messages = 0
        self.arrivals = 0
        self.retries = 0
        self.gotos = 0
        self._queued: list[Outgoing] = []

    def send_goto(self, agent: Any) -> None:
        x, y = self.places[int(self.rng.integers(len(self.places)))]
        body = {"to": agent.did, "type": "goto", "args": {"x": x, "y": y}}
        payload = self.signer.seal("command", body)
        self._queued.append(Outgoing(f"{agent.session.topic_root}/cmd", payload, 1, False))
        self.gotos += 1

    def start(self) -> None:
        for agent in self.fleet.agents:
            self.send_goto(agent)

    def publish(self, messages: list[Outgoing]) -> None:
        self.messages += len(messages)
        robot_of_events = self.robot_of_events
        for message in messages:
            agent = robot_of_events.get(message.topic)
            if agent is None:
                continue
            kind = orjson.loads(message.payload)["body"]["type"]
            if kind == "goto.arrived":
                self.arrivals += 1
                self.send_goto(agent)
            elif kind in RETRY_EVENTS:
                self.retries += 1
                self.send_goto(agent)

    def publish_services(self, messages: list[Outgoing]) -> None:
        self._queued.extend(messages)

    def pump(self) -> None:
        queued, self._queued = self._queued, []
        for message in queued:
            self.fleet.deliver(message.topic, message.payload)

    def settle(self, timeout: float = 10.0) -> None:
        """Nothing is in flight in process."""


@dataclass
class Window:
    """One measured window of simulated time: how long it took, and for ours what the fleet said and did."""

    sim_s: float
    wall_s: float
    messages: int = 0
    arrivals: int = 0

    @property
    def rtf(self) -> float:
        return self.sim_s / self.wall_s


class Economy:
    """--market: the marketplace in process, its customers and the ingest that verifies what the robots say."""

    def __init__(self, fleet: SimFleet, registry: DidRegistry, owner: Identity, market_id: Identity,
                 customers: list[Identity], ledger_path: Path, seed: int) -> None:
        clock = fleet.clock
        self.fleet = fleet
        self.ledger = Ledger.open(f"sqlite:///{ledger_path}", Signer.generate(), clock=clock)
        market = Marketplace(self.ledger, market_id.envelope_signer(clock), fee_bps=500, clock=clock)
        for customer in customers:
            market.fund(customer.did, 10**12, "EUR", key=customer.did)
        market.fund(owner.did, 10**9, "EUR", key="owner", role="owner")
        for agent in fleet.agents:
            market.register_robot(agent.did, owner.did, 5_000, "EUR")
        policy = MarketPolicy()
        self.service = MarketService(market, EnvelopeVerifier(registry, clock=clock), clock=clock, policy=policy)
        self.orders = CustomerOrders(Customers([c.envelope_signer(clock) for c in customers], policy.quote,
                                               clock=clock, task_life_s=policy.task_life_s), self.service)
        self.ingest = Ingest(registry, self.service.observe, clock=clock)
        self.link = LoopbackLink(fleet, self.ingest)
        self.demand = Demand(fleet.city, seed, fleet.config.order_rate)

    def run(self, seconds: float) -> Any:
        return run(self.fleet, self.link, duration_s=seconds, demand=self.demand, services=[self.service],
                   orders=self.orders)

    @property
    def refused(self) -> int:
        """Refused at ingest, by the fleet's market gate (where it has one) and by the robots."""
        market = getattr(self.fleet, "market_refused", None)
        return int(self.ingest.metrics.total("depai_ingest_refused_total")) + (market.total() if market else 0)

    def close(self) -> None:
        self.ledger.close()


class Ours:
    """The framework's fleet: registered identities, SimFleet and the patrol link (or, with --market, the
    marketplace), run window by window."""

    def __init__(self, n: int, args: argparse.Namespace, registry: DidRegistry, directory: Path) -> None:
        started = time.perf_counter()
        operator_id = register(registry)
        commander = register(registry, controller=operator_id.did)
        customers = [register(registry) for _ in range(2)] if args.market else []  # before the fleet's clock starts
        lidar = LidarSpec(rays=args.rays, rate_hz=LIDAR_HZ, range_max_m=RANGE_M)
        config = FleetConfig(robots=n, seed=args.seed, blocks=BLOCKS, lidar=lidar, telemetry_hz=TELEMETRY_HZ,
                             obstacles=True)
        self.fleet = SimFleet(config, registry, controller=operator_id.did, commanders=[commander.did])
        self.patrol = Patrol(self.fleet, commander, args.seed)
        self.economy = (Economy(self.fleet, registry, operator_id, commander, customers,
                                directory / f"ledger-{n}.sqlite3", args.seed) if args.market else None)
        self.starts = self.fleet.world.truth.poses  # a copy: where every robot stands before the first tick
        self.build_s = time.perf_counter() - started

    def warm(self, seconds: float) -> None:
        if self.economy is not None:
            if seconds > 0:
                self.economy.run(seconds)
            return
        self.patrol.start()
        if seconds > 0:
            run(self.fleet, self.patrol, duration_s=seconds)

    def window(self, seconds: float) -> Window:
        if self.economy is not None:  # arrivals: tasks delivered and settled
            delivered = len(self.economy.service.delivered)
            report = self.economy.run(seconds)
            return Window(report.sim_s, report.wall_s, report.messages,
                          len(self.economy.service.delivered) - delivered)
        patrol = self.patrol
        messages, arrivals = patrol.messages, patrol.arrivals
        report = run(self.fleet, patrol, duration_s=seconds)
        return Window(report.sim_s, report.wall_s, patrol.messages - messages, patrol.arrivals - arrivals)

    @property
    def refused(self) -> int:
        robots = sum(sum(agent.refused.values()) for agent in self.fleet.agents)
        return robots + (self.economy.refused if self.economy is not None else 0)

    def close(self) -> None:
        if self.economy is not None:
            self.economy.close()
        self.fleet.close()


# --- bare PyBullet ---------------------------------------------------------------------------------

class Bare:
    """Raw pybullet: the same buildings, the same robots moved on straight lines every tick, the same rays.

    With ``robot_bodies`` every robot is a static sphere at lidar height, moved every tick with
    resetBasePositionAndOrientation, and the rays see it; without, PyBullet holds the buildings only (the
    floor of what the lidar costs in PyBullet: no robot is seen).
    """

    def __init__(self, starts: np.ndarray, args: argparse.Namespace, *, robot_bodies: bool) -> None:
        self.p = p = import_pybullet()
        city = generate_city(args.seed, BLOCKS)
        spec = RobotSpec()
        self.z, radius, rays = LidarSpec().height_m, spec.radius_m, args.rays
        with silenced():
            self.client = client = p.connect(p.DIRECT)
        # The city exactly as sim/world.py builds it (setup, not timed): sim.bodies.add_boxes makes the world's
        # static bodies, so both cast rays against the same geometry.
        add_boxes(Shapes(client, False), city.buildings)
        n = len(starts)
        self.bodies: list[int] = []
        if robot_bodies:
            sphere = p.createCollisionShape(p.GEOM_SPHERE, radius=radius, physicsClientId=client)
            made = p.createMultiBody(0, sphere, -1, batchPositions=[[x, y, self.z] for x, y, _ in starts.tolist()],
                                     physicsClientId=client)
            self.bodies = list(made) if isinstance(made, (list, tuple)) else [made]
        self.bounds = city.bounds()
        self.x, self.y = starts[:, 0].copy(), starts[:, 1].copy()
        self.vx, self.vy = spec.max_speed_mps * np.cos(starts[:, 2]), spec.max_speed_mps * np.sin(starts[:, 2])
        angles = -math.pi + (2 * math.pi / rays) * np.arange(rays)
        self.cos_a, self.sin_a = np.cos(angles), np.sin(angles)
        self.total = n * rays
        self.ray_from, self.ray_to = np.empty((self.total, 3)), np.empty((self.total, 3))
        self.ray_from[:, 2] = self.ray_to[:, 2] = self.z
        self.chunk = max(MAX_BATCH // rays, 1) * rays
        self.start = radius + CLEARANCE_M
        self.fraction = np.empty(self.total)

    def tick(self) -> None:
        p, client, z = self.p, self.client, self.z
        xmin, ymin, xmax, ymax = self.bounds
        x, y = self.x + self.vx * DT, self.y + self.vy * DT
        self.vx = vx = np.where((x < xmin) | (x > xmax), -self.vx, self.vx)  # straight, turned back at the edge
        self.vy = vy = np.where((y < ymin) | (y > ymax), -self.vy, self.vy)
        self.x, self.y = x, y
        heading = np.arctan2(vy, vx)
        if self.bodies:
            half = heading / 2
            for body, bx, by, qz, qw in zip(self.bodies, x.tolist(), y.tolist(), np.sin(half).tolist(),
                                            np.cos(half).tolist()):
                p.resetBasePositionAndOrientation(body, (bx, by, z), (0.0, 0.0, qz, qw), physicsClientId=client)
        c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
        dx, dy = c * self.cos_a - s * self.sin_a, s * self.cos_a + c * self.sin_a
        ray_from, ray_to, fraction, total, chunk = self.ray_from, self.ray_to, self.fraction, self.total, self.chunk
        ray_from[:, 0] = (x[:, None] + dx * self.start).ravel()
        ray_from[:, 1] = (y[:, None] + dy * self.start).ravel()
        ray_to[:, 0] = (x[:, None] + dx * RANGE_M).ravel()
        ray_to[:, 1] = (y[:, None] + dy * RANGE_M).ravel()
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            hits = p.rayTestBatch(ray_from[lo:hi], ray_to[lo:hi], numThreads=1, physicsClientId=client)
            fraction[lo:hi] = np.fromiter(map(_FRACTION, hits), np.float64, hi - lo)  # a miss has fraction 1

    def warm(self, seconds: float) -> None:
        for _ in range(round(seconds / DT)):
            self.tick()

    def window(self, seconds: float) -> Window:
        ticks = round(seconds / DT)
        began = time.perf_counter()
        for _ in range(ticks):
            self.tick()
        return Window(ticks * DT, time.perf_counter() - began)

    def close(self) -> None:
        with silenced():
            self.p.disconnect(physicsClientId=self.client)


# --- pybullet-fleet, in a venv of its own ---------------------------------------------------------

@dataclass
class Comparison:
    """The pybullet-fleet side: its results by robot count, or why there are none."""

    python: Path | None = None
    version: str = ""
    why_not: str = ""
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


def _quiet_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with its output captured (pip's "Location ... ignored" warnings stay off the terminal)."""
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines()[-lines:])


def pbf_python(where: Path) -> Comparison:
    """The Python of a venv with pybullet-fleet, built once into ``where`` and reused after."""
    python = where / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('pybullet-fleet'))"]
    if python.exists():
        found = _quiet_run(probe)
        if found.returncode == 0 and found.stdout.strip() == PBF_VERSION:
            return Comparison(python, PBF_VERSION)
    if where.is_dir() and any(where.iterdir()) and not (where / "pyvenv.cfg").exists():
        return Comparison(why_not=f"{where} exists and is not a venv; not touching it (pass another --pbf-venv)")
    progress(f"building {where} with pybullet-fleet=={PBF_VERSION} (once; it is reused after)")
    try:
        venv.EnvBuilder(clear=True, with_pip=True).create(where)
    except Exception as err:  # noqa: BLE001 - any failure only skips the comparison
        return Comparison(why_not=f"could not create the venv {where}: {err}")
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               f"pybullet-fleet=={PBF_VERSION}"]
    try:
        installed = _quiet_run(command, timeout=PBF_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Comparison(why_not=f"pip install pybullet-fleet=={PBF_VERSION} did not finish in {PBF_TIMEOUT_S:.0f} s")
    if installed.returncode != 0:
        print(f"pip install pybullet-fleet=={PBF_VERSION} failed; its output:\n"
              f"{_tail(installed.stdout + installed.stderr, 30)}", file=sys.stderr, flush=True)
        return Comparison(why_not=f"pip install pybullet-fleet=={PBF_VERSION} into {where} failed (exit "
                                  f"{installed.returncode}; its output is above, on stderr)")
    found = _quiet_run(probe)
    if found.returncode != 0:
        return Comparison(why_not=f"pybullet-fleet does not import in {where}:\n{_tail(found.stderr)}")
    return Comparison(python, found.stdout.strip())


def run_pbf(comparison: Comparison, n: int, starts: np.ndarray, args: argparse.Namespace,
            seconds: float) -> list[Window] | None:
    """pybullet-fleet on the same city, robots, places and windows; None (and the reason noted) on failure."""
    assert comparison.python is not None
    city = generate_city(args.seed, BLOCKS)
    spec = RobotSpec()
    job = {
        "seed": args.seed, "dt": DT, "warmup_s": args.warmup, "seconds": seconds, "rounds": args.rounds,
        "buildings": [[b.x, b.y, b.half_x, b.half_y, b.height] for b in city.buildings],
        "starts": starts.tolist(), "places": [[pl.x, pl.y] for pl in city.places_of("dropoff")],
        "radius_m": spec.radius_m, "z_m": LidarSpec().height_m, "max_speed_mps": spec.max_speed_mps,
        "max_accel_mps2": spec.max_accel_mps2, "max_turn_rps": spec.max_turn_rps,
        "max_alpha_rps2": 2 * spec.max_accel_mps2 / spec.wheel_base_m,
    }
    try:
        done = _quiet_run([str(comparison.python), str(PBF_SCRIPT)], input=json.dumps(job), timeout=PBF_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        comparison.why_not = f"pybullet-fleet at {n} robots did not finish within {PBF_TIMEOUT_S:.0f} s"
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        comparison.why_not = f"pybullet-fleet at {n} robots failed (exit {done.returncode}):\n{_tail(done.stderr)}"
        return None
    result = json.loads(lines[-1])
    comparison.version = result["version"]
    return [Window(w["sim_s"], w["wall_s"], 0, w["arrivals"]) for w in result["windows"]]


# --- the run and its report ------------------------------------------------------------------------

@dataclass
class Row:
    """Everything measured at one robot count: one window per round of each simulation."""

    robots: int
    seconds: float
    ours: list[Window]
    bare: list[Window]
    floor: list[Window]
    pbf: list[Window] | None
    build_s: float
    refused: int
    retries: int

    def rtf(self, windows: list[Window]) -> float:
        return statistics.median(w.rtf for w in windows)

    def overhead(self, baseline: list[Window]) -> float:
        """Median over rounds of ours' wall time / the baseline's, both over the same simulated time."""
        return statistics.median(o.wall_s / b.wall_s for o, b in zip(self.ours, baseline, strict=True))


def measure(args: argparse.Namespace, directory: Path, comparison: Comparison | None) -> list[Row]:
    """Every robot count in turn: bare PyBullet (both ways) and ours interleaved round by round, then pybullet-fleet."""
    rows = []
    for n in args.robots:
        seconds = args.seconds if args.seconds is not None else DEFAULT_SECONDS.get(n, 30.0 if n <= 100 else 20.0)
        ours_w: list[Window] = []
        bare_w: list[Window] = []
        floor_w: list[Window] = []
        with DidRegistry(directory / f"registry-{n}.sqlite3") as registry, contextlib.ExitStack() as stack:
            progress(f"{n} robots: registering {n} identities and building the fleet")
            ours = Ours(n, args, registry, directory)
            stack.callback(ours.close)
            bare = Bare(ours.starts, args, robot_bodies=True)
            stack.callback(bare.close)
            floor = Bare(ours.starts, args, robot_bodies=False)
            stack.callback(floor.close)
            progress(f"{n} robots: warm-up, {args.warmup:g} simulated s each")
            for simulation in (bare, floor, ours):
                simulation.warm(args.warmup)
            for round_number in range(1, args.rounds + 1):
                tag = f"{n} robots, round {round_number}/{args.rounds}, {seconds:g} simulated s"
                bare_w.append(bare.window(seconds))
                floor_w.append(floor.window(seconds))
                ours_w.append(ours.window(seconds))
                progress(f"{tag}: bare x{bare_w[-1].rtf:,.2f}, bare without robot bodies x{floor_w[-1].rtf:,.2f}, "
                         f"ours x{ours_w[-1].rtf:,.2f} real time ({ours_w[-1].messages / ours_w[-1].wall_s:,.0f} "
                         f"messages signed per wall s, {ours_w[-1].arrivals} arrivals)")
            refused, retries, starts, build_s = ours.refused, ours.patrol.retries, ours.starts, ours.build_s
        pbf = None
        if comparison is not None and comparison.python is not None:
            progress(f"{n} robots: pybullet-fleet, {args.warmup:g} s warm-up + {args.rounds} x {seconds:g} "
                     f"simulated s")
            pbf = run_pbf(comparison, n, starts, args, seconds)
            if pbf is not None:
                progress(f"{n} robots: pybullet-fleet x{statistics.median(w.rtf for w in pbf):,.2f} real time "
                         f"(by round {' '.join(f'{w.rtf:.2f}' for w in pbf)})")
            else:
                progress(comparison.why_not.splitlines()[0])
        rows.append(Row(n, seconds, ours_w, bare_w, floor_w, pbf, build_s, refused, retries))
    return rows


def _rtf(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


HEADER = ("| robots | simulated s x rounds | ours RTF | bare RTF | overhead (ours/bare wall) "
          "| bare RTF, no robot bodies | overhead vs no robot bodies | pybullet-fleet RTF | ours / pybullet-fleet "
          "| messages signed per wall s | arrivals ours | arrivals pybullet-fleet |")


def report(rows: list[Row], args: argparse.Namespace, comparison: Comparison | None) -> str:
    """The table (medians over rounds, ratios within the same run), the goals and what each side simulated."""
    city = generate_city(args.seed, BLOCKS)
    lines = [
        f"rays per robot: {args.rays} (range {RANGE_M:g} m, lidar {LIDAR_HZ:g} Hz, one rayTestBatch per <= "
        f"{MAX_BATCH} rays, numThreads=1); signed telemetry {TELEMETRY_HZ:g} Hz; tick {DT:g} s; "
        f"city {BLOCKS}x{BLOCKS} blocks, {len(city.buildings)} buildings, seed {args.seed}; warm-up {args.warmup:g} "
        f"simulated s; {args.rounds} round(s), medians; {os.cpu_count()} CPUs, every simulation on one core",
        "",
        HEADER,
        "|" + "---:|" * HEADER.count(" | ") + "---:|",
    ]
    for row in rows:
        pbf = row.pbf
        messages = statistics.median(w.messages / w.wall_s for w in row.ours)
        cells = [
            f"{row.robots:,}", f"{row.seconds:g} x {len(row.ours)}", _rtf(row.rtf(row.ours)), _rtf(row.rtf(row.bare)),
            f"{row.overhead(row.bare):.2f}", _rtf(row.rtf(row.floor)), f"{row.overhead(row.floor):.2f}",
            _rtf(row.rtf(pbf)) if pbf else "—", f"{row.rtf(row.ours) / row.rtf(pbf):.3f}" if pbf else "—",
            f"{messages:,.0f}", f"{sum(w.arrivals for w in row.ours):,}",
            f"{sum(w.arrivals for w in pbf):,}" if pbf else "—",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines.append("")
    by_count = {row.robots: row for row in rows}
    for robots, least in GOALS:
        row = by_count.get(robots)
        if row is None:
            lines.append(f"{robots} robots >= {least:g}x real time: not measured (no {robots}-robot run)")
        else:
            rtf = row.rtf(row.ours)
            lines.append(f"{robots} robots >= {least:g}x real time: {'met' if rtf >= least else 'NOT met'} "
                         f"({rtf:.2f}x; by round {' '.join(f'{w.rtf:.2f}' for w in row.ours)}; bare PyBullet "
                         f"{row.rtf(row.bare):.2f}x, without robot bodies {row.rtf(row.floor):.2f}x)")
    refused = sum(row.refused for row in rows)
    retries = sum(row.retries for row in rows)
    driven = (
        "The marketplace (--market) runs in process: customers order one task per robot every four minutes, each "
        "task is announced (again every 2 s while nobody took it), robots bid, win, deliver and are paid; every "
        "robot message is verified by ingest, every announcement and award by the fleet's market gate "
        f"({refused} refused); arrivals are tasks delivered and settled."
        if args.market else
        "The patrol link counts the messages (not verified: see benchmarks/bus.py) and sends a signed goto to a "
        f"random drop-off on each goto.arrived; every goto is verified by the robot's gate ({refused} refused, "
        f"{retries} re-sent after route.none or command.rejected).")
    lines += [
        "",
        "ours: launch.fleet.SimFleet + run; every robot localizes, plans on the road graph, follows its route, avoids "
        "with its lidar, keeps its battery and seals signed telemetry and events; moving obstacles on. " + driven
        + " Registering the identities and building the fleet is not timed: "
        + ", ".join(f"{row.robots} robots {row.build_s:.1f} s" for row in rows) + ".",
        "bare: raw pybullet, the same buildings built by sim.bodies.add_boxes as the world builds them, robots "
        "moved on straight lines (turned back at the city's edge) every tick, the same rays per tick read back; "
        "with robot bodies each robot is a static sphere at lidar height moved with resetBasePositionAndOrientation "
        "every tick and seen by the rays; without, PyBullet holds only the buildings and no robot is seen.",
    ]
    if comparison is None:
        lines.append("pybullet-fleet: not run (--no-compare)")
    elif not any(row.pbf for row in rows):
        lines.append(f"pybullet-fleet: not run: {comparison.why_not}")
    else:
        lines.append(
            f"pybullet-fleet {comparison.version} (its own venv, a subprocess per robot count): the same "
            f"{len(city.buildings)} buildings as static boxes, the same robots as {RobotSpec().radius_m:g} m sphere "
            f"Agents at the same start poses with the same speed, turn and acceleration limits, its batch "
            f"differential-drive controller, physics off, {DT:g} s step, as fast as it goes; each robot drives "
            f"straight to a random drop-off place and gets a new one when it stops; its default per-step "
            f"robot-robot collision check (closest points) on. It simulates NO lidar (it has none), no road "
            f"planning and no avoidance (robots drive through buildings), no battery, no sensor noise or "
            f"localization and no signing: its figure is for far less work per robot than ours.")
        if comparison.why_not:
            lines.append(f"pybullet-fleet: some counts failed: {comparison.why_not}")
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of robot counts") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("robot counts must be >= 1")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table (progress goes to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=_counts, default=None, help="robot counts (default 10,100,1000)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="simulated seconds per round (default 60 at 10 robots, 30 at 100, 20 at 1000)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="simulated warm-up seconds before the first round (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="measured windows per count, medians (default 3)")
    parser.add_argument("--rays", type=int, default=16, help="lidar rays per robot (default 16)")
    parser.add_argument("--seed", type=int, default=7, help="city, spawn points and goals (default 7)")
    parser.add_argument("--no-compare", action="store_true", help="skip pybullet-fleet")
    parser.add_argument("--pbf-venv", type=Path, default=PBF_VENV,
                        help=f"where the pybullet-fleet venv is built once and reused (default {PBF_VENV})")
    parser.add_argument("--market", action="store_true",
                        help="ours earns on the marketplace (tasks, bids, awards, deliveries) instead of patrolling")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 and 10 robots, one round of 3 simulated s after a 1 s warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.robots = args.robots or [3, 10]
        args.seconds = 3.0 if args.seconds is None else args.seconds
        args.warmup = 1.0 if args.warmup is None else args.warmup
        args.rounds = 1 if args.rounds is None else args.rounds
    args.robots = args.robots or [10, 100, 1000]
    args.warmup = 5.0 if args.warmup is None else args.warmup
    args.rounds = 3 if args.rounds is None else args.rounds
    if args.rays < 1 or args.rounds < 1 or args.warmup < 0 or (args.seconds is not None and args.seconds <= 0):
        parser.error("--rays and --rounds must be >= 1, --warmup >= 0 and --seconds > 0")
    started = time.monotonic()
    comparison = None
    if not args.no_compare:
        comparison = pbf_python(args.pbf_venv)
        if comparison.python is None:
            print(f"pybullet-fleet comparison skipped: {comparison.why_not}", file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="depai-bench-fleet-") as tmp:
            rows = measure(args, Path(tmp), comparison)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    progress(f"done in {time.monotonic() - started:.0f} s")
    print(report(rows, args, comparison))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
