"""Durable settlements per second, on SQLite and on PostgreSQL, against a bare durable commit in the same run.

    .venv/bin/python benchmarks/settle.py            # SQLite, and PostgreSQL on a throwaway server
    .venv/bin/python benchmarks/settle.py --no-pg    # SQLite only
    .venv/bin/python benchmarks/settle.py --quick    # a short run (the smoke test)

A settlement is what happens when a robot's receipt arrives for an awarded task:
the proof is checked against its telemetry trail, the task moves awarded ->
settled by compare-and-set, and one signed, balanced entry (owner, fee, the
customer's change, out of escrow) is written, all in one transaction committed
to disk (SQLite WAL with synchronous=FULL; PostgreSQL with fsync on). The
baseline is the same database committing one tiny row per transaction: the
ceiling that flushing to disk sets. Tasks are posted, bid on and awarded
beforehand, outside the timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/settle.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from identity.envelope import Envelope  # noqa: E402
from identity.keys import Signer  # noqa: E402
from ledger.db import open_database  # noqa: E402
from ledger.journal import Ledger  # noqa: E402
from marketplace.market import Marketplace  # noqa: E402
from tests.marketplace.stand_ins import Sealer, envelope  # noqa: E402

ROBOTS = [f"did:key:zRobot{i}" for i in range(20)]
CUSTOMER, OWNER = "did:key:zCustomer", "did:key:zOwner"
GROUP = 50  # receipts settled per commit in the grouped mode: what arrives in one service turn of a busy fleet


def _staged(url: str, tasks: int) -> tuple[Ledger, Marketplace, list[Envelope]]:
    """A marketplace with ``tasks`` awarded tasks and, for each, the robot's receipt (and its trail)."""
    now = [1_790_000_000.0]
    ledger = Ledger.open(url, Signer.generate(), clock=lambda: now[0])
    market = Marketplace(ledger, Sealer(), clock=lambda: now[0])  # type: ignore[arg-type]
    market.fund(CUSTOMER, tasks * 1_000, "EUR", key="customer")
    market.fund(OWNER, 100_000, "EUR", key="owner", role="owner")
    for robot in ROBOTS:
        market.register_robot(robot, OWNER, 1_000, "EUR")
    receipts = []
    for n in range(tasks):
        robot = ROBOTS[n % len(ROBOTS)]
        market.post(envelope("task", CUSTOMER, {
            "id": f"t{n}", "customer": CUSTOMER, "pickup": {"x": 0.0, "y": 0.0}, "dropoff": {"x": 10.0, "y": 5.0},
            "deadline": int((now[0] + 3_600) * 1000), "max_price": 900, "currency": "EUR", "payload_kg": 1.0}))
        market.bid(envelope("bid", robot, {"task": f"t{n}", "price": 500 + n % 300, "currency": "EUR",
                                            "eta_ms": 60_000}))
        market.award_to(f"t{n}", robot)
        t_ms = int(now[0] * 1000) + n
        market.observe("t", envelope("telemetry", robot, {"t": t_ms, "pose": {"x": 10.0, "y": 5.0}}))
        receipts.append(envelope("receipt", robot, {"task": f"t{n}", "t": t_ms,
                                                     "pose": {"x": 10.0, "y": 5.0, "theta": 0.0}}))
    return ledger, market, receipts


def settle_rate(url: str, tasks: int, group: int = 1) -> float:
    """Settlements per second: every staged receipt judged and settled, ``group`` receipts per durable commit."""
    ledger, market, receipts = _staged(url, tasks)
    try:
        start = time.perf_counter()
        for first in range(0, tasks, group):
            market.deliver_many(receipts[first:first + group])
        elapsed = time.perf_counter() - start
        assert len(market.tasks("settled")) == tasks and ledger.verify() == []
        return tasks / elapsed
    finally:
        ledger.close()


def commit_rate(url: str, commits: int) -> float:
    """The baseline: durable commits per second of one small row each, in the same database."""
    db = open_database(url)
    try:
        db.script(["CREATE TABLE IF NOT EXISTS bench_commits (n BIGINT PRIMARY KEY, note TEXT NOT NULL)"])
        start = time.perf_counter()
        for n in range(commits):
            with db.transaction() as cursor:
                cursor.execute("INSERT INTO bench_commits (n, note) VALUES (?, ?)", (n, "x" * 64))
        return commits / (time.perf_counter() - start)
    finally:
        db.close()


def measure(name: str, make_url, tasks: int, rounds: int) -> dict:
    """Median settlements/s (one per commit, and grouped) and bare commits/s over ``rounds`` fresh databases."""
    settles, grouped, commits = [], [], []
    for round_ in range(rounds):
        commits.append(commit_rate(make_url(f"commit{round_}"), tasks))
        settles.append(settle_rate(make_url(f"settle{round_}"), tasks))
        grouped.append(settle_rate(make_url(f"grouped{round_}"), tasks, GROUP))
        print(f"  {name} round {round_ + 1}/{rounds}: {settles[-1]:,.0f} settlements/s one per commit, "
              f"{grouped[-1]:,.0f} grouped, {commits[-1]:,.0f} bare commits/s", file=sys.stderr, flush=True)
    return {"name": name, "settle": statistics.median(settles), "grouped": statistics.median(grouped),
            "commit": statistics.median(commits)}


def main(argv: list[str] | None = None) -> int:
    """Measure SQLite and PostgreSQL and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--no-pg", action="store_true", help="measure SQLite only")
    args = parser.parse_args(argv)
    tasks, rounds = (50, 1) if args.quick else (2_000, 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="depai-settle-") as tmp:
        rows.append(measure("SQLite (WAL, synchronous=FULL)", lambda name: f"sqlite:///{Path(tmp) / name}.sqlite3",
                            tasks, rounds))
        if not args.no_pg:
            rows.append(_postgres(Path(tmp), tasks, rounds))
    print(f"\n{tasks:,} settlements per round, {rounds} rounds, medians; grouped: {GROUP} receipts per commit\n")
    print("| database | bare durable commits/s (baseline) | settlements/s, one per commit | vs baseline "
          "| settlements/s, grouped | vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['commit']:,.0f} | {row['settle']:,.0f} | {row['settle'] / row['commit']:.2f} "
              f"| {row['grouped']:,.0f} | {row['grouped'] / row['commit']:.2f} |")
    one, grouped = rows[0]["settle"], rows[0]["grouped"]
    print(f"\n>= 2,000 settlements/s on SQLite: grouped {'met' if grouped >= 2_000 else 'NOT met'} ({grouped:,.0f}); "
          f"one per commit {'met' if one >= 2_000 else 'NOT met'} ({one:,.0f})")
    return 0


def _postgres(tmp: Path, tasks: int, rounds: int) -> dict:
    """Measure PostgreSQL on a throwaway server started (and stopped) here, a fresh database per round."""
    from tests.pgserver import start_postgres  # the test suite's throwaway server

    with start_postgres(tmp / "pg") as server:
        return measure("PostgreSQL (fsync on)", server.create_database, tasks, rounds)


if __name__ == "__main__":
    sys.exit(main())
