"""Kill the marketplace at random moments, many times: no money is lost, paid twice or refunded twice.

crash_worker.py runs a seeded script of tasks (deliveries, fakes, failures,
expiries) against a real database; this test SIGKILLs it at random moments,
restarts it each time, lets it finish, and compares the books with those of a
run that was never interrupted: every balance must be identical, every task
must have ended as its script says, and the journal must verify.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from identity.keys import Signer
from ledger.journal import Ledger
from marketplace.market import REFUNDED, SETTLED, Marketplace

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]
TASKS, SEED = 100, 7


def _worker(url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WORKER), url, str(TASKS), str(SEED)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _books(url: str) -> tuple[dict[str, int], dict[str, tuple[str, str | None]], list[str]]:
    ledger = Ledger.open(url, Signer(bytes(32)))
    market = Marketplace(ledger, None, clock=lambda: 0.0)  # type: ignore[arg-type]  # reading only
    try:
        outcomes = {task.id: (task.state, task.outcome) for task in market.tasks()}
        return ledger.balances(), outcomes, ledger.verify()
    finally:
        ledger.close()


def _run_to_the_end(url: str) -> None:
    worker = _worker(url)
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0 and out.strip().endswith("done"), err[-2000:]


def test_killing_the_marketplace_anywhere_never_loses_or_doubles_money(tmp_path, database_url_factory) -> None:
    calm, killed = database_url_factory("calm"), database_url_factory("killed")
    _run_to_the_end(calm)
    rng = random.Random(SEED)
    kills = 0
    while kills < 12:
        worker = _worker(killed)
        time.sleep(rng.uniform(0.3, 0.9))  # interpreter start-up takes about 0.3 s; then it is at work
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.communicate()  # reap it and close its pipes
        if worker.returncode == 0:
            break  # it finished before this kill
    _run_to_the_end(killed)
    assert kills >= 5, "the worker finished too fast to be killed often; raise TASKS"
    calm_balances, calm_outcomes, calm_problems = _books(calm)
    balances, outcomes, problems = _books(killed)
    assert calm_problems == [] and problems == []
    assert outcomes == calm_outcomes and len(outcomes) == TASKS
    assert balances == calm_balances
    assert all(state in (SETTLED, REFUNDED) for state, _ in outcomes.values())
    assert all(balances[f"escrow:task-{n}"] == 0 for n in range(TASKS))
    assert sum(balances.values()) == 0 and balances["world:EUR"] == -(10_000_000 + 100_000)
    assert {outcome.split(":")[0] for _, outcome in outcomes.values()} >= {"delivered", "faked", "failed", "expired"}
