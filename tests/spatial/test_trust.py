"""The trust ledger: honest robots gain weight, liars lose it fast, reformed robots recover slowly."""

from collections.abc import Callable

import numpy as np
import pytest

from spatial.grid import FREE, OCCUPIED, UNKNOWN
from spatial.trust import TrustLedger

HONEST = "did:key:zHonest"
LIAR = "did:key:zLiar"

# A 40 x 40 consensus: open ground (FREE) for x < 20, a wall (OCCUPIED) along x = 20, its shadow UNKNOWN beyond.
CONSENSUS = np.full((40, 40), UNKNOWN, dtype=np.int8)
CONSENSUS[:20, :] = FREE
CONSENSUS[20, :] = OCCUPIED


def consensus_of(cells: np.ndarray) -> np.ndarray:
    inside = ((cells >= 0) & (cells < 40)).all(axis=1)
    states = np.full(len(cells), UNKNOWN, dtype=np.int8)
    states[inside] = CONSENSUS[cells[inside, 0], cells[inside, 1]]
    return states


def cells(xs: range, ys: range) -> np.ndarray:
    return np.array([(x, y) for x in xs for y in ys], dtype=np.int64).reshape(-1, 2)


NONE = cells(range(0), range(0))
ALL_Y = range(40)


def honest_scan(ledger: TrustLedger, did: str = HONEST) -> tuple[int, int]:
    """Free up to the wall, hits on it: 40 agreements."""
    return ledger.score(did, cells(range(20), ALL_Y), cells(range(20, 21), ALL_Y), consensus_of)


def erasing_scan(ledger: TrustLedger, did: str = LIAR) -> tuple[int, int]:
    """Free straight through the wall: 40 conflicts (the shadow beyond counts for nothing)."""
    return ledger.score(did, cells(range(30), ALL_Y), NONE, consensus_of)


def injecting_scan(ledger: TrustLedger, did: str = LIAR) -> tuple[int, int]:
    """A fake wall at x = 10 in the open: 40 conflicts."""
    return ledger.score(did, cells(range(10), ALL_Y), cells(range(10, 11), ALL_Y), consensus_of)


def scans_until(ledger: TrustLedger, scan: Callable[[TrustLedger], object], did: str, done: Callable[[float], bool],
                limit: int) -> int:
    for n in range(1, limit + 1):
        scan(ledger)
        if done(ledger.weight(did)):
            return n
    raise AssertionError(f"{did} weight {ledger.weight(did):.3f} after {limit} scans")


def test_what_counts_as_agreement_and_conflict() -> None:
    ledger = TrustLedger()
    assert honest_scan(ledger) == (40, 0)  # open ground agreeing with open ground is not counted
    assert erasing_scan(ledger) == (0, 40)
    assert injecting_scan(ledger) == (0, 40)
    assert ledger.score(HONEST, NONE, cells(range(22, 30), ALL_Y), consensus_of) == (0, 0)  # hits in the shadow


def test_grid_quantisation_is_tolerated_by_one_cell() -> None:
    ledger = TrustLedger()
    # A hit one cell in front of the wall is the same surface; a free corner cell beside the scan's own hit is a graze.
    assert ledger.score(HONEST, np.array([[20, 6], [20, 30]]), np.array([[19, 5], [20, 7]]), consensus_of) == (2, 1)
    # Two cells off is a fake obstacle; a free wall cell far from any own hit is an erasure.
    assert ledger.score(HONEST, np.array([[20, 30]]), np.array([[18, 5]]), consensus_of) == (0, 2)


def test_an_honest_robot_rises_toward_one() -> None:
    ledger = TrustLedger()
    ledger.set_level(HONEST, "fleet")
    weights = [ledger.weight(HONEST)]
    for _ in range(300):
        honest_scan(ledger)
        weights.append(ledger.weight(HONEST))
    assert weights[0] == pytest.approx(0.5)
    assert all(b > a for a, b in zip(weights, weights[1:]))
    assert weights[-1] > 0.95


@pytest.mark.parametrize("lie", [erasing_scan, injecting_scan])
def test_a_liar_falls_below_0_2_within_ten_scans_but_not_in_one(lie: Callable[[TrustLedger], object]) -> None:
    ledger = TrustLedger()
    ledger.set_level(LIAR, "fleet")
    lie(ledger)
    assert ledger.weight(LIAR) > 0.3
    scans_until(ledger, lie, LIAR, lambda w: w < 0.2, limit=9)  # ten scans in all


def test_a_long_honest_robot_that_turns_liar_falls_within_a_bounded_number_of_scans() -> None:
    ledger = TrustLedger()
    ledger.set_level(LIAR, "fleet")
    for _ in range(1000):
        honest_scan(ledger, LIAR)
    assert ledger.weight(LIAR) > 0.95
    assert scans_until(ledger, erasing_scan, LIAR, lambda w: w < 0.2, 250) > 50


def test_a_few_conflicts_among_many_agreements_keep_a_robot_high() -> None:
    ledger = TrustLedger()
    ledger.set_level(HONEST, "fleet")
    free = np.concatenate([cells(range(19), ALL_Y), [[20, 39]]])  # a beam through the wall's last cell
    hit = np.concatenate([cells(range(20, 21), range(37)), [[5, 5]]])  # and a stray return in the open
    for _ in range(300):
        assert ledger.score(HONEST, free, hit, consensus_of) == (37, 2)
    assert ledger.weight(HONEST) > 0.9


