"""Real brokers (Mosquitto and amqtt) started, crashed and restarted; the topic ACL; `depai broker`."""

import base64
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bus.broker as broker_module
from bus.broker import (
    BrokerConfig,
    BrokerError,
    BrokerKind,
    MqttUser,
    choose_kind,
    mosquitto_binary,
    mosquitto_password_hash,
    start_broker,
)
from bus.topics import MARKET_TASKS
from launch.cli import main
from launch.output import EXIT_CONFLICT, EXIT_NOT_FOUND

ROOT = Path(__file__).resolve().parents[2]
TELEMETRY = "depai/v1/robots/3/5Gtest/telemetry"
NEEDS_MOSQUITTO = pytest.mark.usefixtures("needs_mosquitto")  # skipped if missing; failed under CI


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def round_trip(mqtt_connect, broker, topic: str = TELEMETRY, payload: bytes = b"hello") -> None:
    subscriber, publisher = mqtt_connect(broker), mqtt_connect(broker)
    assert subscriber.subscribe_wait("depai/v1/robots/+/+/telemetry", qos=1).value == 1
    publisher.publish(topic, payload, qos=1).wait_for_publish(5)
    message = subscriber.next_message()
    assert message is not None, "the QoS1 message never arrived"
    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)


# --- both brokers ----------------------------------------------------------------------------------

def test_qos1_round_trip(broker, mqtt_connect) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}" and broker.running
    round_trip(mqtt_connect, broker)


def test_kill_then_restart_on_the_same_port(broker, mqtt_connect) -> None:
    port, pid = broker.port, broker.pid
    broker.kill()
    broker.kill()
    assert not broker.running and not port_open(port)
    broker.restart()
    assert broker.port == port and broker.pid != pid and broker.running
    round_trip(mqtt_connect, broker)


def test_stop_is_idempotent_and_closes_the_port(broker) -> None:
    broker.stop()
    broker.stop()
    broker.kill()
    assert not broker.running and not port_open(broker.port)
    if broker.kind == BrokerKind.MOSQUITTO:
        assert "terminating" in broker.log_tail(5)  # SIGTERM: a clean shutdown that saved its state


def test_retained_message_after_a_clean_restart(broker, mqtt_connect) -> None:
    """Mosquitto saves its state on SIGTERM; amqtt keeps nothing but the port (documented)."""
    publisher = mqtt_connect(broker)
    publisher.publish("depai/v1/map/graph", b"edges", qos=1, retain=True).wait_for_publish(5)
    publisher.disconnect()
    broker.restart()
    reader = mqtt_connect(broker)
    reader.subscribe_wait("depai/v1/map/#")
    message = reader.next_message(timeout=1.0)
    if broker.kind == BrokerKind.MOSQUITTO:
        assert message is not None and message.payload == b"edges" and message.retain
    else:
        assert message is None


@NEEDS_MOSQUITTO
def test_retained_message_survives_a_mosquitto_crash_after_autosave(tmp_path, mqtt_connect) -> None:
    with start_broker("mosquitto", BrokerConfig(data_dir=tmp_path)) as broker:
        publisher = mqtt_connect(broker)
        publisher.publish("depai/v1/map/tiles/occ/1/2", b"tile", qos=1, retain=True).wait_for_publish(5)
        published, saved = time.time(), tmp_path / "mosquitto.db"
        deadline = time.monotonic() + 5  # autosave runs every 1-2 s (Mosquitto's clock counts whole seconds)
        while not (saved.exists() and saved.stat().st_mtime > published) and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
        broker.restart()
        reader = mqtt_connect(broker)
        reader.subscribe_wait("depai/v1/map/tiles/#")
        message = reader.next_message()
        assert message is not None and message.payload == b"tile"


def test_a_broker_that_fails_to_start_reports_its_log(tmp_path, monkeypatch) -> None:
    crash = [sys.executable, "-c", "import sys; print('Error: bogus_option is not a setting'); sys.exit(3)"]
    monkeypatch.setattr(broker_module.RunningBroker, "_argv", lambda self: crash)
    with pytest.raises(BrokerError) as failed:
        start_broker("amqtt", BrokerConfig(data_dir=tmp_path))
    assert failed.value.code == "broker_start_failed" and "exited with status 3" in str(failed.value)
    assert "bogus_option is not a setting" in str(failed.value) and "broker.log" in failed.value.hint


