"""The pose EKF against a simulated robot: drifting odometry, a noisy GNSS, outliers, a wrong start heading, and the
odometry's scale and drift learnt on the way."""

import math
import random

import numpy as np
import pytest

from robots.body import GnssFix, Odometry
from robots.localize import PoseEstimator, normalize_angle

DT = 0.1


def loop(laps: int, long_m: float = 100.0, short_m: float = 60.0, v: float = 1.5) -> list[tuple[float, float]]:
    """(v, w) per 0.1 s step around a rectangle with rounded corners, counter-clockwise."""
    commands: list[tuple[float, float]] = []
    for _ in range(laps):
        for side in (long_m, short_m, long_m, short_m):
            commands += [(v, 0.0)] * round(side / v / DT)
            commands += [(v, 0.5)] * round(math.pi / 2 / 0.5 / DT)
    return commands


def simulate(commands: list[tuple[float, float]], seed: int, *, scale: float = 1.02, turn_scale: float = 1.01,
             drift: float = 0.0, speed_noise: float = 0.01, heading_error: float = 0.0, sigma_gnss: float = 1.5,
             fix_every: int = 10, estimator: PoseEstimator | None = None,
             ) -> tuple[list[float], list[float], float, float]:
    """Drive ``commands``; per step the EKF's position error and heading error, and odometry's final errors.
    Odometry scales distance by ``scale`` and turns by ``turn_scale``, and turns ``drift`` rad per metre on its own."""
    rng = random.Random(seed)
    x = y = theta = 0.0
    ox, oy, otheta, odometer = 0.0, 0.0, heading_error, 0.0
    estimator = estimator or PoseEstimator(0.0, 0.0, otheta, sigma_xy=sigma_gnss)
    estimator.predict(Odometry(0.0, ox, oy, otheta, 0.0, 0.0, 0.0))
    position_errors, heading_errors = [], []
    for k, (v, w) in enumerate(commands, start=1):
        t = k * DT
        x, y, theta = x + v * math.cos(theta) * DT, y + v * math.sin(theta) * DT, theta + w * DT
        v_odo = v * scale * (1.0 + rng.gauss(0.0, speed_noise))
        w_odo = w * turn_scale + drift * v_odo + rng.gauss(0.0, 0.002)
        ox, oy = ox + v_odo * math.cos(otheta) * DT, oy + v_odo * math.sin(otheta) * DT
        otheta += w_odo * DT
        odometer += v_odo * DT
        estimator.predict(Odometry(t, ox, oy, otheta, v_odo, w_odo, odometer))
        if k % fix_every == 0:
            estimator.correct(GnssFix(t, x + rng.gauss(0.0, sigma_gnss), y + rng.gauss(0.0, sigma_gnss), sigma_gnss))
        ex, ey, etheta = estimator.pose
        position_errors.append(math.hypot(ex - x, ey - y))
        heading_errors.append(normalize_angle(etheta - theta))
    return position_errors, heading_errors, math.hypot(ox - x, oy - y), normalize_angle(otheta - theta)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gnss_keeps_the_estimate_close_while_odometry_drifts_away(seed: int) -> None:
    commands = loop(3)[:-900]  # nearly three laps, stopping 34 m into the last lap's second long side: 880 m
    errors, headings, odometry_error, odometry_heading = simulate(commands, seed)
    assert odometry_error > 2.5 and abs(odometry_heading) > 0.1  # 2 % scale, 1 % turn error, over 10 turns
    assert errors[-1] < 1.5
    assert sum(errors) / len(errors) < 1.0  # better on average than one 1.5 m fix
    assert abs(headings[-1]) < 0.1


def test_heading_converges_from_a_wrong_start_while_driving_straight() -> None:
    _, headings, _, odometry_heading = simulate([(1.5, 0.0)] * 600, seed=4, heading_error=0.3)
    assert odometry_heading == pytest.approx(0.3, abs=0.05)
    assert abs(headings[0]) > 0.29
    assert max(abs(h) for h in headings[-100:]) < 0.1


def test_an_outlier_fix_is_rejected_and_a_fix_is_used_once() -> None:
    estimator = PoseEstimator(10.0, 20.0, 0.0, sigma_xy=1.0)
    assert not estimator.correct(GnssFix(1.0, 60.0, 20.0, 1.5))  # 50 m off
    assert estimator.pose == (10.0, 20.0, 0.0)
    assert estimator.correct(GnssFix(2.0, 11.0, 20.0, 1.5))
    x, y, _ = estimator.pose
    assert 10.0 < x < 11.0 and y == pytest.approx(20.0)
    covariance = estimator.covariance.copy()
    assert not estimator.correct(GnssFix(2.0, 11.0, 20.0, 1.5))  # the same fix again
    assert estimator.pose == (x, y, 0.0) and np.array_equal(estimator.covariance, covariance)


def test_a_lost_estimate_jumps_to_the_fixes_after_several_outliers_in_a_row() -> None:
    estimator = PoseEstimator(0.0, 0.0, 0.0, sigma_xy=0.5)  # say the robot was carried 100 m away
    used = [estimator.correct(GnssFix(float(t), 100.0, 0.0, 2.0)) for t in range(1, 6)]
    assert used == [False, False, False, False, True]
    x, y, _ = estimator.pose
    assert (x, y) == (100.0, 0.0) and estimator.covariance[0, 0] == pytest.approx(4.0)


