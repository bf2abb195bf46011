"""The task auction: evaluators, single-task awards, and optimal batch assignment against brute force and greedy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching

from marketplace.auction import (
    EVALUATORS,
    Offer,
    assign,
    assign_greedy,
    assign_offers,
    award,
    cheapest,
    quickest,
    reputation_weighted,
    total_cost,
)

INF = math.inf

FAST = Offer("t1", "fast", 900, 60.0)
CHEAP = Offer("t1", "cheap", 300, 600.0, 0.2)
TRUSTED = Offer("t1", "trusted", 500, 300.0, 1.0)


def names(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def solve(cost: np.ndarray) -> list[tuple[int, int]]:
    return assign(names(cost.shape[0], "t"), names(cost.shape[1], "r"), cost)


def brute_force(cost: np.ndarray) -> tuple[int, float]:
    """The best (pairs, total) over every assignment: most finite pairs first, then least total."""
    tasks, robots = cost.shape
    if tasks > robots:
        return brute_force(cost.T)
    best = (0, 0.0)
    for perm in itertools.permutations(range(robots), tasks):
        chosen = [cost[t, r] for t, r in enumerate(perm) if math.isfinite(cost[t, r])]
        best = min(best, (len(chosen), sum(chosen)), key=lambda found: (-found[0], found[1]))
    return best


def most_pairs(cost: np.ndarray) -> int:
    """The maximum number of finite pairs any assignment can have (a maximum bipartite matching)."""
    if 0 in cost.shape:
        return 0
    matched = maximum_bipartite_matching(csr_array(np.isfinite(cost).astype(np.int8)), perm_type="column")
    return int((matched >= 0).sum())


def check_valid(cost: np.ndarray, pairs: list[tuple[int, int]]) -> None:
    tasks = [t for t, _ in pairs]
    robots = [r for _, r in pairs]
    assert len(set(tasks)) == len(tasks) and len(set(robots)) == len(robots)
    assert all(math.isfinite(cost[t, r]) for t, r in pairs)


# --- offers and evaluators ---------------------------------------------------------------------------


def test_each_evaluator_picks_what_it_should() -> None:
    offers = [FAST, CHEAP, TRUSTED]
    assert award(offers, quickest) is FAST
    assert award(offers, cheapest) is CHEAP
    assert award(offers, reputation_weighted) is TRUSTED  # 300 / 0.2 = 1500 > 500 / 1.0
    assert {name: award(offers, fn).robot for name, fn in EVALUATORS.items()} == {
        "quickest": "fast", "cheapest": "cheap", "reputation_weighted": "trusted"}


def test_reputation_weighted_divides_the_price_by_the_reputation_with_a_floor() -> None:
    assert reputation_weighted(Offer("t", "r", 400, 1.0, 0.5)) == 800.0
    assert reputation_weighted(Offer("t", "r", 400, 1.0, 1.0)) == 400.0
    assert reputation_weighted(Offer("t", "r", 400, 1.0, 0.0)) == 8000.0  # floor 0.05: at most 20x


def test_ties_are_broken_by_price_then_eta_then_robot_whatever_the_order() -> None:
    by_price = [Offer("t", "b", 500, 10.0), Offer("t", "a", 400, 10.0)]
    by_eta = [Offer("t", "b", 400, 20.0), Offer("t", "c", 400, 10.0)]
    by_robot = [Offer("t", "b", 400, 10.0), Offer("t", "a", 400, 10.0)]
    assert award(by_price, quickest).robot == "a"  # same ETA: cheaper wins
    assert award(by_eta, cheapest).robot == "c"  # same price: sooner wins
    for offers in (by_robot, by_robot[::-1]):
        assert award(offers, cheapest).robot == "a"
    weighted = [Offer("t", "b", 200, 10.0, 0.5), Offer("t", "a", 400, 10.0, 1.0)]  # both cost 400
    assert award(weighted, reputation_weighted).robot == "b"  # then the lower price


def test_no_offers_no_award() -> None:
    assert award([], cheapest) is None
    assert assign_offers([], cheapest) == []


def test_award_refuses_offers_for_different_tasks_or_two_from_one_robot() -> None:
    with pytest.raises(ValueError, match="one task"):
        award([FAST, Offer("t2", "other", 100, 1.0)], cheapest)
    with pytest.raises(ValueError, match="two offers from fast"):
        award([FAST, Offer("t1", "fast", 100, 1.0)], cheapest)
    with pytest.raises(ValueError, match="NaN"):
        award([FAST], lambda offer: math.nan)


@pytest.mark.parametrize(("fields", "message"), [
    ({"task": ""}, "task must be a non-empty string"),
    ({"robot": None}, "robot must be a non-empty string"),
    ({"price": 0}, "price must be a positive integer"),
    ({"price": -5}, "price must be a positive integer"),
    ({"price": 10.0}, "price must be a positive integer"),
    ({"price": True}, "price must be a positive integer"),
    ({"eta_s": -1.0}, "eta_s must be a finite number"),
    ({"eta_s": math.inf}, "eta_s must be a finite number"),
    ({"eta_s": math.nan}, "eta_s must be a finite number"),
    ({"reputation": 1.5}, r"reputation must be a number in \[0, 1\]"),
    ({"reputation": -0.1}, r"reputation must be a number in \[0, 1\]"),
    ({"reputation": math.nan}, r"reputation must be a number in \[0, 1\]"),
])
def test_bad_offers_are_refused(fields: dict, message: str) -> None:
    good = {"task": "t", "robot": "r", "price": 100, "eta_s": 5.0, "reputation": 0.5}
    with pytest.raises(ValueError, match=message):
        Offer(**(good | fields))


def test_an_offer_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FAST.price = 1  # type: ignore[misc]


# --- batch assignment ----------------------------------------------------------------------------------


def test_greedy_is_worse_than_optimal_in_the_classic_case() -> None:
    cost = np.array([[1.0, 2.0], [2.0, 100.0]])
    assert assign_greedy(cost) == [(0, 0), (1, 1)] and total_cost(cost, assign_greedy(cost)) == 101.0
    assert solve(cost) == [(0, 1), (1, 0)] and total_cost(cost, solve(cost)) == 4.0


def test_optimal_serves_a_task_greedy_strands() -> None:
    cost = np.array([[1.0, 2.0], [3.0, INF]])  # task 1 has one offer: robot 0, which greedy gives task 0
    assert assign_greedy(cost) == [(0, 0)]
    assert solve(cost) == [(0, 1), (1, 0)]


def test_more_tasks_served_beats_a_lower_total() -> None:
    cost = np.array([[1.0, 1e6], [1.0, INF]])  # task 1 has only robot 0; serving both costs 1e6 more
    assert solve(cost) == [(0, 1), (1, 0)] and assign_greedy(cost) == [(0, 0)]
    cost = np.array([[5.0, 1.0], [INF, 3e9]])  # serving task 1 costs 3e9 more, and still comes first
    assert solve(cost) == [(0, 0), (1, 1)]
    cost = np.array([[1e6 + 1, 1e6, INF], [INF, 1e6 + 1, INF], [INF, INF, INF]])  # near-ties survive the penalty
    assert solve(cost) == [(0, 0), (1, 1)]


def test_no_offer_at_all_and_empty_batches_assign_nothing() -> None:
    assert solve(np.full((3, 2), INF)) == [] and assign_greedy(np.full((3, 2), INF)) == []
    assert solve(np.zeros((0, 4))) == [] and solve(np.zeros((4, 0))) == []
    assert assign_greedy(np.zeros((0, 4))) == [] and total_cost(np.zeros((0, 4)), []) == 0.0


def test_assign_refuses_bad_matrices() -> None:
    with pytest.raises(ValueError, match="not 2 tasks x 3 robots"):
        assign(names(2, "t"), names(3, "r"), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        assign(["t"], ["r"], np.zeros(1))
    for bad in (math.nan, -INF):
        with pytest.raises(ValueError, match="NaN or -inf"):
            solve(np.array([[1.0, bad]]))
        with pytest.raises(ValueError, match="NaN or -inf"):
            assign_greedy(np.array([[1.0, bad]]))
    with pytest.raises(ValueError, match="spread too far"):
        solve(np.array([[-1e308, 1e308], [INF, 1.0]]))


@pytest.mark.parametrize("seed", range(40))
def test_assign_is_optimal_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tasks, robots = rng.integers(1, 7, size=2)
    cost = rng.integers(1, 50, size=(tasks, robots)).astype(float)
    cost[rng.random((tasks, robots)) < rng.choice([0.0, 0.3, 0.6])] = INF
    pairs = solve(cost)
    check_valid(cost, pairs)
    assert pairs == sorted(pairs)
    count, best = brute_force(cost)
    assert len(pairs) == count
    assert total_cost(cost, pairs) == pytest.approx(best)


def test_assign_offers_hands_back_the_winning_offers_by_task() -> None:
    offers = [Offer("t1", "a", 100, 15.0), Offer("t1", "b", 200, 10.0), Offer("t2", "a", 150, 60.0),
              Offer("t2", "b", 500, 20.0), Offer("t3", "c", 700, 5.0)]
    assert [(o.task, o.robot) for o in assign_offers(offers, cheapest)] == [("t1", "b"), ("t2", "a"), ("t3", "c")]
    assert [(o.task, o.robot) for o in assign_offers(offers, quickest)] == [("t1", "a"), ("t2", "b"), ("t3", "c")]
    with pytest.raises(ValueError, match="two offers from a for task t1"):
        assign_offers([*offers, Offer("t1", "a", 90, 1.0)], cheapest)


# --- properties ----------------------------------------------------------------------------------------

cells = st.one_of(st.just(INF), st.floats(-1_000, 1_000, allow_nan=False), st.integers(0, 20).map(float))
matrices = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=8).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=cells))


@settings(max_examples=300, deadline=None)
@given(matrices)
def test_assign_uses_each_task_and_robot_once_serves_the_most_and_never_costs_more_than_greedy(cost) -> None:
    pairs, greedy = solve(cost), assign_greedy(cost)
    check_valid(cost, pairs)
    check_valid(cost, greedy)
    assert pairs == sorted(pairs) and greedy == sorted(greedy)
    assert len(pairs) == most_pairs(cost) >= len(greedy)
    if len(pairs) == len(greedy):
        assert total_cost(cost, pairs) <= total_cost(cost, greedy) + 1e-9 * (1 + abs(total_cost(cost, greedy)))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
                  elements=st.floats(0, 1_000, allow_nan=False)))
def test_without_missing_offers_assign_matches_scipy(cost) -> None:
    rows, cols = linear_sum_assignment(cost)
    pairs = solve(cost)
    assert len(pairs) == min(cost.shape)
    assert total_cost(cost, pairs) == pytest.approx(float(cost[rows, cols].sum()), rel=1e-9, abs=1e-9)
