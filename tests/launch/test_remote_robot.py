"""A robot on another machine joins with nothing but the docs and what the fleet serves over the network (issue #18).

The remote host has its own state directory and no access to the fleet's files:
it is given the dashboard's URL, the robot's key and MQTT login (made by
``depai bridge enroll`` on the fleet's host) and the broker's CA file, as an
operator would hand them over. ``depai bridge run NAME --fleet URL`` then
fetches the fleet descriptor (checking the operator's signature, the operator's
keys resolved over HTTP), resolves the marketplace, dispatcher and map over
HTTP, downloads the roads, and connects over TLS.

The first tests run against a stand-in of the fleet's network face (the
resolver stand-in of tests/identity/test_http_resolver.py serving a descriptor
and roads, a real broker, an ingest worker): what the remote bridge refuses,
and that it pins the operator and comes online. The last one is the issue's
acceptance test, against ``depai up`` as a real process.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from bus.broker import BrokerConfig, MqttUser, RunningBroker, start_broker
from bus.topics import topic_root
from bus.worker import IngestWorker
from identity.canonical import canonicalize
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.envelope import Envelope, EnvelopeSigner
from identity.http_resolver import HttpResolver
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry
from robots.bridge.bridge import BridgeError
from robots.bridge.remote import _broker, fetch_fleet
from tests.identity.test_http_resolver import ResolverServer
from tests.launch.up_process import ROOT

ROLES = ("operator", "market", "dispatcher", "map", "dao", "outsider")


def roads_bytes() -> bytes:
    graph = nx.Graph()
    graph.add_node("depot-0", kind="depot", pos=[0.0, 0.0])
    graph.add_node("n1", kind="junction", pos=[20.0, 0.0])
    graph.add_edge("depot-0", "n1", length=20.0, street="s1")
    return canonicalize(nx.node_link_data(graph, edges="edges"))


@dataclass
class NetworkFace:
    """What a fleet shows the network: a resolver, a signed descriptor and roads over HTTP; a broker; ingest."""

    registry: DidRegistry
    served: ResolverServer
    broker: RunningBroker
    people: dict[str, Signer]
    dids: dict[str, str]
    robot: Signer
    robot_did: str
    password: str
    body: dict
    heard: list[Envelope]

    def serve(self, body: dict, *, signer: str = "operator", plain: dict | None = None,
              named: str | None = None) -> None:
        """Serve ``body`` as the descriptor, signed by ``signer``'s key (``plain``: the unsigned copy)."""
        wire = EnvelopeSigner(self.people[signer], self.dids[signer]).seal("fleet.descriptor", body,
                                                                          ttl_s=365 * 86_400.0)
        answer = {"descriptor": plain if plain is not None else body, "operator": named or self.dids[signer],
                  "envelope": base64.b64encode(wire).decode()}
        self.served.routes["/api/fleet"] = lambda: answer


@pytest.fixture
def face(tmp_path: Path) -> Iterator[NetworkFace]:
    registry = DidRegistry(tmp_path / "fleet" / "registry.sqlite3", refresh_interval_s=0.0)
    people = {name: Signer.generate() for name in ROLES}
    dids = {name: create_identity(registry, signer).did for name, signer in people.items()}
    robot = Signer.generate()
    robot_did = did_peaq(robot.public_key)
    create_identity(registry, robot, controller=dids["dao"], topic_root=topic_root(robot_did),
                    machine=MachineProfile("courier", ["delivery"], 1.5, 10.0))
    password, service = secrets.token_urlsafe(18), secrets.token_hex(16)
    users = [MqttUser(robot_did.rsplit(":", 1)[1], password, "robot"), MqttUser("services", service, "service")]
    roads = roads_bytes()
    heard: list[Envelope] = []
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker", users=users)) as broker, \
            ResolverServer(registry) as served:
        body = {"operator": dids["operator"], "market": dids["market"], "dispatcher": dids["dispatcher"],
                "map": dids["map"], "dao": dids["dao"], "commanders": [dids["dispatcher"], dids["market"]],
                "broker": broker.url, "broker_tls": None, "chargers": [[20.0, 0.0]],
                "roads_url": "/api/fleet/roads", "roads_sha256": __import__("hashlib").sha256(roads).hexdigest()}
        served.routes["/api/fleet/roads"] = lambda: roads
        url = broker.url.replace("mqtt://", f"mqtt://services:{service}@")
        with IngestWorker(url, registry.path, lambda _topic, envelope: heard.append(envelope),
                          client_id="depai-ingest-remote-test"):
            network = NetworkFace(registry, served, broker, people, dids, robot, robot_did, password, body, heard)
            network.serve(body)
            yield network
    registry.close()


def refusal(action) -> str:
    with pytest.raises(BridgeError) as caught:
        action()
    return caught.value.code


