"""Plain shapes the world is built from, shared by the city generator, the obstacle schedule and the physics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box standing on the ground: centre (x, y), half extents, height, in metres."""

    x: float
    y: float
    half_x: float
    half_y: float
    height: float

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Whether the ground point (x, y) lies inside the box grown by ``margin`` on every side."""
        return abs(x - self.x) <= self.half_x + margin and abs(y - self.y) <= self.half_y + margin
