"""The JSON adapter: strict readings, refusals counted by reason, UDP and serial wires, and the stand-in robot.

The stand-in (robots/bridge/standin.py) runs as its own process over real
sockets; the last test puts the robot agent on it through the adapter's Body.
"""

import dataclasses
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from bus.session import MachineSession, Outgoing
from bus.topics import topic_root
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry
from robots.agent import RobotAgent
from robots.body import BodyProfile
from robots.bridge.adapter import (
    MAX_BEAMS,
    MAX_READING_BYTES,
    AdapterError,
    SerialAdapter,
    UdpAdapter,
    drive_command,
    encode_command,
    load_command,
    parse_command,
    parse_reading,
    unload_command,
)
from robots.commands import CommandGate
from robots.planner import RoadPlanner
from sim.city import generate_city

ROOT = Path(__file__).resolve().parents[2]
PROFILE = BodyProfile("courier", max_speed_mps=1.5, max_turn_rps=2.0, radius_m=0.4, payload_kg=10.0, mass_kg=40.0,
                      battery_wh=500.0, wh_per_m=0.05, idle_w=20.0)


def reading(t: float = 12.5, **changes: object) -> dict:
    """A good reading, with fields replaced (``odom__x=...`` replaces one field of odom)."""
    body = {"t": t, "odom": {"x": 1.0, "y": 2.0, "theta": 0.5, "v": 0.8, "w": -0.1, "distance": 152.3},
            "gnss": {"x": 101.3, "y": 48.2, "sigma": 0.3},
            "scan": {"angle_min": -2.356, "angle_increment": 0.0736, "range_max": 12.0, "ranges": [3.2, None, 4.1]},
            "battery": 0.87, "charging": False}
    for key, value in changes.items():
        outer, _, inner = key.partition("__")
        if inner:
            body[outer] = {**body[outer], inner: value}
        elif value is ...:
            del body[outer]
        else:
            body[outer] = value
    return body


def wire(t: float = 12.5, **changes: object) -> bytes:
    return orjson.dumps(reading(t, **changes))


def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)


# --- parsing -----------------------------------------------------------------------------------------------


def test_a_good_reading_becomes_sensors() -> None:
    sensors = parse_reading(wire())
    assert sensors.t_s == 12.5 and sensors.odometry == (12.5, 1.0, 2.0, 0.5, 0.8, -0.1, 152.3)
    assert sensors.gnss == (12.5, 101.3, 48.2, 0.3)
    assert sensors.scan.ranges.tolist() == [3.2, math.inf, 4.1] and sensors.scan.nearest == 3.2
    assert (sensors.battery, sensors.charging, sensors.payload, sensors.load_kg) == (0.87, False, None, 0.0)
    bare = parse_reading(orjson.dumps({**reading(), "gnss": None, "scan": None}))
    assert bare.gnss is None and bare.scan is None
    clear = parse_reading(wire(scan__ranges=[None] * MAX_BEAMS))  # integers, the longest scan, all clear
    assert clear.scan.nearest == math.inf and len(clear.scan.ranges) == MAX_BEAMS
    assert parse_reading(wire(t=3, battery=1, odom__distance=0)).t_s == 3.0


