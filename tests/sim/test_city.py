import itertools
import math

import networkx as nx
import numpy as np
import pytest

from sim.city import PLACE_END_M, PLACE_GAP_M, SIDEWALK_M, CityLayout, generate_city


@pytest.fixture(scope="module")
def city() -> CityLayout:
    return generate_city(7)


def _centreline(layout: CityLayout, street: str, step: float = 0.25) -> list[tuple[float, float]]:
    a, b = layout.streets[street]
    (ax, ay), (bx, by) = layout.nodes[a], layout.nodes[b]
    n = int(math.hypot(bx - ax, by - ay) / step)
    return [(ax + k / n * (bx - ax), ay + k / n * (by - ay)) for k in range(n + 1)]


def test_same_seed_same_city_other_seed_other_city() -> None:
    assert generate_city(3, 4, 5) == generate_city(3, 4, 5)
    assert generate_city(3, 4, 5) != generate_city(4, 4, 5)
    assert generate_city(3).buildings != generate_city(4).buildings


def test_grid_geometry_and_ids(city: CityLayout) -> None:
    pitch = city.block_m + city.road_m
    assert len(city.nodes) == 7 * 7
    assert city.nodes["n3_2"] == (3 * pitch, 2 * pitch)
    for street, (a, b) in city.streets.items():
        assert street == f"{a}|{b}" and a < b
        assert math.dist(city.nodes[a], city.nodes[b]) == pytest.approx(pitch)


@pytest.mark.parametrize("seed", range(5))
def test_missing_streets_keep_the_road_graph_connected(seed: int) -> None:
    layout = generate_city(seed, 5, 4, missing_streets=0.6, dropoffs=4)
    full = 5 * 5 + 6 * 4
    assert len(layout.streets) < full
    assert nx.is_connected(layout.road_graph())


def test_road_graph_nodes_and_edges(city: CityLayout) -> None:
    graph = city.road_graph()
    assert set(graph.nodes) == set(city.nodes) | {p.id for p in city.places}
    for node_id, pos in city.nodes.items():
        assert graph.nodes[node_id] == {"pos": pos, "kind": "junction"}
    for u, v, data in graph.edges(data=True):
        assert data["length"] == pytest.approx(math.dist(graph.nodes[u]["pos"], graph.nodes[v]["pos"]))
        assert data["street"] in city.streets
    pitch = city.block_m + city.road_m
    for street in city.streets:
        total = sum(d["length"] for _, _, d in graph.edges(data=True) if d["street"] == street)
        assert total == pytest.approx(pitch)


def test_road_graph_is_fresh_each_call(city: CityLayout) -> None:
    graph = city.road_graph()
    graph.remove_edges_from(list(graph.edges))
    assert city.road_graph().number_of_edges() > 0


def test_each_place_splits_its_street() -> None:
    layout = generate_city(2, 2, dropoffs=30)  # more places than streets: some streets hold several
    graph = layout.road_graph()
    assert len({p.street for p in layout.places}) < len(layout.places)
    for p in layout.places:
        assert graph.nodes[p.id] == {"pos": (p.x, p.y), "kind": p.kind}
        assert graph.degree(p.id) == 2
        assert all(d["street"] == p.street for _, _, d in graph.edges(p.id, data=True))
    for street, (a, b) in layout.streets.items():
        edges = [(u, v) for u, v, d in graph.edges(data=True) if d["street"] == street]
        path = nx.shortest_path(graph.edge_subgraph(edges), a, b)
        assert len(path) == len(edges) + 1  # the street is one chain from a to b
        assert set(path[1:-1]) == {p.id for p in layout.places if p.street == street}
        from_a = [math.dist(graph.nodes[n]["pos"], layout.nodes[a]) for n in path]
        assert from_a == sorted(from_a)


def test_places_lie_on_their_street_away_from_intersections(city: CityLayout) -> None:
    for p in city.places:
        a, b = city.streets[p.street]
        (ax, ay), (bx, by) = city.nodes[a], city.nodes[b]
        assert (p.x == ax == bx) or (p.y == ay == by)
        assert min(math.dist((p.x, p.y), (ax, ay)), math.dist((p.x, p.y), (bx, by))) >= PLACE_END_M - 1e-9
        assert math.dist((p.x, p.y), (ax, ay)) + math.dist((p.x, p.y), (bx, by)) == pytest.approx(
            city.block_m + city.road_m
        )


@pytest.mark.parametrize("dropoffs", [None, 60])
def test_places_are_spaced(dropoffs: int | None) -> None:
    layout = generate_city(9, 3, dropoffs=dropoffs)
    for p, q in itertools.combinations(layout.places, 2):
        assert math.dist((p.x, p.y), (q.x, q.y)) >= PLACE_GAP_M - 1e-9, (p, q)


def test_place_counts_ids_and_distinct_streets(city: CityLayout) -> None:
    assert [p.id for p in city.places_of("depot")] == ["depot-0", "depot-1"]
    assert len(city.places_of("dropoff")) == 18
    assert len(city.places_of("charger")) == 3
    assert len({p.street for p in city.places}) == len(city.places)
    assert city.place("dropoff-3").id == "dropoff-3"
    with pytest.raises(KeyError, match="dropoff-99"):
        city.place("dropoff-99")
    with pytest.raises(ValueError, match="kind"):
        city.places_of("shop")


