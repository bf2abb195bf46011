"""Real robots in a running ``depai up`` fleet: one in JavaScript, one through the hardware bridge.

The JavaScript robot (robots/js/robot.mjs, written from docs/protocol.md) joins
over the real broker with its own login, shows in the fleet API, and its
tampered and replayed messages are refused with their reasons. The bridged
robot's motors and sensors are a scripted stand-in in a separate process
(robots/bridge/standin.py) speaking the JSON adapter over UDP to ``depai bridge
run``, which runs the fleet's agent for it over the real broker. The fleet runs
in real time, as it must with real robots. Also: the wrong key for a DID, and a
robot not enrolled, are refused with a clear error before anything connects.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import JS_ROBOT
from tests.launch.up_process import ROOT, UpProcess

FLEET = ["--robots", "1", "--city", "2", "--seed", "3", "--orders-per-min", "6", "--port", "0", "--scan-hz", "0.5"]


def depai(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "DEPAI_HOME": str(home)})


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet founded (briefly run in process), with two robots enrolled: one for the bridge, one in JavaScript."""
    home = tmp_path_factory.mktemp("home")
    founded = depai(home, "up", *FLEET, "--broker", "none", "--for", "1", "--json")
    assert founded.returncode == 0, founded.stderr
    for name in ("courier-7", "js-1"):
        enrolled = depai(home, "bridge", "enroll", name, "--json")
        assert enrolled.returncode == 0, enrolled.stderr
    return home


@pytest.fixture(scope="module")
def fleet(home: Path) -> Iterator[tuple[UpProcess, httpx.Client]]:
    """``depai up`` in real time over a real broker, the enrolled robots admitted."""
    with UpProcess(["--speed", "1", "--port", "0", "--orders-per-min", "6"], home) as up:
        up.wait_for_line(r"2 real ones admitted")
        with httpx.Client(base_url=up.dashboard_url, timeout=10) as api:
            yield up, api
        assert up.stop() == 0


def record(home: Path, name: str) -> dict[str, Any]:
    return json.loads((home / "fleet" / "bridges" / f"{name}.json").read_text())


def refused(api: httpx.Client) -> dict[str, int]:
    return api.get("/api/status").json()["refused"]


