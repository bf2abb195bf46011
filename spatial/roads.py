"""The road graph's edge states (free, slow, blocked), derived from the shared map's believed cells.

Every edge is sampled once, up front: cross-sections at most ``step_m`` apart
along it (outside the junction squares at its ends, which belong to no edge),
each a row of points ``resolution_m`` apart across the full road width.
``step_m`` defaults to ``resolution_m``: a barrier a lidar sees is often one
believed cell thick (its front face), and coarser steps can pass between. One
``state_at`` call over all of them evaluates the whole graph. A point is
passable unless believed OCCUPIED (unknown ground is optimistically passable;
a blockage is believed only once the map has corroborated it), except that an
unseen gap of at most ``unseen_gap_m`` between two occupied points of one
cross-section counts as closed: lidar returns sample a surface sparsely. Each
cross-section is read together with the next one along the edge, so a thin
barrier standing at a slant across two of them still closes the road. An edge is
BLOCKED when some cross-section has no contiguous passable span as wide as the
robot, SLOW when its narrowest span is under ``slow_fraction`` of the road, else
FREE. Blocked and slow edges name who said so: the contributors of the occupied
points of their narrowest cross-section, and where that cross-section is.

Given a second, uncorroborated belief (what any one credible robot says), an
edge that it would block but the corroborated belief does not is SUSPECT: the
fleet plans through it as if free, and a second robot can be sent to look. A
suspect is BLOCKED after all when at least k witnesses (one belief per robot,
from that robot's evidence alone) each block it: two robots that saw the two
faces of one roadworks corroborate the road's closure, though no cell of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import numpy as np

from spatial.grid import FREE as FREE_STATE
from spatial.grid import OCCUPIED

FREE, SLOW, BLOCKED, SUSPECT = "free", "slow", "blocked", "suspect"
EdgeKey = tuple[str, str]  # (u, v) with u < v


class Belief(Protocol):
    """What the road layer needs from the map: believed states at points, and who contributed to them."""

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The believed int8 state (1 occupied, -1 free, 0 unknown) at each point (xs[i], ys[i])."""

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        """Per DID, how much it contributed to the beliefs at these points."""


@dataclass(frozen=True, slots=True)
class EdgeState:
    """One edge's state, the width left at its narrowest cross-section, who the decision rests on, and where."""

    state: str
    free_width_m: float
    contributors: dict[str, float]
    at: tuple[float, float] | None = None  # the narrowest cross-section's centre, when not free


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
        unseen_gap_m: float = 1.2,
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
        self._gap_samples = math.floor(unseen_gap_m / self.sample_m + 1e-9)
        offsets = (np.arange(across) + 0.5) * self.sample_m - road_m / 2
        self.edges: tuple[EdgeKey, ...] = tuple(sorted(tuple(sorted((u, v))) for u, v in graph.edges))
        self._index = {key: index for index, key in enumerate(self.edges)}
        rows_x, rows_y, counts = [], [], []
        for u, v in self.edges:
            xs, ys = _cross_sections(graph, u, v, road_m, step_m, offsets)
            rows_x.append(xs)
            rows_y.append(ys)
            counts.append(len(xs))
        self._counts = np.array(counts, dtype=np.intp)
        self._firsts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.intp)
        self._last_rows = (self._firsts + self._counts - 1)[self._counts > 0]
        self.xs = np.concatenate(rows_x) if rows_x else np.empty((0, across))
        self.ys = np.concatenate(rows_y) if rows_y else np.empty((0, across))
        self._last: RoadReport | None = None

    def evaluate(
        self,
        belief: Belief,
        suspicion: Belief | None = None,
        witnesses: Callable[[EdgeKey], Iterable[Belief]] | None = None,
        k: int = 2,
    ) -> RoadReport:
        """Every edge's state under ``belief``: SUSPECT where only ``suspicion`` blocks it, unless ``k`` of the
        edge's ``witnesses`` block it each on their own. The version moves past the previous report's when a
        state changed."""
        edge_states = self._states(belief)
        if suspicion is not None:
            for key, suspected in self._states(suspicion).items():
                if suspected.state == BLOCKED and edge_states[key].state != BLOCKED:
                    edge_states[key] = self._witnessed(key, suspected, witnesses(key) if witnesses else (), k)
        previous = self._last
        changed = previous is not None and _labels(edge_states) != _labels(previous.states)
        self._last = RoadReport(0 if previous is None else previous.version + int(changed), edge_states)
        return self._last

    def points(self, key: EdgeKey) -> tuple[np.ndarray, np.ndarray]:
        """The sample points (x, y) of one edge, each shaped (cross-sections, across)."""
        index = self._index[key]
        first, count = int(self._firsts[index]), int(self._counts[index])
        return self.xs[first:first + count], self.ys[first:first + count]

    def _witnessed(self, key: EdgeKey, suspected: EdgeState, witnesses: Iterable[Belief], k: int) -> EdgeState:
        """BLOCKED when k witnesses each block the edge on their own evidence (named together), else SUSPECT."""
        xs, ys = self.points(key)
        seen = []
        for witness in witnesses:
            states = np.asarray(witness.state_at(xs.ravel(), ys.ravel())).reshape(xs.shape)
            state = self._edge_state(witness, xs, ys, states, self._runs(states, _ONE_EDGE))
            if state.state == BLOCKED:
                seen.append(state)
        if len(seen) < k:
            return EdgeState(SUSPECT, suspected.free_width_m, suspected.contributors, suspected.at)
        contributors: dict[str, float] = {}
        for state in seen:
            for did, amount in state.contributors.items():
                contributors[did] = contributors.get(did, 0.0) + amount
        return EdgeState(BLOCKED, min(state.free_width_m for state in seen), contributors, suspected.at)

    def _states(self, belief: Belief) -> dict[EdgeKey, EdgeState]:
        """Every edge's state under ``belief``, from one state_at call over all sample points."""
        states = np.asarray(belief.state_at(self.xs.ravel(), self.ys.ravel()))
        if states.shape != (self.xs.size,):
            raise ValueError(f"state_at returned shape {states.shape} for {self.xs.size} points")
        states = states.reshape(self.xs.shape)
        runs = self._runs(states, self._last_rows)
        return {key: self._edge_state(belief, self.xs[first:first + count], self.ys[first:first + count],
                                      states[first:first + count], runs[first:first + count])
                for key, first, count in zip(self.edges, self._firsts, self._counts)}

    def _runs(self, states: np.ndarray, last_rows: np.ndarray) -> np.ndarray:
        """Per cross-section, the longest passable run of samples across it and the next one of its edge
        (a barrier at a slant crosses both), unseen gaps between walls closed. ``last_rows``: each edge's last."""
        return _longest_runs(_close_unseen_gaps(_with_next_row(states, last_rows), self._gap_samples))

    def _edge_state(self, belief: Belief, xs: np.ndarray, ys: np.ndarray, states: np.ndarray,
                    runs: np.ndarray) -> EdgeState:
        """The state of one edge from its sample points, believed states and runs, each row a cross-section."""
        if len(runs) == 0:
            return EdgeState(FREE, self.road_m, {})
        narrowest = int(np.argmin(runs))
        run = int(runs[narrowest])
        width = round(run * self.sample_m, 6)
        if run >= self._slow_samples:
            return EdgeState(FREE, width, {})
        rows = slice(narrowest, narrowest + 2)  # the cross-section and the next one, as _runs saw them
        occupied = states[rows] == OCCUPIED
        contributors = belief.contributors_at(xs[rows][occupied], ys[rows][occupied])
        at = (round(float(xs[narrowest].mean()), 3), round(float(ys[narrowest].mean()), 3))
        return EdgeState(BLOCKED if run < self._robot_samples else SLOW, width, contributors, at)


