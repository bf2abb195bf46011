"""A queued proposal whose execution is refused says why, stays queued with that reason, and the keeper goes on.

Issue #19: a 'buy a robot' proposal stayed queued forever because its price plus the robot's marketplace bond
exceeded the treasury, and nothing said so. Now the DAO records the typed reason (``insufficient_treasury``,
with the price, the bond and the balance in its message) on the proposal; every reader of the DAO, the
dashboard's too (which has no fleet hooks), sees the same cost and reason; and the proposal executes once the
treasury can pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dao.dao import Dao, DaoError
from dao.lifecycle import State
from launch.dao_service import DaoService
from tests.dao.test_dao import DAO_DID, World


@dataclass
class Hooks:
    """Fleet hooks that only remember what they were asked to do."""

    bond: int = 5_000
    bought: list[str] = field(default_factory=list)

    def buy_robot(self, proposal: str, model: str) -> str:
        self.bought.append(model)
        return f"did:key:zRobot{len(self.bought)}"

    def retire_robot(self, robot: str) -> None: ...

    def admit_robot(self, proposal: str, robot: str, owner_key: str) -> None: ...

    def set_fee(self, fee_bps: int) -> None: ...


@pytest.fixture
def world(registry, clock, database_url):
    made = World(registry, clock, database_url)
    made.hooks = Hooks()
    made.dao = Dao(made.ledger, DAO_DID, clock=clock, hooks=made.hooks)
    yield made
    made.ledger.close()


def passed(world: World, proposal: str, actions: list[dict]) -> None:
    """``proposal`` proposed by alice, voted for and queued; its timelock over."""
    world.dao.propose(world.alice.did, proposal, actions, proposal)
    world.clock.advance(61)
    world.vote(world.alice, proposal, "for")
    world.clock.advance(600)
    world.dao.queue(proposal)
    world.clock.advance(121)


def test_a_robot_the_treasury_cannot_pay_with_its_bond_says_why_and_executes_once_it_can(world) -> None:
    world.earn(100_000, "e1")
    world.dao.distribute("d1")  # the treasury holds 10,000
    buy = {"kind": "buy_robot", "model": "courier", "price": 8_000, "currency": "EUR"}
    passed(world, "buy", [buy])
    cost = world.dao.cost(world.dao.proposal("buy").actions)
    assert cost.to_json() == {"currency": "EUR", "total": 13_000, "treasury": 10_000, "covered": False,
                              "shortfall": 3_000, "lines": [{"index": 0, "kind": "buy_robot", "price": 8_000,
                                                             "bond": 5_000, "total": 13_000}]}
    for attempt in (1, 2):
        with pytest.raises(DaoError) as refused:
            world.dao.execute("buy")
        assert refused.value.code == "insufficient_treasury"
        proposal = world.dao.proposal("buy")
        assert proposal.state == State.QUEUED and proposal.execution_error is not None
        assert proposal.execution_error.code == "insufficient_treasury"
        assert proposal.execution_error.attempts == attempt
        assert "130.00 EUR" in proposal.execution_error.message and "bond 50.00 EUR" in proposal.execution_error.message
        assert "holds 100.00 EUR" in proposal.execution_error.message
    assert world.hooks.bought == [] and world.ledger.balance(f"treasury:{DAO_DID}") == 10_000
    # a reader without hooks (the dashboard) sees the same bond and reason
    reader = Dao(world.ledger, DAO_DID, clock=world.clock)
    assert reader.robot_bond() == 5_000 and reader.cost(reader.proposal("buy").actions).total == 13_000
    assert reader.proposal("buy").execution_error.code == "insufficient_treasury"
    world.earn(30_000, "e2")
    world.dao.distribute("d2")  # the treasury now holds 13,000: exactly enough
    executed = world.dao.execute("buy")
    assert executed.state == State.EXECUTED and executed.execution_error is None
    assert world.hooks.bought == ["courier"] and world.ledger.balance(f"treasury:{DAO_DID}") == 0


def test_the_keeper_records_every_refusal_and_goes_on_with_the_next_proposal(world, clock) -> None:
    world.earn(10_000, "e1")
    world.dao.distribute("d1")  # the treasury holds 1,000
    # bob holds 40: burning them is feasible when proposed, but the removal passed before it executes first
    passed(world, "remove", [{"kind": "remove_member", "member": world.bob.did}])
    passed(world, "burn", [{"kind": "burn", "member": world.bob.did, "shares": 40}])
    passed(world, "split", [{"kind": "change_split", "shares": {"members": 10_000}}])
    passed(world, "spend", [{"kind": "spend", "to": world.carol.did, "amount": 2_000, "currency": "EUR"}])
    # a proposal not queued in time: the keeper queues it, then executes it a timelock later
    keeper = DaoService(world.dao, world.ledger, clock=clock, split_every_s=10**9, checkpoint_every_s=10**9)
    keeper.step()
    states = {p.id: p for p in world.dao.proposals()}
    assert states["split"].state == State.EXECUTED and world.dao.params()[1].as_dict() == {"members": 10_000}
    assert states["burn"].state == State.QUEUED and states["burn"].execution_error.code == "invalid_action"
    assert states["spend"].state == State.QUEUED and states["spend"].execution_error.code == "insufficient_treasury"
    assert keeper.refused == {"invalid_action": 1, "insufficient_treasury": 1}
    clock.advance(1)
    keeper.step()
    assert world.dao.proposal("spend").execution_error.attempts == 2
    assert states["remove"].state == State.EXECUTED and world.bob.did not in world.dao.members()
    assert world.dao.members() == {world.alice.did: 60}  # the refused burn changed nothing


def test_a_fleet_effect_that_fails_after_the_commit_is_recorded_and_the_keeper_goes_on(world, clock) -> None:
    def broken(proposal: str, model: str) -> str:
        raise RuntimeError("no free spawn point")

    world.hooks.bond = 0
    world.hooks.buy_robot = broken
    world.earn(100_000, "e1")
    world.dao.distribute("d1")
    passed(world, "buy", [{"kind": "buy_robot", "model": "courier", "price": 1_000, "currency": "EUR"}])
    keeper = DaoService(world.dao, world.ledger, clock=clock, split_every_s=10**9, checkpoint_every_s=10**9)
    keeper.step()  # no exception escapes the keeper
    proposal = world.dao.proposal("buy")
    assert proposal.state == State.EXECUTED and keeper.refused == {"fleet_effect_failed": 1}
    assert proposal.execution_error.code == "fleet_effect_failed"
    assert "RuntimeError: no free spawn point" in proposal.execution_error.message
