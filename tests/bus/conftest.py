"""Real MQTT brokers for the bus tests, and clients to talk to them.

- ``broker_kind``: each test runs on "amqtt" and on "mosquitto" (skipped when
  Mosquitto is not installed, and failed instead under CI, which installs it: see
  ``require_mosquitto``).
- ``broker``: an anonymous RunningBroker of that kind, stopped after the test.
- ``acl_broker``: a broker of that kind with passwords and the topic ACL: two robots
  (usernames are SS58 addresses) and one service. An ``AclFleet``: ``.broker``,
  ``.users`` ({"robot_a", "robot_b", "service"} -> MqttUser) and ``.root(name)``, a
  robot's topic root. Also a "gateway" user (a simulator speaking for many machines).
- ``mosquitto_with_acl``: the same on Mosquitto only (shared subscriptions need it).
- ``needs_mosquitto``: for a test that starts Mosquitto itself (``require_mosquitto()``).
- ``mqtt_connect``: a factory fixture. ``mqtt_connect(broker, username=None,
  password=None, client_id=None)`` (``broker`` a RunningBroker or an ``mqtt://host:port``
  URL) returns a connected ``RecordingClient`` (a paho
  2.x client, MQTT 3.1.1, loop started) and disconnects it after the test. A refused
  CONNECT raises ConnectionRefusedError naming the reason.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bus.broker import BrokerConfig, MqttUser, RunningBroker, mosquitto_binary, start_broker
from bus.topics import topic_root
from identity.did import did_peaq
from identity.keys import Signer

TIMEOUT_S = 5.0


class RecordingClient(mqtt.Client):
    """A paho client that queues every message it receives and can wait for SUBACKs."""

    def __init__(self, client_id: str) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._suback_arrived = threading.Condition()
        self.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self.on_connect = self._connected
        self.on_subscribe = self._subscribed

    def _connected(self, _client, _userdata, _flags, reason_code: ReasonCode, _properties) -> None:
        self.connect_reason = reason_code
        self.connected.set()

    def _subscribed(self, _client, _userdata, mid: int, reason_codes: list[ReasonCode], _properties) -> None:
        with self._suback_arrived:
            self._subacks[mid] = reason_codes
            self._suback_arrived.notify_all()

    def subscribe_wait(self, topic: str, qos: int = 1, timeout: float = TIMEOUT_S) -> ReasonCode:
        """Subscribe and return the broker's SUBACK code (``.is_failure`` when refused, 0x80)."""
        result, mid = self.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        with self._suback_arrived:
            assert self._suback_arrived.wait_for(lambda: mid in self._subacks, timeout), f"no SUBACK for {topic}"
            return self._subacks.pop(mid)[0]

    def next_message(self, timeout: float = TIMEOUT_S) -> mqtt.MQTTMessage | None:
        """The next message received, or None if none arrives within ``timeout`` seconds."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


MqttConnect = Callable[..., RecordingClient]


def require_mosquitto() -> str:
    """The Mosquitto executable. Missing, it skips the test, except in CI (CI set), where .ci/run installs it
    and a missing Mosquitto must fail rather than let the tests that need it pass by skipping."""
    binary = mosquitto_binary()
    if binary is None:
        message = "Mosquitto is not installed; .ci/run installs it (apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def needs_mosquitto() -> str:
    """``@pytest.mark.usefixtures("needs_mosquitto")`` on a test that runs Mosquitto itself: require_mosquitto()."""
    return require_mosquitto()


@pytest.fixture
def mqtt_connect() -> Iterator[MqttConnect]:
    clients: list[RecordingClient] = []

    def connect(broker: RunningBroker | str, username: str | None = None, password: str | None = None,
                client_id: str | None = None) -> RecordingClient:
        url = urlsplit(broker if isinstance(broker, str) else broker.url)
        client = RecordingClient(client_id or f"test-{secrets.token_hex(4)}")
        if username is not None:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(0.05, 0.5)  # paho sleeps in steps of this, also at teardown
        clients.append(client)
        client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        client.loop_start()
        assert client.connected.wait(TIMEOUT_S), f"no CONNACK from {url.geturl()}"
        if client.connect_reason is None or client.connect_reason.is_failure:
            client.disconnect()  # no reconnecting
            client.loop_stop()
            raise ConnectionRefusedError(f"{url.geturl()} refused {username!r}: {client.connect_reason}")
        return client

    yield connect
    for client in clients:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "mosquitto":
        require_mosquitto()
    return request.param


@pytest.fixture
def broker(broker_kind: str, tmp_path: Path) -> Iterator[RunningBroker]:
    with start_broker(broker_kind, BrokerConfig(data_dir=tmp_path / "broker")) as running:
        yield running


@dataclass
class AclFleet:
    """A broker with passwords and the topic ACL, and the users it knows."""

    broker: RunningBroker
    users: dict[str, MqttUser]

    def root(self, name: str) -> str:
        """The topic root of robot ``name`` ("robot_a" or "robot_b")."""
        return topic_root(f"did:peaq:{self.users[name].username}")


def _robot(name: str) -> tuple[str, MqttUser]:
    address = did_peaq(Signer.generate().public_key).rsplit(":", 1)[1]
    return name, MqttUser(address, secrets.token_urlsafe(16), "robot")


def _acl_fleet(kind: str, data_dir: Path) -> Iterator[AclFleet]:
    users = dict([_robot("robot_a"), _robot("robot_b"),
                  ("service", MqttUser("ingest", secrets.token_urlsafe(16), "service")),
                  ("gateway", MqttUser("simulator", secrets.token_urlsafe(16), "gateway"))])
    with start_broker(kind, BrokerConfig(data_dir=data_dir, users=list(users.values()))) as running:
        yield AclFleet(running, users)


@pytest.fixture
def acl_broker(broker_kind: str, tmp_path: Path) -> Iterator[AclFleet]:
    yield from _acl_fleet(broker_kind, tmp_path / "broker")


@pytest.fixture
def mosquitto_with_acl(tmp_path: Path) -> Iterator[AclFleet]:
    require_mosquitto()
    yield from _acl_fleet("mosquitto", tmp_path / "broker")
