"""A DAO owns a running fleet: its robots earn, the revenue is split, and a passed 'buy a robot' proposal adds a
robot to the fleet, which then earns for the DAO too."""

from __future__ import annotations

import pytest

from dao.dao import VOTE_KIND, Dao
from dao.lifecycle import Params, State
from dao.split import SplitRules
from identity.envelope import EnvelopeVerifier
from launch.dao_hooks import FleetHooks
from launch.fleet import register
from tests.launch.economy import start_economy

SEED = 5
PARAMS = Params(voting_delay_s=5.0, voting_period_s=20.0, quorum_bps=5_000, timelock_s=5.0, grace_period_s=600.0)
RULES = SplitRules.of({"operator": 1_000, "reserve": 1_000, "treasury": 3_000, "members": 5_000})


@pytest.fixture(scope="module")
def owned(tmp_path_factory):
    economy = start_economy(tmp_path_factory.mktemp("dao-fleet"), robots=3, seed=SEED, orders_per_min=6.0,
                            owner_funds=300, bond=100)
    registry, fleet, ledger, market, dao_id = (economy.registry, economy.fleet, economy.ledger, economy.market,
                                                economy.owner)
    alice, bob = register(registry), register(registry)
    hooks = FleetHooks(fleet, market, registry, dao_id.did, bond=100, currency="EUR")
    dao = Dao(ledger, dao_id.did, hooks=hooks, clock=fleet.clock)
    dao.create({alice.did: 70, bob.did: 30}, PARAMS, RULES)
    drive = economy.drive

    drive(300.0)
    earned = dao.distribute("first")
    treasury = ledger.balance(f"treasury:{dao_id.did}")
    dao.propose(alice.did, "buy-1", [{"kind": "buy_robot", "model": "courier-s", "price": 200, "currency": "EUR"}],
                "a fourth robot")
    drive(6.0)
    verifier = EnvelopeVerifier(registry, clock=fleet.clock)
    ballot = alice.envelope_signer(fleet.clock).seal(VOTE_KIND, {"dao": dao_id.did, "proposal": "buy-1",
                                                                 "support": "for", "nonce": 1})
    dao.vote(verifier.verify(ballot))
    drive(21.0)
    dao.queue("buy-1")
    drive(6.0)
    executed = dao.execute("buy-1")
    bought = hooks.bought["buy-1"]
    drive(420.0)
    yield {"dao": dao, "ledger": ledger, "market": market, "fleet": fleet, "earned": earned, "treasury": treasury,
           "executed": executed, "bought": bought, "dao_did": dao_id.did, "members": (alice.did, bob.did),
           "hooks": hooks, "registry": registry}
    economy.close()


def test_the_fleet_earned_for_the_dao_and_the_split_added_up(owned) -> None:
    earned, dao_did = owned["earned"], owned["dao_did"]
    assert earned and sum(earned.values()) > 0
    alice, bob = owned["members"]
    assert earned[f"claimable:{dao_did}:{alice}"] * 30 // 70 - earned[f"claimable:{dao_did}:{bob}"] in (-1, 0, 1)
    assert owned["treasury"] >= 300  # enough for the robot and its bond


def test_a_passed_buy_a_robot_proposal_adds_a_robot_that_then_earns(owned) -> None:
    assert owned["executed"].state == State.EXECUTED
    fleet, market, bought = owned["fleet"], owned["market"], owned["bought"]
    assert len(fleet.agents) == 4 and fleet.agents[-1].did == bought
    assert fleet.agents[-1].session.document["controller"] == owned["dao_did"]
    assert any(task.robot == bought for task in market.tasks("settled")), "the new robot should have earned"
    assert owned["ledger"].verify() == [] and sum(owned["ledger"].balances().values()) == 0


def test_retiring_admitting_and_the_fee_act_on_the_market(owned) -> None:
    hooks, market, registry = owned["hooks"], owned["market"], owned["registry"]
    hooks.retire_robot(owned["bought"])
    assert owned["bought"] not in {offer.robot for task in market.tasks("open") for offer in market.offers(task.id)}
    outsider = register(registry)
    with pytest.raises(ValueError, match="does not hold the key"):
        hooks.admit_robot("admit-1", outsider.did, "00" * 32)
    hooks.admit_robot("admit-1", outsider.did, outsider.signer.public_key.hex())
    assert outsider.did in market.robots()
    hooks.set_fee(250)
    assert market.fee_bps == 250
