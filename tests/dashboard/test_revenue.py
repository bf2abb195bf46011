"""The revenue read model against real ledgers: every figure equals what the ledger's own balances say, the
totals add up to the unit, and folding in any number of steps gives what one fold of the whole ledger gives."""

from __future__ import annotations

import csv
import io
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dao.dao import Dao
from dashboard.revenue import CSV_HEADER, MEMBERS_CSV_HEADER, RevenueBook, members_csv
from dashboard.view import LedgerView
from identity.keys import Signer
from ledger.journal import Ledger
from marketplace.market import SETTLED, Marketplace
from tests.conftest import ManualClock
from tests.dao.test_dao import DAO_DID, PARAMS, RULES, World
from tests.marketplace.stand_ins import Sealer, envelope

CUSTOMER = "did:key:zCustomer"
DAO_ROBOTS = ["did:key:zRobotA", "did:key:zRobotB", "did:key:zRobotC"]
OUTSIDER, OUTSIDER_ROBOT = "did:key:zOutsider", "did:key:zRobotX"
BOND, FEE_BPS = 500, 500


class Fleet:
    """A marketplace on the DAO's ledger: three robots the DAO owns (their bonds paid from its owner account)
    and one of an outsider's, and a customer with money; ``settle`` runs a task from post to settlement."""

    def __init__(self, ledger: Ledger, clock) -> None:
        self.ledger, self.clock = ledger, clock
        self.market = Marketplace(ledger, Sealer(), fee_bps=FEE_BPS, clock=clock)  # type: ignore[arg-type]
        self.market.fund(CUSTOMER, 10_000_000, "EUR", key="customer")
        self.market.fund(DAO_DID, BOND * len(DAO_ROBOTS), "EUR", key="dao-bonds", role="owner")
        self.market.fund(OUTSIDER, BOND, "EUR", key="outsider-bond", role="owner")
        for robot in DAO_ROBOTS:
            self.market.register_robot(robot, DAO_DID, BOND, "EUR")
        self.market.register_robot(OUTSIDER_ROBOT, OUTSIDER, BOND, "EUR")
        self.tasks = 0

    def settle(self, robot: str, price: int, max_price: int = 1_000) -> str:
        """Post, bid, award and deliver one task; its id."""
        self.tasks += 1
        task = f"t{self.tasks}"
        now_ms = int(self.clock() * 1000)
        self.market.post(envelope("task", CUSTOMER, {
            "id": task, "customer": CUSTOMER, "pickup": {"x": 0.0, "y": 0.0}, "dropoff": {"x": 10.0, "y": 5.0},
            "deadline": now_ms + 3_600_000, "max_price": max_price, "currency": "EUR", "payload_kg": 1.0}))
        self.market.bid(envelope("bid", robot, {"task": task, "price": price, "currency": "EUR", "eta_ms": 60_000}))
        self.market.award_to(task, robot)
        self.market.observe("t", envelope("telemetry", robot, {"t": now_ms, "pose": {"x": 10.0, "y": 5.0}}))
        settled = self.market.deliver(envelope("receipt", robot, {"task": task, "t": now_ms,
                                                                   "pose": {"x": 10.0, "y": 5.0, "theta": 0.0}}))
        assert settled.state == SETTLED
        return task


@pytest.fixture
def world(registry, clock, database_url):
    """The DAO tests' world (alice 60 and bob 40 shares, carol none) on SQLite and on PostgreSQL."""
    made = World(registry, clock, database_url)
    yield made
    made.ledger.close()


def _owner_pay(price: int) -> int:
    return price - price * FEE_BPS // 10_000


