"""Running a hypothesis state machine once per database backend, fewer examples where each costs more."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test


def run_machine(machine: type[RuleBasedStateMachine], database_url: str, *, sqlite: int, postgresql: int,
                steps: int = 30) -> None:
    """Run ``machine`` for ``sqlite`` examples on SQLite, ``postgresql`` on PostgreSQL (a fresh database each)."""
    examples = sqlite if database_url.startswith("sqlite:") else postgresql
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