GARBAGE = {
    "not json": (b"robot says hi", "malformed_json", "not one JSON object"),
    "not utf-8": (b'{"t": "\xff"}', "malformed_json", "UTF-8"),
    "nan": (wire().replace(b'"t":12.5', b'"t":NaN'), "malformed_json", "unexpected character"),
    "infinity": (wire().replace(b'"t":12.5', b'"t":1e400'), "malformed_json", "infinity"),
    "a list": (b"[1, 2]", "bad_field", "reading: expected an object"),
    "t a string": (wire(t="soon"), "bad_field", "t: expected a finite number"),
    "battery true": (wire(battery=True), "bad_field", "battery: expected a finite number"),
    "battery above 1": (wire(battery=1.2), "bad_field", "battery: expected a number in [0, 1], got 1.2"),
    "battery below 0": (wire(battery=-0.1), "bad_field", "battery: expected a number in [0, 1]"),
    "no odom": (wire(odom=...), "bad_field", "missing odom"),
    "odom no theta": (wire(odom={"x": 0, "y": 0, "v": 0, "w": 0, "distance": 0}), "bad_field", "odom: expected"),
    "odom a list": (wire(odom=[1, 2]), "bad_field", "odom: expected an object"),
    "odometer negative": (wire(odom__distance=-1), "bad_field", "odom.distance"),
    "unknown field": (wire(gps=1), "bad_field", "unknown gps"),
    "no battery": (wire(battery=...), "bad_field", "missing battery"),
    "charging 0": (wire(charging=0), "bad_field", "charging: expected true or false"),
    "sigma 0": (wire(gnss__sigma=0), "bad_field", "gnss.sigma: expected a number above 0"),
    "range negative": (wire(scan__ranges=[1.0, -2.0]), "bad_field", "scan.ranges[1]"),
    "range beyond max": (wire(scan__ranges=[13.0]), "bad_field", "scan.ranges[0]: expected a number in [0, 12]"),
    "range a string": (wire(scan__ranges=["far"]), "bad_field", "scan.ranges[0]"),
    "too many beams": (wire(scan__ranges=[1.0] * (MAX_BEAMS + 1)), "bad_field", f"1..{MAX_BEAMS}"),
    "no beams": (wire(scan__ranges=[]), "bad_field", "scan.ranges"),
    "increment 0": (wire(scan__angle_increment=0), "bad_field", "scan.angle_increment"),
    "oversized": (b" " * (MAX_READING_BYTES + 1), "oversized", f"at most {MAX_READING_BYTES} bytes"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_is_refused_with_its_reason_and_what_was_expected(name: str) -> None:
    data, code, message = GARBAGE[name]
    with pytest.raises(AdapterError, match=re.escape(message)) as refused:
        parse_reading(data)
    assert refused.value.code == code


def test_commands_round_trip_and_anything_else_is_refused() -> None:
    for command in (drive_command(0.8, -0.1), load_command("run1-order-3", 2.5), unload_command()):
        assert parse_command(encode_command(command)) == command
    assert encode_command(drive_command(1, 0)) == b'{"drive":{"v":1.0,"w":0.0}}'
    for bad in (b"{}", b'{"fly": true}', b'{"drive": {"v": "fast", "w": 0}}', b'{"unload": false}', b"[]"):
        with pytest.raises(AdapterError):
            parse_command(bad)


# --- the UDP wire ------------------------------------------------------------------------------------------


@pytest.fixture
def adapter() -> Iterator[UdpAdapter]:
    with UdpAdapter() as adapter:
        yield adapter


@pytest.fixture
def robot_socket(adapter: UdpAdapter) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.connect(adapter.address)
        sock.settimeout(5.0)
        yield sock


def test_udp_round_trip_learns_the_robot_and_sends_commands_back(adapter: UdpAdapter,
                                                                  robot_socket: socket.socket) -> None:
    body = adapter.body(PROFILE)
    with pytest.raises(RuntimeError, match=f"no reading from the robot on udp 127.0.0.1:{adapter.address[1]}"):
        body.sense()
    with pytest.raises(RuntimeError, match="not known yet"):
        body.drive(1.0, 0.0)
    robot_socket.send(wire(t=100.0))
    assert adapter.wait_reading(timeout=5).t_s == 100.0
    assert adapter.robot == robot_socket.getsockname()
    body.drive(9.0, 0.2)  # clamped by the profile before it goes out
    assert parse_command(robot_socket.recv(65536)) == drive_command(1.5, 0.2)
    body.load("parcel-7", 2.0)
    body.unload()
    assert [parse_command(robot_socket.recv(65536)) for _ in range(2)] == [load_command("parcel-7", 2.0),
                                                                             unload_command()]
    assert 100.0 <= body.now_s() < 101.0  # the robot's clock, carried on from its last reading
    robot_socket.send(wire(t=100.1, gnss=None, scan=None))
    until(lambda: adapter.latest().t_s == 100.1, what="the second reading")
    kept = adapter.latest()  # a fix and a scan are sent once, and stay the latest until the next
    assert kept.gnss.t_s == 100.0 and kept.scan.t_s == 100.0 and kept.odometry.t_s == 100.1


def test_garbage_over_udp_is_counted_and_never_replaces_the_latest_reading(adapter: UdpAdapter,
                                                                           robot_socket: socket.socket) -> None:
    robot_socket.send(wire(t=1.0))
    good = adapter.wait_reading(timeout=5)
    for data, _, _ in GARBAGE.values():
        robot_socket.send(data)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(wire(t=2.0), adapter.address)  # a good reading, from someone who is not the robot
    expected = {"malformed_json": 4, "bad_field": 19, "oversized": 1, "wrong_sender": 1}
    until(lambda: adapter.refused == expected, what=f"refusals {expected} (got {adapter.refused})")
    assert adapter.latest() is good
    assert adapter.last_error.startswith("wrong_sender: a datagram from 127.0.0.1:")
    robot_socket.send(wire(t=3.0))
    until(lambda: adapter.latest().t_s == 3.0, what="a good reading after the garbage")


def test_waiting_for_a_robot_that_never_speaks_names_the_port() -> None:
    with UdpAdapter() as adapter:
        port = adapter.address[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"no reading from the robot on udp 127.0.0.1:{port} within 0.2 s"):
            adapter.wait_reading(timeout=0.2)
        assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError, match="closed"):
        adapter.send(unload_command())


# --- the serial wire ---------------------------------------------------------------------------------------


def test_serial_over_a_pty_reads_lines_and_writes_commands() -> None:
    controller, device = os.openpty()  # the test holds the robot's end of the line
    try:
        with SerialAdapter(os.ttyname(device)) as adapter:
            line = wire(t=5.0) + b"\r\n"
            os.write(controller, line[:40])  # a line may come in pieces
            os.write(controller, line[40:] + b"\n")  # and blank lines are skipped
            assert adapter.wait_reading(timeout=5).t_s == 5.0
            os.write(controller, b"not json\n" + wire(battery=7) + b"\n")
            os.write(controller, b"x" * (MAX_READING_BYTES + 10_000) + b"\n")  # refused once, however long
            os.write(controller, wire(t=6.0) + b"\n")
            until(lambda: adapter.latest().t_s == 6.0, what="the reading after the garbage")
            assert adapter.refused == {"malformed_json": 1, "bad_field": 1, "oversized": 1}
            adapter.body(PROFILE).drive(0.5, 0.1)
            assert select.select([controller], [], [], 5.0)[0]
            assert os.read(controller, 4096) == encode_command(drive_command(0.5, 0.1)) + b"\n"  # no echo
    finally:
        os.close(controller)
        os.close(device)


def test_a_serial_device_going_away_is_reported_and_the_latest_reading_stays() -> None:
    controller, device = os.openpty()
    with SerialAdapter(os.ttyname(device)) as adapter:
        os.write(controller, wire(t=5.0) + b"\n")
        adapter.wait_reading(timeout=5)
        os.close(controller)
        os.close(device)
        until(lambda: (adapter.last_error or "").startswith("device: "), what="the adapter noticing")
        assert adapter.latest().t_s == 5.0 and adapter.refused.total() == 0


def test_a_serial_device_that_is_not_there_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SerialAdapter(tmp_path / "ttyUSB9")


# --- the stand-in robot ------------------------------------------------------------------------------------


@contextmanager
def standin(adapter: UdpAdapter, *args: str, stop: signal.Signals = signal.SIGTERM) -> Iterator[subprocess.Popen]:
    """The stand-in process reporting to ``adapter``; on leaving, stopped by ``stop``, which must exit 0."""
    host, port = adapter.address
    process = subprocess.Popen([sys.executable, "-m", "robots.bridge.standin", "--bridge", f"{host}:{port}", *args],
                               cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        ready = process.stdout.readline()
        assert ready.startswith("standin ready on 127.0.0.1:"), ready + process.stderr.read()
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0 and out == "" and err == "", (process.returncode, out, err)


def drive_for(adapter: UdpAdapter, seconds: float, v: float, w: float = 0.0) -> None:
    for _ in range(round(seconds * 10)):
        adapter.send(drive_command(v, w))
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_standin_drives_as_commanded_and_reports_it(adapter: UdpAdapter, stop: signal.Signals) -> None:
    with standin(adapter, "--x", "10", "--y", "-2", "--theta", str(math.pi / 2), "--max-speed", "1.5", stop=stop):
        first = adapter.wait_reading(timeout=5)
        assert (first.odometry.x, first.odometry.y, first.odometry.theta) == (10.0, -2.0, pytest.approx(math.pi / 2))
        assert abs(first.gnss.x - 10.0) < 1.5 and first.gnss.sigma_m == 0.3
        assert len(first.scan.ranges) == 64 and first.scan.nearest == math.inf
        assert first.scan.angle_increment * 64 == pytest.approx(1.5 * math.pi)
        drive_for(adapter, 1.0, 9.0)  # too fast: the robot clamps it to its own 1.5 m/s
        moving = adapter.latest()
        assert moving.odometry.y + 2.0 > 1.0 and moving.odometry.v == pytest.approx(1.5 * 1.01)
        assert abs(moving.odometry.x - 10.0) < 1e-6 and moving.battery < first.battery
        until(lambda: adapter.latest().odometry.v == 0.0, timeout=3, what="the watchdog stopping the robot")
        fix = adapter.latest().gnss  # its fix follows the true pose (the odometry reads 1 % long)
        assert fix.t_s > first.gnss.t_s and abs(fix.y - adapter.latest().odometry.y) < 1.5
        body = adapter.body(PROFILE)
        body.load("parcel-1", 2.0)  # obeyed quietly; anything it refused would be on its stderr
        body.unload()
        assert adapter.refused.total() == 0


def test_the_standins_garbage_is_refused_and_counted_while_good_readings_flow(adapter: UdpAdapter) -> None:
    with standin(adapter, "--garbage", "8", "--hz", "50"):
        adapter.wait_reading(timeout=5)
        until(lambda: adapter.refused.total() == 8, what="eight refusals")
        assert adapter.refused == {"malformed_json": 2, "bad_field": 4, "oversized": 2}
        before = adapter.latest().t_s
        until(lambda: adapter.latest().t_s > before, what="readings after the garbage")


def test_the_robot_agent_drives_the_standin_to_a_goto_goal(adapter: UdpAdapter, tmp_path: Path) -> None:
    """The agent, its planner on a small city's roads, a verified goto command, the stand-in as its robot."""
    roads = generate_city(7, 2).road_graph()
    assert roads.has_edge("n0_0", "n1_0")  # the street along y = 0, from x = 0 to 48
    start, goal = (8.0, -1.5), (30.0, 0.0)  # in the right-hand lane, heading east, the goal 22 m down the street
    profile = dataclasses.replace(PROFILE, max_speed_mps=2.5)
    with DidRegistry(tmp_path / "registry.sqlite3", refresh_interval_s=0.0) as registry:
        robot_key, commander_key = Signer.generate(), Signer.generate()
        robot = create_identity(registry, robot_key, topic_root=topic_root(did_peaq(robot_key.public_key))).did
        commander = create_identity(registry, commander_key).did
        said: list[Outgoing] = []
        agent = RobotAgent(adapter.body(profile),
                           MachineSession(EnvelopeSigner(robot_key, robot), topic_root(robot),
                                          registry.active(robot).document),
                           RoadPlanner(roads), send=said.append, clock=time.time,
                           gate=CommandGate(robot, topic_root(robot), registry, [commander]))
        with standin(adapter, "--x", str(start[0]), "--y", str(start[1]), "--max-speed", "2.5"):
            adapter.wait_reading(timeout=5)
            time.sleep(0.01)  # the command is issued after the commander's key was registered
            agent.receive(agent.gate.topic, EnvelopeSigner(commander_key, commander).seal(
                "command", {"to": robot, "type": "goto", "args": {"x": goal[0], "y": goal[1]}}))
            agent.step()  # localized on the first fix, it takes the command
            assert agent.mode == "goto"
            deadline, nearest = time.monotonic() + 30, math.inf
            while agent.mode == "goto":
                assert time.monotonic() < deadline, f"not there in 30 s: {nearest:.1f} m to go"
                agent.step()
                odometry = adapter.latest().odometry
                nearest = min(nearest, math.dist((odometry.x, odometry.y), goal))
                time.sleep(0.1)
            agent.body.drive(0.0, 0.0)
    events = [orjson.loads(message.payload)["body"]["type"] for message in said if message.topic.endswith("/event")]
    assert "goto.arrived" in events and "command.refused" not in events and agent.refused.total() == 0
    x, y, _ = agent.pose
    assert math.dist((x, y), goal) < 2.0 and nearest < 2.5  # the agent believes it, and the robot reports it
