"""Pure pursuit steering a simulated unicycle along L- and U-shaped routes."""

import math

import pytest

from robots.follow import PurePursuit

DT = 0.1
L_ROUTE = ((0.0, 0.0), (20.0, 0.0), (20.0, 20.0))
U_ROUTE = ((0.0, 0.0), (20.0, 0.0), (20.0, 8.0), (0.0, 8.0))  # the legs are a street width apart


def to_segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, ay), (bx, by) = a, b
    t = max(0.0, min(1.0, ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)))
    return math.hypot(ax + t * (bx - ax) - x, ay + t * (by - ay) - y)


def drive(follower: PurePursuit, pose: tuple[float, float, float], steps: int = 2000) -> list[tuple[float, ...]]:
    """Run the follower on a perfect unicycle until done; the trace of (x, y, theta, v, w) per step."""
    x, y, theta = pose
    trace = []
    for _ in range(steps):
        if follower.done:
            break
        v, w = follower.command(x, y, theta)
        trace.append((x, y, theta, v, w))
        x += v * math.cos(theta) * DT
        y += v * math.sin(theta) * DT
        theta += w * DT
    trace.append((x, y, theta, 0.0, 0.0))
    return trace


@pytest.mark.parametrize("route", [L_ROUTE, U_ROUTE], ids=["L", "U"])
def test_follows_the_route_to_its_end_within_limits(route: tuple[tuple[float, float], ...]) -> None:
    follower = PurePursuit(max_speed_mps=1.5, max_turn_rps=2.0, goal_tolerance_m=1.0)
    follower.reset(route)
    assert not follower.done and follower.progress == 0
    assert follower.remaining_m == pytest.approx(sum(math.dist(p, q) for p, q in zip(route, route[1:])))
    trace = drive(follower, (0.0, 0.0, 0.0))
    assert follower.done
    x, y = trace[-1][:2]
    assert math.dist((x, y), route[-1]) <= 1.0
    assert follower.progress == len(route) - 2
    assert follower.command(x, y, 0.0) == (0.0, 0.0)
    for _, _, _, v, w in trace:
        assert 0.0 <= v <= 1.5 + 1e-9 and abs(w) <= 2.0 + 1e-9
    deviation = max(min(to_segment(x, y, a, b) for a, b in zip(route, route[1:])) for x, y, *_ in trace)
    assert deviation < 1.0  # corners are cut a little, never by a lane
    assert max(v for *_, v, _ in trace) == pytest.approx(1.5)  # straights at full speed
    nominal_s = sum(math.dist(p, q) for p, q in zip(route, route[1:])) / 1.5
    assert len(trace) * DT < 1.2 * nominal_s


def test_u_turn_route_is_followed_in_order_not_short_cut() -> None:
    follower = PurePursuit()
    follower.reset(U_ROUTE)
    trace = drive(follower, (0.0, 0.0, 0.0))
    assert max(x for x, *_ in trace) > 19.0  # it went round the far end before coming back on the other leg
    assert follower.done


def test_converges_from_off_the_path_facing_the_wrong_way() -> None:
    follower = PurePursuit()
    follower.reset(L_ROUTE)
    trace = drive(follower, (2.0, -3.0, math.pi))  # 3 m beside the first leg, facing backwards
    assert follower.done
    assert trace[0][3] == 0.0 and trace[0][4] != 0.0  # first it turns in place
    on_leg = [to_segment(x, y, L_ROUTE[0], L_ROUTE[1]) for x, y, *_ in trace if 12.0 < x < 16.0]
    assert on_leg and max(on_leg) < 0.3


def test_slows_down_near_the_goal_and_reports_what_is_left() -> None:
    follower = PurePursuit(slow_radius_m=3.0)
    follower.reset(((0.0, 0.0), (10.0, 0.0)))
    v_far, _ = follower.command(0.0, 0.0, 0.0)
    assert follower.remaining_m == pytest.approx(10.0)
    v_near, w_near = follower.command(8.5, 0.0, 0.0)
    assert v_far == pytest.approx(1.5) and v_near == pytest.approx(1.5 * 1.5 / 3.0) and w_near == 0.0
    assert follower.remaining_m == pytest.approx(1.5)
    assert follower.command(9.2, 0.1, 0.0) == (0.0, 0.0) and follower.done


def test_a_route_ending_where_it_starts_is_driven_before_it_is_done() -> None:
    follower = PurePursuit()
    follower.reset(((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.5)))
    v, _ = follower.command(0.0, 0.0, 0.0)
    assert v > 0.0 and not follower.done
    assert follower.progress == 0


def test_reset_needs_a_point_and_a_single_point_is_a_goal() -> None:
    follower = PurePursuit()
    assert follower.done and follower.command(0.0, 0.0, 0.0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        follower.reset(())
    follower.reset(((5.0, 0.0),))
    trace = drive(follower, (0.0, 0.0, 0.0))
    assert follower.done and math.dist(trace[-1][:2], (5.0, 0.0)) <= 1.0
