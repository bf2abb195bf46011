"""A credit rating for each robot, and its profit and loss, folded from the ledger's signed entries alone.

The idea is peaq's Machine Credit Rating (MCR). peaqOS's *Qualify* function turns a machine's on-chain
history of revenue and activity events into a letter rating modelled on the credit agencies, which anyone may
query without permission; its integer ``mcr_score`` (0-100) maps to AAA (95 and up), AA (85), A (75),
BBB (60), BB (45) and B (30); below 30, or for a machine without a bond, the rating is NR, and a newly
registered machine without enough history yet is "Provisioned" (docs.peaq.xyz: peaqos/concepts/
machine-credit-rating, peaqos/functions/qualify, peaqos/api-reference/get-mcr). peaq does not publish how the
score is weighted, so this formula is our own, with every weight and cap below (and in docs/dashboard.md,
"A robot's rating and its profit and loss"). We keep peaq's letter cut-offs, NR and Provisioned.

Inputs, all from signed ledger entries (docs/ledger.md, "What the log records"); a ``reversal`` counts as
the negation of the entry it reverses:

- ``escrow.release`` whose refs name the robot: a delivered task; ``refs.price`` is its gross, its posting to
  ``fees:*`` the marketplace's fee, its posting to ``owner:<refs.owner>`` what the robot earned its owner;
  the UTC day of the entry is a day the robot was active;
- ``escrow.refund`` whose ``refs.blame`` is ``failed`` or ``faked``: a failed or faked delivery;
- ``bond``, ``bond.slash``, ``bond.return``: the postings to ``bond:<robot>`` (posted, slashed, returned).

Components, each 0..1:

- revenue = min(1, log10(1 + earned) / 5): earned in minor units, full marks at 99,999 (999.99 EUR);
- activity = (min(1, delivered / 50) + min(1, days active / 30)) / 2;
- reliability = delivered / (delivered + failed + 3 x faked), 0 before any outcome (a faked proof weighs
  three failures: it is a lie, not bad luck);
- bond = 1 - min(1, slashed / posted), 0 if no bond was ever posted.

score = 30 revenue + 20 activity + 35 reliability + 15 bond, rounded half up to an integer. The grade: NR
when the robot holds no bond now (never posted, slashed to nothing, or returned on retiring); else
"Provisioned" before 3 outcomes (delivered + failed + faked); else peaq's letter for the score (NR below 30).

The profit and loss (in the robot's currency, minor units): ``gross`` (prices), ``fees``, ``earned``
(= gross - fees, what its owner got), ``slashed`` (bond lost to customers), ``energy`` and ``net`` =
earned - slashed - energy. Energy is the one figure not in the ledger: the dashboard keeps only each robot's
last verified telemetry (dashboard/telemetry.py), not its history, so it is the energy to refill the battery
from its last verified level: (1 - battery) x ``BATTERY_KWH`` x ``ENERGY_PRICE_PER_KWH``, rounded half up;
null (and left out of ``net``) without telemetry.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dashboard.revenue import _contiguous
from ledger.journal import Entry, Ledger

WEIGHTS = {"revenue": 30, "activity": 20, "reliability": 35, "bond": 15}  # points of 100
REVENUE_DECADES = 5  # revenue earns full marks at 10**5 - 1 minor units earned
TASKS_FULL = 50  # delivered tasks for full activity marks (half of activity)
DAYS_FULL = 30  # distinct UTC days with a delivery for full activity marks (the other half)
FAKED_WEIGHT = 3  # a faked delivery counts as this many failures
MIN_OUTCOMES = 3  # outcomes (delivered + failed + faked) before a robot is graded
GRADES = ((95, "AAA"), (85, "AA"), (75, "A"), (60, "BBB"), (45, "BB"), (30, "B"))  # peaq's cut-offs
NOT_RATED, PROVISIONED = "NR", "Provisioned"
BATTERY_KWH = 0.4  # a delivery robot's battery: sim/world.py's 400 Wh (a real robot's is not in its telemetry)
ENERGY_PRICE_PER_KWH = 30  # minor units (EUR cents) per kWh: an assumed charging tariff, not a measured one
_DAY_MS = 86_400_000
_RELEASE, _REFUND, _BOND, _SLASH, _RETURN = "escrow.release", "escrow.refund", "bond", "bond.slash", "bond.return"
_REGISTER, _REVERSAL = "robot.register", "reversal"
_MONEY_KINDS = (_RELEASE, _REFUND, _BOND, _SLASH, _RETURN)


@dataclass(slots=True)
class _Record:
    """What the log says of one robot so far."""

    owner: str | None = None
    currency: str | None = None
    delivered: int = 0
    failed: int = 0
    faked: int = 0
    gross: int = 0
    fees: int = 0
    earned: int = 0
    bond_posted: int = 0
    bond_slashed: int = 0
    bond_returned: int = 0
    days: dict[int, int] = field(default_factory=dict)  # UTC day number -> deliveries that day


class Ratings:
    """Every robot's record, folded entry by entry (``take``); ``rating(did)`` answers from it."""

    def __init__(self) -> None:
        self.as_of = 0  # the highest seq taken
        self._robots: dict[str, _Record] = {}
        self._seen: dict[int, tuple[str, int]] = {}  # seq of a money entry of a robot -> (kind, UTC day)

    def take(self, entry: Entry) -> None:
        """Fold one entry (in seq order)."""
        self.as_of = max(self.as_of, entry.seq)
        kind, day, sign = entry.kind, entry.at_ms // _DAY_MS, 1
        if kind == _REVERSAL:
            if entry.reverses not in self._seen:
                return
            (kind, day), sign = self._seen[entry.reverses], -1
        robot = entry.refs.get("robot")
        if not isinstance(robot, str):
            return  # a settlement from before entries carried refs names no robot: it rates nobody
        record = self._robots.setdefault(robot, _Record())
        if kind == _REGISTER:
            record.owner, record.currency = entry.refs.get("owner"), entry.refs.get("currency")
            return
        if kind not in _MONEY_KINDS:
            return
        self._seen[entry.seq] = (kind, day)
        bond = sum(amount for account, _, amount in entry.postings if account == f"bond:{robot}")
        if kind == _RELEASE:
            owner = f"owner:{entry.refs.get('owner')}"
            record.delivered += sign
            record.gross += sign * int(entry.refs.get("price") or 0)
            record.fees += sum(amount for account, _, amount in entry.postings if account.startswith("fees:"))
            record.earned += sum(amount for account, _, amount in entry.postings if account == owner)
            record.days[day] = record.days.get(day, 0) + sign
        elif kind == _REFUND and entry.refs.get("blame") in ("failed", "faked"):
            blame = entry.refs["blame"]
            setattr(record, blame, getattr(record, blame) + sign)
        elif kind == _BOND:
            record.bond_posted += bond
        elif kind == _SLASH:
            record.bond_slashed -= bond
        elif kind == _RETURN:
            record.bond_returned -= bond

    def rating(self, robot: str, battery: float | None = None) -> dict[str, Any] | None:
        """The robot's rating, its parts and its profit and loss; None if no entry names it. ``battery``: its
        last verified state of charge (0..1), for the energy line of the profit and loss."""
        record = self._robots.get(robot)
        return None if record is None else _rating(robot, record, self.as_of, battery)


