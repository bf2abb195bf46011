"""The dashboard's ledger answers (docs/dashboard.md, "The ledger's answers"), checked the way a verifier that
trusts nothing inside the database checks them.

On the fleet of tests/dashboard/test_app.py: each entry's content hashes to its leaf and its signature verifies
under the ledger DID's key from the DID registry; a consistency proof joins every smaller tree to the newest
checkpoint's; sizes no proof joins are refused with a code and a hint. On a ledger of its own (``Books``, which
tests/dashboard/test_ledger_page.py serves to Chromium): nothing before the first checkpoint, then a proof
between two signed checkpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from dao.dao import Dao
from dashboard.server import DashboardServer
from dashboard.view import LedgerView
from identity.canonical import canonicalize
from identity.keys import Signer, verify
from identity.registry import DidRegistry
from launch.up import RunningFleet
from ledger import merkle
from ledger.checkpoint import open_note
from ledger.journal import Ledger
from tests.conftest import ManualClock
from tests.dao.test_dao import DAO_DID, PARAMS, RULES
from tests.dashboard.test_app import api, fleet, member  # noqa: F401  (the fixtures, not a copy of them)

FOUNDER = "did:key:zFounder"


class Books:
    """A ledger of its own at ``path``: its operator posts entries and signs checkpoints, and a read-only
    ``LedgerView`` (what ``depai dashboard`` serves for a fleet that is not running) reads it for a dashboard."""

    def __init__(self, path: Path, operator: Signer, clock: ManualClock, *, memo: str = "earned") -> None:
        url = f"sqlite:///{path}"
        self.ledger = Ledger.open(url, operator, clock=clock)
        self.clock, self.memo, self.posted = clock, memo, 0
        Dao(self.ledger, DAO_DID, clock=clock).create({FOUNDER: 1}, PARAMS, RULES)
        self.ledger.open_account("world:EUR", "EUR", "world", may_go_negative=True)
        self.view = LedgerView.open(url, DAO_DID)

    def earn(self, count: int) -> Books:
        """Post ``count`` payments to the DAO (``memo`` makes two Books' entries differ)."""
        for _ in range(count):
            self.posted += 1
            self.clock.advance(1)
            self.ledger.post(f"{self.memo}-{self.posted}", {"world:EUR": -self.posted, f"owner:{DAO_DID}": self.posted},
                             kind="escrow.release", memo=self.memo)
        return self

    def sign(self) -> dict[str, Any]:
        """Sign a checkpoint of the ledger as it stands; the dashboard's answer for it."""
        self.ledger.checkpoint()
        return self.view.checkpoint()

    def close(self) -> None:
        self.view.close()
        self.ledger.close()


@contextmanager
def serving(view: LedgerView, port: int = 0) -> Iterator[DashboardServer]:
    """The dashboard over ``view`` on 127.0.0.1:``port`` (0: any free port) until the block ends."""
    server = DashboardServer(view, port=port).start()
    try:
        yield server
    finally:
        server.stop()


def leaves_of(ledger: Ledger) -> list[bytes]:
    """Every entry's leaf hash recomputed from its content (not read from the leaf column)."""
    return [merkle.leaf_hash(canonicalize(entry.content())) for entry in ledger.entries()]


def refused(answer: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


@pytest.fixture
def books(tmp_path: Path, clock: ManualClock) -> Iterator[Books]:
    made = Books(tmp_path / "ledger.sqlite3", Signer.generate(), clock)
    yield made
    made.close()


def test_an_entry_carries_the_content_its_leaf_hashes_and_the_ledger_dids_signature(fleet: RunningFleet,
                                                                                    api: httpx.Client) -> None:
    ledger_did = member(fleet, "ledger").did
    with DidRegistry(fleet.state / "registry.sqlite3") as registry:
        key = registry.active(ledger_did).public_key  # from the registry, never from the ledger's database
    assert key is not None
    checkpoint = api.get("/api/ledger/checkpoint").json()
    assert set(checkpoint) == {"origin", "size", "root", "note", "public_key", "ledger_did"}
    assert checkpoint["ledger_did"] == ledger_did  # the fleet names whose keys sign its ledger
    open_note(checkpoint["note"], checkpoint["origin"], key)  # the note verifies under the DID's key
    for seq in sorted({1, 2, checkpoint["size"] // 2, checkpoint["size"]}):
        entry = api.get(f"/api/ledger/entries/{seq}").json()
        assert entry["seq"] == seq and entry["leaf_index"] == seq - 1
        assert entry["content"] == fleet.ledger.entry(seq).content()
        assert entry["content"]["seq"] == seq and entry["content"]["at"] == entry["at_ms"]
        assert {"key", "kind", "memo", "reverses", "postings"} <= entry.keys()  # the fields it had before
        leaf = hashlib.sha256(b"\x00" + canonicalize(entry["content"])).digest()
        assert entry["leaf"] == leaf.hex()
        assert len(bytes.fromhex(entry["sig"])) == 64 and verify(key, leaf, bytes.fromhex(entry["sig"]))
    refused(api.get(f"/api/ledger/entries/{fleet.ledger.size() + 1}"), 404, "unknown_entry")


def test_a_consistency_proof_joins_every_smaller_tree_to_the_newest_checkpoint(fleet: RunningFleet,
                                                                              api: httpx.Client) -> None:
    checkpoint = api.get("/api/ledger/checkpoint").json()
    size, root = checkpoint["size"], bytes.fromhex(checkpoint["root"])
    leaves = leaves_of(fleet.ledger)
    assert merkle.root(leaves[:size]) == root
    for old in range(1, size + 1):
        answer = api.get("/api/ledger/consistency", params={"old": old}).json()
        assert set(answer) == {"old_size", "new_size", "proof"}
        assert (answer["old_size"], answer["new_size"]) == (old, size)
        proof = [bytes.fromhex(node) for node in answer["proof"]]
        merkle.verify_consistency(old, size, merkle.root(leaves[:old]), root, proof)
    between = api.get("/api/ledger/consistency", params={"old": 3, "new": 7}).json()
    assert between == {"old_size": 3, "new_size": 7,
                       "proof": [node.hex() for node in merkle.consistency_proof(3, leaves[:7])]}


def test_sizes_no_consistency_proof_joins_are_refused_with_a_code_and_a_hint(fleet: RunningFleet,
                                                                            api: httpx.Client) -> None:
    size = api.get("/api/ledger/checkpoint").json()["size"]
    held = fleet.ledger.size()
    for params in ({}, {"old": 0}, {"old": -3}):
        assert "hint" in refused(api.get("/api/ledger/consistency", params=params), 400, "bad_old_size")
    error = refused(api.get("/api/ledger/consistency", params={"old": size + 1}), 400, "old_beyond_new")
    assert "rolled back" in error["hint"]
    assert refused(api.get("/api/ledger/consistency", params={"old": 5, "new": 4}), 400, "old_beyond_new")
    error = refused(api.get("/api/ledger/consistency", params={"old": 1, "new": held + 1}), 400, "beyond_ledger")
    assert str(held) in error["message"] and str(size) in error["hint"]


def test_an_inclusion_proof_states_the_tree_it_answers_against(fleet: RunningFleet, api: httpx.Client) -> None:
    checkpoint = api.get("/api/ledger/checkpoint").json()
    leaves = leaves_of(fleet.ledger)
    for seq, size in ((4, None), (4, 9), (9, 9), (1, 1)):
        answer = api.get(f"/api/ledger/inclusion/{seq}", params={} if size is None else {"size": size}).json()
        assert set(answer) == {"seq", "leaf_index", "size", "leaf", "proof", "root"}
        tree = checkpoint["size"] if size is None else size
        assert (answer["seq"], answer["leaf_index"], answer["size"]) == (seq, seq - 1, tree)
        assert answer["root"] == merkle.root(leaves[:tree]).hex()
        if size is None:
            assert answer["root"] == checkpoint["root"]
        merkle.verify_inclusion(seq - 1, tree, leaves[seq - 1], [bytes.fromhex(n) for n in answer["proof"]],
                                bytes.fromhex(answer["root"]))


def test_before_the_first_checkpoint_nothing_is_proved_then_two_checkpoints_are_joined(books: Books) -> None:
    books.earn(3)
    with serving(books.view) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("/api/ledger/checkpoint", "/api/ledger/inclusion/1", "/api/ledger/consistency?old=1"):
            refused(client.get(path), 404, "no_checkpoint")
        first = books.sign()
        books.earn(5)
        second = books.sign()
        assert second["size"] == first["size"] + 5 == client.get("/api/ledger/checkpoint").json()["size"]
        answer = client.get("/api/ledger/consistency", params={"old": first["size"]}).json()
        assert (answer["old_size"], answer["new_size"]) == (first["size"], second["size"])
        merkle.verify_consistency(first["size"], second["size"], bytes.fromhex(first["root"]),
                                  bytes.fromhex(second["root"]), [bytes.fromhex(n) for n in answer["proof"]])
        assert client.get("/api/ledger/consistency", params={"old": second["size"]}).json()["proof"] == []
