"""Edge states from believed cells: barriers block, vans narrow, junctions and unknown ground do not count."""

import time

import networkx as nx
import numpy as np
import pytest

from bus.schemas import SchemaError, validate_body
from spatial.grid import OCCUPIED, OccupancyGrid
from spatial.roads import (BLOCKED, FREE, SLOW, SUSPECT, EdgeState, RoadStates, RouteCosts, graph_message,
                           vantage_points)

ALICE, BOB, CAROL = "did:key:zAlice", "did:key:zBob", "did:key:zCarol"
EAST = ("depot-0", "n1_0")  # depot-0 (20, 0) to junction n1_0 (48, 0); its road spans x in [20, 44], y in [-4, 4]
WEST = ("depot-0", "n0_0")  # junction n0_0 (0, 0) to depot-0; road x in [4, 20]
NORTH = ("n1_0", "n1_1")  # junction n1_0 (48, 0) to junction n1_1 (48, 48); road x in [44, 52], y in [4, 44]
STUB = ("charger-0", "n0_0")  # a place 4 m from its junction: all of it inside the junction square


class BoxBelief:
    """Believed OCCUPIED inside half-open boxes [x0, x1) x [y0, y1), each said by one DID; ``rest`` elsewhere."""

    def __init__(self, *boxes: tuple[float, float, float, float, str], rest: int = 0) -> None:
        self.boxes, self.rest = boxes, rest
        self.queried: list[tuple[np.ndarray, np.ndarray]] = []

    def _inside(self, box: tuple[float, float, float, float, str], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1, _ = box
        return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        self.queried.append((xs, ys))
        states = np.full(xs.shape, self.rest, dtype=np.int8)
        for box in self.boxes:
            states[self._inside(box, xs, ys)] = OCCUPIED
        return states

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        said: dict[str, float] = {}
        for box in self.boxes:
            count = int(np.count_nonzero(self._inside(box, xs, ys)))
            if count:
                said[box[4]] = said.get(box[4], 0.0) + count
        return said


def street_graph() -> nx.Graph:
    graph = nx.Graph()
    for node, pos in {"n0_0": (0.0, 0.0), "n1_0": (48.0, 0.0), "n1_1": (48.0, 48.0)}.items():
        graph.add_node(node, pos=pos, kind="junction")
    graph.add_node("depot-0", pos=(20.0, 0.0), kind="depot")
    graph.add_node("charger-0", pos=(0.0, 4.0), kind="charger")
    graph.add_edge("n0_0", "depot-0", length=20.0, street="n0_0|n1_0")
    graph.add_edge("depot-0", "n1_0", length=28.0, street="n0_0|n1_0")
    graph.add_edge("n1_0", "n1_1", length=48.0, street="n1_0|n1_1")
    graph.add_edge("n0_0", "charger-0", length=4.0, street="n0_0|n0_1")
    return graph


@pytest.fixture
def roads() -> RoadStates:
    return RoadStates(street_graph())


def test_unknown_everywhere_is_free(roads: RoadStates) -> None:
    report = roads.evaluate(BoxBelief())
    assert report.version == 0
    assert report.states == {edge: EdgeState(FREE, 8.0, {}) for edge in (EAST, WEST, NORTH, STUB)}


def test_sample_points_cover_each_road_outside_the_junction_squares(roads: RoadStates) -> None:
    belief = BoxBelief()
    roads.evaluate(belief)
    (xs, ys), = belief.queried
    assert xs.shape == ys.shape == (roads.xs.size,)
    on_street = ((xs > 4) & (xs < 44) & (np.abs(ys) < 4)) | ((ys > 4) & (ys < 44) & (np.abs(xs - 48) < 4))
    assert on_street.all()
    sections = {(round(x, 6), round(y, 6)) for x, y in zip(xs, ys)}
    assert len(sections) == xs.size == (16 / 0.2 + 24 / 0.2 + 40 / 0.2) * 40
    assert np.isclose(np.unique(np.round(ys[xs < 44], 6)), np.arange(-3.9, 4.0, 0.2)).all()
    assert xs[xs < 44].min() == pytest.approx(4.1) and xs[xs < 44].max() == pytest.approx(43.9)


def test_a_barrier_across_the_road_blocks_the_edge_and_names_who_saw_it(roads: RoadStates) -> None:
    report = roads.evaluate(BoxBelief((30.0, -5.0, 30.6, 5.0, ALICE), (35.0, 2.0, 36.0, 3.0, BOB)))
    assert report.states[EAST] == EdgeState(BLOCKED, 0.0, {ALICE: 40.0}, at=(29.9, 0.0))
    assert {edge: report.states[edge].state for edge in (WEST, NORTH, STUB)} == dict.fromkeys((WEST, NORTH, STUB), FREE)


@pytest.mark.parametrize("x", np.arange(24.0, 25.0, 0.05))
def test_a_barrier_one_cell_thick_never_slips_between_cross_sections(roads: RoadStates, x: float) -> None:
    assert roads.evaluate(BoxBelief((x, -4.0, x + 0.2, 4.0, ALICE))).states[EAST].state == BLOCKED


def test_a_thin_barrier_at_a_slant_across_two_cross_sections_still_blocks(roads: RoadStates) -> None:
    slant = BoxBelief((30.0, -4.0, 30.2, 0.1, ALICE), (30.2, -0.1, 30.4, 4.0, ALICE), rest=-1)
    assert roads.evaluate(slant).states[EAST].state == BLOCKED
    apart = BoxBelief((30.0, -4.0, 30.2, 0.1, ALICE), (31.0, -0.1, 31.2, 4.0, ALICE), rest=-1)  # a chicane
    assert roads.evaluate(apart).states[EAST].state == SLOW


def test_coarser_cross_sections_can_miss_a_thin_barrier() -> None:
    thin = BoxBelief((24.0, -4.0, 24.2, 4.0, ALICE))
    assert RoadStates(street_graph(), step_m=0.5).evaluate(thin).states[EAST].state == FREE


def test_a_parked_van_narrows_the_road(roads: RoadStates) -> None:
    leaving = {5.0: FREE, 3.0: SLOW, 2.0: SLOW, 1.0: SLOW}
    for lane, state in leaving.items():
        van = (44.0, 20.0, 52.0 - lane, 26.0, BOB)
        edge = RoadStates(street_graph()).evaluate(BoxBelief(van)).states[NORTH]
        assert (edge.state, edge.free_width_m) == (state, lane)
        assert edge.contributors == ({} if state == FREE else {BOB: (8.0 - lane) / 0.2})


def test_how_narrow_counts_as_slow_is_a_fraction_of_the_road() -> None:
    van = BoxBelief((44.0, 20.0, 47.0, 26.0, BOB))  # leaves a 5 m lane
    assert RoadStates(street_graph(), slow_fraction=0.7).evaluate(van).states[NORTH].state == SLOW


def test_a_gap_narrower_than_the_robot_blocks_and_gaps_do_not_add_up(roads: RoadStates) -> None:
    one_metre = BoxBelief((44.0, 20.0, 47.95, 21.0, ALICE), (49.05, 20.0, 52.0, 21.0, BOB), rest=-1)  # seen free
    assert roads.evaluate(one_metre).states[NORTH] == EdgeState(SLOW, 1.0, {ALICE: 20.0, BOB: 15.0}, at=(48.0, 19.9))
    half_metre = BoxBelief((44.0, 20.0, 48.25, 21.0, ALICE), (48.75, 20.0, 52.0, 21.0, BOB), rest=-1)
    assert roads.evaluate(half_metre).states[NORTH] == EdgeState(BLOCKED, 0.6, {ALICE: 21.0, BOB: 16.0}, at=(48.0, 19.9))
    two_gaps = BoxBelief((44.0, 20.0, 46.15, 21.0, ALICE), (46.75, 20.0, 48.25, 21.0, ALICE),
                         (48.75, 20.0, 52.0, 21.0, BOB), rest=-1)
    assert roads.evaluate(two_gaps).states[NORTH].state == BLOCKED


def test_an_unseen_gap_between_walls_is_closed_unless_wider_than_unseen_gap_m(roads: RoadStates) -> None:
    """Sparse lidar returns leave unknown holes in a surface: one no wider than 1.2 m is no way through."""
    one_metre = BoxBelief((44.0, 20.0, 47.95, 21.0, ALICE), (49.05, 20.0, 52.0, 21.0, BOB))  # the gap: unknown
    assert roads.evaluate(one_metre).states[NORTH].state == BLOCKED
    two_metres = BoxBelief((44.0, 20.0, 47.0, 21.0, ALICE), (49.0, 20.0, 52.0, 21.0, BOB))
    wide = RoadStates(street_graph()).evaluate(two_metres).states[NORTH]  # a fresh map: nothing latched
    assert (wide.state, wide.free_width_m) == (SLOW, 2.0)
    strict = RoadStates(street_graph(), unseen_gap_m=0.0).evaluate(one_metre).states[NORTH]
    assert (strict.state, strict.free_width_m) == (SLOW, 1.0)
    kerb = BoxBelief((44.0, 20.0, 45.0, 21.0, ALICE))  # a wall with unknown ground beside it, but nothing beyond
    assert RoadStates(street_graph()).evaluate(kerb).states[NORTH].free_width_m == 7.0


def test_the_narrowest_cross_section_decides_and_provides_the_contributors(roads: RoadStates) -> None:
    belief = BoxBelief((20.0, -4.0, 21.0, 3.0, ALICE), (30.0, -4.0, 31.0, 1.0, BOB))
    assert roads.evaluate(belief).states[EAST] == EdgeState(SLOW, 1.0, {ALICE: 70.0}, at=(20.1, 0.0))  # two cross-sections


def test_a_blockage_only_the_uncorroborated_view_sees_is_suspect_with_its_witness(roads: RoadStates) -> None:
    believed = BoxBelief((44.0, 20.0, 47.0, 26.0, BOB))  # the corroborated map: a van, the road is slow
    one_says = BoxBelief((30.0, -5.0, 30.6, 5.0, ALICE), (44.0, 20.0, 52.0, 21.0, CAROL))
    report = roads.evaluate(believed, suspicion=one_says)
    assert report.states[EAST] == EdgeState(SUSPECT, 0.0, {ALICE: 40.0}, at=(29.9, 0.0))
    assert report.states[NORTH] == EdgeState(SUSPECT, 0.0, {CAROL: 40.0}, at=(48.0, 19.9))  # slow, yet suspect
    assert report.states[WEST].state == FREE
    both = roads.evaluate(one_says, suspicion=one_says)
    assert both.states[EAST].state == both.states[NORTH].state == BLOCKED
    assert {"u": "depot-0", "v": "n1_0", "state": SUSPECT, "at": {"x": 29.9, "y": 0.0}} in graph_message(report, 1)["edges"]
    validate_body("map.graph", graph_message(report, 1))


def test_k_witnesses_who_each_block_a_road_on_their_own_evidence_block_it(roads: RoadStates) -> None:
    """Two robots saw the two faces of one roadworks: no cell is corroborated, the closure is."""
    south = BoxBelief((30.0, -4.0, 30.2, 4.0, ALICE))
    north = BoxBelief((33.0, -4.0, 33.2, 4.0, BOB))
    either = BoxBelief((30.0, -4.0, 30.2, 4.0, ALICE), (33.0, -4.0, 33.2, 4.0, BOB))
    blocked = roads.evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: south, BOB: north}, k=2).states[EAST]
    assert blocked.state == BLOCKED and set(blocked.contributors) == {ALICE, BOB}
    alone = RoadStates(street_graph()).evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: south}, k=2).states[EAST]
    assert alone.state == SUSPECT


