import itertools
import math

import networkx as nx
import numpy as np
import pytest

from sim.city import SIDEWALK_M, CityLayout, generate_city
from sim.geometry import Box
from sim.obstacles import Obstacle, ObstacleSchedule

DURATION_S = 3600.0


@pytest.fixture(scope="module")
def city() -> CityLayout:
    return generate_city(11)


@pytest.fixture(scope="module")
def schedule(city: CityLayout) -> ObstacleSchedule:
    return ObstacleSchedule.generate(city, 5, DURATION_S)


def _of(schedule: ObstacleSchedule, kind: str) -> list[Obstacle]:
    return [o for o in schedule.obstacles if o.kind == kind]


def _frame(city: CityLayout, street: str) -> tuple[float, float, float, float]:
    """The street's first intersection and unit direction."""
    a, b = city.streets[street]
    (ax, ay), (bx, by) = city.nodes[a], city.nodes[b]
    length = math.dist((ax, ay), (bx, by))
    return ax, ay, (bx - ax) / length, (by - ay) / length


def _across(city: CityLayout, street: str, box: Box) -> tuple[float, float, float]:
    """The box's distance along the street, and its near and far signed offsets across the centreline."""
    ax, ay, ux, uy = _frame(city, street)
    along = (box.x - ax) * ux + (box.y - ay) * uy
    centre = -(box.x - ax) * uy + (box.y - ay) * ux
    half = box.half_y if uy == 0 else box.half_x
    return along, centre - half, centre + half


def _footprint(o: Obstacle) -> Box:
    """All the ground an obstacle ever covers: its box, or the sweep of its box along its path."""
    if not o.path:
        return o.box
    xs, ys = [p[0] for p in o.path], [p[1] for p in o.path]
    return Box(
        x=(min(xs) + max(xs)) / 2,
        y=(min(ys) + max(ys)) / 2,
        half_x=(max(xs) - min(xs)) / 2 + o.box.half_x,
        half_y=(max(ys) - min(ys)) / 2 + o.box.half_y,
        height=o.box.height,
    )


def _overlap(a: Box, b: Box) -> bool:
    return abs(a.x - b.x) < a.half_x + b.half_x and abs(a.y - b.y) < a.half_y + b.half_y


def _van(start: float, end: float, name: str = "van-x") -> Obstacle:
    return Obstacle(name, "van", start, end, Box(10.0, 0.0, 3.0, 1.1, 2.5), "n0_0|n1_0")


def test_same_seed_same_schedule_other_seed_other_schedule(city: CityLayout, schedule: ObstacleSchedule) -> None:
    assert ObstacleSchedule.generate(city, 5, DURATION_S).obstacles == schedule.obstacles
    assert ObstacleSchedule.generate(city, 6, DURATION_S).obstacles != schedule.obstacles