def _check_against_ledger(book: RevenueBook, ledger: Ledger, shares: dict[str, int] | None = None) -> dict:
    """Every figure of the summary against the ledger's balances and entries; the summary."""
    summary = book.summary(shares, RULES.as_dict())
    balances = ledger.balances()
    assert summary["as_of"] == ledger.size() == book.as_of
    assert summary["currency"] == "EUR" and summary["split"] == RULES.as_dict()
    assert summary["fees"] == balances.get("fees:EUR", 0)
    assert summary["accounts"] == {"treasury": balances.get(f"treasury:{DAO_DID}", 0),
                                   "reserve": balances.get(f"reserve:{DAO_DID}", 0),
                                   "operator": balances.get(f"operator:{DAO_DID}", 0),
                                   "undistributed": balances.get(f"owner:{DAO_DID}", 0)}
    prefix = f"claimable:{DAO_DID}:"
    paid = {account[len(prefix):] for account in balances if account.startswith(prefix)}
    holders = {member for member, n in (shares or {}).items() if n > 0}
    assert [row["member"] for row in summary["by_member"]] == sorted(paid | holders)
    for row in summary["by_member"]:
        member = row["member"]
        assert row["claimable"] == balances.get(prefix + member, 0)
        assert row["claimed"] == balances.get(f"member:{member}", 0)  # claims are all a member's wallet holds here
        assert row["distributed"] == row["claimable"] + row["claimed"]
        assert row["shares"] == (shares or {}).get(member, 0)
    # revenue: the owner postings of settlements (and of reversals of them), read straight from the entries
    counting: set[int] = set()  # settlements, reversals of them, reversals of those, ...
    moved = []
    for entry in ledger.entries():
        if entry.kind == "escrow.release" or (entry.kind == "reversal" and entry.reverses in counting):
            counting.add(entry.seq)
            moved += [(entry.seq, n) for account, _, n in entry.postings if account == f"owner:{DAO_DID}"]
    assert summary["earned"] == sum(amount for _, amount in moved)
    assert sum(r["earned"] for r in summary["by_day"]) == sum(r["earned"] for r in summary["by_robot"]) \
        == summary["earned"]
    assert sum(r["tasks"] for r in summary["by_day"]) == sum(r["tasks"] for r in summary["by_robot"]) \
        == sum(1 if amount > 0 else -1 for _, amount in moved)
    assert [r["day"] for r in summary["by_day"]] == sorted({r["day"] for r in summary["by_day"]})
    assert sum(r["earned"] for r in summary["by_hour"]) == summary["earned"]
    assert sum(r["tasks"] for r in summary["by_hour"]) == sum(r["tasks"] for r in summary["by_day"])
    assert [r["at_ms"] for r in summary["by_hour"]] == sorted({r["at_ms"] for r in summary["by_hour"]})
    assert all(r["at_ms"] % 3_600_000 == 0 for r in summary["by_hour"])
    assert summary["settlements"] == len(moved) == book.settlements
    assert [(-r["earned"], r["robot"] or "") for r in summary["by_robot"]] == sorted(
        (-r["earned"], r["robot"] or "") for r in summary["by_robot"])
    rows = list(csv.reader(io.StringIO(book.csv())))
    assert rows[0] == ["seq", "settled_at", "day", "task", "robot", "robot_did", "price", "fee", "earned", "currency"]
    assert [(int(r[0]), int(r[8])) for r in rows[1:]] == moved
    assert {r[9] for r in rows[1:]} <= {"EUR"}
    assert all(int(r[6]) == int(r[7]) + int(r[8]) for r in rows[1:])  # the price is the fee plus what the DAO got
    assert all(r[1].startswith(r[2]) and r[1].endswith("Z") for r in rows[1:])
    by_day: dict[str, int] = {}
    for row in rows[1:]:
        by_day[row[2]] = by_day.get(row[2], 0) + int(row[8])
    assert by_day == {r["day"]: r["earned"] for r in summary["by_day"]}
    return summary


def _fresh(book: RevenueBook) -> RevenueBook:
    other = RevenueBook(book.ledger, DAO_DID)
    other.refresh()
    return other