def test_an_obstacle_in_a_junction_square_blocks_no_edge(roads: RoadStates) -> None:
    in_square = BoxBelief((44.0, -4.0, 52.0, 4.0, ALICE), (-4.0, -4.0, 4.0, 4.0, ALICE))
    assert all(edge.state == FREE for edge in roads.evaluate(in_square).states.values())
    just_outside = BoxBelief((43.7, -4.0, 44.0, 4.0, ALICE))
    assert roads.evaluate(just_outside).states[EAST].state == BLOCKED


def test_changed_since_and_the_version_follow_state_changes_only(roads: RoadStates) -> None:
    first = roads.evaluate(BoxBelief())
    assert first.changed_since(None) == [STUB, WEST, EAST, NORTH]  # sorted by (u, v)
    blocked = roads.evaluate(BoxBelief((30.0, -5.0, 31.0, 5.0, ALICE)))
    assert (blocked.version, blocked.changed_since(first)) == (1, [EAST])
    moved = roads.evaluate(BoxBelief((32.0, -5.0, 33.0, 5.0, BOB)))
    assert (moved.version, moved.changed_since(blocked)) == (1, [])
    cleared = roads.evaluate(BoxBelief(rest=-1))
    assert (cleared.version, cleared.changed_since(moved), cleared.changed_since(first)) == (2, [EAST], [])


