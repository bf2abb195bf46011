"""The DAO's revenue as an incremental read model of the ledger: folded once, answered from memory.

``RevenueBook`` reads each journal entry once, in order, and keeps running totals
(revenue by hour, day, robot and task; fees; what the split paid each member and
what each claimed; the DAO's account balances), so ``/api/revenue`` costs the same
on a ledger of a hundred entries or of millions. ``refresh()`` folds only the
entries written since the last call.

What counts, by account (the names dao/dao.py and marketplace/market.py give them):

- revenue: a settlement's (``escrow.release``) posting to ``owner:<dao>``; its hour and
  day are the UTC hour and date of the entry's ``at``, which is fleet time (the
  simulation's clock, not the wall clock); the task, the robot and the price are
  the settlement's signed refs (``task``, ``robot``, ``price``), never parsed out of
  its memo or key; its fee is the entry's posting to ``fees:<currency>``;
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
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ledger.journal import Entry, Ledger

RELEASE, CLAIM, REVERSAL = "escrow.release", "dao.claim", "reversal"
ROLES = ("treasury", "reserve", "operator")  # the DAO's accounts every summary shows
_HOUR_MS, _DAY_MS = 3_600_000, 86_400_000
_EPOCH = date(1970, 1, 1)
# the task CSV: one row per settlement (or reversal of one); ``robot`` is the robot's name, ``robot_did`` its DID
CSV_HEADER = ("seq", "settled_at", "day", "task", "robot", "robot_did", "price", "fee", "earned", "currency")
MEMBERS_CSV_HEADER = ("member", "member_did", "shares", "distributed", "claimed", "claimable", "currency")
Origin = tuple[str, str | None, str | None, int | None]  # kind, and for revenue: task, robot, price


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
        self._by_hour: dict[int, list[int]] = {}  # hour number since the epoch -> [earned, tasks]
        self._by_day: dict[int, list[int]] = {}  # day number -> [earned, tasks]
        self._by_robot: dict[str | None, list[int]] = {}  # robot DID (None: a settlement without refs) -> [earned, tasks]
        self._balances: dict[str, int] = {}  # role (owner, treasury, ...) -> balance of <role>:<dao>
        self._fee_total = 0
        self._members: dict[str, list[int]] = {}  # member -> [distributed, claimed]
        # one row per entry that moved revenue, in seq order (the CSV), kept as columns: about 125 bytes a row
        self._row_seq = array("q")  # sorted: how a reversal finds what it reverses
        self._row_at = array("q")  # the entry's fleet time, ms since the epoch
        self._row_earned = array("q")
        self._row_price = array("q")  # what the customer paid for the task (negative: a reversal)
        self._row_fee = array("q")  # the marketplace's fee out of it
        self._row_robot = array("i")  # index into _robots; -1: none named
        self._row_task: list[str] = []
        self._robots: list[str] = []
        self._robot_index: dict[str, int] = {}
        self._claims: set[int] = set()  # seqs of claims (and of reversals of them) that touched a claimable account

    @property
    def as_of(self) -> int:
        """How many entries the totals include (entries 1..as_of)."""
        return self._folded

    @property
    def settlements(self) -> int:
        """How many entries moved the DAO's revenue: settlements, and reversals of them."""
        return len(self._row_seq)

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
        origin: Origin | None = None
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

    def _origin(self, entry: Entry) -> Origin:
        """What the entry counts as (its kind, or for a reversal the kind of what it reverses) and, for
        revenue, the task, robot and price it is for (a reversal's price is the reversed one's, negated)."""
        if entry.kind == RELEASE:  # the settlement's signed refs name its task, robot and price
            price = entry.refs.get("price")
            return (RELEASE, entry.refs.get("task", entry.key), entry.refs.get("robot"),
                    price if isinstance(price, int) and not isinstance(price, bool) else None)
        if entry.kind == REVERSAL and entry.reverses is not None:
            index = bisect_left(self._row_seq, entry.reverses)
            if index < len(self._row_seq) and self._row_seq[index] == entry.reverses:
                robot_index = self._row_robot[index]
                return (RELEASE, self._row_task[index], None if robot_index < 0 else self._robots[robot_index],
                        -self._row_price[index])
            if entry.reverses in self._claims:
                return CLAIM, None, None, None
            return REVERSAL, None, None, None
        return entry.kind, None, None, None

    def _earn(self, entry: Entry, origin: Origin, amount: int) -> None:
        """Revenue of ``amount`` (negative: taken back) for the origin's task and robot, in the entry's hour."""
        _, task, robot, price = origin
        hour = entry.at_ms // _HOUR_MS
        fee = sum(n for account, _, n in entry.postings if account == self._fees)
        tasks = 1 if amount > 0 else -1
        self._earned += amount
        day = entry.at_ms // _DAY_MS
        for totals in (self._by_hour.setdefault(hour, [0, 0]), self._by_day.setdefault(day, [0, 0]),
                       self._by_robot.setdefault(robot, [0, 0])):
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
        self._row_at.append(entry.at_ms)
        self._row_earned.append(amount)
        self._row_price.append(amount + fee if price is None else price)  # older settlements carry no price
        self._row_fee.append(fee)
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
            by_hour = [{"hour": _hour(hour), "at_ms": hour * _HOUR_MS, "earned": earned, "tasks": tasks}
                       for hour, (earned, tasks) in sorted(self._by_hour.items())]
            by_day = [{"day": _day(day), "at_ms": day * _DAY_MS, "earned": earned, "tasks": tasks}
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
                    "settlements": len(self._row_seq), "by_hour": by_hour, "by_day": by_day, "by_robot": by_robot,
                    "by_member": by_member, "split": split, "accounts": accounts}

    def rows(self, newest: int | None = None) -> list[tuple[int, int, str, str | None, int, int, int]]:
        """Every entry that moved the DAO's revenue, in seq order, as (seq, at_ms, task, robot, price, fee,
        earned); only the last ``newest`` of them when given."""
        with self._lock:
            count = len(self._row_seq)
            first = 0 if newest is None else max(0, count - max(0, newest))
            columns = (self._row_seq[first:count], self._row_at[first:count], self._row_task[first:count],
                       self._row_robot[first:count], self._row_price[first:count], self._row_fee[first:count],
                       self._row_earned[first:count])
            names = self._robots[:]
        seqs, ats, tasks, robots, prices, fees, earned = columns
        return [(seqs[n], ats[n], tasks[n], None if robots[n] < 0 else names[robots[n]], prices[n], fees[n], earned[n])
                for n in range(len(seqs))]

    def tasks(self, limit: int, names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` settlements (and reversals of them), newest first, as the revenue page's task
        table shows them: ``settled_at_ms`` is fleet time; ``name`` the robot's name (``""``: none known)."""
        names = names or {}
        return [{"seq": seq, "task": task, "robot": robot, "name": names.get(robot or "", ""), "price": price,
                 "fee": fee, "earned": earned, "settled_at_ms": at}
                for seq, at, task, robot, price, fee, earned in reversed(self.rows(limit))]

    def csv(self, names: Mapping[str, str] | None = None) -> str:
        """The ``/api/revenue.csv`` text: a header (``CSV_HEADER``), then one row per settlement that paid the
        DAO (and per reversal of one, with negative amounts), in ledger order; ``robot`` is the robot's name
        from ``names`` (its DID when it has none), ``settled_at`` the fleet time in ISO 8601. A text cell that a
        spreadsheet would take for a formula (starting with = + - @) gets a leading apostrophe."""
        names = names or {}
        out = io.StringIO()
        writer = _csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows((seq, _instant(at), _day(at // _DAY_MS), _cell(task),
                          _cell(names.get(robot or "") or robot or ""), _cell(robot or ""), price, fee, earned,
                          self.currency)
                         for seq, at, task, robot, price, fee, earned in self.rows())
        return out.getvalue()


def members_csv(by_member: Iterable[Mapping[str, Any]], currency: str) -> str:
    """The ``/api/revenue/members.csv`` text from the summary's ``by_member`` rows (in their order): ``member``
    is the member's name (its DID when it has none), ``member_did`` its DID; cells guarded like ``csv()``'s."""
    out = io.StringIO()
    writer = _csv.writer(out, lineterminator="\n")
    writer.writerow(MEMBERS_CSV_HEADER)
    writer.writerows((_cell(row.get("name") or row["member"]), _cell(row["member"]), row["shares"],
                      row["distributed"], row["claimed"], row["claimable"], currency) for row in by_member)
    return out.getvalue()


def _contiguous(entries: list[Entry], start: int) -> list[Entry]:
    """The leading entries numbered start, start + 1, ... without a gap."""
    for index, entry in enumerate(entries):
        if entry.seq != start + index:
            return entries[:index]
    return entries


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula: task ids come from customers (OWASP CSV injection)."""
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


_DAYS: dict[int, str] = {}
_HOURS: dict[int, str] = {}


def _day(number: int) -> str:
    """The ISO date of day ``number`` since the Unix epoch (cached: a summary names the same days again)."""
    text = _DAYS.get(number)
    if text is None:
        text = _DAYS[number] = (_EPOCH + timedelta(days=number)).isoformat()
    return text


def _hour(number: int) -> str:
    """Hour ``number`` since the Unix epoch as "2026-09-21T14:00Z" (cached like ``_day``)."""
    text = _HOURS.get(number)
    if text is None:
        text = _HOURS[number] = datetime.fromtimestamp(number * 3600, UTC).strftime("%Y-%m-%dT%H:00Z")
    return text


def _instant(ms: int) -> str:
    """Milliseconds since the epoch as "2026-09-21T14:03:05.123Z"."""
    seconds, milli = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{milli:03d}Z"


__all__ = ["CSV_HEADER", "MEMBERS_CSV_HEADER", "RevenueBook", "members_csv"]