def test_default_counts_scale_with_the_city(city: CityLayout, schedule: ObstacleSchedule) -> None:
    streets = len(city.streets)
    assert len(_of(schedule, "van")) == streets // 8
    assert len(_of(schedule, "roadworks")) == max(1, streets // 25)
    assert len(_of(schedule, "pedestrian")) == streets // 6
    assert [o.id for o in _of(schedule, "pedestrian")][:2] == ["ped-0", "ped-1"]
    assert len({o.id for o in schedule.obstacles}) == len(schedule.obstacles)


def test_windows_lie_within_the_run(schedule: ObstacleSchedule) -> None:
    for o in schedule.obstacles:
        assert 0.0 <= o.start_s < o.end_s <= DURATION_S
        assert o.street is not None


def test_active_window_is_start_inclusive_end_exclusive() -> None:
    schedule = ObstacleSchedule([_van(10.0, 20.0)])
    assert schedule.active(9.99) == {}
    assert schedule.active(10.0) == {"van-x": Box(10.0, 0.0, 3.0, 1.1, 2.5)}
    assert set(schedule.active(19.99)) == {"van-x"}
    assert schedule.active(20.0) == {}
    assert set(schedule.active(15.0)) == {"van-x"}  # going back in time works too
    assert schedule.active(5.0) == {}


def test_active_matches_the_windows_at_any_time(schedule: ObstacleSchedule) -> None:
    times = np.random.default_rng(1).uniform(-10.0, DURATION_S + 10.0, size=500)
    times = np.concatenate([times, np.sort(times), [o.start_s for o in schedule.obstacles]])
    for t in times:
        expected = {o.id for o in schedule.obstacles if o.start_s <= t < o.end_s}
        active = schedule.active(float(t))
        assert set(active) == expected
        for o in schedule.obstacles:
            if o.id in active and not o.path:
                assert active[o.id] == o.box


def test_active_returns_a_fresh_dict() -> None:
    schedule = ObstacleSchedule([_van(0.0, 10.0)])
    schedule.active(1.0).clear()
    assert set(schedule.active(2.0)) == {"van-x"}


def test_pedestrians_cross_the_street_back_and_forth(city: CityLayout, schedule: ObstacleSchedule) -> None:
    peds = _of(schedule, "pedestrian")
    assert peds
    for o in peds:
        assert 1.0 <= o.speed_mps <= 1.5
        assert (o.box.half_x, o.box.half_y, o.box.height) == (0.25, 0.25, 1.7)
        assert (o.box.x, o.box.y) == o.path[0]
        (_, near, _), (_, far, _) = (_across(city, o.street, Box(*p, 0.0, 0.0, 0.0)) for p in o.path)
        assert sorted((abs(near), abs(far))) == pytest.approx([(city.road_m + SIDEWALK_M) / 2] * 2)
        assert near * far < 0  # one sidewalk to the other
        crossing = math.dist(*o.path)
        t1, t2 = o.start_s + 0.5, min(o.start_s + 2.0, o.end_s - 1e-6)
        b1, b2 = schedule.active(t1)[o.id], schedule.active(t2)[o.id]
        assert (b1.x, b1.y) != (b2.x, b2.y)
        assert math.dist(o.path[0], (b1.x, b1.y)) == pytest.approx(0.5 * o.speed_mps)
        for box in (b1, b2):
            walked = math.dist(o.path[0], (box.x, box.y)) + math.dist((box.x, box.y), o.path[1])
            assert walked == pytest.approx(crossing)
            assert (box.half_x, box.half_y, box.height) == (o.box.half_x, o.box.half_y, o.box.height)


def test_pedestrian_turns_back_at_the_far_sidewalk() -> None:
    path = ((0.0, 0.0), (10.0, 0.0))
    walker = Obstacle("ped-x", "pedestrian", 0.0, 100.0, Box(0.0, 0.0, 0.25, 0.25, 1.7), None, path, 1.0)
    schedule = ObstacleSchedule([walker])
    xs = [schedule.active(t)["ped-x"].x for t in (0.0, 4.0, 10.0, 13.0, 20.0, 25.0)]
    assert xs == pytest.approx([0.0, 4.0, 10.0, 7.0, 0.0, 5.0])


def test_vans_park_at_the_kerb_and_leave_a_lane(city: CityLayout, schedule: ObstacleSchedule) -> None:
    vans = _of(schedule, "van")
    assert vans
    half_road = city.road_m / 2
    for o in vans:
        assert sorted((o.box.half_x, o.box.half_y)) == pytest.approx([1.1, 3.0])
        assert o.box.height == 2.5
        along, lo, hi = _across(city, o.street, o.box)
        assert -half_road <= lo < hi <= half_road
        assert max(lo + half_road, half_road - hi) >= 3.0
        assert min(lo + half_road, half_road - hi) < 0.5  # against one edge
        assert half_road + 3.0 <= along <= city.block_m + half_road - 3.0  # off the intersections


def test_roadworks_close_the_full_width_only_while_active(city: CityLayout, schedule: ObstacleSchedule) -> None:
    works = _of(schedule, "roadworks")
    assert works
    for o in works:
        ax, ay, ux, uy = _frame(city, o.street)
        along, lo, hi = _across(city, o.street, o.box)
        for offset in np.linspace(-city.road_m / 2, city.road_m / 2, 9):
            assert o.box.contains(ax + along * ux - offset * uy, ay + along * uy + offset * ux)
        assert o.street in schedule.closed_streets(o.start_s)
        assert o.street in schedule.closed_streets((o.start_s + o.end_s) / 2)
        assert o.street not in schedule.closed_streets(o.end_s)
        assert o.street not in schedule.closed_streets(o.start_s - 1e-6)
    for t in np.linspace(0.0, DURATION_S, 200):
        expected = {o.street for o in works if o.start_s <= t < o.end_s}
        assert schedule.closed_streets(float(t)) == expected


def test_roadworks_prefer_streets_without_places(city: CityLayout) -> None:
    works = _of(ObstacleSchedule.generate(city, 3, DURATION_S, vans=0, pedestrians=0, roadworks=12), "roadworks")
    assert len(works) == 12
    assert not {o.street for o in works} & {p.street for p in city.places}


@pytest.mark.parametrize("seed", range(4))
def test_roadworks_never_cut_the_road_graph(seed: int) -> None:
    city = generate_city(seed, 4, missing_streets=0.25, dropoffs=4)
    graph = nx.Graph(list(city.streets.values()))
    assert any(True for _ in nx.bridges(graph))  # the test means something only if there are bridges
    schedule = ObstacleSchedule.generate(city, seed, 1800.0, vans=0, pedestrians=0, roadworks=12)
    bridges = {"|".join(sorted(e)) for e in nx.bridges(graph)}
    assert len(_of(schedule, "roadworks")) >= 6
    for o in _of(schedule, "roadworks"):
        assert o.street not in bridges
        open_graph = graph.copy()
        open_graph.remove_edges_from(city.streets[s] for s in schedule.closed_streets(o.start_s))
        assert nx.is_connected(open_graph)


def test_obstacles_keep_clear_of_places_buildings_and_each_other(
    city: CityLayout, schedule: ObstacleSchedule
) -> None:
    footprints = [(o, _footprint(o)) for o in schedule.obstacles]
    for o, box in footprints:
        margin = 5.0 if o.kind == "roadworks" else 3.0
        assert not any(box.contains(p.x, p.y, margin=margin) for p in city.places), o
        assert not any(_overlap(box, b) for b in city.buildings), o
    for (o1, b1), (o2, b2) in itertools.combinations(footprints, 2):
        assert not _overlap(b1, b2), (o1, o2)


def test_add_closes_a_street_now(schedule: ObstacleSchedule, city: CityLayout) -> None:
    own = ObstacleSchedule(schedule.obstacles)
    street = sorted(city.streets)[0]
    closure = Obstacle("roadworks-x", "roadworks", 100.0, 200.0, city.street_box(street, fraction=0.2), street)
    own.add(closure)
    assert own.obstacles[-1] == closure
    assert street in own.closed_streets(150.0)
    assert own.active(150.0)["roadworks-x"] == closure.box
    assert "roadworks-x" not in own.active(200.0)
    assert len(schedule.obstacles) == len(own.obstacles) - 1


def test_add_is_seen_after_active_was_called() -> None:
    schedule = ObstacleSchedule([_van(0.0, 100.0)])
    assert set(schedule.active(50.0)) == {"van-x"}
    schedule.add(_van(40.0, 60.0, "van-y"))
    assert set(schedule.active(50.0)) == {"van-x", "van-y"}


@pytest.mark.parametrize(
    "obstacle",
    [
        _van(10.0, 10.0),
        Obstacle("x", "tank", 0.0, 1.0, Box(0.0, 0.0, 1.0, 1.0, 1.0), None),
        Obstacle("x", "roadworks", 0.0, 1.0, Box(0.0, 0.0, 1.0, 1.0, 1.0), None),
        Obstacle("x", "pedestrian", 0.0, 1.0, Box(0.0, 0.0, 0.25, 0.25, 1.7), None, ((0.0, 0.0), (0.0, 0.0)), 1.0),
    ],
)
def test_add_refuses_bad_obstacles(obstacle: Obstacle) -> None:
    with pytest.raises(ValueError):
        ObstacleSchedule().add(obstacle)


def test_add_refuses_a_duplicate_id() -> None:
    schedule = ObstacleSchedule([_van(0.0, 1.0)])
    with pytest.raises(ValueError, match="van-x"):
        schedule.add(_van(5.0, 6.0))


def test_generate_refuses_bad_arguments(city: CityLayout) -> None:
    with pytest.raises(ValueError):
        ObstacleSchedule.generate(city, 1, 0.0)
    with pytest.raises(ValueError):
        ObstacleSchedule.generate(city, 1, 60.0, pedestrians=-1)
    narrow = generate_city(1, 3, road_m=5.0)
    assert not _of(ObstacleSchedule.generate(narrow, 1, 60.0), "van")
    with pytest.raises(ValueError, match="lane"):
        ObstacleSchedule.generate(narrow, 1, 60.0, vans=1)
