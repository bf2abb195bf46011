"""Keep right: shift a route's legs into the right-hand lane so oncoming robots pass each other.

Roads are drawn as centrelines; robots that all drive on them meet head-on. Each
leg of the route is moved ``offset_m`` to its right; the start (where the robot
is) and the goal (a place on the centreline) stay where they are, so the robot
pulls into its lane after starting and back to the kerbside point on arrival.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]


def keep_right(waypoints: Sequence[Point], offset_m: float) -> list[Point]:
    """The route with every leg shifted ``offset_m`` to its right (counter-clockwise angles, x east, y north)."""
    if offset_m == 0 or len(waypoints) < 2:
        return list(waypoints)
    shifted: list[Point] = [waypoints[0]]
    last = len(waypoints) - 2
    for i in range(last + 1):
        (x0, y0), (x1, y1) = waypoints[i], waypoints[i + 1]
        length = math.hypot(x1 - x0, y1 - y0)
        if length < 1e-9:
            continue
        nx, ny = (y1 - y0) / length * offset_m, -(x1 - x0) / length * offset_m
        if i > 0:
            _add(shifted, (x0 + nx, y0 + ny))
        if i < last:
            _add(shifted, (x1 + nx, y1 + ny))
    _add(shifted, waypoints[-1])
    return shifted


def _add(points: list[Point], point: Point) -> None:
    """Append ``point`` unless it repeats the last one (a zero-length leg confuses a follower)."""
    if math.dist(points[-1], point) > 1e-9:
        points.append(point)