def test_the_summary_is_what_the_ledger_says_through_settling_splitting_claiming_and_reversing(world) -> None:
    fleet = Fleet(world.ledger, world.clock)
    book = RevenueBook(world.ledger, DAO_DID, batch=7)  # small batches: folds cross batch boundaries
    assert book.refresh() == world.ledger.size() and book.refresh() == 0
    empty = book.summary()
    assert (empty["earned"], empty["by_day"], empty["by_robot"], empty["by_member"]) == (0, [], [], [])
    assert empty["accounts"] == {"treasury": 0, "reserve": 0, "operator": 0, "undistributed": 0}

    a, b, c = DAO_ROBOTS
    fleet.settle(a, 600)
    fleet.settle(b, 801)
    fleet.settle(OUTSIDER_ROBOT, 700)  # not the DAO's: fees, but no revenue
    world.clock.advance(86_400)
    fleet.settle(a, 999, max_price=999)  # no change for the customer: a three-posting release
    world.earn(1_234, "e1")  # a release without a task key or a memo naming a robot
    assert book.refresh() > 0
    summary = _check_against_ledger(book, world.ledger)
    assert summary["earned"] == _owner_pay(600) + _owner_pay(801) + _owner_pay(999) + 1_234
    assert summary["fees"] == sum(p * FEE_BPS // 10_000 for p in (600, 801, 700, 999))
    assert [(r["earned"], r["tasks"]) for r in summary["by_day"]] == [
        (_owner_pay(600) + _owner_pay(801), 2), (_owner_pay(999) + 1_234, 2)]
    assert {r["robot"]: (r["earned"], r["tasks"]) for r in summary["by_robot"]} == {
        a: (_owner_pay(600) + _owner_pay(999), 2), b: (_owner_pay(801), 1), None: (1_234, 1)}
    assert summary["accounts"]["undistributed"] == summary["earned"]  # the bonds' funding went into the bonds

    world.dao.distribute("d1")
    world.dao.claim(world.alice.did)
    world.clock.advance(86_400)
    reversed_task = fleet.settle(c, 500)
    reversal = world.ledger.reverse(world.ledger.size(), "undo-last-settlement", "delivered to the wrong door")
    fleet.settle(b, 420)
    world.dao.distribute("d2")
    world.dao.claim(world.bob.did)
    claim = world.ledger.entry(world.ledger.size())
    world.ledger.reverse(claim.seq, "undo-bob-claim")  # the money goes back to what bob may claim
    dave = "did:key:zDave"  # holds shares, never paid: listed with zeros
    shares = {**world.dao.members(), dave: 5, world.carol.did: 0}
    assert book.refresh() > 0
    summary = _check_against_ledger(book, world.ledger, shares)
    members = {r["member"]: r for r in summary["by_member"]}
    assert set(members) == {world.alice.did, world.bob.did, dave}
    assert members[dave] == {"member": dave, "shares": 5, "distributed": 0, "claimed": 0, "claimable": 0}
    assert members[world.bob.did]["claimed"] == 0 and members[world.bob.did]["claimable"] > 0
    assert members[world.alice.did]["claimed"] > 0
    assert {r["robot"]: r["tasks"] for r in summary["by_robot"]}[c] == 0  # settled, then taken back
    rows = list(csv.reader(io.StringIO(book.csv())))[1:]
    taken_back = [r for r in rows if int(r[8]) < 0]
    assert [(int(r[0]), r[3], r[5], int(r[6]), int(r[8])) for r in taken_back] == [
        (reversal.seq, reversed_task, c, -500, -_owner_pay(500))]
    assert sum(int(r[8]) for r in rows) == summary["earned"]

    fresh = _fresh(book)
    assert fresh.summary(shares, RULES.as_dict()) == summary and fresh.csv() == book.csv()
    assert world.ledger.verify() == []


def test_a_reversed_reversal_counts_again_and_refresh_reports_what_it_folded(world) -> None:
    fleet = Fleet(world.ledger, world.clock)
    book = RevenueBook(world.ledger, DAO_DID)
    fleet.settle(DAO_ROBOTS[0], 700)
    release = world.ledger.size()
    undo = world.ledger.reverse(release, "undo")
    redo = world.ledger.reverse(undo.seq, "redo")
    assert book.refresh() == world.ledger.size() == redo.seq
    summary = _check_against_ledger(book, world.ledger)
    assert summary["earned"] == _owner_pay(700) and summary["by_robot"][0]["tasks"] == 1
    assert [row[0] for row in book.rows()] == [release, undo.seq, redo.seq]


def test_refreshing_while_the_ledger_grows_ends_where_one_fold_does(world) -> None:
    fleet = Fleet(world.ledger, world.clock)
    book = RevenueBook(world.ledger, DAO_DID, batch=3)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(12):
                fleet.settle(DAO_ROBOTS[n % 3], 500 + n)
                if n % 4 == 3:
                    world.dao.distribute(f"d{n}")
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        book.refresh()
        book.summary()
    writer.join()
    assert errors == []
    book.refresh()
    summary = _check_against_ledger(book, world.ledger)
    assert summary == _fresh(book).summary(None, RULES.as_dict()) and summary["by_robot"][0]["tasks"] == 4


OPS = st.one_of(
    st.tuples(st.just("settle"), st.sampled_from(DAO_ROBOTS + [OUTSIDER_ROBOT]), st.integers(1, 1_000)),
    st.tuples(st.just("earn"), st.integers(1, 5_000)),
    st.tuples(st.just("distribute")),
    st.tuples(st.just("claim"), st.sampled_from(["did:key:zM1", "did:key:zM2", "did:key:zM3"])),
    st.tuples(st.just("reverse_last")),
    st.tuples(st.just("next_day"), st.integers(1, 3)),
    st.tuples(st.just("refresh")),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=14), batch=st.integers(1, 6))
