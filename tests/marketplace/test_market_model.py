"""Hypothesis drives the marketplace through random posts, bids, awards, deliveries, fakes, expiries and crashes.

A plain model beside it says what every balance must be after each step; after
every step the ledger must agree with the model to the unit, every balance must
equal the sum of its postings, and the money in the system must stay what was
deposited (the world account holds minus all of it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from identity.keys import Signer
from ledger.journal import Ledger
from marketplace.market import FAIL_SLASH_BPS, MarketError, Marketplace
from tests.marketplace.stand_ins import Sealer, envelope

CUSTOMERS = ["did:key:zC1", "did:key:zC2"]
OWNER = "did:key:zOwner"
ROBOTS = ["did:key:zR1", "did:key:zR2", "did:key:zR3"]
FEE_BPS = 700
DROPOFF = (10.0, 5.0)


class MarketMachine(RuleBasedStateMachine):
    """The marketplace against a model of what every account must hold."""

    @initialize()
    def start(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="depai-market-")
        self.url = f"sqlite:///{Path(self.dir.name) / 'ledger.sqlite3'}"
        self.now = 1_790_000_000.0
        self.open_books()
        self.expected: dict[str, int] = {}
        self.deposited = 0
        self.tasks: dict[str, dict] = {}
        for customer in CUSTOMERS:
            self.market.fund(customer, 5_000, "EUR", key=customer)
            self.move({"world:EUR": -5_000, f"customer:{customer}": 5_000})
            self.deposited += 5_000
        self.market.fund(OWNER, 3_000, "EUR", key="owner", role="owner")
        self.move({"world:EUR": -3_000, f"owner:{OWNER}": 3_000})
        self.deposited += 3_000
        for robot in ROBOTS:
            self.market.register_robot(robot, OWNER, 900, "EUR")
            self.move({f"owner:{OWNER}": -900, f"bond:{robot}": 900})

    def open_books(self) -> None:
        self.ledger = Ledger.open(self.url, Signer(bytes(32)), clock=lambda: self.now)
        self.market = Marketplace(self.ledger, Sealer(), fee_bps=FEE_BPS, clock=lambda: self.now)  # type: ignore

    def teardown(self) -> None:
        self.ledger.close()
        self.dir.cleanup()

    def move(self, lines: dict[str, int]) -> None:
        for account, amount in lines.items():
            self.expected[account] = self.expected.get(account, 0) + amount

    def in_state(self, state: str) -> list[str]:
        return sorted(t for t, task in self.tasks.items() if task["state"] == state)

    @rule(customer=st.sampled_from(CUSTOMERS), price=st.integers(1, 2_500), life=st.integers(5, 120))
    def post(self, customer: str, price: int, life: int) -> None:
        task_id = f"t{len(self.tasks)}"
        body = {"id": task_id, "customer": customer, "pickup": {"x": 0.0, "y": 0.0},
                "dropoff": {"x": DROPOFF[0], "y": DROPOFF[1]}, "deadline": int((self.now + life) * 1000),
                "max_price": price, "currency": "EUR", "payload_kg": 1.0}
        affordable = self.expected.get(f"customer:{customer}", 0) >= price
        try:
            self.market.post(envelope("task", customer, body))
        except MarketError as err:
            assert not affordable and err.code == "insufficient_funds"
            return
        assert affordable
        self.tasks[task_id] = {"state": "open", "customer": customer, "max": price, "deadline": self.now + life,
                               "bids": {}}
        self.move({f"customer:{customer}": -price, f"escrow:{task_id}": price})

    @precondition(lambda self: self.in_state("open"))
    @rule(data=st.data(), robot=st.sampled_from(ROBOTS), price=st.integers(1, 3_000))
    def bid(self, data: st.DataObject, robot: str, price: int) -> None:
        task_id = data.draw(st.sampled_from(self.in_state("open")))
        task = self.tasks[task_id]
        valid = price <= task["max"] and self.expected[f"bond:{robot}"] >= 1
        try:
            self.market.bid(envelope("bid", robot, {"task": task_id, "price": price, "currency": "EUR",
                                                     "eta_ms": 1_000}))
        except MarketError:
            assert not valid
            return
        assert valid
        task["bids"][robot] = price

    @precondition(lambda self: any(self.tasks[t]["bids"] for t in self.in_state("open")))
    @rule(data=st.data())
    def award(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from([t for t in self.in_state("open") if self.tasks[t]["bids"]]))
        task = self.tasks[task_id]
        robot = data.draw(st.sampled_from(sorted(task["bids"])))
        self.market.award_to(task_id, robot)
        task.update(state="awarded", robot=robot, price=task["bids"][robot])

    @precondition(lambda self: self.in_state("awarded"))
    @rule(data=st.data(), honest=st.booleans())
    def deliver(self, data: st.DataObject, honest: bool) -> None:
        task_id = data.draw(st.sampled_from(self.in_state("awarded")))
        task = self.tasks[task_id]
        robot, t_ms = task["robot"], int(self.now * 1000)
        where = DROPOFF if honest else (500.0, 500.0)
        self.market.observe("t", envelope("telemetry", robot, {"t": t_ms, "pose": {"x": where[0], "y": where[1]}}))
        self.market.deliver(envelope("receipt", robot, {"task": task_id, "t": t_ms,
                                                         "pose": {"x": DROPOFF[0], "y": DROPOFF[1], "theta": 0}}))
        if honest:
            fee = task["price"] * FEE_BPS // 10_000
            self.move({f"escrow:{task_id}": -task["max"], f"owner:{OWNER}": task["price"] - fee, "fees:EUR": fee,
                       f"customer:{task['customer']}": task["max"] - task["price"]})
            task["state"] = "settled"
        else:
            self.refund(task_id, slash_bps=10_000)

    @precondition(lambda self: self.in_state("awarded"))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.in_state("awarded")))
        self.market.fail(task_id, self.tasks[task_id]["robot"], "stuck")
        self.refund(task_id, slash_bps=FAIL_SLASH_BPS)

    @rule(seconds=st.integers(1, 90))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds
        expired = sorted(t.id for t in self.market.expire())
        due = sorted(t for t, task in self.tasks.items()
                     if task["state"] in ("open", "awarded") and task["deadline"] <= self.now)
        assert expired == due
        for task_id in due:
            self.refund(task_id, slash_bps=FAIL_SLASH_BPS if self.tasks[task_id]["state"] == "awarded" else 0)

    @rule()
    def crash(self) -> None:
        """The process dies and starts again: nothing in memory survives."""
        self.ledger.close()
        self.open_books()

    def refund(self, task_id: str, slash_bps: int) -> None:
        task = self.tasks[task_id]
        self.move({f"escrow:{task_id}": -task["max"], f"customer:{task['customer']}": task["max"]})
        if task["state"] == "awarded" and slash_bps:
            bond = self.expected[f"bond:{task['robot']}"]
            slash = bond * slash_bps // 10_000
            if slash:
                self.move({f"bond:{task['robot']}": -slash, f"customer:{task['customer']}": slash})
        task["state"] = "refunded"

    @invariant()
    def books_match_the_model(self) -> None:
        balances = self.ledger.balances()
        assert {a: n for a, n in balances.items() if n} == {a: n for a, n in self.expected.items() if n}
        assert sum(balances.values()) == 0 and balances["world:EUR"] == -self.deposited
        summed: dict[str, int] = {}
        for entry in self.ledger.entries():
            for account, _, amount in entry.postings:
                summed[account] = summed.get(account, 0) + amount
        assert {a: n for a, n in summed.items() if n} == {a: n for a, n in balances.items() if n}


MarketMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_the_marketplace_keeps_every_unit_of_money = MarketMachine.TestCase
