"""`depai dao`: found a DAO, sponsor a member, propose, vote with signed envelopes, execute, claim, status."""

from __future__ import annotations

import json

import pytest

from launch.cli import main
from launch.dao_command import NOW_ENV
from launch.output import EXIT_CONFLICT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ledger.journal import Ledger
from launch.home import Home
from launch.id_commands import did_of, unlock

FAST = ["--voting-delay", "0", "--voting-period", "1", "--quorum", "5000", "--timelock", "10"]
T0 = 1_700_000_000.0  # the DAO's clock (DEPAI_DAO_NOW) when the test starts


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPAI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEPAI_PASSPHRASE", "test passphrase")
    monkeypatch.setenv(NOW_ENV, str(T0))
    for name in ("fleetdao", "alice", "bob", "carol"):
        assert main(["id", "new", name, "--method", "key", "--json"]) == EXIT_OK
    return Home.locate(str(tmp_path / "home"))


def dao(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["dao", *argv, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def refusal(capsys, *argv: str) -> tuple[int, str, str]:
    """Run a `depai dao` command that must fail: its exit code, and the reason and message it gave (--json)."""
    code = main(["dao", *argv, "--json"])
    captured = capsys.readouterr()
    assert code != EXIT_OK and not captured.out.strip(), captured.out
    error = json.loads(captured.err)["error"]
    return code, error["code"], error["message"]


def test_found_propose_vote_execute_and_claim(home, capsys, monkeypatch) -> None:
    def at(seconds: float) -> None:  # the DAO's clock, T0 + seconds: no waiting for a deadline or a timelock
        monkeypatch.setenv(NOW_ENV, str(T0 + seconds))

    capsys.readouterr()
    assert dao(capsys, "create", "fleetdao", "--member", "alice=60", "--member", "bob=40", *FAST)[0] == EXIT_OK
    code, proposal = dao(capsys, "join", "fleetdao", "--as", "carol", "--sponsor", "alice", "--shares", "10")
    assert code == EXIT_OK and proposal["state"] == "pending" and proposal["snapshot"] == T0
    vote = ["vote", "fleetdao", "--proposal", proposal["id"], "--support", "for"]
    assert refusal(capsys, *vote, "--as", "alice")[:2] == (EXIT_REFUSED, "not_active")  # at the snapshot: not yet
    at(0.5)
    code, voted = dao(capsys, *vote, "--as", "alice")
    assert code == EXIT_OK and voted["state"] == "active" and voted["for"] == 60
    assert refusal(capsys, *vote, "--as", "alice")[:2] == (EXIT_CONFLICT, "already_voted")  # one vote each
    code, reason, message = refusal(capsys, *vote, "--as", "carol")
    assert (code, reason) == (EXIT_REFUSED, "not_a_member") and "snapshot" in message  # joins only if it passes
    at(1.5)  # past the deadline: bob's vote is late, refused with the same exit code for another reason
    code, reason, message = refusal(capsys, *vote, "--as", "bob")
    assert (code, reason) == (EXIT_REFUSED, "not_active") and "succeeded" in message
    assert dao(capsys, "execute", "fleetdao", "--proposal", proposal["id"])[1]["state"] == "queued"
    code, reason, message = refusal(capsys, "execute", "fleetdao", "--proposal", proposal["id"])
    assert (code, reason) == (EXIT_REFUSED, "not_ready") and str(T0 + 11.5) in message  # behind its timelock
    at(11.5)
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


def test_bad_input_says_what_to_do(home, capsys, monkeypatch) -> None:
    assert main(["dao", "create", "fleetdao", "--member", "alice=lots"]) == EXIT_USAGE
    assert "WHO=SHARES" in capsys.readouterr().err
    assert main(["dao", "create", "fleetdao", "--member", "alice=1", "--split", '{"members": 5000}']) == EXIT_USAGE
    assert main(["dao", "status", "nobody"]) != EXIT_OK
    assert "depai id new nobody" in capsys.readouterr().err
    monkeypatch.setenv(NOW_ENV, "tomorrow")
    assert refusal(capsys, "status", "fleetdao")[:2] == (EXIT_USAGE, "bad_clock")
