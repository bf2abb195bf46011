"""Members' shares with their whole history, so a vote's weight is read as it stood at a proposal's snapshot.

Every mint and burn is an append-only row (member, class, change, time) and,
in the same transaction, a record entry of the ledger stating the same (kind
``shares.mint`` or ``shares.burn``, key ``shares:<row>``), so the register can
be recomputed from the signed log (dao/audit.py); a balance at time t is the
sum of the member's changes up to t, and so is the total. This is what OpenZeppelin's ERC20Votes checkpoints keep, by time
instead of block. Voting shares count in votes and in the revenue split;
economic shares only in the split. A burn below zero is refused, and so is a
mint that would take a class's total supply past 2**53 - 1 (as ERC20Votes caps
its supply), so no sum the DAO reads can overflow; the database refuses UPDATE
and DELETE of the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from identity.errors import DepaiError
from ledger.db import Cursor
from ledger.journal import MAX_AMOUNT, Ledger

VOTING, ECONOMIC = "voting", "economic"
SHARES_MINT, SHARES_BURN = "shares.mint", "shares.burn"  # the ledger's record entries of a change

_SCHEMA = {
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS dao_shares (
            seq INTEGER PRIMARY KEY, member TEXT NOT NULL, class TEXT NOT NULL CHECK (class IN ('voting', 'economic')),
            delta BIGINT NOT NULL CHECK (delta <> 0), at_s DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS dao_shares_by_member ON dao_shares (member, class, at_s)",
        """CREATE TRIGGER IF NOT EXISTS dao_shares_no_update BEFORE UPDATE ON dao_shares
        BEGIN SELECT RAISE(ABORT, 'dao: share history is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS dao_shares_no_delete BEFORE DELETE ON dao_shares
        BEGIN SELECT RAISE(ABORT, 'dao: share history is append-only'); END""",
    ],
    "postgresql": [
        """CREATE TABLE IF NOT EXISTS dao_shares (
            seq BIGSERIAL PRIMARY KEY, member TEXT NOT NULL, class TEXT NOT NULL CHECK (class IN ('voting', 'economic')),
            delta BIGINT NOT NULL CHECK (delta <> 0), at_s DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS dao_shares_by_member ON dao_shares (member, class, at_s)",
        """CREATE OR REPLACE FUNCTION dao_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'dao: % is append-only', TG_TABLE_NAME; END $$""",
        "DROP TRIGGER IF EXISTS dao_shares_append_only ON dao_shares",
        "CREATE TRIGGER dao_shares_append_only BEFORE UPDATE OR DELETE ON dao_shares "
        "FOR EACH ROW EXECUTE FUNCTION dao_append_only()",
    ],
}


class SharesError(DepaiError, ValueError):
    """A mint or burn the DAO refuses; nothing changed."""

    code = "shares_refused"


class Shares:
    """The share register of one DAO, in its database."""

    def __init__(self, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.db, self.clock = ledger, ledger.db, clock
        self.db.script(_SCHEMA[self.db.dialect])

    def mint(self, member: str, amount: int, *, share_class: str = VOTING, reason: str,
             cursor: Cursor | None = None) -> None:
        """Give ``member`` ``amount`` more shares of a class, now."""
        self._change(member, _positive(amount), share_class, reason, cursor)

    def burn(self, member: str, amount: int, *, share_class: str = VOTING, reason: str,
             cursor: Cursor | None = None) -> None:
        """Take ``amount`` shares of a class from ``member``, now; refused beyond what it holds."""
        self._change(member, -_positive(amount), share_class, reason, cursor)

    def _change(self, member: str, delta: int, share_class: str, reason: str, cursor: Cursor | None) -> None:
        if share_class not in (VOTING, ECONOMIC):
            raise SharesError(f"share class must be {VOTING!r} or {ECONOMIC!r}, got {share_class!r}")
        if not member:
            raise SharesError("a member needs an id (its DID)")

        def work(c: Cursor) -> None:
            at_ms = int(self.clock() * 1000)  # to the millisecond, as the ledger's record states it
            held = int(c.execute("SELECT COALESCE(SUM(delta), 0) FROM dao_shares WHERE member = ? AND class = ?",
                                 (member, share_class)).fetchone()[0])
            if held + delta < 0:
                raise SharesError(f"{member} holds {held} {share_class} shares; cannot burn {-delta}")
            if delta > 0:
                supply = int(c.execute("SELECT COALESCE(SUM(delta), 0) FROM dao_shares WHERE class = ?",
                                       (share_class,)).fetchone()[0])
                if supply + delta > MAX_AMOUNT:  # the total supply is capped, so no sum of shares can overflow
                    raise SharesError(f"minting {delta} {share_class} shares would take their total supply "
                                      f"({supply}) past {MAX_AMOUNT}")
            seq = int(c.execute("INSERT INTO dao_shares (member, class, delta, at_s, reason) VALUES (?, ?, ?, ?, ?) "
                                "RETURNING seq", (member, share_class, delta, at_ms / 1000, reason)).fetchone()[0])
            self.ledger.record(f"shares:{seq}", SHARES_MINT if delta > 0 else SHARES_BURN,
                               {"member": member, "class": share_class, "delta": delta, "at_ms": at_ms,
                                "reason": reason}, cursor=c)

        work(cursor) if cursor is not None else self.db.run(work)

    def balance_at(self, member: str, at_s: float | None = None, share_class: str = VOTING) -> int:
        """``member``'s shares of a class as they stood at ``at_s`` (default: now)."""
        at = self.clock() if at_s is None else at_s
        return int(self.db.read("SELECT COALESCE(SUM(delta), 0) FROM dao_shares WHERE member = ? AND class = ? "
                                "AND at_s <= ?", (member, share_class, at))[0][0])

    def total_at(self, at_s: float | None = None, share_class: str = VOTING) -> int:
        """All shares of a class at ``at_s`` (default: now): the quorum's base."""
        at = self.clock() if at_s is None else at_s
        return int(self.db.read("SELECT COALESCE(SUM(delta), 0) FROM dao_shares WHERE class = ? AND at_s <= ?",
                                (share_class, at))[0][0])

    def holders(self, at_s: float | None = None, share_class: str | None = None, *,
                cursor: Cursor | None = None) -> dict[str, int]:
        """Every member with shares (of one class, or both together) at ``at_s``, by DID (read inside the caller's
        transaction when given its cursor)."""
        at = self.clock() if at_s is None else at_s
        sql = "SELECT member, SUM(delta) FROM dao_shares WHERE at_s <= ?"
        params: tuple = (at,)
        if share_class is not None:
            sql, params = sql + " AND class = ?", (at, share_class)
        sql += " GROUP BY member ORDER BY member"
        rows = cursor.execute(sql, params).fetchall() if cursor is not None else self.db.read(sql, params)
        return {member: int(total) for member, total in rows if int(total) > 0}

    def changed_between(self, after_s: float, until_s: float, *, cursor: Cursor) -> list[float]:
        """The distinct instants in (after_s, until_s] at which some member's shares changed, in order."""
        rows = cursor.execute("SELECT DISTINCT at_s FROM dao_shares WHERE at_s > ? AND at_s <= ? ORDER BY at_s",
                              (after_s, until_s)).fetchall()
        return [float(at) for (at,) in rows]


def _positive(amount: int) -> int:
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
        raise SharesError(f"a share amount is a positive integer up to {MAX_AMOUNT}, got {amount!r}")
    return amount
