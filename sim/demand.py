"""Customers of the simulated city: delivery orders arriving at random, from depots to drop-off points.

Arrivals are a Poisson process (exponential gaps at ``rate_per_min``) drawn from
the seed, so the same seed brings the same orders at the same simulated times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.city import CityLayout


@dataclass(frozen=True, slots=True)
class Order:
    """A customer's delivery order: carry ``payload_kg`` from a depot to a drop-off point."""

    id: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    payload_kg: float
    created_s: float


class Demand:
    """The orders a city places over time."""

    def __init__(self, layout: CityLayout, seed: int, rate_per_min: float, *, max_kg: float = 8.0,
                 prefix: str = "order") -> None:
        """``prefix`` starts every order id (``order-0``, ...): a resumed fleet gives each run its own."""
        if rate_per_min < 0:
            raise ValueError(f"rate_per_min must not be negative, got {rate_per_min}")
        self._depots = layout.places_of("depot")
        self._dropoffs = layout.places_of("dropoff")
        if rate_per_min > 0 and (not self._depots or not self._dropoffs):
            raise ValueError("orders need at least one depot and one drop-off point in the city")
        self._rng = np.random.default_rng([seed, 0xDE11])
        self._mean_gap_s = 60.0 / rate_per_min if rate_per_min > 0 else float("inf")
        self._max_kg = max_kg
        self._next_s = self._gap()
        self._count = 0
        self._prefix = prefix

    def _gap(self) -> float:
        return float(self._rng.exponential(self._mean_gap_s)) if self._mean_gap_s != float("inf") else float("inf")

    def due(self, t_s: float) -> list[Order]:
        """The orders placed up to simulated time ``t_s`` that were not returned before."""
        orders = []
        while self._next_s <= t_s:
            depot = self._depots[int(self._rng.integers(len(self._depots)))]
            drop = self._dropoffs[int(self._rng.integers(len(self._dropoffs)))]
            kg = round(float(self._rng.uniform(0.2, self._max_kg)), 2)
            orders.append(Order(f"{self._prefix}-{self._count}", (depot.x, depot.y), (drop.x, drop.y), kg, self._next_s))
            self._count += 1
            self._next_s += self._gap()
        return orders