def test_graph_message_lists_every_edge_in_order_and_fits_the_protocol(roads: RoadStates) -> None:
    report = roads.evaluate(BoxBelief((30.0, -5.0, 31.0, 5.0, ALICE), (44.0, 20.0, 50.0, 21.0, BOB)))
    body = graph_message(report, 7)
    validate_body("map.graph", body)
    assert body == {"version": 7, "edges": [
        {"u": "charger-0", "v": "n0_0", "state": "free"},
        {"u": "depot-0", "v": "n0_0", "state": "free"},
        {"u": "depot-0", "v": "n1_0", "state": "blocked", "at": {"x": 29.9, "y": 0.0}},
        {"u": "n1_0", "v": "n1_1", "state": "slow", "at": {"x": 48.0, "y": 19.9}},
    ]}
    with pytest.raises(SchemaError):
        validate_body("map.graph", graph_message(report, -1))


def test_a_belief_answering_the_wrong_shape_is_refused(roads: RoadStates) -> None:
    class Short(BoxBelief):
        def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            return super().state_at(xs, ys)[:-1]

    with pytest.raises(ValueError, match="state_at returned shape"):
        roads.evaluate(Short())
    with pytest.raises(ValueError):
        RoadStates(street_graph(), robot_width_m=9.0)


def test_a_closure_stays_blocked_while_its_evidence_fades_to_unknown(roads: RoadStates) -> None:
    """The fleet avoids a closed road, so nobody refreshes it: unknown is not open."""
    barrier = BoxBelief((30.0, -5.0, 30.6, 5.0, ALICE))
    closed = roads.evaluate(barrier)
    faded = roads.evaluate(BoxBelief())
    assert faded.states[EAST] == closed.states[EAST] == EdgeState(BLOCKED, 0.0, {ALICE: 40.0}, at=(29.9, 0.0))
    assert faded.version == closed.version and roads.latched() == {EAST: closed.states[EAST]}
    elsewhere = BoxBelief((44.0, 20.0, 52.0, 21.0, BOB))  # another road closes; the first is still held
    assert {key for key, edge in roads.evaluate(elsewhere).states.items() if edge.state == BLOCKED} == {EAST, NORTH}


