"""Kill the marketplace in the middle of its work, many times: no money is lost, paid twice or refunded twice.

crash_worker.py runs a seeded script of tasks (deliveries witnessed at once,
held and witnessed later, held and never witnessed, fakes, failures, expiries) against a real database and says each task it finished; this test
SIGKILLs it right after a random k-th finished task (beyond what earlier runs
reached, so every kill lands on new work, never during start-up), restarts it each time, lets it finish, and compares the books with those of a
run that was never interrupted: every balance must be identical, every task
must have ended as its script says, and the journal must verify.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
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
    kills = reached = 0
    while kills < 12 and reached < TASKS - 1:
        # Kill right after the worker says it finished its k-th task (it is then inside task k+1, mid-commit or
        # between commits), with k beyond what earlier runs reached: every kill lands on new work, not start-up.
        target = reached + rng.randint(1, max(1, (TASKS - 1 - reached) // 4))
        worker = _worker(killed)
        finished = 0
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.strip() == "done":
                break
            finished += 1
            if finished >= target:
                worker.send_signal(signal.SIGKILL)
                kills += 1
                break
        worker.communicate()  # reap it and close its pipes
        reached = max(reached, finished)
    _run_to_the_end(killed)
    assert kills >= 5, f"only {kills} kills landed on work"
    calm_balances, calm_outcomes, calm_problems = _books(calm)
    balances, outcomes, problems = _books(killed)
    assert calm_problems == [] and problems == []
    assert outcomes == calm_outcomes and len(outcomes) == TASKS
    assert balances == calm_balances
    assert all(state in (SETTLED, REFUNDED) for state, _ in outcomes.values())
    assert all(balances[f"escrow:task-{n}"] == 0 for n in range(TASKS))
    assert sum(balances.values()) == 0 and balances["world:EUR"] == -(10_000_000 + 100_000)
    assert {outcome.split(":")[0] for _, outcome in outcomes.values()} >= {"delivered", "faked", "failed", "expired",
                                                                          "unwitnessed"}
