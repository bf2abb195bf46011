"""A robot that fakes its whole trail consistently is not paid (benchmarks/delivery_fraud.py, shortened, fixed seed).

Ten robots earn on the marketplace in process with the map service, in a small city; two of them are spoofers: a
valid key, a ghost driven in a world of its own along its planned routes, consistent telemetry, scans and
receipts, and no body where it claims. Ground truth classes every receipt; the witness rule must refuse every fake
one, and pay most honest ones (this short run holds some: benchmarks/RESULTS.md has the full one).
"""

import pytest

from benchmarks.delivery_fraud import TRUE_AT_DROPOFF_M, report, run_fleet
from marketplace.proof import WitnessRule


@pytest.fixture(scope="module")
def outcome():
    return run_fleet(seed=5, robots=10, spoofers=2, blocks=2, orders_s=150.0, orders_per_min=15.0, tail_s=90.0,
                     rule=WitnessRule(hold_s=60.0))


def test_the_spoofer_delivers_nothing_and_is_paid_for_nothing(outcome) -> None:
    fakes = [r for r in outcome.receipts if r.spoofer]
    assert len(fakes) >= 2, report(outcome)
    assert all(r.true_gap_m > TRUE_AT_DROPOFF_M for r in fakes), "its body never left where it was parked"
    assert all(r.outcome in ("contradicted", "unwitnessed") for r in fakes), report(outcome)
    assert outcome.spoofer_verdicts["unseen"] > 10 * outcome.spoofer_verdicts["seen"], report(outcome)


def test_honest_deliveries_are_paid(outcome) -> None:
    honest = [r for r in outcome.receipts if not r.spoofer]
    assert len(honest) >= 5 and all(r.true_gap_m <= TRUE_AT_DROPOFF_M for r in honest), report(outcome)
    assert sum(r.outcome == "paid" for r in honest) >= len(honest) / 2, report(outcome)
    assert not any(r.outcome == "contradicted" for r in honest), report(outcome)
    assert outcome.verdicts["seen"] > outcome.verdicts["unseen"], "peers see honest robots more often than not"
    assert outcome.presence_refused == 0
