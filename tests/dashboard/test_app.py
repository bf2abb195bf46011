"""The dashboard's API over real HTTP, on a fleet started the way ``depai up`` starts it (in process, no broker).

One small fleet runs for a few simulated minutes; every endpoint is read and
checked against the ledger; then a member proposes over the API that the DAO
buy a robot, votes for it, and the robot joins the running fleet. Everything a
browser could send unsigned, forged, replayed or from a non-member is refused
and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest

from dao.lifecycle import Params
from identity.envelope import EnvelopeSigner
from identity.registry import DidRegistry
from launch.fleet import Identity, register
from launch.identities import IdentityStore
from launch.up import RunningFleet, UpConfig, start
from marketplace.market import MIN_BOND
from ledger import merkle
from tests.dashboard.test_fleet_health import parse_exposition, sample

FAST_GOVERNANCE = Params(voting_delay_s=5.0, voting_period_s=20.0, quorum_bps=4_000, timelock_s=5.0,
                         grace_period_s=600.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    state = tmp_path_factory.mktemp("fleet")
    config = UpConfig(robots=3, city=2, seed=3, broker="none", port=0, orders_per_min=3.0, scan_hz=0.5,
                      governance=FAST_GOVERNANCE, bond=MIN_BOND)
    with contextlib.ExitStack() as stack:
        up = start(config, state, stack, lambda _: None)
        up.drive(240.0)
        yield up


@pytest.fixture(scope="module")
def api(fleet: RunningFleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.dashboard.url, timeout=10) as client:
        yield client


def member(fleet: RunningFleet, name: str) -> Identity:
    with DidRegistry(fleet.state / "registry.sqlite3") as registry:
        return IdentityStore(fleet.state / "identities.json", registry).enroll(name)


def seal(identity: Identity, kind: str, body: dict) -> bytes:
    return EnvelopeSigner(identity.signer, identity.did).seal(kind, body)


def test_status_robots_and_tasks_agree_with_the_ledger(fleet: RunningFleet, api: httpx.Client) -> None:
    status = api.get("/api/status").json()
    settled = fleet.market.market.tasks("settled")
    assert settled, "the fleet should have delivered something in four simulated minutes"
    assert status["robots"] == 3 and status["tasks"]["settled"] == len(settled)
    assert status["ledger"]["size"] == fleet.ledger.size()
    robots = api.get("/api/robots").json()
    assert {r["did"] for r in robots} == {a.did for a in fleet.fleet.agents}
    assert all(r["x"] is not None and r["state"] != "unheard" and r["name"].startswith("robot-") for r in robots)
    listed = api.get("/api/tasks", params={"state": "settled"}).json()
    assert {t["id"] for t in listed} == {t.id for t in settled}
    assert api.get("/api/tasks", params={"state": "lost"}).status_code == 400


def test_a_robot_page_has_its_document_trust_and_earnings(fleet: RunningFleet, api: httpx.Client) -> None:
    earner = fleet.market.market.tasks("settled")[0].robot
    page = api.get(f"/api/robots/{earner}").json()
    assert page["document"]["id"] == earner and page["document"]["controller"] == fleet.dao.did
    assert page["earnings"]["total"] > 0 and page["telemetry"]["pose"]
    assert any(t["robot"] == earner and t["state"] == "settled" for t in page["tasks"])
    missing = api.get("/api/robots/did:peaq:nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_robot"


def test_revenue_adds_up_to_the_ledgers_balances(fleet: RunningFleet, api: httpx.Client) -> None:
    revenue = api.get("/api/revenue").json()
    balances = fleet.ledger.balances()
    dao = fleet.dao.did
    paid = sum(n for e in fleet.ledger.entries() if e.kind == "escrow.release"
               for account, _, n in e.postings if account == f"owner:{dao}")
    assert revenue["as_of"] == fleet.ledger.size() and revenue["earned"] == paid > 0
    assert sum(d["earned"] for d in revenue["by_day"]) == sum(r["earned"] for r in revenue["by_robot"]) == paid
    assert revenue["accounts"]["treasury"] == balances[f"treasury:{dao}"]
    for row in revenue["by_member"]:
        assert row["claimable"] == balances.get(f"claimable:{dao}:{row['member']}", 0)
    split_out = sum(balances.get(f"{role}:{dao}", 0) for role in ("treasury", "reserve", "operator"))
    assert split_out + sum(r["distributed"] for r in revenue["by_member"]) + revenue["accounts"]["undistributed"] == paid
    csv = api.get("/api/revenue.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 1 + sum(r["tasks"] for r in revenue["by_robot"])


def test_the_map_and_its_tiles(api: httpx.Client) -> None:
    shared = api.get("/api/map").json()
    assert shared["roads"] and shared["places"] and shared["tiles"]
    assert {road["state"] for road in shared["roads"]} <= {"free", "slow", "blocked", "suspect"}
    png = api.get(shared["tiles"][0]["url"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert api.get("/api/map/tiles/9999/9999.png").status_code == 404


def test_robots_carry_how_well_peers_witness_their_location_in_the_api_and_metrics(fleet: RunningFleet,
                                                                                 api: httpx.Client) -> None:
    rows = {row["did"]: row for row in api.get("/api/robots").json()}
    report = {row["did"]: row for row in fleet.shared_map.presence_report()}
    assert report, "robots scanning each other for four simulated minutes should have been judged"
    for did, row in rows.items():
        witness, judged = row["witness"], report.get(did)
        assert (witness is None) == (judged is None)
        if judged is not None:  # the map moved on since the API answered: counts only grow, confidence drifts
            assert 0.0 <= witness["confidence"] <= 1.0 and witness["seen"] <= judged["seen"]
            assert witness["seen_t"] is None or witness["seen_t"] <= judged["seen_t"]
    one = next(did for did in rows if rows[did]["witness"])
    assert api.get(f"/api/robots/{one}").json()["witness"].keys() == rows[one]["witness"].keys()
    series, types = parse_exposition(api.get("/metrics").text)
    assert types["depai_robot_witnessed_confidence"] == "gauge"
    assert types["depai_robot_location_verdicts_total"] == "counter"
    confidences = {dict(labels)["did"] for name, labels in series if name == "depai_robot_witnessed_confidence"}
    assert confidences == {did for did, row in rows.items() if row["witness"]}
    assert sample(series, "depai_robot_location_verdicts_total", did=one, verdict="seen") == rows[one]["witness"]["seen"]


def test_an_entry_is_proved_in_the_signed_checkpoint(fleet: RunningFleet, api: httpx.Client) -> None:
    checkpoint = api.get("/api/ledger/checkpoint").json()
    assert checkpoint["size"] == fleet.ledger.size() and "\n\n\u2014 depai.local/ledger " in checkpoint["note"]
    for seq in (1, checkpoint["size"] // 2, checkpoint["size"]):
        proof = api.get(f"/api/ledger/inclusion/{seq}").json()
        entry = api.get(f"/api/ledger/entries/{seq}").json()
        assert entry["leaf"] == proof["leaf"] and proof["root"] == checkpoint["root"]
        merkle.verify_inclusion(seq - 1, proof["size"], bytes.fromhex(proof["leaf"]),
                                [bytes.fromhex(node) for node in proof["proof"]], bytes.fromhex(proof["root"]))
    assert api.get(f"/api/ledger/inclusion/{checkpoint['size'] + 5}").status_code == 404


def test_live_events_stream_status_robots_and_the_map(api: httpx.Client) -> None:
    seen: dict[str, object] = {}
    with api.stream("GET", "/api/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name:
                seen[name] = json.loads(line.removeprefix("data: "))
            if {"status", "robots", "map"} <= seen.keys():
                break
    assert seen["status"]["robots"] == 3 and len(seen["robots"]) == 3


def test_a_signed_proposal_and_vote_buy_a_robot_that_joins_the_fleet(fleet: RunningFleet,
                                                                     api: httpx.Client) -> None:
    alice, bob = member(fleet, "member-1"), member(fleet, "member-2")
    dao = fleet.dao.did
    buy = {"kind": "buy_robot", "model": "courier-s", "price": 50, "currency": "EUR"}
    fleet.dao.distribute("before-buying")  # the treasury pays for the robot and its bond
    assert fleet.ledger.balance(f"treasury:{dao}") >= 50 + MIN_BOND
    proposed = api.post("/api/proposals", content=seal(alice, "dao.propose", {
        "dao": dao, "id": "buy-1", "actions": [buy], "description": "one more courier"}))
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["state"] == "pending"
    fleet.drive(FAST_GOVERNANCE.voting_delay_s + 1)
    nonce = next(m["next_nonce"] for m in api.get("/api/dao").json()["members"] if m["member"] == alice.did)
    vote = seal(alice, "dao.vote", {"dao": dao, "proposal": "buy-1", "support": "for", "nonce": nonce})
    counted = api.post("/api/votes", content=vote)
    assert counted.status_code == 200, counted.text
    assert counted.json()["tally"] == {"for": 500, "against": 0, "abstain": 0}

    replayed = api.post("/api/votes", content=vote)
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "replayed"
    again = seal(alice, "dao.vote", {"dao": dao, "proposal": "buy-1", "support": "against", "nonce": nonce + 1})
    assert api.post("/api/votes", content=again).json()["error"]["code"] == "already_voted"
    assert api.get("/api/proposals").json()[0]["tally"]["for"] == 500

    robots_before = len(fleet.fleet.agents)
    fleet.drive(FAST_GOVERNANCE.voting_period_s + FAST_GOVERNANCE.timelock_s + 3)
    assert api.get("/api/proposals").json()[0]["state"] == "executed"
    assert len(fleet.fleet.agents) == robots_before + 1
    bought = fleet.fleet.agents[-1].did
    assert api.get(f"/api/robots/{bought}").json()["document"]["controller"] == dao
    assert bob.did in {m["member"] for m in api.get("/api/dao").json()["members"]}


@pytest.fixture(scope="module")
def open_proposal(fleet: RunningFleet, api: httpx.Client) -> str:
    """A proposal open for votes (the tests below must not drive the fleet past its voting period)."""
    carol = member(fleet, "member-3")
    spend = {"kind": "spend", "to": carol.did, "amount": 1, "currency": "EUR"}
    answer = api.post("/api/proposals", content=seal(carol, "dao.propose", {
        "dao": fleet.dao.did, "id": "tip-1", "actions": [spend], "description": "a tip"}))
    assert answer.status_code == 200, answer.text
    fleet.drive(FAST_GOVERNANCE.voting_delay_s + 1)
    assert api.get("/api/proposals").json()[0]["state"] == "active"
    return "tip-1"


@pytest.mark.parametrize("case", ["unsigned", "malformed", "forged", "outsider", "empty"])
def test_unsigned_forged_or_foreign_writes_change_nothing(fleet: RunningFleet, api: httpx.Client, case: str,
                                                          open_proposal: str) -> None:
    alice = member(fleet, "member-1")
    nonce = next(m["next_nonce"] for m in api.get("/api/dao").json()["members"] if m["member"] == alice.did)
    body = {"dao": fleet.dao.did, "proposal": open_proposal, "support": "for", "nonce": nonce}
    if case == "unsigned":
        wire, status = json.dumps(body).encode(), 400
    elif case == "malformed":
        wire, status = b'{"kind": "dao.vote", ', 400
    elif case == "forged":
        good = seal(alice, "dao.vote", body).decode()
        at = good.index('"sig":"') + 8
        wire, status = (good[:at] + ("A" if good[at] != "A" else "B") + good[at + 1:]).encode(), 401
    elif case == "outsider":
        with DidRegistry(fleet.state / "registry.sqlite3") as registry:
            stranger = register(registry)
        wire, status = seal(stranger, "dao.vote", body), 403
    else:
        wire, status = b"", 400
    before = (api.get("/api/proposals").json(), fleet.ledger.size())
    answer = api.post("/api/votes", content=wire)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] and answer.json()["error"]["message"]
    assert (api.get("/api/proposals").json(), fleet.ledger.size()) == before


def test_the_robots_page_shows_a_robot_that_never_reported(fleet: RunningFleet, api: httpx.Client, page) -> None:
    """An enrolled robot that has not reported has no trust yet: the page says so instead of staying on Loading."""
    silent = "did:peaq:5SilentRobotThatNeverReported"
    dao = api.get("/api/dao").json()["did"]
    market = fleet.market.market
    market.fund(dao, MIN_BOND, "EUR", key=f"bond-for:{silent}", role="owner")
    market.register_robot(silent, dao, MIN_BOND, "EUR")
    page.goto(f"{fleet.dashboard.url.rstrip('/')}/robots")
    page.wait_for_selector(f"table#robots tr[data-robot='{silent}']", timeout=15_000)
    cells = page.locator(f"table#robots tr[data-robot='{silent}'] td")
    assert cells.nth(4).text_content() == "—" and cells.nth(6).text_content().strip() != ""
    assert cells.nth(5).text_content() == "—" and cells.nth(5).get_attribute("data-witness") == "none"  # unjudged
    judged = next(row for row in api.get("/api/robots").json() if row["witness"])
    witnessed = page.locator(f"table#robots tr[data-robot='{judged['did']}'] td").nth(5)
    assert witnessed.text_content() == f"{judged['witness']['confidence']:.2f}"
    assert witnessed.get_attribute("title").startswith(f"{judged['witness']['seen']} seen, ")
    assert [p for p in page.problems if "net::ERR_ABORTED" not in p] == []
