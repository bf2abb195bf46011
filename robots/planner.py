"""Routes on the road graph: A* from any point near a road to any other point or node.

A point (a robot's estimated position, a task's pickup spot) joins the graph on
its nearest edge, through a temporary node that may travel to either end of that
edge. The planner works on its own copy of the graph, taken once at
construction, so the caller's graph is never touched and one planner can serve a
whole fleet. Closures come in per call: ``blocked_streets`` and ``cost``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass

import networkx as nx

from identity.errors import DepaiError

EdgeCost = Callable[[str, str, dict], float | None]
Point = tuple[float, float]

_START = ("virtual start",)  # temporary nodes: tuples, so no string node id can collide with them
_GOAL = ("virtual goal",)
_FIXED = "virtual weight"  # a temporary edge's data holds its precomputed weight (None = impassable) under this key


class NoRoute(DepaiError):
    """No open path between two places; the message says from where to where and why."""

    code = "no_route"


@dataclass(frozen=True, slots=True)
class Route:
    """A planned route: the graph nodes it visits and the polyline to drive, start point to goal point."""

    nodes: tuple[str, ...]
    waypoints: tuple[Point, ...]
    length_m: float


@dataclass(frozen=True, slots=True)
class _Anchor:
    """Where a point joins the graph: the edge (a, b), the fraction t along it from a, and the edge's data."""

    a: str
    b: str
    t: float
    data: dict


class _SegmentIndex:
    """Segments hashed into square cells, for the segment nearest to a point in a few dict lookups."""

    def __init__(self, segments: list[tuple[float, float, float, float, Hashable]], cell_m: float) -> None:
        self._cell = cell_m
        self._segments: list[tuple[float, float, float, float, float, Hashable]] = []
        self._cells: dict[tuple[int, int], list[int]] = {}
        for ax, ay, bx, by, key in segments:
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            index = len(self._segments)
            self._segments.append((ax, ay, dx, dy, 1.0 / length2 if length2 > 0.0 else 0.0, key))
            for i in range(math.floor(min(ax, bx) / cell_m), math.floor(max(ax, bx) / cell_m) + 1):
                for j in range(math.floor(min(ay, by) / cell_m), math.floor(max(ay, by) / cell_m) + 1):
                    self._cells.setdefault((i, j), []).append(index)
        cells = self._cells.keys()
        self._i0, self._i1 = min(i for i, _ in cells), max(i for i, _ in cells)
        self._j0, self._j1 = min(j for _, j in cells), max(j for _, j in cells)

    def nearest(self, x: float, y: float) -> tuple[Hashable, float]:
        """The key of the segment closest to (x, y) and the fraction along it of the closest point."""
        fx, fy = x / self._cell, y / self._cell
        ci, cj = math.floor(fx), math.floor(fy)
        i0, i1, j0, j1 = self._i0, self._i1, self._j0, self._j1
        ring = max(i0 - ci, ci - i1, j0 - cj, cj - j1, 0)  # the first ring of cells around (ci, cj) that is indexed
        last_ring = max(ci - i0, i1 - ci, cj - j0, j1 - cj)
        best = (math.inf, None, 0.0)
        while ring <= last_ring:
            if ring == 0:
                best = self._closest(x, y, self._cells.get((ci, cj), ()), best)
            else:
                rows = [j for j in (cj - ring, cj + ring) if j0 <= j <= j1]
                columns = [i for i in (ci - ring, ci + ring) if i0 <= i <= i1]
                ring_cells = [(i, j) for j in rows for i in range(max(ci - ring, i0), min(ci + ring, i1) + 1)]
                ring_cells += [(i, j) for i in columns for j in range(max(cj - ring + 1, j0), min(cj + ring - 1, j1) + 1)]
                best = self._closest(x, y, [k for ij in ring_cells for k in self._cells.get(ij, ())], best)
            # every segment not yet looked at lies outside the square of cells searched so far
            margin = self._cell * min(fx - ci + ring, ci + ring + 1 - fx, fy - cj + ring, cj + ring + 1 - fy)
            if best[0] <= margin * margin:
                break
            ring += 1
        return best[1], best[2]

    def _closest(self, x: float, y: float, indices: Iterable[int],
                 best: tuple[float, Hashable, float]) -> tuple[float, Hashable, float]:
        """``best`` (squared distance, key, fraction) improved by the segments at ``indices``."""
        best_d2 = best[0]
        for index in indices:
            ax, ay, dx, dy, inv_length2, key = self._segments[index]
            t = ((x - ax) * dx + (y - ay) * dy) * inv_length2
            t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
            ex, ey = ax + t * dx - x, ay + t * dy - y
            d2 = ex * ex + ey * ey
            if d2 < best_d2:
                best_d2, best = d2, (d2, key, t)
        return best


