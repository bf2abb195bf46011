"""Live admission and the broker's addresses (issue #18): real Mosquitto (and amqtt), real ``depai`` processes.

The fleet's broker is started by ``launch.broker_info.start_fleet_broker``, the function ``depai up`` starts it
with (its logins, its admin login, STATE/broker.json), while the test holds STATE/fleet.lock as a running
``depai up`` does; the rest of a fleet (simulators, services) plays no part in admitting a robot, and leaving it
out keeps these tests fast. ``depai bridge enroll`` and ``revoke`` run as the real command: a process of its own
where a robot is admitted and revoked live (``depai``), in this process where only the outcome of bad input or
another broker is checked (``cli``, to stay fast). Robots are paho clients logging in as enroll made them: over
the plain listener, and over TLS checking the server's certificate (hostname too) against the CA the fleet
generated.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bus.broker import BrokerKind, RunningBroker, dynsec_command
from bus.topics import topic_root
from identity.registry import DidRegistry
from launch.broker_info import DEFAULT_BROKER_PORT, broker_addresses, start_fleet_broker
from launch.broker_tls import fleet_tls
from launch.cli import main
from launch.identities import IdentityStore
from launch.up import lock_state
from tests.bus.conftest import RecordingClient, require_mosquitto
from tests.launch.up_process import ROOT

WAIT_S = 5.0
# paho leaves the socket of a failed TLS handshake for the collector to close (it raises before it keeps it)
PAHO_LEAKS_FAILED_TLS_SOCKET = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def depai(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "DEPAI_HOME": str(home), **(env or {})})


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``depai ARGS`` run in this process (``launch.cli.main``), its output and exit code as ``depai`` gives them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--home", str(home)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@dataclass
class Fleet:
    home: Path
    state: Path
    broker: RunningBroker
    logins: dict[str, Any]
    stack: contextlib.ExitStack

    def record(self, name: str) -> dict[str, Any]:
        return json.loads((self.state / "bridges" / f"{name}.json").read_text())


def founded(home: Path) -> Path:
    """A fleet's state with its DAO (what enroll needs of a fleet founded by depai up)."""
    state = home / "fleet"
    state.mkdir(parents=True)
    with DidRegistry(state / "registry.sqlite3") as registry:
        IdentityStore(state / "identities.json", registry).enroll("dao")
    return state


def start(stack: contextlib.ExitStack, state: Path, kind: BrokerKind = BrokerKind.MOSQUITTO, *,
          tls: bool = False, client_certs: str = "off") -> tuple[RunningBroker, dict[str, Any]]:
    """The fleet's broker as depai up starts it, admitting the robots enrolled and not revoked."""
    from launch.bridge_command import enrolled

    files = fleet_tls(state, ["127.0.0.1"]) if tls else None
    return start_fleet_broker(stack, state, kind, host="127.0.0.1", port=0, tls=files, tls_port=0,
                              robots=[robot.mqtt_user() for robot in enrolled(state)], client_certs=client_certs)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A running fleet on Mosquitto with a TLS listener: its lock held, its broker started as depai up does."""
    require_mosquitto()
    home = tmp_path / "home"
    state = founded(home)
    with contextlib.ExitStack() as stack:
        lock_state(state, stack)
        broker, logins = start(stack, state, tls=True)
        yield Fleet(home, state, broker, logins, stack)


def robot_client(fleet: Fleet, name: str, *, tls: dict[str, Any] | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> RecordingClient:
    """A robot logging in as enroll made it (client id = its address); raises ConnectionRefusedError if refused."""
    record = fleet.record(name)
    client = RecordingClient(record["address"])
    client.username_pw_set(record["address"], record["password"])
    gone: list[Any] = []  # the reasons the broker closed the connection
    client.disconnected = gone  # type: ignore[attr-defined]
    client.on_disconnect = lambda _c, _u, _f, reason, _p: gone.append(reason)
    if tls is not None:
        client.tls_set(**tls)  # paho checks the server's host name too (ssl.CERT_REQUIRED, check_hostname)
    client.connect(host, port or fleet.broker.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + WAIT_S  # a CONNACK, or the broker closing the connection (a TLS refusal)
    while not client.connected.is_set() and not gone and time.monotonic() < deadline:
        time.sleep(0.02)
    if not client.connected.is_set() or client.connect_reason is None or client.connect_reason.is_failure:
        client.loop_stop()
        raise ConnectionRefusedError(f"{name} was refused: {client.connect_reason}")
    return client


def service_client(fleet: Fleet) -> RecordingClient:
    client = RecordingClient(f"svc-{time.monotonic_ns()}")
    client.username_pw_set(fleet.logins["service"].username, fleet.logins["service"].password)
    client.connect("127.0.0.1", fleet.broker.port, keepalive=30)
    client.loop_start()
    assert client.connected.wait(WAIT_S) and not client.connect_reason.is_failure
    return client


def logins_on(fleet: Fleet) -> list[str]:
    """The usernames the running broker knows (its dynamic-security clients)."""
    held = json.loads((fleet.state / "broker.json").read_text())
    answer, = dynsec_command(held["url"], tuple(held["admin"]), [{"command": "listClients", "count": -1,
                                                                 "offset": 0}])
    return sorted(answer["data"]["clients"])


def snapshot(state: Path) -> dict[str, bytes]:
    """Every file of the state but the broker's own data (Mosquitto saves its state there every second)."""
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*"))
            if p.is_file() and "broker" not in p.relative_to(state).parts[:1]}


