"""`depai dao`: found a DAO, sponsor a member, propose, vote with signed envelopes, execute, claim, status."""

from __future__ import annotations

import json
import time

import pytest

from launch.cli import main
from launch.output import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ledger.journal import Ledger
from launch.home import Home
from launch.id_commands import did_of, unlock

FAST = ["--voting-delay", "0", "--voting-period", "1", "--quorum", "5000", "--timelock", "0"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPAI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEPAI_PASSPHRASE", "test passphrase")
    for name in ("fleetdao", "alice", "bob", "carol"):
        assert main(["id", "new", name, "--method", "key", "--json"]) == EXIT_OK
    return Home.locate(str(tmp_path / "home"))


def dao(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["dao", *argv, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_found_propose_vote_execute_and_claim(home, capsys) -> None:
    capsys.readouterr()
    assert dao(capsys, "create", "fleetdao", "--member", "alice=60", "--member", "bob=40", *FAST)[0] == EXIT_OK
    code, proposal = dao(capsys, "join", "fleetdao", "--as", "carol", "--sponsor", "alice", "--shares", "10")
    assert code == EXIT_OK and proposal["state"] in ("pending", "active")  # no voting delay here
    time.sleep(0.05)
    code, voted = dao(capsys, "vote", "fleetdao", "--as", "alice", "--proposal", proposal["id"], "--support", "for")
    assert code == EXIT_OK and voted["for"] == 60
    assert main(["dao", "vote", "fleetdao", "--as", "alice", "--proposal", proposal["id"], "--support", "for"]) \
        != EXIT_OK  # one vote each
    assert "already voted" in capsys.readouterr().err
    assert main(["dao", "vote", "fleetdao", "--as", "carol", "--proposal", proposal["id"], "--support", "for"]) \
        == EXIT_REFUSED  # not a member at the snapshot
    capsys.readouterr()
    time.sleep(1.05)
    assert dao(capsys, "execute", "fleetdao", "--proposal", proposal["id"])[1]["state"] == "queued"
    assert dao(capsys, "execute", "fleetdao", "--proposal", proposal["id"])[1]["state"] == "executed"
    status = dao(capsys, "status", "fleetdao")[1]
    assert status["members"][did_of(home.keystore(), "carol")] == 10
    # the fleet earns for the DAO: the marketplace pays its owner account; a member claims its share
    signer, dao_did, _ = unlock(home.keystore(), "fleetdao")
    ledger = Ledger.open(f"sqlite:///{home.root / 'dao' / 'fleetdao.sqlite3'}", signer,
                         origin="depai.local/dao/fleetdao")
    ledger.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    ledger.post("earned-1", {"world:EUR": -11_000, f"owner:{dao_did}": 11_000}, kind="escrow.release")
    ledger.close()
    code, claimed = dao(capsys, "claim", "fleetdao", "--as", "alice")
    assert code == EXIT_OK and claimed["claimed"] == 11_000 * 6_000 // 10_000 * 60 // 110  # 60 of 110 shares
    assert dao(capsys, "claim", "fleetdao", "--as", "alice")[1]["claimed"] == 0


def test_bad_input_says_what_to_do(home, capsys) -> None:
    assert main(["dao", "create", "fleetdao", "--member", "alice=lots"]) == EXIT_USAGE
    assert "WHO=SHARES" in capsys.readouterr().err
    assert main(["dao", "create", "fleetdao", "--member", "alice=1", "--split", '{"members": 5000}']) == EXIT_USAGE
    assert main(["dao", "status", "nobody"]) != EXIT_OK
    assert "depai id new nobody" in capsys.readouterr().err
