"""Reactive obstacle avoidance from the lidar, and knowing when to give up and plan around.

``Avoider`` bends the follower's (v, w) command: it slows for whatever is in the
robot's corridor ahead, swerves towards a free lane beside it, and stops when
nothing is left. ``BlockageDetector`` turns "stopped, or hardly moving, for too
long" into one "replan now". The scan is in the robot frame, centred on the robot,
angles counter-clockwise from straight ahead; w is counter-clockwise (left) positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_CENTRED_M = 0.1  # an obstacle whose returns average closer than this to the centreline counts as dead ahead
_FREER_M = 0.5  # a lane must be clear this much farther than straight ahead to be worth swerving into


@dataclass(frozen=True, slots=True)
class _Half:
    """The rays of one half of a scan, ahead or behind, seen in the direction of travel (x ahead, y left)."""

    index: np.ndarray  # which rays of the scan
    cos: list[float]  # their directions in the travel frame, as plain floats for a short Python loop
    sin: list[float]
    reach: np.ndarray  # per ray of the scan (float32, as lidars report): a return this near is in the corridor, slowing


def _half(angles: np.ndarray, sign: float, half_width: float, reach: float) -> _Half:
    """One half of a scan: ``sign`` +1 for the rays ahead, -1 for those behind (turned half a turn)."""
    cos, sin = sign * np.cos(angles), sign * np.sin(angles)
    inside = cos > 1e-9
    threshold = np.minimum(half_width / np.maximum(np.abs(sin), 1e-12), reach / np.where(inside, cos, 1.0))
    index = np.flatnonzero(inside)
    return _Half(index, cos[index].tolist(), sin[index].tolist(), np.where(inside, threshold, -1.0).astype(np.float32))


class Avoider:
    """Makes a drive command safe for what the lidar sees: slow, swerve, or stop and say blocked.

    The robot's corridor is its width plus ``side_clearance_m`` each side; a free lane is
    a corridor-wide strip right beside it. Between ``slow_m`` and ``stop_m`` of clearance
    (measured from the robot's edge) the speed falls linearly to zero, and the turn rate
    blends towards ``swerve_rps`` in the direction of the freer lane.
    """

    def __init__(self, radius_m: float, stop_m: float = 0.4, slow_m: float = 2.5, side_clearance_m: float = 0.3,
                 swerve_rps: float = 1.0) -> None:
        if not 0.0 <= stop_m < slow_m:
            raise ValueError(f"need 0 <= stop_m < slow_m, got stop_m={stop_m}, slow_m={slow_m}")
        self.radius_m = radius_m
        self.stop_m = stop_m
        self.slow_m = slow_m
        self.swerve_rps = swerve_rps
        self._half_width = radius_m + side_clearance_m
        self._reach = slow_m + radius_m  # a return farther ahead than this cannot slow the robot
        self._far = math.hypot(self._reach, 3.0 * self._half_width)  # nor one farther away than this, in any lane
        self._layout: tuple[float, float, int] | None = None
        self._halves: tuple[_Half, _Half] | None = None

    def adjust(self, v: float, w: float, ranges: np.ndarray, angle_min: float,
               angle_increment: float, nearest: float | None = None) -> tuple[float, float, bool]:
        """The safe (v, w) for the commanded one, and whether the way is blocked so the robot had to stop.

        ``nearest`` (the scan's shortest range, if the caller knows it) lets a clear scan return at once.
        """
        if v == 0.0 or (nearest is not None and nearest > self._far):
            return v, w, False
        layout = (angle_min, angle_increment, len(ranges))
        if layout != self._layout:
            angles = angle_min + angle_increment * np.arange(len(ranges))
            self._layout = layout
            self._halves = (_half(angles, 1.0, self._half_width, self._reach),
                            _half(angles, -1.0, self._half_width, self._reach))
        forward = v > 0.0
        half = self._halves[0 if forward else 1]
        if not np.less_equal(ranges, half.reach).any():  # nothing in the corridor within slowing range (inf, NaN: none)
            return v, w, False
        ahead, left, right, mean_y = self._clearances(ranges[half.index].tolist(), half)
        if ahead >= self.slow_m:
            return v, w, False
        scale = max(0.0, (ahead - self.stop_m) / (self.slow_m - self.stop_m))
        if scale == 0.0 and not forward:
            return 0.0, 0.0, True
        if not forward:  # reversing: slow down along the same arc, no swerving
            return v * scale, w * scale, False
        best = max(left, right)
        if best < ahead + _FREER_M or (scale == 0.0 and best < self.slow_m):  # no lane to swerve into
            return (0.0, 0.0, True) if scale == 0.0 else (v * scale, w * scale, False)
        if left != right:
            toward = 1.0 if left > right else -1.0
        else:  # both lanes free: pass on the right unless the obstacle sits clearly to the right
            toward = 1.0 if mean_y < -_CENTRED_M else -1.0
        closeness = 1.0 - scale
        return v * scale, w * scale + closeness * toward * self.swerve_rps, False

    def _clearances(self, ranges: list[float], half: _Half) -> tuple[float, float, float, float]:
        """Clearances of the corridor, the left lane and the right lane (each at most slow_m), and the mean
        offset (metres, left positive) of the corridor's returns within slowing range."""
        half_width, reach, far = self._half_width, self._reach, self._far
        ahead = left = right = reach
        sum_y, count = 0.0, 0
        for r, c, s in zip(ranges, half.cos, half.sin):
            if not r <= far:  # no return (inf, NaN), or too far away to matter
                continue
            x, y = r * c, r * s
            if y > half_width:
                if y <= 3.0 * half_width and x < left:
                    left = x
            elif y < -half_width:
                if y >= -3.0 * half_width and x < right:
                    right = x
            elif x < reach:
                ahead = min(ahead, x)
                sum_y += y
                count += 1
        radius = self.radius_m
        return ahead - radius, left - radius, right - radius, sum_y / count if count else 0.0


class BlockageDetector:
    """Says "replan now" once the robot has been blocked, or has moved less than ``min_progress_m``, for a while.

    Feed it only while the robot means to drive; ``reset()`` when a new route starts.
    """

    def __init__(self, patience_s: float = 4.0, min_progress_m: float = 0.5) -> None:
        self.patience_s = patience_s
        self.min_progress_m = min_progress_m
        self._since: float | None = None  # when the robot was last at the anchor point
        self._anchor = (0.0, 0.0)
        self._blocked_since: float | None = None

    def reset(self) -> None:
        """Forget the past: the next update starts a fresh watch."""
        self._since = None
        self._blocked_since = None

    def update(self, t_s: float, x: float, y: float, blocked: bool) -> bool:
        """True when the robot should plan around: blocked or stuck for ``patience_s``; then the watch restarts."""
        if not blocked:
            self._blocked_since = None
        elif self._blocked_since is None:
            self._blocked_since = t_s
        ax, ay = self._anchor
        if self._since is None or math.hypot(x - ax, y - ay) >= self.min_progress_m:
            self._since, self._anchor = t_s, (x, y)
        stuck = t_s - self._since >= self.patience_s
        held = self._blocked_since is not None and t_s - self._blocked_since >= self.patience_s
        if not (stuck or held):
            return False
        self._since, self._anchor = t_s, (x, y)
        self._blocked_since = t_s if blocked else None
        return True