def run_js(node: str, home: Path, mode: str, seconds: float) -> subprocess.CompletedProcess[str]:
    state = home / "fleet"
    robot = record(home, "js-1")
    env = {**os.environ, "DEPAI_SEED": (state / "bridges" / "js-1.key").read_text().strip(), "DEPAI_DID": robot["did"],
           "DEPAI_USERNAME": robot["address"], "DEPAI_PASSWORD": robot["password"],
           "DEPAI_BROKER": json.loads((state / "bridge.json").read_text())["broker"],
           "DEPAI_DOCUMENT": str(state / "bridges" / "js-1.document.json"), "DEPAI_X": "40", "DEPAI_Y": "48",
           "DEPAI_SECONDS": str(seconds), "DEPAI_MODE": mode}
    return subprocess.run([node, str(JS_ROBOT)], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_javascript_robot_joins_the_fleet_and_its_tampered_and_replayed_messages_are_refused(
        node: str, home: Path, fleet: tuple[UpProcess, httpx.Client]) -> None:
    _, api = fleet
    did = record(home, "js-1")["did"]
    honest = run_js(node, home, "honest", 3)
    assert honest.returncode == 0, honest.stderr
    shown = api.get(f"/api/robots/{did}").json()
    assert shown["telemetry"]["pose"]["x"] > 40 and shown["document"]["id"] == did
    assert any(r["did"] == did and r["x"] is not None for r in api.get("/api/robots").json())  # what the map draws
    for mode, reason in (("tamper", "bad_signature"), ("replay", "replayed")):
        before = refused(api).get(reason, 0)
        cheated = run_js(node, home, mode, 3)
        assert cheated.returncode == 0, cheated.stderr
        deadline = time.monotonic() + 10
        while refused(api).get(reason, 0) == before:
            assert time.monotonic() < deadline, f"{mode}: no {reason} refusal counted"
            time.sleep(0.5)
        assert refused(api)[reason] == before + 1
        assert api.get(f"/api/robots/{did}").json()["refusals"].get(reason, 0) >= 1  # under its own DID too


def test_a_bridged_robot_joins_bids_delivers_and_is_paid(home: Path, fleet: tuple[UpProcess, httpx.Client]) -> None:
    up, api = fleet
    robot = record(home, "courier-7")
    roads = json.loads((home / "fleet" / "roads.json").read_text())
    depot = next(node for node in roads["nodes"] if str(node["id"]).startswith("depot"))
    x, y = depot["pos"]
    port = free_udp_port()
    env = {**os.environ, "DEPAI_HOME": str(home)}
    bridge = subprocess.Popen([sys.executable, "-m", "launch.cli", "bridge", "run", "courier-7", "--udp",
                               f"127.0.0.1:{port}"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    standin = subprocess.Popen([sys.executable, "-m", "robots.bridge.standin", "--bridge", f"127.0.0.1:{port}",
                                "--x", str(x), "--y", str(y)], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        seen = paid = None
        while paid is None:
            assert time.monotonic() < deadline, f"no paid delivery by the bridged robot:\n{up.stderr_text[-1500:]}"
            assert bridge.poll() is None and standin.poll() is None, "the bridge or the stand-in died"
            shown = api.get(f"/api/robots/{robot['did']}").json()
            if shown.get("telemetry"):
                seen = shown
            if shown.get("earnings", {}).get("total", 0) > 0:
                paid = shown
            time.sleep(2)
        assert seen is not None and seen["document"]["controller"] == api.get("/api/dao").json()["did"]
        assert any(t["robot"] == robot["did"] and t["state"] == "settled" for t in paid["tasks"])
        status = api.get("/api/status").json()  # the bridged robot and the JavaScript one are real robots
        assert (status["robots"], status["robots_simulated"], status["robots_real"]) == (3, 1, 2), status
        assert api.get(f"/api/robots/{robot['did']}").json()["online"] is True
    finally:
        for process in (bridge, standin):
            process.send_signal(signal.SIGINT)
        bridge_out, bridge_err = bridge.communicate(timeout=30)
        standin.communicate(timeout=30)
    assert bridge.returncode == 0, bridge_err
    assert "delivered" in bridge_out
    # The bridge's clean stop sent its signed death: the fleet shows it offline well before 10 s of silence would.
    deadline = time.monotonic() + 6
    while api.get(f"/api/robots/{robot['did']}").json()["state"] != "offline":
        assert time.monotonic() < deadline, "the bridged robot's death did not make it offline"
        time.sleep(0.5)
    told = depai(home, "bridge", "status", "courier-7", "--json", timeout=60)
    assert told.returncode == 0, told.stderr
    assert json.loads(told.stdout)["state"] == "offline" and json.loads(told.stdout)["messages"]["death"] == 1


def test_a_robot_claiming_another_robots_did_without_its_key_is_refused_before_connecting(home: Path,
                                                                                      tmp_path: Path) -> None:
    robot = record(home, "courier-7")
    (tmp_path / "other.key").write_text("11" * 32)
    forged = {**robot, "name": "courier-x", "key_file": str(tmp_path / "other.key")}
    (home / "fleet" / "bridges" / "courier-x.json").write_text(json.dumps(forged))
    try:
        result = depai(home, "bridge", "run", "courier-x", "--udp", f"127.0.0.1:{free_udp_port()}", timeout=60)
    finally:
        (home / "fleet" / "bridges" / "courier-x.json").unlink()
    assert result.returncode == 1
    assert f"is not {robot['did']}'s key" in result.stderr
    assert "key file made when the robot was enrolled" in result.stderr


def test_a_robot_not_enrolled_is_named_with_what_to_do(home: Path) -> None:
    result = depai(home, "bridge", "run", "courier-99", "--udp", "127.0.0.1:7799", timeout=60)
    assert result.returncode == 3
    assert "no robot named 'courier-99' is enrolled" in result.stderr and "depai bridge enroll" in result.stderr


@pytest.mark.parametrize("name", ["../../x", "a/b", "", "_under", "x" * 65, "space name"])
def test_a_robot_name_that_is_not_one_is_refused_before_anything_is_written(home: Path, name: str) -> None:
    state = home / "fleet"
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    result = depai(home, "bridge", "enroll", name, timeout=60)
    assert result.returncode == 2 and "is not a robot name" in result.stderr and "courier-7" in result.stderr
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert not (state.parent / "x.key").exists()
