"""``depai up`` end to end: the real command, a real broker, the ledger on disk, the dashboard in headless Chromium.

A small fleet runs until tasks are settled and the DAO has paid its members;
then every page is opened in Chromium (screenshots go to the test artifacts),
the live map must keep redrawing, a member proposes and votes with signatures
made in the browser, the ledger page proves an entry, and the dashboard's
numbers must be the ledger's own. Ctrl-C stops it cleanly with a summary, and a
second run resumes the same fleet.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from identity.registry import DidRegistry
from launch.identities import IdentityStore
from ledger.journal import Ledger
from tests.browser import screenshot
from tests.launch.up_process import ROOT, UpProcess

FLEET = ["--robots", "4", "--city", "2", "--seed", "3", "--speed", "20", "--port", "0", "--orders-per-min", "4",
         "--scan-hz", "0.5"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, Path]]:
    home = tmp_path_factory.mktemp("home")
    state = home / "fleet"
    with UpProcess([*FLEET, "--state", str(state)], home) as up:
        url = up.dashboard_url
        with httpx.Client(base_url=url, timeout=10) as api:
            deadline = time.monotonic() + 240
            while True:  # until tasks are settled and the DAO has split revenue to its members
                revenue = api.get("/api/revenue").json()
                if revenue["earned"] > 0 and all(m["distributed"] > 0 for m in revenue["by_member"]):
                    break
                assert time.monotonic() < deadline, f"nothing earned yet:\n{up.stderr_text[-2000:]}"
                time.sleep(1)
        yield up, state


def real_problems(page: Any) -> list[str]:
    """The page's console errors, exceptions and failed requests, but for requests the browser itself cancelled
    (net::ERR_ABORTED: the live stream and tile loads in flight when the test moves to the next page)."""
    return [problem for problem in page.problems if "net::ERR_ABORTED" not in problem]


def ledger_at(state: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{state / 'ledger.sqlite3'}", None)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} EUR"


def figures(ledger: Ledger, dao: str, size: int) -> dict[str, Any]:
    """Straight from the journal's first ``size`` entries: what the DAO earned and each member was paid."""
    earned, members = 0, {}
    for entry in ledger.entries(1, size + 1):
        for account, _, amount in entry.postings:
            if entry.kind == "escrow.release" and account == f"owner:{dao}":
                earned += amount
            if entry.kind == "dao.split" and account.startswith(f"claimable:{dao}:"):
                member = account.removeprefix(f"claimable:{dao}:")
                members[member] = members.get(member, 0) + amount
    return {"earned": earned, "members": members}


def test_the_dashboard_shows_the_running_fleet_and_its_numbers_are_the_ledgers(running: tuple[UpProcess, Path],
                                                                                page: Any) -> None:
    up, state = running
    url = up.dashboard_url.rstrip("/")

    page.goto(f"{url}/")
    page.wait_for_selector("body[data-robots-drawn='4']", timeout=20_000)
    frames = int(page.get_attribute("body", "data-frames"))
    page.wait_for_function(f"Number(document.body.dataset.frames) >= {frames + 2}", timeout=20_000)
    page.wait_for_selector("#status .connection[data-state='live']")
    screenshot(page, "map")

    page.goto(f"{url}/robots")
    page.wait_for_selector("table#robots tr[data-robot]")
    assert page.locator("table#robots tr[data-robot]").count() == 4
    screenshot(page, "robots")

    page.goto(f"{url}/market")
    page.wait_for_selector("table#tasks-settled tr[data-task]")
    screenshot(page, "market")
    earner = next(r for r in httpx.get(f"{url}/api/robots").json() if r["earned"] > 0)
    page.goto(f"{url}/robots/{earner['did']}")
    page.wait_for_selector("#robot-details:not([hidden])")
    assert page.text_content("#robot-did").strip() == earner["did"]
    assert page.text_content("#robot-earned").strip() == money(earner["earned"])
    assert earner["did"] in page.text_content("pre#robot-document")
    screenshot(page, "robot")

    page.goto(f"{url}/revenue")
    page.wait_for_selector("table#members tr[data-member]")
    as_of = int(page.text_content("#revenue-as-of"))
    ledger = ledger_at(state)
    try:
        dao = httpx.get(f"{url}/api/dao").json()["did"]
        truth = figures(ledger, dao, as_of)
    finally:
        ledger.close()
    assert truth["earned"] > 0
    assert page.text_content("#revenue-earned").strip() == money(truth["earned"])
    for member, paid in truth["members"].items():
        cell = page.text_content(f"tr[data-member='{member}'] td[data-field='distributed']")
        assert cell.strip() == money(paid), member
    assert page.locator("#chart-robot .u-axis").count() >= 2  # a uPlot chart with its axes
    screenshot(page, "revenue")

    page.goto(f"{url}/ledger")
    page.wait_for_selector("#checkpoint-size")
    page.wait_for_function("document.querySelector('#checkpoint-size').textContent.trim() !== ''")
    page.fill("#entry-seq", "1")
    page.click("form#inclusion-form button")
    page.wait_for_selector("#inclusion-result[data-verified]")
    assert page.text_content("#inclusion-result").strip() == "verified"
    screenshot(page, "ledger")
    assert real_problems(page) == []


