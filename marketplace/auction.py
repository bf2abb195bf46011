"""The task auction: which verified offer wins a task, and which robot gets which task in a batch.

Pure functions over offers a caller has already verified: no I/O, no signing.
An evaluator turns an offer into a cost (lower wins). ``award`` picks the best
offer for one task; ``assign`` solves a whole batch at once, as an optimal
assignment (as many tasks served as possible, then the least total cost);
``assign_greedy`` is the baseline it is measured against. Money is an integer
in minor units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

REPUTATION_FLOOR = 0.05  # reputation_weighted marks a price up at most 1 / 0.05 = 20 times

Pair = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Offer:
    """One robot's verified offer to do one task: price in minor units, ETA in seconds, reputation in [0, 1]."""

    task: str
    robot: str
    price: int
    eta_s: float
    reputation: float = 1.0

    def __post_init__(self) -> None:
        """Refuse an offer no auction could weigh."""
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"offer task must be a non-empty string, not {self.task!r}")
        if not isinstance(self.robot, str) or not self.robot:
            raise ValueError(f"offer robot must be a non-empty string, not {self.robot!r}")
        if isinstance(self.price, bool) or not isinstance(self.price, int) or self.price <= 0:
            raise ValueError(f"offer price must be a positive integer in minor units, not {self.price!r}")
        if isinstance(self.eta_s, bool) or not isinstance(self.eta_s, int | float) or not 0 <= self.eta_s < math.inf:
            raise ValueError(f"offer eta_s must be a finite number of seconds >= 0, not {self.eta_s!r}")
        if isinstance(self.reputation, bool) or not isinstance(self.reputation, int | float) \
                or not 0 <= self.reputation <= 1:
            raise ValueError(f"offer reputation must be a number in [0, 1], not {self.reputation!r}")


Evaluator = Callable[[Offer], float]


def quickest(offer: Offer) -> float:
    """The offer's ETA in seconds: the soonest delivery wins."""
    return float(offer.eta_s)


def cheapest(offer: Offer) -> float:
    """The offer's price in minor units: the lowest price wins."""
    return float(offer.price)


def reputation_weighted(offer: Offer) -> float:
    """price / max(reputation, 0.05): a robot of reputation 0.5 must ask half as much to beat a perfect one."""
    return offer.price / max(offer.reputation, REPUTATION_FLOOR)


EVALUATORS: dict[str, Evaluator] = {
    "quickest": quickest,
    "cheapest": cheapest,
    "reputation_weighted": reputation_weighted,
}


def _refuse_duplicates(offers: Sequence[Offer]) -> None:
    """One offer per (task, robot): a second one would make the choice depend on the order given."""
    seen: set[tuple[str, str]] = set()
    for offer in offers:
        if (offer.task, offer.robot) in seen:
            raise ValueError(f"two offers from {offer.robot} for task {offer.task}")
        seen.add((offer.task, offer.robot))


def award(offers: Sequence[Offer], evaluator: Evaluator) -> Offer | None:
    """The best offer for one task, or None: least cost, then price, ETA and robot id, so ties never depend on order."""
    if not offers:
        return None
    tasks = {offer.task for offer in offers}
    if len(tasks) > 1:
        raise ValueError(f"award weighs offers for one task, got {len(tasks)}: {sorted(tasks)}")
    _refuse_duplicates(offers)
    costs = {offer.robot: float(evaluator(offer)) for offer in offers}
    if any(math.isnan(cost) for cost in costs.values()):
        raise ValueError("the evaluator returned NaN")
    return min(offers, key=lambda offer: (costs[offer.robot], offer.price, offer.eta_s, offer.robot))


def _checked(cost: np.ndarray) -> np.ndarray:
    """``cost`` as a 2-D float array of finite values or +inf (no offer); NaN and -inf are refused."""
    cost = np.asarray(cost, dtype=float)
    if cost.ndim != 2:
        raise ValueError(f"the cost matrix must be 2-D (tasks x robots), not {cost.ndim}-D")
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("the cost matrix holds NaN or -inf; use +inf for no offer")
    return cost


def assign(tasks: Sequence[str], robots: Sequence[str], cost: np.ndarray) -> list[Pair]:
    """The optimal batch assignment: most tasks served, then least total cost; (task, robot) index pairs by task.

    ``cost`` is tasks x robots, ``np.inf`` where a robot made no offer. Each
    inf is replaced by a penalty larger than the spread of any finite total,
    so one more penalised pair always costs more than any finite saving;
    penalised pairs are then dropped. Finite costs are shifted to start at 0
    first, which keeps the penalty (and so the rounding) small.
    """
    cost = _checked(cost)
    if cost.shape != (len(tasks), len(robots)):
        raise ValueError(f"the cost matrix is {cost.shape}, not {len(tasks)} tasks x {len(robots)} robots")
    finite = np.isfinite(cost)
    if not finite.any():
        return []
    low, high = float(cost[finite].min()), float(cost[finite].max())
    penalty = min(cost.shape) * (high - low) + 1.0
    if not math.isfinite(penalty):
        raise ValueError("finite costs spread too far to penalise missing offers")
    rows, cols = linear_sum_assignment(np.where(finite, cost - low, penalty))
    return [(int(t), int(r)) for t, r in zip(rows, cols, strict=True) if finite[t, r]]


def assign_offers(offers: Sequence[Offer], evaluator: Evaluator) -> list[Offer]:
    """The winning offers of an optimal batch assignment over ``offers``, in the order their tasks first appear."""
    _refuse_duplicates(offers)
    tasks = list(dict.fromkeys(offer.task for offer in offers))
    robots = list(dict.fromkeys(offer.robot for offer in offers))
    task_index = {task: i for i, task in enumerate(tasks)}
    robot_index = {robot: j for j, robot in enumerate(robots)}
    cost = np.full((len(tasks), len(robots)), np.inf)
    by_pair: dict[Pair, Offer] = {}
    for offer in offers:
        pair = task_index[offer.task], robot_index[offer.robot]
        cost[pair] = evaluator(offer)
        by_pair[pair] = offer
    return [by_pair[pair] for pair in assign(tasks, robots, cost)]


def assign_greedy(cost: np.ndarray) -> list[Pair]:
    """The baseline: take the cheapest remaining (task, robot) pair until none is left; pairs by task."""
    cost = _checked(cost)
    rows, cols = np.nonzero(np.isfinite(cost))
    order = np.argsort(cost[rows, cols], kind="stable")  # ties: lower task, then lower robot index first
    most = min(cost.shape)
    busy_tasks: set[int] = set()
    busy_robots: set[int] = set()
    pairs: list[Pair] = []
    for t, r in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if t in busy_tasks or r in busy_robots:
            continue
        busy_tasks.add(t)
        busy_robots.add(r)
        pairs.append((t, r))
        if len(pairs) == most:
            break
    return sorted(pairs)


def total_cost(cost: np.ndarray, pairs: Sequence[Pair]) -> float:
    """The sum of ``cost`` over ``pairs``: what an assignment costs in all."""
    if not pairs:
        return 0.0
    rows, cols = zip(*pairs, strict=True)
    return float(np.asarray(cost, dtype=float)[list(rows), list(cols)].sum())
