"""The marketplace's tables held against the ledger's log: every task's state and every robot's record.

Each move of a task is an entry whose signed refs name it: ``escrow.lock``
opens it, ``task.award`` and ``task.release`` give it to a robot and take it
back, ``escrow.release`` settles it and ``escrow.refund`` refunds it (with the
robot's blame, if any). ``robot.register`` and ``robot.retire`` say whose a
robot is. Folding them gives what ``market_tasks`` and ``market_robots`` must
say; ``depai ledger verify`` names every row that says otherwise (a settled
task set back to ``awarded``, a robot's owner or failures edited).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.db import Database
from ledger.journal import Entry
from marketplace.market import (AWARDED, OPEN, REFUNDED, ROBOT_REGISTER, ROBOT_RETIRE, SETTLED, TASK_AWARD,
                                TASK_RELEASE)


@dataclass(slots=True)
class _Task:
    """A task as the log states it."""

    customer: str
    task_hash: str
    max_price: int
    deadline_ms: int
    state: str = OPEN
    robot: str | None = None
    price: int | None = None
    award_hash: str | None = None
    outcome: str | None = None


@dataclass(slots=True)
class _Robot:
    """A robot as the log states it."""

    owner: str
    currency: str
    counts: dict[str, int] = field(default_factory=lambda: {"delivered": 0, "failed": 0, "faked": 0})
    retired: bool = False


class MarketAudit:
    """Folds the log's task and robot entries (``take``), then compares them with the tables (``problems``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tasks: dict[str, _Task] = {}
        self.robots: dict[str, _Robot] = {}
        self._problems: list[str] = []

    def take(self, entry: Entry) -> None:
        """Fold one entry of the log."""
        refs = entry.refs
        handler = _HANDLERS.get(entry.kind)
        if handler is not None and refs:
            try:
                handler(self, entry, refs)
            except (KeyError, TypeError, ValueError) as err:
                self._problems.append(f"entry {entry.seq}: a {entry.kind} whose refs do not say {err}")

    def _lock(self, entry: Entry, refs: dict[str, Any]) -> None:
        escrow = f"escrow:{refs['task']}"
        amount = sum(n for account, _, n in entry.postings if account == escrow)
        self.tasks[refs["task"]] = _Task(refs["customer"], refs["task_hash"], amount, refs["deadline_ms"])

    def _award(self, entry: Entry, refs: dict[str, Any]) -> None:
        task = self._task(entry, refs)
        if task is not None:
            task.state, task.robot, task.price, task.award_hash = AWARDED, refs["robot"], refs["price"], \
                refs["award_hash"]

    def _release(self, entry: Entry, refs: dict[str, Any]) -> None:
        task = self._task(entry, refs)
        if task is not None:
            task.state, task.robot, task.price, task.award_hash = OPEN, None, None, None

    def _settle(self, entry: Entry, refs: dict[str, Any]) -> None:
        task = self._task(entry, refs)
        if task is not None:
            task.state, task.outcome = SETTLED, refs["outcome"]
            self._count(entry, refs["robot"], "delivered")

    def _refund(self, entry: Entry, refs: dict[str, Any]) -> None:
        task = self._task(entry, refs)
        if task is not None:
            task.state, task.outcome = REFUNDED, refs["outcome"]
            if refs["blame"] is not None:
                self._count(entry, refs["robot"], refs["blame"])

    def _register(self, entry: Entry, refs: dict[str, Any]) -> None:
        self.robots[refs["robot"]] = _Robot(refs["owner"], refs["currency"])

    def _retire(self, entry: Entry, refs: dict[str, Any]) -> None:
        robot = self.robots.get(refs["robot"])
        if robot is None:
            self._problems.append(f"entry {entry.seq}: retires {refs['robot']}, which no entry registered")
        else:
            robot.retired = True

    def _task(self, entry: Entry, refs: dict[str, Any]) -> _Task | None:
        task = self.tasks.get(refs["task"])
        if task is None:
            self._problems.append(f"entry {entry.seq}: a {entry.kind} of task {refs['task']}, which no entry posted")
        return task

    def _count(self, entry: Entry, robot_id: str, count: str) -> None:
        robot = self.robots.get(robot_id)
        if robot is None or count not in robot.counts:
            self._problems.append(f"entry {entry.seq}: counts a {count} task against {robot_id}, which no entry "
                                  "registered")
        else:
            robot.counts[count] += 1

    def problems(self) -> list[str]:
        """Every task and robot row the log does not account for, and every log task missing from the table."""
        problems = list(self._problems)
        held = {row[0]: row for row in self.db.read(
            "SELECT id, customer, task_hash, max_price, deadline_ms, state, robot, price, award_hash, outcome "
            "FROM market_tasks")}
        for task_id in sorted(held.keys() | self.tasks.keys()):
            row, logged = held.get(task_id), self.tasks.get(task_id)
            if logged is None:
                problems.append(f"task {task_id}: in the tasks table, but no entry of the log posted it")
            elif row is None:
                problems.append(f"task {task_id}: posted by the log but missing from the tasks table")
            else:
                stated = dict(zip(_TASK_FIELDS, row[1:]))
                expected = {name: getattr(logged, name) for name in _TASK_FIELDS}
                problems += [f"task {task_id}: the table says {name} {stated[name]!r}, the log {expected[name]!r}"
                             for name in _TASK_FIELDS if stated[name] != expected[name]]
        robots = {row[0]: row for row in self.db.read(
            "SELECT robot, owner, currency, delivered, failed, faked, retired FROM market_robots")}
        for robot_id in sorted(robots.keys() | self.robots.keys()):
            row, logged_robot = robots.get(robot_id), self.robots.get(robot_id)
            if logged_robot is None:
                problems.append(f"robot {robot_id}: in the robots table, but no entry of the log registered it")
            elif row is None:
                problems.append(f"robot {robot_id}: registered by the log but missing from the robots table")
            else:
                stated = dict(zip(_ROBOT_FIELDS, row[1:]))
                expected = {"owner": logged_robot.owner, "currency": logged_robot.currency, **logged_robot.counts,
                            "retired": int(logged_robot.retired)}
                problems += [f"robot {robot_id}: the table says {name} {stated[name]!r}, the log {expected[name]!r}"
                             for name in _ROBOT_FIELDS if stated[name] != expected[name]]
        return problems


_TASK_FIELDS = ("customer", "task_hash", "max_price", "deadline_ms", "state", "robot", "price", "award_hash",
                "outcome")
_ROBOT_FIELDS = ("owner", "currency", "delivered", "failed", "faked", "retired")
_HANDLERS = {"escrow.lock": MarketAudit._lock, TASK_AWARD: MarketAudit._award, TASK_RELEASE: MarketAudit._release,
             "escrow.release": MarketAudit._settle, "escrow.refund": MarketAudit._refund,
             ROBOT_REGISTER: MarketAudit._register, ROBOT_RETIRE: MarketAudit._retire}
