"""The market policy: a trip's price by hand, and every bad value refused by name."""

from __future__ import annotations

import tomllib

import pytest

from identity.errors import DepaiError
from marketplace.auction import EVALUATORS
from marketplace.policy import MarketPolicy, PolicyError


@pytest.mark.parametrize(("pickup", "dropoff", "cents"), [
    ((0.0, 0.0), (0.0, 0.0), 600),  # no distance: the base price alone
    ((0.0, 0.0), (1000.0, 0.0), 1500),  # 1 km: 600 + 900
    ((0.0, 0.0), (300.0, 400.0), 1230),  # Manhattan 700 m (not 500 m as the crow flies): 600 + 630
    ((-250.0, 40.0), (250.0, -60.0), 1140),  # 500 + 100 m = 0.6 km: 600 + 540
    ((0.0, 0.0), (1.0, 0.0), 601),  # 1 m is 0.9 cents: rounded up to 1
    ((0.0, 0.0), (3.0, 0.0), 603),  # 2.7 cents -> 3
    ((100.0, 200.0), (1100.0, 1545.0), 2711),  # 1000 + 1345 m = 2.345 km: 2110.5 cents -> 2111, + 600
    ((1500.0, 0.0), (0.0, 0.0), 1950),  # the same either way: 600 + 1350
])
def test_quote_is_the_base_price_plus_the_manhattan_kilometres_rounded_up(pickup, dropoff, cents) -> None:
    assert MarketPolicy().quote(pickup, dropoff) == cents


def test_quote_under_other_prices() -> None:
    assert MarketPolicy(base_price=0, price_per_km=1000).quote((0.0, 0.0), (1234.5, 0.0)) == 1235
    assert MarketPolicy(base_price=250, price_per_km=0).quote((0.0, 0.0), (5000.0, 5000.0)) == 250
    assert isinstance(MarketPolicy().quote((0.0, 0.0), (1.0, 0.0)), int)


def test_the_defaults_are_the_markets_terms_so_far() -> None:
    policy = MarketPolicy()
    assert (policy.evaluator, policy.bid_window_s, policy.task_life_s, policy.base_price, policy.price_per_km) == \
        ("quickest", 2.0, 900.0, 600, 900)


@pytest.mark.parametrize("evaluator", sorted(EVALUATORS))
def test_every_evaluator_of_the_auction_is_accepted(evaluator: str) -> None:
    assert MarketPolicy(evaluator=evaluator).evaluator == evaluator


@pytest.mark.parametrize(("terms", "code", "words"), [
    ({"evaluator": "fastest"}, "unknown_evaluator", "evaluator must be one of cheapest, quickest"),
    ({"evaluator": None}, "unknown_evaluator", "got None"),
    ({"bid_window_s": 0}, "bad_duration", "bid_window_s must be a positive number"),
    ({"bid_window_s": -1.0}, "bad_duration", "bid_window_s"),
    ({"bid_window_s": float("nan")}, "bad_duration", "bid_window_s"),
    ({"task_life_s": float("inf")}, "bad_duration", "task_life_s"),
    ({"task_life_s": "900"}, "bad_duration", "task_life_s"),
    ({"task_life_s": True}, "bad_duration", "task_life_s"),
    ({"base_price": -1}, "bad_price", "base_price must be a whole number of cents, 0 or more, got -1"),
    ({"base_price": 6.0}, "bad_price", "base_price"),
    ({"price_per_km": -900}, "bad_price", "price_per_km"),
    ({"price_per_km": 9.5}, "bad_price", "price_per_km"),
    ({"price_per_km": False}, "bad_price", "price_per_km"),
])
def test_bad_values_are_refused_by_name(terms: dict, code: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words) as refused:
        MarketPolicy(**terms)
    assert refused.value.code == code
    assert isinstance(refused.value, DepaiError) and isinstance(refused.value, ValueError)


def test_a_policy_cannot_change_once_made() -> None:
    policy = MarketPolicy()
    with pytest.raises(AttributeError):
        policy.base_price = 0  # type: ignore[misc]


def test_a_toml_table_configures_it() -> None:
    table = tomllib.loads("""
        [market]
        evaluator = "cheapest"
        bid_window_s = 5
        base_price = 500
    """)["market"]
    policy = MarketPolicy.from_mapping(table)
    assert policy == MarketPolicy(evaluator="cheapest", bid_window_s=5, task_life_s=900.0, base_price=500,
                                  price_per_km=900)
    assert MarketPolicy.from_mapping({}) == MarketPolicy()


def test_unknown_keys_are_refused_by_name() -> None:
    with pytest.raises(PolicyError, match="unknown market policy key 'price_km'") as refused:
        MarketPolicy.from_mapping({"price_km": 800})
    assert refused.value.code == "unknown_key"
    assert "price_per_km" in (refused.value.hint or "")
    with pytest.raises(PolicyError, match="keys 'bid_window', 'fee'"):
        MarketPolicy.from_mapping({"fee": 5, "bid_window": 2, "base_price": 600})


def test_a_bad_value_in_a_table_is_refused_too() -> None:
    with pytest.raises(PolicyError, match="evaluator") as refused:
        MarketPolicy.from_mapping({"evaluator": "random"})
    assert refused.value.code == "unknown_evaluator"