def test_one_scan_is_one_unit_of_evidence_at_most_and_less_when_it_scores_few_cells() -> None:
    wide, full, one = TrustLedger(), TrustLedger(), TrustLedger()
    wide.score(LIAR, cells(range(30), range(40)), NONE, consensus_of)  # 40 conflicts
    full.score(LIAR, cells(range(30), range(20)), NONE, consensus_of)  # 20 conflicts: a full unit
    one.score(LIAR, cells(range(30), range(1)), NONE, consensus_of)  # 1 conflict: a twentieth of one
    assert wide.weight(LIAR) == pytest.approx(full.weight(LIAR)) == pytest.approx(0.6 * 2 / 5)
    assert one.weight(LIAR) == pytest.approx(0.6 * 2 / 4.05)
    assert [row["conflicts"] for row in (*wide.report(), *full.report(), *one.report())] == [40, 20, 1]


def test_forgetting_lets_a_reformed_robot_recover_slowly() -> None:
    forgetful, forever = TrustLedger(), TrustLedger(forgetting=1.0)
    for ledger in (forgetful, forever):
        for _ in range(300):
            erasing_scan(ledger)
        assert ledger.weight(LIAR) < 0.05
    for _ in range(20):
        honest_scan(forgetful, LIAR)
    assert forgetful.reputation(LIAR) < 0.35  # slowly: 20 good scans do not wash away 300 bad ones
    for _ in range(280):
        honest_scan(forgetful, LIAR)
        honest_scan(forever, LIAR)
    assert forgetful.reputation(LIAR) > 0.9
    assert forever.reputation(LIAR) <= 0.5


def test_levels_multiply_the_reputation() -> None:
    ledger = TrustLedger()
    dids = {"did:key:zFleet": "fleet", "did:key:zSelf": "self", "did:key:zUnverified": "unverified"}
    for did, level in dids.items():
        ledger.set_level(did, level)
        for _ in range(50):
            honest_scan(ledger, did)
    rep = ledger.reputation("did:key:zFleet")
    assert rep > 0.8
    assert ledger.weights() == pytest.approx({"did:key:zFleet": rep, "did:key:zSelf": 0.6 * rep,
                                              "did:key:zUnverified": 0.0})
    assert [row["level"] for row in ledger.report()] == ["fleet", "self", "unverified"]


def test_an_unknown_did_is_self_level_with_the_prior_reputation() -> None:
    ledger = TrustLedger(prior=(3.0, 1.0))
    assert ledger.level_of("did:key:zNobody") == "self"
    assert ledger.weight("did:key:zNobody") == pytest.approx(0.6 * 0.75)
    assert ledger.weights() == {}
    with pytest.raises(ValueError, match="unknown verification level 'root'"):
        ledger.set_level(HONEST, "root")


def test_unknown_cells_do_not_count() -> None:
    ledger = TrustLedger()
    shadow = cells(range(22, 40), ALL_Y)
    assert ledger.score(LIAR, shadow, shadow[::3], consensus_of) == (0, 0)
    assert ledger.score(LIAR, NONE, NONE, consensus_of) == (0, 0)
    assert ledger.weight(LIAR) == pytest.approx(0.6 * 0.5)
    assert ledger.report() == [{"did": LIAR, "level": "self", "agreements": 0, "conflicts": 0,
                                "reputation": 0.5, "weight": pytest.approx(0.3)}]


def test_bad_inputs_are_refused() -> None:
    ledger = TrustLedger()
    with pytest.raises(ValueError, match=r"observation_hit must be an \(n, 2\) array"):
        ledger.score(HONEST, NONE, np.arange(6), consensus_of)
    with pytest.raises(ValueError, match="consensus_of returned shape"):
        ledger.score(HONEST, NONE, cells(range(20, 21), ALL_Y), lambda c: consensus_of(c)[:-1])
    for kwargs in ({"prior": (0.0, 2.0)}, {"forgetting": 0.0}, {"forgetting": 1.5},
                   {"levels": {"fleet": 1.0}}, {"levels": {"self": -1.0}}, {"full_scan_cells": 0}):
        with pytest.raises(ValueError):
            TrustLedger(**kwargs)


def test_scoring_many_scans_at_once_is_scoring_them_one_by_one() -> None:
    """score_many against one consensus moves every reputation as score() called scan by scan does."""
    rng = np.random.default_rng(3)
    scans = []
    for index in range(40):
        x0, y0 = rng.integers(-5, 35, 2)
        free = np.unique(rng.integers(0, 12, (rng.integers(0, 80), 2)) + (x0, y0), axis=0)
        hit = np.unique(rng.integers(0, 12, (rng.integers(0, 12), 2)) + (x0, y0), axis=0)
        hit = hit[~(hit[:, None, :] == free[None, :, :]).all(axis=2).any(axis=1)]  # hits win over free
        scans.append(([HONEST, LIAR, "did:key:zOther"][index % 3], free.reshape(-1, 2), hit.reshape(-1, 2)))
    one_by_one, together = TrustLedger(), TrustLedger()
    expected = [one_by_one.score(did, free, hit, consensus_of) for did, free, hit in scans]
    asked: list[int] = []

    def consensus(scan: np.ndarray, cells: np.ndarray, occupied_only: np.ndarray) -> np.ndarray:
        asked.append(len(cells))
        states = consensus_of(cells)
        return np.where(occupied_only & (states == FREE), UNKNOWN, states)  # as the grid may answer

    assert together.score_many(scans, consensus) == expected
    assert len(asked) == 1 and together.report() == one_by_one.report()
    assert sum(a + c for a, c in expected) > 50  # the scans do score something
