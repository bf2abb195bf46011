"""Pure pursuit: steer a unicycle robot along a polyline route towards a point a little way ahead on it.

The follower only moves forward along the route: it never goes back to an earlier
segment, so a route that doubles back on itself is followed in order.
Convention: x, y in metres, theta in radians counter-clockwise from +x; the command
is (v, w) with v >= 0 in m/s and w in rad/s, counter-clockwise (left) positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_MIN_SPEED_FRACTION = 0.1  # slowing for the goal never drops below this share of max speed
_MIN_TURN_SPEED_FRACTION = 0.25  # nor does slowing for a turn, so the robot keeps turning onto the path


class PurePursuit:
    """Turns a pose into a (v, w) command that follows the current route; ``done`` once at its end."""

    def __init__(
        self,
        lookahead_m: float = 2.0,
        max_speed_mps: float = 1.5,
        max_turn_rps: float = 2.0,
        goal_tolerance_m: float = 1.0,
        slow_radius_m: float = 3.0,
    ) -> None:
        if lookahead_m <= 0.0 or max_speed_mps <= 0.0 or max_turn_rps <= 0.0 or slow_radius_m <= 0.0:
            raise ValueError("lookahead, max speed, max turn rate and slow radius must be positive")
        self.lookahead_m = lookahead_m
        self.max_speed_mps = max_speed_mps
        self.max_turn_rps = max_turn_rps
        self.goal_tolerance_m = goal_tolerance_m
        self.slow_radius_m = slow_radius_m
        # per segment: start x, y; delta x, y; length; 1 / length^2 (0 if empty); unit direction x, y
        self._segments: list[tuple[float, float, float, float, float, float, float, float]] = []
        self._after: list[float] = []  # route length left after each segment's end
        self._goal = (0.0, 0.0)
        self._index = 0
        self._remaining = 0.0
        self._done = True

    def reset(self, waypoints: Sequence[tuple[float, float]]) -> None:
        """Follow a new route (at least one point) from its first segment."""
        if not waypoints:
            raise ValueError("a route needs at least one waypoint")
        points = [(float(waypoints[0][0]), float(waypoints[0][1]))]
        for x, y in waypoints[1:]:
            if (x, y) != points[-1]:
                points.append((float(x), float(y)))
        if len(points) == 1:
            points.append(points[0])
        segments = []
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            dx, dy = bx - ax, by - ay
            length = math.hypot(dx, dy)
            if length > 0.0:
                segments.append((ax, ay, dx, dy, length, 1.0 / (length * length), dx / length, dy / length))
            else:
                segments.append((ax, ay, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        after = [0.0] * len(segments)
        for i in range(len(segments) - 2, -1, -1):
            after[i] = after[i + 1] + segments[i + 1][4]
        self._segments, self._after = segments, after
        self._goal = points[-1]
        self._index = 0
        self._remaining = after[0] + segments[0][4]
        self._done = False

    @property
    def done(self) -> bool:
        """True once the robot came within the goal tolerance of the route's end (or before any route)."""
        return self._done

    @property
    def progress(self) -> int:
        """Index of the route segment being followed (waypoint ``progress`` to ``progress + 1``)."""
        return self._index

    @property
    def remaining_m(self) -> float:
        """Route length left from the robot's projection onto the route, as of the last command."""
        return self._remaining

    def command(self, x: float, y: float, theta: float) -> tuple[float, float]:
        """The (v, w) that steers the robot at (x, y, theta) along the route; (0, 0) once done."""
        if self._done:
            return 0.0, 0.0
        segments, last = self._segments, len(self._segments) - 1
        i = self._index
        t, d2 = _project(segments[i], x, y)
        while i < last:
            t_next, d2_next = _project(segments[i + 1], x, y)
            if t < 1.0 and d2_next >= d2:
                break
            i, t, d2 = i + 1, t_next, d2_next
        self._index = i
        length = segments[i][4]
        along = (0.0 if t < 0.0 else 1.0 if t > 1.0 else t) * length
        self._remaining = length - along + self._after[i]
        gx, gy = self._goal
        if i == last and math.hypot(gx - x, gy - y) <= self.goal_tolerance_m:
            self._done = True
            return 0.0, 0.0
        lx, ly = self._ahead(i, along)
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = lx - x, ly - y
        ahead, left = c * dx + s * dy, c * dy - s * dx  # the lookahead point in the robot's frame
        dist2 = ahead * ahead + left * left
        if dist2 < 1e-12:
            return 0.0, 0.0
        if ahead < 0.0:  # the point is behind: turn in place towards it
            return 0.0, math.copysign(self.max_turn_rps, left)
        curvature = 2.0 * left / dist2  # = 2 sin(alpha) / distance
        v = self.max_speed_mps * max(min(1.0, self._remaining / self.slow_radius_m), _MIN_SPEED_FRACTION)
        v *= max(ahead / math.sqrt(dist2), _MIN_TURN_SPEED_FRACTION)  # cos(alpha): slower into sharp turns
        w = v * curvature
        if abs(w) > self.max_turn_rps:  # keep the arc, slow down to turn it within the limit
            v = self.max_turn_rps / abs(curvature)
            w = math.copysign(self.max_turn_rps, curvature)
        return v, w

    def _ahead(self, i: int, along: float) -> tuple[float, float]:
        """The point one lookahead distance further along the route than ``along`` metres into segment ``i``."""
        segments, last = self._segments, len(self._segments) - 1
        need = self.lookahead_m
        while True:
            ax, ay, _, _, length, _, ux, uy = segments[i]
            rest = length - along
            if need <= rest or i == last:
                s = along + min(need, rest)
                return ax + ux * s, ay + uy * s
            need -= rest
            i, along = i + 1, 0.0


def _project(segment: tuple[float, float, float, float, float, float, float, float], x: float,
             y: float) -> tuple[float, float]:
    """The fraction along ``segment`` of the point nearest to (x, y) (unclamped) and its squared distance."""
    ax, ay, dx, dy, _, inv_length2, _, _ = segment
    t = ((x - ax) * dx + (y - ay) * dy) * inv_length2
    u = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
    ex, ey = ax + u * dx - x, ay + u * dy - y
    return t, ex * ex + ey * ey
