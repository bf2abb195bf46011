"""The bulk-written benchmark ledger is a valid ledger, and the dashboard API benchmark runs and reports its figures
(its speed is measured, never asserted)."""

import itertools
import re

from benchmarks import dashboard_api
from benchmarks.ledger_fill import DAO_DID, OPERATOR, Shape, cached, fleet_of
from dao.dao import Dao
from dashboard.revenue import RevenueBook
from launch.ledger_command import auditors
from ledger.journal import Ledger

KINDS = {"account.open", "shares.mint", "deposit", "bond", "escrow.lock", "escrow.release", "escrow.refund",
         "dao.split", "dao.claim", "reversal"}


def test_the_loader_writes_a_ledger_that_verifies_and_balances(tmp_path) -> None:
    path, built = cached(Shape(2_000), tmp_path)
    assert built and cached(Shape(2_000), tmp_path) == (path, False)  # the second time: the cached file
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing half-written left beside it
    ledger = Ledger.open(f"sqlite:///{path}", None)
    try:
        assert ledger.public_key == OPERATOR.public_key and ledger.size() == 2_000
        assert ledger.verify([OPERATOR.public_key], auditors=auditors(ledger)) == []  # leaves, books and shares
        assert ledger.db.read("SELECT currency, SUM(amount) FROM postings GROUP BY currency") == [("EUR", 0)]
        entries = ledger.entries()
        assert {e.kind for e in entries} <= KINDS and {"escrow.release", "dao.split", "dao.claim"} <= {
            e.kind for e in entries}
        assert all(a.at_ms <= b.at_ms for a, b in itertools.pairwise(entries))
        negative = {a: n for a, n in ledger.balances().items() if n < 0 and not a.startswith("world:")}
        assert negative == {}  # nobody spent money they did not have
        dao = Dao(ledger, DAO_DID)
        assert dao.members() == fleet_of(Shape(2_000)).members
        book = RevenueBook(ledger, DAO_DID)
        assert book.refresh() == 2_000
        summary = book.summary(dao.members(), dao.params()[1].as_dict())
        assert summary == dashboard_api.sql_summary(ledger, dao)  # the baseline computes the same figures
        assert summary["earned"] > 0 and len(summary["by_robot"]) > 100 and len(summary["by_member"]) == 20
    finally:
        ledger.close()


def test_the_quick_run_prints_both_ways_and_the_goal(tmp_path, capsys) -> None:
    assert dashboard_api.main(["--quick", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^catch-up: the first refresh\(\) folded 5,000 entries in [\d.]+ s", out, re.M)
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [row[0] for row in rows] == ["SQL aggregate per request (baseline)", "RevenueBook, over HTTP",
                                        "RevenueBook refresh() + summary(), in process"]
    assert rows[0][4:] == ("1.00000", "1.00000") and all(float(row[2]) > 0 for row in rows)
    assert re.search(r"^goal p99 < 50 ms: (met|NOT met) \([\d.]+ ms; baseline p99 [\d.]+ ms\)$", out, re.M)
