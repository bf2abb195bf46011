"""Can a liar hide an obstacle from the shared map by claiming to stand on it? Measured with the real simulator.

    .venv/bin/python benchmarks/obstacle_hiding.py              # 20 seeded trials in each of three modes
    .venv/bin/python benchmarks/obstacle_hiding.py --trials 5   # fewer

Each trial: a 2x2-block city (its own seed) with roadworks closing one street; one robot (a
registered key, valid signatures) claims in its telemetry to stand on the roadworks' face (a random
point along the middle of the face, up to 0.3 m in front of or behind it) while its body idles where
it started; three of the six honest robots are sent (signed goto commands, as a survey sends) to the
street's end on that side, then to look at the face from about 3.5 m. The map
service drops returns that land on a robot, so before witnessing the liar's claim removed the face
around it from everyone's scans for as long as it kept claiming. After ``--seconds`` simulated
seconds, against the simulator's ground truth:

  caught       the liar's claims were judged unseen or impossible by peers or the map, never seen,
               and its witnessed confidence ended below 0.3
  face held    the roadworks' face cells within the liar's teammate radius (0.9 m) of its claim are
               believed OCCUPIED (at least a third of them: a surface is one cell thick and beams are
               sparse), and
  road blocked the closed road is believed blocked at the end

and, for the honest robots: how often one was SEEN in a second in which a peer stood within 4 m of it
(ground truth), and the share of verdicts on them that were UNSEEN (false: they were there).
The same trials run in three modes (``--modes``): "witnessing" (the map service as it is), "no
witnessing" (``witness=None``: the old rule, every return near a claimed pose dropped; it shows the
attack works there) and "no liar" (the liar's robot is honest and idle: what the honest fleet
believes without an attack, and whether the scenario itself lets it see the face and close the road).
Ground truth is read only here, to measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/obstacle_hiding.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

from bus.ingest import Ingest  # noqa: E402
from bus.schemas import BY_KIND  # noqa: E402
from bus.session import Outgoing  # noqa: E402
from bus.topics import MAP_PRESENCE, topic_root  # noqa: E402
from identity.envelope import EnvelopeSigner, reread  # noqa: E402
from identity.registry import DidRegistry  # noqa: E402
from launch.fleet import FleetConfig, SimFleet, register, run  # noqa: E402
from launch.links import LoopbackLink  # noqa: E402
from robots.agent import RobotAgent  # noqa: E402
from sim.city import CityLayout  # noqa: E402
from sim.geometry import Box  # noqa: E402
from sim.lidar import LidarSpec  # noqa: E402
from sim.obstacles import ROADWORKS_HEIGHT_M, Obstacle  # noqa: E402
from sim.sensors import NoiseSpec  # noqa: E402
from spatial.grid import OCCUPIED  # noqa: E402
from spatial.service import MapService  # noqa: E402
from spatial.witness import WitnessSpec  # noqa: E402

MODES = ("witnessing", "no witnessing", "no liar")  # the map service judges claims / the old rule / nobody lies
HONEST = 6  # robots telling the truth; the three nearest are sent to look at the roadworks
LOOK_FROM_M = 3.5  # how far in front of the face the honest robots are sent
NEAR_M = 4.0  # a peer this close (ground truth) should see a robot
LOCALIZED_SIGMA_M = 0.12  # GNSS 1-sigma giving about 0.3 m p95 position error, what map-based localization aims at


class Squatter(RobotAgent):
    """A robot with a valid key whose telemetry says it stands still at ``claim``, wherever it really is. It
    publishes no scans: its lie is where it stands, not what it sees (a robot whose scans lie is the trust
    ledger's to catch: benchmarks/map_accuracy.py)."""

    claim: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def telemetry(self) -> dict[str, Any]:
        body = super().telemetry()
        body["pose"] = _pose(*self.claim)
        body["twist"] = {"v": 0.0, "w": 0.0}
        return body

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        if kind != "scan":
            super()._publish(kind, body)


def _pose(x: float, y: float, theta: float) -> dict[str, float]:
    return {"x": round(x, 3), "y": round(y, 3), "theta": round(theta, 4)}


@dataclass
class Trial:
    """What one trial measured."""

    seed: int
    mode: str  # one of MODES
    caught: bool
    liar_verdicts: dict[str, int]
    liar_confidence: float
    face_cells: int  # truly occupied face cells within the teammate radius of the claim
    face_believed: int  # ... of which believed OCCUPIED at the end
    road_blocked: bool
    honest_near_s: int  # (honest robot, second) pairs with a peer within NEAR_M
    honest_seen_near_s: int  # ... in which the robot got a SEEN verdict
    honest_verdicts: dict[str, int]
    refused_impossible: int
    arrived: int  # honest robots that reached their vantage point

    @property
    def face_held(self) -> bool:
        """At least a third of the face cells the liar would hide are believed OCCUPIED."""
        return self.face_cells > 0 and self.face_believed * 3 >= self.face_cells

    @property
    def hidden_failed(self) -> bool:
        """The attack failed: caught, the face held, and the road still blocked."""
        return self.caught and self.face_held and self.road_blocked


def _closable(city: CityLayout) -> list[str]:
    """Streets that are not bridges of the road graph and hold no place: closing one leaves the city connected."""
    graph = city.road_graph()
    bridges = {graph.edges[u, v]["street"] for u, v in nx.bridges(graph)}
    return sorted(set(city.streets) - bridges - {place.street for place in city.places})


def _scene(city: CityLayout, robots: np.ndarray, rng: np.random.Generator
           ) -> tuple[str, Box, tuple[float, float, float], tuple[float, float], list[tuple[float, float]]]:
    """The closed street, its roadworks, the liar's claim on the face the honest robots (at ``robots``) are
    nearer to, the street's end on that side, and the vantage points in front of that face."""
    def on(street: str) -> bool:  # a robot on the street could only reach the far face
        road = city.street_box(street)
        return bool(((np.abs(robots[:, 0] - road.x) <= road.half_x + 1.0)
                     & (np.abs(robots[:, 1] - road.y) <= road.half_y + 1.0)).any())

    streets = [street for street in _closable(city) if not on(street)] or _closable(city)
    street = streets[int(rng.integers(len(streets)))]
    box = dataclasses.replace(city.street_box(street, fraction=0.15), height=ROADWORKS_HEIGHT_M)
    ends = [city.nodes[end] for end in city.streets[street]]
    along_y = ends[0][0] == ends[1][0]  # the street runs along y: its faces are at y = box.y +- half_y
    near = min(ends, key=lambda end: float(np.sort(np.hypot(*(robots - np.array(end)).T))[:3].sum()))
    side = float(np.sign(near[1] - box.y) if along_y else np.sign(near[0] - box.x))
    lateral = float(rng.uniform(-0.6, 0.6)) * (box.half_x if along_y else box.half_y)
    depth = float(rng.uniform(-0.3, 0.3))  # in front of (+) or behind (-) the face
    if along_y:
        face = box.y + side * box.half_y
        claim = (box.x + lateral, face + side * depth, math.pi / 2)
        views = [(box.x + dx, face + side * LOOK_FROM_M) for dx in (-2.5, 0.0, 2.5)]
    else:
        face = box.x + side * box.half_x
        claim = (face + side * depth, box.y + lateral, 0.0)
        views = [(face + side * LOOK_FROM_M, box.y + dy) for dy in (-2.5, 0.0, 2.5)]
    return street, box, claim, (float(near[0]), float(near[1])), views


def _lookers(fleet: SimFleet, box: Box, corner: tuple[float, float], count: int) -> list[int]:
    """The ``count`` honest robots with the shortest routes to the corner among those whose route does not run
    through the roadworks (they would meet its far face); they go there, then each on to its vantage point."""
    lengths = []
    for index, (x, y) in enumerate(fleet.world.truth.poses[:HONEST, :2].tolist()):
        route = fleet.planner.plan((x, y), corner)
        points = np.array(route.waypoints)
        steps = [np.linspace(a, b, max(2, int(np.hypot(*(b - a)) / 0.5))) for a, b in zip(points, points[1:])]
        along = np.concatenate(steps) if steps else points
        through = ((np.abs(along[:, 0] - box.x) <= box.half_x + 1.0)
                   & (np.abs(along[:, 1] - box.y) <= box.half_y + 1.0)).any()
        if not through:
            lengths.append((route.length_m, index))
    return [index for _, index in sorted(lengths)[:count]]


def _goto(signer: EnvelopeSigner, robot: str, task: str, point: tuple[float, float]) -> Outgoing:
    """A signed goto command to ``robot``, as the dispatcher sends for a survey."""
    spec = BY_KIND["command"]
    body = {"to": robot, "type": "goto", "task": task, "args": {"x": point[0], "y": point[1]}}
    return Outgoing(f"{topic_root(robot)}/{spec.channel}", signer.seal("command", body), spec.qos, spec.retain)


class _Presence:
    """The map service as the fleet loop steps it, keeping the map.presence verdicts it publishes to measure."""

    def __init__(self, service: MapService) -> None:
        self.service = service
        self.verdicts: list[dict[str, Any]] = []

    def step(self) -> list[Outgoing]:
        out = []
        for message in self.service.step():
            if message.topic == MAP_PRESENCE:
                self.verdicts += reread(message.payload).body["verdicts"]
            else:
                out.append(message)
        return out


def run_trial(seed: int, *, mode: str = "witnessing", seconds: float = 100.0, gnss_sigma_m: float = LOCALIZED_SIGMA_M,
              rays: int = 64, progress: Callable[[str], None] | None = None) -> Trial:
    """One city, one roadworks, one squatting liar (an honest idle robot in mode "no liar") and six honest
    robots; measured against ground truth."""
    if mode not in MODES:
        raise ValueError(f"mode is one of {MODES}, not {mode!r}")
    rng = np.random.default_rng([seed, 20])
    config = FleetConfig(robots=HONEST + 1, seed=seed, blocks=2, obstacles=False, scan_hz=2.0,
                         lidar=LidarSpec(rays=rays), orders_per_min=0.0,
                         noise=NoiseSpec(gnss_sigma_m=gnss_sigma_m, gnss_rate_hz=5.0))
    liar_class = type("Squatter", (Squatter,), {})
    with tempfile.TemporaryDirectory(prefix="depai-hiding-") as tmp:
        registry = DidRegistry(Path(tmp) / "registry.sqlite3")
        operator = register(registry)
        dispatch_id, map_id = register(registry, controller=operator.did), register(registry, controller=operator.did)
        fleet = SimFleet(config, registry, controller=operator.did, commanders=[dispatch_id.did],
                         map_services=[map_id.did],
                         agent_class=lambda i: liar_class if i == HONEST and mode != "no liar" else RobotAgent)
        try:
            street, box, claim, corner, views = _scene(fleet.city, fleet.world.truth.poses[:HONEST, :2], rng)
            liar_class.claim = claim  # before the liar's first word
            fleet.schedule.add(Obstacle("roadworks-0", "roadworks", 0.0, 1e9, box, street))
            service = MapService(map_id.envelope_signer(fleet.clock), fleet.city.road_graph(),
                                 bounds=fleet.city.bounds(), clock=fleet.clock, level_of=lambda did: "fleet",
                                 witness=None if mode == "no witnessing" else WitnessSpec())
            commander = dispatch_id.envelope_signer(fleet.clock)
            link = LoopbackLink(fleet, Ingest(registry, service.observe, clock=fleet.clock))
            liar = fleet.agents[HONEST].did
            honest = [agent.did for agent in fleet.agents[:HONEST]]
            run(fleet, link, duration_s=1.0)  # robots sense and report where they are first
            lookers = _lookers(fleet, box, corner, len(views))
            link.publish_services([_goto(commander, honest[i], f"approach-{k}", corner) for k, i in enumerate(lookers)])
            presence = _Presence(service)
            near: set[tuple[int, int]] = set()
            looking: set[int] = set()
            for _ in range(int(seconds)):
                for k, i in enumerate(lookers):
                    at = fleet.agents[i].pose  # where the robot believes it is, as a fleet operator hears it
                    if k not in looking and math.hypot(at[0] - corner[0], at[1] - corner[1]) <= 3.0:
                        looking.add(k)
                        link.publish_services([_goto(commander, honest[i], f"look-{k}", views[k])])
                run(fleet, link, duration_s=1.0, services=[presence])
                truth = fleet.world.truth.poses[:HONEST, :2]
                gaps = np.hypot(*(truth[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
                np.fill_diagonal(gaps, np.inf)
                second = math.floor(fleet.clock())
                near |= {(int(i), second) for i in np.flatnonzero(gaps.min(axis=1) <= NEAR_M)}
            truth = fleet.world.truth.poses[:HONEST, :2]
            arrived = sum(int(np.hypot(*(truth - np.array(view)).T).min() <= 1.5) for view in views)
            seen_at = {(honest.index(v["robot"]), v["t"] // 1000) for v in presence.verdicts
                       if v["robot"] in honest and v["verdict"] == "seen"}
            report = {row["did"]: row for row in service.presence_report()}
            liar_row = report.get(liar, {"confidence": 0.5, "seen": 0, "unseen": 0, "impossible": 0})
            liar_verdicts = {kind: int(liar_row[kind]) for kind in ("seen", "unseen", "impossible")}
            honest_verdicts = {kind: sum(int(report[did][kind]) for did in honest if did in report)
                               for kind in ("seen", "unseen", "impossible")}
            face_cells, face_believed = _face(service, box, claim)
            edges = {(min(u, v), max(u, v)) for u, v, name in fleet.planner.graph.edges(data="street")
                     if name == street}
            states = service.road_states()
            caught = (liar_verdicts["seen"] == 0 and liar_verdicts["unseen"] + liar_verdicts["impossible"] > 0
                      and liar_row["confidence"] < 0.3)
            trial = Trial(
                seed=seed, mode=mode, caught=caught, liar_verdicts=liar_verdicts,
                liar_confidence=float(liar_row["confidence"]), face_cells=face_cells, face_believed=face_believed,
                road_blocked=any(states.get(edge) == "blocked" for edge in edges),
                honest_near_s=len(near), honest_seen_near_s=len(near & seen_at), honest_verdicts=honest_verdicts,
                refused_impossible=service.refused["impossible_pose"], arrived=arrived)
            if progress is not None:
                progress(f"seed {seed} ({mode}): caught {trial.caught}, "
                         f"face {face_believed}/{face_cells}, road blocked {trial.road_blocked}, "
                         f"{arrived} of 3 arrived")
            return trial
        finally:
            fleet.close()
            registry.close()


def _face(service: MapService, box: Box, claim: tuple[float, float, float]) -> tuple[int, int]:
    """The roadworks' boundary cells within the teammate radius of the claim, and how many are believed OCCUPIED."""
    res = service.grid.spec.resolution_m
    reach = service.teammate_radius_m
    ix = np.arange(math.floor((claim[0] - reach) / res), math.floor((claim[0] + reach) / res) + 1)
    iy = np.arange(math.floor((claim[1] - reach) / res), math.floor((claim[1] + reach) / res) + 1)
    cx, cy = (c.ravel() for c in np.meshgrid(ix, iy, indexing="ij"))
    x0, y0 = cx * res, cy * res
    centre_x, centre_y = x0 + res / 2, y0 + res / 2
    overlaps = ((x0 < box.x + box.half_x) & (x0 + res > box.x - box.half_x)
                & (y0 < box.y + box.half_y) & (y0 + res > box.y - box.half_y))
    inner = ((x0 > box.x - box.half_x) & (x0 + res < box.x + box.half_x)
             & (y0 > box.y - box.half_y) & (y0 + res < box.y + box.half_y))
    near = np.hypot(centre_x - claim[0], centre_y - claim[1]) <= reach
    boundary = overlaps & ~inner & near
    states = service.grid.state_at(centre_x[boundary], centre_y[boundary], service.trust.weights(), service.clock())
    return int(boundary.sum()), int((states == OCCUPIED).sum())


def main(argv: list[str] | None = None) -> int:
    """Run the trials in every mode and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--gnss", type=float, default=LOCALIZED_SIGMA_M, metavar="SIGMA_M",
                        help=f"GNSS 1-sigma error in metres (default {LOCALIZED_SIGMA_M}: about 0.3 m p95)")
    parser.add_argument("--rays", type=int, default=64, help="lidar beams per scan (default 64; depai up's is 32)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args(argv)
    say = lambda line: print("  " + line, file=sys.stderr, flush=True)  # noqa: E731
    seeds = range(args.first_seed, args.first_seed + args.trials)
    rows = {mode: [run_trial(seed, mode=mode, seconds=args.seconds, gnss_sigma_m=args.gnss, rays=args.rays,
                             progress=say) for seed in seeds] for mode in args.modes}
    print(f"{args.trials} trials (seeds {seeds.start}-{seeds.stop - 1}), {args.seconds:g} simulated s each, "
          f"GNSS sigma {args.gnss} m, {args.rays}-beam lidar\n")
    print("| map service | liar caught | face held | road blocked | attack failed (all three) "
          "| liar verdicts seen / unseen / impossible | honest robots SEEN in a second with a peer within 4 m "
          "| honest verdicts unseen or impossible / all | trials with all 3 lookers arrived |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for mode, trials in rows.items():
        n = len(trials)
        liar = {kind: sum(t.liar_verdicts[kind] for t in trials) for kind in ("seen", "unseen", "impossible")}
        near = sum(t.honest_near_s for t in trials)
        seen_near = sum(t.honest_seen_near_s for t in trials)
        verdicts = {kind: sum(t.honest_verdicts[kind] for t in trials) for kind in ("seen", "unseen", "impossible")}
        total = sum(verdicts.values())
        doubts = verdicts["unseen"] + verdicts["impossible"]
        lied = mode != "no liar"
        said = f"{liar['seen']} / {liar['unseen']} / {liar['impossible']}" if lied else "—"
        print(f"| {mode} | {f'{sum(t.caught for t in trials)}/{n}' if lied else '—'} "
              f"| {sum(t.face_held for t in trials)}/{n} | {sum(t.road_blocked for t in trials)}/{n} "
              f"| {f'{sum(t.hidden_failed for t in trials)}/{n}' if lied else '—'} "
              f"| {said} "
              f"| {seen_near / near if near else math.nan:.3f} ({seen_near}/{near}) "
              f"| {doubts / total if total else math.nan:.3f} ({doubts}/{total}) "
              f"| {sum(t.arrived == 3 for t in trials)}/{n} |")
    if "witnessing" in rows:
        # A trial counts where the scenario worked: without a liar, the lookers held the face and closed the road.
        valid = ({t.seed for t in rows["no liar"] if t.face_held and t.road_blocked} if "no liar" in rows
                 else set(seeds))
        failed = [t.seed for t in rows["witnessing"] if t.seed in valid and not t.hidden_failed]
        print(f"\nobstacle hiding caught in 100 % of the {len(valid)} trials whose no-liar run held the face and "
              f"closed the road: {'met' if not failed else 'NOT met'}" + (f" (not in seeds {failed})" if failed else "")
              + (f"; seeds {sorted(set(seeds) - valid)} left out" if len(valid) < len(seeds) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