def test_a_broker_that_never_answers_is_killed(tmp_path, monkeypatch) -> None:
    mute = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(broker_module.RunningBroker, "_argv", lambda self: mute)
    broker = broker_module.RunningBroker(BrokerKind.AMQTT, BrokerConfig(data_dir=tmp_path), ready_timeout=0.5)
    with pytest.raises(BrokerError, match="did not answer MQTT within 0.5 s"):
        broker.start()
    assert not broker.running


def test_one_broker_per_data_dir(broker) -> None:
    with pytest.raises(BrokerError) as refused:
        start_broker(broker.kind, BrokerConfig(data_dir=broker.data_dir))
    assert refused.value.code == "data_dir_in_use"
    broker.stop()
    start_broker(broker.kind, BrokerConfig(data_dir=broker.data_dir)).stop()


def test_a_taken_port_is_refused_quickly(broker) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerError) as refused:
        start_broker(broker.kind, BrokerConfig(port=broker.port))
    assert refused.value.code == "port_in_use" and str(broker.port) in refused.value.hint
    assert time.monotonic() - started < 2


# --- choosing a broker ---------------------------------------------------------------------------

def test_auto_picks_mosquitto_when_installed(monkeypatch) -> None:
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: "/opt/bin/mosquitto")
    kind, note = choose_kind("auto")
    assert kind == BrokerKind.MOSQUITTO and "/opt/bin/mosquitto" in note
    assert choose_kind("amqtt")[0] == BrokerKind.AMQTT


def test_auto_falls_back_to_amqtt_with_a_hint(monkeypatch) -> None:
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    kind, note = choose_kind()
    assert kind == BrokerKind.AMQTT and "apt-get install mosquitto" in note


def test_asking_for_a_missing_mosquitto_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    with pytest.raises(BrokerError) as refused:
        start_broker("mosquitto")
    assert refused.value.code == "mosquitto_missing" and "apt-get install mosquitto" in refused.value.hint
    with pytest.raises(BrokerError, match="unknown broker kind"):
        choose_kind("rabbitmq")


@pytest.mark.skipif(not os.access("/usr/sbin/mosquitto", os.X_OK), reason="no /usr/sbin/mosquitto")
def test_mosquitto_is_found_outside_a_normal_users_path(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert mosquitto_binary() == "/usr/sbin/mosquitto"
    assert choose_kind()[0] == BrokerKind.MOSQUITTO


@pytest.mark.skipif(not os.access("/usr/bin/mosquitto_passwd", os.X_OK), reason="no mosquitto_passwd")
def test_password_hash_matches_mosquitto_passwd(tmp_path) -> None:
    path = tmp_path / "passwords"
    path.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(path), "robot", "s3cret"], check=True,
                   env={**os.environ, "PATH": f"/usr/bin:{os.environ.get('PATH', '')}"})
    expected = path.read_text().strip().split(":", 1)[1]
    _, _, rounds, salt, _ = expected.split("$")
    assert mosquitto_password_hash("s3cret", salt=base64.b64decode(salt), rounds=int(rounds)) == expected


# --- the topic ACL -------------------------------------------------------------------------------

def test_no_password_in_the_clear_and_hashes_private(acl_broker) -> None:
    files = [f for f in acl_broker.broker.data_dir.iterdir() if f.is_file()]
    everything = b"".join(f.read_bytes() for f in files)
    assert not any(user.password.encode() in everything for user in acl_broker.users.values())
    holders = [f for f in files if b"ingest" in f.read_bytes() and f.name != "broker.log"]
    assert holders and all(f.stat().st_mode & 0o777 == 0o600 for f in holders), holders


