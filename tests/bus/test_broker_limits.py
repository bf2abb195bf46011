"""A broker dies with its owner and never shares its data dir; its message size and per-login limits; and a
missing Mosquitto fails under CI. Real brokers and real processes throughout."""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.broker import MAX_MESSAGE_BYTES, BrokerConfig, MqttUser, start_broker
from bus.processes import alive, command_line
from tests.bus.conftest import require_mosquitto

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "depai/v1/robots/3/5Gtest/telemetry"


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- a broker dies with its owner, and never shares its data dir --------------------------------------

OWNER = """
import sys, time
import bus.broker as broker
if sys.argv[3] == "no-death-signal":  # as before the fix: nothing ends the broker with its owner
    broker.die_with_parent = lambda parent=None: None
running = broker.start_broker(sys.argv[1], broker.BrokerConfig(data_dir=sys.argv[2]))
print(running.pid, running.port, flush=True)
time.sleep(600)
"""


def brokers_on(data_dir: Path) -> list[int]:
    """The live processes whose command line names a file in ``data_dir`` (a broker's configuration)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (argv := command_line(int(entry))) and any(a.startswith(f"{data_dir}/") for a in argv):
            found.append(int(entry))
    return found


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, int, int]]]:
    """Start a process that starts a broker of ``kind`` on ``data_dir`` and then sleeps: (process, broker pid,
    port). Every broker it started is ended after the test, whatever happened."""
    started: list[tuple[subprocess.Popen, int]] = []

    def start(kind: str, data_dir: Path, mode: str = "as-shipped") -> tuple[subprocess.Popen, int, int]:
        errors = tmp_path / f"owner-{len(started)}.err"
        with open(errors, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", OWNER, kind, str(data_dir), mode], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=err, text=True)
        started.append((proc, 0))
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=30)
        line = proc.stdout.readline().split() if ready else []
        assert len(line) == 2, f"the owner failed: {errors.read_text()}"
        started[-1] = (proc, int(line[0]))
        return proc, int(line[0]), int(line[1])

    yield start
    for proc, broker_pid in started:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if alive(broker_pid) and (command_line(broker_pid) or [""])[-1].startswith(str(tmp_path)):
            os.kill(broker_pid, signal.SIGKILL)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_broker_dies_with_the_process_that_started_it(broker_kind, owner, tmp_path) -> None:
    data_dir = tmp_path / "broker"
    proc, broker_pid, port = owner(broker_kind, data_dir)
    assert alive(broker_pid) and port_open(port)
    proc.send_signal(signal.SIGKILL)  # as a crash of `depai up` would
    proc.wait()
    assert wait_until(lambda: not alive(broker_pid), 5), "the broker outlived the process that started it"
    assert not port_open(port)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts processes in /proc")
def test_a_broker_left_running_by_a_killed_owner_is_ended_before_another_starts(broker_kind, owner, tmp_path) -> None:
    data_dir = tmp_path / "broker"
    proc, orphan, port = owner(broker_kind, data_dir, "no-death-signal")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    assert alive(orphan) and port_open(port), "the orphan to clean up did not survive its owner"
    assert json.loads((data_dir / "broker.pid").read_text())["pid"] == orphan

    with start_broker(broker_kind, BrokerConfig(data_dir=data_dir)) as second:
        assert not alive(orphan), "the broker left running was not ended"
        assert brokers_on(data_dir) == [second.pid], "two brokers share one data dir"
        assert json.loads((data_dir / "broker.pid").read_text())["pid"] == second.pid
        assert not port_open(port) or port == second.port
    assert not (data_dir / "broker.pid").exists(), "a clean stop leaves no pid file"


def test_a_stale_pid_file_is_removed_and_ends_nobody(tmp_path) -> None:
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for record in (
            # a live process that is not a broker of this data dir, recorded with a broker's command line
            {"pid": stranger.pid, "argv": [sys.executable, "-m", "amqtt.scripts.broker_script", "-c",
                                            str(data_dir / "amqtt.yaml")], "started": None},
            {"pid": 2 ** 22 + 17, "argv": ["mosquitto", "-c", str(data_dir / "mosquitto.conf")]},  # no such pid
            "not json at all",
        ):
            (data_dir / "broker.pid").write_text(record if isinstance(record, str) else json.dumps(record))
            with start_broker("amqtt", BrokerConfig(data_dir=data_dir)) as broker:
                assert json.loads((data_dir / "broker.pid").read_text())["pid"] == broker.pid
            assert stranger.poll() is None, "a process that is not our broker was ended"
    finally:
        stranger.kill()
        stranger.wait()


# --- the message size limit -------------------------------------------------------------------------------

def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n // 128, n % 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_connect(port: int, client_id: str, username: str | None = None, password: str | None = None,
                *, wait: bool = True, clean: bool = True) -> tuple[socket.socket, int | None]:
    """An MQTT 3.1.1 CONNECT on a plain socket (keep-alive 60 s): (the socket, CONNACK's return code, or None
    if ``wait`` is False or the broker closed without one)."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + _string(client_id)
    body += (_string(username) if username is not None else b"") + (_string(password) if password is not None else b"")
    # amqtt checks one password at a time, ~0.3 s each (Argon2): the last of 50 CONNECTs waits ~15 s, or more
    # on a busy machine
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(b"\x10" + _length(len(body)) + body)
    return sock, (read_connack(sock) if wait else None)


