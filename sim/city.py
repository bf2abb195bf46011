"""A city (or campus) generated from a seed: a grid of streets, buildings on the blocks, and named places.

Intersection (i, j) stands at (i * pitch, j * pitch) with pitch = block_m + road_m,
so the city starts at (0, 0) and grows towards +x and +y. A street's road surface
is road_m wide around its centreline; the squares road_m wide around the
intersections are road too. Buildings keep a sidewalk of at least SIDEWALK_M to
every road edge. Places (depots, drop-offs, chargers) sit on street centrelines
and split their street in the road graph, so routes can start and end there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from sim.geometry import Box

PLACE_KINDS = ("depot", "dropoff", "charger")
SIDEWALK_M = 1.5  # least clear ground between a road edge and a building
EDGE_MARGIN_M = 5.0  # open ground beyond the outermost road edges, included in bounds()
PLACE_END_M = 4.0  # least distance from a place to either intersection of its street
PLACE_GAP_M = 5.0  # least distance between two places
_MIN_HEIGHT_M, _MAX_HEIGHT_M = 6.0, 40.0
_Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True, slots=True)
class Place:
    """A named spot on a street centreline where robots load, unload or charge; also a road-graph node."""

    id: str
    kind: str
    x: float
    y: float
    street: str


@dataclass(frozen=True)
class CityLayout:
    """The static world: intersections, streets, buildings and places, all derived from ``seed``."""

    seed: int
    blocks_x: int
    blocks_y: int
    block_m: float
    road_m: float
    nodes: dict[str, tuple[float, float]]
    streets: dict[str, tuple[str, str]]
    buildings: tuple[Box, ...]
    places: tuple[Place, ...]

    @cached_property
    def _place_index(self) -> dict[str, Place]:
        return {p.id: p for p in self.places}

    @cached_property
    def _street_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.streets))

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the whole city: every road surface plus EDGE_MARGIN_M of open ground."""
        pitch = self.block_m + self.road_m
        edge = self.road_m / 2 + EDGE_MARGIN_M
        return (-edge, -edge, self.blocks_x * pitch + edge, self.blocks_y * pitch + edge)

    def places_of(self, kind: str) -> tuple[Place, ...]:
        """Every place of one kind ("depot", "dropoff" or "charger"), in id order of generation."""
        if kind not in PLACE_KINDS:
            raise ValueError(f"unknown place kind {kind!r}; expected one of {PLACE_KINDS}")
        return tuple(p for p in self.places if p.kind == kind)

    def place(self, place_id: str) -> Place:
        """The place called ``place_id``."""
        try:
            return self._place_index[place_id]
        except KeyError:
            raise KeyError(f"no place {place_id!r} in this city (it has {len(self.places)} places)") from None

    def road_graph(self) -> nx.Graph:
        """A fresh graph of intersections and places; edges carry ``length`` (m) and ``street`` (id)."""
        graph = nx.Graph()
        for node_id, pos in self.nodes.items():
            graph.add_node(node_id, pos=pos, kind="junction")
        on_street: dict[str, list[Place]] = {}
        for p in self.places:
            graph.add_node(p.id, pos=(p.x, p.y), kind=p.kind)
            on_street.setdefault(p.street, []).append(p)
        for street, (a, b) in self.streets.items():
            ax, ay = self.nodes[a]
            chain = sorted(on_street.get(street, ()), key=lambda p: math.hypot(p.x - ax, p.y - ay))
            stops = [a, *(p.id for p in chain), b]
            for u, v in zip(stops, stops[1:]):
                (ux, uy), (vx, vy) = graph.nodes[u]["pos"], graph.nodes[v]["pos"]
                graph.add_edge(u, v, length=math.hypot(vx - ux, vy - uy), street=street)
        return graph

    def street_box(self, street: str, *, fraction: float = 1.0) -> Box:
        """The road surface of ``street`` between its intersection squares: full width, ``fraction`` of it, centred."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        a, b = self._ends(street)
        (ax, ay), (bx, by) = self.nodes[a], self.nodes[b]
        half_along = fraction * self.block_m / 2
        half_across = self.road_m / 2
        horizontal = ay == by
        return Box(
            x=(ax + bx) / 2,
            y=(ay + by) / 2,
            half_x=half_along if horizontal else half_across,
            half_y=half_across if horizontal else half_along,
            height=0.0,
        )

    def random_road_point(self, rng: np.random.Generator) -> tuple[float, float, str]:
        """A uniformly chosen street and a uniform point on its centreline (intersections included): (x, y, street)."""
        street = self._street_ids[int(rng.integers(len(self._street_ids)))]
        a, b = self.streets[street]
        (ax, ay), (bx, by) = self.nodes[a], self.nodes[b]
        t = float(rng.uniform(0.0, 1.0))
        return (ax + t * (bx - ax), ay + t * (by - ay), street)

    def _ends(self, street: str) -> tuple[str, str]:
        try:
            return self.streets[street]
        except KeyError:
            raise KeyError(f"no street {street!r} in this city") from None


def street_id(u: str, v: str) -> str:
    """The id of the street between intersections ``u`` and ``v``: the two ids sorted, joined by '|'."""
    a, b = sorted((u, v))
    return f"{a}|{b}"


def places_per_street(block_m: float, road_m: float) -> int:
    """How many places one street holds, keeping PLACE_END_M from its intersections and PLACE_GAP_M apart."""
    usable = block_m + road_m - 2 * PLACE_END_M
    return 0 if usable < 0 else int(usable // PLACE_GAP_M) + 1


def generate_city(
    seed: int,
    blocks_x: int = 6,
    blocks_y: int | None = None,
    *,
    block_m: float = 40.0,
    road_m: float = 8.0,
    depots: int = 2,
    dropoffs: int | None = None,
    chargers: int | None = None,
    missing_streets: float = 0.1,
) -> CityLayout:
    """A city of blocks_x by blocks_y blocks, identical for identical arguments; its road graph is always connected."""
    blocks_y = blocks_x if blocks_y is None else blocks_y
    dropoffs = max(4, blocks_x * blocks_y // 2) if dropoffs is None else dropoffs
    chargers = max(1, blocks_x * blocks_y // 12) if chargers is None else chargers
    if blocks_x < 1 or blocks_y < 1:
        raise ValueError(f"a city needs at least 1 x 1 blocks, got {blocks_x} x {blocks_y}")
    if block_m <= 2 * SIDEWALK_M:
        raise ValueError(f"block_m must exceed two sidewalks ({2 * SIDEWALK_M} m), got {block_m}")
    if road_m <= 0:
        raise ValueError(f"road_m must be positive, got {road_m}")
    if min(depots, dropoffs, chargers) < 0:
        raise ValueError(f"place counts must not be negative: {depots=} {dropoffs=} {chargers=}")
    if not 0.0 <= missing_streets < 1.0:
        raise ValueError(f"missing_streets is a fraction in [0, 1), got {missing_streets}")

    rng = np.random.default_rng(seed)
    pitch = block_m + road_m
    grid_ij = [(i, j) for i in range(blocks_x + 1) for j in range(blocks_y + 1)]
    nodes = {f"n{i}_{j}": (float(i * pitch), float(j * pitch)) for i, j in grid_ij}
    grid = nx.Graph()
    grid.add_nodes_from(nodes)
    for i, j in grid_ij:
        if i < blocks_x:
            grid.add_edge(f"n{i}_{j}", f"n{i + 1}_{j}")
        if j < blocks_y:
            grid.add_edge(f"n{i}_{j}", f"n{i}_{j + 1}")

    wanted = depots + dropoffs + chargers
    per_street = places_per_street(block_m, road_m)
    if wanted > per_street * grid.number_of_edges():
        raise ValueError(
            f"{wanted} places do not fit on {grid.number_of_edges()} streets holding {per_street} each; "
            "use fewer places or a bigger city"
        )
    _drop_streets(rng, grid, round(missing_streets * grid.number_of_edges()), wanted, per_street)
    streets = dict(sorted((street_id(u, v), (min(u, v), max(u, v))) for u, v in grid.edges))
    inset = road_m / 2 + SIDEWALK_M
    buildings = tuple(
        box
        for i in range(blocks_x)
        for j in range(blocks_y)
        for box in _block_buildings(rng, i * pitch + inset, j * pitch + inset, block_m - 2 * SIDEWALK_M)
    )
    kinds = ["depot"] * depots + ["charger"] * chargers + ["dropoff"] * dropoffs
    places = _place_places(rng, kinds, nodes, streets, pitch)
    return CityLayout(
        seed=seed,
        blocks_x=blocks_x,
        blocks_y=blocks_y,
        block_m=float(block_m),
        road_m=float(road_m),
        nodes=nodes,
        streets=streets,
        buildings=buildings,
        places=places,
    )


def _drop_streets(rng: np.random.Generator, grid: nx.Graph, count: int, wanted: int, per_street: int) -> None:
    """Remove up to ``count`` random streets, each only if the grid stays connected and still holds the places."""
    candidates = sorted(street_id(u, v) for u, v in grid.edges)
    dropped = 0
    for index in rng.permutation(len(candidates)):
        if dropped == count or per_street * (grid.number_of_edges() - 1) < wanted:
            return
        u, v = candidates[index].split("|")
        grid.remove_edge(u, v)
        if nx.has_path(grid, u, v):
            dropped += 1
        else:
            grid.add_edge(u, v)


def _block_buildings(rng: np.random.Generator, x0: float, y0: float, size: float) -> list[Box]:
    """1-4 buildings filling the square [x0, x0+size] x [y0, y0+size] with alleys between them."""
    boxes = []
    for cx0, cy0, cx1, cy1 in _cells(rng, (x0, y0, x0 + size, y0 + size), int(rng.integers(1, 5))):
        left, right = rng.uniform(0.05, 0.2, size=2) * (cx1 - cx0)
        bottom, top = rng.uniform(0.05, 0.2, size=2) * (cy1 - cy0)
        bx0, bx1, by0, by1 = cx0 + left, cx1 - right, cy0 + bottom, cy1 - top
        boxes.append(
            Box(
                x=float((bx0 + bx1) / 2),
                y=float((by0 + by1) / 2),
                half_x=float((bx1 - bx0) / 2),
                half_y=float((by1 - by0) / 2),
                height=float(rng.uniform(_MIN_HEIGHT_M, _MAX_HEIGHT_M)),
            )
        )
    return boxes


def _cells(rng: np.random.Generator, rect: _Rect, count: int) -> list[_Rect]:
    """``rect`` cut into ``count`` disjoint rectangles by repeated random halving."""
    if count == 1:
        return [rect]
    x0, y0, x1, y1 = rect
    f = float(rng.uniform(0.35, 0.65))
    if rng.integers(2):
        xm = x0 + f * (x1 - x0)
        first, second = (x0, y0, xm, y1), (xm, y0, x1, y1)
    else:
        ym = y0 + f * (y1 - y0)
        first, second = (x0, y0, x1, ym), (x0, ym, x1, y1)
    return _cells(rng, first, count // 2) + _cells(rng, second, count - count // 2)


def _place_places(
    rng: np.random.Generator,
    kinds: list[str],
    nodes: dict[str, tuple[float, float]],
    streets: dict[str, tuple[str, str]],
    pitch: float,
) -> tuple[Place, ...]:
    """Spread ``kinds`` over the streets, one per street before any street gets a second, spaced PLACE_GAP_M apart."""
    ids = list(streets)
    order = [ids[k] for k in rng.permutation(len(ids))]
    assigned: dict[str, list[str]] = {}
    for k, kind in enumerate(kinds):
        assigned.setdefault(order[k % len(order)], []).append(kind)
    counters = dict.fromkeys(PLACE_KINDS, 0)
    numbered: list[tuple[int, int, Place]] = []
    usable = pitch - 2 * PLACE_END_M
    for street, street_kinds in assigned.items():
        a, b = streets[street]
        (ax, ay), (bx, by) = nodes[a], nodes[b]
        ux, uy = (bx - ax) / pitch, (by - ay) / pitch
        slack = usable - (len(street_kinds) - 1) * PLACE_GAP_M
        offsets = np.sort(rng.uniform(0.0, slack, size=len(street_kinds)))
        for n, (kind, offset) in enumerate(zip(street_kinds, offsets)):
            s = PLACE_END_M + n * PLACE_GAP_M + float(offset)
            place = Place(id=f"{kind}-{counters[kind]}", kind=kind, x=ax + s * ux, y=ay + s * uy, street=street)
            numbered.append((PLACE_KINDS.index(kind), counters[kind], place))
            counters[kind] += 1
    return tuple(place for _, _, place in sorted(numbered, key=lambda item: item[:2]))