def test_robot_publishes_only_under_its_own_root(acl_broker, mqtt_connect) -> None:
    fleet, users = acl_broker, acl_broker.users
    service = mqtt_connect(fleet.broker, users["service"].username, users["service"].password)
    robot_a = mqtt_connect(fleet.broker, users["robot_a"].username, users["robot_a"].password)
    assert service.subscribe_wait("depai/v1/#").value == 1

    robot_a.publish(f"{fleet.root('robot_a')}/telemetry", b"mine", qos=1).wait_for_publish(5)
    first = service.next_message()
    assert first is not None and first.payload == b"mine", "the positive control did not arrive"

    for qos in (0, 1):
        robot_a.publish(f"{fleet.root('robot_b')}/telemetry", b"forged", qos=qos).wait_for_publish(5)
    robot_a.publish(MARKET_TASKS, b"fake task", qos=1).wait_for_publish(5)
    robot_a.publish(f"{fleet.root('robot_a')}/cmd", b"a command to itself", qos=1).wait_for_publish(5)
    robot_a.publish(f"{fleet.root('robot_a')}/event", b"after", qos=1).wait_for_publish(5)
    # Delivery keeps the publisher's order, so anything forged would arrive before "after".
    received = [service.next_message(timeout=1.0) for _ in range(2)]
    assert [m.payload for m in received if m is not None] == [b"after"]


def test_robot_cannot_read_another_robots_commands(acl_broker, mqtt_connect) -> None:
    fleet, users = acl_broker, acl_broker.users
    robot_a = mqtt_connect(fleet.broker, users["robot_a"].username, users["robot_a"].password)
    assert robot_a.subscribe_wait(f"{fleet.root('robot_b')}/cmd").value == 0x80
    assert robot_a.subscribe_wait("depai/v1/robots/+/+/telemetry").is_failure
    assert robot_a.subscribe_wait("depai/v1/#").is_failure
    for allowed in (f"{fleet.root('robot_a')}/cmd", "depai/v1/market/#", "depai/v1/map/#"):
        assert robot_a.subscribe_wait(allowed).value == 1, allowed

    service = mqtt_connect(fleet.broker, users["service"].username, users["service"].password)
    service.publish(f"{fleet.root('robot_a')}/cmd", b"go", qos=1).wait_for_publish(5)
    message = robot_a.next_message()
    assert message is not None and message.payload == b"go"


def test_gateway_speaks_for_machines_but_not_for_services(acl_broker, mqtt_connect) -> None:
    fleet, users = acl_broker, acl_broker.users
    service = mqtt_connect(fleet.broker, users["service"].username, users["service"].password)
    gateway = mqtt_connect(fleet.broker, users["gateway"].username, users["gateway"].password)
    assert service.subscribe_wait("depai/v1/#").value == 1
    assert gateway.subscribe_wait("depai/v1/robots/+/+/cmd").value == 1
    assert gateway.subscribe_wait("depai/v1/robots/+/+/telemetry").is_failure

    for name in ("robot_a", "robot_b"):
        gateway.publish(f"{fleet.root(name)}/telemetry", name.encode(), qos=1).wait_for_publish(5)
    gateway.publish(MARKET_TASKS, b"fake task", qos=1).wait_for_publish(5)
    gateway.publish(f"{fleet.root('robot_a')}/cmd", b"a command", qos=1).wait_for_publish(5)
    gateway.publish(f"{fleet.root('robot_b')}/event", b"after", qos=1).wait_for_publish(5)
    received = [service.next_message(timeout=1.0) for _ in range(4)]
    assert [m.payload for m in received if m is not None] == [b"robot_a", b"robot_b", b"after"]

    service.publish(f"{fleet.root('robot_b')}/cmd", b"go", qos=1).wait_for_publish(5)
    message = gateway.next_message()
    assert message is not None and message.payload == b"go"


def test_wrong_or_missing_credentials_are_refused_at_connect(acl_broker, mqtt_connect) -> None:
    robot_a = acl_broker.users["robot_a"]
    with pytest.raises(ConnectionRefusedError, match="(?i)not authori[sz]ed|bad user name or password"):
        mqtt_connect(acl_broker.broker, robot_a.username, robot_a.password + "x")
    with pytest.raises(ConnectionRefusedError):
        mqtt_connect(acl_broker.broker, "stranger", "whatever")
    with pytest.raises(ConnectionRefusedError):
        mqtt_connect(acl_broker.broker)
    mqtt_connect(acl_broker.broker, robot_a.username, robot_a.password)


