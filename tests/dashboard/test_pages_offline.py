"""Every dashboard page, on a running fleet, in a real Chromium that may reach nothing but this machine.

Each page (the app's PAGES, a robot's page for a real robot, and the API's Swagger UI at /docs) is opened
with every request to another host blocked and counted (tests/browser_offline.py), checked with the
vendored axe-core, and kept as a screenshot (tests/artifacts/test_every_page_works_offline_and_is_accessible[...]).
Serious and critical accessibility violations fail the page.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from dashboard.app import PAGES
from launch.up import RunningFleet
from tests.browser import ROOT
from tests.browser_offline import (SERIOUS, assert_accessible, assert_offline, format_violations, outside_requests,
                                   screenshot)
from tests.dashboard.test_app import fleet  # noqa: F401 - the running fleet and its dashboard, reused

QUIET_S = 0.4  # no request but the live stream outstanding for this long: the page has drawn what it fetched
SETTLE_TIMEOUT_S = 15.0
STREAMS = ("/api/events",)  # open for as long as the page is
# Rules a page may break for now, each with why; the page's owner removes its entry once fixed.
KNOWN = {
    # swagger-ui-dist's own markup: each operation's summary is a <button> holding the path's <a>.
    "/docs": ("nested-interactive",),
}
# Serious violations on a page being rewritten, its owner to fix them and remove the entry: the page is
# reported as xfail while the rule still fails there, and fails once it passes (strict).
XFAIL: dict[str, tuple[str, str]] = {}  # path: (axe rule id, what fails and where)

PATHS = [*(path for path in PAGES), "/docs"]


def in_flight(page: Any) -> set[Any]:
    """The page's outstanding requests from now on, its live stream aside (call before page.goto)."""
    pending: set[Any] = set()
    page.on("request", lambda r: None if any(s in r.url for s in STREAMS) else pending.add(r))
    page.on("requestfinished", lambda r: pending.discard(r))
    page.on("requestfailed", lambda r: pending.discard(r))
    return pending


def settle(page: Any, pending: set[Any]) -> None:
    """Wait until the page has fetched what it asked for and nothing more for QUIET_S."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        if pending:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
    raise AssertionError(f"{page.url} kept requesting for {SETTLE_TIMEOUT_S}s: {[r.url for r in pending]}")


@pytest.mark.parametrize("path", PATHS)
def test_every_page_works_offline_and_is_accessible(fleet: RunningFleet, page: Any, path: str) -> None:  # noqa: F811
    url = fleet.dashboard.url.rstrip("/") + path.replace("{did}", fleet.fleet.agents[0].did)
    pending = in_flight(page)
    page.goto(url)
    if path == "/docs":
        page.wait_for_selector("#swagger-ui .opblock")  # drawn from /openapi.json by the vendored bundle
        assert page.locator("#swagger-ui .opblock").count() >= 10
    else:
        page.wait_for_selector("#status .connection[data-state='live']")
        assert page.locator("#nav a[href='/docs']").inner_text() == "API"
    settle(page, pending)
    screenshot(page, "page")
    assert_offline(page)
    assert page.problems == [], "\n".join(page.problems)
    expected, why = XFAIL.get(path, (None, ""))
    violations = assert_accessible(page, ignore=[*KNOWN.get(path, ()), *([expected] if expected else [])])
    print(f"{path}: axe-core found\n{format_violations(violations)}")
    if expected:
        still = any(v["id"] == expected and v["impact"] in SERIOUS for v in violations)
        assert still, f"{path} passes axe's {expected} now: remove its entry from XFAIL"
        pytest.xfail(f"axe {expected} (serious): {why}")


def test_the_api_docs_are_served_from_here(fleet: RunningFleet) -> None:  # noqa: F811
    with httpx.Client(base_url=fleet.dashboard.url, timeout=10) as client:
        html = client.get("/docs").text
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html and "/static/docs.css" in html
        assert "cdn." not in html and "https://" not in html
        assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert client.get("/redoc").status_code == 404  # ReDoc would need its bundle from a CDN


def test_the_vendored_files_are_the_pinned_packages() -> None:
    """dashboard/static/vendor/ is what dashboard/vendor/build.mjs copied from the locked packages, unedited."""
    vendor = ROOT / "dashboard" / "static" / "vendor"
    manifest = json.loads((vendor / "manifest.json").read_text())
    pinned = json.loads((ROOT / "dashboard" / "vendor" / "package.json").read_text())["dependencies"]
    locked = json.loads((ROOT / "dashboard" / "vendor" / "package-lock.json").read_text())["packages"]
    assert {lib["package"]: lib["version"] for lib in manifest.values()} == pinned
    for lib, entry in manifest.items():
        assert locked[f"node_modules/{entry['package']}"]["version"] == entry["version"]
        assert "LICENSE" in entry["files"], f"{lib} is vendored without its licence"
        for name, digest in entry["files"].items():
            assert hashlib.sha256((vendor / lib / name).read_bytes()).hexdigest() == digest, f"{lib}/{name} was edited"
    copied = {path.relative_to(vendor).as_posix() for path in vendor.rglob("*") if path.is_file()}
    assert copied == {"manifest.json"} | {f"{lib}/{name}" for lib, e in manifest.items() for name in e["files"]}


OUTSIDE_PAGE = """<!doctype html><title>outside</title><img src="https://example.com/a.png" alt="a">
<script src="http://192.0.2.1/b.js"></script>
<script>new WebSocket("wss://example.org/c"); fetch("/local").catch(() => 0);</script>"""


def test_the_harness_refuses_and_counts_every_outside_request(fleet: RunningFleet, page: Any) -> None:  # noqa: F811
    page.goto(fleet.dashboard.url)
    page.set_content(OUTSIDE_PAGE)
    page.wait_for_function("performance.getEntriesByType('resource').length >= 3")
    page.wait_for_timeout(300)
    assert sorted(outside_requests(page)) == ["http://192.0.2.1/b.js", "https://example.com/a.png",
                                              "wss://example.org/c"]
    assert all("ERR_PROXY_CONNECTION_FAILED" in p for p in page.problems if "/local" not in p)
    with pytest.raises(AssertionError, match=r"3 request\(s\) to outside hosts"):
        assert_offline(page)
    page.problems.clear()