def test_a_latched_closure_opens_only_when_its_cross_section_is_seen_free_robot_wide(roads: RoadStates) -> None:
    roads.evaluate(BoxBelief((30.0, -5.0, 30.6, 5.0, ALICE)))
    narrow = _FreeBox(29.0, -0.3, 31.0, 0.3)  # seen free through it, but only 0.6 m wide: no robot passes
    assert roads.evaluate(narrow).states[EAST].state == BLOCKED
    beside = _FreeBox(31.0, -4.0, 40.0, 4.0)  # the road beyond it seen free, the cross-section itself unseen
    assert roads.evaluate(beside).states[EAST].state == BLOCKED
    opened = _FreeBox(29.0, -0.5, 31.0, 0.5)  # a robot-wide lane through it seen free
    assert roads.evaluate(opened).states[EAST] == EdgeState(FREE, 8.0, {})
    assert roads.latched() == {} and roads.evaluate(BoxBelief()).states[EAST].state == FREE  # no longer held


def test_a_closure_latched_from_a_published_point_holds_until_seen_open_there(roads: RoadStates) -> None:
    """What a restarted map does with the closures its last road graph published: nobody is named for them."""
    roads.latch(("n1_0", "depot-0"), (29.9, 0.0))
    assert roads.latched() == {EAST: EdgeState(BLOCKED, 0.0, {}, at=(29.9, 0.0))}
    assert roads.evaluate(BoxBelief()).states[EAST].state == BLOCKED  # an empty map is no sight of it open
    assert roads.evaluate(_FreeBox(35.0, -0.5, 40.0, 0.5)).states[EAST].state == BLOCKED  # open elsewhere only
    assert roads.evaluate(_FreeBox(29.0, -0.5, 31.0, 0.5)).states[EAST].state == FREE and roads.latched() == {}
    with pytest.raises(ValueError, match="another city"):
        roads.latch(("n0_0", "n1_1"), (0.0, 0.0))


def test_a_closure_k_witnesses_confirm_latches_but_a_suspect_never_does(roads: RoadStates) -> None:
    south, north = BoxBelief((30.0, -4.0, 30.2, 4.0, ALICE)), BoxBelief((33.0, -4.0, 33.2, 4.0, BOB))
    either = BoxBelief((30.0, -4.0, 30.2, 4.0, ALICE), (33.0, -4.0, 33.2, 4.0, BOB))
    one_says = BoxBelief((44.0, 20.0, 52.0, 21.0, CAROL))
    report = roads.evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: south, BOB: north} if key == EAST else {}, k=2)
    assert report.states[EAST].state == BLOCKED and roads.evaluate(BoxBelief()).states[EAST].state == BLOCKED
    suspected = RoadStates(street_graph())
    assert suspected.evaluate(BoxBelief(), one_says).states[NORTH].state == SUSPECT
    assert suspected.latched() == {} and suspected.evaluate(BoxBelief()).states[NORTH].state == FREE