def test_folding_in_random_chunks_equals_folding_once(ops, batch) -> None:
    with tempfile.TemporaryDirectory(prefix="depai-revenue-") as tmp:
        clock = ManualClock()
        ledger = Ledger.open(f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}", Signer(bytes(32)), clock=clock)
        try:
            dao = Dao(ledger, DAO_DID, clock=clock)
            dao.create({"did:key:zM1": 50, "did:key:zM2": 30, "did:key:zM3": 20}, PARAMS, RULES)
            fleet = Fleet(ledger, clock)
            book = RevenueBook(ledger, DAO_DID, batch=batch)
            for n, (op, *args) in enumerate(ops):
                if op == "settle":
                    fleet.settle(args[0], args[1])
                elif op == "earn":
                    ledger.post(f"earn{n}", {"world:EUR": -args[0], f"owner:{DAO_DID}": args[0]},
                                kind="escrow.release", refs={"task": f"earn{n}", "robot": DAO_ROBOTS[n % 3]})
                elif op == "distribute":
                    dao.distribute(f"d{n}")
                elif op == "claim":
                    dao.claim(args[0])
                elif op == "reverse_last":
                    last = ledger.entry(ledger.size())
                    if last.kind in ("escrow.release", "dao.claim", "reversal"):
                        ledger.reverse(last.seq, f"undo{n}")
                elif op == "next_day":
                    clock.advance(86_400 * args[0])
                else:
                    book.refresh()
            book.refresh()
            shares = dao.members()
            summary = _check_against_ledger(book, ledger, shares)
            fresh = _fresh(book)
            assert fresh.summary(shares, RULES.as_dict()) == summary and fresh.csv() == book.csv()
        finally:
            ledger.close()


def test_a_batch_below_one_is_refused(world) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RevenueBook(world.ledger, DAO_DID, batch=0)


def test_a_request_need_not_wait_behind_a_long_catch_up(world) -> None:
    fleet = Fleet(world.ledger, world.clock)
    fleet.settle(DAO_ROBOTS[0], 600)
    go, reading = threading.Event(), threading.Event()

    class Slow:
        """The ledger, but reading entries waits until the test says go."""

        def size(self) -> int:
            return world.ledger.size()

        def entries(self, start: int, stop: int):
            reading.set()
            go.wait(10)
            return world.ledger.entries(start, stop)

    book = RevenueBook(Slow(), DAO_DID, batch=4)  # type: ignore[arg-type]
    catching_up = threading.Thread(target=book.refresh)
    catching_up.start()
    assert reading.wait(10)
    assert book.refresh(wait=False) == 0 and book.summary()["as_of"] == 0  # answers at once, as of nothing yet
    go.set()
    catching_up.join()
    assert book.as_of == world.ledger.size() and book.summary()["earned"] == _owner_pay(600)


def test_a_task_id_a_spreadsheet_would_run_is_written_as_text(world) -> None:
    key = "task:=HYPERLINK(\"http://evil\"),x:settle"
    world.ledger.post(key, {"world:EUR": -100, f"owner:{DAO_DID}": 100}, kind="escrow.release",
                      refs={"task": "=HYPERLINK(\"http://evil\"),x", "robot": "@robot"})
    book = RevenueBook(world.ledger, DAO_DID)
    book.refresh()
    assert book.rows()[0][2:4] == ("=HYPERLINK(\"http://evil\"),x", "@robot")  # the figures keep the id as it is
    [_, row] = list(csv.reader(io.StringIO(book.csv())))
    assert row[3:] == ["'=HYPERLINK(\"http://evil\"),x", "'@robot", "'@robot", "100", "0", "100", "EUR"]
    [_, named] = list(csv.reader(io.StringIO(book.csv({"@robot": "+robot-0"}))))  # names are guarded too
    assert named[4:6] == ["'+robot-0", "'@robot"]
    members = members_csv([{"member": "-m", "name": "=SUM(A1)", "shares": 1, "distributed": 2, "claimed": 0,
                            "claimable": 2}], "EUR")
    assert list(csv.reader(io.StringIO(members)))[1] == ["'=SUM(A1)", "'-m", "1", "2", "0", "2", "EUR"]


HOUR_MS = 3_600_000
START_HOUR_MS = 1_789_999_200_000  # 2026-09-21T14:00Z: the hour the tests' clock starts in (14:13:20)