def read_connack(sock: socket.socket) -> int | None:
    reply = b""
    try:
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                return None
            reply += chunk
    except OSError:
        return None
    assert reply[0] == 0x20, reply
    return reply[3]


def still_connected(sock: socket.socket, timeout: float = 3.0) -> bool:
    """PINGREQ, and True if PINGRESP comes back: the broker still serves this connection."""
    try:
        sock.settimeout(timeout)
        sock.sendall(b"\xc0\x00")
        return sock.recv(2) == b"\xd0\x00"
    except OSError:
        return False


def test_a_publish_over_the_size_limit_is_refused_and_never_delivered(broker, mqtt_connect) -> None:
    subscriber = mqtt_connect(broker)
    assert subscriber.subscribe_wait("depai/v1/#").value == 1
    largest = bytes(MAX_MESSAGE_BYTES)
    mqtt_connect(broker).publish(TOPIC, largest, qos=1).wait_for_publish(10)
    arrived = subscriber.next_message(timeout=10)
    assert arrived is not None and len(arrived.payload) == MAX_MESSAGE_BYTES, "the largest valid message was refused"

    sock, code = raw_connect(broker.port, "oversized")
    assert code == 0
    payload = bytes(10 * 1024 * 1024)
    variable = _string(TOPIC) + (1).to_bytes(2, "big")  # topic, packet id (QoS 1)
    packet = b"\x32" + _length(len(variable) + len(payload)) + variable + payload
    outcome: list[str] = []

    def send() -> None:
        try:
            sock.sendall(packet)
            outcome.append("sent")
        except OSError as err:
            outcome.append(f"cut off: {err}")

    sender = threading.Thread(target=send)
    sender.start()
    sock.settimeout(10)
    try:
        reply = sock.recv(4)  # a PUBACK would be b"\x40\x02\x00\x01"
    except OSError:
        reply = b""
    sender.join(15)
    sock.close()
    assert reply == b"", f"the broker answered a 10 MB PUBLISH with {reply!r} instead of closing the connection"
    assert subscriber.next_message(timeout=1.5) is None, "the 10 MB message reached a subscriber"

    after = mqtt_connect(broker)
    after.publish(TOPIC, b"small", qos=1).wait_for_publish(5)
    message = subscriber.next_message()
    assert message is not None and message.payload == b"small", "the broker stopped serving after the refusal"


# --- the per-login limits -------------------------------------------------------------------------------

def _address() -> str:
    from identity.did import did_peaq
    from identity.keys import Signer

    return did_peaq(Signer.generate().public_key).rsplit(":", 1)[1]


