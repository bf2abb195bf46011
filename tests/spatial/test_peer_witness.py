"""Peer-witnessed location: robot-shaped returns, and SEEN / UNSEEN / no verdict for claimed poses, on drawn scans."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial.witness import NONE, SEEN, UNSEEN, Beams, WitnessSpec, judge, shapes

SPEC = WitnessSpec()


def _ranges(rays: int, discs: list[tuple[float, float]] = (), wall_x: float | None = None,
            origin: tuple[float, float] = (0.0, 0.0), radius: float = 0.35) -> np.ndarray:
    """What a 360-degree lidar at ``origin`` (beam 0 pointing at -pi) sees of robot discs and a wall at x = wall_x."""
    ox, oy = origin
    out = np.full(rays, np.inf)
    for k in range(rays):
        angle = -math.pi + k * 2 * math.pi / rays
        c, s = math.cos(angle), math.sin(angle)
        for cx, cy in discs:
            b = (cx - ox) * c + (cy - oy) * s
            d = b * b - ((cx - ox) ** 2 + (cy - oy) ** 2 - radius ** 2)
            if d >= 0 and b > 0:
                out[k] = min(out[k], b - math.sqrt(d))
        if wall_x is not None and c > 1e-9:
            r = (wall_x - ox) / c
            if abs(oy + r * s) <= 4.0:
                out[k] = min(out[k], r)
    out[out > 6.0] = np.inf
    return out


def _beams(ranges: np.ndarray, origin: tuple[float, float] = (0.0, 0.0), start: float = -math.pi) -> Beams:
    rays = len(ranges)
    return Beams.of(np.array([origin]), np.array([start]), np.array([2 * math.pi / rays]), np.array([rays]), ranges)


def _judge(ranges: np.ndarray, claims: list[tuple[float, float]], static_at=None) -> list[int]:
    beams = _beams(ranges)
    x, y = np.array(claims, dtype=float).reshape(-1, 2).T
    return judge(beams, shapes(beams, SPEC), np.zeros(len(claims), dtype=np.int64), x, y,
                 np.arange(len(claims)), SPEC, static_at).tolist()


def test_a_disc_in_free_space_is_robot_shaped_and_a_wall_is_not() -> None:
    disc = _ranges(64, [(3.0, 0.0)])
    shaped = shapes(_beams(disc), SPEC).robot
    assert shaped[np.isfinite(disc)].all() and np.isfinite(disc).sum() >= 2
    wall = _ranges(64, wall_x=3.0)
    assert not shapes(_beams(wall), SPEC).robot[np.isfinite(wall)].any()
    both = _ranges(64, [(2.0, 0.0)], wall_x=4.0)  # the disc stands out in front of the wall; the wall is a wall
    shaped = shapes(_beams(both), SPEC).robot
    assert shaped[np.isfinite(both) & (both < 2.0)].all() and not shaped[both >= 3.5].any()


def test_a_disc_across_the_scans_first_and_last_beams_is_one_robot() -> None:
    """Beam 0 points at -pi: a robot straight behind is split between the scan's ends, and joined again."""
    disc = _ranges(64, [(-3.0, 0.0)])
    assert np.isfinite(disc[0]) and np.isfinite(disc[-1])
    assert shapes(_beams(disc), SPEC).robot[np.isfinite(disc)].all()
    wide = _ranges(64, [(-3.0, y) for y in np.arange(-1.0, 1.01, 0.25)])  # a row of discs: a surface
    assert not shapes(_beams(wide), SPEC).robot[np.isfinite(wide)].any()


@pytest.mark.parametrize("distance", [1.0, 2.5, 4.0, 5.0])
def test_a_robot_where_it_says_is_seen_within_the_pose_margin(distance: float) -> None:
    bearing = 0.3
    x, y = distance * math.cos(bearing), distance * math.sin(bearing)
    ranges = _ranges(64, [(x, y)])
    assert _judge(ranges, [(x, y), (x + 0.3, y - 0.25)]) == [SEEN, NONE]  # the body is credited to one claim


def test_nothing_where_a_robot_says_it_is_is_unseen() -> None:
    assert _judge(_ranges(64), [(3.0, 1.0)]) == [UNSEEN]
    assert _judge(_ranges(64, [(1.5, 0.0)]), [(3.0, 0.0)]) == [NONE]  # behind another robot: not judged
    assert _judge(_ranges(64), [(5.5, 0.0)]) == [NONE]  # beyond the witness range
    assert _judge(_ranges(64), [(0.5, 0.0)]) == [NONE]  # on top of the peer itself


def test_a_robot_claimed_on_or_at_a_wall_is_unseen_and_one_standing_there_is_seen() -> None:
    wall = _ranges(64, wall_x=4.0)
    assert _judge(wall, [(4.0, 0.5), (3.7, -1.0), (4.25, 0.0)]) == [UNSEEN] * 3  # on, before and in the wall
    assert _judge(wall, [(4.5, 0.0)]) == [NONE]  # a robot could stand there behind a thin wall
    facing = wall < 4.6  # further out, returns 0.3-0.5 m apart in range are separate segments: unjudged
    assert facing.sum() >= 9 and shapes(_beams(wall), SPEC).surface[facing].all()
    assert _judge(_ranges(64, [(3.55, 0.0)], wall_x=4.0), [(3.55, 0.0)]) == [SEEN]  # backed against the wall
    assert _judge(_ranges(64, [(3.5, 0.5)], wall_x=4.2), [(3.5, 0.5)]) == [SEEN]


def test_sparse_beams_judge_nothing_unseen_far_away() -> None:
    """32 beams are 0.59 m apart at 3 m: a robot could stand between two, so an empty spot there is not unseen."""
    assert _judge(_ranges(32), [(3.0, 0.0)]) == [NONE]
    assert _judge(_ranges(32), [(1.5, 0.0)]) == [UNSEEN]


def test_a_robot_shaped_map_obstacle_is_no_witness() -> None:
    ranges = _ranges(64, [(3.0, 0.0)])
    assert _judge(ranges, [(3.0, 0.0)], static_at=lambda xs, ys: np.ones(len(xs), dtype=bool)) == [NONE]
