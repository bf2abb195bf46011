"""``depai up`` as services: any service killed is restarted and the fleet keeps settling; two hosts share a fleet.

The real command over a real Mosquitto broker. A service process is killed
with SIGKILL (five times, a random role each time): the supervisor must restart
it and the fleet must settle a new task after every kill, the ledger must stay
intact and no task may be paid twice. Then two hosts, as separate processes
and state directories pointing at one broker and one PostgreSQL database: host
A runs ``depai up`` with half of the ingest partitions, host B a simulator
shard of its own robots and the other ingest worker.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from launch.cli import main
from launch.output import EXIT_OK
from ledger.journal import Ledger
from marketplace.market import Marketplace
from tests.bus.conftest import require_mosquitto
from tests.launch.up_process import ROOT, UpProcess

FLEET = ["--robots", "4", "--city", "2", "--seed", "3", "--speed", "20", "--port", "0", "--orders-per-min", "6",
         "--broker", "mosquitto"]
SERVE = re.compile(r"launch\.cli serve (\w+) .*--index (\d+)")


@pytest.fixture(autouse=True)
def _mosquitto() -> None:
    require_mosquitto()


def services(state: Path) -> dict[str, int]:
    """The running ``depai serve`` processes of the fleet at ``state``: role-index -> pid."""
    found = {}
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv)
        match = SERVE.search(line)
        if match and str(state) in line and status != "Z":
            found[f"{match[1]}-{match[2]}"] = pid
    return found


def settled(url: str) -> set[str]:
    ledger = Ledger.open(url, None)
    try:
        return {task.id for task in Marketplace(ledger, None).tasks("settled")}
    finally:
        ledger.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str, up: UpProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s:\n{up.stderr_text[-3000:]}"
        time.sleep(0.5)


def paid_once(url: str, state: Path) -> None:
    """Every settled task was released from escrow exactly once, and `depai ledger verify` (the ledger's key from
    the fleet's DID registry; the books, tasks and shares against the log) finds it intact."""
    assert main(["ledger", "verify", "--db", url, "--state", str(state), "--json"]) == EXIT_OK
    ledger = Ledger.open(url, None)
    try:
        releases = Counter(entry.key for entry in ledger.entries(1, ledger.size() + 1) if entry.kind == "escrow.release")
        assert releases and max(releases.values()) == 1
    finally:
        ledger.close()


def test_a_killed_service_is_restarted_and_the_fleet_keeps_settling(tmp_path: Path) -> None:
    state, rng = tmp_path / "fleet", random.Random(16)
    ledger_url = f"sqlite:///{state / 'ledger.sqlite3'}"
    with UpProcess([*FLEET, "--state", str(state)], tmp_path, startup_timeout=180) as up:
        assert up.dashboard_url
        wait_until(lambda: settled(ledger_url), 240, "no task settled", up)
        roles = sorted(services(state))
        assert {"ingest-0", "sim-0", "map-0", "market-0", "dao-0", "customers-0", "dashboard-0"} <= set(roles)
        for _ in range(5):
            victim = rng.choice(roles)
            pid = services(state)[victim]
            before = settled(ledger_url)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: services(state).get(victim, pid) != pid, 60, f"{victim} was not restarted", up)
            wait_until(lambda: settled(ledger_url) - before, 300, f"nothing settled after killing {victim}", up)
        assert up.stop() == 0, up.stderr_text[-3000:]
    assert len(re.findall(r"exited \(killed by SIGKILL\); restarting", up.stderr_text)) == 5
    assert "verified intact" in up.stdout_text and "Traceback" not in up.stderr_text
    assert services(state) == {}  # no service outlives the fleet
    paid_once(ledger_url, state)


def test_two_hosts_share_one_broker_and_one_database(tmp_path: Path, postgres_url: str) -> None:
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    with UpProcess([*FLEET, "--state", str(a), "--db", postgres_url, "--ingest-workers", "1", "--ingest-of", "2"],
                   tmp_path / "home-a", startup_timeout=180) as up:
        url = up.dashboard_url
        held = json.loads((a / "broker.json").read_text())
        operator = re.search(r"--operator (did:\S+)`", up.stderr_text)[1]

        def serve(role: str, login: str, *extra: str) -> subprocess.Popen:
            user, password = held["logins"][login]
            broker = held["url"].replace("://", f"://{user}:{password}@")
            with open(tmp_path / f"{role}.log", "wb") as log:
                return subprocess.Popen([sys.executable, "-m", "launch.cli", "serve", role, "--state", str(b),
                                         "--broker", broker, "--db", postgres_url, "--operator", operator, *extra],
                                        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        host_b = [serve("ingest", "ingest", "--index", "1", "--of", "2"),
                  serve("sim", "gateway", "--index", "1", "--of", "2", "--robots", "2")]
        try:
            with httpx.Client(base_url=url, timeout=10) as api:
                def b_robots_heard() -> bool:
                    rows = api.get("/api/robots").json()
                    return len(rows) == 6 and all(row["state"] != "unheard" for row in rows)
                wait_until(b_robots_heard, 180, "host B's robots are not on host A's dashboard", up)
                wait_until(lambda: settled(postgres_url), 300, "no task settled", up)
                statuses = api.get("/api/status").json()
            for process in host_b:
                assert process.poll() is None, (tmp_path / "sim.log").read_text()[-2000:]
        finally:
            for process in host_b:
                process.send_signal(signal.SIGTERM)
            for process in host_b:
                process.wait(30)
        assert up.stop() == 0, up.stderr_text[-3000:]
    summary_refused = statuses.get("refused", {})
    assert not {"replayed", "bad_signature", "no_birth"} & set(summary_refused), summary_refused
    assert "verified intact" in up.stdout_text
    paid_once(postgres_url, a)
