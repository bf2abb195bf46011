"""Keep right: legs shift to their right-hand side, the start and the goal stay put."""

import pytest

from robots.lanes import keep_right


def test_a_leg_east_moves_south_and_a_leg_north_moves_east() -> None:
    route = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (10.0, 20.0)]
    assert keep_right(route, 1.5) == [
        (0.0, 0.0), (10.0, -1.5),  # east: the right is south
        (11.5, 0.0), (11.5, 10.0),  # north: the right is east (the next leg starts where this one ends)
        (10.0, 20.0),
    ]


def test_oncoming_routes_on_one_street_end_up_three_metres_apart() -> None:
    east = keep_right([(0.0, 0.0), (0.0, 0.0), (50.0, 0.0), (60.0, 0.0)], 1.5)
    west = keep_right([(60.0, 0.0), (50.0, 0.0), (0.0, 0.0), (-10.0, 0.0)], 1.5)
    assert east[2][1] == pytest.approx(-1.5) and west[2][1] == pytest.approx(1.5)


@pytest.mark.parametrize("route", [[], [(1.0, 2.0)], [(0.0, 0.0), (5.0, 5.0)]])
def test_short_routes_keep_their_ends(route) -> None:
    shifted = keep_right(route, 1.5)
    assert shifted[:1] == route[:1] and shifted[-1:] == route[-1:]


def test_no_offset_is_the_route_itself() -> None:
    route = [(0.0, 0.0), (3.0, 4.0), (3.0, 9.0)]
    assert keep_right(route, 0.0) == route
