"""Lidar scans fused per second into the shared occupancy grid, beside the per-ray reference in the same run.

Run:  python benchmarks/map.py [--robots N] [--seconds S] [--reference-scans N] [--boxes N]
                               [--rounds R] [--seed N] [--quick]

The world is 300 m x 300 m with random box obstacles (sides 2-15 m). Robots start at random free
poses and drive at 1.5 m/s, turning a little at random and turning away from boxes and the edge;
each scans at 10 Hz with 64 beams over 360 degrees, 12 m range, returns where a beam meets a box
(an analytic ray-box intersection in numpy, 2 cm noise) and no return (inf) elsewhere. The map is
the default GridSpec: 0.2 m cells, 64-cell tiles, one layer per (robot DID, tile). Every scan is
generated before any timing starts.

Each round measures, on the same scans (time order, robots interleaved), each into a fresh grid:

  reference        ``spatial.reference.integrate``: per-ray traversal and per-cell dict updates in
                   plain Python, on the first --reference-scans scans only
  integrate        ``OccupancyGrid.integrate``, one call per scan
  integrate_many   ``OccupancyGrid.integrate_many``, one call per 0.1 s tick (all robots' scans of
                   that tick), as a map service drains what arrived
  + belief         integrate_many as above, plus ``belief()`` of every tile written during each
                   simulated second, once per simulated second (the 1 Hz tile publication); the
                   belief time is also reported on its own

Figures are medians over rounds; ratios compare each with the reference's rate from the same run.
Everything runs in this one process and thread (no BLAS call on the measured paths), so a rate is a
rate per core; the CPU / wall line shows it. Goal (issue #5): >= 5,000 scans/s per core.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/map.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np  # noqa: E402

from spatial import reference  # noqa: E402
from spatial.grid import GridSpec, OccupancyGrid, Scan  # noqa: E402

AREA_M = 300.0
BEAMS = 64
RANGE_M = 12.0
RATE_HZ = 10.0
SPEED_M_S = 1.5
NOISE_M = 0.02
GOAL = 5_000.0
INCREMENT = 2 * math.pi / BEAMS
ANGLE_MIN = -math.pi


@dataclass(frozen=True)
class World:
    """Box obstacles as (n, 4) arrays of x_min, y_min, x_max, y_max."""

    boxes: np.ndarray

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """Which of the (n, 2) points lie in a box or outside the area."""
        b = self.boxes
        x, y = xy[:, 0:1], xy[:, 1:2]
        in_box = ((x >= b[:, 0]) & (x <= b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 3])).any(axis=1)
        return in_box | (xy < 0.0).any(axis=1) | (xy > AREA_M).any(axis=1)

    def ranges(self, poses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(robots, BEAMS) ranges: the nearest box entry along each beam (slab method), inf if beyond RANGE_M."""
        angles = poses[:, 2:3] + ANGLE_MIN + INCREMENT * np.arange(BEAMS)
        dx, dy = np.cos(angles)[..., None], np.sin(angles)[..., None]
        ox, oy = poses[:, 0, None, None], poses[:, 1, None, None]
        b = self.boxes
        with np.errstate(divide="ignore", invalid="ignore"):
            tx0, tx1 = (b[:, 0] - ox) / dx, (b[:, 2] - ox) / dx
            ty0, ty1 = (b[:, 1] - oy) / dy, (b[:, 3] - oy) / dy
            enter = np.maximum(np.minimum(tx0, tx1), np.minimum(ty0, ty1))
            leave = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
        hit = (enter <= leave) & (enter > 0.0)
        nearest = np.where(hit, enter, np.inf).min(axis=2)
        nearest = nearest + rng.normal(0.0, NOISE_M, nearest.shape)
        return np.where(nearest < RANGE_M, np.maximum(nearest, 0.0), np.inf)


def make_world(boxes: int, rng: np.random.Generator) -> World:
    """Random boxes with sides of 2-15 m inside the area."""
    corner = rng.uniform(0.0, AREA_M - 15.0, (boxes, 2))
    size = rng.uniform(2.0, 15.0, (boxes, 2))
    return World(np.concatenate([corner, corner + size], axis=1))