def rate(entries: Iterable[Entry], robot: str, battery: float | None = None) -> dict[str, Any] | None:
    """The rating of ``robot`` recomputed from ``entries`` alone (say, ``Ledger.entries()`` of a copy)."""
    ratings = Ratings()
    for entry in entries:
        ratings.take(entry)
    return ratings.rating(robot, battery)


class RatingBook:
    """``Ratings`` kept up to date with a ledger: ``refresh()`` folds only the entries written since; thread-safe."""

    def __init__(self, ledger: Ledger, *, batch: int = 5_000) -> None:
        self.ledger, self.batch = ledger, batch
        self._ratings = Ratings()
        self._folded = 0
        self._lock = threading.Lock()

    def rating(self, robot: str, battery: float | None = None) -> dict[str, Any] | None:
        """``Ratings.rating`` as of the newest entry."""
        with self._lock:
            size = self.ledger.size()
            while self._folded < size:
                start = self._folded + 1
                entries = self.ledger.entries(start, min(start + self.batch, size + 1))
                contiguous = _contiguous(entries, start)
                for entry in contiguous:
                    self._ratings.take(entry)
                self._folded += len(contiguous)
                if len(contiguous) < len(entries) or not contiguous:
                    break  # an entry not visible yet: the rest waits for the next call
            return self._ratings.rating(robot, battery)


