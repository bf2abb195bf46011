"""The browser fixtures work: a real headless Chromium loads a local page, runs its script, is clicked,
and reports what went wrong in the page (so a test can fail on it)."""

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import screenshot

BUTTON_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>smoke</title><link rel="icon" href="data:,"></head>
<body>
  <button id="go">Start</button>
  <p id="status">idle</p>
  <script>
    document.getElementById("go").addEventListener("click", () => {
      setTimeout(() => { document.getElementById("status").textContent = "running"; }, 50);
    });
  </script>
</body></html>
"""

THROWING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>broken</title><link rel="icon" href="data:,"></head>
<body>
  <p id="status">loaded</p>
  <script>console.error("the fleet feed is gone"); throw new Error("dashboard script broke");</script>
  <script src="/missing.js"></script>
</body></html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``serve(name, html)`` writes the page into tmp_path and returns its URL on a local HTTP server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def page_url(name: str, html: str) -> str:
        (tmp_path / name).write_text(html)
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield page_url
    server.shutdown()
    thread.join()
    server.server_close()


def test_clicking_the_button_changes_the_text(page, serve) -> None:
    page.goto(serve("index.html", BUTTON_PAGE))
    status = page.locator("#status")
    assert status.text_content() == "idle"
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent === 'running'")
    assert status.text_content() == "running"
    path = screenshot(page, "running")
    assert path.name == "test_clicking_the_button_changes_the_text-running.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert page.problems == []


def test_a_broken_page_shows_up_in_problems(page, serve) -> None:
    page.goto(serve("broken.html", THROWING_PAGE))
    page.wait_for_load_state("load")
    problems = "\n".join(page.problems)
    assert "console error: the fleet feed is gone" in problems
    assert "uncaught exception: Error: dashboard script broke" in problems
    assert "/missing.js" in problems  # a 404: Chromium logs "Failed to load resource" as a console error


def test_asyncio_run_works_after_the_browser_tests() -> None:
    """Runs after the tests above have started the session's browser: Playwright's sync API marks the main
    thread as running its asyncio loop, and tests that use no browser get that mark lifted (conftest.py)."""

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42
