"""Witnesses (C2SP tlog-witness, tlog-cosignature): cosignatures, every add-checkpoint outcome, the saved state,
and a ledger whose tail was deleted with its checkpoints, caught against a witnessed checkpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat

import pytest

from identity.keys import Signer, verify
from launch.output import CliError
from launch.witness_command import ledger_root, load_witnessed, witness_check
from ledger import merkle
from ledger.checkpoint import Checkpoint, NoteError, open_note, sign_note
from ledger.journal import Ledger
from ledger.witness import (
    Conflict,
    Fork,
    Rollback,
    UntrustedCheckpoint,
    Witness,
    Witnessed,
    WitnessError,
    WitnessState,
    cosign,
    cosigner_key,
    cosigner_key_hash,
    open_cosignature,
    parse_cosigner_key,
    witnessed_problems,
)

LOG = Signer(bytes(range(32)))
WITNESS = Signer(bytes(range(1, 33)))
OTHER = Signer(bytes(range(2, 34)))
ORIGIN = "depai.test/ledger"
NAME = "member.example/w1"
T0 = 1_790_000_000


def leaves(n: int, tag: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(tag + b"entry %d" % i) for i in range(n)]


def note_of(tree: list[bytes], signer: Signer = LOG, origin: str = ORIGIN) -> str:
    body = Checkpoint(origin, len(tree), merkle.root(tree)).body()
    return sign_note(body, origin, signer.sign, signer.public_key)


def witness(tmp_path=None, clock=lambda: T0) -> Witness:
    state = WitnessState(ORIGIN, (LOG.public_key,), NAME, WITNESS.public_key)
    save = (lambda s: s.save(tmp_path / "w.json")) if tmp_path is not None else (lambda s: None)
    return Witness(WITNESS, state, save=save, clock=clock)


# --- cosignatures ---------------------------------------------------------------------------------------

def test_a_cosignature_is_the_specs_message_and_line_and_opens_again() -> None:
    note = note_of(leaves(5))
    cosigned = cosign(note, NAME, WITNESS.sign, WITNESS.public_key, T0)
    assert cosigned.startswith(note) and cosigned.count("\n\u2014 ") == 2
    name, encoded = cosigned.splitlines()[-1].removeprefix("\u2014 ").split(" ")
    raw = base64.b64decode(encoded)
    key_id = hashlib.sha256(NAME.encode() + b"\n\x04" + WITNESS.public_key).digest()[:4]
    body = Checkpoint(ORIGIN, 5, merkle.root(leaves(5))).body()
    assert (name, raw[:4], int.from_bytes(raw[4:12], "big"), len(raw)) == (NAME, key_id, T0, 76)
    assert verify(WITNESS.public_key, f"cosignature/v1\ntime {T0}\n".encode() + body.encode(), raw[12:])
    assert cosigner_key_hash(NAME, WITNESS.public_key) == key_id
    assert open_cosignature(cosigned, NAME, WITNESS.public_key) == (body, T0)
    assert open_note(cosigned, ORIGIN, LOG.public_key) == body  # the log's signature still opens beside it
    assert parse_cosigner_key(cosigner_key(NAME, WITNESS.public_key)) == (NAME, WITNESS.public_key)


def test_a_cosignature_does_not_open_under_another_key_or_over_other_text() -> None:
    cosigned = cosign(note_of(leaves(5)), NAME, WITNESS.sign, WITNESS.public_key, T0)
    with pytest.raises(NoteError, match="no cosignature by witness key"):
        open_cosignature(cosigned, NAME, OTHER.public_key)
    with pytest.raises(NoteError, match="no cosignature by witness key"):
        open_cosignature(cosigned, ORIGIN, LOG.public_key)  # the log's own line is not a cosignature
    tampered = cosigned.replace("\n5\n", "\n6\n", 1)
    with pytest.raises(NoteError, match="invalid cosignature"):
        open_cosignature(tampered, NAME, WITNESS.public_key)
    key_id = cosigner_key_hash(NAME, WITNESS.public_key)
    later = cosigned.splitlines()[-1].split(" ")[-1]
    raw = base64.b64decode(later)
    moved = raw[:4] + (T0 + 1).to_bytes(8, "big") + raw[12:]  # the time is signed too
    assert raw[:4] == key_id
    with pytest.raises(NoteError, match="invalid cosignature"):
        open_cosignature(cosigned.replace(later, base64.b64encode(moved).decode()), NAME, WITNESS.public_key)


def test_another_witness_line_is_ignored() -> None:
    note = note_of(leaves(3))
    both = cosign(cosign(note, "other.example/w", OTHER.sign, OTHER.public_key, T0 + 9), NAME, WITNESS.sign,
                  WITNESS.public_key, T0)
    assert open_cosignature(both, NAME, WITNESS.public_key)[1] == T0
    assert open_cosignature(both, "other.example/w", OTHER.public_key)[1] == T0 + 9
    with pytest.raises(NoteError, match="is not a checkpoint|at least 3 lines|tree size"):
        cosign(sign_note("hello\n", ORIGIN, LOG.sign, LOG.public_key), NAME, WITNESS.sign, WITNESS.public_key, T0)


# --- add-checkpoint -------------------------------------------------------------------------------------

def test_the_first_checkpoint_is_trusted_on_first_use_and_growth_needs_a_valid_proof() -> None:
    w, tree = witness(), leaves(20)
    cosigned = w.add_checkpoint(note_of(tree[:7]), 0, [])
    assert open_cosignature(cosigned, NAME, WITNESS.public_key)[1] == T0
    assert (w.state.size, w.state.root, w.state.cosigned) == (7, merkle.root(tree[:7]), cosigned)
    w.add_checkpoint(note_of(tree), 7, merkle.consistency_proof(7, tree))
    assert w.state.size == 20
    again = w.add_checkpoint(note_of(tree), 20, [])  # the same checkpoint again: cosigned again
    assert open_cosignature(again, NAME, WITNESS.public_key)[0] == Checkpoint(ORIGIN, 20, merkle.root(tree)).body()


def test_an_old_size_other_than_the_kept_one_is_a_conflict_that_says_the_kept_size() -> None:
    w, tree = witness(), leaves(20)
    w.add_checkpoint(note_of(tree[:7]), 0, [])
    with pytest.raises(Conflict) as caught:
        w.add_checkpoint(note_of(tree), 5, merkle.consistency_proof(5, tree))
    assert caught.value.size == 7 and caught.value.code == "witness_conflict" and w.state.size == 7


def test_a_smaller_tree_is_a_rollback_kept_as_evidence() -> None:
    w, tree = witness(), leaves(20)
    w.add_checkpoint(note_of(tree), 0, [])
    smaller = note_of(tree[:15])
    with pytest.raises(Rollback, match="15 entries, fewer than the 20"):
        w.add_checkpoint(smaller, 20, [])
    with pytest.raises(Rollback):
        w.add_checkpoint(smaller, 15, [])  # whatever size it claims to build on
    assert w.state.size == 20 and [e["note"] for e in w.state.evidence] == [smaller]


def test_the_same_size_with_another_root_is_a_fork() -> None:
    w, tree = witness(), leaves(20)
    w.add_checkpoint(note_of(tree), 0, [])
    other = tree[:19] + leaves(1, b"forged ")
    with pytest.raises(Fork, match="two checkpoints of 20 entries with different roots"):
        w.add_checkpoint(note_of(other), 20, [])
    assert w.state.root == merkle.root(tree) and w.state.evidence[0]["code"] == "ledger_fork"


def test_a_proof_that_does_not_verify_is_a_fork() -> None:
    w, tree = witness(), leaves(20)
    w.add_checkpoint(note_of(tree[:8]), 0, [])
    forked = tree[:5] + leaves(25, b"rewritten ")  # 30 entries whose first 8 are not the witnessed 8
    with pytest.raises(Fork, match="does not extend the one of 8"):
        w.add_checkpoint(note_of(forked), 8, merkle.consistency_proof(8, forked))
    with pytest.raises(Fork, match="does not extend"):
        w.add_checkpoint(note_of(tree), 8, [])  # growth with no proof at all
    assert w.state.size == 8


def test_a_checkpoint_the_log_did_not_sign_or_of_another_log_is_not_cosigned() -> None:
    w, tree = witness(), leaves(4)
    with pytest.raises(UntrustedCheckpoint, match="not signed by a trusted key"):
        w.add_checkpoint(note_of(tree, OTHER), 0, [])
    with pytest.raises(UntrustedCheckpoint, match="follows"):
        w.add_checkpoint(note_of(tree, LOG, "elsewhere.test/log"), 0, [])
    assert w.state.size == 0 and w.state.cosigned is None and not w.state.evidence


# --- the state file ---------------------------------------------------------------------------------------

def test_the_state_is_saved_atomically_owner_only_and_reloads(tmp_path) -> None:
    w, tree = witness(tmp_path), leaves(12)
    w.add_checkpoint(note_of(tree[:3]), 0, [])
    w.add_checkpoint(note_of(tree), 3, merkle.consistency_proof(3, tree))
    path = tmp_path / "w.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json"]  # no temporary file left behind
    loaded = WitnessState.load(path)
    assert loaded == w.state
    assert json.loads(path.read_text())["witness"]["vkey"] == cosigner_key(NAME, WITNESS.public_key)
    resumed = Witness(WITNESS, loaded, clock=lambda: T0 + 60)
    with pytest.raises(Fork):
        resumed.add_checkpoint(note_of(leaves(12, b"x")), 12, [])


def test_a_state_file_edited_to_claim_another_checkpoint_is_refused(tmp_path) -> None:
    w = witness(tmp_path)
    w.add_checkpoint(note_of(leaves(9)), 0, [])
    path = tmp_path / "w.json"
    data = json.loads(path.read_text())
    data["size"] = 4
    path.write_text(json.dumps(data))
    with pytest.raises(WitnessError, match="size and root differ"):
        WitnessState.load(path)
    with pytest.raises(WitnessError, match="not the key"):
        Witness(OTHER, w.state)


# --- the ledger checked against what a witness saw ---------------------------------------------------------

@pytest.fixture
def book(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url, LOG, clock=lambda: float(T0))
    ledger.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    ledger.open_account("alice", "EUR", "customer")
    for i in range(1, 13):
        ledger.post(f"d{i}", {"world:EUR": -i, "alice": i}, kind="deposit")
    yield ledger, tmp_path / "ledger.sqlite3"
    ledger.close()


def witnessed_state(tmp_path, ledger: Ledger) -> str:
    """A witness that followed the ledger to its current size; the path of its state file."""
    w = Witness(WITNESS, WitnessState(ledger.origin, (LOG.public_key,), NAME, WITNESS.public_key),
                save=lambda s: s.save(tmp_path / "witness.json"), clock=lambda: T0)
    w.add_checkpoint(ledger.checkpoint(), 0, [])
    return str(tmp_path / "witness.json")


def test_deleting_the_tail_with_its_checkpoints_is_caught_by_the_witness(book) -> None:
    ledger, path = book
    source, witnessed = witnessed_state(path.parent, ledger), ledger.size()
    assert witness_check(ledger, [source], [LOG.public_key]) == []  # untouched: nothing to say
    ledger.close()

    attacker = sqlite3.connect(path)  # write access to the file, not the operator's key
    for (trigger,) in attacker.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        attacker.execute(f"DROP TRIGGER {trigger}")
    attacker.execute("DELETE FROM postings WHERE entry > 7")
    attacker.execute("DELETE FROM entries WHERE seq > 7")
    attacker.execute("DELETE FROM checkpoints")
    attacker.commit()
    attacker.close()

    truncated = Ledger.open(f"sqlite:///{path}", None)
    try:
        problems = witness_check(truncated, [source], [LOG.public_key])
    finally:
        truncated.close()
    assert len(problems) == 1
    assert problems[0].startswith(f"the ledger was truncated or rolled back: witness {NAME} cosigned a checkpoint "
                                  f"of {witnessed} entries (root ")
    assert problems[0].endswith("at 2026-09-21T14:13:20Z; the database holds 7")


def test_a_rewritten_history_is_named_as_a_fork(book, tmp_path) -> None:
    ledger, path = book
    source = witnessed_state(path.parent, ledger)
    rewritten = Ledger.open(f"sqlite:///{tmp_path / 'rewritten.sqlite3'}", LOG)  # the operator's key, other entries
    try:
        rewritten.open_account("world:EUR", "EUR", "world", may_go_negative=True)
        rewritten.open_account("mallory", "EUR", "customer")
        for i in range(1, 15):
            rewritten.post(f"r{i}", {"world:EUR": -i, "mallory": i}, kind="deposit")
        problems = witness_check(rewritten, [source], [LOG.public_key])
    finally:
        rewritten.close()
    n = ledger.size()
    assert len(problems) == 1 and problems[0].startswith(f"the ledger forked: the first {n} entries hash to ")
    assert f"but witness {NAME} cosigned a checkpoint of {n} entries" in problems[0]


def test_a_witnessed_checkpoint_must_be_signed_by_the_ledgers_key(book) -> None:
    ledger, path = book
    source = witnessed_state(path.parent, ledger)
    with pytest.raises(CliError, match="is not the ledger's"):
        witness_check(ledger, [source], [OTHER.public_key])
    with pytest.raises(CliError, match="cannot read the witness file"):
        load_witnessed(str(path.parent / "missing.json"), [LOG.public_key])


def test_a_cosigned_note_file_names_its_witness_unverified(book) -> None:
    ledger, path = book
    state = WitnessState.load(path.parent / witnessed_state(path.parent, ledger))
    note_file = path.parent / "checkpoint.txt"
    note_file.write_text(state.cosigned)
    seen = load_witnessed(str(note_file), [LOG.public_key])
    assert (seen.witness, seen.size, seen.at, seen.verified) == (NAME, ledger.size(), T0, False)
    assert "unchecked" in seen.describe()
    plain = path.parent / "plain.txt"
    plain.write_text(ledger.checkpoint())
    with pytest.raises(CliError, match="carries no witness's cosignature"):
        load_witnessed(str(plain), [LOG.public_key])


def test_witnessed_problems_take_a_root_function_and_the_size() -> None:
    tree = leaves(10)
    seen = Witnessed(NAME, 8, merkle.root(tree[:8]), T0, "", "here", True)
    assert witnessed_problems(lambda n: merkle.root(tree[:n]), 10, [seen]) == []
    assert "the database holds 5" in witnessed_problems(lambda n: None, 5, [seen])[0]

    def short(n: int) -> bytes:
        raise IndexError(n)
    assert "truncated" in witnessed_problems(short, 10, [seen])[0]


def test_ledger_root_is_the_root_of_the_first_entries(book) -> None:
    ledger, _ = book
    n = ledger.size()
    assert ledger_root(ledger, n) == merkle.root(ledger.leaves())
    assert ledger_root(ledger, 5) == merkle.root(ledger.leaves()[:5])
    assert ledger_root(ledger, n + 1) is None
