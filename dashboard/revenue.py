"""The DAO's revenue as an incremental read model of the ledger: folded once, answered from memory.

``RevenueBook`` reads each journal entry once, in order, and keeps running totals
(revenue by day, robot and task; fees; what the split paid each member and what
each claimed; the DAO's account balances), so ``/api/revenue`` costs the same
on a ledger of a hundred entries or of millions. ``refresh()`` folds only the
entries written since the last call.

What counts, by account (the names dao/dao.py and marketplace/market.py give them):

- revenue: a settlement's (``escrow.release``) posting to ``owner:<dao>``; the day is
  the UTC date of the entry; the task and the robot are the settlement's signed
  refs (``task``, ``robot``), never parsed out of its memo or key;
- a ``reversal`` counts as the negation of the entry it reverses (a reversed
  settlement takes its revenue and its task back, on the reversal's own day);
- the balances of ``owner:<dao>`` (``undistributed``), ``<role>:<dao>`` (treasury,
  reserve, operator, ...), ``fees:<currency>`` and every ``claimable:<dao>:<member>``
  are sums of all their postings, whatever the entry's kind: they always equal
  the ledger's own balances as of ``as_of``;
- a member's ``claimed`` is what ``dao.claim`` entries (less their reversals) took
  out of its claimable account; ``distributed`` is everything else paid in.
"""

from __future__ import annotations

import csv as _csv
import io
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from ledger.journal import Entry, Ledger

RELEASE, CLAIM, REVERSAL = "escrow.release", "dao.claim", "reversal"
ROLES = ("treasury", "reserve", "operator")  # the DAO's accounts every summary shows
_DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)
_CSV_HEADER = ("seq", "day", "task", "robot", "earned", "currency")


