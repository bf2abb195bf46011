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
from that robot's evidence alone) have each blocked it since it was last seen
open: two robots that saw the two faces of one roadworks corroborate the
road's closure, though no cell of it, and so do two that saw it minutes apart
(the first one's evidence faded meanwhile: fading is not seeing it open).

A BLOCKED edge stays BLOCKED (it is latched, at the cross-sections that have
blocked it since) until the corroborated belief sees a way through them: a
robot-wide corridor of FREE samples through all of them and ``open_margin_m``
either side (a wall's evidence smears over neighbouring cross-sections, and
the one that blocks moves among them as it fades). Evidence fading to unknown
is no such sight (the fleet avoids a closed road, so nobody refreshes its
evidence, and a closure nobody has seen open still stands), nor is one robot's
word (a FREE belief needs k robots or a trusted one, as an OCCUPIED one does).
Only a corroborated or k-witnessed blockage latches, never a SUSPECT one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
        open_margin_m: float = 0.4,
    ) -> None:
        step_m = resolution_m if step_m is None else step_m
        if not 0 < resolution_m <= road_m or step_m <= 0:
            raise ValueError(f"need 0 < resolution_m <= road_m and step_m > 0, got {resolution_m=} {road_m=} {step_m=}")
        if not 0 < robot_width_m <= road_m or not 0 < slow_fraction <= 1 or open_margin_m < 0:
            raise ValueError(f"need 0 < robot_width_m <= road_m, 0 < slow_fraction <= 1 and open_margin_m >= 0, got "
                             f"{robot_width_m=} {slow_fraction=} {open_margin_m=}")
        self.road_m = float(road_m)
        across = round(road_m / resolution_m)
        self.sample_m = road_m / across  # the width each sample across the road stands for
        self._robot_samples = math.ceil(robot_width_m / self.sample_m - 1e-9)
        self._slow_samples = math.ceil(slow_fraction * road_m / self.sample_m - 1e-9)
        self._gap_samples = math.floor(unseen_gap_m / self.sample_m + 1e-9)
        self._open_margin = math.ceil(open_margin_m / step_m - 1e-9)  # cross-sections
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
        # edge -> ((first, last) cross-section that blocked it since it latched, the state that last blocked it)
        self._latched: dict[EdgeKey, tuple[tuple[int, int], EdgeState]] = {}
        # edge -> witness DID -> (the cross-section where its own evidence blocked the edge, that state)
        self._sightings: dict[EdgeKey, dict[str, tuple[int, EdgeState]]] = {}

    def evaluate(
        self,
        belief: Belief,
        suspicion: Belief | None = None,
        witnesses: Callable[[EdgeKey], Mapping[str, Belief]] | None = None,
        k: int = 2,
    ) -> RoadReport:
        """Every edge's state under ``belief``: SUSPECT where only ``suspicion`` blocks it, unless ``k`` of the
        edge's ``witnesses`` (each robot's own belief, by DID) have blocked it on their own since it was last seen
        open; BLOCKED while latched and not seen open under ``belief``. The version moves past the previous
        report's when a state changed."""
        edge_states = self._states(belief)
        if suspicion is not None:
            for key, suspected in self._states(suspicion).items():
                if suspected.state == BLOCKED and edge_states[key].state != BLOCKED:
                    edge_states[key] = self._witnessed(key, suspected, witnesses(key) if witnesses else {}, k)
        self._latch(edge_states, belief)
        previous = self._last
        changed = previous is not None and _labels(edge_states) != _labels(previous.states)
        self._last = RoadReport(0 if previous is None else previous.version + int(changed), edge_states)
        return self._last

    def latched(self) -> dict[EdgeKey, EdgeState]:
        """The edges latched BLOCKED at the last evaluation, each as it was when it last blocked (where, who)."""
        return {key: state for key, (_, state) in self._latched.copy().items()}

    def latch(self, key: EdgeKey, at: tuple[float, float]) -> None:
        """Hold edge ``key`` BLOCKED at point ``at`` until a belief sees a way through there, as if it had just
        blocked there: how a restarted map takes back the closures it had published (who closed it is not
        known then). ValueError for an edge this graph does not have."""
        key = (min(key), max(key))
        if key not in self._index:
            raise ValueError(f"no road {key[0]}-{key[1]} in this graph: was the closure published for another city?")
        row = self._row_at(key, at)
        self._latched[key] = ((row, row + 1), EdgeState(BLOCKED, 0.0, {}, (float(at[0]), float(at[1]))))

    def _latch(self, edge_states: dict[EdgeKey, EdgeState], belief: Belief) -> None:
        """Latch every BLOCKED edge at its blocking cross-sections; hold a latched edge BLOCKED (with the state
        that last blocked it) until ``belief`` sees a way through them, then let it go. Witnesses' sightings
        of an edge are forgotten once it latches, or once ``belief`` sees a way through where they saw it closed."""
        for key, state in edge_states.items():
            latched = self._latched.get(key)
            if state.state == BLOCKED and state.at is not None:
                row = self._row_at(key, state.at)
                rows = (row, row + 1) if latched is None else (min(latched[0][0], row), max(latched[0][1], row + 1))
                self._latched[key] = (rows, state)
                self._sightings.pop(key, None)
            elif latched is not None:
                if self._seen_open(key, latched[0], belief):
                    del self._latched[key]
                else:
                    edge_states[key] = latched[1]
        for key, seen in list(self._sightings.items()):
            rows = [row for row, _ in seen.values()]
            if not seen or self._seen_open(key, (min(rows), max(rows) + 1), belief):
                del self._sightings[key]

    def _row_at(self, key: EdgeKey, at: tuple[float, float]) -> int:
        """The index, within its edge, of the cross-section whose centre is nearest ``at``."""
        xs, ys = self.points(key)
        return int(np.argmin(np.hypot(xs.mean(axis=1) - at[0], ys.mean(axis=1) - at[1])))

    def _seen_open(self, key: EdgeKey, rows: tuple[int, int], belief: Belief) -> bool:
        """Whether ``belief`` holds a robot-wide corridor of FREE samples through cross-sections ``rows`` (first,
        last) and ``open_margin`` more on either side: unknown is not open, only what robots saw passable is."""
        xs, ys = self.points(key)
        band = slice(max(rows[0] - self._open_margin, 0), min(rows[1] + 1 + self._open_margin, len(xs)))
        states = np.asarray(belief.state_at(xs[band].ravel(), ys[band].ravel())).reshape(xs[band].shape)
        return bool(_longest_runs(~(states == FREE_STATE).all(axis=0, keepdims=True))[0] >= self._robot_samples)

    def points(self, key: EdgeKey) -> tuple[np.ndarray, np.ndarray]:
        """The sample points (x, y) of one edge, each shaped (cross-sections, across)."""
        index = self._index[key]
        first, count = int(self._firsts[index]), int(self._counts[index])
        return self.xs[first:first + count], self.ys[first:first + count]

    def _witnessed(self, key: EdgeKey, suspected: EdgeState, witnesses: Mapping[str, Belief], k: int) -> EdgeState:
        """BLOCKED when k of the edge's witnesses have each blocked it on their own evidence since it was last seen
        open (named together), else SUSPECT: who saw it closed is remembered while their evidence fades, and
        counts while it is still offered as a witness (a robot whose trust fell since does not)."""
        xs, ys = self.points(key)
        seen = self._sightings.setdefault(key, {})
        for did, witness in witnesses.items():
            states = np.asarray(witness.state_at(xs.ravel(), ys.ravel())).reshape(xs.shape)
            state = self._edge_state(witness, xs, ys, states, self._runs(states, _ONE_EDGE))
            if state.state == BLOCKED and state.at is not None:
                seen[did] = (self._row_at(key, state.at), state)
        vouched = [state for did, (_, state) in seen.items() if did in witnesses]
        if len(vouched) < k:
            return EdgeState(SUSPECT, suspected.free_width_m, suspected.contributors, suspected.at)
        contributors: dict[str, float] = {}
        for state in vouched:
            for did, amount in state.contributors.items():
                contributors[did] = contributors.get(did, 0.0) + amount
        return EdgeState(BLOCKED, min(state.free_width_m for state in vouched), contributors, suspected.at)

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


