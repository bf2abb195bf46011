"""The revenue page in a real headless Chromium (issue #19): uPlot charts with labelled axes over fleet time, per
robot (a robot that earned nothing too) and per member, named, in the tables' order with DIDs on hover; the task
table's search and sort; the fleet's clock explained; and not one request leaves the machine.

The dashboard serves a ``LedgerView`` of a small ledger written by tests/dashboard/test_revenue.py's ``Fleet``
(three DAO robots, two members), with names as a fleet gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dao.dao import Dao
from dashboard.view import LedgerView
from identity.registry import DidRegistry
from ledger.journal import Ledger
from marketplace.market import Marketplace
from tests.browser import screenshot
from tests.conftest import ManualClock
from tests.dao.test_dao import DAO_DID, World
from tests.dashboard.test_ledger_api import serving
from tests.dashboard.test_revenue import DAO_ROBOTS, Fleet

from tests.browser_offline import assert_accessible, assert_offline

if TYPE_CHECKING:  # Playwright is imported only when a test asks for a browser (tests/browser.py)
    from playwright.sync_api import Page

NAMES = {DAO_ROBOTS[0]: "robot-0", DAO_ROBOTS[1]: "robot-1", DAO_ROBOTS[2]: "robot-2"}


@pytest.fixture
def served(tmp_path: Path, registry: DidRegistry, clock: ManualClock) -> Iterator[tuple[str, dict[str, Any]]]:
    """The dashboard over a ledger where robot-0 settled three tasks, robot-1 two, robot-2 none, over two fleet
    days; the split paid both members. Yields its URL and what /api/revenue answers."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    world = World(registry, clock, url)
    fleet = Fleet(world.ledger, clock)
    a, b, _ = DAO_ROBOTS
    for robot, price, hours in ((a, 600, 0), (b, 801, 0), (a, 350, 1), (b, 420, 2), (a, 999, 20)):
        clock.advance(hours * 3600)
        fleet.settle(robot, price, max_price=1_000)
    world.dao.distribute("d1")
    names = {**NAMES, world.alice.did: "member-0", world.bob.did: "member-1"}
    ledger = Ledger.open(url, None)  # the dashboard's own read-only connection
    view = LedgerView(ledger, Dao(ledger, DAO_DID), Marketplace(ledger, None), names=lambda: names)
    try:
        with serving(view) as server:
            yield server.url, httpx.get(f"{server.url}api/revenue").json()
    finally:
        view.close()
        world.ledger.close()


def texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def test_the_charts_have_labelled_axes_and_the_tables_name_everyone_in_the_charts_order(
        served: tuple[str, dict[str, Any]], page: Page) -> None:
    from playwright.sync_api import expect

    url, revenue = served
    page.goto(f"{url}revenue")
    page.wait_for_selector("body[data-revenue-as-of]")
    # uPlot draws axis labels on its canvas: read them from the charts, and find its axes in the DOM
    labels = page.evaluate("Object.fromEntries(Object.entries(window.revenueCharts)"
                           ".map(([name, chart]) => [name, chart.plot.axes.map((axis) => axis.label)]))")
    assert labels == {"time": ["Fleet time (UTC), one bar per hour", "Revenue (EUR per hour)"],
                      "robot": ["Robot (by name)", "Earned (EUR)"],
                      "member": ["Member (by name)", "Distributed (EUR)"]}
    for chart in ("time", "robot", "member"):
        assert page.locator(f"#chart-{chart} .uplot canvas").count() >= 1
        assert page.locator(f"#chart-{chart} .u-axis").count() == 2
    expect(page.locator("#chart-time-caption")).to_contain_text("4 hours with revenue")
    first, last = revenue["by_hour"][0]["at_ms"] / 1000, revenue["by_hour"][-1]["at_ms"] / 1000
    shown = page.evaluate("[window.revenueCharts.time.plot.scales.x.min, window.revenueCharts.time.plot.scales.x.max]")
    assert shown == [first, last + 3600]  # the buckets' span: from the first hour's start to the last one's end

    # per robot: every DAO robot, robot-2 that earned nothing too, in one order in the chart and the table
    assert [r["name"] for r in revenue["by_robot"]] == ["robot-0", "robot-1", "robot-2"]
    assert revenue["by_robot"][2]["earned"] == 0
    assert texts(page, "#robots tbody td:first-child") == ["robot-0", "robot-1", "robot-2"]
    assert page.evaluate("window.revenueCharts.robot.plot.axes[0]._values") == ["robot-0", "robot-1", "robot-2"]
    assert page.get_attribute("#robots tbody tr:nth-child(3) a", "title") == DAO_ROBOTS[2]  # the DID on hover
    assert page.text_content("#robots tbody tr:nth-child(3) td[data-field='earned']") == "0.00 EUR"
    members = [m["name"] for m in revenue["by_member"]]
    assert members == ["member-0", "member-1"]  # 60 and 40 shares: most distributed first
    assert texts(page, "#members tbody td:first-child") == members
    assert page.evaluate("window.revenueCharts.member.plot.axes[0]._values") == members
    for row in revenue["by_member"]:
        assert page.get_attribute(f"tr[data-member='{row['member']}'] span.named", "title") == row["member"]
    assert "did:" not in " ".join(texts(page, "#robots tbody td, #members tbody td"))  # names, not DIDs

    page.click("#bucket-day")
    expect(page.locator("#chart-time-caption")).to_contain_text("2 days with revenue")
    assert page.evaluate("window.revenueCharts.time.plot.axes.map((axis) => axis.label)") == [
        "Fleet time (UTC), one bar per day", "Revenue (EUR per day)"]
    expect(page.locator("#fleet-clock")).to_contain_text("fleet time: the simulation's clock")
    screenshot(page, "revenue")
    assert_offline(page)
    assert_accessible(page)  # axe-core: no serious or critical violation
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_task_table_searches_and_sorts(served: tuple[str, dict[str, Any]], page: Page) -> None:
    from playwright.sync_api import expect

    url, _ = served
    page.goto(f"{url}revenue")
    page.wait_for_selector("#tasks tbody tr[data-task]")
    rows = page.locator("#tasks tbody tr[data-task]")
    expect(rows).to_have_count(5)
    assert texts(page, "#tasks td[data-field='task']") == ["t5", "t4", "t3", "t2", "t1"]  # newest first
    assert texts(page, "#tasks td[data-field='price']")[0] == "9.99 EUR"
    assert texts(page, "#tasks td[data-field='fee']")[0] == "0.49 EUR"
    assert texts(page, "#tasks td[data-field='earned']")[0] == "9.50 EUR"

    page.fill("#task-search", "robot-1")
    expect(rows).to_have_count(2)
    assert set(texts(page, "#tasks td[data-field='robot']")) == {"robot-1"}
    page.fill("#task-search", DAO_ROBOTS[0])  # a DID finds its robot's tasks too
    expect(rows).to_have_count(3)
    page.fill("#task-search", "t3")
    expect(rows).to_have_count(1)
    page.fill("#task-search", "nothing like it")
    expect(page.locator("#tasks td.empty")).to_contain_text("No task matches")
    page.fill("#task-search", "")
    expect(rows).to_have_count(5)
    expect(page.locator("#task-count")).to_have_text("5 of 5 tasks shown")

    page.click("#tasks th[data-sort='price'] button")
    assert texts(page, "#tasks td[data-field='price']") == ["9.99 EUR", "8.01 EUR", "6.00 EUR", "4.20 EUR",
                                                           "3.50 EUR"]
    assert page.get_attribute("#tasks th[data-sort='price']", "aria-sort") == "descending"
    page.click("#tasks th[data-sort='price'] button")
    assert texts(page, "#tasks td[data-field='price']")[0] == "3.50 EUR"
    assert page.get_attribute("#tasks th[data-sort='price']", "aria-sort") == "ascending"
    assert page.get_attribute("#tasks th[data-sort='settled_at_ms']", "aria-sort") is None
    page.click("#tasks th[data-sort='robot'] button")
    assert texts(page, "#tasks td[data-field='robot']") == ["robot-0"] * 3 + ["robot-1"] * 2
    page.fill("#task-search", "robot-0")  # the search keeps the sort
    assert texts(page, "#tasks td[data-field='task']") == ["t5", "t3", "t1"]
    assert_offline(page)
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_page_says_how_fast_the_fleet_clock_runs(served: tuple[str, dict[str, Any]], page: Page) -> None:
    from playwright.sync_api import expect

    url, _ = served
    clock_s = 1_790_100_000.0  # far ahead of the wall clock, as a fast simulation's is
    status = {"robots": 3, "tasks": {"posted": 5, "settled": 5}, "revenue": {"currency": "EUR", "earned": 1},
              "clock_s": clock_s, "sim_s": 60.0, "speed": 20.0}
    body = f"event: status\ndata: {json.dumps(status)}\n\n"
    page.route("**/api/events", lambda route: route.fulfill(status=200, body=body,
                                                             headers={"content-type": "text/event-stream"}))
    page.goto(f"{url}revenue")
    clock = page.locator("#fleet-clock")
    expect(clock).to_contain_text("fleet time: the simulation's clock, running 20× the wall clock")
    expect(clock).to_contain_text("It is now 2026-09-22 18:00:00 UTC in fleet time")
    expect(clock).to_contain_text("this computer's clock")


