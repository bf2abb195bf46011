"""The depai up scale benchmark's parsing and report, on canned text (no fleet is started here)."""

from pathlib import Path

from benchmarks import up_scale as bench

STDERR = """\
sim    10.0 s  x  1.0 real time  (asked x1, shards x1.02)  robots 50  ingest lag 0.3 s  unverified 12  tasks posted 4 settled 0  refused 0
sim    20.3 s  x  1.0 real time  (asked x1, shards x0.97)  robots 50  ingest lag 2.6 s  unverified 340  tasks posted 9 settled 1  refused 3  restarts 1  FALLING BEHIND: ingest 3 s behind; use fewer --robots, a lower --speed, or more --ingest-workers
depai up: ingest-0 exited (killed by SIGKILL); restarting it in 1 s (log: /tmp/s/logs/ingest-0.log)
depai up: map-0 did not stop within 20 s and was killed
sim    30.1 s  x  1.0 real time  (asked x1, shards x1)  robots 50  ingest lag 0.4 s  unverified 7  tasks posted 12 settled 2  refused 3  restarts 1
"""


def test_status_lines_exits_and_kills_are_parsed() -> None:
    said = bench.parse_stderr(STDERR)
    assert said["status_lines"] == 3
    assert said["max_lag_s"] == 2.6
    assert said["last_unverified"] == 7
    assert said["exits"] == [{"service": "ingest-0", "how": "killed by SIGKILL"}]
    assert said["killed"] == ["map-0"]
    assert bench.parse_status_line("building a 6x6-block city") is None
    line = bench.parse_status_line("\rsim   5.0 s  x  4.9 real time  (asked x5, shards x4.8)  robots 9  "
                                   "ingest lag 0.0 s  unverified 0  tasks posted 0 settled 0  refused 0")
    assert line == {"sim_s": 5.0, "asked": 5.0, "shards": 4.8, "lag_s": 0.0, "unverified": 0}


def test_proc_stat_and_roles() -> None:
    ppid, cpu = bench.parse_stat("4242 (python3 -m x) S 4000 4242 4000 0 -1 4194560 1 0 0 0 "
                                 f"{3 * bench.CLK_TCK} {bench.CLK_TCK} 0 0 20 0 3 0 1 1 1")
    assert (ppid, cpu) == (4000, 4.0)
    assert bench.role_of(["/venv/bin/python", "-m", "launch.cli", "serve", "ingest", "--index", "1"]) == "ingest"
    assert bench.role_of(["/usr/sbin/mosquitto", "-c", "/tmp/m.conf"]) == "broker"
    assert bench.role_of(["/venv/bin/python", "-m", "launch.cli", "up"], root=True) == "up"


def test_the_own_process_tree_is_measured() -> None:
    meter = bench.CpuMeter(__import__("os").getpid())
    meter.sample()
    assert meter.last and all(seconds >= 0 for seconds in meter.last.values())


def test_log_trouble_names_the_exception_and_where(tmp_path: Path) -> None:
    (tmp_path / "dashboard-0.log").write_text(
        "Traceback (most recent call last):\n"
        '  File "/work/main/dashboard/server.py", line 49, in url\n'
        "    port = self._server.servers[0].sockets[0].getsockname()[1]\n"
        "IndexError: tuple index out of range\n")
    (tmp_path / "sim-0.log").write_text("all well\n")
    assert bench.log_trouble(tmp_path) == {"dashboard-0.log": [
        'IndexError: tuple index out of range  [File "/work/main/dashboard/server.py", line 49, in url]']}


def _point(robots: int, delivered: int, lag: float, unverified: int = 0) -> dict:
    observed = bench.Observed(lag_p99=[0.1, lag], lag_p50=[0.05, 0.1], connected=True,
                              shard_points={0: [(1000.0, 10.0), (1100.0, 109.0)]})
    summary = {"robots": robots, "sim_s": 3600.0, "speed": {"asked": 1.0, "achieved": 1.01},
               "messages": {"published": 100, "verified": 100 - unverified, "refused": 0, "unverified": unverified},
               "refused": {}, "market_refused": {}, "tasks": {"posted": delivered, "delivered": delivered},
               "services": {"restarts": {}, "exits": []}}
    return {"robots": robots, "speed": 1.0, "summary": summary, "observed": observed, "exit": 0, "timed_out": False,
            "stderr": bench.parse_stderr(""), "cpu": {"up": 1.0, "sim": 5.0}, "processes": {"up": 1, "sim": 1},
            "wall_total_s": 10.0, "logs": {}}


def test_report_holds_against_the_50_robot_baseline() -> None:
    out = bench.report([_point(50, 100, 0.5), _point(100, 190, 0.8), _point(200, 300, 0.9),
                        _point(400, 800, 3.0, unverified=5)])
    rows = [line for line in out.splitlines() if line.startswith("| x1 |")]
    assert len(rows) == 8  # four in the figures table, four in the CPU table
    assert rows[0].endswith("| yes |") and rows[1].endswith("| yes |")
    assert "tasks/robot-h 0.75 of N=50" in rows[2]
    assert "ingest lag 3.0 s > 2 s" in rows[3] and "5 unverified" in rows[3]
    assert "x0.99" in rows[0]  # the slowest shard's speed: 99 simulated s over 100 s of the fleet's clock
    assert "largest N that held" in out and ": 100" in out
    assert "1,000 robots on this" in out and "NOT met" in out


def test_machine_busy_counts_all_but_idle_and_iowait() -> None:
    tick = bench.CLK_TCK
    stat = f"cpu  {tick * 3} 0 {tick} {tick * 50} {tick * 2} 0 0 0 0 0\ncpu0 1 2 3\n"
    assert bench.machine_busy_s(stat) == 4.0
    assert bench.machine_busy_s() > 0
