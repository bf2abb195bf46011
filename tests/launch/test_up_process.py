"""UpProcess (tests/launch/up_process.py) runs a long-running command for end-to-end tests: here small
Python scripts stand in for `depai up`."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch import up_process
from tests.launch.up_process import ROOT, UpProcess

# Says where it runs, announces its dashboard, then serves until Ctrl-C (SIGINT) and exits 0.
FAKE_UP = """
import os, sys, time
print("home", os.environ["DEPAI_HOME"], "cwd", os.getcwd(), "args", *sys.argv[1:], flush=True)
print("starting", file=sys.stderr, flush=True)
try:  # from before it announces the dashboard: a test may send SIGINT as soon as it reads that line
    print("dashboard at http://127.0.0.1:9/", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    print("stopped", file=sys.stderr, flush=True)
sys.exit(0)
"""

# Ignores SIGINT: only SIGKILL stops it.
DEAF_UP = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""

# Fails at start.
FAILING_UP = """
import sys
print("error: no fleet configured", file=sys.stderr, flush=True)
sys.exit(3)
"""

# Writes far more than a pipe holds (64 KiB) to both streams before it announces its dashboard.
CHATTY_UP = """
import sys, time
for i in range(20000):
    print(f"stdout line {i:05d} " + "x" * 60)
    print(f"stderr line {i:05d} " + "y" * 60, file=sys.stderr)
sys.stdout.flush()
try:
    print("dashboard at http://127.0.0.1:9/chatty", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    pass
"""

# Starts a child and, on SIGINT, exits without stopping it.
CARELESS_UP = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "600"])
try:
    print("child", child.pid, file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    sys.exit(0)
"""


def python(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def test_runs_in_the_repo_with_its_home_and_stops_on_sigint(tmp_path: Path) -> None:
    with UpProcess(["--robots", "3"], tmp_path / "home", command=python(FAKE_UP)) as up:
        assert up.dashboard_url == "http://127.0.0.1:9/"
        assert up.wait_for_line(r"^starting$", timeout=1).group(0) == "starting"
        assert up.returncode is None
        assert up.stop() == 0
        assert up.returncode == 0
        assert up.stop() == 0  # again: same answer, nothing left to do
    assert up.stdout_text == f"home {tmp_path / 'home'} cwd {ROOT} args --robots 3\n"
    assert up.stderr_text == "starting\ndashboard at http://127.0.0.1:9/\nstopped\n"
    assert not up.stray_processes
    assert all(pipe.closed for pipe in (up._process.stdout, up._process.stderr))


def test_without_a_command_it_runs_depai_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert up_process.UP_COMMAND == [sys.executable, "-m", "launch.cli", "up"]
    monkeypatch.setattr(up_process, "UP_COMMAND", python(FAKE_UP))  # `depai up` itself is not started here
    with UpProcess(["--robots", "3"], tmp_path) as up:
        assert up.argv == [*python(FAKE_UP), "--robots", "3"]
        assert up.dashboard_url == "http://127.0.0.1:9/"


def test_leaving_with_stops_it(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(FAKE_UP)) as up:
        up.wait_for_line("dashboard at", timeout=30)
    assert up.returncode == 0
    assert up.stderr_text.endswith("stopped\n")


def test_a_process_deaf_to_sigint_is_killed_after_the_timeout(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(DEAF_UP)) as up:
        up.wait_for_line("ready", timeout=30)
        started = time.monotonic()
        assert up.stop(timeout=0.5) == -9
        assert time.monotonic() - started < 10
    assert up.returncode == -9


def test_waiting_for_a_line_from_a_process_that_exits_says_how_it_ended(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(FAILING_UP)) as up:
        with pytest.raises(AssertionError, match=r"exited with code 3 before it printed a line matching") as info:
            up.dashboard_url
        assert "error: no fleet configured" in str(info.value)
        assert up.stop() == 3


def test_waiting_for_a_line_times_out(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(FAKE_UP)) as up:
        up.wait_for_line("dashboard at", timeout=30)
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"printed no line in 0.3 s matching 'never'; its stderr ends:\n"
                                                 r"starting\ndashboard at"):
            up.wait_for_line("never", timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 5


def test_lots_of_output_never_blocks_it(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(CHATTY_UP)) as up:
        assert up.dashboard_url == "http://127.0.0.1:9/chatty"
        assert up.stop() == 0
    assert len(up.stdout_lines) == 20000 and len(up.stderr_lines) == 20001
    assert up.stdout_lines[-1].startswith("stdout line 19999 ")


def test_children_it_leaves_behind_are_killed_and_reported(tmp_path: Path) -> None:
    with UpProcess([], tmp_path, command=python(CARELESS_UP)) as up:
        child = int(up.wait_for_line(r"^child (\d+)$", timeout=30).group(1))
        assert up.stop() == 0
    assert up.stray_processes
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_a_command_that_ignores_sigint_from_the_start_still_gets_it(tmp_path: Path) -> None:
    """pytest started in the background by a script inherits an ignored SIGINT, and so would the command."""
    script = ("import signal, subprocess, sys, pathlib; signal.signal(signal.SIGINT, signal.SIG_IGN); "
              "sys.path.insert(0, sys.argv[1]); from tests.launch.up_process import UpProcess; "
              f"up = UpProcess([], pathlib.Path(sys.argv[2]), command=[sys.executable, '-c', {FAKE_UP!r}]); "
              "up.wait_for_line('dashboard at', 30); print(up.stop(timeout=10))")
    result = subprocess.run([sys.executable, "-W", "error", "-c", script, str(ROOT), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "0\n", "")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
