"""How right is the fleet's shared map? Measured against the simulator's ground truth, with and without liars.

    .venv/bin/python benchmarks/map_accuracy.py              # honest, 10 % and 30 % liars, consumer GNSS (1.5 m)
    .venv/bin/python benchmarks/map_accuracy.py --gnss 0.05  # the same with RTK-class GNSS
    .venv/bin/python benchmarks/map_accuracy.py --quick      # a short run (the smoke test)

A fleet delivers orders in a seeded city with parked vans and streets closed by
roadworks; every robot publishes signed lidar scans, the map service fuses the
verified ones, and robots plan on the road graph it publishes. A fraction of
the robots lie in what they publish (their signatures are valid, their data is
not): half inject a phantom barrier across the road ahead, half erase every
return. The report gives occupancy IoU over the observed area, blocked-road
precision and recall at the end, the share of time each closure was believed
after a robot first came near it (nobody's map can know a closure no robot has
seen, and unseen evidence fades), the surveys the map asked for, false
blockages ever believed, where trust ended up, and the honest robots' pose
error (|estimated - true| position, sampled every simulated second after
POSE_WARMUP_S).
Ground truth is read only here, to measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/map_accuracy.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

from bus.ingest import Ingest  # noqa: E402
from identity.envelope import Envelope  # noqa: E402
from identity.registry import DidRegistry  # noqa: E402
from launch.fleet import FleetConfig, SimFleet, SurveyRequests, register, run  # noqa: E402
from launch.links import LoopbackLink  # noqa: E402
from marketplace.dispatch import Dispatcher  # noqa: E402
from robots.agent import RobotAgent  # noqa: E402
from robots.body import Sensors  # noqa: E402
from sim.demand import Demand  # noqa: E402
from sim.geometry import Box  # noqa: E402
from sim.lidar import LidarSpec  # noqa: E402
from sim.obstacles import ROADWORKS_HEIGHT_M, VAN_HEIGHT_M, Obstacle  # noqa: E402
from sim.sensors import NoiseSpec  # noqa: E402
from spatial.grid import OCCUPIED, UNKNOWN  # noqa: E402
from spatial.service import MapService  # noqa: E402

CONSUMER_SIGMA_M = 1.5  # what a delivery robot's GNSS gives (the default); RTK-class is 0.05 m (--gnss)
RTK_SIGMA_M = 0.05
POSE_WARMUP_S = 60.0  # pose error is sampled after this: robots first localize on GNSS while the map is built
PHANTOM_M = 2.5  # how far ahead an injecting liar puts its fake barrier


class LyingAgent(RobotAgent):
    """A robot whose scans lie (its key is real): ``lie`` is "inject" (a phantom barrier) or "erase"."""

    lie = "inject"

    def _scan_body(self, sensors: Sensors) -> dict[str, Any]:
        body = super()._scan_body(sensors)
        ranges, angle = body["ranges"], body["angle_min"]
        if self.lie == "erase":
            body["ranges"] = [None] * len(ranges)
            return body
        for i in range(len(ranges)):
            c = math.cos(angle + i * body["angle_increment"])
            if c > 0.3:  # a straight wall PHANTOM_M ahead, as wide as the beams reach across the road
                fake = round(PHANTOM_M / c, 3)
                if ranges[i] is None or ranges[i] > fake:
                    ranges[i] = fake
        return body


class Injector(LyingAgent):
    lie = "inject"


class Eraser(LyingAgent):
    lie = "erase"


@dataclass
class Outcome:
    """What one scenario measured."""

    robots: int
    liars: int
    sim_s: float
    scans: int
    observed_cells: int
    iou: float
    blocked_truth: int
    blocked_seen: int  # truly blocked roads some robot came within the map's insertion range of
    blocked_believed: int
    precision: float
    recall: float
    believed_share: float  # of the seconds since a robot first came near each closure, the share it was believed
    surveys: int
    false_blockages: int
    honest_weight: float
    liar_weight: float
    refused: int
    pose_p50: float  # honest robots' position error (m), every simulated second after POSE_WARMUP_S
    pose_p95: float
    pose_max: float


def _closable_streets(fleet: SimFleet, count: int) -> list[str]:
    """Streets that are not bridges of the road graph and hold no place: safe to close for the run."""
    graph = fleet.planner.graph
    bridges = {graph.edges[u, v]["street"] for u, v in nx.bridges(graph)}
    with_places = {place.street for place in fleet.city.places}
    streets = sorted(set(fleet.city.streets) - bridges - with_places)
    rng = np.random.default_rng([fleet.config.seed, 5])
    return [streets[i] for i in rng.choice(len(streets), size=min(count, len(streets)), replace=False)]


def _stage(fleet: SimFleet, closures: int, vans: int) -> list[str]:
    """Close some streets with roadworks and park some vans, for the whole run; returns the closed streets."""
    closed = _closable_streets(fleet, closures + vans)
    for i, street in enumerate(closed[:closures]):
        box = dataclasses.replace(fleet.city.street_box(street, fraction=0.15), height=ROADWORKS_HEIGHT_M)
        fleet.schedule.add(Obstacle(f"roadworks-{i}", "roadworks", 0.0, 1e9, box, street))
    for i, street in enumerate(closed[closures:]):
        road = fleet.city.street_box(street, fraction=0.15)
        along_x = road.half_x > road.half_y
        # against the kerb on one side: 2.2 m wide, 6 m long, leaving a lane free
        kerb = (road.half_y if along_x else road.half_x) - 1.3
        x, y = (road.x, road.y - kerb) if along_x else (road.x - kerb, road.y)
        box = Box(x, y, 3.0 if along_x else 1.1, 1.1 if along_x else 3.0, VAN_HEIGHT_M)
        fleet.schedule.add(Obstacle(f"van-{i}", "van", 0.0, 1e9, box, street))
    return closed[:closures]


def _box_distance(box: Box, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """How far each point (xs[i], ys[i]) is from the box's footprint (0 inside)."""
    dx = np.maximum(np.abs(xs - box.x) - box.half_x, 0.0)
    dy = np.maximum(np.abs(ys - box.y) - box.half_y, 0.0)
    return np.hypot(dx, dy)


