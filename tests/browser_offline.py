"""Offline and accessibility checks for the browser tests (tests/browser.py, issue #19).

Every page from the ``page`` fixture (``tests.browser.open_page``) is already guarded, without intercepting
a single request: its context's proxy is a local port that refuses connections, and only ``LOCAL_HOSTS`` bypass
it, so each request to another host (HTTP(S) or WebSocket, from the page, its frames or its workers) fails
before it leaves the machine, and its URL is recorded. Import what a test needs::

    from tests.browser_offline import assert_accessible, assert_offline, axe, screenshot

- ``OFFLINE_CONTEXT``: the ``browser.new_context(**OFFLINE_CONTEXT, ...)`` options that do this for a context a
  test makes itself; then ``watch_outside(context)`` records the URLs (``context.outside_requests``).
- ``block_outside(target)``: for a page or context made without those options: blocks the same requests
  with ``route`` (which intercepts every request, so slows them a little) and records them.
- ``outside_requests(page) -> list[str]``: the URLs blocked so far, in order.
- ``assert_offline(page)``: fail, naming them, if any request went (tried to go) outside.
- ``axe(page, *, within=None, rules=None) -> list[dict]``: inject the vendored axe-core
  (dashboard/static/vendor/axe-core/axe.min.js; no download) and run it on the page as it is now
  (or on the element ``within`` selects); its violations: ``id``, ``impact`` (minor, moderate, serious,
  critical), ``help``, ``helpUrl`` and ``nodes`` (each ``target``, ``html``, ``failureSummary``).
  ``rules`` is axe's ``rules`` option, e.g. ``{"color-contrast": {"enabled": False}}``.
- ``assert_accessible(page, *, impacts=SERIOUS, ignore=(), within=None) -> list[dict]``: fail on
  violations of those impacts (default serious and critical), listed readably, except the rule ids in
  ``ignore``; returns every violation (the minor ones too).
- ``format_violations(violations) -> str``: the readable list.
- ``screenshot(page, name) -> Path``: ``tests.browser.screenshot``: ``<artifacts>/<test name>-<name>.png``
  (``$DEPAI_ARTIFACTS``, else tests/artifacts/, which git ignores and CI's workspace keeps).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.browser import ROOT, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route, WebSocketRoute

__all__ = ["AXE_JS", "LOCAL_HOSTS", "OFFLINE_CONTEXT", "SERIOUS", "assert_accessible", "assert_offline", "axe",
           "block_outside", "format_violations", "is_local", "outside_requests", "screenshot", "watch_outside"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
AXE_JS = ROOT / "dashboard" / "static" / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")
_SHOWN_NODES = 5  # per violation, in a failure message


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this machine: a local host, or no host at all (data:, blob:, about:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


_held: list[socket.socket] = []


def _refusing_port() -> int:
    """A local TCP port bound but never listened on, held for the session: connecting to it is refused at once."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    _held.append(held)
    return held.getsockname()[1]


OFFLINE_CONTEXT: dict[str, Any] = {"proxy": {"server": f"http://127.0.0.1:{_refusing_port()}",
                                             "bypass": "127.0.0.1,localhost,[::1]"}}  # LOCAL_HOSTS


def watch_outside(context: BrowserContext) -> list[str]:
    """Record the URL of every request and WebSocket ``context`` opens to a host not in ``LOCAL_HOSTS``
    (no interception: made with ``OFFLINE_CONTEXT``, the context's proxy refuses them); the list."""
    existing = getattr(context, "outside_requests", None)
    if existing is not None:
        return existing
    recorded: list[str] = []

    def seen(url: str) -> None:
        if not is_local(url):
            recorded.append(url)

    def watch_page(page: Page) -> None:
        page.on("websocket", lambda socket: seen(socket.url))

    context.on("request", lambda request: seen(request.url))
    for page in context.pages:
        watch_page(page)
    context.on("page", watch_page)
    context.outside_requests = recorded  # type: ignore[attr-defined]
    return recorded


def block_outside(target: Page | BrowserContext) -> list[str]:
    """Abort and record every request ``target`` makes to a host not in ``LOCAL_HOSTS``; the list of URLs.

    For a page or context not made with ``OFFLINE_CONTEXT``. On a context, this covers all its pages, frames
    and workers; calling it twice returns the same list."""
    existing = getattr(target, "outside_requests", None)
    if existing is not None:
        return existing
    blocked: list[str] = []

    def outside(url: str) -> bool:
        return not is_local(url)

    def abort(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort("blockedbyclient")

    def refuse(socket: WebSocketRoute) -> None:
        blocked.append(socket.url)
        socket.close(code=1008, reason="outside requests are blocked in tests")

    target.route(outside, abort)
    target.route_web_socket(outside, refuse)
    target.outside_requests = blocked  # type: ignore[union-attr]
    return blocked


def outside_requests(page: Page) -> list[str]:
    """The URLs outside ``LOCAL_HOSTS`` that ``page`` (or its context) tried to reach, in order."""
    for holder in (page, page.context):
        found = getattr(holder, "outside_requests", None)
        if found is not None:
            return found
    raise AssertionError("this page is not guarded: use the page fixture (tests/conftest.py), make its context "
                         "with OFFLINE_CONTEXT and watch_outside(context), or call block_outside(page) first")


def assert_offline(page: Page) -> None:
    """Fail if ``page`` made any request to a host outside ``LOCAL_HOSTS`` (each was blocked)."""
    blocked = outside_requests(page)
    assert not blocked, (f"{len(blocked)} request(s) to outside hosts from {page.url} (refused; the dashboard "
                         "must serve everything itself):\n  " + "\n  ".join(dict.fromkeys(blocked)))


_RUN_AXE = """async ([within, rules]) => {
  const options = {resultTypes: ["violations"], ...(rules ? {rules} : {})};
  const result = await axe.run(within ? document.querySelector(within) : document, options);
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, description: v.description,
    nodes: v.nodes.map((n) => ({target: n.target, html: n.html, failureSummary: n.failureSummary})),
  }));
}"""


def axe(page: Page, *, within: str | None = None, rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the vendored axe-core on ``page`` now (on ``within``'s element if given); its violations."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(_RUN_AXE, [within, rules])


def format_violations(violations: Iterable[dict[str, Any]]) -> str:
    """One paragraph per violation: rule, impact, what it asks, and the first few elements with why."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        nodes = violation["nodes"]
        for node in nodes[:_SHOWN_NODES]:
            target = " ".join(str(part) for part in node["target"])
            why = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    {target}: {why}")
        if len(nodes) > _SHOWN_NODES:
            lines.append(f"    ... and {len(nodes) - _SHOWN_NODES} more element(s)")
    return "\n".join(lines)


def assert_accessible(page: Page, *, impacts: Iterable[str] = SERIOUS, ignore: Iterable[str] = (),
                      within: str | None = None) -> list[dict[str, Any]]:
    """Fail on axe violations of ``impacts`` (serious, critical) on ``page``, except rules in ``ignore``.

    Returns every violation axe found, whatever its impact."""
    violations = axe(page, within=within)
    wanted, ignored = set(impacts), set(ignore)
    failing = [v for v in violations if v["impact"] in wanted and v["id"] not in ignored]
    assert not failing, (f"{len(failing)} {'/'.join(sorted(wanted))} accessibility violation(s) on {page.url} "
                         f"(axe-core):\n{format_violations(failing)}")
    return violations
