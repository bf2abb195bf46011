"""The `depai` command line: identities, envelopes, --json, errors with hints and meaningful exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.cli import main
from launch.output import EXIT_AUTH, EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, EXIT_USAGE

ALICE = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPAI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEPAI_PASSPHRASE", "test passphrase")
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == EXIT_OK, err
    return json.loads(out)


def test_id_did_prints_both_dids_one_per_line(capsys) -> None:
    code, out, _ = run(capsys, "id", "did", ALICE)
    assert code == EXIT_OK
    assert out.splitlines() == [
        "did:peaq:5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "did:key:z6Mktjdrv1ZHpSQM2RA5xNj1pmxqUJ2iZ1qzB7t8vHQuWKi4",
    ]
    data = run_json(capsys, "id", "did", ALICE)
    assert data["did:peaq"].endswith("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    assert data["did:key"].startswith("did:key:z6Mk")


def test_id_did_bad_key_says_what_to_do(capsys) -> None:
    code, _, err = run(capsys, "id", "did", "abcd")
    assert code == EXIT_REFUSED
    assert "2 bytes" in err and "hint: give the 32-byte Ed25519 public key as 64 hex digits" in err
    code, _, err = run(capsys, "id", "did", "xyz", "--json")
    assert json.loads(err)["error"]["code"] == "key_not_hex"


def test_new_show_list_rotate(home: Path, capsys) -> None:
    dao = run_json(capsys, "id", "new", "dao")["didDocument"]
    robot = run_json(
        capsys, "id", "new", "robot-1", "--controller", dao["id"], "--model", "courier-s",
        "--capability", "delivery", "--capability", "lidar", "--max-speed", "1.8", "--payload", "12",
    )["didDocument"]
    assert robot["controller"] == dao["id"]
    assert robot["machine"]["capabilities"] == ["delivery", "lidar"]
    assert robot["service"][0]["serviceEndpoint"]["topicRoot"].endswith(robot["id"].split(":")[-1])
    shown = run_json(capsys, "id", "show", "robot-1")
    assert shown["didDocument"] == robot and shown["didDocumentMetadata"]["versionId"] == "1"
    assert [row["name"] for row in run_json(capsys, "id", "list")] == ["dao", "robot-1"]
    key_file = home / "keys" / "robot-1.key.json"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(key_file.read_text())["kdf"] == "argon2id"

    rotated = run_json(capsys, "id", "rotate", "robot-1")
    assert rotated["didDocumentMetadata"]["versionId"] == "2"
    assert rotated["didDocument"]["verificationMethod"][0]["id"].endswith("#key-2")
    assert list((home / "keys").glob("robot-1.key-*.json.old")), "the old key is archived"

    code, out, _ = run(capsys, "id", "show", "robot-1")
    assert code == EXIT_OK and "key-2" in out and "courier-s" in out


def test_sign_and_verify_by_hand(home: Path, capsys, tmp_path: Path) -> None:
    run_json(capsys, "id", "new", "robot", "--plain")
    code, wire, err = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "telemetry", "--body", '{"battery": 0.5}')
    assert code == EXIT_OK, err
    message = tmp_path / "msg.json"
    message.write_text(wire)
    verified = run_json(capsys, "envelope", "verify", str(message), "--kind", "telemetry")
    assert verified["valid"] and verified["body"] == {"battery": 0.5}

    message.write_text(wire.replace("0.5", "0.9"))
    code, _, err = run(capsys, "envelope", "verify", str(message))
    assert code == EXIT_REFUSED and "refused (bad_signature)" in err

    message.write_text(wire)
    code, _, err = run(capsys, "envelope", "verify", str(message), "--kind", "event", "--json")
    assert code == EXIT_REFUSED and json.loads(err)["error"]["code"] == "wrong_kind"


def test_sign_rejects_bad_body_and_kind(home: Path, capsys) -> None:
    run_json(capsys, "id", "new", "robot", "--plain")
    code, _, err = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "telemetry", "--body", "{oops")
    assert code == EXIT_USAGE and "not valid JSON" in err and "hint:" in err
    code, _, err = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "Bad Kind")
    assert code == EXIT_USAGE and "must match" in err


def test_error_exit_codes(home: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    run_json(capsys, "id", "new", "robot")
    code, _, err = run(capsys, "id", "new", "robot")
    assert code == EXIT_CONFLICT and "already exists" in err
    code, _, err = run(capsys, "id", "show", "nobody")
    assert code == EXIT_NOT_FOUND and "depai id new" in err
    code, _, _ = run(capsys, "id", "new", "../escape")
    assert code == EXIT_USAGE
    monkeypatch.setenv("DEPAI_PASSPHRASE", "wrong")
    code, _, err = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "telemetry")
    assert code == EXIT_AUTH and "passphrase" in err
    monkeypatch.delenv("DEPAI_PASSPHRASE")
    with open(os.devnull) as no_terminal:
        monkeypatch.setattr(sys, "stdin", no_terminal)
        code, _, err = run(capsys, "id", "rotate", "robot")
    assert code == EXIT_AUTH and "DEPAI_PASSPHRASE" in err
    before = run_json(capsys, "id", "show", "robot")
    assert before["didDocumentMetadata"]["versionId"] == "1", "a failed rotation changes nothing"


def test_deactivate(home: Path, capsys, tmp_path: Path) -> None:
    run_json(capsys, "id", "new", "robot", "--plain")
    _, wire, _ = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "telemetry")
    gone = run_json(capsys, "id", "deactivate", "robot")
    assert gone["didDocumentMetadata"]["deactivated"] is True
    code, _, err = run(capsys, "envelope", "sign", "--as", "robot", "--kind", "telemetry")
    assert code == EXIT_REFUSED and "deactivated" in err
    message = tmp_path / "m.json"
    message.write_text(wire)
    assert run_json(capsys, "envelope", "verify", str(message), "--archived")["valid"]


def test_demo_runs_every_step(capsys) -> None:
    summary = run_json(capsys, "demo")
    outcomes = [step["outcome"] for step in summary["steps"]]
    assert outcomes[3:6] == ["accepted", "replayed", "bad_signature"]
    assert outcomes[7:] == ["key_rotated", outcomes[8], "accepted", "deactivated"]
    assert outcomes[8].startswith("valid")
    assert summary["robot_versions"] == 3


def test_sim_in_process_verifies_every_message(capsys) -> None:
    summary = run_json(capsys, "sim", "--robots", "3", "--blocks", "3", "--duration", "60", "--speed", "0",
                       "--broker", "none")
    assert summary["sim_s"] == 60.0 and summary["refused"] == 0
    assert summary["verified"]["birth"] == 4  # the simulator and its robots
    assert 3 * 2 * 60 <= summary["verified"]["telemetry"] <= 3 * (2 * 60 + 1)  # 2 Hz, from each one's phase
    assert summary["messages_sent"] + 4 == sum(summary["verified"].values())


@pytest.mark.parametrize(("argv", "code"), [(["--robots", "0"], "bad_robots"), (["--speed", "-1"], "bad_time"),
                                            (["--broker", "rabbit"], "bad_kind")])
def test_sim_refuses_bad_arguments_with_a_hint(capsys, argv: list[str], code: str) -> None:
    status, _, err = run(capsys, "sim", "--json", *argv)
    assert status == EXIT_USAGE and json.loads(err)["error"]["code"] == code


def test_sim_over_its_own_broker_prints_only_its_own_lines(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "launch.cli", "sim", "--robots", "2", "--blocks", "3", "--duration", "30",
         "--speed", "0"], capture_output=True, text=True, env={**os.environ, "DEPAI_HOME": str(tmp_path)},
        check=False, timeout=120, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    assert "refused 0" in result.stdout and "with the topic ACL" in result.stdout
    assert all(line.startswith(("depai sim:", "sim ")) for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["id"], ["id", "new"], ["id", "show"], ["id", "did"], ["id", "rotate"], ["id", "list"],
     ["envelope"], ["envelope", "sign"], ["envelope", "verify"], ["demo"], ["sim"]],
)
def test_help_everywhere(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    assert "usage: depai" in capsys.readouterr().out


def test_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("depai")
    if not script.exists():
        pytest.skip("the depai console script is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), "id", "did", ALICE, "--json"], capture_output=True, text=True,
                            env={**os.environ, "DEPAI_HOME": str(tmp_path)}, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["public_key"] == ALICE
    assert result.stderr == ""