def test_places_spread_over_the_city(city: CityLayout) -> None:
    xmin, ymin, xmax, ymax = city.bounds()
    xs, ys = [p.x for p in city.places], [p.y for p in city.places]
    assert max(xs) - min(xs) > (xmax - xmin) / 2 and max(ys) - min(ys) > (ymax - ymin) / 2


def test_buildings_stay_off_every_road_surface(city: CityLayout) -> None:
    points = [pt for street in city.streets for pt in _centreline(city, street)]
    for box in city.buildings:
        assert not any(box.contains(x, y, margin=city.road_m / 2 + SIDEWALK_M - 1e-9) for x, y in points), box


def test_buildings_stay_off_roads_when_streets_are_missing() -> None:
    layout = generate_city(4, 4, missing_streets=0.5, dropoffs=4)
    points = [pt for street in layout.streets for pt in _centreline(layout, street)]
    for box in layout.buildings:
        assert not any(box.contains(x, y, margin=layout.road_m / 2) for x, y in points), box


def test_buildings_per_block_heights_and_no_overlap(city: CityLayout) -> None:
    pitch = city.block_m + city.road_m
    per_block: dict[tuple[int, int], int] = {}
    for box in city.buildings:
        block = (int(box.x // pitch), int(box.y // pitch))
        per_block[block] = per_block.get(block, 0) + 1
        assert 6.0 <= box.height <= 40.0
    assert set(per_block) == {(i, j) for i in range(6) for j in range(6)}
    assert all(1 <= n <= 4 for n in per_block.values())
    assert min(per_block.values()) == 1 and max(per_block.values()) == 4
    for a, b in itertools.combinations(city.buildings, 2):
        assert abs(a.x - b.x) > a.half_x + b.half_x or abs(a.y - b.y) > a.half_y + b.half_y


def test_bounds_contain_everything(city: CityLayout) -> None:
    xmin, ymin, xmax, ymax = city.bounds()
    half = city.road_m / 2
    for x, y in city.nodes.values():
        assert xmin < x - half and x + half < xmax and ymin < y - half and y + half < ymax
    for b in city.buildings:
        assert xmin < b.x - b.half_x and b.x + b.half_x < xmax and ymin < b.y - b.half_y and b.y + b.half_y < ymax
    for p in city.places:
        assert xmin < p.x < xmax and ymin < p.y < ymax


@pytest.mark.parametrize(
    "kwargs",
    [
        {"blocks_x": 0},
        {"blocks_x": 3, "blocks_y": 0},
        {"block_m": 0.0},
        {"block_m": -5.0},
        {"road_m": 0.0},
        {"dropoffs": -1},
        {"missing_streets": 1.0},
        {"blocks_x": 1, "dropoffs": 100},
        {"block_m": 3.5, "road_m": 1.0},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_city(1, **kwargs)


def test_full_street_capacity_is_usable() -> None:
    layout = generate_city(1, 1, block_m=40.0, road_m=8.0, depots=0, chargers=0, dropoffs=36, missing_streets=0.5)
    assert len(layout.streets) == 4  # 4 streets x 9 places each: none could be dropped
    assert len(layout.places) == 36


@pytest.mark.parametrize("street", ["n2_3|n3_3", "n2_3|n2_4"])
def test_street_box_covers_the_street(street: str) -> None:
    city = generate_city(7, missing_streets=0.0)
    box = city.street_box(street)
    a, b = city.streets[street]
    (ax, ay), (bx, by) = city.nodes[a], city.nodes[b]
    scale = city.road_m / 2 / math.dist((ax, ay), (bx, by))
    across_x, across_y = (by - ay) * scale, (ax - bx) * scale  # from the centreline to the road edge
    for x, y in _centreline(city, street):
        if min(math.dist((x, y), city.nodes[n]) for n in (a, b)) >= city.road_m / 2:
            assert box.contains(x, y)
            assert box.contains(x + across_x, y + across_y) and box.contains(x - across_x, y - across_y)
            assert not box.contains(x + 1.01 * across_x, y + 1.01 * across_y)
    for node in (a, b):
        assert not box.contains(*city.nodes[node])
    short = city.street_box(street, fraction=0.25)
    assert short.x == box.x and short.y == box.y
    assert short.half_x * short.half_y < box.half_x * box.half_y
    with pytest.raises(ValueError):
        city.street_box(street, fraction=0.0)
    with pytest.raises(KeyError):
        city.street_box("n0_0|n9_9")


def test_random_road_point_lies_on_its_street(city: CityLayout) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        x, y, street = city.random_road_point(rng)
        a, b = city.streets[street]
        (ax, ay), (bx, by) = city.nodes[a], city.nodes[b]
        assert math.dist((x, y), (ax, ay)) + math.dist((x, y), (bx, by)) == pytest.approx(math.dist((ax, ay), (bx, by)))
        seen.add(street)
    assert len(seen) > 20
    assert city.random_road_point(np.random.default_rng(5)) == city.random_road_point(np.random.default_rng(5))
