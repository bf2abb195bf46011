"""Where am I: an extended Kalman filter on the pose (x, y, theta) and the odometry's own errors, from wheel
odometry and a noisy GNSS.

Odometry moves the estimate by the change of the odometry pose, taken in the robot's
own frame, so the odometry frame may sit anywhere. Its errors are mostly not noise
but per-robot constants (sim.sensors.NoiseSpec draws them once per robot): the
wheels' common radius error scales every distance, and the left/right mismatch
turns the robot a little per metre. So the state carries both (online odometry
calibration with an augmented state: Thrun, Burgard and Fox, "Probabilistic
Robotics", 2005, the EKF of sections 3.3 and 7.4 with the calibration in the
state; Roy and Thrun, "Online Self-Calibration for Mobile Robots", ICRA 1999):
k, the true distance per odometer metre, and b, the heading drift per odometer
metre. The fixes observe them over distance, which leaves only the wheels' slip
as process noise, so the filter averages GNSS over a window far longer than
when the constants were modelled as noise (position error p50 / p95 0.29 / 0.61 m
then, 0.20 / 0.54 m now in benchmarks/map_accuracy.py at 1.5 m GNSS; the slip's
heading random walk is what limits it now, see docs/map.md).

A GNSS fix pulls the position back, unless it is too far off to be believed; so
does a full pose measured by matching the lidar scan against the shared map
(robots.scan_match), gated the same way and never used to jump: a match far off
the estimate is dropped, not followed. Angles are radians, counter-clockwise
from +x, normalized to (-pi, pi]. Plain floats, the covariance's
upper triangle updated through the motion's few nonzero Jacobian entries: a
predict and a GNSS correct cost a few microseconds (about twice the 3-state
filter's), which matters with a thousand robots in one process.
"""

from __future__ import annotations

import math

import numpy as np

from robots.body import GnssFix, Odometry

# Process noise: the wheels' slip only (NoiseSpec.odom_noise_sigma, 0.002 m per square-root metre of each wheel's
# travel, on a 0.5 m wheel base); the constant errors are states.
_POS_VAR_PER_M = 1e-5  # m^2 per metre: the slip's 2e-6 along the path, with room for the wheels skidding sideways
_HEADING_VAR_PER_M = 3.2e-5  # rad^2 per metre: 2 * 0.002^2 / 0.5^2, the two wheels' slip differing
_HEADING_VAR_PER_RAD = 8e-6  # rad^2 per radian turned in place: each wheel slips over 0.25 m per radian
# The constant errors' priors, twice NoiseSpec's draws so a robot at its spec's 2 sigma still starts within one.
_SCALE_SIGMA = 0.02  # true distance per odometer metre: 1 +- this (odom_scale_sigma is 1 %)
_DRIFT_SIGMA = 0.002  # rad per metre: the mismatch's turn (odom_mismatch_sigma 0.0005 over a 0.5 m base: 0.001)
_GATE = 13.8  # chi-square, 2 degrees of freedom, 99.9 %: a fix farther off than this is an outlier
_GATE_POSE = 16.3  # chi-square, 3 degrees of freedom, 99.9 %: a map match farther off than this is not used
_REANCHOR_AFTER = 5  # this many outliers in a row mean the estimate is lost, not the fixes wrong

_TAU = 2.0 * math.pi
_UPPER = [(i, j) for i in range(5) for j in range(i, 5)]  # the order of the covariance's upper triangle


def normalize_angle(a: float) -> float:
    """The angle ``a`` (radians) brought into (-pi, pi]."""
    a = math.remainder(a, _TAU)
    return a + _TAU if a <= -math.pi else a