def test_two_witnesses_minutes_apart_close_a_road_unless_it_was_seen_open_between(roads: RoadStates) -> None:
    """The first witness's evidence faded before the second came: fading is not seeing the road open."""
    either = BoxBelief((30.0, -4.0, 30.2, 4.0, ALICE))
    first = roads.evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: either} if key == EAST else {}, k=2)
    assert first.states[EAST].state == SUSPECT
    assert roads.evaluate(BoxBelief()).states[EAST].state == FREE  # faded: planned through, yet remembered
    later = BoxBelief((30.0, -4.0, 30.2, 4.0, BOB))
    faded = BoxBelief()  # ALICE's own evidence no longer blocks anything
    second = roads.evaluate(BoxBelief(), later, witnesses=lambda key: {ALICE: faded, BOB: later} if key == EAST else {})
    assert second.states[EAST].state == BLOCKED and set(second.states[EAST].contributors) == {ALICE, BOB}
    distrusted = RoadStates(street_graph())  # ALICE saw it closed, then lost the weight a witness needs
    distrusted.evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: either} if key == EAST else {})
    assert distrusted.evaluate(BoxBelief(), later, witnesses=lambda key: {BOB: later}).states[EAST].state == SUSPECT
    fresh = RoadStates(street_graph())
    fresh.evaluate(BoxBelief(), either, witnesses=lambda key: {ALICE: either} if key == EAST else {})
    fresh.evaluate(_FreeBox(29.0, -1.0, 31.0, 1.0))  # seen open between the two sightings: ALICE's is forgotten
    again = fresh.evaluate(BoxBelief(), later, witnesses=lambda key: {ALICE: faded, BOB: later} if key == EAST else {})
    assert again.states[EAST].state == SUSPECT


class _FreeBox(BoxBelief):
    """Believed FREE inside one box [x0, x1) x [y0, y1), UNKNOWN elsewhere: what robots saw open."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        super().__init__()
        self.free = (x0, y0, x1, y1)

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.free
        return np.where((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1), -1, 0).astype(np.int8)


class GridBelief:
    """The occupancy grid's corroborated belief at one time, every contributor equally trusted (as the map reads it)."""

    def __init__(self, grid: OccupancyGrid, t_s: float) -> None:
        self.grid, self.t_s = grid, t_s

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.grid.state_at(xs, ys, {ALICE: 0.9, BOB: 0.9, CAROL: 0.9}, self.t_s)

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        return self.grid.contributors_at(xs, ys, self.t_s)


def _look(grid: OccupancyGrid, did: str, x: float, t_s: float, wall_x: float | None) -> None:
    """``did`` at (x, 0) facing +x scans the road: a wall across it at ``wall_x``, or nothing (None)."""
    angles = np.linspace(-1.2, 1.2, 121)
    ranges = np.full(len(angles), np.inf)
    if wall_x is not None:
        ranges = np.where(np.abs((wall_x - x) * np.tan(angles)) <= 4.0, (wall_x - x) / np.cos(angles), np.inf)
    grid.integrate(did, (x, 0.0, 0.0), -1.2, 2.4 / 120, 6.0, ranges, t_s)


def test_on_the_occupancy_grid_a_faded_closure_holds_until_two_robots_see_it_open() -> None:
    """The real grid: corroborated hits latch; 10 fade times later the cells are unknown and the road held;
    one robot seeing it open is not enough, a second one is."""
    grid, roads = OccupancyGrid(), RoadStates(street_graph())
    for t in range(4):
        for did in (ALICE, BOB):
            _look(grid, did, 27.0 + 0.3 * t, float(t), wall_x=30.5)
    assert roads.evaluate(GridBelief(grid, 4.0)).states[EAST].state == BLOCKED
    later = 4.0 + 10 * grid.spec.fade_s
    assert (GridBelief(grid, later).state_at(np.array([30.55]), np.array([0.0])) == 0).all()  # faded to unknown
    assert roads.evaluate(GridBelief(grid, later)).states[EAST].state == BLOCKED
    for t in range(4):
        _look(grid, CAROL, 27.0 + 0.3 * t, later + t, wall_x=None)
    assert roads.evaluate(GridBelief(grid, later + 4)).states[EAST].state == BLOCKED  # one robot's word
    for t in range(4):
        _look(grid, ALICE, 27.0 + 0.3 * t, later + 4 + t, wall_x=None)
    assert roads.evaluate(GridBelief(grid, later + 8)).states[EAST].state == FREE


