"""Issue #21, each path that froze the DAO or moved money: refused before anything is written, or failing cleanly.

Found by an attacker inside the DAO (a member who can pass proposals): mints that overflowed every later
``propose()``, parameters no one could propose under again, a split naming a reserved account, a keeper that
died on a bad proposal, and a member added just before a split receiving revenue earned before it joined.
"""

from __future__ import annotations

import pytest

from dao.dao import DaoError
from dao.lifecycle import MAX_SHARES, State
from launch.dao_service import DaoService
from tests.dao.test_dao import DAO_DID, World
from tests.dao.test_dao import world as world  # noqa: F401 - the fixture: a DAO of alice (60) and bob (40)
from tests.dao.test_execution_failure import passed


def refused_at_propose(world: World, code: str, actions: list[dict]) -> DaoError:
    """Proposing ``actions`` is refused with ``code`` and writes nothing."""
    before = len(world.dao.proposals())
    with pytest.raises(DaoError) as refused:
        world.dao.propose(world.alice.did, "bad", actions, "bad")
    assert refused.value.code == code, refused.value
    assert len(world.dao.proposals()) == before
    return refused.value


def governance_is_live(world: World, name: str) -> None:
    """A member can still propose, and every proposal can still be read."""
    world.dao.propose(world.alice.did, name, [{"kind": "set_parameter", "name": "quorum_bps", "value": 4_000}], name)
    assert world.dao.proposal(name).state == State.PENDING and world.dao.proposals()


def test_shares_past_what_the_database_and_json_hold_are_refused_and_governance_stays_live(world) -> None:
    # Two mints of 2**62 used to execute, after which every propose() wrote its row and then overflowed.
    refused_at_propose(world, "bad_action", [{"kind": "mint", "member": world.bob.did, "shares": 2**62}])
    # The cap is on the total supply: each mint below it alone, together past it.
    refused_at_propose(world, "bad_action", [{"kind": "mint", "member": world.bob.did, "shares": MAX_SHARES - 100},
                                             {"kind": "mint", "member": world.carol.did, "shares": 1}])
    passed(world, "a", [{"kind": "mint", "member": world.bob.did, "shares": MAX_SHARES // 2}])
    passed(world, "b", [{"kind": "mint", "member": world.carol.did, "shares": MAX_SHARES // 2}])
    keeper = DaoService(world.dao, world.ledger, clock=world.clock, split_every_s=10**9, checkpoint_every_s=10**9)
    keeper.step()  # both were feasible when proposed; together they pass the cap, so the second fails cleanly
    assert world.dao.proposal("a").state == State.EXECUTED
    assert world.dao.proposal("b").state == State.QUEUED
    assert world.dao.proposal("b").execution_error.code == "invalid_action"
    assert "total supply" in world.dao.proposal("b").execution_error.message
    assert world.dao.shares.total_at() == 100 + MAX_SHARES // 2
    governance_is_live(world, "after")


@pytest.mark.parametrize(("name", "value"), [("voting_delay_s", 1e20), ("voting_period_s", 0.5),
                                             ("grace_period_s", 0), ("proposal_threshold", 10**30)])
def test_parameters_no_one_could_propose_or_vote_under_are_refused(world, name: str, value: float) -> None:
    refused_at_propose(world, "bad_action", [{"kind": "set_parameter", "name": name, "value": value}])


def test_a_threshold_above_what_any_member_holds_is_refused_at_propose_and_at_execute(world) -> None:
    error = refused_at_propose(world, "would_freeze",
                               [{"kind": "set_parameter", "name": "proposal_threshold", "value": 61}])
    assert "60" in str(error)  # the most any member would hold
    refused_at_propose(world, "would_freeze", [{"kind": "remove_member", "member": world.alice.did},
                                               {"kind": "remove_member", "member": world.bob.did}])
    # Each feasible alone, proposed before the other executed: the second is refused at execution, typed.
    passed(world, "threshold", [{"kind": "set_parameter", "name": "proposal_threshold", "value": 50}])
    passed(world, "burn", [{"kind": "burn", "member": world.alice.did, "shares": 20}])
    DaoService(world.dao, world.ledger, clock=world.clock, split_every_s=10**9, checkpoint_every_s=10**9).step()
    assert world.dao.proposal("threshold").state == State.EXECUTED
    burn = world.dao.proposal("burn")
    assert burn.state == State.QUEUED and burn.execution_error.code == "would_freeze"
    assert world.dao.members() == {world.alice.did: 60, world.bob.did: 40}
    governance_is_live(world, "after")


def test_a_split_naming_a_reserved_account_is_refused_and_revenue_keeps_flowing(world) -> None:
    refused_at_propose(world, "bad_action", [{"kind": "change_split", "shares": {"owner": 1_000, "members": 9_000}}])
    world.earn(1_000, "e1")
    assert world.dao.distribute("d1")


def test_the_keeper_outlives_a_failure_that_is_not_a_refusal(world) -> None:
    """A new split recipient's account already open in another currency: distribute fails in the ledger, and the
    keeper goes on with its other chores, turn after turn."""
    passed(world, "split", [{"kind": "change_split", "shares": {"ops": 1_000, "members": 9_000}}])
    world.dao.execute("split")
    world.ledger.open_account(f"ops:{DAO_DID}", "USD", "ops")
    world.earn(1_000, "e1")
    keeper = DaoService(world.dao, world.ledger, clock=world.clock, split_every_s=1, checkpoint_every_s=1)
    keeper.step()
    world.clock.advance(2)
    keeper.step()  # no exception escapes, and the next turn tries again
    assert keeper.refused["distribute_failed"] == 2
    assert world.ledger.latest_checkpoint() is not None  # the chores after the failed one still ran


def test_a_member_added_just_before_a_split_receives_nothing_earned_before_it_joined(world) -> None:
    world.earn(10_000, "before")
    passed(world, "carol", [{"kind": "add_member", "member": world.carol.did, "shares": 900}])
    world.dao.execute("carol")
    world.dao.distribute("d1")
    # the members' 6,000 of the 10,000 go to alice and bob, 60:40, as they held shares when it was earned
    assert world.dao.claimable(world.alice.did) == 3_600 and world.dao.claimable(world.bob.did) == 2_400
    assert world.dao.claimable(world.carol.did) == 0
    world.clock.advance(1)
    world.earn(1_000, "after")
    world.dao.distribute("d2")  # earned with carol at 900 of 1,000 shares: 540 of the members' 600
    assert world.dao.claimable(world.carol.did) == 540
    assert world.dao.claimable(world.alice.did) == 3_600 + 36
    assert sum(world.ledger.balances().values()) == 0


def test_revenue_earned_between_share_changes_follows_each_interval(world) -> None:
    world.earn(1_000, "e1")  # alice 60, bob 40
    world.clock.advance(1)
    passed(world, "burn", [{"kind": "burn", "member": world.bob.did, "shares": 30}])
    world.dao.execute("burn")  # alice 60, bob 10
    world.clock.advance(1)
    world.earn(700, "e2")
    world.dao.distribute("d1")
    # members' part: 600 of e1 by 60:40, 420 of e2 by 60:10
    assert world.dao.claimable(world.alice.did) == 360 + 360
    assert world.dao.claimable(world.bob.did) == 240 + 60
