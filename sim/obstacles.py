"""Dynamic obstacles that come and go: vans parked at the kerb, roadworks that close a street, pedestrians crossing.

The schedule is ground truth. The world asks ``active(t)`` every tick to place
the bodies; ``closed_streets(t)`` exists only to score how well the fleet's
shared map has noticed a closure, never to tell the fleet.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from sim.city import SIDEWALK_M, CityLayout, street_id
from sim.geometry import Box

OBSTACLE_KINDS = ("van", "roadworks", "pedestrian")
_ID_PREFIX = {"van": "van", "roadworks": "roadworks", "pedestrian": "ped"}
VAN_LENGTH_M, VAN_WIDTH_M, VAN_HEIGHT_M = 6.0, 2.2, 2.5
KERB_GAP_M = 0.2  # a parked van's distance from the road edge
MIN_FREE_LANE_M = 3.0  # road width a parked van must leave free
ROADWORKS_LENGTH_M, ROADWORKS_HEIGHT_M = 6.0, 1.2
ROADWORKS_SIDEWALK_M = 1.0  # how far roadworks barriers reach onto each sidewalk
PEDESTRIAN_SIDE_M, PEDESTRIAN_HEIGHT_M = 0.5, 1.7
PLACE_CLEAR_M = 3.0  # least distance from any obstacle to a place
ROADWORKS_PLACE_CLEAR_M = 5.0  # least distance from roadworks to a place
OBSTACLE_GAP_M = 0.5  # least gap between the ground two obstacles ever cover
_ATTEMPTS = 50  # tries per obstacle before the generator gives up on it


@dataclass(frozen=True, slots=True)
class Obstacle:
    """One obstacle and when it is there; a pedestrian walks ``path`` back and forth, the rest stand at ``box``."""

    id: str
    kind: str
    start_s: float
    end_s: float
    box: Box
    street: str | None
    path: tuple[tuple[float, float], ...] = ()
    speed_mps: float = 0.0


@dataclass(frozen=True, slots=True)
class _Walk:
    """Motion back and forth along a polyline at constant speed, starting at its first point at ``start_s``."""

    points: tuple[tuple[float, float], ...]
    cumulative: tuple[float, ...]  # path length up to each point
    speed_mps: float
    start_s: float

    def at(self, t_s: float) -> tuple[float, float]:
        total = self.cumulative[-1]
        d = ((t_s - self.start_s) * self.speed_mps) % (2 * total)
        if d > total:
            d = 2 * total - d
        k = min(bisect_right(self.cumulative, d) - 1, len(self.points) - 2)
        f = (d - self.cumulative[k]) / (self.cumulative[k + 1] - self.cumulative[k])
        (x0, y0), (x1, y1) = self.points[k], self.points[k + 1]
        return (x0 + f * (x1 - x0), y0 + f * (y1 - y0))


@dataclass(frozen=True, slots=True)
class _Span:
    """What is active for every t in [lo, hi): the set changes only at a start or end time."""

    lo: float
    hi: float
    standing: dict[str, Box]
    walking: tuple[tuple[Obstacle, _Walk], ...]
    closed: frozenset[str]


_NO_SPAN = _Span(lo=math.inf, hi=-math.inf, standing={}, walking=(), closed=frozenset())


class ObstacleSchedule:
    """Every obstacle of a run with its time window; answers what stands where at time t, cheaply."""

    def __init__(self, obstacles: Iterable[Obstacle] = ()) -> None:
        self.obstacles: tuple[Obstacle, ...] = ()
        self._ids: set[str] = set()
        self._walks: dict[str, _Walk] = {}
        for obstacle in obstacles:
            self._admit(obstacle)
        self._reindex()

    @classmethod
    def generate(
        cls,
        layout: CityLayout,
        seed: int,
        duration_s: float,
        *,
        vans: int | None = None,
        roadworks: int | None = None,
        pedestrians: int | None = None,
    ) -> ObstacleSchedule:
        """A seeded schedule within [0, duration_s); counts default to the city's street count (streets//8 vans,
        max(1, streets//25) roadworks, streets//6 pedestrians). An obstacle with no room left is skipped."""
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        streets = len(layout.streets)
        lane_ok = layout.road_m - VAN_WIDTH_M - KERB_GAP_M >= MIN_FREE_LANE_M
        vans = (streets // 8 if lane_ok else 0) if vans is None else vans
        roadworks = max(1, streets // 25) if roadworks is None else roadworks
        pedestrians = streets // 6 if pedestrians is None else pedestrians
        if min(vans, roadworks, pedestrians) < 0:
            raise ValueError(f"obstacle counts must not be negative: {vans=} {roadworks=} {pedestrians=}")
        if vans and not lane_ok:
            raise ValueError(f"a {layout.road_m} m road leaves no {MIN_FREE_LANE_M} m lane beside a parked van")
        planner = _Planner(layout, np.random.default_rng(seed), duration_s)
        for kind, count in (("roadworks", roadworks), ("van", vans), ("pedestrian", pedestrians)):
            for _ in range(count):
                planner.place(kind)
        return cls(planner.obstacles)

    def add(self, obstacle: Obstacle) -> None:
        """Schedule one more obstacle (a scenario closing a street now, a test's van)."""
        self._admit(obstacle)
        self._reindex()

    def active(self, t_s: float) -> dict[str, Box]:
        """Obstacle id -> its box at ``t_s``, pedestrians moved along their path; a new dict each call."""
        span = self._span
        if not span.lo <= t_s < span.hi:
            span = self._span = self._span_at(t_s)
        boxes = span.standing.copy()
        for obstacle, walk in span.walking:
            x, y = walk.at(t_s)
            box = obstacle.box
            boxes[obstacle.id] = Box(x, y, box.half_x, box.half_y, box.height)
        return boxes

    def closed_streets(self, t_s: float) -> frozenset[str]:
        """The streets closed by roadworks at ``t_s`` (ground truth, for measuring the fleet's map only)."""
        span = self._span
        if not span.lo <= t_s < span.hi:
            span = self._span = self._span_at(t_s)
        return span.closed

    def _admit(self, obstacle: Obstacle) -> None:
        if obstacle.kind not in OBSTACLE_KINDS:
            raise ValueError(f"unknown obstacle kind {obstacle.kind!r}; expected one of {OBSTACLE_KINDS}")
        if not obstacle.start_s < obstacle.end_s:
            raise ValueError(f"obstacle {obstacle.id!r} ends ({obstacle.end_s}) before it starts ({obstacle.start_s})")
        if obstacle.kind == "roadworks" and obstacle.street is None:
            raise ValueError(f"roadworks {obstacle.id!r} must name the street it closes")
        if obstacle.id in self._ids:
            raise ValueError(f"obstacle id {obstacle.id!r} is already scheduled")
        if len(obstacle.path) >= 2 and obstacle.speed_mps > 0:
            steps = [math.dist(p, q) for p, q in zip(obstacle.path, obstacle.path[1:])]
            if min(steps) == 0:
                raise ValueError(f"obstacle {obstacle.id!r} has a path with repeated waypoints")
            cumulative = tuple(float(c) for c in np.cumsum([0.0, *steps]))
            self._walks[obstacle.id] = _Walk(obstacle.path, cumulative, obstacle.speed_mps, obstacle.start_s)
        self.obstacles = (*self.obstacles, obstacle)
        self._ids.add(obstacle.id)

    def _reindex(self) -> None:
        self._times = sorted({t for o in self.obstacles for t in (o.start_s, o.end_s)})
        self._span = _NO_SPAN

    def _span_at(self, t_s: float) -> _Span:
        i = bisect_right(self._times, t_s)
        live = [o for o in self.obstacles if o.start_s <= t_s < o.end_s]
        return _Span(
            lo=self._times[i - 1] if i > 0 else -math.inf,
            hi=self._times[i] if i < len(self._times) else math.inf,
            standing={o.id: o.box for o in live if o.id not in self._walks},
            walking=tuple((o, self._walks[o.id]) for o in live if o.id in self._walks),
            closed=frozenset(o.street for o in live if o.kind == "roadworks" and o.street is not None),
        )


class _Planner:
    """Draws obstacles one at a time, keeping them clear of places, of each other and of bridge streets."""

    def __init__(self, layout: CityLayout, rng: np.random.Generator, duration_s: float) -> None:
        self.layout = layout
        self.rng = rng
        self.duration_s = duration_s
        self.streets = sorted(layout.streets)
        self.pitch = layout.block_m + layout.road_m
        self.junctions = nx.Graph(list(layout.streets.values()))
        bridges = {street_id(u, v) for u, v in nx.bridges(self.junctions)}
        self.closable = [s for s in self.streets if s not in bridges]  # closing a bridge would cut the city
        self.busy_streets = {p.street for p in layout.places}
        self.claims: list[Box] = []  # all the ground each obstacle ever covers
        self.obstacles: list[Obstacle] = []
        self.counters = dict.fromkeys(OBSTACLE_KINDS, 0)

    def place(self, kind: str) -> None:
        """Try a few random draws for one obstacle of ``kind``; keep the first that fits."""
        draw = {"van": self._van, "roadworks": self._roadworks, "pedestrian": self._pedestrian}[kind]
        for _ in range(_ATTEMPTS):
            drawn = draw()
            if drawn is not None:
                obstacle, claim = drawn
                self.obstacles.append(obstacle)
                self.claims.append(claim)
                self.counters[kind] += 1
                return

    def _van(self) -> tuple[Obstacle, Box] | None:
        start, end = self._window(60.0, 600.0)
        street = self.streets[int(self.rng.integers(len(self.streets)))]
        along = self._along(street, VAN_LENGTH_M / 2)
        if along is None:
            return None
        side = 1.0 if self.rng.integers(2) else -1.0
        across = side * (self.layout.road_m / 2 - KERB_GAP_M - VAN_WIDTH_M / 2)
        box = self._box(street, along, across, VAN_LENGTH_M / 2, VAN_WIDTH_M / 2, VAN_HEIGHT_M)
        if not self._clear(box, PLACE_CLEAR_M):
            return None
        return self._obstacle("van", start, end, box, street), box

    def _roadworks(self) -> tuple[Obstacle, Box] | None:
        start, end = self._window(120.0, 900.0)
        meanwhile = {
            o.street
            for o in self.obstacles
            if o.kind == "roadworks" and o.street is not None and o.start_s < end and start < o.end_s
        }
        candidates = [s for s in self.closable if s not in meanwhile]
        pool = [s for s in candidates if s not in self.busy_streets] or candidates
        if not pool:
            return None
        street = pool[int(self.rng.integers(len(pool)))]
        closed = [self.layout.streets[s] for s in (*meanwhile, street)]
        if not nx.is_connected(nx.restricted_view(self.junctions, (), closed)):
            return None
        along = self._along(street, ROADWORKS_LENGTH_M / 2)
        if along is None:
            return None
        half_across = self.layout.road_m / 2 + ROADWORKS_SIDEWALK_M
        box = self._box(street, along, 0.0, ROADWORKS_LENGTH_M / 2, half_across, ROADWORKS_HEIGHT_M)
        if not self._clear(box, ROADWORKS_PLACE_CLEAR_M):
            return None
        return self._obstacle("roadworks", start, end, box, street), box

    def _pedestrian(self) -> tuple[Obstacle, Box] | None:
        start, end = self._window(30.0, 300.0)
        street = self.streets[int(self.rng.integers(len(self.streets)))]
        half = PEDESTRIAN_SIDE_M / 2
        along = self._along(street, half)
        if along is None:
            return None
        kerb = (self.layout.road_m + SIDEWALK_M) / 2  # the middle of a sidewalk
        side = 1.0 if self.rng.integers(2) else -1.0
        speed = float(self.rng.uniform(1.0, 1.5))
        sweep = self._box(street, along, 0.0, half, kerb + half, PEDESTRIAN_HEIGHT_M)
        if not self._clear(sweep, PLACE_CLEAR_M):
            return None
        near, far = (self._box(street, along, end * kerb, half, half, PEDESTRIAN_HEIGHT_M) for end in (side, -side))
        path = ((near.x, near.y), (far.x, far.y))
        return self._obstacle("pedestrian", start, end, near, street, path, speed), sweep

    def _window(self, shortest_s: float, longest_s: float) -> tuple[float, float]:
        """A random active window of random length, within [0, duration_s]."""
        length = float(self.rng.uniform(shortest_s, longest_s))
        start = float(self.rng.uniform(0.0, max(self.duration_s - length, 0.0)))
        return start, min(start + length, self.duration_s)

    def _along(self, street: str, half_along: float) -> float | None:
        """A random distance along ``street`` for something ``2 * half_along`` long, clear of intersections."""
        lo = self.layout.road_m / 2 + half_along
        hi = self.pitch - lo
        return float(self.rng.uniform(lo, hi)) if lo <= hi else None

    def _box(
        self, street: str, along: float, across: float, half_along: float, half_across: float, height: float
    ) -> Box:
        """The box ``along`` metres down ``street`` from its first intersection, ``across`` metres to its left."""
        a, b = self.layout.streets[street]
        (ax, ay), (bx, by) = self.layout.nodes[a], self.layout.nodes[b]
        ux, uy = (bx - ax) / self.pitch, (by - ay) / self.pitch
        horizontal = ay == by
        return Box(
            x=ax + along * ux - across * uy,
            y=ay + along * uy + across * ux,
            half_x=half_along if horizontal else half_across,
            half_y=half_across if horizontal else half_along,
            height=height,
        )

    def _clear(self, claim: Box, place_margin: float) -> bool:
        """Whether ``claim`` keeps ``place_margin`` from every place and OBSTACLE_GAP_M from every earlier claim."""
        if any(claim.contains(p.x, p.y, margin=place_margin) for p in self.layout.places):
            return False
        return not any(
            abs(claim.x - c.x) < claim.half_x + c.half_x + OBSTACLE_GAP_M
            and abs(claim.y - c.y) < claim.half_y + c.half_y + OBSTACLE_GAP_M
            for c in self.claims
        )

    def _obstacle(
        self,
        kind: str,
        start: float,
        end: float,
        box: Box,
        street: str,
        path: tuple[tuple[float, float], ...] = (),
        speed: float = 0.0,
    ) -> Obstacle:
        return Obstacle(f"{_ID_PREFIX[kind]}-{self.counters[kind]}", kind, start, end, box, street, path, speed)
