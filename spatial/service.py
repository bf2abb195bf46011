"""The map service: verified scans in; a shared, trust-weighted map and the road states out.

It is an ingest consumer, so every scan it sees has passed the verify-on-ingest
pipeline (signature, replay, rate, physics, a range beyond the scan's own
maximum). It adds its own checks (a pose outside the world, scans faster than a
robot's lidar turns), fuses what passes into the grid as that robot's own
evidence, and scores the robot against the corroborated consensus of everyone
else. On its turn it publishes changed tiles (retained, signed) and, when a
road's state changes, the road graph. Queries: occupancy at a point, the cost
of a path, a tile as a PNG, and who contributed to a tile or a road decision.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import MAP_GRAPH, map_tile_topic
from identity.envelope import Envelope, EnvelopeSigner
from spatial.grid import OCCUPIED, UNKNOWN, GridSpec, OccupancyGrid, TileKey
from spatial.roads import BLOCKED, SUSPECT, EdgeKey, RoadReport, RoadStates, graph_message
from spatial.tiles import belief_cells, encode_tile, probability_cells, tile_png
from spatial.trust import TrustLedger

UNKNOWN_COST_FACTOR = 1.5  # a metre of path through ground nobody has seen costs this much


class _BoundBelief:
    """The grid's believed states with one trust snapshot, time and corroboration bound in: what RoadStates reads."""

    def __init__(self, grid: OccupancyGrid, trust: Mapping[str, float], t_s: float, k: int | None = None) -> None:
        self.grid, self.trust, self.t_s, self.k = grid, trust, t_s, k

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.grid.state_at(xs, ys, self.trust, self.t_s, self.k)

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        return self.grid.contributors_at(xs, ys, self.t_s)