def test_revenue_is_bucketed_by_fleet_hour_and_day_and_listed_per_task(world) -> None:
    """Hand-checked: two settlements in the first hour, one an hour later, one the next day; each task's price,
    fee and what the DAO got."""
    fleet = Fleet(world.ledger, world.clock)
    a, b, _ = DAO_ROBOTS
    assert world.clock() == 1_790_000_001.0  # 2026-09-21 14:13:21 UTC
    t1 = fleet.settle(a, 600)  # fee 30, the DAO gets 570
    world.clock.advance(30 * 60)  # 14:43:21
    t2 = fleet.settle(b, 801)  # fee 40, the DAO gets 761
    world.clock.advance(60 * 60)  # 15:43:21
    t3 = fleet.settle(a, 999, max_price=999)  # fee 49, the DAO gets 950
    world.clock.advance(10 * 60 * 60)  # 2026-09-22 01:43:21
    t4 = fleet.settle(b, 100)  # fee 5, the DAO gets 95
    book = RevenueBook(world.ledger, DAO_DID)
    book.refresh()
    summary = book.summary()
    assert summary["by_hour"] == [
        {"hour": "2026-09-21T14:00Z", "at_ms": START_HOUR_MS, "earned": 570 + 761, "tasks": 2},
        {"hour": "2026-09-21T15:00Z", "at_ms": START_HOUR_MS + HOUR_MS, "earned": 950, "tasks": 1},
        {"hour": "2026-09-22T01:00Z", "at_ms": START_HOUR_MS + 11 * HOUR_MS, "earned": 95, "tasks": 1}]
    assert summary["by_day"] == [
        {"day": "2026-09-21", "at_ms": 1_789_948_800_000, "earned": 570 + 761 + 950, "tasks": 3},
        {"day": "2026-09-22", "at_ms": 1_790_035_200_000, "earned": 95, "tasks": 1}]
    assert summary["fees"] == 30 + 40 + 49 + 5 and summary["settlements"] == 4
    tasks = book.tasks(10)
    assert [(t["task"], t["robot"], t["price"], t["fee"], t["earned"]) for t in tasks] == [
        (t4, b, 100, 5, 95), (t3, a, 999, 49, 950), (t2, b, 801, 40, 761), (t1, a, 600, 30, 570)]  # newest first
    assert [t["settled_at_ms"] for t in tasks] == [1_790_041_401_000, 1_790_005_401_000, 1_790_001_801_000,
                                                   1_790_000_001_000]
    assert [t["task"] for t in book.tasks(2)] == [t4, t3]
    rows = list(csv.reader(io.StringIO(book.csv({a: "robot-0"}))))
    assert rows[1][1:] == ["2026-09-21T14:13:21.000Z", "2026-09-21", t1, "robot-0", a, "600",
                       "30", "570", "EUR"]
    assert rows[2][4:6] == [b, b]  # a robot without a name: its DID


def test_the_view_lists_every_dao_robot_and_member_by_name_in_one_order(world) -> None:
    fleet = Fleet(world.ledger, world.clock)
    a, b, c = DAO_ROBOTS
    fleet.settle(b, 600)
    fleet.settle(a, 600)
    fleet.settle(a, 300)
    fleet.settle(OUTSIDER_ROBOT, 900)  # not the DAO's robot: not listed
    world.dao.distribute("d1")
    names = {a: "robot-10", b: "robot-2", c: "robot-1", world.alice.did: "member-2", world.bob.did: "member-10"}
    view = LedgerView(world.ledger, world.dao, fleet.market, names=lambda: names)
    revenue = view.revenue()
    assert [(r["name"], r["robot"], r["earned"], r["tasks"]) for r in revenue["by_robot"]] == [
        ("robot-10", a, _owner_pay(600) + _owner_pay(300), 2), ("robot-2", b, _owner_pay(600), 1),
        ("robot-1", c, 0, 0)]  # c earned nothing and is listed all the same
    assert [(r["name"], r["shares"]) for r in revenue["by_member"]] == [("member-2", 60), ("member-10", 40)]
    assert revenue["by_member"][0]["distributed"] > revenue["by_member"][1]["distributed"] > 0
    tasks = view.revenue_tasks(limit=2)
    assert tasks["total"] == 3 and [(t["name"], t["price"]) for t in tasks["tasks"]] == [("robot-10", 300),
                                                                                        ("robot-10", 600)]
    rows = list(csv.reader(io.StringIO(view.revenue_csv())))
    assert rows[0] == list(CSV_HEADER) and [r[4] for r in rows[1:]] == ["robot-2", "robot-10", "robot-10"]
    members = list(csv.reader(io.StringIO(view.revenue_members_csv())))
    assert members[0] == list(MEMBERS_CSV_HEADER)
    assert [r[:3] for r in members[1:]] == [["member-2", world.alice.did, "60"], ["member-10", world.bob.did, "40"]]
