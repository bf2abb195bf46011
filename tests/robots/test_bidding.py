"""A robot's price and ETA for a task, from its route, battery and queue."""

import pytest

from robots.bidding import Pricing, quote
from robots.body import BodyProfile

ROBOT = BodyProfile(model="test-rover", max_speed_mps=1.25, max_turn_rps=2.0, radius_m=0.35, payload_kg=20.0,
                    mass_kg=40.0, battery_wh=500.0, wh_per_m=0.05, idle_w=10.0)
TARIFF = Pricing(base=150, per_km=250, per_kg_km=10, charge_surcharge=100, handling_s=20.0)


def _quote(**overrides):
    terms = dict(soc=0.9, to_pickup_m=400.0, delivery_m=600.0, to_charger_m=100.0, payload_kg=5.0, queue_s=0.0,
                 max_price=10_000)
    return quote(ROBOT, TARIFF, **{**terms, **overrides})


def test_the_price_covers_the_whole_trip_and_the_load_rounded_up_in_minor_units() -> None:
    offer = _quote()
    assert offer.price == 150 + 250 + 30  # 1 km driven; 5 kg carried 0.6 km
    assert offer.eta_s == pytest.approx(1000.0 / 1.0 + 20.0)  # at 80 % of top speed, plus handling
    assert _quote(delivery_m=601.0).price == 431  # a fraction of a unit is rounded up, never down


def test_a_queue_and_a_longer_way_cost_time_and_money() -> None:
    assert _quote(queue_s=300.0).eta_s == pytest.approx(_quote().eta_s + 300.0)
    assert _quote(to_pickup_m=2_400.0).price > _quote().price


def test_a_trip_the_battery_cannot_take_first_needs_a_charge() -> None:
    tired = _quote(soc=0.16)
    assert tired.price == _quote().price + 100 and tired.eta_s > _quote().eta_s + 3_000


def test_no_bid_for_a_payload_it_cannot_carry_or_above_the_customers_maximum() -> None:
    assert _quote(payload_kg=25.0) is None
    assert _quote(max_price=429) is None and _quote(max_price=430) is not None