def _truth_occupied(boxes: list[Box], cells: np.ndarray, resolution: float) -> np.ndarray:
    """Whether each (ix, iy) cell overlaps any box (a wall's cell counts, wherever the wall cuts it)."""
    x0, y0 = cells[:, 0] * resolution, cells[:, 1] * resolution
    occupied = np.zeros(len(cells), dtype=bool)
    for box in boxes:
        occupied |= ((x0 < box.x + box.half_x) & (x0 + resolution > box.x - box.half_x)
                     & (y0 < box.y + box.half_y) & (y0 + resolution > box.y - box.half_y))
    return occupied


def _iou(fleet: SimFleet, service: MapService) -> tuple[float, int]:
    """Occupancy IoU over the cells the map has a belief about (nan with no occupied cell), and how many those are."""
    grid, now = service.grid, service.clock()
    weights = service.trust.weights()
    size = grid.spec.tile_cells
    predicted, cells = [], []
    for key in grid.tiles():
        state = grid.belief(key, weights, now).state
        ix, iy = np.nonzero(state != UNKNOWN)
        predicted.append(state[ix, iy] == OCCUPIED)
        cells.append(np.stack((ix + key[0] * size, iy + key[1] * size), axis=1))
    if not cells:
        return math.nan, 0
    predicted_occ, observed = np.concatenate(predicted), np.concatenate(cells)
    boxes = list(fleet.city.buildings) + list(fleet.schedule.active(fleet.world.time_s).values())
    true_occ = _truth_occupied(boxes, observed, grid.spec.resolution_m)
    union = int((predicted_occ | true_occ).sum())
    return (int((predicted_occ & true_occ).sum()) / union if union else math.nan), len(observed)


def _pose_errors(fleet: SimFleet, robots: list[int], truth: np.ndarray) -> list[float]:
    """How far each of ``robots``' estimated position is from its true one (m); robots not yet localized skip."""
    agents = fleet.agents
    return [math.hypot(agents[i].pose[0] - truth[i, 0], agents[i].pose[1] - truth[i, 1])
            for i in robots if agents[i].estimator is not None]