class PoseEstimator:
    """The robot's belief of its pose in the world frame and of its odometry's scale and drift, with their 5x5
    covariance (x, y, theta, scale, drift)."""

    def __init__(self, x: float, y: float, theta: float, *, sigma_xy: float = 0.5, sigma_theta: float = 0.05) -> None:
        self._x, self._y, self._theta = float(x), float(y), normalize_angle(theta)
        self._scale, self._drift = 1.0, 0.0
        v_xy = sigma_xy * sigma_xy
        # the symmetric covariance's upper triangle, in _UPPER's order: p00 p01 p02 p03 p04 p11 p12 ... p34 p44
        self._p = [v_xy, 0.0, 0.0, 0.0, 0.0, v_xy, 0.0, 0.0, 0.0, sigma_theta * sigma_theta, 0.0, 0.0,
                   _SCALE_SIGMA * _SCALE_SIGMA, 0.0, _DRIFT_SIGMA * _DRIFT_SIGMA]
        self._odom: Odometry | None = None
        self._fix_t: float | None = None
        self._outliers = 0

    @property
    def pose(self) -> tuple[float, float, float]:
        """The estimated (x, y, theta)."""
        return self._x, self._y, self._theta

    @property
    def covariance(self) -> np.ndarray:
        """The 3x3 covariance of (x, y, theta)."""
        return self._full()[:3, :3].copy()

    @property
    def odometry_calibration(self) -> tuple[float, float]:
        """The estimated true distance per odometer metre, and heading drift (rad, counter-clockwise) per metre."""
        return self._scale, self._drift

    def predict(self, odom: Odometry) -> None:
        """Move the estimate by the odometry's motion since the previous call (the first call only remembers)."""
        prev, self._odom = self._odom, odom
        if prev is None:
            return
        ox, oy = odom.x - prev.x, odom.y - prev.y
        c, s = math.cos(prev.theta), math.sin(prev.theta)
        forward, left = c * ox + s * oy, c * oy - s * ox  # the motion in the robot's frame at the previous pose
        odo_turn = normalize_angle(odom.theta - prev.theta)
        distance = math.hypot(forward, left)
        if distance == 0.0 and odo_turn == 0.0:
            return
        turn = self._scale * odo_turn + self._drift * distance
        # the chord's direction as odometry saw it, turned by half the turn it got wrong
        chord = self._theta + math.atan2(left, forward) + (turn - odo_turn) / 2.0
        c, s = math.cos(chord), math.sin(chord)
        step = self._scale * distance
        self._x += c * step
        self._y += s * step
        self._theta = normalize_angle(self._theta + turn)
        # P <- F P F^T + Q; F's rows: x = (1, 0, a0, c0, 0), y = (0, 1, a1, c1, 0), theta = (0, 0, 1, t, u), identity
        a0, c0, a1, c1, t, u = -s * step, c * distance, c * step, s * distance, odo_turn, distance
        p00, p01, p02, p03, p04, p11, p12, p13, p14, p22, p23, p24, p33, p34, p44 = self._p
        # the columns P F_i^T for the rows i = x, y, theta, as far as they are needed
        v00, v02, v03, v04 = p00 + a0 * p02 + c0 * p03, p02 + a0 * p22 + c0 * p23, p03 + a0 * p23 + c0 * p33, \
            p04 + a0 * p24 + c0 * p34
        v10, v11, v12 = p01 + a1 * p02 + c1 * p03, p11 + a1 * p12 + c1 * p13, p12 + a1 * p22 + c1 * p23
        v13, v14 = p13 + a1 * p23 + c1 * p33, p14 + a1 * p24 + c1 * p34
        v20, v21, v22 = p02 + t * p03 + u * p04, p12 + t * p13 + u * p14, p22 + t * p23 + u * p24
        v23, v24 = p23 + t * p33 + u * p34, p24 + t * p34 + u * p44
        q_pos = _POS_VAR_PER_M * distance
        self._p = [
            v00 + a0 * v02 + c0 * v03 + q_pos, v10 + a0 * v12 + c0 * v13, v20 + a0 * v22 + c0 * v23, v03, v04,
            v11 + a1 * v12 + c1 * v13 + q_pos, v21 + a1 * v22 + c1 * v23, v13, v14,
            v22 + t * v23 + u * v24 + _HEADING_VAR_PER_M * distance + _HEADING_VAR_PER_RAD * abs(odo_turn), v23, v24,
            p33, p34, p44,
        ]

    def correct(self, fix: GnssFix) -> bool:
        """Pull the estimate towards a GNSS fix; False when the fix was seen before or rejected as an outlier."""
        if fix.t_s == self._fix_t:
            return False
        self._fix_t = fix.t_s
        r = fix.sigma_m * fix.sigma_m
        p00, p01, p02, p03, p04, p11, p12, p13, p14, p22, p23, p24, p33, p34, p44 = self._p
        zx, zy = fix.x - self._x, fix.y - self._y
        s00, s11 = p00 + r, p11 + r
        det = s00 * s11 - p01 * p01
        i00, i01, i11 = s11 / det, -p01 / det, s00 / det  # S^-1
        if zx * (i00 * zx + i01 * zy) + zy * (i01 * zx + i11 * zy) > _GATE:
            self._outliers += 1
            if self._outliers >= _REANCHOR_AFTER:
                self._reanchor(fix.x, fix.y, r)
                return True
            return False
        self._outliers = 0
        # K = P H^T S^-1, where P H^T is P's first two columns; row m of K is (km0, km1)
        k00, k01 = p00 * i00 + p01 * i01, p00 * i01 + p01 * i11
        k10, k11 = p01 * i00 + p11 * i01, p01 * i01 + p11 * i11
        k20, k21 = p02 * i00 + p12 * i01, p02 * i01 + p12 * i11
        k30, k31 = p03 * i00 + p13 * i01, p03 * i01 + p13 * i11
        k40, k41 = p04 * i00 + p14 * i01, p04 * i01 + p14 * i11
        self._x += k00 * zx + k01 * zy
        self._y += k10 * zx + k11 * zy
        self._theta = normalize_angle(self._theta + k20 * zx + k21 * zy)
        self._scale += k30 * zx + k31 * zy
        self._drift += k40 * zx + k41 * zy
        # P <- P - K (P H^T)^T: entry (m, n) loses km0 * p0n + km1 * p1n
        self._p = [
            p00 - (k00 * p00 + k01 * p01), p01 - (k00 * p01 + k01 * p11), p02 - (k00 * p02 + k01 * p12),
            p03 - (k00 * p03 + k01 * p13), p04 - (k00 * p04 + k01 * p14),
            p11 - (k10 * p01 + k11 * p11), p12 - (k10 * p02 + k11 * p12), p13 - (k10 * p03 + k11 * p13),
            p14 - (k10 * p04 + k11 * p14),
            p22 - (k20 * p02 + k21 * p12), p23 - (k20 * p03 + k21 * p13), p24 - (k20 * p04 + k21 * p14),
            p33 - (k30 * p03 + k31 * p13), p34 - (k30 * p04 + k31 * p14),
            p44 - (k40 * p04 + k41 * p14),
        ]
        return True

    def correct_pose(self, pose: tuple[float, float, float], covariance: np.ndarray) -> bool:
        """Pull the estimate towards a measured full pose (x, y, theta) with its 3x3 covariance, such as a scan
        matched to the map; False when it is too far off to be believed (it never re-anchors the estimate)."""
        p = self._full()
        z = np.array([pose[0] - self._x, pose[1] - self._y, normalize_angle(pose[2] - self._theta)])
        s = p[:3, :3] + covariance
        try:
            if float(z @ np.linalg.solve(s, z)) > _GATE_POSE:
                return False
            gain = np.linalg.solve(s, p[:3]).T  # K = P H^T S^-1 (S symmetric)
        except np.linalg.LinAlgError:
            return False
        dx, dy, dtheta, dscale, ddrift = gain @ z
        self._x += float(dx)
        self._y += float(dy)
        self._theta = normalize_angle(self._theta + float(dtheta))
        self._scale += float(dscale)
        self._drift += float(ddrift)
        p = p - gain @ p[:3]
        self._p = [float((p[i, j] + p[j, i]) / 2.0) for i, j in _UPPER]
        return True

    def _full(self) -> np.ndarray:
        """The 5x5 covariance as an array."""
        p = np.empty((5, 5))
        for (i, j), v in zip(_UPPER, self._p):
            p[i, j] = p[j, i] = v
        return p

    def _reanchor(self, x: float, y: float, variance: float) -> None:
        """Lost: jump to the fix, with its variance and no correlation to the rest."""
        self._x, self._y = x, y
        self._p = [0.0 if i < 2 else v for (i, _), v in zip(_UPPER, self._p)]
        self._p[0] = self._p[5] = variance  # p00, p11
        self._outliers = 0
