"""The DAO's share register held against the ledger's log: every mint and burn must be a signed record entry.

``dao/shares.py`` writes each change twice in one transaction: a row of
``dao_shares`` (what votes and splits read) and a ``shares.mint`` or
``shares.burn`` record entry keyed ``shares:<row>``. ``depai ledger verify``
names every row the log does not state exactly (shares multiplied, a member
swapped, a row deleted or added) and every record without its row.
"""

from __future__ import annotations

from typing import Any

from dao.shares import SHARES_BURN, SHARES_MINT
from ledger.db import Database
from ledger.journal import Entry


class SharesAudit:
    """Folds the log's share records (``take``), then compares them with ``dao_shares`` (``problems``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.records: dict[int, tuple[int, dict[str, Any]]] = {}  # dao_shares row -> (entry, refs)
        self._problems: list[str] = []

    def take(self, entry: Entry) -> None:
        """Fold one entry of the log."""
        if entry.kind not in (SHARES_MINT, SHARES_BURN):
            return
        try:
            row = int(entry.key.removeprefix("shares:"))
            delta = entry.refs["delta"]
        except (KeyError, ValueError):
            self._problems.append(f"entry {entry.seq}: a {entry.kind} that names no share row or change")
            return
        if (entry.kind == SHARES_MINT) != (type(delta) is int and delta > 0):
            self._problems.append(f"entry {entry.seq}: a {entry.kind} of {delta!r} shares")
        self.records[row] = (entry.seq, dict(entry.refs))

    def problems(self) -> list[str]:
        """Every share row the log does not state, and every share record without its row."""
        problems = list(self._problems)
        if not self.db.has_table("dao_shares"):
            return problems + [f"share record entry {seq}: the database has no share register" for seq, _ in
                               self.records.values()]
        rows = {int(row[0]): row for row in self.db.read("SELECT seq, member, class, delta, at_s FROM dao_shares")}
        for row_id in sorted(rows.keys() | self.records.keys()):
            row, record = rows.get(row_id), self.records.get(row_id)
            if record is None:
                problems.append(f"shares row {row_id}: {row[3]!r} {row[2]} shares for {row[1]}, which no entry "
                                "of the log records")
            elif row is None:
                problems.append(f"shares row {row_id}: recorded by entry {record[0]} but missing from the share "
                                "register")
            else:
                seq, refs = record
                stated = (row[1], row[2], row[3], round(float(row[4]) * 1000))
                logged = (refs.get("member"), refs.get("class"), refs.get("delta"), refs.get("at_ms"))
                if stated != logged:
                    problems.append(f"shares row {row_id}: the register says {row[3]!r} {row[2]} shares for "
                                    f"{row[1]} at {stated[3]} ms, entry {seq} of the log says {logged[2]!r} "
                                    f"{logged[1]} for {logged[0]} at {logged[3]} ms")
        return problems