def test_the_market_page_names_robots_and_customers_and_drop_off_places(
        served: tuple[str, dict[str, Any]], page: Page) -> None:
    """The market page (issue #19): names from the view's ``names()``, DIDs on hover; a drop-off at one of the map's
    places (here the map of a running fleet, stood in for) by that place's name, another by rounded coordinates."""
    from playwright.sync_api import expect

    url, _ = served
    settled = httpx.get(f"{url}api/tasks", params={"state": "settled"}).json()
    assert {(t["robot_name"], t["customer_name"]) for t in settled} == {("robot-0", ""), ("robot-1", "")}
    assert {tuple(t["dropoff"]) for t in settled} == {(10.0, 5.0)}
    status = httpx.get(f"{url}api/status").json()
    page.route("**/api/status", lambda route: route.fulfill(json={**status, "sim_s": 60.0, "clock_s": 1.0}))
    page.route("**/api/map", lambda route: route.fulfill(json={"places": [
        {"kind": "depot", "x": 0.0, "y": 0.0}, {"kind": "dropoff", "x": 40.0, "y": 40.0},
        {"kind": "dropoff", "x": 10.2, "y": 5.1}]}))
    page.goto(f"{url}market")
    rows = page.locator("#tasks-settled tbody tr[data-task]")
    expect(rows).to_have_count(5)
    assert set(texts(page, "#tasks-settled td[data-field='robot']")) == {"robot-0", "robot-1"}
    robot = page.locator("#tasks-settled tr[data-task='t1'] td[data-field='robot'] a")
    assert robot.get_attribute("title") == DAO_ROBOTS[0]
    assert set(texts(page, "#tasks-settled td[data-field='dropoff']")) == {"Drop-off 2"}  # the second drop-off place
    assert page.get_attribute("#tasks-settled tr[data-task='t1'] .place", "title") == "Drop-off 2 at (10, 5) m"
    customer = page.locator("#tasks-settled tr[data-task='t1'] td[data-field='customer'] span")
    assert customer.get_attribute("title") == "did:key:zCustomer"  # no name for it: the short DID

    page.unroute("**/api/map")
    page.route("**/api/map", lambda route: route.fulfill(json={"places": []}))
    page.reload()
    expect(rows).to_have_count(5)
    assert set(texts(page, "#tasks-settled td[data-field='dropoff']")) == {"(10, 5) m"}
    assert_offline(page)
    assert_accessible(page)
    reloaded = [p for p in page.problems if "/api/events" not in p or "ERR_ABORTED" not in p]  # type: ignore[attr-defined]
    assert reloaded == []  # but for the event stream the reload cut off
