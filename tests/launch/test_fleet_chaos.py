"""The whole fleet killed, over and over: a resumed ``depai up`` keeps settling, and nothing is lost or doubled.

The real command over Mosquitto. Each round resumes the fleet, waits until it
settles a new task, lets the ledger grow by a random number of entries more
(so the kill lands in whatever the fleet is doing then: a settlement, a split,
a checkpoint, robots mid-delivery), and SIGKILLs it: only ``depai up`` on even
rounds (its services and broker must follow it), every process of its session
on odd ones (a laptop that lost power). After the last round a clean run
checks the whole story: the ledger verifies, money adds up to the unit, no task
was paid twice, no robot was slashed for a task it held when the fleet died,
the ledger's clock never went back, nothing outlived its fleet, and the robots'
messages after a resume were not refused for want of a birth. (Robots do fail tasks on their own, and are
slashed for it; what is checked is the tasks they held at the moments of the kills.)
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

from ledger.journal import Ledger
from marketplace.market import Marketplace
from tests.launch.test_services import FLEET, paid_once, services, settled, wait_until
from tests.launch.up_process import UpProcess

ROUNDS = 5


def brokers(state: Path) -> list[int]:
    """Broker processes still running on the fleet's data directory."""
    found = []
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            alive = Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            continue
        if alive and "mosquitto" in line and str(state) in line:
            found.append(pid)
    return found


def awarded(url: str) -> dict[str, str]:
    """The tasks awarded now, and to which robot."""
    ledger = Ledger.open(url, None)
    try:
        return {task.id: task.robot for task in Marketplace(ledger, None).tasks("awarded")}
    finally:
        ledger.close()


def entries(url: str) -> int:
    ledger = Ledger.open(url, None)
    try:
        return ledger.size()
    finally:
        ledger.close()


def test_a_fleet_killed_five_times_resumes_and_keeps_settling_with_nothing_lost_or_doubled(tmp_path: Path) -> None:
    state, rng = tmp_path / "fleet", random.Random(15)
    url = f"sqlite:///{state / 'ledger.sqlite3'}"
    held: dict[str, str] = {}  # task -> the robot it was awarded to when a kill came
    for round_no in range(ROUNDS):
        up = UpProcess([*FLEET, "--state", str(state)], tmp_path, startup_timeout=180)
        try:
            assert up.dashboard_url
            before = settled(url) if round_no else set()
            wait_until(lambda: settled(url) - before, 300, f"round {round_no}: nothing settled after resuming", up)
            target = entries(url) + rng.randint(1, 8)
            wait_until(lambda: entries(url) >= target, 120, f"round {round_no}: the ledger stopped growing", up)
            if round_no % 2:
                os.killpg(up.pid, signal.SIGKILL)
            else:
                os.kill(up.pid, signal.SIGKILL)
            held.update(awarded(url))  # what robots had in hand when the fleet died
            wait_until(lambda: not services(state) and not brokers(state), 30,
                       f"round {round_no}: processes outlived the killed fleet", up)
        finally:
            up.stop()
    with UpProcess([*FLEET, "--state", str(state), "--for", "3000"], tmp_path, startup_timeout=180) as last:
        before = settled(url)
        wait_until(lambda: settled(url) - before, 300, "the last run settled nothing", last)
        assert last.stop() == 0
    assert "verified intact" in last.stdout_text and "no_birth" not in last.stdout_text
    paid_once(url)
    ledger = Ledger.open(url, None)
    try:
        times = [entry.at_ms for entry in ledger.entries(1, ledger.size() + 1)]
        assert times == sorted(times), "the ledger's clock went back"
        balances = ledger.balances()
        assert sum(balances.values()) == 0
        slashed = [t.id for t in Marketplace(ledger, None).tasks() if t.id in held and t.state == "refunded"
                   and t.robot == held[t.id]]
        assert held and not slashed, "a robot was refunded against (and slashed) for a task it held when the fleet died"
    finally:
        ledger.close()
    assert not brokers(state) and not services(state)