def _percentiles(errors: list[float]) -> dict[str, float]:
    """p50, p95 and max of the pose errors, as Outcome's fields (nan when none were sampled)."""
    if not errors:
        return {"pose_p50": math.nan, "pose_p95": math.nan, "pose_max": math.nan}
    p50, p95 = np.percentile(errors, [50, 95])
    return {"pose_p50": float(p50), "pose_p95": float(p95), "pose_max": float(max(errors))}


def run_scenario(*, seed: int = 3, robots: int = 12, liar_fraction: float = 0.0, duration_s: float = 300.0,
                 blocks: int = 3, closures: int = 2, vans: int = 2, rays: int = 64,
                 gnss_sigma_m: float = CONSUMER_SIGMA_M, pose_warmup_s: float = POSE_WARMUP_S) -> Outcome:
    """One fleet, one map service, ``liar_fraction`` of the robots lying; measured against ground truth (pose error
    from ``pose_warmup_s`` on)."""
    liars = round(robots * liar_fraction)
    liar_class = {i: (Injector if k % 2 == 0 else Eraser) for k, i in enumerate(range(robots - liars, robots))}
    with tempfile.TemporaryDirectory(prefix="depai-map-") as tmp:
        registry = DidRegistry(Path(tmp) / "registry.sqlite3")
        operator = register(registry)
        dispatch_id, map_id = register(registry, controller=operator.did), register(registry, controller=operator.did)
        config = FleetConfig(robots=robots, seed=seed, blocks=blocks, obstacles=False, scan_hz=2.0,
                             lidar=LidarSpec(rays=rays), orders_per_min=robots * 1.0,
                             noise=NoiseSpec(gnss_sigma_m=gnss_sigma_m, gnss_rate_hz=5.0))
        fleet = SimFleet(config, registry, controller=operator.did, commanders=[dispatch_id.did],
                         map_services=[map_id.did], agent_class=lambda i: liar_class.get(i, RobotAgent))
        try:
            closed = _stage(fleet, closures, vans)
            service = MapService(map_id.envelope_signer(fleet.clock), fleet.city.road_graph(),
                                 bounds=fleet.city.bounds(), clock=fleet.clock, level_of=lambda did: "fleet")
            dispatcher = Dispatcher(dispatch_id.envelope_signer(fleet.clock), clock=fleet.clock)

            def consume(topic: str, envelope: Envelope) -> None:
                dispatcher.observe(topic, envelope)
                service.observe(topic, envelope)

            ingest = Ingest(registry, consume, clock=fleet.clock)
            link = LoopbackLink(fleet, ingest)
            graph = fleet.planner.graph
            truly_blocked = {(u, v) if u <= v else (v, u) for u, v, street in graph.edges(data="street")
                             if street in closed}
            closures_at = {street: box for street, box in ((o.street, o.box) for o in fleet.schedule.obstacles)
                           if street in closed}
            seen_streets: set[str] = set()
            seen_s = believed_s = 0
            false_blockages = 0
            demand = Demand(fleet.city, seed, config.order_rate)
            surveys = SurveyRequests(service, dispatcher)
            services = [service, surveys]
            honest_robots = [i for i in range(robots) if i not in liar_class]
            pose_errors: list[float] = []
            for _ in range(int(duration_s)):
                run(fleet, link, duration_s=1.0, dispatcher=dispatcher, demand=demand, services=services)
                believed = set(service.blocked_roads())
                false_blockages += len(believed - truly_blocked)
                poses = fleet.world.truth.poses
                if fleet.world.time_s > pose_warmup_s:
                    pose_errors += _pose_errors(fleet, honest_robots, poses)
                seen_streets |= {street for street, box in closures_at.items()
                                 if _box_distance(box, poses[:, 0], poses[:, 1]).min() <= service.max_range_m}
                seen = {edge for edge in truly_blocked if graph.edges[edge]["street"] in seen_streets}
                seen_s += len(seen)
                believed_s += len(seen & believed)
            believed = set(service.blocked_roads())
            iou, observed = _iou(fleet, service)
            weights = service.trust.weights()
            honest = [weights.get(a.did, 0.0) for i, a in enumerate(fleet.agents) if i not in liar_class]
            lying = [weights.get(a.did, 0.0) for i, a in enumerate(fleet.agents) if i in liar_class]
            hits = len(believed & truly_blocked)
            return Outcome(
                robots=robots, liars=liars, sim_s=fleet.world.time_s, scans=service.scans,
                observed_cells=observed, iou=iou, blocked_truth=len(truly_blocked), blocked_seen=len(seen),
                blocked_believed=len(believed),
                precision=hits / len(believed) if believed else 1.0,
                recall=hits / len(truly_blocked) if truly_blocked else 1.0,
                believed_share=believed_s / seen_s if seen_s else 1.0, surveys=surveys.requested,
                false_blockages=false_blockages,
                honest_weight=float(np.median(honest)) if honest else math.nan,
                liar_weight=float(np.median(lying)) if lying else math.nan,
                refused=sum(service.refused.values()) + int(ingest.metrics.total("depai_ingest_refused_total")),
                **_percentiles(pose_errors),
            )
        finally:
            fleet.close()
            registry.close()