def test_vantage_points_stand_on_the_road_short_of_the_blockage_from_each_end() -> None:
    graph = street_graph()
    assert vantage_points(graph, EAST, (30.0, 0.0), 4.0) == ((26.0, 0.0), (34.0, 0.0))
    assert vantage_points(graph, EAST, (22.0, 0.0), 4.0) == ((20.0, 0.0), (26.0, 0.0))  # no further than its end


def test_route_costs_go_around_a_blocked_road_and_reach_its_points_from_their_side_only() -> None:
    """A 2 x 2 block city, 48 m blocks, the west avenue's first street n0_0-n0_1 closed at (0, 20)."""
    routes = RouteCosts(city_graph(2))
    starts = [(0.0, 10.0), (40.0, 48.0), (0.0, 30.0)]  # below the closure; on the street east of n0_1; above it
    beyond = {("n0_0", "n0_1"): (0.0, 20.0)}
    assert routes((0.0, 58.0), starts, {}) == pytest.approx([48.0, 50.0, 28.0])  # nothing closed: as driven
    # Below the closure, back to n0_0 and round the east block: 10 + 48 * 3 + 10.
    assert routes((0.0, 58.0), starts, beyond) == pytest.approx([164.0, 50.0, 28.0])
    # A point above the closure, on its road: from n0_1's side only (10 + 48 * 3 + 26); the robot above drives straight.
    assert routes((0.0, 22.0), starts, beyond) == pytest.approx([180.0, 66.0, 8.0])
    walled = {**beyond, ("n0_0", "n1_0"): (20.0, 0.0)}  # n0_0's both roads closed: the robot below is cut off
    assert routes((0.0, 58.0), starts, walled) == [None, pytest.approx(50.0), pytest.approx(28.0)]
    assert routes((0.0, 58.0), [], beyond) == []


class RasterBelief:
    """A grid-like belief: an int8 raster at 0.2 m looked up per point, as the occupancy grid does."""

    def __init__(self, states: np.ndarray, origin: float, resolution: float) -> None:
        self.states, self.origin, self.resolution = states, origin, resolution

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        ix = np.floor((xs - self.origin) / self.resolution).astype(np.int64)
        iy = np.floor((ys - self.origin) / self.resolution).astype(np.int64)
        return self.states[ix, iy]

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        return {ALICE: float(len(xs))}


def city_graph(blocks: int = 6, pitch: float = 48.0) -> nx.Graph:
    graph = nx.Graph()
    for i in range(blocks + 1):
        for j in range(blocks + 1):
            graph.add_node(f"n{i}_{j}", pos=(i * pitch, j * pitch), kind="junction")
    for i in range(blocks + 1):
        for j in range(blocks + 1):
            if i < blocks:
                graph.add_edge(f"n{i}_{j}", f"n{i + 1}_{j}", length=pitch, street=f"n{i}_{j}|n{i + 1}_{j}")
            if j < blocks:
                graph.add_edge(f"n{i}_{j}", f"n{i}_{j + 1}", length=pitch, street=f"n{i}_{j}|n{i}_{j + 1}")
    return graph


def test_a_six_by_six_block_city_evaluates_in_a_few_milliseconds() -> None:
    graph = city_graph()
    roads = RoadStates(graph)
    raster = np.zeros((1600, 1600), dtype=np.int8)
    raster[::37, ::41] = OCCUPIED  # scattered litter, too small to slow anyone
    raster[150, 30:70] = OCCUPIED  # a barrier across n0_0-n1_0 at x = 20
    raster[30:60, 150] = OCCUPIED  # a van on n0_0-n0_1 at y = 20, leaving 2 m
    belief = RasterBelief(raster, -10.0, 0.2)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        report = roads.evaluate(belief)
        timings.append(time.perf_counter() - start)
    assert len(report.states) == graph.number_of_edges() == 84
    assert {key: edge.state for key, edge in report.states.items() if edge.state != FREE} == {
        ("n0_0", "n1_0"): BLOCKED, ("n0_0", "n0_1"): SLOW}
    assert min(timings) < 0.05