class MapService:
    """Fuses verified scans into the shared grid, weighs who said what, and publishes tiles and road states."""

    def __init__(
        self,
        signer: EnvelopeSigner,
        graph: nx.Graph,
        *,
        bounds: tuple[float, float, float, float],
        clock: Callable[[], float],
        spec: GridSpec = GridSpec(),
        trust: TrustLedger | None = None,
        level_of: Callable[[str], str] = lambda did: "self",
        max_scan_hz: float = 5.0,
        publish_every_s: float = 2.0,
        trust_refresh_s: float = 1.0,
        road_m: float = 8.0,
        max_range_m: float = 6.0,
        teammate_radius_m: float = 0.9,
        teammate_window_s: float = 1.5,
        witness_weight: float = 0.8,
    ) -> None:
        self.signer = signer
        self.bounds = bounds
        self.clock = clock
        self.grid = OccupancyGrid(spec)
        self.trust = trust or TrustLedger(prior=(3.0, 1.0))  # a robot new to the map starts at 0.75
        self.level_of = level_of
        self.graph = graph
        self.roads = RoadStates(graph, road_m=road_m, resolution_m=spec.resolution_m)
        self.min_scan_gap_s = 1.0 / max_scan_hz
        self.publish_every_s = publish_every_s
        self.trust_refresh_s = trust_refresh_s
        self.max_range_m = max_range_m
        self.teammate_radius_m = teammate_radius_m
        self.teammate_window_s = teammate_window_s
        self.witness_weight = witness_weight
        self.refused: Counter[str] = Counter()
        self.scans = 0
        self.report: RoadReport | None = None
        self.graph_version = 0
        self._published: dict[TileKey, int] = {}
        self._last_scan: dict[str, float] = {}
        self._poses: dict[str, tuple[float, float, float, float, float]] = {}  # did -> t, x, y, theta, v
        self._weights: dict[str, float] = {}
        self._weights_at = -math.inf
        self._next_publish = -math.inf
        self._lock = threading.Lock()

    @property
    def did(self) -> str:
        """The DID robots must trust for map tiles and the road graph."""
        return self.signer.did

    # --- in ------------------------------------------------------------------------------------------

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: births set a robot's verification level; telemetry says where robots are;
        scans are checked and fused."""
        if envelope.kind == "birth":
            with self._lock:
                self.trust.set_level(envelope.issuer, self.level_of(envelope.issuer))
        elif envelope.kind == "telemetry":  # no lock: one dict store, while step() may hold it for a long turn
            body = envelope.body
            self._place(envelope.issuer, body["t"] / 1000.0, body["pose"], float(body["twist"]["v"]))
        elif envelope.kind == "scan":
            with self._lock:
                self._scan(envelope.issuer, envelope.body)

    def _refuse(self, reason: str) -> None:
        self.refused[reason] += 1

    def _scan(self, did: str, body: dict[str, Any]) -> None:
        pose = body["pose"]
        x, y, theta = float(pose["x"]), float(pose["y"]), float(pose["theta"])
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmin <= x <= xmax and ymin <= y <= ymax):
            self._refuse("outside_world")
            return
        t_s = body["t"] / 1000.0
        last = self._last_scan.get(did)
        if last is not None and t_s - last < self.min_scan_gap_s - 1e-6:
            self._refuse("too_frequent")
            return
        self._last_scan[did] = t_s
        speed = self._poses[did][4] if did in self._poses else 0.0
        self._place(did, t_s, pose, speed)
        # Like OctoMap's maxrange: far returns are where a small heading error moves a wall most.
        range_max = min(float(body["range_max"]), self.max_range_m)
        ranges = np.array([math.inf if r is None or r >= range_max else r for r in body["ranges"]])
        self._drop_teammates(did, (x, y, theta), body["angle_min"], body["angle_increment"], ranges, t_s)
        observation = self.grid.integrate(did, (x, y, theta), body["angle_min"], body["angle_increment"],
                                          range_max, ranges, t_s)
        self.scans += 1
        weights = self._trust_snapshot(t_s)
        others = {**weights, did: 0.0}  # a robot must not vouch for itself
        self.trust.score(did, observation.free, observation.hit,
                         lambda cells: self.grid.consensus_at(cells, others, t_s))

    def _place(self, did: str, t_s: float, pose: Mapping[str, float], speed: float) -> None:
        """Remember where a robot said it was (the newest report wins), to tell teammates from obstacles."""
        known = self._poses.get(did)
        if known is None or t_s >= known[0]:
            self._poses[did] = (t_s, float(pose["x"]), float(pose["y"]), float(pose["theta"]), speed)

    def _drop_teammates(self, did: str, pose: tuple[float, float, float], angle_min: float,
                        angle_increment: float, ranges: np.ndarray, t_s: float) -> None:
        """Drop (in place) the returns that land on another robot: a teammate is not part of the map.

        Each robot's last reported pose, heard within teammate_window_s, is carried forward
        along its heading at its reported speed to the scan's time; a return within
        teammate_radius_m of it says nothing about the world and would only count as a
        conflict against whoever sees that ground free a moment later.
        """
        others = [(x + v * (t_s - t) * math.cos(th), y + v * (t_s - t) * math.sin(th))
                  for other, (t, x, y, th, v) in list(self._poses.items())  # a copy: telemetry adds lock-free
                  if other != did and abs(t_s - t) <= self.teammate_window_s]
        returns = np.flatnonzero(np.isfinite(ranges))
        if not others or not len(returns):
            return
        x, y, theta = pose
        angles = theta + angle_min + returns * angle_increment
        ends = np.stack((x + ranges[returns] * np.cos(angles), y + ranges[returns] * np.sin(angles)), axis=1)
        near = np.array(others)
        gap = np.hypot(ends[:, None, 0] - near[None, :, 0], ends[:, None, 1] - near[None, :, 1]).min(axis=1)
        ranges[returns[gap <= self.teammate_radius_m]] = -1.0  # a negative range: the beam is dropped

    def _trust_snapshot(self, t_s: float) -> dict[str, float]:
        """The contributors' weights, refreshed at most every trust_refresh_s (the grid caches per snapshot)."""
        if t_s - self._weights_at >= self.trust_refresh_s:
            self._weights = self.trust.weights()
            self._weights_at = t_s
        return self._weights

    # --- out -----------------------------------------------------------------------------------------

    def step(self) -> list[Outgoing]:
        """On its turn (every publish_every_s): the changed tiles, and the road graph when a road changed."""
        now = self.clock()
        if now < self._next_publish:
            return []
        self._next_publish = now + self.publish_every_s
        with self._lock:
            return self._publish(now)

    def _publish(self, now: float) -> list[Outgoing]:
        weights = self._trust_snapshot(now)
        out = []
        for key in self.grid.tiles():
            version = self.grid.version(key)
            if self._published.get(key) == version:
                continue
            self._published[key] = version
            fused = self.grid.belief(key, weights, now)
            resolution = self.grid.spec.resolution_m
            out.append(self._tile(encode_tile("belief", key, version, resolution, belief_cells(fused.state))))
            out.append(self._tile(encode_tile("probability", key, version, resolution,
                                              probability_cells(fused.log_odds))))
        report = self.roads.evaluate(_BoundBelief(self.grid, weights, now), _BoundBelief(self.grid, weights, now, k=1),
                                     lambda key: self._witnesses(key, weights, now), k=self.grid.spec.corroboration_k)
        if self.report is None or report.changed_since(self.report):
            self.graph_version += 1
            spec = BY_KIND["map.graph"]
            body = graph_message(report, self.graph_version)
            out.append(Outgoing(MAP_GRAPH, self.signer.seal("map.graph", body), spec.qos, spec.retain))
        self.report = report
        return out

    def _witnesses(self, key: EdgeKey, weights: Mapping[str, float], now: float) -> list[_BoundBelief]:
        """One belief per robot with evidence on this road, from its evidence alone: only robots whose weight
        is at least witness_weight, above where a newcomer starts (0.75), so fresh identities cannot collude."""
        xs, ys = self.roads.points(key)
        here = self.grid.contributors_at(xs.ravel(), ys.ravel(), now)
        silent = dict.fromkeys([*weights, *here], 0.0)  # everyone else says nothing in a witness's view
        return [_BoundBelief(self.grid, {**silent, did: weights[did]}, now, k=1) for did in sorted(here)
                if weights.get(did, 0.0) >= self.witness_weight]

    def _tile(self, body: dict[str, Any]) -> Outgoing:
        spec = BY_KIND["map.tile"]
        return Outgoing(map_tile_topic(body["layer"], body["x"], body["y"]), self.signer.seal("map.tile", body),
                        spec.qos, spec.retain)

    # --- queries -------------------------------------------------------------------------------------

    def occupancy(self, x: float, y: float) -> int:
        """The believed state at a point: 1 occupied, -1 free, 0 unknown."""
        now = self.clock()
        with self._lock:
            return int(self.grid.state_at(np.array([x]), np.array([y]), self._trust_snapshot(now), now)[0])

    def path_cost(self, points: Sequence[tuple[float, float]]) -> float | None:
        """Metres along the polyline, unseen ground costing more; None if it crosses a believed obstacle."""
        if len(points) < 2:
            return 0.0
        step = self.grid.spec.resolution_m / 2
        xs, ys, lengths = [], [], []
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            length = math.hypot(x1 - x0, y1 - y0)
            n = max(1, math.ceil(length / step))
            s = np.arange(n) / n
            xs.append(x0 + (x1 - x0) * s)
            ys.append(y0 + (y1 - y0) * s)
            lengths.append(np.full(n, length / n))
        now = self.clock()
        with self._lock:
            states = self.grid.state_at(np.concatenate(xs), np.concatenate(ys), self._trust_snapshot(now), now)
        if (states == OCCUPIED).any():
            return None
        metres = np.concatenate(lengths)
        return float(metres.sum() + (UNKNOWN_COST_FACTOR - 1.0) * metres[states == UNKNOWN].sum())

    def tile_png(self, key: TileKey, layer: str = "belief") -> bytes:
        """A tile as an 8-bit greyscale PNG, north up (for the dashboard)."""
        now = self.clock()
        with self._lock:
            fused = self.grid.belief(key, self._trust_snapshot(now), now)
        cells = belief_cells(fused.state) if layer == "belief" else probability_cells(fused.log_odds)
        return tile_png(cells, layer)

    def provenance(self, key: TileKey) -> dict[str, float]:
        """Who contributed to a tile, and how much."""
        with self._lock:
            return self.grid.contributions(key)

    def blocked_roads(self) -> dict[tuple[str, str], dict[str, float]]:
        """The roads the map believes blocked, each with the DIDs whose evidence closed it."""
        report = self.report
        if report is None:
            return {}
        return {edge: state.contributors for edge, state in report.states.items() if state.state == BLOCKED}

    def suspects(self, vantage_m: float = 4.0) -> dict[EdgeKey, Suspect]:
        """The roads one robot's evidence blocks and nobody has confirmed: where, who said so, and where to look from.

        The vantage points lie on the road ``vantage_m`` short of the blockage, one from each end's side,
        so a second robot sent to either sees it within the map's insertion range.
        """
        report = self.report
        if report is None:
            return {}
        found = {}
        for (u, v), state in report.states.items():
            if state.state != SUSPECT or state.at is None:
                continue
            views = []
            for end in (u, v):
                ex, ey = self.graph.nodes[end]["pos"]
                gap = math.hypot(ex - state.at[0], ey - state.at[1])
                if gap > 1e-9:
                    step = min(vantage_m, gap) / gap
                    views.append((state.at[0] + (ex - state.at[0]) * step, state.at[1] + (ey - state.at[1]) * step))
            found[(u, v)] = Suspect(state.at, tuple(views), state.contributors)
        return found

    # --- what the dashboard reads (spatial.mirror.SharedMap; a MapMirror offers the same from the bus) ------

    @property
    def tile_side_m(self) -> float:
        """The side of one tile, in metres."""
        return self.grid.spec.tile_cells * self.grid.spec.resolution_m

    def tile_versions(self) -> dict[TileKey, int]:
        """Every tile some contributor has evidence in, and its version (no lock: a turn may hold it long)."""
        return {key: self.grid.version(key) for key in self.grid.tiles()}

    def road_states(self) -> dict[EdgeKey, str]:
        """Each road's state at the last evaluation, keyed by sorted (u, v); empty before the first."""
        report = self.report
        return {(min(u, v), max(u, v)): state.state for (u, v), state in report.states.items()} if report else {}

    def trust_weights(self) -> dict[str, float]:
        """How much the map trusts each contributor now."""
        return self.trust.weights()


@dataclass(frozen=True, slots=True)
class Suspect:
    """A road blockage only one robot has seen: where it is, where to look from, and whose evidence it is."""

    at: tuple[float, float]
    vantage_points: tuple[tuple[float, float], ...]
    contributors: dict[str, float]