def test_a_robot_enrolled_while_the_fleet_runs_is_admitted_at_once_and_revoking_it_ends_its_session(
        fleet: Fleet) -> None:
    enrolled = depai(fleet.home, "bridge", "enroll", "courier-7", "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    out = json.loads(enrolled.stdout)
    assert out["admitted"] == "now" and out["broker"] == fleet.broker.url
    assert out["broker_tls"] == fleet.broker.tls_url and out["ca_file"] == str(fleet.state / "tls" / "ca.crt")

    # no restart: the robot logs in on the broker that was running, and what it publishes on its own topic arrives
    service = service_client(fleet)
    root = topic_root(out["did"])
    assert not service.subscribe_wait(f"{root}/#").is_failure
    robot = robot_client(fleet, "courier-7")
    assert robot.publish(f"{root}/telemetry", b"hello", qos=1).rc == mqtt.MQTT_ERR_SUCCESS
    heard = service.next_message()
    assert heard is not None and heard.topic == f"{root}/telemetry" and heard.payload == b"hello"
    assert robot.subscribe_wait("depai/v1/robots/#").is_failure  # and it is confined to its own topics

    revoked = depai(fleet.home, "bridge", "revoke", "courier-7", "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["session"] == "ended"
    deadline = time.monotonic() + WAIT_S
    while not robot.disconnected:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the revoked robot's session was not ended"
        time.sleep(0.05)
    robot.loop_stop()
    with pytest.raises(ConnectionRefusedError, match="Not authorized"):
        robot_client(fleet, "courier-7")
    record = fleet.record("courier-7")
    assert record["revoked_at"] is not None and Path(record["key_file"]).exists()  # record and key kept

    # the next start does not admit it either
    fleet.stack.close()
    with contextlib.ExitStack() as stack:
        fleet.broker, fleet.logins = start(stack, fleet.state)
        assert record["address"] not in logins_on(fleet)
        with pytest.raises(ConnectionRefusedError, match="Not authorized"):
            robot_client(fleet, "courier-7")
    service.loop_stop()


def test_enroll_and_revoke_refuse_bad_input_and_change_nothing(fleet: Fleet) -> None:
    assert cli(fleet.home, "bridge", "enroll", "courier-7").returncode == 0
    before, on_broker = snapshot(fleet.state), logins_on(fleet)

    unknown = cli(fleet.home, "bridge", "revoke", "courier-99")
    assert unknown.returncode == 3 and "no robot named 'courier-99' is enrolled" in unknown.stderr
    assert "courier-7" in unknown.stderr  # the hint names those that are
    twice = cli(fleet.home, "bridge", "enroll", "courier-7")
    assert twice.returncode == 1 and "enrolled already" in twice.stderr
    bad = cli(fleet.home, "bridge", "revoke", "../x")
    assert bad.returncode == 2 and "is not a robot name" in bad.stderr
    assert snapshot(fleet.state) == before and logins_on(fleet) == on_broker

    assert cli(fleet.home, "bridge", "revoke", "courier-7").returncode == 0
    before, on_broker = snapshot(fleet.state), logins_on(fleet)
    again = cli(fleet.home, "bridge", "revoke", "courier-7")
    assert again.returncode == 1 and "revoked already" in again.stderr
    reenrolled = cli(fleet.home, "bridge", "enroll", "courier-7")
    assert reenrolled.returncode == 1 and "revoked" in reenrolled.stderr and "another name" in reenrolled.stderr
    assert snapshot(fleet.state) == before and logins_on(fleet) == on_broker


def test_with_no_fleet_running_enroll_waits_for_the_next_start_and_revoke_keeps_it_out(tmp_path: Path) -> None:
    require_mosquitto()
    home = tmp_path / "home"
    state = founded(home)
    out = json.loads(cli(home, "bridge", "enroll", "courier-7", "--json").stdout)
    assert out["admitted"] == "next_start" and "not running" in out["note"]
    assert cli(home, "bridge", "enroll", "courier-8").returncode == 0
    revoked = cli(home, "bridge", "revoke", "courier-8", "--json")
    assert revoked.returncode == 0 and "not running" in json.loads(revoked.stdout)["note"]
    refused = cli(home, "bridge", "run", "courier-8", "--udp", "127.0.0.1:9")  # says so, not "not enrolled"
    assert refused.returncode == 1 and "courier-8 was revoked" in refused.stderr
    with contextlib.ExitStack() as stack:
        lock_state(state, stack)
        broker, logins = start(stack, state)
        fleet = Fleet(home, state, broker, logins, stack)
        robot_client(fleet, "courier-7").loop_stop()  # admitted at the start
        with pytest.raises(ConnectionRefusedError):
            robot_client(fleet, "courier-8")


def test_on_a_running_amqtt_fleet_enroll_waits_for_a_restart_and_revoke_says_the_session_goes_on(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = founded(home)
    with contextlib.ExitStack() as stack:
        lock_state(state, stack)
        start(stack, state, BrokerKind.AMQTT)
        enrolled = cli(home, "bridge", "enroll", "courier-7", "--json")
        assert enrolled.returncode == 0, enrolled.stderr
        out = json.loads(enrolled.stdout)
        assert out["admitted"] == "next_start" and "cannot admit a robot while it runs" in out["note"]
        revoked = cli(home, "bridge", "revoke", "courier-7")
        assert revoked.returncode == 1 and "cannot end its session now" in revoked.stderr
        assert "restart depai up" in revoked.stderr
    assert json.loads((state / "bridges" / "courier-7.json").read_text())["revoked_at"] is not None


@PAHO_LEAKS_FAILED_TLS_SOCKET
def test_a_robot_checking_the_server_against_the_fleet_ca_connects_over_tls_and_one_trusting_another_ca_cannot(
        fleet: Fleet, tmp_path: Path) -> None:
    assert cli(fleet.home, "bridge", "enroll", "courier-7").returncode == 0
    ca = broker_addresses(fleet.state)["ca_file"]
    for host in ("localhost", "127.0.0.1"):  # both in the server certificate's names
        robot_client(fleet, "courier-7", tls={"ca_certs": ca}, host=host, port=fleet.broker.tls_port).loop_stop()
    other = fleet_tls(tmp_path / "other", ["127.0.0.1"]).cafile  # another fleet's CA
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        robot_client(fleet, "courier-7", tls={"ca_certs": str(other)}, host="localhost", port=fleet.broker.tls_port)
    gc.collect()


@PAHO_LEAKS_FAILED_TLS_SOCKET
def test_with_client_certificates_required_a_robot_needs_the_one_enroll_issued(tmp_path: Path) -> None:
    require_mosquitto()
    home = tmp_path / "home"
    state = founded(home)
    fleet_tls(state, ["127.0.0.1"])  # the fleet's CA, as depai up --broker-tls made it before
    out = json.loads(cli(home, "bridge", "enroll", "courier-7", "--json").stdout)
    certfile, keyfile = out["client_cert"]
    assert oct(Path(keyfile).stat().st_mode & 0o777) == "0o600"
    with contextlib.ExitStack() as stack:
        lock_state(state, stack)
        broker, logins = start(stack, state, tls=True, client_certs="required")
        fleet = Fleet(home, state, broker, logins, stack)
        ca = str(state / "tls" / "ca.crt")
        robot_client(fleet, "courier-7", tls={"ca_certs": ca, "certfile": certfile, "keyfile": keyfile},
                     host="localhost", port=broker.tls_port).loop_stop()
        with pytest.raises((ConnectionRefusedError, ssl.SSLError, OSError)):
            robot_client(fleet, "courier-7", tls={"ca_certs": ca}, host="localhost", port=broker.tls_port)
        gc.collect()


def test_the_generated_keys_are_private_and_the_addresses_are_in_broker_json(fleet: Fleet) -> None:
    tls = fleet.state / "tls"
    for key in ("ca.key", "server.key"):
        assert oct((tls / key).stat().st_mode & 0o777) == "0o600"
    assert oct((fleet.state / "broker.json").stat().st_mode & 0o777) == "0o600"
    held = json.loads((fleet.state / "broker.json").read_text())
    assert held["admin"][0] == "depai-admin" and held["kind"] == "mosquitto"
    assert broker_addresses(fleet.state) == {"broker": fleet.broker.url, "broker_tls": fleet.broker.tls_url,
                                             "ca_file": str(tls / "ca.crt")}
    assert held["admin"][1] not in " ".join(Path(f"/proc/{fleet.broker.pid}/cmdline").read_text().split("\0"))


def test_depai_up_listens_on_a_fixed_port_and_names_it_and_the_option_when_it_is_taken(tmp_path: Path) -> None:
    from launch.up import UpConfig

    assert UpConfig().broker_port == DEFAULT_BROKER_PORT == 18830 and UpConfig().tls_port == 18831
    assert UpConfig(broker_host="0.0.0.0").tls and not UpConfig().tls  # TLS by default off loopback only
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = depai(tmp_path / "home", "up", "--broker-port", str(port), "--state", str(tmp_path / "s"))
        assert result.returncode == 2
        assert f"the broker's port 127.0.0.1:{port} cannot be used" in result.stderr
        assert "--broker-port" in result.stderr
        tls = cli(tmp_path / "home", "up", "--broker-port", "0", "--broker-tls", "--broker-tls-port", str(port),
                    "--state", str(tmp_path / "s"))
        assert tls.returncode == 2 and f":{port}" in tls.stderr and "--broker-tls-port" in tls.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was written
