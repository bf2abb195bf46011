"""Batch task assignment: the optimal auction (``assign``) beside the greedy baseline, timed in the same run.

Run:  python benchmarks/auction.py [--tasks N] [--robots N] [--rounds R] [--seed N] [--quick]

The city is a 1 km x 1 km square. Each task has a random pickup and drop-off,
each robot a random position (seeded). A robot's offer for a task is priced
from the distance it would drive, robot -> pickup -> drop-off: 200 minor units
plus 150 per km, rounded to a whole minor unit; its ETA is that distance at
1.5 m/s. A robot does not bid on a pickup more than 900 m away (too far), and
a random tenth of the remaining pairs get no offer either (battery too low for
that trip): those pairs are ``inf``. The cost the auction minimises is the
price (the ``cheapest`` evaluator), so the totals are money, in minor units.

Each round times ``assign`` (scipy's linear_sum_assignment on the penalised
matrix) and ``assign_greedy`` (cheapest remaining pair first) on the same
matrix, taking turns on which goes first. Figures are medians over rounds and
every ratio is against the greedy baseline measured in the same run.

Greedy can strand a task whose only offers came from robots it already gave
away, so the optimal assignment may serve more tasks and cost more in all. The
like-for-like cost is the third row: the optimal assignment of just the tasks
greedy serves (untimed). Goals: an optimal assignment of 1,000 x 1,000 in
< 1 s, and a lower total cost than greedy for the same tasks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/auction.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np  # noqa: E402

from marketplace.auction import Pair, assign, assign_greedy, total_cost  # noqa: E402

CITY_M = 1_000.0
SPEED_M_S = 1.5
BASE_PRICE = 200  # minor units per task
PRICE_PER_KM = 150  # minor units per km driven
REACH_M = 900.0  # a robot bids only on pickups this close
NO_OFFER_SHARE = 0.10  # of the pairs in reach: battery too low for that trip
GOAL_S = 1.0
GOAL_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class Market:
    """One batch: every robot's price (inf: no offer) and ETA for every task."""

    price: np.ndarray  # tasks x robots, whole minor units as floats, inf where no offer
    eta_s: np.ndarray  # tasks x robots


def make_market(tasks: int, robots: int, rng: np.random.Generator) -> Market:
    """Random pickups, drop-offs and robots in the city, and each robot's offer for each task."""
    pickup, dropoff = rng.uniform(0, CITY_M, (2, tasks, 2))
    where = rng.uniform(0, CITY_M, (robots, 2))
    approach = np.linalg.norm(pickup[:, None, :] - where[None, :, :], axis=2)
    trip = approach + np.linalg.norm(dropoff - pickup, axis=1)[:, None]
    price = np.rint(BASE_PRICE + PRICE_PER_KM * trip / 1_000.0)
    no_offer = (approach > REACH_M) | (rng.random((tasks, robots)) < NO_OFFER_SHARE)
    return Market(np.where(no_offer, np.inf, price), trip / SPEED_M_S)


