"""The share register: history kept, weights read at a past moment, no burning what is not there."""

from __future__ import annotations

import pytest

from identity.keys import Signer
from ledger.db import IntegrityError
from ledger.journal import Ledger
from dao.shares import ECONOMIC, Shares, SharesError

ALICE, BOB = "did:key:zAlice", "did:key:zBob"


@pytest.fixture
def shares(database_url, clock):
    ledger = Ledger.open(database_url, Signer.generate(), clock=clock)
    yield Shares(ledger, clock=clock)
    ledger.close()


def test_a_balance_is_read_as_it_stood_at_a_moment(shares, clock) -> None:
    shares.mint(ALICE, 100, reason="founder")
    clock.advance(10)
    shares.mint(BOB, 50, reason="joined")
    snapshot = clock()
    clock.advance(10)
    shares.burn(ALICE, 40, reason="left in part")
    shares.mint(BOB, 1_000, reason="late whale")
    assert (shares.balance_at(ALICE, snapshot), shares.balance_at(BOB, snapshot)) == (100, 50)
    assert shares.total_at(snapshot) == 150 and shares.total_at() == 1_110
    assert shares.balance_at(ALICE, snapshot - 11) == 0
    assert shares.holders() == {ALICE: 60, BOB: 1_050}


def test_economic_shares_are_their_own_class(shares) -> None:
    shares.mint(ALICE, 10, reason="founder")
    shares.mint(BOB, 30, share_class=ECONOMIC, reason="investor")
    assert shares.total_at() == 10 and shares.total_at(share_class=ECONOMIC) == 30
    assert shares.holders() == {ALICE: 10, BOB: 30}


@pytest.mark.parametrize("amount", [0, -5, 1.5, True])
def test_bad_amounts_and_burning_what_is_not_there_are_refused(shares, amount) -> None:
    shares.mint(ALICE, 10, reason="founder")
    with pytest.raises(SharesError):
        shares.mint(ALICE, amount, reason="bad")
    with pytest.raises(SharesError, match="holds 10"):
        shares.burn(ALICE, 11, reason="too many")
    assert shares.total_at() == 10


def test_the_history_cannot_be_rewritten(shares) -> None:
    shares.mint(ALICE, 10, reason="founder")
    for statement in ("UPDATE dao_shares SET delta = 1000", "DELETE FROM dao_shares"):
        with pytest.raises(IntegrityError, match="append-only"):
            with shares.db.transaction() as cursor:
                cursor.execute(statement)
    assert shares.total_at() == 10