class RevenueBook:
    """Running totals of one DAO's revenue over a ledger, brought up to date by ``refresh()``; thread-safe."""

    def __init__(self, ledger: Ledger, dao_did: str, *, currency: str = "EUR", batch: int = 5_000) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1 entry, got {batch}")
        self.ledger, self.dao, self.currency, self.batch = ledger, dao_did, currency, batch
        self._owner = f"owner:{dao_did}"
        self._fees = f"fees:{currency}"
        self._role_suffix = f":{dao_did}"
        self._claimable = f"claimable:{dao_did}:"
        self._refreshing = threading.Lock()  # one refresh at a time
        self._lock = threading.Lock()  # the totals below change and are read only under it
        self._folded = 0  # entries 1.._folded are in the totals
        self._earned = 0
        self._by_day: dict[int, list[int]] = {}  # day number -> [earned, tasks]
        self._by_robot: dict[str | None, list[int]] = {}  # robot DID (None: a settlement without refs) -> [earned, tasks]
        self._balances: dict[str, int] = {}  # role (owner, treasury, ...) -> balance of <role>:<dao>
        self._fee_total = 0
        self._members: dict[str, list[int]] = {}  # member -> [distributed, claimed]
        # one row per entry that moved revenue, in seq order (the CSV), kept as columns: about 100 bytes a row
        self._row_seq = array("q")  # sorted: how a reversal finds what it reverses
        self._row_day = array("i")  # day number since the epoch
        self._row_earned = array("q")
        self._row_robot = array("i")  # index into _robots; -1: none named
        self._row_task: list[str] = []
        self._robots: list[str] = []
        self._robot_index: dict[str, int] = {}
        self._claims: set[int] = set()  # seqs of claims (and of reversals of them) that touched a claimable account

    @property
    def as_of(self) -> int:
        """How many entries the totals include (entries 1..as_of)."""
        return self._folded

    # --- folding -------------------------------------------------------------------------------------

    def refresh(self, *, wait: bool = True) -> int:
        """Fold the entries written since the last refresh, in batches; how many were folded.

        ``wait=False``: when another thread is refreshing (say, the first catch-up over a long ledger), return 0
        at once instead of queueing behind it; the totals then answer as of what is folded so far (``as_of``).
        """
        if not self._refreshing.acquire(blocking=wait):
            return 0
        try:
            size = self.ledger.size()
            folded = 0
            while self._folded < size:
                start = self._folded + 1
                entries = self.ledger.entries(start, min(start + self.batch, size + 1))
                contiguous = _contiguous(entries, start)
                with self._lock:
                    for entry in contiguous:
                        self._fold(entry)
                    self._folded += len(contiguous)
                folded += len(contiguous)
                if len(contiguous) < len(entries) or not contiguous:
                    break  # a gap (an entry not visible yet): the rest waits for the next refresh
            return folded
        finally:
            self._refreshing.release()

    def _fold(self, entry: Entry) -> None:
        """Add one entry to the totals (under the lock)."""
        owner, fees, suffix, claimable = self._owner, self._fees, self._role_suffix, self._claimable
        origin: tuple[str, str | None, str | None] | None = None
        for account, _, amount in entry.postings:
            if account == owner:
                self._balances["owner"] = self._balances.get("owner", 0) + amount
                origin = self._origin(entry) if origin is None else origin
                if origin[0] == RELEASE:
                    self._earn(entry, origin, amount)
            elif account == fees:
                self._fee_total += amount
            elif account.startswith(claimable):
                member = account[len(claimable):]
                totals = self._members.setdefault(member, [0, 0])
                origin = self._origin(entry) if origin is None else origin
                if origin[0] == CLAIM:
                    totals[1] -= amount
                    self._claims.add(entry.seq)
                else:
                    totals[0] += amount
            elif account.endswith(suffix):
                role = account[:-len(suffix)]
                if ":" not in role:
                    self._balances[role] = self._balances.get(role, 0) + amount

    def _origin(self, entry: Entry) -> tuple[str, str | None, str | None]:
        """What the entry counts as (its kind, or for a reversal the kind of what it reverses) and, for
        revenue, the task and robot it is for."""
        if entry.kind == RELEASE:  # the settlement's signed refs name its task and robot
            return RELEASE, entry.refs.get("task", entry.key), entry.refs.get("robot")
        if entry.kind == REVERSAL and entry.reverses is not None:
            index = bisect_left(self._row_seq, entry.reverses)
            if index < len(self._row_seq) and self._row_seq[index] == entry.reverses:
                robot_index = self._row_robot[index]
                return RELEASE, self._row_task[index], None if robot_index < 0 else self._robots[robot_index]
            if entry.reverses in self._claims:
                return CLAIM, None, None
            return REVERSAL, None, None
        return entry.kind, None, None

    def _earn(self, entry: Entry, origin: tuple[str, str | None, str | None], amount: int) -> None:
        """Revenue of ``amount`` (negative: taken back) for the origin's task and robot, on the entry's day."""
        _, task, robot = origin
        day = entry.at_ms // _DAY_MS
        tasks = 1 if amount > 0 else -1
        self._earned += amount
        for totals in (self._by_day.setdefault(day, [0, 0]), self._by_robot.setdefault(robot, [0, 0])):
            totals[0] += amount
            totals[1] += tasks
        if robot is None:
            robot_index = -1
        else:
            robot_index = self._robot_index.get(robot, -1)
            if robot_index < 0:
                robot_index = self._robot_index[robot] = len(self._robots)
                self._robots.append(robot)
        self._row_seq.append(entry.seq)
        self._row_day.append(day)
        self._row_earned.append(amount)
        self._row_robot.append(robot_index)
        self._row_task.append(task or "")

    # --- reading -------------------------------------------------------------------------------------

    def summary(self, shares: Mapping[str, int] | None = None, split: Mapping[str, int] | None = None
                ) -> dict[str, Any]:
        """The ``/api/revenue`` figures as of the last refresh; ``shares``: member -> shares now, ``split``:
        the split rules in basis points (both from the DAO, which the ledger does not hold)."""
        shares = dict(shares or {})
        split = dict(split or {})
        with self._lock:
            by_day = [{"day": _day(day), "earned": earned, "tasks": tasks}
                      for day, (earned, tasks) in sorted(self._by_day.items())]
            by_robot = [{"robot": robot, "earned": earned, "tasks": tasks} for robot, (earned, tasks) in
                        sorted(self._by_robot.items(), key=lambda item: (-item[1][0], item[0] or ""))]
            members = {m for m, n in shares.items() if n > 0} | self._members.keys()
            by_member = []
            for member in sorted(members):
                distributed, claimed = self._members.get(member, (0, 0))
                by_member.append({"member": member, "shares": int(shares.get(member, 0)), "distributed": distributed,
                                  "claimed": claimed, "claimable": distributed - claimed})
            roles = list(ROLES) + sorted(set(split) - set(ROLES) - {"members"})
            accounts = {role: self._balances.get(role, 0) for role in roles}
            accounts["undistributed"] = self._balances.get("owner", 0)
            return {"currency": self.currency, "as_of": self._folded, "earned": self._earned, "fees": self._fee_total,
                    "by_day": by_day, "by_robot": by_robot, "by_member": by_member, "split": split,
                    "accounts": accounts}

    def rows(self) -> list[tuple[int, str, str, str | None, int]]:
        """Every entry that moved the DAO's revenue: (seq, day, task, robot, earned), in seq order."""
        with self._lock:
            count = len(self._row_seq)
            seqs, days, tasks = self._row_seq[:count], self._row_day[:count], self._row_task[:count]
            robots, earned = self._row_robot[:count], self._row_earned[:count]
            names = self._robots[:]
        return [(seqs[n], _day(days[n]), tasks[n], None if robots[n] < 0 else names[robots[n]], earned[n])
                for n in range(count)]

    def csv(self) -> str:
        """The ``/api/revenue.csv`` text: a header, then one row per settlement that paid the DAO (and per
        reversal of one, with a negative amount), in ledger order; a task or robot cell that a spreadsheet would
        take for a formula (starting with = + - @) gets a leading apostrophe."""
        out = io.StringIO()
        writer = _csv.writer(out, lineterminator="\n")
        writer.writerow(_CSV_HEADER)
        writer.writerows(_csv_rows(self.rows(), self.currency))
        return out.getvalue()


def _contiguous(entries: list[Entry], start: int) -> list[Entry]:
    """The leading entries numbered start, start + 1, ... without a gap."""
    for index, entry in enumerate(entries):
        if entry.seq != start + index:
            return entries[:index]
    return entries


def _csv_rows(rows: Iterable[tuple[int, str, str, str | None, int]], currency: str
              ) -> Iterable[tuple[int, str, str, str, int, str]]:
    return ((seq, day, _cell(task), _cell(robot or ""), earned, currency) for seq, day, task, robot, earned in rows)


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula: task ids come from customers (OWASP CSV injection)."""
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


_DAYS: dict[int, str] = {}


def _day(number: int) -> str:
    """The ISO date of day ``number`` since the Unix epoch (cached: a summary names the same days again)."""
    text = _DAYS.get(number)
    if text is None:
        text = _DAYS[number] = (_EPOCH + timedelta(days=number)).isoformat()
    return text


__all__ = ["RevenueBook"]
