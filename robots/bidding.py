"""What a robot asks for a task, and when it can be there: priced from its own route, battery and queue.

The price covers the energy and wear of the whole trip (to the pickup, on to
the dropoff) plus a base fee, in integer minor units, rounded up; a robot whose
battery could not take it through the trip and on to a charger first adds the
charging time to its ETA and its price. It does not bid for a payload it cannot
carry, or when its price would exceed the customer's maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from robots.body import BodyProfile
from robots.energy import charge_time_s, must_charge


@dataclass(frozen=True, slots=True)
class Pricing:
    """A robot owner's tariff, in minor units of the task's currency."""

    base: int = 150  # every task: handling at both ends
    per_km: int = 250  # driving, empty or not
    per_kg_km: int = 10  # carrying
    charge_surcharge: int = 100  # a trip that needs a charge first
    handling_s: float = 20.0  # loading and unloading time in the ETA
    charge_w: float = 400.0  # the charger's power, for the ETA of a charge first


@dataclass(frozen=True, slots=True)
class Quote:
    """A bid's terms: price in minor units and seconds until delivered."""

    price: int
    eta_s: float


def quote(profile: BodyProfile, pricing: Pricing, *, soc: float, to_pickup_m: float, delivery_m: float,
          to_charger_m: float, payload_kg: float, queue_s: float, max_price: int) -> Quote | None:
    """The robot's offer for a task, or None when it cannot or would not do it for at most ``max_price``."""
    if payload_kg > profile.payload_kg:
        return None
    trip_km = (to_pickup_m + delivery_m) / 1000.0
    price = pricing.base + math.ceil(pricing.per_km * trip_km + pricing.per_kg_km * payload_kg * delivery_m / 1000)
    speed = 0.8 * profile.max_speed_mps
    eta_s = queue_s + (to_pickup_m + delivery_m) / speed + pricing.handling_s
    if must_charge(profile, soc, to_goal_m=to_pickup_m + delivery_m, goal_to_charger_m=to_charger_m,
                   load_kg=payload_kg):
        price += pricing.charge_surcharge
        eta_s += charge_time_s(profile, soc, 0.95, pricing.charge_w) + 2 * to_charger_m / speed
    return Quote(price, eta_s) if price <= max_price else None
