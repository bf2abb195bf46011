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
        """Every task and robot row the log does not account for, and every one of the log's missing from a table."""
        tasks = {task_id: {name: getattr(task, name) for name in _TASK_FIELDS} for task_id, task in self.tasks.items()}
        robots = {robot_id: {"owner": robot.owner, "currency": robot.currency, **robot.counts,
                             "retired": int(robot.retired)} for robot_id, robot in self.robots.items()}
        return (self._problems
                + _compare("task", "tasks", "posted", tasks, self.db.read(
                    f"SELECT id, {', '.join(_TASK_FIELDS)} FROM market_tasks"), _TASK_FIELDS)
                + _compare("robot", "robots", "registered", robots, self.db.read(
                    f"SELECT robot, {', '.join(_ROBOT_FIELDS)} FROM market_robots"), _ROBOT_FIELDS))


def _compare(noun: str, table: str, verb: str, logged: dict[str, dict[str, Any]], rows: list[tuple[Any, ...]],
             names: tuple[str, ...]) -> list[str]:
    """Each row of ``table`` held against what the log says of it (``logged``, by id), field by field."""
    held = {row[0]: dict(zip(names, row[1:])) for row in rows}
    problems = []
    for key in sorted(held.keys() | logged.keys()):
        stated, expected = held.get(key), logged.get(key)
        if expected is None:
            problems.append(f"{noun} {key}: in the {table} table, but no entry of the log {verb} it")
        elif stated is None:
            problems.append(f"{noun} {key}: {verb} by the log but missing from the {table} table")
        else:
            problems += [f"{noun} {key}: the table says {name} {stated[name]!r}, the log {expected[name]!r}"
                         for name in names if stated[name] != expected[name]]
    return problems


_TASK_FIELDS = ("customer", "task_hash", "max_price", "deadline_ms", "state", "robot", "price", "award_hash",
                "outcome")
_ROBOT_FIELDS = ("owner", "currency", "delivered", "failed", "faked", "retired")
_HANDLERS = {"escrow.lock": MarketAudit._lock, TASK_AWARD: MarketAudit._award, TASK_RELEASE: MarketAudit._release,
             "escrow.release": MarketAudit._settle, "escrow.refund": MarketAudit._refund,
             ROBOT_REGISTER: MarketAudit._register, ROBOT_RETIRE: MarketAudit._retire}
