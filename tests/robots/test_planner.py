"""A* routes on a hand-built road grid: shortest, around closures, from and to points off the nodes."""

import copy
import math
import random

import networkx as nx
import pytest

from robots.planner import NoRoute, RoadPlanner, Route


def grid(n: int = 3, pitch: float = 10.0) -> nx.Graph:
    """An n x n grid of junctions ``n{i}_{j}`` at (i * pitch, j * pitch); row j is street h{j}, column i is v{i}."""
    graph = nx.Graph()
    for i in range(n):
        for j in range(n):
            graph.add_node(f"n{i}_{j}", pos=(i * pitch, j * pitch), kind="junction")
    for i in range(n):
        for j in range(n):
            if i + 1 < n:
                graph.add_edge(f"n{i}_{j}", f"n{i + 1}_{j}", length=pitch, street=f"h{j}")
            if j + 1 < n:
                graph.add_edge(f"n{i}_{j}", f"n{i}_{j + 1}", length=pitch, street=f"v{i}")
    return graph


def with_spur() -> nx.Graph:
    """The 3 x 3 grid plus a depot at the end of a dead-end street "spur" off n2_2."""
    graph = grid()
    graph.add_node("depot", pos=(30.0, 20.0), kind="depot")
    graph.add_edge("n2_2", "depot", length=10.0, street="spur")
    return graph


def streets_of(graph: nx.Graph, route: Route) -> set[str]:
    return {graph.edges[u, v]["street"] for u, v in zip(route.nodes, route.nodes[1:])}


def test_shortest_route_between_nodes() -> None:
    route = RoadPlanner(grid()).plan("n0_0", "n2_0")
    assert route.nodes == ("n0_0", "n1_0", "n2_0")
    assert route.waypoints == ((0.0, 0.0), (10.0, 0.0), (20.0, 0.0))
    assert route.length_m == 20.0


def test_blocked_street_forces_a_detour() -> None:
    graph = grid()
    route = RoadPlanner(graph).plan("n0_0", "n2_0", blocked_streets={"h0"})
    assert "h0" not in streets_of(graph, route)
    assert route.nodes[0] == "n0_0" and route.nodes[-1] == "n2_0"
    assert route.length_m == 40.0


def test_cost_none_makes_an_edge_impassable_and_cost_steers_the_route() -> None:
    graph = grid()
    planner = RoadPlanner(graph)

    def closed_edge(u: str, v: str, data: dict) -> float | None:
        return None if {u, v} == {"n1_0", "n2_0"} else data["length"]

    route = planner.plan("n0_0", "n2_0", cost=closed_edge)
    assert ("n1_0", "n2_0") not in set(zip(route.nodes, route.nodes[1:]))
    assert route.length_m == 40.0  # n0_0 n1_0 n1_1 n2_1 n2_0

    def busy_row(u: str, v: str, data: dict) -> float:
        return data["length"] * (5.0 if data["street"] == "h0" else 1.0)

    assert "h0" not in streets_of(graph, planner.plan("n0_0", "n2_0", cost=busy_row))


def test_no_route_when_the_only_street_is_blocked() -> None:
    planner = RoadPlanner(with_spur())
    with pytest.raises(NoRoute) as caught:
        planner.plan("n0_0", "depot", blocked_streets={"spur"})
    assert str(caught.value) == "no route from n0_0 to depot: all streets around depot are closed"
    assert caught.value.code == "no_route"
    with pytest.raises(NoRoute, match=r"to \(25\.00, 20\.00\): the goal lies on closed street spur"):
        planner.plan("n0_0", (25.0, 20.0), blocked_streets={"spur"})
    with pytest.raises(NoRoute, match="cut every way"):
        planner.plan("n0_0", "n2_2", blocked_streets={"h1", "v0", "v1", "v2"})  # only rows h0 and h2 stay open
    with pytest.raises(NoRoute, match="no node 'nowhere'"):
        planner.plan("n0_0", "nowhere")


def test_off_node_start_and_goal_are_the_ends_of_the_route() -> None:
    start, goal = (4.0, 0.5), (20.0, 16.0)  # beside street h0, and on v2 between n2_1 and n2_2
    route = RoadPlanner(grid()).plan(start, goal)
    assert route.waypoints[0] == start and route.waypoints[-1] == goal
    assert route.nodes[0] == "n1_0" and route.nodes[-1] == "n2_1"  # the start heads on, not back to n0_0
    assert route.length_m == pytest.approx(math.hypot(6.0, 0.5) + 20.0 + 6.0)
    assert route.length_m == pytest.approx(sum(math.dist(p, q) for p, q in zip(route.waypoints, route.waypoints[1:])))


