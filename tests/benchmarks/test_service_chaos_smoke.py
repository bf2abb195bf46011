"""The service chaos benchmark's kill plan, status bookkeeping and report, on canned figures (no fleet is started)."""

import random
from collections import Counter

from benchmarks import service_chaos as bench


def test_the_kill_plan_is_seeded_and_even() -> None:
    plan = bench.kill_plan(random.Random(1), 30)
    assert plan == bench.kill_plan(random.Random(1), 30)
    counts = Counter(plan)
    assert set(counts) == set(bench.ROLES) and set(counts.values()) == {4, 5}
    assert sorted(plan[:7]) == sorted(bench.ROLES)


def test_every_process_of_a_role_counts_and_refusals_are_deltas(tmp_path) -> None:
    log = bench.StatusLog(tmp_path)
    log.take(("market", 0, 11), {"t": 1.0, "counters": {"refused": {"not_open": 3}, "posted": 5}})
    log.take(("market", 0, 11), {"t": 2.0, "counters": {"refused": {"not_open": 4}, "posted": 7}})
    log.take(("market", 0, 11), {"t": 1.5, "counters": {"refused": {"not_open": 1}, "posted": 1}})  # older: kept out
    before = log.refusals()
    log.take(("market", 0, 12), {"t": 3.0, "counters": {"refused": {"not_open": 1, "expired": 2}, "posted": 2}})
    log.take(("sim", 0, 13), {"t": 3.0, "counters": {"published": {"scan": 10, "pose": 5}}})
    log.take(("ingest", 0, 14), {"t": 3.0, "counters": {"accepted": {"scan": 9}, "refused": {"replayed": 1}}})
    assert log.total("market", "posted") == 9 and log.processes("market") == 2
    assert log.merged("market", "refused") == {"not_open": 5, "expired": 2}
    assert bench.minus(log.refusals(), before) == {"ingest": {"replayed": 1}, "market": {"not_open": 1, "expired": 2}}
    assert log.messages() == {"published": 15, "verified": 9, "refused": 1, "unverified": 5}
    assert log.heard("market", 0, 12) is not None and log.heard("market", 0, 99) is None


def test_outcomes_lose_their_details() -> None:
    assert bench._outcome("expired") == "expired"
    assert bench._outcome("failed: stuck at (3, 4)") == "failed: stuck"
    assert bench._outcome(None) == "?"


def test_the_report_has_a_row_per_role_and_names_failures() -> None:
    kills = [{"n": 1, "role": "market", "service": "market-0", "restart_s": 1.1, "status_s": 2.0, "settle_s": 3.0,
              "refused": {"market": {"not_open": 2}}},
             {"n": 2, "role": "market", "service": "market-0", "restart_s": 2.1, "status_s": 3.0, "settle_s": None,
              "refused": {}, "failure": "nothing settled within 300 s"},
             {"n": 3, "role": "dao", "service": "dao-0", "restart_s": 1.0, "status_s": 1.9, "settle_s": 0.5,
              "refused": {}}]
    rows = bench.role_table(kills)
    assert rows[2] == "| market | 2 | 1.6 / 2.1 | 2.5 / 3.0 | 3.0 / 3.0 | 1 |"
    assert rows[3] == "| dao | 1 | 1.0 / 1.0 | 1.9 / 1.9 | 0.5 / 0.5 | 0 |"
    assert rows[4].startswith("| **all** | 3 |")
    result = {"command": ["depai", "up"], "state": "/s", "kills": kills, "summary": None, "wall_s": 60.0,
              "cumulative": {"messages": {}, "refused": {"ingest": {}, "market": {"not_open": 2}},
                             "market": {}, "processes": {}},
              "sigkill_lines": 3, "statuses_connected": True, "statuses_error": "",
              "logs": {"map-0.log": ["ValueError: x  [File \"a.py\", line 1]"] * 2}}
    text = bench.report(result, [("a check", False, "why")])
    assert "**nothing settled within 300 s**" in text and "[FAILED] a check: why" in text
    assert "map-0.log: 2 x ValueError" in text


def test_the_broker_log_names_the_persistent_sessions(tmp_path) -> None:
    broker = tmp_path / "broker"
    broker.mkdir()
    (broker / "mosquitto.db").write_bytes(b"x" * 2_500_000)
    (broker / "broker.log").write_text(
        "2026-12-07T08:17:29: New client connected from 127.0.0.1:1 as depai-map-0-vm-41 (p2, c0, k30, u'services').\n"
        "2026-12-07T08:17:30: New client connected from 127.0.0.1:2 as depai-map-0-vm-41 (p2, c0, k30, u'services').\n"
        "2026-12-07T08:17:31: New client connected from 127.0.0.1:3 as depai-map-0-vm-57 (p2, c0, k30, u'services').\n"
        "2026-12-07T08:17:32: New client connected from 127.0.0.1:4 as watcher (p2, c1, k30, u'services').\n"
        "2026-12-07T08:17:33: Saving in-memory database to /s/broker//mosquitto.db.\n")
    assert bench.broker_sessions(tmp_path) == {"persistent_client_ids": 2, "db_mb": 2.5, "saves": 1}