def timed(fn: Callable[[], list[Pair]]) -> tuple[float, list[Pair]]:
    """Wall seconds ``fn`` took, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(market: Market, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[Pair]]]:
    """Per method, the seconds of every round and the pairs it chose (the same every round)."""
    tasks, robots = market.price.shape
    task_ids, robot_ids = [f"task-{i}" for i in range(tasks)], [f"robot-{j}" for j in range(robots)]
    methods: dict[str, Callable[[], list[Pair]]] = {
        "greedy": lambda: assign_greedy(market.price),
        "optimal": lambda: assign(task_ids, robot_ids, market.price),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    pairs: dict[str, list[Pair]] = {}
    for round_number in range(rounds):
        order = list(methods) if round_number % 2 == 0 else list(methods)[::-1]
        for name in order:
            wall, chosen = timed(methods[name])
            seconds[name].append(wall)
            if pairs.setdefault(name, chosen) != chosen:
                raise RuntimeError(f"{name} chose differently in round {round_number + 1}")
        print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr, flush=True)
    return seconds, pairs


def mean_eta(market: Market, pairs: list[Pair]) -> float:
    """The mean ETA in seconds over the assigned pairs."""
    return total_cost(market.eta_s, pairs) / len(pairs) if pairs else 0.0


def on_the_same_tasks(market: Market, greedy: list[Pair]) -> list[Pair]:
    """The optimal assignment of just the tasks greedy serves: the like-for-like cost comparison."""
    served = [t for t, _ in greedy]
    price = market.price[served]
    robot_ids = [f"robot-{j}" for j in range(price.shape[1])]
    return [(served[t], r) for t, r in assign([f"task-{t}" for t in served], robot_ids, price)]


def verdicts(args: argparse.Namespace, seconds: list[float], served: dict[str, int],
             cost: dict[str, float]) -> list[str]:
    """One line per goal: met, NOT met, or why it could not be judged in this run."""
    median = statistics.median(seconds)
    if args.tasks >= GOAL_SIZE and args.robots >= GOAL_SIZE:
        timing = f"{'met' if median < GOAL_S else 'NOT met'} ({median:.3f} s; by round " \
                 f"{' '.join(f'{s:.3f}' for s in seconds)})"
    else:
        timing = f"not measured ({args.tasks:,} x {args.robots:,} in this run)"
    cheaper = f"{'met' if cost['same'] < cost['greedy'] else 'NOT met'} ({cost['same']:,.0f} vs " \
              f"{cost['greedy']:,.0f} minor units for the same {served['greedy']:,} tasks; optimal serves " \
              f"{served['optimal'] - served['greedy']:,} more in all)"
    return [f"goal: optimal assignment of {GOAL_SIZE:,} x {GOAL_SIZE:,} in < {GOAL_S:g} s: {timing}",
            f"goal: lower total cost than greedy: {cheaper}"]


def run(args: argparse.Namespace) -> str:
    """Build the market, measure every round, and return the report."""
    market = make_market(args.tasks, args.robots, np.random.default_rng(args.seed))
    offers = int(np.isfinite(market.price).sum())
    seconds, pairs = measure(market, args.rounds)
    pairs["same"] = on_the_same_tasks(market, pairs["greedy"])
    median = {name: statistics.median(values) for name, values in seconds.items()}
    served = {name: len(chosen) for name, chosen in pairs.items()}
    cost = {name: total_cost(market.price, chosen) for name, chosen in pairs.items()}
    names = {"greedy": "greedy baseline (assign_greedy)", "optimal": "optimal (assign, linear_sum_assignment)",
             "same": "optimal (assign) on just the tasks greedy serves"}
    times = {name: f"{median[name]:.4f} | {median[name] / median['greedy']:.2f}" for name in median}
    times["same"] = "— | —"
    pairs_total = args.tasks * args.robots
    lines = [
        f"tasks: {args.tasks:,}, robots: {args.robots:,}, city: {CITY_M / 1_000:g} km square, offers: {offers:,} of "
        f"{pairs_total:,} pairs ({1 - offers / pairs_total:.1%} without an offer), rounds: {args.rounds} (medians), "
        f"seed: {args.seed}",
        "",
        "| method | median s | time vs greedy | tasks served | total price (minor units) | cost vs greedy "
        "| mean ETA s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {names[name]} | {times[name]} | {served[name]:,} | {cost[name]:,.0f} "
          f"| {cost[name] / cost['greedy']:.4f} | {mean_eta(market, pairs[name]):.1f} |" for name in names),
        "",
        *verdicts(args, seconds["optimal"], served, cost),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000, help="tasks in the batch (default 1,000)")
    parser.add_argument("--robots", type=int, default=1_000, help="robots bidding (default 1,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100 tasks x 100 robots, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.robots, args.rounds = 100, 100, 1
    print(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
