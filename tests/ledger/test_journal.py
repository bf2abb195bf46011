"""The journal on SQLite and on PostgreSQL: balanced, append-only, idempotent, verifiable."""

from __future__ import annotations

import pytest

from identity.keys import Signer
from ledger import merkle
from ledger.checkpoint import Checkpoint, open_note
from ledger.db import IntegrityError
from ledger.journal import IdempotencyConflict, InsufficientFunds, Ledger, LedgerError

OPERATOR = Signer(bytes(range(32)))
KEYS = [OPERATOR.public_key]
OPENED = 5  # the fixture's accounts: each opened by a record entry, numbered 1..5


@pytest.fixture
def ledger(database_url):
    book = Ledger.open(database_url, OPERATOR, clock=lambda: 1_790_000_000.0)
    book.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    book.open_account("alice", "EUR", "customer", owner="did:key:zAlice")
    book.open_account("escrow:t1", "EUR", "escrow")
    book.open_account("world:USD", "USD", "world", may_go_negative=True)
    book.open_account("bob", "USD", "customer")
    yield book
    book.close()


def test_a_balanced_entry_moves_money_and_balances_are_the_sums(ledger) -> None:
    first = ledger.post("deposit-1", {"world:EUR": -1_000, "alice": 1_000}, kind="deposit")
    second = ledger.post("lock-1", {"alice": -250, "escrow:t1": 250}, kind="escrow.lock")
    assert (first.seq, second.seq) == (OPENED + 1, OPENED + 2)
    assert ledger.balance("alice") == 750 and ledger.balance("escrow:t1") == 250
    assert sum(ledger.balances().values()) == 0
    assert ledger.entry(OPENED + 2).postings == (("alice", "EUR", -250), ("escrow:t1", "EUR", 250))


def test_an_account_never_opened_has_no_balance_unless_a_default_is_asked_for(ledger) -> None:
    with pytest.raises(LedgerError, match="unknown account 'nobody'"):
        ledger.balance("nobody")
    assert ledger.balance("nobody", default=0) == 0
    ledger.post("deposit-1", {"world:EUR": -40, "alice": 40}, kind="deposit")
    assert ledger.balance("alice", default=0) == 40


@pytest.mark.parametrize("postings, message", [
    ({"world:EUR": -10, "alice": 9}, "does not balance"),
    ({"world:EUR": -10}, "at least two postings"),
    ({"world:EUR": 0, "alice": 0}, "posting of 0"),
    ({"world:EUR": -10.0, "alice": 10.0}, "integers in minor units"),
    ({"world:EUR": -10, "bob": 10}, "does not balance"),  # EUR out, USD in
    ({"world:EUR": -10, "nobody": 10}, "unknown account"),
    ({"world:EUR": True, "alice": -1}, "integers"),
])
def test_bad_entries_are_refused_and_change_nothing(ledger, postings, message) -> None:
    with pytest.raises(LedgerError, match=message):
        ledger.post("bad", postings, kind="deposit")
    assert ledger.size() == OPENED and set(ledger.balances().values()) == {0}


def test_an_account_that_may_not_go_negative_cannot_overspend(ledger) -> None:
    ledger.post("deposit", {"world:EUR": -100, "alice": 100}, kind="deposit")
    with pytest.raises(InsufficientFunds, match="holds 100"):
        ledger.post("spend", {"alice": -101, "escrow:t1": 101}, kind="escrow.lock")
    assert ledger.balance("alice") == 100 and ledger.size() == OPENED + 1


def test_a_retried_request_posts_once_and_a_reused_key_is_refused(ledger) -> None:
    first = ledger.post("deposit", {"world:EUR": -100, "alice": 100}, kind="deposit")
    assert ledger.post("deposit", {"world:EUR": -100, "alice": 100}, kind="deposit") == first
    with pytest.raises(IdempotencyConflict, match=f"entry {OPENED + 1}"):
        ledger.post("deposit", {"world:EUR": -200, "alice": 200}, kind="deposit")
    assert ledger.size() == OPENED + 1 and ledger.balance("alice") == 100


def test_corrections_are_reversing_entries(ledger) -> None:
    ledger.post("deposit", {"world:EUR": -100, "alice": 100}, kind="deposit")
    reversal = ledger.reverse(OPENED + 1, "undo-deposit")
    assert reversal.reverses == OPENED + 1 and reversal.kind == "reversal"
    assert ledger.balance("alice") == 0 and ledger.size() == OPENED + 2
    with pytest.raises(LedgerError, match="moves no money"):
        ledger.reverse(1, "undo-an-opening")


def test_accounts_never_change_terms(ledger) -> None:
    assert ledger.open_account("alice", "EUR", "customer", owner="did:key:zAlice").currency == "EUR"
    with pytest.raises(LedgerError, match="already open"):
        ledger.open_account("alice", "USD", "customer")
    with pytest.raises(LedgerError, match="ISO 4217"):
        ledger.open_account("carol", "euro", "customer")


