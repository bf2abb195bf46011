"""The auction benchmark still runs and reports every figure (its speed is measured, never asserted)."""

import re

import numpy as np
import pytest

from benchmarks import auction as bench

ROWS = [
    "greedy baseline (assign_greedy)",
    "optimal (assign, linear_sum_assignment)",
    "optimal (assign) on just the tasks greedy serves",
]
HEADER = ("| method | median s | time vs greedy | tasks served | total price (minor units) | cost vs greedy "
          "| mean ETA s |")


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_quick_run_reports_the_table_and_optimal_costs_no_more_than_greedy(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tasks: 100, robots: 100, city: 1 km square, offers: ")
    assert HEADER in out
    rows = {cells[0]: cells[1:] for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| method"))}
    assert list(rows) == ROWS
    greedy, optimal, same = (rows[name] for name in ROWS)
    assert number(greedy[0]) > 0 and greedy[1] == "1.00" and number(optimal[0]) > 0 and same[:2] == ["—", "—"]
    assert number(optimal[2]) >= number(greedy[2]) == number(same[2]) > 0  # optimal serves the most tasks
    assert number(same[3]) <= number(greedy[3])  # and for greedy's tasks it costs no more
    if number(optimal[2]) == number(greedy[2]):
        assert number(optimal[3]) <= number(greedy[3])
    assert re.search(r"^goal: optimal assignment of 1,000 x 1,000 in < 1 s: not measured \(100 x 100 in this run\)$",
                     out, re.M)
    assert re.search(r"^goal: lower total cost than greedy: (met|NOT met) \([\d,]+ vs [\d,]+ minor units for the "
                     r"same [\d,]+ tasks; optimal serves \d+ more in all\)$", out, re.M)


def test_the_market_prices_offers_from_distance_and_leaves_some_pairs_without_one() -> None:
    market = bench.make_market(50, 40, np.random.default_rng(1))
    offered = np.isfinite(market.price)
    assert market.price.shape == market.eta_s.shape == (50, 40) and 0 < offered.mean() < 1
    price = market.price[offered]
    assert np.array_equal(price, np.rint(price)) and price.min() >= bench.BASE_PRICE
    expected = bench.BASE_PRICE + bench.PRICE_PER_KM * market.eta_s * bench.SPEED_M_S / 1_000
    assert np.allclose(market.price[offered], expected[offered], atol=0.5)
