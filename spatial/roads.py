"""The road graph's edge states (free, slow, blocked), derived from the shared map's believed cells.

Every edge is sampled once, up front: cross-sections at most ``step_m`` apart
along it (outside the junction squares at its ends, which belong to no edge),
each a row of points ``resolution_m`` apart across the full road width.
``step_m`` defaults to ``resolution_m``: a barrier a lidar sees is often one
believed cell thick (its front face), and coarser steps can pass between. One
``state_at`` call over all of them evaluates the whole graph. A point is
passable unless believed OCCUPIED (unknown ground is optimistically passable;
a blockage is believed only once the map has corroborated it). An edge is
BLOCKED when some cross-section has no contiguous passable span as wide as the
robot, SLOW when its narrowest span is under ``slow_fraction`` of the road, else
FREE. Blocked and slow edges name who said so: the contributors of the occupied
points of their narrowest cross-section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import numpy as np

from spatial.grid import OCCUPIED

FREE, SLOW, BLOCKED = "free", "slow", "blocked"
EdgeKey = tuple[str, str]  # (u, v) with u < v


class Belief(Protocol):
    """What the road layer needs from the map: believed states at points, and who contributed to them."""

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The believed int8 state (1 occupied, -1 free, 0 unknown) at each point (xs[i], ys[i])."""

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        """Per DID, how much it contributed to the beliefs at these points."""


@dataclass(frozen=True, slots=True)
class EdgeState:
    """One edge's state, the width left at its narrowest cross-section, and who the decision rests on."""

    state: str
    free_width_m: float
    contributors: dict[str, float]


@dataclass(frozen=True, slots=True)
class RoadReport:
    """Every edge's state at one evaluation; ``version`` moves only when some edge's state changed."""

    version: int
    states: dict[EdgeKey, EdgeState]

    def changed_since(self, previous: RoadReport | None) -> list[EdgeKey]:
        """The edges, sorted, whose state differs from ``previous`` (every edge when there is none)."""
        if previous is None:
            return sorted(self.states)
        now, before = _labels(self.states), _labels(previous.states)
        return sorted(key for key in now.keys() | before.keys() if now.get(key) != before.get(key))


class RoadStates:
    """The sample points of a road graph, and the evaluation of edge states from a belief at those points."""

    def __init__(
        self,
        graph: nx.Graph,
        *,
        road_m: float = 8.0,
        step_m: float | None = None,
        robot_width_m: float = 0.9,
        resolution_m: float = 0.2,
        slow_fraction: float = 0.5,
    ) -> None:
        step_m = resolution_m if step_m is None else step_m
        if not 0 < resolution_m <= road_m or step_m <= 0:
            raise ValueError(f"need 0 < resolution_m <= road_m and step_m > 0, got {resolution_m=} {road_m=} {step_m=}")
        if not 0 < robot_width_m <= road_m or not 0 < slow_fraction <= 1:
            raise ValueError(f"need 0 < robot_width_m <= road_m and 0 < slow_fraction <= 1, got "
                             f"{robot_width_m=} {slow_fraction=}")
        self.road_m = float(road_m)
        across = round(road_m / resolution_m)
        self.sample_m = road_m / across  # the width each sample across the road stands for
        self._robot_samples = math.ceil(robot_width_m / self.sample_m - 1e-9)
        self._slow_samples = math.ceil(slow_fraction * road_m / self.sample_m - 1e-9)
        offsets = (np.arange(across) + 0.5) * self.sample_m - road_m / 2
        self.edges: tuple[EdgeKey, ...] = tuple(sorted(tuple(sorted((u, v))) for u, v in graph.edges))
        rows_x, rows_y, counts = [], [], []
        for u, v in self.edges:
            xs, ys = _cross_sections(graph, u, v, road_m, step_m, offsets)
            rows_x.append(xs)
            rows_y.append(ys)
            counts.append(len(xs))
        self._counts = np.array(counts, dtype=np.intp)
        self._firsts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.intp)
        self.xs = np.concatenate(rows_x) if rows_x else np.empty((0, across))
        self.ys = np.concatenate(rows_y) if rows_y else np.empty((0, across))
        self._last: RoadReport | None = None

    def evaluate(self, belief: Belief) -> RoadReport:
        """Every edge's state under ``belief``; the version moves past the previous report's when a state changed."""
        states = np.asarray(belief.state_at(self.xs.ravel(), self.ys.ravel()))
        if states.shape != (self.xs.size,):
            raise ValueError(f"state_at returned shape {states.shape} for {self.xs.size} points")
        states = states.reshape(self.xs.shape)
        runs = _longest_runs(states == OCCUPIED)
        edge_states = {
            key: self._edge_state(belief, states, runs, first, count)
            for key, first, count in zip(self.edges, self._firsts, self._counts)
        }
        previous = self._last
        changed = previous is not None and _labels(edge_states) != _labels(previous.states)
        self._last = RoadReport(0 if previous is None else previous.version + int(changed), edge_states)
        return self._last

    def _edge_state(self, belief: Belief, states: np.ndarray, runs: np.ndarray, first: int, count: int) -> EdgeState:
        """The state of the edge whose cross-sections are rows first..first+count of ``states``."""
        if count == 0:
            return EdgeState(FREE, self.road_m, {})
        narrowest = first + int(np.argmin(runs[first:first + count]))
        run = int(runs[narrowest])
        width = round(run * self.sample_m, 6)
        if run >= self._slow_samples:
            return EdgeState(FREE, width, {})
        occupied = states[narrowest] == OCCUPIED
        contributors = belief.contributors_at(self.xs[narrowest][occupied], self.ys[narrowest][occupied])
        return EdgeState(BLOCKED if run < self._robot_samples else SLOW, width, contributors)