def make_scans(world: World, robots: int, seconds: float, rng: np.random.Generator) -> list[Scan]:
    """Every robot's scans for ``seconds`` of driving, in time order (one tick of all robots after another)."""
    poses = np.empty((robots, 3))
    placed = 0
    while placed < robots:
        candidates = rng.uniform(0.0, AREA_M, (robots, 2))
        free = candidates[~world.inside(candidates)][: robots - placed]
        poses[placed:placed + len(free), :2] = free
        placed += len(free)
    poses[:, 2] = rng.uniform(-math.pi, math.pi, robots)
    dids = [f"did:key:robot-{index:04d}" for index in range(robots)]
    scans: list[Scan] = []
    for tick in range(round(seconds * RATE_HZ)):
        t_s = tick / RATE_HZ
        ranges = world.ranges(poses, rng)
        scans += [Scan(did, (float(x), float(y), float(theta)), ANGLE_MIN, INCREMENT, RANGE_M, row, t_s)
                  for did, (x, y, theta), row in zip(dids, poses, ranges, strict=True)]
        poses[:, 2] += rng.normal(0.0, 0.05, robots)
        step = poses[:, :2] + SPEED_M_S / RATE_HZ * np.stack([np.cos(poses[:, 2]), np.sin(poses[:, 2])], axis=1)
        blocked = world.inside(step)
        poses[~blocked, :2] = step[~blocked]
        poses[blocked, 2] += rng.uniform(math.pi / 2, 3 * math.pi / 2, int(blocked.sum()))
    return scans


def ticks(scans: list[Scan]) -> list[list[Scan]]:
    """The scans grouped by their time stamp (one group per 0.1 s tick)."""
    groups: dict[float, list[Scan]] = {}
    for scan in scans:
        groups.setdefault(scan.t_s, []).append(scan)
    return list(groups.values())


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall s, CPU s of this process) spent in ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def one_by_one(scans: list[Scan]) -> OccupancyGrid:
    """A fresh grid fed scan by scan through ``integrate``."""
    grid = OccupancyGrid()
    for s in scans:
        grid.integrate(s.did, s.pose, s.angle_min, s.angle_increment, s.range_max, s.ranges, s.t_s)
    return grid


def by_tick(scans: list[Scan]) -> OccupancyGrid:
    """A fresh grid fed one ``integrate_many`` call per tick."""
    grid = OccupancyGrid()
    for group in ticks(scans):
        grid.integrate_many(group)
    return grid


def per_ray(scans: list[Scan], spec: GridSpec) -> reference.CellLayers:
    """The per-cell dict of ``spatial.reference``, fed scan by scan."""
    layers: reference.CellLayers = {}
    for s in scans:
        reference.integrate(layers, spec, s.did, s.pose, s.angle_min, s.angle_increment, s.range_max, s.ranges, s.t_s)
    return layers


def with_belief(scans: list[Scan]) -> tuple[float, float, int]:
    """integrate_many per tick plus belief() of the tiles written in each simulated second, once a second.

    Returns (seconds integrating, seconds in belief(), tiles fused).
    """
    grid = OccupancyGrid()
    trust = {s.did: 0.5 + 0.4 * (int(s.did[-1]) % 2) for s in scans}  # a trust snapshot, as the trust ledger gives
    integrating = fusing = 0.0
    fused = 0
    published: dict[tuple[int, int], int] = {}
    groups = ticks(scans)
    for index, group in enumerate(groups):
        start = time.perf_counter()
        grid.integrate_many(group)
        integrating += time.perf_counter() - start
        if (index + 1) % round(RATE_HZ) == 0 or index == len(groups) - 1:
            now = group[0].t_s
            start = time.perf_counter()
            for key in grid.tiles():
                if published.get(key) != grid.version(key):
                    published[key] = grid.belief(key, trust, now).version
                    fused += 1
            fusing += time.perf_counter() - start
    return integrating, fusing, fused