def test_odometry_motion_is_applied_in_the_estimates_frame() -> None:
    estimator = PoseEstimator(10.0, 5.0, math.pi / 2, sigma_xy=0.5, sigma_theta=0.05)
    estimator.predict(Odometry(0.0, 3.0, 3.0, math.pi, 0.0, 0.0, 0.0))  # the odometry frame is turned and shifted
    assert estimator.pose == (10.0, 5.0, math.pi / 2)
    estimator.predict(Odometry(1.0, 1.0, 3.0, math.pi - 0.5, 2.0, 0.0, 2.0))  # 2 m forward, 0.5 rad right
    x, y, theta = estimator.pose
    assert x == pytest.approx(10.0) and y == pytest.approx(7.0) and theta == pytest.approx(math.pi / 2 - 0.5)
    covariance = estimator.covariance
    assert covariance[0, 0] > 0.5**2 + 2.0**2 * 0.05**2 - 1e-9  # the heading's uncertainty swings the position
    assert np.allclose(covariance, covariance.T) and np.all(np.linalg.eigvalsh(covariance) > 0.0)


def test_normalize_angle_is_half_open() -> None:
    assert normalize_angle(math.pi) == math.pi
    assert normalize_angle(-math.pi) == math.pi
    assert normalize_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    assert normalize_angle(-7.0) == pytest.approx(-7.0 + 2 * math.pi)


def test_a_matched_pose_pulls_the_estimate_by_its_covariance() -> None:
    estimator = PoseEstimator(10.0, 20.0, 0.1, sigma_xy=0.5, sigma_theta=0.05)
    assert estimator.correct_pose((10.3, 20.0, 0.05), np.diag((0.1**2, 0.1**2, 0.01**2)))
    x, y, theta = estimator.pose
    assert 10.25 < x < 10.3 and y == pytest.approx(20.0) and 0.05 < theta < 0.06  # the sharper measurement wins
    covariance = estimator.covariance
    assert covariance[0, 0] < 0.1**2 and covariance[2, 2] < 0.01**2
    assert np.allclose(covariance, covariance.T) and np.all(np.linalg.eigvalsh(covariance) > 0.0)


def test_a_corridor_match_moves_the_estimate_across_the_corridor_only() -> None:
    estimator = PoseEstimator(0.0, 0.0, 0.0, sigma_xy=0.5, sigma_theta=0.05)
    along_x = np.diag((1e4, 0.05**2, 0.01**2))  # a corridor along x: the walls say nothing about x
    assert estimator.correct_pose((3.0, 0.4, 0.0), along_x)
    x, y, _ = estimator.pose
    assert abs(x) < 0.01 and y == pytest.approx(0.4, abs=0.01)
    assert estimator.covariance[0, 0] == pytest.approx(0.25, rel=0.01)


def test_a_match_far_off_the_estimate_is_never_followed() -> None:
    estimator = PoseEstimator(0.0, 0.0, 0.0, sigma_xy=0.3, sigma_theta=0.05)
    covariance = estimator.covariance.copy()
    for _ in range(10):  # unlike GNSS fixes, matches in a row far off do not re-anchor: a map has look-alike streets
        assert not estimator.correct_pose((8.0, 0.0, 0.0), np.diag((0.05**2, 0.05**2, 0.01**2)))
    assert estimator.pose == (0.0, 0.0, 0.0) and np.array_equal(estimator.covariance, covariance)
    assert not estimator.correct_pose((0.0, 0.0, 0.5), np.diag((0.05**2, 0.05**2, 0.01**2)))  # 10 sigma off in heading


def test_a_heading_only_match_turns_the_estimate_across_pi() -> None:
    estimator = PoseEstimator(0.0, 0.0, math.pi - 0.02, sigma_xy=0.5, sigma_theta=0.05)
    assert estimator.correct_pose((5.0, 5.0, -math.pi + 0.02), np.diag((1e4, 1e4, 0.005**2)))
    x, y, theta = estimator.pose
    assert abs(normalize_angle(theta - (-math.pi + 0.02))) < 0.005  # the short way round, not through 0
    assert math.hypot(x, y) < 0.01  # a position it does not believe moves nothing


def test_the_odometrys_scale_and_drift_are_learnt_and_the_fixes_averaged_over_a_long_window() -> None:
    # wheel radii 2 % large and 0.001 rad/m of left/right mismatch (twice NoiseSpec's 1-sigma), little slip, 5 Hz fixes
    estimator = PoseEstimator(0.0, 0.0, 0.0, sigma_xy=1.5)
    errors, headings, odometry_error, odometry_heading = simulate(
        loop(2), seed=5, scale=1.02, turn_scale=1.02, drift=0.001, speed_noise=0.002, fix_every=2,
        estimator=estimator)
    assert odometry_error > 5.0 and abs(odometry_heading) > 0.3  # dead reckoning alone is far off after 700 m
    true_per_odometer_m, drift_per_m = estimator.odometry_calibration
    assert true_per_odometer_m == pytest.approx(1 / 1.02, abs=0.003)
    assert drift_per_m == pytest.approx(-0.001 / 1.02, abs=0.0003)  # the estimate turns back what odometry adds
    late = errors[len(errors) // 2:]
    assert sum(late) / len(late) < 0.3  # five times better than one 1.5 m fix (the 3-state filter's was 0.35 m)
    assert max(abs(h) for h in headings[len(headings) // 2:]) < 0.05  # (the 3-state filter's: 0.073 rad)


def test_reversing_moves_the_estimate_backwards() -> None:
    estimator = PoseEstimator(5.0, 5.0, math.pi / 2, sigma_xy=0.5)
    estimator.predict(Odometry(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    estimator.predict(Odometry(1.0, -1.0, 0.0, 0.0, -1.0, 0.0, 1.0))  # 1 m backwards by the odometer
    x, y, theta = estimator.pose
    assert x == pytest.approx(5.0) and y == pytest.approx(4.0) and theta == pytest.approx(math.pi / 2)