def graph_message(report: RoadReport, version: int) -> dict[str, Any]:
    """The body of a ``map.graph`` message: every edge's state, sorted by (u, v), so a consumer replaces its view."""
    return {
        "version": version,
        "edges": [{"u": u, "v": v, "state": edge.state} for (u, v), edge in sorted(report.states.items())],
    }


def _labels(states: dict[EdgeKey, EdgeState]) -> dict[EdgeKey, str]:
    """Each edge's state label alone, without widths or contributors."""
    return {key: edge.state for key, edge in states.items()}


def _cross_sections(
    graph: nx.Graph, u: str, v: str, road_m: float, step_m: float, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The sample points (x, y), each (sections, across), of edge u-v outside the junction squares at its ends.

    A junction's square reaches road_m / 2 along the edge (streets are axis-aligned);
    sections sit at the centres of equal steps of at most ``step_m``, never on a square's border.
    """
    (ux, uy), (vx, vy) = graph.nodes[u]["pos"], graph.nodes[v]["pos"]
    length = math.hypot(vx - ux, vy - uy)
    start = road_m / 2 if graph.nodes[u]["kind"] == "junction" else 0.0
    end = length - (road_m / 2 if graph.nodes[v]["kind"] == "junction" else 0.0)
    if end - start <= 1e-9:
        return np.empty((0, len(offsets))), np.empty((0, len(offsets)))
    sections = math.ceil((end - start) / step_m - 1e-9)
    along = start + (np.arange(sections) + 0.5) * (end - start) / sections
    dx, dy = (vx - ux) / length, (vy - uy) / length
    xs = ux + along[:, None] * dx - offsets[None, :] * dy
    ys = uy + along[:, None] * dy + offsets[None, :] * dx
    return xs, ys


def _longest_runs(walls: np.ndarray) -> np.ndarray:
    """Per row of a boolean (rows, across) array of walls, its longest run of non-walls; only walled rows cost."""
    runs = np.full(len(walls), walls.shape[1], dtype=np.int32)
    walled = np.flatnonzero(walls.any(axis=1))
    passable = ~walls[walled]
    counted = np.cumsum(passable, axis=1, dtype=np.int32)
    last_wall = np.maximum.accumulate(np.where(passable, 0, counted), axis=1)
    runs[walled] = (counted - last_wall).max(axis=1, initial=0)
    return runs
