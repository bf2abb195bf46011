"""Fixtures shared by every layer's tests: a clock the test moves by hand, a DID registry that uses it, and
databases for the ledger and the marketplace.

- ``postgres_server``: one real PostgreSQL server (tests/pgserver.py) for the whole session, started the first
  time a test asks for it (about two seconds), stopped at the end. Missing binaries fail with how to install
  them (apt-get install postgresql; .ci/run does).
- ``postgres_url``: a fresh, empty database on it for each test; dropped after.
- ``database_url``: each test runs twice, ids "sqlite" and "postgresql".
- ``database_url_factory``: named fresh databases of the same kind, for tests that need several.
- ``browser``: one headless Chromium (Debian's, driven by Playwright; tests/browser.py) for the whole session,
  started the first time a test asks for it (about 2 seconds), closed at the end. Missing Chromium fails in CI
  (``CI`` set) and skips elsewhere, with how to install it (apt-get install chromium; .ci/run does).
- ``page``: a page in a fresh 1280x800 context for each test; ``page.problems`` lists its console errors,
  uncaught exceptions and failed requests. After the test, a full-page screenshot of its last state goes to
  the artifacts directory (``$DEPAI_ARTIFACTS``, else tests/artifacts/) and the context is closed;
  ``tests.browser.screenshot(page, name)`` saves more on the way.
"""

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from identity.registry import DidRegistry
from tests.browser import INSTALL_HINT as CHROMIUM_HINT
from tests.browser import find_chromium, loop_released, open_page, start_browser
from tests.pgserver import PostgresServer, start_postgres

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


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


@pytest.fixture(scope="session")
def browser() -> "Iterator[Browser]":
    executable = find_chromium()
    if executable is None:
        message = f"Chromium is not installed: {CHROMIUM_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with start_browser(executable) as running:
        yield running


@pytest.fixture
def page(browser: "Browser") -> "Iterator[Page]":
    with open_page(browser) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _asyncio_run_works(request: pytest.FixtureRequest) -> Iterator[None]:
    """While the session's browser is up, tests that use none may still call asyncio.run() (tests/browser.py)."""
    if "browser" in request.fixturenames:
        yield
        return
    with loop_released():
        yield


JS_ROBOT = Path(__file__).resolve().parents[1] / "robots" / "js" / "robot.mjs"


def _unavailable(what: str) -> None:
    """Skip locally; in CI (CI set) the tool must be there, so fail."""
    message = f"{what}; .ci/run installs Node.js and npm (apt-get install nodejs npm)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the robot's npm packages installed (``npm ci`` if they are missing)."""
    binary = shutil.which("node")
    if binary is None:
        _unavailable("node is not installed")
    if not all((JS_ROBOT.parent / "node_modules" / name / "package.json").exists() for name in ("mqtt", "tweetnacl")):
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not installed, and robots/js/node_modules is missing")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS_ROBOT.parent, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"npm ci in {JS_ROBOT.parent} failed:\n{done.stdout}\n{done.stderr}"
    return binary