def grade(score: int, *, bonded: bool, outcomes: int) -> str:
    """The letter for a score: NR without a bond, Provisioned before ``MIN_OUTCOMES``, else peaq's cut-offs."""
    if not bonded:
        return NOT_RATED
    if outcomes < MIN_OUTCOMES:
        return PROVISIONED
    return next((letter for floor, letter in GRADES if score >= floor), NOT_RATED)


def energy_cost(battery: float | None) -> tuple[float | None, int | None]:
    """(kWh, minor units) to refill a battery from state of charge ``battery``; (None, None) when unknown."""
    if battery is None:
        return None, None
    kwh = (1.0 - min(1.0, max(0.0, float(battery)))) * BATTERY_KWH
    return round(kwh, 4), _half_up(kwh * ENERGY_PRICE_PER_KWH)


def _rating(robot: str, r: _Record, as_of: int, battery: float | None) -> dict[str, Any]:
    days = sum(1 for count in r.days.values() if count > 0)
    weighed = r.delivered + r.failed + FAKED_WEIGHT * r.faked
    parts = {
        "revenue": min(1.0, math.log10(1 + max(0, r.earned)) / REVENUE_DECADES),
        "activity": (min(1.0, max(0, r.delivered) / TASKS_FULL) + min(1.0, days / DAYS_FULL)) / 2,
        "reliability": max(0, r.delivered) / weighed if weighed > 0 else 0.0,
        "bond": 1.0 - min(1.0, r.bond_slashed / r.bond_posted) if r.bond_posted > 0 else 0.0,
    }
    score = _half_up(sum(WEIGHTS[name] * value for name, value in parts.items()))
    held = r.bond_posted - r.bond_slashed - r.bond_returned
    outcomes = r.delivered + r.failed + r.faked
    kwh, energy = energy_cost(battery)
    return {
        "robot": robot, "as_of": as_of, "score": score,
        "grade": grade(score, bonded=held > 0, outcomes=outcomes),
        "components": {name: {"value": round(value, 4), "weight": WEIGHTS[name],
                              "points": round(WEIGHTS[name] * value, 2)} for name, value in parts.items()},
        "inputs": {"earned": r.earned, "delivered": r.delivered, "failed": r.failed, "faked": r.faked,
                   "days_active": days, "bond_posted": r.bond_posted, "bond_slashed": r.bond_slashed,
                   "bond_returned": r.bond_returned, "bond_held": held},
        "pnl": {"currency": r.currency, "gross": r.gross, "fees": r.fees, "earned": r.earned,
                "slashed": r.bond_slashed, "energy": energy, "energy_kwh": kwh, "battery": battery,
                "battery_kwh": BATTERY_KWH, "price_per_kwh": ENERGY_PRICE_PER_KWH,
                "net": r.earned - r.bond_slashed - (energy or 0)},
    }


def _half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (not Python's round-half-even)."""
    return math.floor(value + 0.5)


__all__ = ["BATTERY_KWH", "ENERGY_PRICE_PER_KWH", "GRADES", "RatingBook", "Ratings", "WEIGHTS", "energy_cost",
           "grade", "rate"]
