"""Obstacle avoidance on synthetic lidar scans, and the blockage detector's patience."""

import math

import numpy as np
import pytest

from robots.avoid import Avoider, BlockageDetector

RADIUS = 0.3  # corridor half width 0.6 m with the default side clearance
N_RAYS = 32
ANGLE_MIN = -math.pi
INCREMENT = 2.0 * math.pi / N_RAYS


def scan(*boxes: tuple[float, float, float, float], n: int = N_RAYS, angle_min: float = ANGLE_MIN,
         increment: float = INCREMENT) -> np.ndarray:
    """Ranges from the robot (origin, facing +x) to axis-aligned boxes (x0, x1, y0, y1); inf where nothing is hit."""
    ranges = np.full(n, np.inf, dtype=np.float32)
    for i in range(n):
        dx, dy = math.cos(angle_min + i * increment), math.sin(angle_min + i * increment)
        for x0, x1, y0, y1 in boxes:
            near, far = 0.0, math.inf
            for d, lo, hi in ((dx, x0, x1), (dy, y0, y1)):
                if abs(d) < 1e-12:
                    if not lo <= 0.0 <= hi:
                        near = math.inf
                    continue
                a, b = sorted((lo / d, hi / d))
                near, far = max(near, a), min(far, b)
            if near <= far and near < ranges[i]:
                ranges[i] = near
    return ranges


def wall_ahead(clearance: float) -> tuple[float, float, float, float]:
    return (RADIUS + clearance, RADIUS + clearance + 0.5, -20.0, 20.0)


def adjust(avoider: Avoider, v: float, w: float, ranges: np.ndarray) -> tuple[float, float, bool]:
    return avoider.adjust(v, w, ranges, ANGLE_MIN, INCREMENT)


def test_a_free_scan_leaves_the_command_unchanged() -> None:
    avoider = Avoider(RADIUS)
    assert adjust(avoider, 1.2, 0.3, scan()) == (1.2, 0.3, False)
    assert adjust(avoider, 1.2, 0.3, np.full(N_RAYS, np.nan, dtype=np.float32)) == (1.2, 0.3, False)
    assert adjust(avoider, 0.0, 0.7, scan(wall_ahead(0.1))) == (0.0, 0.7, False)  # turning in place is always safe


def test_a_van_parked_beside_the_corridor_does_not_slow_the_robot() -> None:
    beside = scan((0.5, 4.0, 0.9, 2.5), (0.5, 4.0, -2.5, -0.9))
    assert np.min(beside) < 1.5
    assert adjust(Avoider(RADIUS), 1.2, 0.0, beside) == (1.2, 0.0, False)


def test_a_wall_ahead_slows_then_stops_and_blocks() -> None:
    avoider = Avoider(RADIUS, stop_m=0.4, slow_m=2.5)
    v, w, blocked = adjust(avoider, 1.5, 0.2, scan(wall_ahead(1.0)))
    assert v == pytest.approx(1.5 * (1.0 - 0.4) / (2.5 - 0.4), abs=1e-6)
    assert w == pytest.approx(0.2 * v / 1.5)  # the same arc, driven slower
    assert not blocked
    assert adjust(avoider, 1.5, 0.2, scan(wall_ahead(0.3))) == (0.0, 0.0, True)
    far_v, _, _ = adjust(avoider, 1.5, 0.0, scan(wall_ahead(2.0)))
    assert v < far_v < 1.5


def test_an_obstacle_ahead_on_the_left_steers_right() -> None:
    van = (RADIUS + 1.5, RADIUS + 5.0, 0.0, 2.0)  # its right edge on the centreline: the right lane is free
    v, w, blocked = adjust(Avoider(RADIUS), 1.5, 0.0, scan(van))
    assert 0.0 < v < 1.5 and w < 0.0 and not blocked
    mirrored = (RADIUS + 1.5, RADIUS + 5.0, -2.0, 0.0)
    assert adjust(Avoider(RADIUS), 1.5, 0.0, scan(mirrored))[1] > 0.0


def test_a_pedestrian_dead_ahead_is_passed_on_the_right_turning_in_place_when_close() -> None:
    avoider = Avoider(RADIUS, swerve_rps=1.0)
    v, w, blocked = adjust(avoider, 1.5, 0.5, scan((RADIUS + 0.2, RADIUS + 0.5, -0.2, 0.2)))
    assert (v, w, blocked) == (0.0, -1.0, False)
    v, w, blocked = adjust(avoider, 1.5, 0.0, scan((RADIUS + 1.4, RADIUS + 1.7, -0.2, 0.2)))
    assert 0.0 < v < 1.5 and w < 0.0 and not blocked


def test_reversing_checks_behind_only() -> None:
    avoider = Avoider(RADIUS)
    assert adjust(avoider, -0.5, 0.1, scan(wall_ahead(0.2))) == (-0.5, 0.1, False)
    behind = (-RADIUS - 1.5, -RADIUS - 1.0, -20.0, 20.0)
    v, w, blocked = adjust(avoider, -0.5, 0.1, scan(behind))
    assert v == pytest.approx(-0.5 * 0.6 / 2.1, abs=1e-6) and w == pytest.approx(0.1 * 0.6 / 2.1, abs=1e-6)
    assert not blocked
    assert adjust(avoider, -0.5, 0.1, scan((-RADIUS - 0.3, -RADIUS - 0.1, -20.0, 20.0))) == (0.0, 0.0, True)


def test_a_new_scan_layout_is_picked_up() -> None:
    avoider = Avoider(RADIUS)
    assert adjust(avoider, 1.5, 0.0, scan()) == (1.5, 0.0, False)
    n, angle_min, increment = 27, -0.75 * math.pi, 1.5 * math.pi / 26  # a 270 degree scanner
    ranges = scan(wall_ahead(0.2), n=n, angle_min=angle_min, increment=increment)
    assert avoider.adjust(1.5, 0.0, ranges, angle_min, increment) == (0.0, 0.0, True)


def test_stop_must_be_closer_than_slow() -> None:
    with pytest.raises(ValueError):
        Avoider(RADIUS, stop_m=2.0, slow_m=1.0)


def test_blockage_fires_after_patience_and_then_watches_afresh() -> None:
    detector = BlockageDetector(patience_s=4.0, min_progress_m=0.5)
    fired = [t / 10 for t in range(0, 100) if detector.update(t / 10, 5.0, 5.0, True)]
    assert fired == [4.0, 8.0]


def test_blocked_while_being_nudged_still_fires() -> None:
    detector = BlockageDetector(patience_s=4.0, min_progress_m=0.5)
    fired = [t for t in range(10) if detector.update(float(t), 0.6 * (t % 2), 0.0, True)]  # GNSS jitter, 0.6 m
    assert fired == [4, 8]


def test_steady_progress_never_fires_but_crawling_does() -> None:
    moving = BlockageDetector()
    assert not any(moving.update(t / 10, 0.15 * t, 0.0, False) for t in range(300))
    crawling = BlockageDetector(patience_s=4.0, min_progress_m=0.5)
    fired = [t for t in range(100) if crawling.update(t / 10, 0.01 * t, 0.0, False)]
    assert fired == [40, 80]


def test_reset_restarts_the_watch() -> None:
    detector = BlockageDetector(patience_s=4.0)
    assert not any(detector.update(t / 10, 0.0, 0.0, True) for t in range(31))
    detector.reset()
    assert not any(detector.update(3.0 + t / 10, 0.0, 0.0, True) for t in range(40))
    assert detector.update(7.0, 0.0, 0.0, True)