def test_the_descriptor_is_taken_from_what_the_operator_signed(face: NetworkFace) -> None:
    url = face.served.url
    fleet = fetch_fleet(url, HttpResolver(url), None)  # trust on first use: the operator the fleet names
    assert fleet.operator == face.dids["operator"] and fleet.descriptor["market"] == face.dids["market"]
    assert fleet.commanders == [face.dids["dispatcher"], face.dids["market"]] and fleet.map_services == [face.dids["map"]]
    assert (fleet.broker, fleet.tls) == (face.broker.url, False) and fleet.chargers == [(20.0, 0.0)]
    assert sorted(fleet.roads.nodes) == ["depot-0", "n1"] and fleet.roads.nodes["n1"]["pos"] == [20.0, 0.0]
    assert fetch_fleet(url, HttpResolver(url), face.dids["operator"]).operator == face.dids["operator"]

    assert refusal(lambda: fetch_fleet(url, HttpResolver(url), face.dids["outsider"])) == "operator_mismatch"
    face.serve(face.body, signer="outsider", named=face.dids["operator"])  # someone else's signature
    assert refusal(lambda: fetch_fleet(url, HttpResolver(url), face.dids["operator"])) == "operator_mismatch"
    face.serve(face.body, plain={**face.body, "market": face.dids["outsider"]})  # the plain copy lies
    assert refusal(lambda: fetch_fleet(url, HttpResolver(url), None)) == "descriptor_mismatch"
    face.serve(face.body)
    answer = face.served.routes["/api/fleet"]()
    forged = json.loads(base64.b64decode(answer["envelope"]))
    forged["body"]["market"] = face.dids["outsider"]  # the signed body changed
    face.served.routes["/api/fleet"] = lambda: {**answer, "envelope": base64.b64encode(canonicalize(forged)).decode()}
    assert refusal(lambda: fetch_fleet(url, HttpResolver(url), None)) == "descriptor_refused"
    face.serve(face.body)
    face.served.routes["/api/fleet/roads"] = lambda: roads_bytes().replace(b"\"s1\"", b"\"s2\"")
    assert refusal(lambda: fetch_fleet(url, HttpResolver(url), None)) == "roads_malformed"
    nowhere = "http://127.0.0.1:9"  # a port below the ephemeral range: nothing listens (and no self-connect)
    assert refusal(lambda: fetch_fleet(nowhere, HttpResolver(nowhere), None)) == "fleet_unreachable"


def test_a_loopback_broker_means_the_fleets_own_host() -> None:
    assert _broker({"broker": "mqtt://127.0.0.1:1883"}, "http://10.1.2.3:8080") == ("mqtt://10.1.2.3:1883", False)
    assert _broker({"broker": "mqtt://0.0.0.0:1883", "broker_tls": "mqtts://localhost:8883"},
                   "http://fleet.example:8080") == ("mqtts://fleet.example:8883", True)
    assert _broker({"broker": "mqtt://127.0.0.1:1883"}, "http://127.0.0.1:8080") == ("mqtt://127.0.0.1:1883", False)


def depai(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "DEPAI_HOME": str(home)})


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def standin(port: int, x: float = 0.0, y: float = 0.0, max_speed: float = 1.5) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "robots.bridge.standin", "--bridge", f"127.0.0.1:{port}",
                             "--x", str(x), "--y", str(y), "--max-speed", str(max_speed)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_remote_bridge_pins_the_operator_comes_online_and_refuses_another_operator_later(
        face: NetworkFace, tmp_path: Path) -> None:
    robot_host = tmp_path / "robot-host"  # its own home: nothing of the fleet's
    key = robot_host / "courier-r.key"
    key.parent.mkdir()
    key.write_text(face.robot.seed.hex() + "\n")
    (robot_host / "login.json").write_text(json.dumps({"password": face.password, "did": face.robot_did}))
    port = free_udp_port()
    args = ["bridge", "run", "courier-r", "--fleet", face.served.url, "--key-file", str(key),
            "--login-file", str(robot_host / "login.json"), "--udp", f"127.0.0.1:{port}"]
    motors = standin(port)
    try:
        first = depai(robot_host / "home", *args, "--for", "2")
    finally:
        motors.terminate()
        motors.communicate(timeout=10)
    assert first.returncode == 0, first.stderr
    assert f"pinned the fleet's operator {face.dids['operator']} (trust on first use" in first.stderr
    assert "is not TLS" in first.stderr  # this stand-in has no TLS listener: said, not hidden
    pinned = robot_host / "home" / "robots" / "courier-r" / "fleet.json"
    assert json.loads(pinned.read_text())["operator"] == face.dids["operator"]
    deadline = time.monotonic() + 5
    while not any(e.kind == "death" and e.issuer == face.robot_did for e in face.heard):
        assert time.monotonic() < deadline, f"no death from the robot; heard {[e.kind for e in face.heard]}"
        time.sleep(0.05)
    assert [e.kind for e in face.heard if e.issuer == face.robot_did][0] == "birth"

    face.serve({**face.body, "operator": face.dids["outsider"]}, signer="outsider")  # another fleet at that address
    second = depai(robot_host / "home", *args, "--for", "1")
    assert second.returncode == 1 and "says its operator is" in second.stderr, second.stderr

    face.serve(face.body)
    wrong = robot_host / "other.key"
    wrong.write_text(Signer.generate().seed.hex())
    third = depai(robot_host / "home", *args[:6], str(wrong), *args[7:], "--did", face.robot_did, "--for", "1")
    assert third.returncode == 1 and f"is not {face.robot_did}'s key" in third.stderr, third.stderr
    no_login = depai(robot_host / "home", *args[:7], "--udp", f"127.0.0.1:{port}")
    assert no_login.returncode == 2 and "--login-file" in no_login.stderr
