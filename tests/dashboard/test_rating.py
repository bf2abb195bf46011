"""A robot's credit rating and profit and loss (dashboard/rating.py): checked against a hand-computed example, and
recomputed from a copy of a running fleet's ledger, opened read-only, to the same JSON the dashboard serves.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest

from dashboard.rating import GRADES, Ratings, grade, rate
from identity.keys import Signer
from launch.up import RunningFleet
from ledger.journal import Ledger
from tests.conftest import ManualClock
from tests.dashboard.test_app import api, fleet  # noqa: F401  (the fixtures, not a copy of them)

ROBOT, OTHER, OWNER, CUSTOMER = "did:key:zRobot", "did:key:zOther", "did:key:zOwner", "did:key:zCustomer"
DAY_S = 86_400


def example_ledger(path: Path, clock: ManualClock) -> Ledger:
    """The hand-computed example's ledger, written with the kinds and refs marketplace/market.py writes.

    ROBOT (owned by OWNER, bond 1000) delivers six tasks: two a day on three UTC days, at prices 200, 200,
    200, 200, 200 and 110 with a 10 % fee (20 x 5 + 11 = 111 fees; 180 x 5 + 99 = 999 earned). A seventh
    delivery (price 500) is reversed: it counts for nothing. One task fails (bond slashed 50), one is faked
    (slashed 100), one expires unblamed (counts for nothing). OTHER, a second robot, delivers one task of 300:
    it must not leak into ROBOT's figures.
    """
    ledger = Ledger.open(f"sqlite:///{path}", Signer.generate(), clock=clock)
    ledger.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    for account, kind, owner in ((f"owner:{OWNER}", "owner", OWNER), ("fees:EUR", "fees", None),
                                 (f"customer:{CUSTOMER}", "customer", CUSTOMER), (f"bond:{ROBOT}", "bond", ROBOT),
                                 (f"bond:{OTHER}", "bond", OTHER)):
        ledger.open_account(account, "EUR", kind, owner=owner)
    ledger.post("fund", {"world:EUR": -2000, f"owner:{OWNER}": 2000}, kind="deposit", refs={"owner": OWNER})
    for robot in (ROBOT, OTHER):
        ledger.record(f"robot:{robot}:register", "robot.register", {"robot": robot, "owner": OWNER, "currency": "EUR"})
        ledger.post(f"bond:{robot}", {f"owner:{OWNER}": -1000, f"bond:{robot}": 1000}, kind="bond",
                    refs={"robot": robot, "owner": OWNER})

    def settle(task: str, robot: str, price: int) -> int:
        fee = price // 10
        return ledger.post(f"task:{task}:settle", {"world:EUR": -price, f"owner:{OWNER}": price - fee,
                                                   "fees:EUR": fee}, kind="escrow.release",
                           refs={"task": task, "robot": robot, "owner": OWNER, "customer": CUSTOMER, "price": price,
                                 "state": "settled", "outcome": "delivered"}).seq

    def refund(task: str, blame: str | None, slash: int) -> None:
        ledger.post(f"task:{task}:refund", {"world:EUR": -400, f"customer:{CUSTOMER}": 400}, kind="escrow.refund",
                    refs={"task": task, "robot": ROBOT, "customer": CUSTOMER, "state": "refunded",
                          "outcome": blame or "expired", "blame": blame})
        if slash:
            ledger.post(f"task:{task}:slash", {f"bond:{ROBOT}": -slash, f"customer:{CUSTOMER}": slash},
                        kind="bond.slash", refs={"task": task, "robot": ROBOT, "customer": CUSTOMER})

    prices = iter((200, 200, 200, 200, 200, 110))
    for day in range(3):
        for n in range(2):
            settle(f"t{day}{n}", ROBOT, next(prices))
            clock.advance(3600)
        clock.advance(DAY_S)
    ledger.reverse(settle("t-reversed", ROBOT, 500), "t-reversed:reversal", "settled by mistake")
    refund("t-failed", "failed", 50)
    refund("t-faked", "faked", 100)
    refund("t-expired", None, 0)
    settle("t-other", OTHER, 300)
    return ledger


def test_the_rating_of_a_hand_computed_example(tmp_path: Path, clock: ManualClock) -> None:
    """The example of ``example_ledger``, by hand (docs/dashboard.md, "A robot's rating and its profit and loss"):

    revenue     = min(1, log10(1 + 999) / 5)                  = 3 / 5                = 0.6
    activity    = (min(1, 6 / 50) + min(1, 3 / 30)) / 2       = (0.12 + 0.1) / 2     = 0.11
    reliability = 6 / (6 + 1 + 3 x 1)                         = 6 / 10               = 0.6
    bond        = 1 - min(1, (50 + 100) / 1000)               = 1 - 0.15             = 0.85
    score       = 30 x 0.6 + 20 x 0.11 + 35 x 0.6 + 15 x 0.85 = 18 + 2.2 + 21 + 12.75 = 53.95 -> 54
    grade: bonded (1000 - 150 = 850 held), 6 + 1 + 1 = 8 outcomes >= 3, 54 >= 45: BB

    profit and loss, battery at 0.25: gross 1110, fees 111, earned 999, slashed 150;
    energy = (1 - 0.25) x 0.4 kWh = 0.3 kWh, x 30 cents = 9; net = 999 - 150 - 9 = 840.
    """
    ledger = example_ledger(tmp_path / "ledger.sqlite3", clock)
    rated = rate(ledger.entries(), ROBOT, battery=0.25)
    assert rated is not None
    assert rated["score"] == 54 and rated["grade"] == "BB"
    assert {name: part["value"] for name, part in rated["components"].items()} == {
        "revenue": 0.6, "activity": 0.11, "reliability": 0.6, "bond": 0.85}
    assert {name: part["points"] for name, part in rated["components"].items()} == {
        "revenue": 18.0, "activity": 2.2, "reliability": 21.0, "bond": 12.75}
    assert rated["inputs"] == {"earned": 999, "delivered": 6, "failed": 1, "faked": 1, "days_active": 3,
                               "bond_posted": 1000, "bond_slashed": 150, "bond_returned": 0, "bond_held": 850}
    assert rated["pnl"] == {"currency": "EUR", "gross": 1110, "fees": 111, "earned": 999, "slashed": 150,
                            "energy": 9, "energy_kwh": 0.3, "battery": 0.25, "battery_kwh": 0.4, "price_per_kwh": 30,
                            "net": 840}
    assert rated["as_of"] == ledger.size()
    other = rate(ledger.entries(), OTHER)
    assert other is not None and other["inputs"]["earned"] == 270 and other["inputs"]["delivered"] == 1
    assert other["grade"] == "Provisioned" and other["pnl"]["energy"] is None and other["pnl"]["net"] == 270
    assert rate(ledger.entries(), "did:key:zNobody") is None
    ledger.close()


def test_grades_follow_peaqs_cut_offs_and_need_a_bond_and_history() -> None:
    assert [grade(score, bonded=True, outcomes=3) for score in (100, 95, 94, 85, 75, 60, 45, 30, 29, 0)] == [
        "AAA", "AAA", "AA", "AA", "A", "BBB", "BB", "B", "NR", "NR"]
    assert [floor for floor, _ in GRADES] == [95, 85, 75, 60, 45, 30]
    assert grade(99, bonded=False, outcomes=50) == "NR" and grade(99, bonded=True, outcomes=2) == "Provisioned"
    assert Ratings().rating(ROBOT) is None


def test_the_served_rating_is_recomputed_from_a_read_only_copy_of_the_ledger(
        fleet: RunningFleet, api: httpx.Client, tmp_path: Path) -> None:  # noqa: F811
    robots = {row["did"]: row for row in api.get("/api/robots").json()}
    earner = fleet.market.market.tasks("settled")[0].robot
    served = api.get(f"/api/robots/{earner}/rating").json()
    assert served["robot"] == earner and 0 <= served["score"] <= 100 and served["inputs"]["delivered"] > 0
    assert set(served["components"]) == {"revenue", "activity", "reliability", "bond"}
    assert served["pnl"]["battery"] == robots[earner]["battery"] and served["pnl"]["energy"] is not None
    assert served["inputs"]["earned"] == api.get(f"/api/robots/{earner}").json()["earnings"]["total"]

    copy = tmp_path / "copy.sqlite3"
    source = sqlite3.connect(f"file:{fleet.state / 'ledger.sqlite3'}?mode=ro", uri=True)
    with sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    os.chmod(copy, stat.S_IRUSR | stat.S_IRGRP)
    reader = Ledger.open(f"sqlite:///{copy}", None)  # no key: a reader, and the file is read-only besides
    try:
        again = rate(reader.entries(), earner, battery=robots[earner]["battery"])
    finally:
        reader.close()
    assert json.dumps(again, sort_keys=True) == json.dumps(served, sort_keys=True)
    missing = api.get("/api/robots/did:key:zNobody/rating")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_robot"


@pytest.mark.parametrize("battery, energy", [(None, None), (1.0, 0), (0.0, 12), (-0.5, 12), (1.5, 0)])
def test_energy_is_priced_from_the_battery_and_clamped(tmp_path: Path, clock: ManualClock, battery: float | None,
                                                        energy: int | None) -> None:
    ledger = example_ledger(tmp_path / "ledger.sqlite3", clock)
    rated = rate(ledger.entries(), ROBOT, battery=battery)
    assert rated is not None and rated["pnl"]["energy"] == energy and rated["pnl"]["net"] == 849 - (energy or 0)
    ledger.close()
