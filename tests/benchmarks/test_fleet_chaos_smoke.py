"""benchmarks/fleet_chaos.py's parsing and report, on made-up records (no fleet is started)."""

from __future__ import annotations

import json

from benchmarks.fleet_chaos import checks, clock_regressions, kill_lines, kind_table, parse_summary, report

RECORDS = [
    {"n": 0, "after": "start", "settle_s": 50.0, "kind": "up", "entries": 40, "orphans": [], "cycle_s": 60},
    {"n": 1, "after": "up", "settle_s": 30.0, "kind": "group", "entries": 60, "orphans": ["12 mosquitto -c x"],
     "cycle_s": 40},
    {"n": 2, "after": "group", "failure": "cycle 2: nothing settled after resuming within 300 s", "cycle_s": 310},
    {"n": 3, "after": "stop", "settle_s": 20.0, "kind": "up", "entries": 80, "orphans": [], "cycle_s": 30},
    {"n": 4, "after": "up", "settle_s": 40.0, "kind": "up", "entries": 90, "orphans": [], "cycle_s": 45},
]
LEDGER = {"paid_once": "", "paid_twice": [], "releases": 9, "entries": 100, "regressions": [], "balance_sum": 0,
          "tasks": {"settled": 9}, "expired_awarded": [], "refunds": {}, "slashes": 0}
SUMMARY = {"refused": {"stale": 2}, "market_refused": {}, "tasks": {"settled": 9}}


def test_parse_summary_takes_the_whole_text_or_the_last_object() -> None:
    assert parse_summary(json.dumps(SUMMARY, indent=1)) == SUMMARY
    assert parse_summary("some line\n" + json.dumps(SUMMARY, indent=1) + "\n") == SUMMARY
    assert parse_summary("no json here") is None


def test_clock_regressions_name_the_entry_that_went_back() -> None:
    assert clock_regressions([1, 2, 2, 5]) == []
    assert clock_regressions([1, 5, 3, 4]) == [(3, 5, 3)]


def test_the_table_counts_kills_by_kind_and_resumes_by_the_kill_before() -> None:
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in kind_table(RECORDS) if line.startswith("| ") and "kills" not in line}
    assert rows["depai up alone"] == ["3", "35.0", "40.0", "0", "0"]  # resumes after up: 30, 40
    assert rows["whole process group"] == ["1", "-", "-", "1", "1"]
    assert rows["all"] == ["4", "35.0", "40.0", "1", "1"]
    assert len(kill_lines(RECORDS)) == 2 + len(RECORDS)


def test_checks_fail_on_a_timeout_an_orphan_and_a_bad_refusal() -> None:
    final = {"settle_s": 10.0, "exit": 0, "summary": {**SUMMARY, "refused": {"no_birth": 1}}, "orphans": []}
    verdicts = dict((name, ok) for name, ok, _ in checks(RECORDS, final, LEDGER, (0, "ok")))
    assert not verdicts["every resume settled a new task in time"]
    assert not verdicts["no orphan depai serve / mosquitto 30 s after a kill"]
    assert not verdicts["final summary parsed, no replayed / bad_signature / no_birth refusals"]
    assert verdicts["depai ledger verify exits 0"] and verdicts["ledger times non-decreasing"]
    clean = [r for r in RECORDS if not r.get("failure") and not r.get("orphans")]
    good = checks(clean, {**final, "summary": SUMMARY}, LEDGER, (0, "ok"))
    assert all(ok for _, ok, _ in good)
    text = report({"command": ["python", "benchmarks/fleet_chaos.py"], "asked": 5, "stopped_because": "x",
                   "wall_s": 1.0, "records": clean, "final": {**final, "summary": SUMMARY}, "ledger": LEDGER,
                   "verify": (0, "ok"), "trouble": {"ingest-0.log": ["ValueError: x  [File a.py]"]}}, good)
    assert "ok   depai ledger verify exits 0" in text and "ingest-0.log: 1" in text
