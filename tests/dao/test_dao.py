"""The DAO on SQLite and PostgreSQL: revenue split and claims, and governance from proposal to execution."""

from __future__ import annotations

import pytest

from dao.dao import VOTE_KIND, Dao, DaoError
from dao.lifecycle import Params, State
from dao.split import SplitRules
from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.lifecycle import create_identity
from ledger.journal import Ledger

PARAMS = Params(voting_delay_s=60.0, voting_period_s=600.0, quorum_bps=4_000, timelock_s=120.0,
                grace_period_s=3_600.0)
RULES = SplitRules.of({"operator": 2_000, "reserve": 1_000, "treasury": 1_000, "members": 6_000})
DAO_DID = "did:key:zFleetDao"


class Member:
    def __init__(self, registry, clock) -> None:
        key = Signer.generate()
        self.did = create_identity(registry, key).did
        self.signer = EnvelopeSigner(key, self.did, clock=clock)


class World:
    def __init__(self, registry, clock, url: str) -> None:
        self.clock = clock
        self.alice, self.bob, self.carol = (Member(registry, clock) for _ in range(3))
        clock.advance(1)
        self.ledger = Ledger.open(url, Signer.generate(), clock=clock)
        self.dao = Dao(self.ledger, DAO_DID, clock=clock)
        self.dao.create({self.alice.did: 60, self.bob.did: 40}, PARAMS, RULES)
        self.verifier = EnvelopeVerifier(registry, clock=clock)
        self.ledger.open_account("world:EUR", "EUR", "world", may_go_negative=True)

    def earn(self, amount: int, key: str) -> None:
        """The marketplace pays the DAO's robots' earnings into its owner account."""
        self.ledger.post(key, {"world:EUR": -amount, f"owner:{DAO_DID}": amount}, kind="escrow.release")

    def ballot(self, member: Member, proposal: str, support: str, nonce: int | None = None):
        nonce = self.dao.next_nonce(member.did) if nonce is None else nonce
        wire = member.signer.seal(VOTE_KIND, {"dao": DAO_DID, "proposal": proposal, "support": support,
                                              "nonce": nonce})
        return self.verifier.verify(wire)

    def vote(self, member: Member, proposal: str, support: str, nonce: int | None = None):
        return self.dao.vote(self.ballot(member, proposal, support, nonce))


@pytest.fixture
def world(registry, clock, database_url):
    made = World(registry, clock, database_url)
    yield made
    made.ledger.close()


def _refused(code: str, call, *args) -> None:
    with pytest.raises(DaoError) as refused:
        call(*args)
    assert refused.value.code == code, refused.value


def test_revenue_is_split_exactly_and_the_remainder_carries(world) -> None:
    world.earn(1_001, "e1")
    payouts = world.dao.distribute("d1")
    assert payouts == {f"operator:{DAO_DID}": 200, f"reserve:{DAO_DID}": 100, f"treasury:{DAO_DID}": 100,
                       f"claimable:{DAO_DID}:{world.alice.did}": 360, f"claimable:{DAO_DID}:{world.bob.did}": 240}
    assert world.ledger.balance(f"owner:{DAO_DID}") == 1  # carried to the next distribution
    assert world.dao.distribute("d1") == {}  # the same distribution again: nothing more
    world.earn(999, "e2")
    world.dao.distribute("d2")
    assert world.ledger.balance(f"owner:{DAO_DID}") == 0  # 1,000 divides exactly
    assert world.dao.claimable(world.alice.did) == 360 + 360
    assert world.dao.claim(world.alice.did) == 720 and world.dao.claim(world.alice.did) == 0
    assert world.ledger.balance(f"member:{world.alice.did}") == 720
    assert sum(world.ledger.balances().values()) == 0 and world.ledger.verify() == []


def test_a_proposal_goes_from_pending_to_executed_exactly_once(world) -> None:
    new_split = {"operator": 1_000, "reserve": 1_000, "treasury": 1_000, "members": 7_000}
    proposal = world.dao.propose(world.alice.did, "p1", [{"kind": "change_split", "shares": new_split}], "more")
    assert proposal.state == State.PENDING
    _refused("not_active", world.vote, world.alice, "p1", "for")
    world.clock.advance(61)
    assert world.vote(world.alice, "p1", "for").tally.for_votes == 60
    _refused("already_voted", world.vote, world.alice, "p1", "against")
    world.vote(world.bob, "p1", "against")
    _refused("not_a_member", world.vote, world.carol, "p1", "for")
    _refused("not_succeeded", world.dao.queue, "p1")
    world.clock.advance(600)
    assert world.dao.proposal("p1").state == State.SUCCEEDED
    _refused("not_ready", world.dao.execute, "p1")
    assert world.dao.queue("p1").state == State.QUEUED
    _refused("not_ready", world.dao.execute, "p1")  # the timelock
    world.clock.advance(121)
    assert world.dao.execute("p1").state == State.EXECUTED
    assert world.dao.params()[1] == SplitRules.of(new_split)
    _refused("not_ready", world.dao.execute, "p1")