def graph_message(report: RoadReport, version: int) -> dict[str, Any]:
    """The body of a ``map.graph`` message: every edge's state, sorted by (u, v), so a consumer replaces its view;
    an edge that is not free says where its narrowest point is."""
    edges = []
    for (u, v), edge in sorted(report.states.items()):
        entry: dict[str, Any] = {"u": u, "v": v, "state": edge.state}
        if edge.at is not None:
            entry["at"] = {"x": edge.at[0], "y": edge.at[1]}
        edges.append(entry)
    return {"version": version, "edges": edges}


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


_ONE_EDGE = np.array([-1])  # last_rows for the rows of a single edge: its last row is the array's last


def _with_next_row(states: np.ndarray, last_rows: np.ndarray) -> np.ndarray:
    """Each cross-section merged with the next one of its edge: OCCUPIED if either is, else FREE if either
    is, else UNKNOWN. An edge's last cross-section stays as it is."""
    following = np.empty_like(states)
    following[:-1] = states[1:]
    following[last_rows] = states[last_rows]
    occupied = (states == OCCUPIED) | (following == OCCUPIED)
    free = (states == FREE_STATE) | (following == FREE_STATE)
    return np.where(occupied, OCCUPIED, np.where(free, FREE_STATE, 0)).astype(np.int8)


def _close_unseen_gaps(states: np.ndarray, gap_samples: int) -> np.ndarray:
    """Walls of a (rows, across) array of believed states, with every gap of at most ``gap_samples`` unknown
    samples between two walls of a row counted as wall too: a lidar samples a surface sparsely (beams fan
    out, and graze it at a slant), and an unseen hole between two seen parts of it is no way through."""
    walls = states == OCCUPIED
    walled = np.flatnonzero(walls.any(axis=1))
    if gap_samples < 1 or not len(walled):
        return walls
    rows, free = walls[walled], states[walled] == FREE_STATE
    across = np.arange(rows.shape[1])
    before = np.maximum.accumulate(np.where(rows, across, -1), axis=1)  # the last wall at or before each sample
    after = np.minimum.accumulate(np.where(rows, across, rows.shape[1])[:, ::-1], axis=1)[:, ::-1]
    seen_free = np.concatenate([np.zeros((len(rows), 1), np.int32), np.cumsum(free, axis=1, dtype=np.int32)], axis=1)
    bounded = (before >= 0) & (after < rows.shape[1])
    lo, hi = np.clip(before, 0, None), np.clip(after, None, rows.shape[1] - 1)
    unseen = np.take_along_axis(seen_free, hi, axis=1) - np.take_along_axis(seen_free, lo + 1, axis=1) == 0
    closed = bounded & unseen & (after - before - 1 <= gap_samples)
    out = walls.copy()
    out[walled] = rows | closed
    return out


def _longest_runs(walls: np.ndarray) -> np.ndarray:
    """Per row of a boolean (rows, across) array of walls, its longest run of non-walls; only walled rows cost."""
    runs = np.full(len(walls), walls.shape[1], dtype=np.int32)
    walled = np.flatnonzero(walls.any(axis=1))
    passable = ~walls[walled]
    counted = np.cumsum(passable, axis=1, dtype=np.int32)
    last_wall = np.maximum.accumulate(np.where(passable, 0, counted), axis=1)
    runs[walled] = (counted - last_wall).max(axis=1, initial=0)
    return runs
