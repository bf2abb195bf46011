"""The bridge on the bus: it loses the broker for a while, keeps what the robot says in its outbox, and after the
broker is back every message reaches the fleet's ingest exactly once, verified.

A real Mosquitto with the topic ACL (the robot logs in as itself, ingest as the
fleet's service), the stand-in robot in its own process over the UDP adapter,
and the bridge running the agent in real time.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from bus.broker import BrokerConfig, MqttUser, choose_kind, start_broker
from bus.worker import IngestWorker
from identity.document import MachineProfile
from identity.registry import DidRegistry
from launch.fleet import register
from robots.body import BodyProfile
from robots.bridge.adapter import UdpAdapter
from robots.bridge.body import CallbackBody
from robots.bridge.bridge import Bridge, BridgeError
from sim.city import generate_city
from tests.bus.test_pipeline import Received
from tests.robots.test_bridge_adapter import standin

OUTAGE_TELEMETRY = 4  # telemetry the bridge must say while the broker is down (it says about two a second)
PROFILE = BodyProfile("courier", 1.5, max_turn_rps=2.0, radius_m=0.35, payload_kg=10.0, mass_kg=25.0,
                      battery_wh=400.0, wh_per_m=0.02, idle_w=15.0)


def accepted(received: Received) -> Counter[bytes]:
    """How many times ingest handed over each message, by its wire bytes."""
    return Counter(envelope.wire for envelope in list(received.envelopes))


def telemetry(wires: Iterable[bytes]) -> int:
    """How many of ``wires`` (the bridge's messages, as sent) are telemetry."""
    return sum(1 for wire in wires if b'"kind":"telemetry"' in wire)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_broker_outage_loses_and_duplicates_nothing_the_bridge_said(tmp_path: Path) -> None:
    kind, _ = choose_kind("auto")
    if kind != "mosquitto":
        pytest.skip("amqtt keeps no sessions across a restart (see tests/bus); this needs Mosquitto")
    registry_path = tmp_path / "registry.sqlite3"
    with DidRegistry(registry_path) as registry:
        robot = register(registry, with_topic_root=True, machine=MachineProfile("courier", ["delivery"], 1.5, 10.0))
    login = MqttUser(robot.did.rsplit(":", 1)[1], secrets.token_urlsafe(12), "robot")
    service = MqttUser("ingest", secrets.token_urlsafe(12), "service")
    graph = generate_city(3, 2).road_graph()
    x, y = next(data["pos"] for node, data in graph.nodes(data=True) if str(node).startswith("depot"))
    heard = Received()
    with start_broker(kind, BrokerConfig(data_dir=tmp_path / "broker", users=[login, service])) as broker, \
            UdpAdapter() as adapter, standin(adapter, "--x", str(x), "--y", str(y)), \
            DidRegistry(registry_path) as registry:
        port = broker.url.rsplit(":", 1)[1]
        worker = IngestWorker(f"mqtt://{service.username}:{service.password}@127.0.0.1:{port}", registry_path,
                              heard).start()
        adapter.wait_reading(10)
        bridge = Bridge(robot.signer, robot.did, adapter.body(PROFILE), registry, graph, broker_url=broker.url,
                        username=login.username, password=login.password, commanders=[], state_dir=tmp_path)
        said: list[bytes] = []
        publish = bridge.client.publish_many
        bridge.client.publish_many = lambda messages: (said.extend(m[1] for m in messages), publish(messages))[1]
        runner = threading.Thread(target=bridge.run)
        try:
            bridge.start()
            runner.start()
            assert wait_until(lambda: telemetry(accepted(heard)) >= 3, 20), "the link works before the outage"
            broker.stop()  # the broker is gone for a while; the robot goes on talking
            stopped = len(said)  # what the bridge says from here on, it says while the broker is down
            assert wait_until(lambda: not bridge.client.connected, 10), "the bridge noticed the outage"
            assert wait_until(lambda: telemetry(said[stopped:]) >= OUTAGE_TELEMETRY, 20), \
                f"the bridge went quiet while the broker was down: {telemetry(said[stopped:])} telemetry"
            restarted = len(said)
            during = said[stopped:restarted]
            broker.start()
            assert wait_until(lambda: set(during) <= set(accepted(heard)), 30), \
                f"{len(set(during) - set(accepted(heard)))} of {len(during)} said during the outage never arrived"
            assert wait_until(lambda: telemetry(set(accepted(heard)) & set(said[restarted:])) >= 3, 20), \
                "the bridge goes on talking after the broker is back"
            bridge.stop()
            runner.join(10)
            assert bridge.client.wait_drained(15)
            assert wait_until(lambda: set(said) <= set(accepted(heard)), 15), "ingest got all the bridge said"
        finally:
            bridge.stop()
            runner.join(10) if runner.is_alive() else None
            bridge.close()
            worker.close()
    counts = accepted(heard)
    assert all(counts[wire] == 1 for wire in said), "every message the bridge said reached ingest exactly once"
    # What ingest refused is only what the restarted broker delivered again: MQTT's at-least-once redelivery of a
    # message already accepted, the retained birth, the old session's will about an epoch already over. Each was
    # recognised (replayed, stale_epoch) and had no effect: the consumer got every message exactly once (above).
    refused = {(e.reason, e.topic.rsplit("/", 1)[1]): e.detail for e in worker.ingest.quarantine.entries()}
    assert {reason for reason, _ in refused} <= {"replayed", "stale_epoch"}, refused
    assert all(channel == "death" for reason, channel in refused if reason == "stale_epoch"), refused


def test_a_bridge_refuses_a_key_that_is_not_the_robots(tmp_path: Path) -> None:
    with DidRegistry(tmp_path / "registry.sqlite3") as registry:
        robot = register(registry, with_topic_root=True)
        other = register(registry, with_topic_root=True)
        body = CallbackBody(PROFILE, drive=lambda v, w: None, read=lambda: None)  # never read: refused first
        with pytest.raises(BridgeError) as refused:
            Bridge(other.signer, robot.did, body, registry, generate_city(3, 2).road_graph(),
                   broker_url="mqtt://127.0.0.1:1", username=None, password=None, commanders=[])
        assert refused.value.code == "wrong_key" and robot.did in str(refused.value)
        with pytest.raises(BridgeError) as unknown:
            Bridge(robot.signer, "did:peaq:5Unknown", body, registry, generate_city(3, 2).road_graph(),
                   broker_url="mqtt://127.0.0.1:1", username=None, password=None, commanders=[])
        assert unknown.value.code == "unknown_did"
