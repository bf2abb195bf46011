"""Fixtures shared by every layer's tests: a clock the test moves by hand, a DID registry that uses it, and
databases for the ledger and the marketplace.

- ``postgres_server``: one real PostgreSQL server (tests/pgserver.py) for the whole session, started the first
  time a test asks for it (about two seconds), stopped at the end. Missing binaries fail with how to install
  them (apt-get install postgresql; .ci/run does).
- ``postgres_url``: a fresh, empty database on it for each test; dropped after.
- ``database_url``: each test runs twice, ids "sqlite" and "postgresql".
- ``database_url_factory``: named fresh databases of the same kind, for tests that need several.
"""

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from identity.registry import DidRegistry
from tests.pgserver import PostgresServer, start_postgres


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


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with start_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, postgres_server: PostgresServer) -> Iterator[str]:
    readable = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{readable}_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name)
    yield url
    if postgres_server.running:  # a crash test may leave it stopped
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database_url_factory(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Callable[[str], str]:
    """Make more fresh databases of the kind ``database_url`` is, by name."""
    if database_url.startswith("sqlite:"):
        return lambda name: f"sqlite:///{tmp_path / name}.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return lambda name: server.create_database(f"{name}_{secrets.token_hex(4)}")
