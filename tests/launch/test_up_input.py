"""``depai up`` with careless input: refused in words, with nothing written, before a fleet is founded.

Each case runs the real command in a child process and checks the exit code, the message, and that the
state directory was not created or not changed (a second run on a state in use must not bump its run counter).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from launch.output import EXIT_CONFLICT, EXIT_USAGE
from tests.launch.up_process import ROOT, UpProcess


def up(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", "up", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={"DEPAI_HOME": str(home), "PATH": "/usr/bin:/bin"})


def up_with_config(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``depai up`` with a TOML file holding ``text``, on a fresh state directory."""
    config = tmp_path / "fleet.toml"
    config.write_text(text)
    return up("--config", str(config), "--state", str(tmp_path / "fleet"), home=tmp_path)


def test_an_unreachable_database_is_refused_before_a_fleet_is_founded(tmp_path: Path) -> None:
    result = up("--db", "postgresql://nobody@127.0.0.1:1/x", "--state", str(tmp_path / "fleet"), home=tmp_path)
    assert result.returncode == EXIT_USAGE and "cannot open the ledger" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "fleet").exists()


def test_a_dashboard_port_in_use_is_refused_before_a_fleet_is_founded(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = up("--port", str(port), "--state", str(tmp_path / "fleet"), home=tmp_path)
    assert result.returncode == EXIT_USAGE and f"port 127.0.0.1:{port} cannot be used" in result.stderr
    assert "--port 0" in result.stderr and not (tmp_path / "fleet").exists()


def test_a_config_value_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    result = up_with_config('robots = "five"\n', tmp_path)
    assert result.returncode == EXIT_USAGE and "robots must be int, not 'five'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "fleet").exists()


def test_witness_without_the_services_is_refused_saying_why(tmp_path: Path) -> None:
    result = up("--witness", "--broker", "none", "--state", str(tmp_path / "fleet"), home=tmp_path)
    assert result.returncode == EXIT_USAGE and "--witness is the market service's rule" in result.stderr
    assert "drop --broker none" in result.stderr and not (tmp_path / "fleet").exists()
    result = up_with_config('witness = "yes"\n', tmp_path)
    assert result.returncode == EXIT_USAGE and "witness must be true or false" in result.stderr


def test_a_bond_too_small_to_slash_is_refused(tmp_path: Path) -> None:
    result = up_with_config("bond = 9\n", tmp_path)
    assert result.returncode == EXIT_USAGE and "bond 9 is neither 0 nor from 10" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "fleet").exists()


def test_a_second_up_on_a_state_in_use_exits_5_and_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    with UpProcess(["--robots", "2", "--city", "2", "--speed", "5", "--port", "0", "--state", str(state)],
                   tmp_path) as first:
        assert first.dashboard_url
        before = json.loads((state / "fleet.json").read_text())
        second = up("--state", str(state), "--port", "0", "--broker", "none", home=tmp_path)
        assert second.returncode == EXIT_CONFLICT, second.stderr
        assert "is running already" in second.stderr and "Traceback" not in second.stderr
        assert json.loads((state / "fleet.json").read_text())["runs"] == before["runs"] == 1
        assert first.stop() == 0
