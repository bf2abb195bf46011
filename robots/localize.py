"""Where am I: an extended Kalman filter on (x, y, theta) from drifting wheel odometry and a noisy GNSS.

Odometry moves the estimate by the change of the odometry pose, taken in the robot's
own frame, so the odometry frame may sit anywhere; its drift is modelled as noise
that grows with distance travelled and with turning. A GNSS fix pulls the position
back, unless it is too far off to be believed; so does a full pose measured by
matching the lidar scan against the shared map (robots.scan_match), gated the same
way and never used to jump: a match far off the estimate is dropped, not followed. Angles are radians, counter-clockwise
from +x, normalized to (-pi, pi]. Plain floats: a predict and a correct cost a few
microseconds, which matters with a thousand robots in one process.
"""

from __future__ import annotations

import math

import numpy as np

from robots.body import GnssFix, Odometry

_POS_VAR_PER_M = 0.01  # m^2 per metre: about 2 % of distance, for drift that stays correlated over some 25 m
_HEADING_VAR_PER_M = 1e-4  # rad^2 per metre: heading wanders 0.01 rad per square-root metre
_TURN_FRACTION = 0.01  # heading 1-sigma error as a fraction of the angle turned: 1 %
_GATE = 13.8  # chi-square, 2 degrees of freedom, 99.9 %: a fix farther off than this is an outlier
_GATE_POSE = 16.3  # chi-square, 3 degrees of freedom, 99.9 %: a map match farther off than this is not used
_REANCHOR_AFTER = 5  # this many outliers in a row mean the estimate is lost, not the fixes wrong

_TAU = 2.0 * math.pi


def normalize_angle(a: float) -> float:
    """The angle ``a`` (radians) brought into (-pi, pi]."""
    a = math.remainder(a, _TAU)
    return a + _TAU if a <= -math.pi else a


class PoseEstimator:
    """The robot's belief of its pose in the world frame, with its 3x3 covariance (x, y, theta)."""

    def __init__(self, x: float, y: float, theta: float, *, sigma_xy: float = 0.5, sigma_theta: float = 0.05) -> None:
        self._x, self._y, self._theta = float(x), float(y), normalize_angle(theta)
        v_xy, v_theta = sigma_xy * sigma_xy, sigma_theta * sigma_theta
        # the symmetric covariance, upper triangle
        self._p = [v_xy, 0.0, 0.0, v_xy, 0.0, v_theta]  # p00, p01, p02, p11, p12, p22
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
        p00, p01, p02, p11, p12, p22 = self._p
        return np.array([[p00, p01, p02], [p01, p11, p12], [p02, p12, p22]])

    def predict(self, odom: Odometry) -> None:
        """Move the estimate by the odometry's motion since the previous call (the first call only remembers)."""
        prev, self._odom = self._odom, odom
        if prev is None:
            return
        ox, oy = odom.x - prev.x, odom.y - prev.y
        c, s = math.cos(prev.theta), math.sin(prev.theta)
        forward, left = c * ox + s * oy, c * oy - s * ox  # the motion in the robot's frame at the previous pose
        turn = normalize_angle(odom.theta - prev.theta)
        c, s = math.cos(self._theta), math.sin(self._theta)
        dx, dy = c * forward - s * left, s * forward + c * left
        self._x += dx
        self._y += dy
        self._theta = normalize_angle(self._theta + turn)
        # P <- F P F^T + Q, with F = [[1, 0, -dy], [0, 1, dx], [0, 0, 1]]
        a, b = -dy, dx
        p00, p01, p02, p11, p12, p22 = self._p
        distance = math.hypot(forward, left)
        q_pos = _POS_VAR_PER_M * distance
        q_turn = _TURN_FRACTION * turn
        self._p = [
            p00 + 2.0 * a * p02 + a * a * p22 + q_pos,
            p01 + a * p12 + b * p02 + a * b * p22,
            p02 + a * p22,
            p11 + 2.0 * b * p12 + b * b * p22 + q_pos,
            p12 + b * p22,
            p22 + _HEADING_VAR_PER_M * distance + q_turn * q_turn,
        ]

    def correct(self, fix: GnssFix) -> bool:
        """Pull the estimate towards a GNSS fix; False when the fix was seen before or rejected as an outlier."""
        if fix.t_s == self._fix_t:
            return False
        self._fix_t = fix.t_s
        r = fix.sigma_m * fix.sigma_m
        p00, p01, p02, p11, p12, p22 = self._p
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
        # K = P H^T S^-1, where P H^T is P's first two columns: (p00, p01), (p01, p11), (p02, p12)
        k00, k01 = p00 * i00 + p01 * i01, p00 * i01 + p01 * i11
        k10, k11 = p01 * i00 + p11 * i01, p01 * i01 + p11 * i11
        k20, k21 = p02 * i00 + p12 * i01, p02 * i01 + p12 * i11
        self._x += k00 * zx + k01 * zy
        self._y += k10 * zx + k11 * zy
        self._theta = normalize_angle(self._theta + k20 * zx + k21 * zy)
        # P <- P - K (P H^T)^T
        self._p = [
            p00 - (k00 * p00 + k01 * p01),
            p01 - (k00 * p01 + k01 * p11),
            p02 - (k00 * p02 + k01 * p12),
            p11 - (k10 * p01 + k11 * p11),
            p12 - (k10 * p02 + k11 * p12),
            p22 - (k20 * p02 + k21 * p12),
        ]
        return True

    def correct_pose(self, pose: tuple[float, float, float], covariance: np.ndarray) -> bool:
        """Pull the estimate towards a measured full pose (x, y, theta) with its 3x3 covariance, such as a scan
        matched to the map; False when it is too far off to be believed (it never re-anchors the estimate)."""
        p = self.covariance
        z = np.array([pose[0] - self._x, pose[1] - self._y, normalize_angle(pose[2] - self._theta)])
        s = p + covariance
        try:
            gain = np.linalg.solve(s, p).T  # K = P S^-1 (both symmetric)
            if float(z @ np.linalg.solve(s, z)) > _GATE_POSE:
                return False
        except np.linalg.LinAlgError:
            return False
        dx, dy, dtheta = gain @ z
        self._x += float(dx)
        self._y += float(dy)
        self._theta = normalize_angle(self._theta + float(dtheta))
        p = p - gain @ p
        p = (p + p.T) / 2.0
        self._p = [float(p[0, 0]), float(p[0, 1]), float(p[0, 2]), float(p[1, 1]), float(p[1, 2]), float(p[2, 2])]
        return True

    def _reanchor(self, x: float, y: float, variance: float) -> None:
        """Lost: jump to the fix, with its variance and no correlation to the heading."""
        self._x, self._y = x, y
        p22 = self._p[5]
        self._p = [variance, 0.0, 0.0, variance, 0.0, p22]
        self._outliers = 0