def test_a_replayed_or_reordered_vote_is_refused(world) -> None:
    world.dao.propose(world.alice.did, "p1", [{"kind": "mint", "member": world.bob.did, "shares": 5}], "")
    world.dao.propose(world.alice.did, "p2", [{"kind": "mint", "member": world.bob.did, "shares": 6}], "")
    world.clock.advance(61)
    ballot = world.ballot(world.bob, "p1", "for")
    world.dao.vote(ballot)
    _refused("bad_nonce", world.dao.vote, ballot)  # the same signed vote again
    _refused("bad_nonce", world.vote, world.bob, "p2", "for", 5)  # skipping ahead
    assert world.vote(world.bob, "p2", "for").tally.for_votes == 40


def test_a_votes_weight_is_read_at_the_snapshot_not_at_voting_time(world) -> None:
    world.dao.propose(world.alice.did, "p1", [{"kind": "burn", "member": world.bob.did, "shares": 40}], "")
    world.clock.advance(61)
    world.dao.shares.mint(world.bob.did, 1_000, reason="after the snapshot")  # as a passed proposal would
    world.clock.advance(1)
    assert world.vote(world.bob, "p1", "against").tally.against == 40
    world.vote(world.alice, "p1", "for")
    world.clock.advance(600)
    assert world.dao.proposal("p1").state == State.SUCCEEDED  # 60 for, 40 against, as at the snapshot


@pytest.mark.parametrize("votes, expected", [
    ({"alice": "abstain", "bob": "abstain"}, State.DEFEATED),  # quorum, but For does not exceed Against
    ({"bob": "for"}, State.SUCCEEDED),  # 40 % turnout meets a 40 % quorum
    ({}, State.DEFEATED),
])
def test_quorum_and_majority_decide(world, votes, expected) -> None:
    world.dao.propose(world.alice.did, "p1", [{"kind": "mint", "member": world.carol.did, "shares": 1}], "")
    world.clock.advance(61)
    for name, support in votes.items():
        world.vote(getattr(world, name), "p1", support)
    world.clock.advance(600)
    assert world.dao.proposal("p1").state == expected


def test_parameters_change_only_through_a_passed_proposal(world) -> None:
    before = world.dao.params()
    world.dao.propose(world.alice.did, "p1", [{"kind": "set_parameter", "name": "quorum_bps", "value": 6_000}], "")
    world.clock.advance(61)
    world.vote(world.bob, "p1", "for")  # 40 % for, 0 against: succeeds
    assert world.dao.params() == before
    world.clock.advance(600)
    world.dao.queue("p1")
    world.clock.advance(121)
    world.dao.execute("p1")
    assert world.dao.params()[0].quorum_bps == 6_000 and world.dao.params()[1:] == before[1:]
    _refused("not_a_member", world.dao.propose, world.carol.did, "p2", [{"kind": "mint", "member": world.carol.did,
                                                                          "shares": 1}], "")


def test_spending_from_the_treasury_executes_in_one_transaction_or_not_at_all(world) -> None:
    world.earn(10_000, "e1")
    world.dao.distribute("d1")  # the treasury holds 1,000
    actions = [{"kind": "add_member", "member": world.carol.did, "shares": 10},
               {"kind": "spend", "to": world.carol.did, "amount": 5_000, "currency": "EUR"}]
    world.dao.propose(world.alice.did, "p1", actions, "too much")
    world.clock.advance(61)
    world.vote(world.alice, "p1", "for")
    world.clock.advance(600)
    world.dao.queue("p1")
    world.clock.advance(121)
    _refused("insufficient_treasury", world.dao.execute, "p1")  # 5,000 asked, 1,000 held
    assert world.dao.proposal("p1").state == State.QUEUED and world.carol.did not in world.dao.members()
    assert world.ledger.balance(f"treasury:{DAO_DID}") == 1_000