def test_service_shares_a_subscription_on_mosquitto(mosquitto_with_acl, mqtt_connect) -> None:
    fleet, users = mosquitto_with_acl, mosquitto_with_acl.users
    service = users["service"]
    workers = [mqtt_connect(fleet.broker, service.username, service.password, client_id=f"ingest-{i}")
               for i in range(2)]
    for worker in workers:
        assert worker.subscribe_wait("$share/ingest/depai/v1/robots/+/+/telemetry").value == 1
    robot_a = mqtt_connect(fleet.broker, users["robot_a"].username, users["robot_a"].password)
    for i in range(20):
        robot_a.publish(f"{fleet.root('robot_a')}/telemetry", str(i).encode(), qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while sum(w.messages.qsize() for w in workers) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    counts = [w.messages.qsize() for w in workers]
    assert sum(counts) == 20 and all(counts), f"each message once, spread over the group: {counts}"


@NEEDS_MOSQUITTO
def test_mosquitto_without_the_dynsec_plugin_still_confines_robots(tmp_path, monkeypatch, mqtt_connect) -> None:
    """The acl_file fallback grants any SUBSCRIBE but delivers only what the ACL allows."""
    monkeypatch.setattr(broker_module, "dynsec_plugin", lambda: None)
    robot_a, robot_b = MqttUser("5Grobot_a", "pa", "robot"), MqttUser("5Grobot_b", "pb", "robot")
    service = MqttUser("ingest", "ps", "service")
    with start_broker("mosquitto", BrokerConfig(data_dir=tmp_path, users=[robot_a, robot_b, service])) as broker:
        assert "acl_file" in (tmp_path / "mosquitto.conf").read_text()
        with pytest.raises(ConnectionRefusedError):
            mqtt_connect(broker, robot_a.username, "wrong")
        a = mqtt_connect(broker, robot_a.username, robot_a.password)
        ingest = mqtt_connect(broker, service.username, service.password)
        assert ingest.subscribe_wait("$share/ingest/depai/v1/robots/+/+/telemetry").value == 1
        a.subscribe_wait("depai/v1/robots/+/+/cmd")
        ingest.publish(f"depai/v1/robots/1/{robot_b.username}/cmd", b"for b", qos=1).wait_for_publish(5)
        ingest.publish(f"depai/v1/robots/1/{robot_a.username}/cmd", b"for a", qos=1).wait_for_publish(5)
        a.publish(f"depai/v1/robots/1/{robot_b.username}/telemetry", b"forged", qos=1).wait_for_publish(5)
        a.publish(f"depai/v1/robots/1/{robot_a.username}/telemetry", b"real", qos=1).wait_for_publish(5)
        assert [m.payload for m in (a.next_message(1.0), a.next_message(0.3)) if m] == [b"for a"]
        assert [m.payload for m in (ingest.next_message(1.0), ingest.next_message(0.3)) if m] == [b"real"]


# --- depai broker ----------------------------------------------------------------------------------

def test_depai_broker_runs_until_sigterm(tmp_path, mqtt_connect) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.cli", "broker", "--kind", "amqtt", "--port", str(port),
         "--data-dir", str(tmp_path / "broker"), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=20), "depai broker printed nothing"
        info = json.loads(proc.stdout.readline())
        assert info["url"] == f"mqtt://127.0.0.1:{port}" and info["kind"] == "amqtt"
        assert "amqtt" in info["note"] and info["data_dir"] == str(tmp_path / "broker")
        subscriber, publisher = mqtt_connect(info["url"]), mqtt_connect(info["url"])
        subscriber.subscribe_wait("depai/v1/#")
        publisher.publish(TELEMETRY, b"via the cli", qos=1).wait_for_publish(5)
        assert subscriber.next_message() is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert not port_open(port)
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)  # the broker went with it


def test_depai_broker_errors_say_what_to_do(broker, monkeypatch, capsys, tmp_path) -> None:
    code = main(["broker", "--kind", broker.kind, "--port", str(broker.port), "--data-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == EXIT_CONFLICT and "Address already in use" in err and "hint: stop whatever uses port" in err
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    assert main(["broker", "--kind", "mosquitto", "--json", "--data-dir", str(tmp_path / "b")]) == EXIT_NOT_FOUND
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "mosquitto_missing" and "apt-get install mosquitto" in error["hint"]