@pytest.mark.parametrize("statement", [
    f"UPDATE postings SET amount = 1000000 WHERE entry = {OPENED + 1}",
    f"DELETE FROM postings WHERE entry = {OPENED + 1}",
    "UPDATE entries SET memo = 'edited' WHERE seq = 1",
    "DELETE FROM entries WHERE seq = 1",
    "UPDATE accounts SET currency = 'USD' WHERE id = 'alice'",
])
def test_the_database_itself_refuses_update_and_delete(ledger, statement) -> None:
    ledger.post("deposit", {"world:EUR": -100, "alice": 100}, kind="deposit")
    with pytest.raises(IntegrityError, match="append-only"):
        with ledger.db.transaction() as cursor:
            cursor.execute(statement)
    assert ledger.balance("alice") == 100 and ledger.verify(KEYS) == []


def test_the_database_itself_refuses_an_unbalanced_entry(ledger) -> None:
    """Code that skips Ledger.post (a bug, a script) still cannot write an unbalanced entry."""
    with pytest.raises(IntegrityError, match="balance"):
        with ledger.db.transaction() as cursor:
            cursor.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (6, 'alice', 'EUR', 5)")
            cursor.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (6, 'world:EUR', 'EUR', -4)")
            cursor.execute("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, leaf, sig) "
                           "VALUES (6, 'k', 'x', '', 0, ?, ?)", (b"0" * 32, b"0" * 64))
    with pytest.raises(IntegrityError):  # a posting in the wrong currency
        with ledger.db.transaction() as cursor:
            cursor.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (6, 'alice', 'USD', 5)")
    with pytest.raises(IntegrityError, match="balance"):  # a lone posting is no record entry
        with ledger.db.transaction() as cursor:
            cursor.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (6, 'alice', 'EUR', 5)")
            cursor.execute("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, leaf, sig) "
                           "VALUES (6, 'k', 'x', '', 0, ?, ?)", (b"0" * 32, b"0" * 64))
    assert ledger.size() == OPENED


def test_checkpoints_are_signed_and_prove_inclusion_and_consistency(ledger) -> None:
    for i in range(1, 6):
        ledger.post(f"deposit-{i}", {"world:EUR": -i, "alice": i}, kind="deposit")
    old_note = ledger.checkpoint()
    old = Checkpoint.parse(open_note(old_note, ledger.origin, OPERATOR.public_key))
    for i in range(6, 12):
        ledger.post(f"deposit-{i}", {"world:EUR": -i, "alice": i}, kind="deposit")
    new, note = ledger.latest_checkpoint() or (None, "")
    assert new is not None and new.size == OPENED + 5  # not yet re-checkpointed
    ledger.checkpoint()
    new, _ = ledger.latest_checkpoint() or (None, "")
    assert (old.size, new.size) == (OPENED + 5, OPENED + 11)
    entry = ledger.entry(3)
    merkle.verify_inclusion(2, new.size, entry.leaf, ledger.inclusion_proof(3), new.root)
    merkle.verify_consistency(old.size, new.size, old.root, new.root, ledger.consistency_proof(old.size))
    assert ledger.checkpoint() == ledger.checkpoint()  # one note per size


def test_verify_names_a_row_changed_behind_the_databases_back(tmp_path) -> None:
    """Someone with the file drops the append-only trigger and edits an amount: verify names the entry."""
    path = tmp_path / "ledger.sqlite3"
    book = Ledger.open(f"sqlite:///{path}", OPERATOR)
    book.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    book.open_account("alice", "EUR", "customer")
    for i in range(1, 5):
        book.post(f"d{i}", {"world:EUR": -10 * i, "alice": 10 * i}, kind="deposit")  # entries 3..6
    book.checkpoint()
    assert book.verify(KEYS) == []
    with book.db.transaction() as cursor:
        cursor.execute("DROP TRIGGER postings_no_update")
        cursor.execute("UPDATE postings SET amount = amount * 100 WHERE entry = 5")  # still balanced
        cursor.execute("UPDATE postings SET amount = 1 WHERE entry = 6 AND account = 'alice'")
    problems = book.verify(KEYS)
    assert problems[0] == "entry 5: its content does not match its leaf hash (the row was altered)"
    assert "entry 6: its content does not match its leaf hash (the row was altered)" in problems
    assert any(p.startswith("entry 6: its postings do not balance") for p in problems)
    assert not any(p.startswith(("entry 1", "entry 2", "entry 3", "entry 4")) for p in problems)
    assert any(p.startswith("checkpoint 6:") for p in problems)  # the signed root no longer matches
    book.close()