@pytest.mark.usefixtures("needs_mosquitto")
@pytest.mark.parametrize("clean", [False, True], ids=["persistent", "clean"])
def test_fifty_sessions_of_one_pinned_robot_login_leave_one_on_mosquitto(clean, tmp_path) -> None:
    """Mosquitto cannot count a login's sessions; a robot pinned to its address (MqttUser.client_id) has one:
    of 50 CONNECTs at once with its login each takes the last one's session over, and another client id is
    refused."""
    address = _address()
    robot = MqttUser(address, secrets.token_urlsafe(12), "robot", client_id=address)
    with start_broker("mosquitto", BrokerConfig(data_dir=tmp_path / "broker", users=[robot])) as broker:
        clients = json.loads((broker.data_dir / "dynamic-security.json").read_text())["clients"]
        assert [c.get("clientid") for c in clients] == [address]
        sessions = [raw_connect(broker.port, address, robot.username, robot.password, wait=False, clean=clean)[0]
                    for _ in range(50)]
        codes = [read_connack(sock) for sock in sessions]
        assert 0 in codes, f"the robot could not connect at all: {codes}"
        stranger, code = raw_connect(broker.port, f"{address}-2", robot.username, robot.password)
        assert code == 5, "the pinned login connected with another client id"
        connected = [sock for sock in sessions if still_connected(sock, timeout=1.0)]
        for sock in [*sessions, stranger]:
            sock.close()
    assert len(connected) == 1, f"{len(connected)} of 50 sessions of one robot login stayed connected"


def test_amqtt_counts_the_connections_of_a_login(tmp_path) -> None:
    """amqtt counts a login's connections, whatever their client ids: of 50 CONNECTs at once with one robot
    login, one is let in; a shared login gets its limit; a pinned login no other client id; and a closed
    connection frees its place."""
    robot = MqttUser(_address(), secrets.token_urlsafe(12), "robot")
    service = MqttUser("services", secrets.token_urlsafe(12), "service", max_sessions=3)
    pinned = MqttUser(_address(), secrets.token_urlsafe(12), "robot", client_id="its-own-id")
    users = [robot, service, pinned]
    with start_broker("amqtt", BrokerConfig(data_dir=tmp_path / "broker", users=users)) as broker:
        attempts = [raw_connect(broker.port, f"robot-{i}", robot.username, robot.password, wait=False)[0]
                    for i in range(50)]
        codes = [read_connack(sock) for sock in attempts]
        assert codes.count(0) == 1 and set(codes) == {0, 5}, f"one robot login, 50 CONNECTs at once: {codes}"
        first = attempts[codes.index(0)]
        assert [still_connected(sock, timeout=1.0) for sock in attempts].count(True) == 1
        again, code = raw_connect(broker.port, f"robot-{codes.index(0)}", robot.username, robot.password)
        assert code == 5, "a second connection with the same client id was let in beside the first"
        assert still_connected(first), "a refused CONNECT ended the connection it would have replaced"
        first.sendall(b"\xe0\x00")  # DISCONNECT
        freed = []

        def place_freed() -> bool:
            sock, code = raw_connect(broker.port, "robot-new", robot.username, robot.password)
            freed.append(sock)
            return code == 0

        assert wait_until(place_freed, 5), "a closed connection did not free its place"
        shared = [raw_connect(broker.port, f"svc-{i}", service.username, service.password) for i in range(4)]
        assert [code for _, code in shared] == [0, 0, 0, 5]
        other, other_code = raw_connect(broker.port, "another-id", pinned.username, pinned.password)
        own, own_code = raw_connect(broker.port, "its-own-id", pinned.username, pinned.password)
        assert (other_code, own_code) == (5, 0)
        for sock in [*attempts, again, *freed, *(s for s, _ in shared), other, own]:
            sock.close()


# --- a missing Mosquitto --------------------------------------------------------------------------------

def test_a_missing_mosquitto_fails_under_ci_and_skips_elsewhere(monkeypatch) -> None:
    monkeypatch.setitem(require_mosquitto.__globals__, "mosquitto_binary", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        require_mosquitto()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_mosquitto()