def vantage_points(graph: nx.Graph, key: EdgeKey, at: tuple[float, float],
                   vantage_m: float) -> tuple[tuple[float, float], ...]:
    """Where to look at point ``at`` of edge ``key`` from: on the road, ``vantage_m`` short of it from each
    end's side (at most as far as that end), so a robot sent to either sees it within the map's insertion range."""
    views = []
    for end in key:
        ex, ey = graph.nodes[end]["pos"]
        gap = math.hypot(ex - at[0], ey - at[1])
        if gap > 1e-9:
            step = min(vantage_m, gap) / gap
            views.append((at[0] + (ex - at[0]) * step, at[1] + (ey - at[1]) * step))
    return tuple(views)


class RouteCosts:
    """Metres of road to one point from many others, around the edges held BLOCKED: what a survey's robot
    would drive, where straight-line distance would send one up a road the map already holds closed.

    Each point is placed on its nearest edge. A point on a BLOCKED edge reaches only the end on its side of
    the blockage (a robot stopped by it turns back; a vantage point short of it is reached from that side).
    One shortest-path tree (networkx ``single_source_dijkstra_path_length``, Dijkstra 1959) from each end
    the target can be reached from, at most two per target, whatever the number of starts.
    """

    def __init__(self, graph: nx.Graph) -> None:
        self.graph = graph
        self._keys: tuple[EdgeKey, ...] = tuple(sorted(tuple(sorted((u, v))) for u, v in graph.edges))
        ends = np.array([[*graph.nodes[u]["pos"], *graph.nodes[v]["pos"]] for u, v in self._keys], dtype=float)
        self._a, self._d = ends[:, :2], ends[:, 2:] - ends[:, :2]
        self._lengths = np.array([float(graph.edges[key]["length"]) for key in self._keys])

    def __call__(self, target: tuple[float, float], starts: list[tuple[float, float]],
                 blocked: Mapping[EdgeKey, tuple[float, float]]) -> list[float | None]:
        """Per start, the metres of road from it to ``target`` avoiding ``blocked`` (edge -> where it is
        blocked); None where no way is open."""
        if not starts:
            return []
        (goal,), (goal_t,) = self._place([target])
        reach: dict[Any, float] = {}
        for end, offset in self._ends(goal, goal_t, blocked):
            tree = nx.single_source_dijkstra_path_length(
                self.graph, end, weight=lambda u, v, data: None if (min(u, v), max(u, v)) in blocked
                else data["length"])
            for node, metres in tree.items():
                reach[node] = min(reach.get(node, math.inf), metres + offset)
        costs: list[float | None] = []
        for edge, t in zip(*self._place(starts)):
            ways = [offset + reach[end] for end, offset in self._ends(edge, t, blocked) if end in reach]
            if edge == goal and self._side(edge, t, blocked) == self._side(goal, goal_t, blocked):
                ways.append(abs(t - goal_t) * self._lengths[edge])
            costs.append(float(min(ways)) if ways else None)
        return costs

    def _place(self, points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Each point's nearest edge (index) and where along it (0 at its first end, 1 at its second)."""
        p = np.asarray(points, dtype=float)[:, None, :]
        t = np.clip(((p - self._a) * self._d).sum(axis=2) / (self._d * self._d).sum(axis=1), 0.0, 1.0)
        gaps = np.hypot(*np.moveaxis(self._a + t[:, :, None] * self._d - p, 2, 0))
        edges = gaps.argmin(axis=1)
        return edges, t[np.arange(len(edges)), edges]

    def _side(self, edge: int, t: float, blocked: Mapping[EdgeKey, tuple[float, float]]) -> int | None:
        """0 or 1: which end of a blocked edge a point at ``t`` is on the side of; None on an open edge."""
        at = blocked.get(self._keys[edge])
        if at is None:
            return None
        return 0 if t < self._along(edge, at) else 1

    def _along(self, edge: int, point: tuple[float, float]) -> float:
        """Where along edge ``edge`` (0 at its first end, 1 at its second) ``point`` projects."""
        d = self._d[edge]
        return float(np.clip(np.dot(np.asarray(point, dtype=float) - self._a[edge], d) / np.dot(d, d), 0.0, 1.0))

    def _ends(self, edge: int, t: float, blocked: Mapping[EdgeKey, tuple[float, float]]) -> list[tuple[Any, float]]:
        """The ends a point at ``t`` along ``edge`` can drive to, with the metres to each: both on an open edge,
        only the one on its side of the blockage on a blocked one."""
        key, length = self._keys[edge], self._lengths[edge]
        ends = [(key[0], t * length), (key[1], (1.0 - t) * length)]
        side = self._side(edge, t, blocked)
        return ends if side is None else [ends[side]]


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
