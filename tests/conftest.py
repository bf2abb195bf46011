"""Fixtures shared by every layer's tests: a clock the test moves by hand, and a DID registry that uses it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.registry import DidRegistry


class ManualClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry(tmp_path: Path, clock: ManualClock) -> Iterator[DidRegistry]:
    with DidRegistry(tmp_path / "registry.sqlite3", clock=clock, refresh_interval_s=0.0) as reg:
        yield reg