def test_a_member_proposes_and_votes_with_keys_that_never_leave_the_browser(running: tuple[UpProcess, Path],
                                                                          page: Any) -> None:
    up, state = running
    url = up.dashboard_url.rstrip("/")
    with DidRegistry(state / "registry.sqlite3") as registry:
        alice = IdentityStore(state / "identities.json", registry).enroll("member-1").did
    page.goto(f"{url}/dao")
    page.wait_for_selector("table#dao-members tr[data-member]")
    page.select_option("#key-member", alice)
    page.set_input_files("#key-file", str(state / "identities.json"))  # the fleet's key file, imported once
    page.click("form#key-form button[type=submit]")
    page.wait_for_selector("#key-result[data-ok='true']", timeout=15_000)
    page.fill("#propose-id", "tip-alice")
    page.fill("#propose-description", "a one-cent tip, to try the vote")
    page.select_option("#action-kind", "spend")
    page.fill("#action-to", alice)
    page.fill("#action-amount", "0.01")
    page.click("form#propose-form button[type=submit]")
    page.wait_for_selector("#propose-result[data-ok='true']", timeout=15_000)
    page.wait_for_selector("article.proposal[data-proposal='tip-alice'] .badge[data-state='active']",
                           timeout=60_000)  # after the voting delay (30 simulated s)
    page.select_option("#vote-proposal", "tip-alice")
    page.select_option("#vote-support", "for")
    page.click("form#vote-form button[type=submit]")
    page.wait_for_selector("#vote-result[data-ok='true']", timeout=15_000)
    tally = httpx.get(f"{url}/api/proposals").json()[0]
    assert tally["id"] == "tip-alice" and tally["votes"] == [{"member": alice, "support": "for", "weight": 500}]
    screenshot(page, "dao")
    assert real_problems(page) == []


def test_ctrl_c_stops_cleanly_and_a_second_run_resumes_the_same_fleet(running: tuple[UpProcess, Path],
                                                                       tmp_path: Path) -> None:
    up, state = running
    dao = httpx.get(f"{up.dashboard_url}api/dao").json()["did"]
    assert up.stop() == 0
    assert re.search(r"depai up: run 1 of the fleet in .*: 4 robots", up.stdout_text)
    assert "verified intact" in up.stdout_text and "Traceback" not in up.stderr_text
    before = ledger_at(state)
    entries = before.size()
    before.close()
    config = tmp_path / "fleet.toml"
    config.write_text(f'state = "{state}"\nbroker = "none"\nfor = 30\nspeed = 0\nport = 0\n')
    again = subprocess.run([sys.executable, "-m", "launch.cli", "up", "--config", str(config), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["run"] == 2 and summary["robots"] == 4 and summary["ledger"]["intact"]
    assert summary["city"] == {"blocks": 2, "seed": 3}  # the fleet's own city, though the file names none
    assert summary["ledger"]["entries"] >= entries
    assert summary["revenue"]["earned"] > 0  # what run 1 earned is still the DAO's
    with DidRegistry(state / "registry.sqlite3") as registry:
        assert IdentityStore(state / "identities.json", registry).enroll("dao").did == dao


def test_a_resumed_fleet_keeps_its_city(running: tuple[UpProcess, Path]) -> None:
    _, state = running
    other = subprocess.run([sys.executable, "-m", "launch.cli", "up", "--state", str(state), "--city", "5",
                            "--broker", "none"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    assert other.returncode == 2 and "this fleet's city was built with --city 2" in other.stderr


def test_a_config_file_with_an_unknown_key_is_refused_with_the_keys_it_takes(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text("robots = 3\nrobot_count = 4\n")
    result = subprocess.run([sys.executable, "-m", "launch.cli", "up", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "unknown keys robot_count" in result.stderr and "robots" in result.stderr