class RoadPlanner:
    """A* routes on a road graph (nodes with ``pos``, edges with ``length`` and ``street``), shared by a fleet.

    The planner snapshots the graph at construction; build a new one if the roads themselves change.
    """

    def __init__(self, graph: nx.Graph) -> None:
        if graph.number_of_edges() == 0:
            raise ValueError("a road planner needs a graph with at least one road")
        self._graph = graph
        self._pos: dict[Hashable, Point] = {n: (float(p[0]), float(p[1])) for n, p in graph.nodes(data="pos")}
        self._work = nx.Graph()
        self._work.add_nodes_from(graph)
        self._work.add_edges_from(graph.edges(data=True))
        self._lock = threading.Lock()
        pos = self._pos
        edges = [(*pos[u], *pos[v], (u, v)) for u, v in graph.edges()]
        cell = max(1.0, sum(d["length"] for _, _, d in graph.edges(data=True)) / len(edges))
        self._edges = _SegmentIndex(edges, cell)
        self._nodes = _SegmentIndex([(x, y, x, y, n) for n, (x, y) in pos.items()], cell)

    @property
    def graph(self) -> nx.Graph:
        """The road graph this planner was built on (the caller's object, never modified here)."""
        return self._graph

    def nearest_node(self, x: float, y: float) -> str:
        """The graph node closest to (x, y)."""
        return self._nodes.nearest(x, y)[0]

    def nearest_edge(self, x: float, y: float) -> tuple[str, str]:
        """The edge (u, v) whose segment passes closest to (x, y)."""
        return self._edges.nearest(x, y)[0]

    def plan(
        self,
        start: Point | str,
        goal: Point | str,
        *,
        blocked_streets: Collection[str] = (),
        cost: EdgeCost | None = None,
        heading: float | None = None,
    ) -> Route:
        """The cheapest route from ``start`` to ``goal`` (points near roads, or node ids); NoRoute if none is open.

        An edge costs ``cost(u, v, data)`` (None: impassable) or else its length; the straight-line
        heuristic keeps routes optimal while costs are at least lengths. Streets in
        ``blocked_streets`` are impassable. A robot may always leave the edge it stands on,
        even on a closed street; given its ``heading`` (radians, counter-clockwise from +x) it
        leaves a closed street only the way it came, turning back from whatever closed it.
        """
        blocked = frozenset(blocked_streets)

        def weight(u: Hashable, v: Hashable, data: dict) -> float | None:
            if _FIXED in data:
                return data[_FIXED]
            if data.get("street") in blocked:
                return None
            return data["length"] if cost is None else cost(u, v, data)

        with self._lock:
            source, start_xy, start_anchor = self._join(start, "start")
            target, goal_xy, goal_anchor = self._join(goal, "goal")
            try:
                if start_anchor is not None:
                    self._attach(_START, start_xy, start_anchor, weight, leaving=True, heading=heading)
                if goal_anchor is not None:
                    self._attach(_GOAL, goal_xy, goal_anchor, weight, leaving=False, heading=heading)
                if start_anchor is not None and goal_anchor is not None:
                    self._link_on_same_edge(start_anchor, goal_anchor, weight, heading)
                path = self._search(source, target, goal_xy, weight)
                if path is None:
                    raise NoRoute(f"no route from {_describe(start)} to {_describe(goal)}: "
                                  f"{self._why(source, target, blocked, weight)}")
            finally:
                for node in (_START, _GOAL):
                    if node in self._work:
                        self._work.remove_node(node)
                        del self._pos[node]
        nodes = tuple(n for n in path if n is not _START and n is not _GOAL)
        points = [start_xy, *(self._pos[n] for n in nodes), goal_xy]
        waypoints = [points[0]]
        for p in points[1:]:
            if p != waypoints[-1]:
                waypoints.append(p)
        length = sum(math.dist(p, q) for p, q in zip(waypoints, waypoints[1:]))
        return Route(nodes=nodes, waypoints=tuple(waypoints), length_m=length)

    def _join(self, place: Point | str, role: str) -> tuple[Hashable, Point, _Anchor | None]:
        """The search node for ``place``, its position, and where it joins the graph (None for a node)."""
        if isinstance(place, str):
            if place not in self._pos:
                raise NoRoute(f"no node {place!r} in the road graph to {role} from" if role == "start"
                              else f"no node {place!r} in the road graph to go to")
            return place, self._pos[place], None
        x, y = float(place[0]), float(place[1])
        (a, b), t = self._edges.nearest(x, y)
        return (_START if role == "start" else _GOAL), (x, y), _Anchor(a, b, t, self._work.edges[a, b])

    def _attach(self, node: tuple, xy: Point, anchor: _Anchor, weight: EdgeCost, *, leaving: bool,
                heading: float | None) -> None:
        """Add a temporary node at ``xy`` with edges to both ends of its anchor edge, weights precomputed."""
        a, b, t, data = anchor.a, anchor.b, anchor.t, anchor.data
        length = data["length"]
        if leaving:  # the node travels out: towards a is the direction b -> a
            to_a, to_b = weight(b, a, data), weight(a, b, data)
        else:  # travel comes in: from a is the direction a -> b
            to_a, to_b = weight(a, b, data), weight(b, a, data)
        w_a = None if to_a is None else to_a * t
        w_b = None if to_b is None else to_b * (1.0 - t)
        if leaving and w_a is None and w_b is None:
            w_a, w_b = self._way_out(anchor, heading)
        self._pos[node] = xy
        street = data.get("street")
        self._work.add_edge(node, a, length=length * t, street=street, **{_FIXED: w_a})
        self._work.add_edge(node, b, length=length * (1.0 - t), street=street, **{_FIXED: w_b})

    def _way_out(self, anchor: _Anchor, heading: float | None) -> tuple[float | None, float | None]:
        """Weights to leave a closed edge: plain lengths both ways, or only backwards when the heading is known."""
        length = anchor.data["length"]
        w_a, w_b = length * anchor.t, length * (1.0 - anchor.t)
        if heading is None:
            return w_a, w_b
        (ax, ay), (bx, by) = self._pos[anchor.a], self._pos[anchor.b]
        ahead_is_b = (bx - ax) * math.cos(heading) + (by - ay) * math.sin(heading) > 0.0
        return (w_a, None) if ahead_is_b else (None, w_b)

    def _link_on_same_edge(self, start: _Anchor, goal: _Anchor, weight: EdgeCost, heading: float | None) -> None:
        """Start and goal on one edge: the direct stretch between them is a route too."""
        if {start.a, start.b} != {goal.a, goal.b}:
            return
        goal_t = goal.t if goal.a == start.a else 1.0 - goal.t
        forward = goal_t >= start.t  # travelling a -> b
        data = start.data
        a_to_b, b_to_a = weight(start.a, start.b, data), weight(start.b, start.a, data)
        full = a_to_b if forward else b_to_a
        span = abs(goal_t - start.t)
        if a_to_b is None and b_to_a is None:  # the start may still leave a closed edge, as _way_out allows
            full = None if self._way_out(start, heading)[1 if forward else 0] is None else data["length"]
        self._work.add_edge(_START, _GOAL, length=data["length"] * span, street=data.get("street"),
                            **{_FIXED: None if full is None else full * span})

    def _search(self, source: Hashable, target: Hashable, goal_xy: Point, weight: EdgeCost) -> list | None:
        """A* with the straight-line distance to the goal as heuristic; None when the target is unreachable."""
        pos = self._pos
        gx, gy = goal_xy

        def heuristic(u: Hashable, _: Hashable) -> float:
            x, y = pos[u]
            return math.hypot(x - gx, y - gy)

        try:
            return nx.astar_path(self._work, source, target, heuristic=heuristic, weight=weight)
        except nx.NetworkXNoPath:
            return None

    def _why(self, source: Hashable, target: Hashable, blocked: frozenset[str], weight: EdgeCost) -> str:
        """Why a search failed, in words: a closed-in end, or closed streets that cut the way."""
        for node, role in ((target, "goal"), (source, "start")):
            around = self._work[node]
            if not around:
                return f"{_describe(node)} is on no street"
            if all(weight(node, other, data) is None for other, data in around.items()):
                if node is _GOAL or node is _START:
                    street = next(iter(around.values())).get("street")
                    return f"the {role} lies on closed street {street}"
                return f"all streets around {node} are closed"
        if blocked:
            shown = ", ".join(sorted(blocked)[:5]) + (" ..." if len(blocked) > 5 else "")
            return f"the closed streets ({shown}) cut every way between them"
        return "no open streets connect them"


def _describe(place: Hashable) -> str:
    """A place as people read it: a node id, or a point rounded to centimetres."""
    if isinstance(place, str):
        return place
    x, y = place
    return f"({x:.2f}, {y:.2f})"
