"""Dashboard API latency: GET /api/revenue over real HTTP on a 1,000,000-entry ledger, against a SQL aggregate;
and how long the /revenue page takes to load in Chromium over that ledger.

    .venv/bin/python benchmarks/dashboard_api.py            # 1,000,000 entries (built once, about 3 minutes)
    .venv/bin/python benchmarks/dashboard_api.py --quick    # a short run (the smoke test; no browser)

The ledger is a month of a 200-robot fleet (benchmarks/ledger_fill.py), built
once and cached under the temp directory. The server is the dashboard's own app
(``dashboard.app.create_app`` over a read-only ``LedgerView``), whose
/api/revenue answers from a ``RevenueBook`` (dashboard/revenue.py): each request refreshes it (one
``MAX(seq)`` query when nothing is new), reads the DAO's members and split
(two small queries) and serializes the summary. The baseline, in the same run
and over the same HTTP, is the straightforward way: aggregate the postings in
SQL on every request (revenue by day and robot, the DAO's balances, the
members' split and claims). Both answers are checked equal before timing.
Requests are sequential, from an httpx client to uvicorn on 127.0.0.1, after a
warm-up; also reported: the one-time catch-up (the first ``refresh()`` over the
whole ledger), the in-process cost of ``refresh()`` + ``summary()``, and GET
/api/revenue/tasks (the newest 1,000 settlements, the page's task table).

Page load (``--page-loads N``, default 20; 0 with ``--quick``): Debian's
Chromium (tests/browser.py finds it) opens /revenue in a fresh context each
time (nothing cached), from navigation start until the page has drawn its
charts and tables from /api/revenue and /api/revenue/tasks (``body`` gets
``data-revenue-as-of``); requests to any other host are aborted and counted.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/dashboard_api.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import httpx  # noqa: E402
import orjson  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Response  # noqa: E402

from benchmarks.ledger_fill import DAO_DID, Shape, cached  # noqa: E402
from dao.dao import Dao  # noqa: E402
from dashboard.app import create_app  # noqa: E402
from dashboard.revenue import ROLES, RevenueBook  # noqa: E402
from dashboard.revenue import _day as iso_day  # noqa: E402
from dashboard.revenue import _hour as iso_hour  # noqa: E402
from dashboard.view import LedgerView  # noqa: E402
from ledger.journal import Ledger  # noqa: E402

GOAL_P99_MS = 50.0
_HOUR_MS, _DAY_MS = 3_600_000, 86_400_000
_MEMO = "delivered by "


def sql_summary(ledger: Ledger, dao: Dao) -> dict[str, Any]:
    """The baseline: the /api/revenue figures aggregated from the postings in SQL, on every call."""
    did, currency, read = dao.did, dao.currency, ledger.db.read
    as_of = int(read("SELECT COALESCE(MAX(seq), 0) FROM entries")[0][0])
    groups = read(
        "SELECT e.at_ms / ? AS hour, COALESCE(o.memo, e.memo), SUM(p.amount), "
        "SUM(CASE WHEN p.amount > 0 THEN 1 ELSE -1 END), COUNT(*) "
        "FROM postings p JOIN entries e ON e.seq = p.entry LEFT JOIN entries o ON o.seq = e.reverses "
        "WHERE p.account = ? AND p.entry <= ? AND (e.kind = 'escrow.release' "
        "OR (e.kind = 'reversal' AND o.kind = 'escrow.release')) GROUP BY 1, 2", (_HOUR_MS, f"owner:{did}", as_of))
    by_hour: dict[int, list[int]] = {}
    by_day: dict[int, list[int]] = {}
    by_robot: dict[str | None, list[int]] = {}
    settlements = 0
    for hour, memo, earned, tasks, rows in groups:
        robot = memo[len(_MEMO):] if memo.startswith(_MEMO) else None
        settlements += int(rows)
        for totals in (by_hour.setdefault(int(hour), [0, 0]), by_day.setdefault(int(hour) // 24, [0, 0]),
                       by_robot.setdefault(robot, [0, 0])):
            totals[0] += int(earned)
            totals[1] += int(tasks)
    _, rules, _ = dao.params()
    split = rules.as_dict()
    roles = list(ROLES) + sorted(set(split) - set(ROLES) - {"members"})
    names = {f"{role}:{did}": role for role in roles} | {f"owner:{did}": "undistributed", f"fees:{currency}": "fees"}
    balances = dict.fromkeys(names.values(), 0)
    for account, total in read(f"SELECT account, SUM(amount) FROM postings WHERE account IN "
                               f"({', '.join('?' * len(names))}) AND entry <= ? GROUP BY account",
                               (*names, as_of)):
        balances[names[account]] = int(total)
    prefix = f"claimable:{did}:"
    members: dict[str, list[int]] = {}
    for account, claim, total in read(
            "SELECT p.account, (e.kind = 'dao.claim' OR o.kind = 'dao.claim'), SUM(p.amount) "
            "FROM postings p JOIN entries e ON e.seq = p.entry LEFT JOIN entries o ON o.seq = e.reverses "
            "WHERE p.account >= ? AND p.account < ? AND p.entry <= ? GROUP BY 1, 2",
            (prefix, prefix[:-1] + ";", as_of)):
        totals = members.setdefault(account[len(prefix):], [0, 0])
        if claim:
            totals[1] -= int(total)
        else:
            totals[0] += int(total)
    shares = dao.members()
    by_member = []
    for member in sorted(set(members) | {m for m, n in shares.items() if n > 0}):
        distributed, claimed = members.get(member, (0, 0))
        by_member.append({"member": member, "shares": shares.get(member, 0), "distributed": distributed,
                          "claimed": claimed, "claimable": distributed - claimed})
    return {"currency": currency, "as_of": as_of, "earned": sum(t[0] for t in by_day.values()),
            "fees": balances.pop("fees"), "settlements": settlements,
            "by_hour": [{"hour": iso_hour(h), "at_ms": h * _HOUR_MS, "earned": e, "tasks": t}
                        for h, (e, t) in sorted(by_hour.items())],
            "by_day": [{"day": iso_day(d), "at_ms": d * _DAY_MS, "earned": e, "tasks": t}
                       for d, (e, t) in sorted(by_day.items())],
            "by_robot": [{"robot": r, "earned": e, "tasks": t}
                         for r, (e, t) in sorted(by_robot.items(), key=lambda item: (-item[1][0], item[0] or ""))],
            "by_member": by_member, "split": split,
            "accounts": {role: balances[role] for role in [*roles, "undistributed"]}}


def unnamed(summary: dict[str, Any]) -> dict[str, Any]:
    """The app's summary as the book gives it: without the names it adds to robots and members, the robots that
    earned nothing (the baseline lists those that earned) and its order by name (the book's is by DID)."""
    summary["by_robot"] = sorted(({k: v for k, v in row.items() if k != "name"} for row in summary["by_robot"]
                                  if row["earned"] or row["tasks"]), key=lambda row: (-row["earned"], row["robot"] or ""))
    summary["by_member"] = sorted(({k: v for k, v in row.items() if k != "name"} for row in summary["by_member"]),
                                  key=lambda row: row["member"])
    return summary


def make_app(view: LedgerView) -> FastAPI:
    """The dashboard's own app over ``view``, plus /api/revenue-sql: the baseline, served the same way."""
    app = create_app(view)

    def revenue_sql() -> Response:
        return Response(orjson.dumps(sql_summary(view.ledger, view.dao)), media_type="application/json")

    app.add_api_route("/api/revenue-sql", revenue_sql, methods=["GET"])
    return app


class Server:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, app: FastAPI) -> None:
        # proto IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it each response's body waits ~40 ms behind its headers (Nagle against delayed ACKs)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def latencies(call: Callable[[], Any], count: int, warmup: int, label: str) -> list[float]:
    """Seconds per call over ``count`` sequential calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    every = max(1, count // 5)
    for n in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if (n + 1) % every == 0:
            print(f"  {label}: {n + 1:,}/{count:,} requests", file=sys.stderr, flush=True)
    return times


def percentile(times: list[float], q: int) -> float:
    """The q-th percentile in milliseconds (statistics' inclusive method: exact at both ends)."""
    if len(times) == 1:
        return times[0] * 1000
    return statistics.quantiles(times, n=100, method="inclusive")[q - 1] * 1000


def page_loads(url: str, count: int) -> tuple[list[float], list[str]]:
    """Seconds from navigation start until /revenue has drawn its charts and tables, ``count`` times, each in a
    fresh Chromium context (nothing cached); and the outside URLs the page tried (aborted)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, INSTALL_HINT, find_chromium

    executable = find_chromium()
    if executable is None:
        raise SystemExit(f"no Chromium for --page-loads: {INSTALL_HINT}")
    times: list[float] = []
    outside: list[str] = []

    def block(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        try:
            for n in range(count + 1):  # the first load warms Chromium itself up and is not counted
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                try:
                    context.route("**/*", block)
                    page = context.new_page()
                    page.goto(f"{url}/revenue", wait_until="commit", timeout=120_000)
                    page.wait_for_selector("body[data-revenue-as-of]", timeout=120_000)
                    page.wait_for_selector("#tasks tbody tr[data-task]", timeout=120_000)
                    elapsed_ms = page.evaluate("performance.now()")  # since this navigation started
                    if n:
                        times.append(elapsed_ms / 1000)
                finally:
                    context.close()
        finally:
            browser.close()
    return times, outside


def catch_up(book: RevenueBook, total: int) -> float:
    """Seconds for the first refresh over the whole ledger, with progress on stderr."""
    done = threading.Event()

    def report() -> None:
        while not done.wait(3.0):
            print(f"  catching up: {book.as_of:,}/{total:,} entries folded", file=sys.stderr, flush=True)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    start = time.perf_counter()
    folded = book.refresh()
    elapsed = time.perf_counter() - start
    done.set()
    reporter.join()
    assert folded == total, (folded, total)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the ledger, serve it, time both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--entries", type=int, default=None, help="ledger size (default 1,000,000; quick 5,000)")
    parser.add_argument("--requests", type=int, default=None, help="timed requests (default 2,000; quick 100)")
    parser.add_argument("--baseline-requests", type=int, default=None, help="timed baseline requests "
                                                                             "(default 50; quick 10)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where built ledgers are kept "
                                                                     "(default: <tmp>/depai-bench)")
    parser.add_argument("--page-loads", type=int, default=None, help="times /revenue is loaded in Chromium "
                                                                      "(default 20; quick 0)")
    args = parser.parse_args(argv)
    entries = args.entries or (5_000 if args.quick else 1_000_000)
    requests = args.requests or (100 if args.quick else 2_000)
    baseline_requests = args.baseline_requests or (10 if args.quick else 50)
    warmup = 10 if args.quick else 50
    loads = args.page_loads if args.page_loads is not None else (0 if args.quick else 20)

    started = time.perf_counter()
    path, built = cached(Shape(entries), args.cache_dir, lambda done, total: print(
        f"  building the ledger: {done:,}/{total:,} entries", file=sys.stderr, flush=True))
    print(f"ledger: {entries:,} entries, {'built in' if built else 'reused from the cache,'} "
          f"{time.perf_counter() - started:.1f} s ({path}, {path.stat().st_size / 2**20:,.0f} MiB)")
    view = LedgerView.open(f"sqlite:///{path}", DAO_DID)  # read-only: no operator key
    try:
        ledger, dao, book = view.ledger, view.dao, view.book
        catch = catch_up(book, entries)
        print(f"catch-up: the first refresh() folded {entries:,} entries in {catch:.2f} s "
              f"({entries / catch:,.0f} entries/s)")
        expected = orjson.loads(orjson.dumps(sql_summary(ledger, dao)))
        _, rules, _ = dao.params()
        book.refresh()
        mine = orjson.loads(orjson.dumps(book.summary(dao.members(), rules.as_dict())))
        if mine != expected:
            raise AssertionError("the RevenueBook and the SQL aggregate disagree: "
                                 + ", ".join(k for k in expected if expected[k] != mine.get(k)))
        in_process = latencies(lambda: (book.refresh(), book.summary(dao.members(), rules.as_dict())),
                               requests, warmup, "in process")
        with Server(make_app(view)) as server, httpx.Client(base_url=server.url, timeout=600) as client:
            def get(route: str) -> Callable[[], None]:
                def call() -> None:
                    response = client.get(route)
                    response.raise_for_status()
                return call

            assert unnamed(client.get("/api/revenue").json()) == client.get("/api/revenue-sql").json() == mine
            book_times = latencies(get("/api/revenue"), requests, warmup, "RevenueBook")
            task_times = latencies(get("/api/revenue/tasks?limit=1000"), max(10, requests // 4), warmup,
                                   "newest 1,000 tasks")
            load_times, outside = page_loads(server.url, loads) if loads else ([], [])
            sql_times = latencies(get("/api/revenue-sql"), baseline_requests, min(2, warmup), "SQL aggregate")
    finally:
        view.close()

    rows = [("SQL aggregate per request (baseline)", sql_times), ("RevenueBook, over HTTP", book_times),
            ("RevenueBook refresh() + summary(), in process", in_process)]
    base50, base99 = percentile(sql_times, 50), percentile(sql_times, 99)
    print(f"\nGET /api/revenue, {entries:,} ledger entries, sequential requests after {warmup} warm-up; "
          f"summary {len(orjson.dumps(mine)):,} bytes ({len(mine['by_hour'])} hours, {len(mine['by_day'])} days, "
          f"{len(mine['by_robot'])} robots, {len(mine['by_member'])} members)\n")
    print("| approach | requests | p50 ms | p99 ms | p50 vs baseline | p99 vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in rows:
        p50, p99 = percentile(times, 50), percentile(times, 99)
        print(f"| {name} | {len(times):,} | {p50:.3f} | {p99:.3f} | {p50 / base50:.5f} | {p99 / base99:.5f} |")
    p99 = percentile(book_times, 99)
    print(f"\nGET /api/revenue/tasks?limit=1000: {len(task_times):,} requests, p50 {percentile(task_times, 50):.2f} ms, "
          f"p99 {percentile(task_times, 99):.2f} ms")
    if load_times:
        print(f"page load /revenue in Chromium (fresh context, until charts and tables are drawn): {len(load_times)} "
              f"loads, p50 {percentile(load_times, 50):.0f} ms, p95 {percentile(load_times, 95):.0f} ms, "
              f"max {max(load_times) * 1000:.0f} ms; outside requests: {len(outside)}")
    print(f"catch-up (first refresh, once per process): {catch:.2f} s")
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'} ({p99:.2f} ms; "
          f"baseline p99 {base99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