def test_start_and_goal_on_the_same_edge_drive_straight_there() -> None:
    planner = RoadPlanner(grid())
    for start, goal in (((2.0, 0.0), (8.0, 0.0)), ((8.0, 0.0), (2.0, 0.0))):
        route = planner.plan(start, goal)
        assert route == Route(nodes=(), waypoints=(start, goal), length_m=6.0)


def test_a_robot_on_a_closed_street_turns_back_when_its_heading_is_given() -> None:
    planner = RoadPlanner(grid())
    here = (5.0, 0.0)  # on h0, between n0_0 and n1_0
    onwards = planner.plan(here, "n2_0", blocked_streets={"h0"})
    assert onwards.nodes[0] == "n1_0" and onwards.length_m == 35.0  # no heading: it may leave either way
    facing_east = planner.plan(here, "n2_0", blocked_streets={"h0"}, heading=0.0)
    assert facing_east.nodes[:2] == ("n0_0", "n0_1") and facing_east.length_m == 45.0
    facing_west = planner.plan(here, "n2_0", blocked_streets={"h0"}, heading=math.pi)
    assert facing_west.nodes[0] == "n1_0"
    with pytest.raises(NoRoute):  # the goal is ahead on the closed street: not through what closed it
        planner.plan(here, (8.0, 0.0), blocked_streets={"h0"}, heading=0.0)
    assert planner.plan(here, (2.0, 0.0), blocked_streets={"h0"}, heading=0.0).length_m == 3.0


def test_planning_leaves_the_callers_graph_untouched() -> None:
    graph = with_spur()
    nodes, edges = copy.deepcopy(dict(graph.nodes(data=True))), copy.deepcopy(list(graph.edges(data=True)))
    planner = RoadPlanner(graph)
    planner.plan((4.0, 0.5), (20.0, 16.0))
    planner.plan((2.0, 0.0), (8.0, 0.0), blocked_streets={"h0"})
    with pytest.raises(NoRoute):
        planner.plan((4.0, 0.5), "depot", blocked_streets={"spur"})
    assert dict(graph.nodes(data=True)) == nodes
    assert list(graph.edges(data=True)) == edges
    assert planner.graph is graph
    assert planner.plan((4.0, 0.5), (20.0, 16.0)).length_m == pytest.approx(math.hypot(6.0, 0.5) + 26.0)


def test_nearest_node_and_edge_match_a_brute_force_search() -> None:
    graph = grid(5)
    planner = RoadPlanner(graph)
    assert planner.nearest_node(9.0, 1.0) == "n1_0"
    assert set(planner.nearest_edge(5.0, 0.4)) == {"n0_0", "n1_0"}
    assert set(planner.nearest_edge(10.3, 6.0)) == {"n1_0", "n1_1"}
    assert planner.nearest_node(500.0, 480.0) == "n4_4"
    pos = nx.get_node_attributes(graph, "pos")

    def to_segment(x: float, y: float, u: str, v: str) -> float:
        (ax, ay), (bx, by) = pos[u], pos[v]
        t = max(0.0, min(1.0, ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)))
        return math.hypot(ax + t * (bx - ax) - x, ay + t * (by - ay) - y)

    rng = random.Random(7)
    for _ in range(300):
        x, y = rng.uniform(-30.0, 70.0), rng.uniform(-30.0, 70.0)
        u, v = planner.nearest_edge(x, y)
        assert to_segment(x, y, u, v) == pytest.approx(min(to_segment(x, y, a, b) for a, b in graph.edges()))
        node = planner.nearest_node(x, y)
        assert math.dist((x, y), pos[node]) == pytest.approx(min(math.dist((x, y), p) for p in pos.values()))


def test_astar_finds_the_same_cost_as_dijkstra_on_an_irregular_grid() -> None:
    graph = grid(10)
    rng = random.Random(3)
    for _, _, data in graph.edges(data=True):
        data["length"] *= rng.uniform(1.0, 3.0)  # winding streets: never shorter than the straight line
    planner = RoadPlanner(graph)
    for _ in range(20):
        a, b = rng.sample(sorted(graph.nodes), 2)
        route = planner.plan(a, b)
        assert sum(graph.edges[u, v]["length"] for u, v in zip(route.nodes, route.nodes[1:])) == pytest.approx(
            nx.dijkstra_path_length(graph, a, b, weight="length"))


def test_a_graph_without_roads_is_refused() -> None:
    graph = nx.Graph()
    graph.add_node("lonely", pos=(0.0, 0.0), kind="depot")
    with pytest.raises(ValueError, match="at least one road"):
        RoadPlanner(graph)
