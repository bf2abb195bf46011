"""A hypothesis state machine over the marketplace (issue #21), on SQLite and PostgreSQL.

Customers post tasks; robots bid anything (negative, zero, fractional, beyond the task's price: bodies that
skipped the bus schema); tasks are awarded, delivered, failed and expire; robots are registered with any bond,
topped up, retired and released. After every step every cent is accounted for: the entries balance, no
account but the world's is negative, each task's escrow holds its price exactly while it is open or awarded and
nothing after, every standing bid and every award lies within its task's price.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger.journal import MAX_AMOUNT
from marketplace.market import AWARDED, MIN_BOND, OPEN, MarketError
from tests.machines import run_machine
from tests.marketplace.test_market import World

PRICES = st.sampled_from([-400, 0, 1, 1.5, 600, 999, 1_000, 2_000, MAX_AMOUNT])
BONDS = st.sampled_from([0, MIN_BOND - 1, MIN_BOND, 500, 2**63])


def machine(registry, clock, make_url):
    """The state machine class for one backend: each example gets a fresh database from ``make_url``."""
    numbers = itertools.count()

    class MarketMachine(RuleBasedStateMachine):
        @initialize()
        def open_market(self) -> None:
            self.w = World(registry, clock, make_url(f"m{next(numbers)}"))
            self.robots = [*self.w.robots, self.w.stranger]
            self.tasks: list[str] = []

        def teardown(self) -> None:
            if hasattr(self, "w"):
                self.w.ledger.close()

        def _try(self, call, *args, **kwargs) -> None:
            try:
                call(*args, **kwargs)
            except MarketError:
                pass  # refused: the invariants check that nothing moved that should not have

        @rule(max_price=st.sampled_from([1, 100, 1_000]), life_s=st.sampled_from([30, 600]))
        def post(self, max_price: int, life_s: float) -> None:
            task_id = f"t{next(numbers)}"
            self._try(self.w.post, task_id, max_price=max_price, deadline_s=life_s)
            self.tasks.append(task_id)

        @rule(data=st.data(), price=PRICES, robot=st.integers(0, 2))
        def bid(self, data: st.DataObject, price: object, robot: int) -> None:
            if not self.tasks:
                return
            task = data.draw(st.sampled_from(self.tasks))
            party = self.robots[robot]
            envelope = self.w.signed(party, "bid", {"task": task, "price": 1, "currency": "EUR", "eta_ms": 1_000})
            self._try(self.w.market.bid, envelope._replace(body={**envelope.body, "price": price}))

        @rule(data=st.data(), robot=st.integers(0, 2))
        def award(self, data: st.DataObject, robot: int) -> None:
            if self.tasks:
                self._try(self.w.market.award_to, data.draw(st.sampled_from(self.tasks)), self.robots[robot].did)

        @rule(data=st.data(), how=st.sampled_from(["deliver", "fail", "release"]))
        def finish(self, data: st.DataObject, how: str) -> None:
            awarded = [t for t in self.w.market.tasks(AWARDED)]
            if not awarded:
                return
            task = data.draw(st.sampled_from(awarded))
            party = next(p for p in self.robots if p.did == task.robot)
            if how == "deliver":
                self.w.at_dropoff(party)
                self._try(self.w.receipt, party, task.id)
            elif how == "fail":
                self._try(self.w.market.fail, task.id, party.did, "stuck")
            else:
                self._try(self.w.market.release, task.id, party.did)

        @rule(seconds=st.sampled_from([1, 61, 700]))
        def time_passes(self, seconds: float) -> None:
            clock.advance(seconds)
            self.w.market.expire()

        @rule(robot=st.integers(0, 2), bond=BONDS)
        def register(self, robot: int, bond: int) -> None:
            self._try(self.w.market.register_robot, self.robots[robot].did, self.w.owner.did, bond, "EUR")

        @rule(robot=st.integers(0, 2), amount=st.sampled_from([-5, 1, 300]), key=st.sampled_from(["a", "b"]))
        def top_up(self, robot: int, amount: int, key: str) -> None:
            self._try(self.w.market.post_bond, self.robots[robot].did, amount, key=key)

        @rule(robot=st.integers(0, 2))
        def retire(self, robot: int) -> None:
            self._try(self.w.market.retire_robot, self.robots[robot].did)

        @rule(robot=st.integers(0, 2))
        def release_bond(self, robot: int) -> None:
            self._try(self.w.market.release_bond, self.robots[robot].did)

        @invariant()
        def every_cent_is_accounted_for(self) -> None:
            if not hasattr(self, "w"):
                return
            balances = self.w.ledger.balances()
            assert sum(balances.values()) == 0
            assert all(amount >= 0 for account, amount in balances.items() if not account.startswith("world:")), \
                balances
            for task in self.w.market.tasks():
                held = balances.get(f"escrow:{task.id}", 0)
                assert held == (task.max_price if task.state in (OPEN, AWARDED) else 0), (task, held)
                for offer in self.w.market.offers(task.id):
                    assert type(offer.price) is int and 1 <= offer.price <= task.max_price, offer
                if task.state == AWARDED or task.price is not None:
                    assert task.price is not None and 1 <= task.price <= task.max_price, task

    return MarketMachine


def test_no_sequence_of_market_calls_loses_or_invents_a_cent(registry, clock, database_url,
                                                              database_url_factory) -> None:
    run_machine(machine(registry, clock, database_url_factory), database_url, sqlite=30, postgresql=8)
