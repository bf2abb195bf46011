"""A real headless Chromium for the browser tests, driven by Playwright's sync API.

Playwright's own browser downloads are not reachable in CI, so the tests drive Debian's
``chromium`` package instead (``apt-get install chromium``; .ci/run does). The fixtures in
tests/conftest.py use this module:

- ``find_chromium()``: ``$DEPAI_CHROMIUM``, else /usr/bin/chromium, else ``chromium`` on
  PATH; None when there is none (``$DEPAI_CHROMIUM`` naming no executable raises).
- ``start_browser()``: a context manager: Playwright's driver and one headless Chromium
  with ``CHROMIUM_ARGS``; on leaving, the browser, then the driver, are closed.
- ``open_page(browser)``: a context manager: a fresh context (1280x800) and a page whose
  ``page.problems`` lists what went wrong in it, as text: console errors, uncaught
  exceptions and failed requests. Every request to a host other than 127.0.0.1/localhost
  is refused (by a dead local proxy, so nothing is intercepted) and recorded
  (tests/browser_offline.py: ``assert_offline(page)``, and axe-core's ``assert_accessible(page)``).
  On leaving, a full-page screenshot of its last state goes to the artifacts directory, then
  the context is closed.
- ``screenshot(page, name)``: save ``<artifacts>/<test name>-<name>.png``; returns the path.
- ``artifacts_dir()``: ``$DEPAI_ARTIFACTS``, else tests/artifacts/ (git ignores it); created.

While Playwright's sync API is running, the main thread counts as running its asyncio loop
(Playwright marks it so between calls), and ``asyncio.run()`` there fails. ``loop_released()``
clears that mark for a while; tests/conftest.py does so for every test that uses no browser.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Playwright is imported only when a test asks for a browser.
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Request

ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = ("install Debian's Chromium with: apt-get install chromium (as root, or with sudo; .ci/run does "
                "this in CI), or point DEPAI_CHROMIUM at a Chromium binary")
# Playwright adds --headless and a fresh, empty --user-data-dir (deleted on close) itself. The rest keep a
# Chromium running as root, on a machine that reaches no browser services, from failing or trying to.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 15_000  # each page action and wait; the pages under test are local

_running_loop: asyncio.AbstractEventLoop | None = None  # Playwright's loop while a browser is up


def find_chromium() -> str | None:
    """The Chromium to drive: $DEPAI_CHROMIUM, /usr/bin/chromium or ``chromium`` on PATH; None if none."""
    configured = os.environ.get("DEPAI_CHROMIUM")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise FileNotFoundError(f"DEPAI_CHROMIUM={configured!r} is not an executable; {INSTALL_HINT}")
        return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def artifacts_dir() -> Path:
    """Where screenshots go: $DEPAI_ARTIFACTS, else tests/artifacts/; created if missing."""
    path = Path(os.environ.get("DEPAI_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _test_name() -> str:
    """The running test's name (with its parameters), fit for a file name."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "no-test")  # "tests/x.py::test_y[a] (call)"
    name = current.rsplit(" ", 1)[0].rsplit("::", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", name)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``<artifacts>/<test name>-<name>.png`` and return its path."""
    path = artifacts_dir() / f"{_test_name()}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def start_browser(executable: str) -> Iterator[Browser]:
    """Playwright's driver and a headless Chromium (``executable``); both closed on leaving."""
    global _running_loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        _running_loop = asyncio.get_running_loop()
        try:
            yield browser
        finally:
            _running_loop = None
            browser.close()


@contextmanager
def open_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh 1280x800 context, with ``page.problems`` and outside requests refused (and
    recorded in ``page.outside_requests``); screenshot and close on leaving."""
    from tests.browser_offline import OFFLINE_CONTEXT, watch_outside  # it imports this module

    context = browser.new_context(viewport=VIEWPORT, **OFFLINE_CONTEXT)
    try:
        context.set_default_timeout(TIMEOUT_MS)
        outside = watch_outside(context)
        page = context.new_page()
        page.outside_requests = outside  # type: ignore[attr-defined]
        problems: list[str] = []
        page.problems = problems  # type: ignore[attr-defined]

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                where = message.location
                problems.append(f"console error: {message.text} ({where.get('url') or '?'}:{where.get('lineNumber')})")

        def on_page_error(error: Error) -> None:
            problems.append(f"uncaught exception: {error.name}: {error.message}")

        def on_request_failed(request: Request) -> None:
            problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("requestfailed", on_request_failed)
        yield page
        if not page.is_closed():
            screenshot(page, "last")
    finally:
        context.close()


@contextmanager
def loop_released() -> Iterator[None]:
    """Let the main thread run asyncio code while a browser is up; Playwright's mark comes back after."""
    loop = _running_loop
    if loop is None or asyncio._get_running_loop() is not loop:
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)
