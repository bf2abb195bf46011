"""A robot's page in a real headless Chromium, on the fleet of tests/dashboard/test_app.py: its credit rating with
what it is made of, its profit and loss, its telemetry as a table with speed and battery sparklines, its DID document
wrapped to the page's width, an offline robot marked as such, and no request leaving the machine.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from launch.up import RunningFleet
from tests.browser_offline import assert_accessible, assert_offline, screenshot
from tests.dashboard.test_app import api, fleet  # noqa: F401  (the fixtures, not a copy of them)

if TYPE_CHECKING:  # Playwright is imported only when a test asks for a browser (tests/browser.py)
    from playwright.sync_api import Page


def money(minor: int, currency: str) -> str:
    """common.js's formatMoney."""
    sign, minor = ("-", -minor) if minor < 0 else ("", minor)
    return f"{sign}{minor // 100}.{minor % 100:02d} {currency}"


def test_the_robot_page_shows_its_rating_profit_and_loss_telemetry_and_sparklines(
        fleet: RunningFleet, api: httpx.Client, page: Page) -> None:  # noqa: F811
    from playwright.sync_api import expect

    earner = fleet.market.market.tasks("settled")[0].robot
    rating = api.get(f"/api/robots/{earner}/rating").json()
    page.goto(f"{fleet.dashboard.url.rstrip('/')}/robots/{earner}")
    expect(page.locator("#rating-grade")).to_have_text(rating["grade"])
    expect(page.locator("#rating-score")).to_have_text(str(rating["score"]))
    for name, part in rating["components"].items():
        row = page.locator(f"#rating-components tr[data-component='{name}'] td")
        expect(row.nth(1)).to_have_text(f"{part['value']:.4f}")  # after the component's name (th) and inputs
        expect(row.nth(2)).to_have_text(str(part["weight"]))
    reliability = page.locator("#rating-components tr[data-component='reliability'] td").first
    expect(reliability).to_contain_text(f"{rating['inputs']['delivered']} delivered")
    pnl, currency = rating["pnl"], rating["pnl"]["currency"]
    expect(page.locator("#robot-pnl tr[data-line='earned'] td")).to_have_text(money(pnl["earned"], currency))
    expect(page.locator("#robot-pnl tr[data-line='net'] td")).to_have_text(money(pnl["net"], currency))
    expect(page.locator("#robot-pnl tr[data-line='energy'] td")).to_have_text(f"− {money(pnl['energy'], currency)}")

    telemetry = api.get(f"/api/robots/{earner}").json()["telemetry"]
    expect(page.locator("#robot-telemetry tr[data-field='battery'] td")).to_have_text(
        f"{telemetry['battery'] * 100:.1f} %")
    expect(page.locator("#robot-telemetry tr[data-field='pose.x'] th")).to_contain_text("Position x")
    assert page.locator("#robot-telemetry tbody tr").count() >= 5
    for spark in ("#spark-speed", "#spark-battery"):  # a sample on load, then one a second from the live stream
        page.wait_for_function(f"document.querySelector('{spark}').dataset.points >= 2")
        assert page.locator(f"{spark} polyline").count() == 1 and page.locator(f"{spark} circle").count() == 1
    expect(page.locator("#spark-battery")).to_have_attribute("aria-label", f"battery over the last "
                                                             f"{page.locator('#spark-battery').get_attribute('data-points')} s: now "
                                                             f"{telemetry['battery'] * 100:.0f} %, lowest "
                                                             f"{telemetry['battery'] * 100:.0f} %, highest "
                                                             f"{telemetry['battery'] * 100:.0f} %")
    expect(page.locator("#robot-offline")).to_be_hidden()

    witness = api.get(f"/api/robots/{earner}").json()["witness"]  # how well peers' lidar bears out its pose
    assert witness, "a robot that delivered among two others for minutes has been judged"
    expect(page.locator("#robot-witnessed")).to_have_text(f"{witness['confidence']:.2f}")
    for verdict in ("seen", "unseen", "impossible"):
        expect(page.locator(f"#robot-witness tr[data-verdict='{verdict}'] td")).to_have_text(str(witness[verdict]))
    expect(page.locator("#robot-witness tr[data-verdict='seen_t'] td")).to_have_text(
        "never" if witness["seen_t"] is None else re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    screenshot(page, "wide")

    page.set_viewport_size({"width": 480, "height": 900})  # the DID document wraps even on a narrow screen
    document = page.locator("pre#robot-document")
    expect(document).to_contain_text(earner)
    widths = document.evaluate("""pre => {
        const unwrapped = pre.cloneNode(true);
        unwrapped.style.whiteSpace = "pre";
        pre.after(unwrapped);
        const natural = unwrapped.scrollWidth;
        unwrapped.remove();
        return {scroll: pre.scrollWidth, client: pre.clientWidth, natural};
    }""")
    assert widths["scroll"] <= widths["client"] < widths["natural"], widths  # it would overflow unwrapped
    screenshot(page, "narrow")
    assert_accessible(page)
    assert_offline(page)
    assert page.problems == []  # type: ignore[attr-defined]


def test_an_offline_robot_is_marked_offline(fleet: RunningFleet, api: httpx.Client, page: Page) -> None:  # noqa: F811
    from playwright.sync_api import expect

    agent = fleet.fleet.agents[-1]
    death = agent.session.death()  # its signed death, verified by the fleet's ingest like any other
    assert fleet.ingest.handle(death.topic, death.payload) is not None
    assert api.get(f"/api/robots/{agent.did}").json()["state"] == "offline"
    page.goto(f"{fleet.dashboard.url.rstrip('/')}/robots/{agent.did}")
    expect(page.locator("#robot-offline")).to_be_visible()
    expect(page.locator("#robot-offline-note")).to_contain_text("Offline: its death was verified")
    expect(page.locator("#robot-details")).to_have_attribute("data-offline", "true")
    expect(page.locator("#robot-state")).to_have_text("offline")
    expect(page.locator("#rating-grade")).not_to_have_text("—")  # rated all the same: the ledger does not forget
    page.wait_for_timeout(1500)  # the live stream's robots events keep it marked
    expect(page.locator("#robot-offline")).to_be_visible()
    screenshot(page, "offline")
    assert_offline(page)
    assert page.problems == []  # type: ignore[attr-defined]