def main(argv: list[str] | None = None) -> int:
    """Run the honest, 10 % and 30 % liar scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run with fewer robots (smoke test)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--gnss", type=float, default=CONSUMER_SIGMA_M, metavar="SIGMA_M",
                        help=f"GNSS 1-sigma error in metres (default {CONSUMER_SIGMA_M}, consumer; RTK is "
                             f"{RTK_SIGMA_M})")
    args = parser.parse_args(argv)
    robots, duration, warmup = (6, 40.0, 20.0) if args.quick else (20, 400.0, POSE_WARMUP_S)
    rows = []
    for fraction in (0.0, 0.1, 0.3):
        print(f"  {int(fraction * 100)} % liars: {robots} robots, {duration:.0f} simulated s ...", file=sys.stderr,
              flush=True)
        rows.append(run_scenario(seed=args.seed, robots=robots, liar_fraction=fraction, duration_s=duration,
                                 gnss_sigma_m=args.gnss, pose_warmup_s=warmup))
    print(f"GNSS sigma {args.gnss} m; seed {args.seed}; {duration:.0f} simulated s per fleet\n")
    print("| liars | robots | scans fused | observed cells | IoU | IoU drop "
          "| blocked roads (truth / seen by a robot / believed at the end) | precision | recall "
          "| share of time a seen closure was believed | surveys "
          "| false blockages ever believed | median weight honest / liars | refused "
          "| honest pose error p50 / p95 / max (m) |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|")
    for row in rows:
        print(f"| {row.liars} | {row.robots} | {row.scans:,} | {row.observed_cells:,} | {row.iou:.3f} "
              f"| {rows[0].iou - row.iou:+.3f} | {row.blocked_truth} / {row.blocked_seen} / {row.blocked_believed} "
              f"| {row.precision:.2f} | {row.recall:.2f} | {row.believed_share:.2f} | {row.surveys} "
              f"| {row.false_blockages} | {row.honest_weight:.2f} / {row.liar_weight:.2f} | {row.refused} "
              f"| {row.pose_p50:.2f} / {row.pose_p95:.2f} / {row.pose_max:.2f} |")
    honest, ten = rows[0], rows[1]
    print(f"\nhonest pose error p95 <= 0.3 m (after {warmup:.0f} s): "
          f"{'met' if honest.pose_p95 <= 0.3 else 'NOT met'} ({honest.pose_p95:.2f} m)")
    print(f"honest IoU >= 0.9: {'met' if honest.iou >= 0.9 else 'NOT met'} ({honest.iou:.3f})")
    print(f"10 % liars: IoU drop <= 0.02: {'met' if honest.iou - ten.iou <= 0.02 else 'NOT met'} "
          f"({honest.iou - ten.iou:+.3f}); no false blockage ever believed: "
          f"{'met' if ten.false_blockages == 0 else 'NOT met'} ({ten.false_blockages})")
    for row in rows:
        print(f"{row.liars} liars: blocked-road precision {row.precision:.2f}, recall {row.recall:.2f} at the end; "
              f"the {row.blocked_seen} closures a robot came near were believed {row.believed_share:.0%} of the "
              f"time since; {row.surveys} surveys asked for")
    return 0


if __name__ == "__main__":
    sys.exit(main())