def agreement(scans: list[Scan], layers: reference.CellLayers, spec: GridSpec) -> tuple[int, float]:
    """Cells compared, and the largest |own log-odds| difference between the grid and the reference."""
    grid = by_tick(scans)
    t_s = scans[-1].t_s
    dids = {s.did for s in scans}
    worst, compared = 0.0, 0
    for did in dids:
        weights = {other: float(other == did) for other in dids}
        mine: dict[tuple[int, int], float] = {}
        for key in grid.tiles():
            fused = grid.belief(key, weights, t_s).log_odds
            for lx, ly in zip(*np.nonzero(fused), strict=True):
                mine[key[0] * spec.tile_cells + int(lx), key[1] * spec.tile_cells + int(ly)] = float(fused[lx, ly])
        theirs = {(ix, iy): reference.log_odds(layers, spec, did, ix, iy, t_s) for who, ix, iy in layers if who == did}
        for cell in mine.keys() | theirs.keys():
            worst = max(worst, abs(mine.get(cell, 0.0) - theirs.get(cell, 0.0)))
            compared += 1
    return compared, worst


def run(args: argparse.Namespace) -> str:
    """Generate the scans, measure every round, and return the report."""
    rng = np.random.default_rng(args.seed)
    world = make_world(args.boxes, rng)
    print(f"generating {args.robots} robots x {args.seconds:g} s of scans ...", file=sys.stderr, flush=True)
    scans = make_scans(world, args.robots, args.seconds, rng)
    subset = scans[: args.reference_scans]
    spec = GridSpec()
    hits = sum(int(np.isfinite(s.ranges).sum()) for s in scans) / (len(scans) * BEAMS)
    rates: dict[str, list[float]] = {"reference": [], "integrate": [], "integrate_many": [], "with_belief": []}
    cpu_share: list[float] = []
    belief_tiles_s: list[float] = []
    belief_ms_per_s: list[float] = []
    for round_number in range(args.rounds):
        wall, _ = timed(lambda: per_ray(subset, spec))
        rates["reference"].append(len(subset) / wall)
        wall, cpu = timed(lambda: one_by_one(scans))
        rates["integrate"].append(len(scans) / wall)
        cpu_share.append(cpu / wall)
        wall, cpu = timed(lambda: by_tick(scans))
        rates["integrate_many"].append(len(scans) / wall)
        cpu_share.append(cpu / wall)
        integrating, fusing, fused = with_belief(scans)
        rates["with_belief"].append(len(scans) / (integrating + fusing))
        belief_tiles_s.append(fused / fusing)
        belief_ms_per_s.append(1000 * fusing / args.seconds)
        print(f"  round {round_number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    compared, worst = agreement(subset, per_ray(subset, spec), spec)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["reference"]
    names = {
        "reference": "per-ray reference (spatial.reference, dict per cell)",
        "integrate": "OccupancyGrid.integrate, one call per scan",
        "integrate_many": "OccupancyGrid.integrate_many, one call per 0.1 s tick",
        "with_belief": "integrate_many + belief() of written tiles at 1 Hz",
    }
    lines = [
        f"robots: {args.robots}, simulated s: {args.seconds:g}, scans: {len(scans):,} ({BEAMS} beams, "
        f"{RANGE_M:g} m, {spec.resolution_m:g} m cells, {hits:.0%} of beams return), reference scans: "
        f"{len(subset):,}, boxes: {args.boxes}, rounds: {args.rounds} (medians)",
        "",
        "| measurement | scans/s | vs per-ray reference |",
        "|---|---:|---:|",
        *(f"| {names[name]} | {medians[name]:,.0f} | {medians[name] / base:.1f} |" for name in names),
        "",
        f"belief(): {statistics.median(belief_tiles_s):,.0f} tiles/s; "
        f"{statistics.median(belief_ms_per_s):.1f} ms per simulated second for the tiles written in it",
        f"CPU / wall while integrating: {statistics.median(cpu_share):.2f} (one core = 1.00)",
        f"agreement with the reference: {compared:,} cells, max |own log-odds difference| {worst:.1e}",
    ]
    for name in ("integrate", "integrate_many"):
        verdict = "met" if medians[name] >= GOAL else "NOT met"
        lines.append(f"goal >= 5,000 scans/s per core, {name}: {verdict} ({medians[name]:,.0f}; "
                     f"by round {' '.join(f'{rate:,.0f}' for rate in rates[name])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=100, help="robots, one DID each (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds of scans (default 20)")
    parser.add_argument("--reference-scans", type=int, default=600, help="scans the reference fuses (default 600)")
    parser.add_argument("--boxes", type=int, default=400, help="box obstacles (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=5, help="random seed (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 robots, 3 s, 60 reference scans, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.robots, args.seconds, args.reference_scans, args.rounds = 10, 3.0, 60, 1
    print(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
