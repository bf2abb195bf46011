"""The marketplace's terms: how it picks winners, how long bidding and tasks last, and what a trip is worth.

``MarketPolicy`` is one frozen value the market service runs on; ``from_mapping`` builds it from a
TOML table (``[market]``), refusing unknown keys by name. Prices are integer minor units (cents):
``quote`` is the most a customer offers for a trip, ``base_price`` plus ``price_per_km`` for every
started cent of the Manhattan distance in kilometres (robots drive the city's grid of streets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from identity.errors import DepaiError
from marketplace.auction import EVALUATORS


class PolicyError(DepaiError, ValueError):
    """A market policy value that cannot be used; the message names the field and what it takes."""

    code = "bad_policy"


@dataclass(frozen=True)
class MarketPolicy:
    """How the marketplace runs: the auction's evaluator, its bid window, tasks' life and the price of a trip."""

    evaluator: str = "quickest"  # a name in marketplace.auction.EVALUATORS
    bid_window_s: float = 2.0  # how long a task collects bids before the batch auction assigns it
    task_life_s: float = 900.0  # from posting to the deadline, after which an untaken task is refunded
    release_after_s: float = 30.0  # a robot born again must name its awarded task in telemetry by then, or lose it
    base_price: int = 600  # cents, for any trip
    price_per_km: int = 900  # cents per km of Manhattan distance, rounded up to the cent

    def __post_init__(self) -> None:
        if not isinstance(self.evaluator, str) or self.evaluator not in EVALUATORS:
            raise PolicyError(f"evaluator must be one of {', '.join(sorted(EVALUATORS))}, got {self.evaluator!r}",
                              code="unknown_evaluator")
        for name in ("bid_window_s", "task_life_s", "release_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= 0:
                raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}", code="bad_duration")
        for name in ("base_price", "price_per_km"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(f"{name} must be a whole number of cents, 0 or more, got {value!r}",
                                  code="bad_price", hint="money is integer minor units: 6 EUR is 600")

    def quote(self, pickup: tuple[float, float], dropoff: tuple[float, float]) -> int:
        """The most a customer offers for carrying a parcel from ``pickup`` to ``dropoff`` (metres), in cents."""
        distance_km = (abs(pickup[0] - dropoff[0]) + abs(pickup[1] - dropoff[1])) / 1000
        return self.base_price + math.ceil(self.price_per_km * distance_km)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> MarketPolicy:
        """The policy a configuration table describes (missing keys take the defaults; unknown ones are refused)."""
        known = [field.name for field in fields(cls)]
        unknown = sorted(str(key) for key in table if key not in known)
        if unknown:
            raise PolicyError(f"unknown market policy key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(key) for key in unknown)}", code="unknown_key",
                              hint=f"the keys are {', '.join(known)}")
        return cls(**table)
