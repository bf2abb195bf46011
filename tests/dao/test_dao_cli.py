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


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A fleet `depai up` founded in HOME/fleet (broker-less, in process), run a simulated minute; kept running."""
    import contextlib

    from launch.up import UpConfig, start
    from tests.dashboard.test_app import FAST_GOVERNANCE

    home = tmp_path_factory.mktemp("fleethome")
    config = UpConfig(robots=1, city=2, seed=3, broker="none", port=0, orders_per_min=3.0, scan_hz=0.5,
                      governance=FAST_GOVERNANCE, bond=5_000)
    with contextlib.ExitStack() as stack:
        up = start(config, home / "fleet", stack, lambda _: None)
        up.drive(60.0)
        yield home, up


def test_depai_dao_works_on_the_running_fleet_through_its_state_directory(running, capsys, monkeypatch) -> None:
    home, up = running
    state = str(up.state)
    monkeypatch.setenv("DEPAI_HOME", str(home))
    monkeypatch.delenv("DEPAI_PASSPHRASE", raising=False)  # the fleet's keys are in its state, no keystore asked
    t0 = up.fleet.clock()
    monkeypatch.setenv(NOW_ENV, str(t0))
    # issue #19: `depai dao status dao` found no keystore identity `dao` and told the user to make one
    code, status = dao(capsys, "status", "dao")
    assert code == EXIT_OK and status["dao"] == up.dao.did and len(status["members"]) == 3
    assert dao(capsys, "status", "--state", state)[1]["dao"] == up.dao.did
    buy = json.dumps({"kind": "buy_robot", "model": "courier", "price": 10_000_000, "currency": "EUR"})
    split = json.dumps({"kind": "change_split", "shares": {"operator": 1_000, "reserve": 1_000, "treasury": 2_000,
                                                           "members": 6_000}})
    for proposal, action in (("buy-1", buy), ("split-1", split)):
        code, made = dao(capsys, "propose", "--state", state, "--as", "member-1", "--id", proposal, "--action", action)
        assert code == EXIT_OK and made["state"] == "pending"
    assert main(["dao", "vote", "--state", state, "--as", "member-9", "--proposal", "buy-1", "--support", "for",
                 "--json"]) == 3
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "unknown_member" and "member-1, member-2, member-3" in error["hint"]
    code, reason, _ = refusal(capsys, "vote", "--state", state, "--as", "member-1", "--proposal", "buy-1",
                              "--support", "for")
    assert (code, reason) == (EXIT_REFUSED, "not_active")  # still pending: the voting delay
    monkeypatch.setenv(NOW_ENV, str(t0 + 6))
    for proposal in ("buy-1", "split-1"):
        code, voted = dao(capsys, "vote", "--state", state, "--as", "member-1", "--proposal", proposal,
                          "--support", "for")
        assert code == EXIT_OK and voted["for"] == 500
    monkeypatch.setenv(NOW_ENV, str(t0 + 26))
    assert dao(capsys, "execute", "--state", state, "--proposal", "split-1")[1]["state"] == "queued"
    assert dao(capsys, "execute", "--state", state, "--proposal", "buy-1")[1]["state"] == "queued"
    monkeypatch.setenv(NOW_ENV, str(t0 + 32))
    assert dao(capsys, "execute", "--state", state, "--proposal", "split-1")[1]["state"] == "executed"
    code = main(["dao", "execute", "--state", state, "--proposal", "buy-1", "--json"])
    error = json.loads(capsys.readouterr().err)["error"]
    assert code == EXIT_REFUSED and error["code"] == "fleet_action" and "keeper" in error["hint"]
    # the fleet's keeper tries it, and the treasury cannot pay price plus bond: status says so
    up.drive(45.0)  # past the keeper's own eta for it
    code, status = dao(capsys, "status", "--state", state)
    buying = next(p for p in status["proposals"] if p["id"] == "buy-1")
    assert buying["state"] == "queued" and buying["execution_error"]["code"] == "insufficient_treasury"
    assert buying["cost"]["total"] == 10_005_000 and not buying["cost"]["covered"]
    assert main(["dao", "status", "--state", state]) == EXIT_OK
    text = capsys.readouterr().out
    assert "not executed (insufficient_treasury" in text and "bond 50.00 EUR" in text and "operator 10 %" in text
    code, claimed = dao(capsys, "claim", "--state", state, "--as", "member-1")
    assert code == EXIT_OK and claimed["member"] == buying["proposer"] and claimed["claimed"] >= 0


def test_a_dao_name_of_no_identity_hints_at_create_and_at_state(home, capsys) -> None:
    assert main(["dao", "status", "nobody", "--json"]) == 3
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "no_dao" and "--state DIR" in error["hint"] and "depai id new nobody" in error["hint"]
    assert refusal(capsys, "status", "--state", str(home.root / "nowhere"))[1] == "no_fleet"
    assert refusal(capsys, "create", "--state", str(home.root), "--member", "alice=1")[1] == "fleet_dao"
