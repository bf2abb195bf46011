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
acceptance test, against ``depai up`` as a real process: the Python bridge's
robot is a peaqOS machine (``did:peaq:0x...``, a secp256k1 key), the
JavaScript robot an Ed25519 one; both are enrolled while the fleet runs,
admitted at once, follow a rotation of the marketplace's key and are paid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.bus.conftest import require_mosquitto
from tests.conftest import JS_ROBOT
from tests.identity.test_http_resolver import ResolverServer
from tests.launch.test_bridge import depai, free_udp_port
from tests.launch.up_process import ROOT, UpProcess

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
                "roads_url": "/api/fleet/roads", "roads_sha256": hashlib.sha256(roads).hexdigest()}
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


# --- the acceptance test: depai up as a real process, robots on "another machine" -----------------------------

FOUND = ["--robots", "1", "--city", "2", "--seed", "3", "--orders-per-min", "30", "--port", "0"]
SPEED = "5"  # m/s: the robots' datasheet, so a delivery across the small city takes seconds, not minutes


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as response:
        return json.loads(response.read())


def seen(url: str, robot: str) -> bool:
    """Whether the dashboard shows ``robot``'s telemetry (404 until the fleet has heard of it)."""
    try:
        return bool(api(url, f"/api/robots/{robot}").get("telemetry"))
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 404:
            return False
        raise


def releases(url: str, robot: str, after_ms: int = 0) -> list[dict]:
    """The ledger's escrow.release entries paying for ``robot``'s deliveries (from the dashboard's ledger API)."""
    size = api(url, "/api/ledger/checkpoint")["size"]
    found = []
    for seq in range(size, 0, -1):
        entry = api(url, f"/api/ledger/entries/{seq}")
        if entry["kind"] == "escrow.release" and entry["content"]["refs"].get("robot") == robot \
                and entry["at_ms"] >= after_ms:
            found.append(entry)
    return found


def test_a_robot_on_another_machine_joins_from_the_network_follows_a_market_key_rotation_and_is_paid(
        node: str, tmp_path: Path) -> None:
    require_mosquitto()  # the running broker admits an enrolled robot at once only on Mosquitto
    fleet_home, robot_host = tmp_path / "fleet-host", tmp_path / "robot-host"
    founded = depai(fleet_home, "up", *FOUND, "--broker", "none", "--for", "1", "--json")
    assert founded.returncode == 0, founded.stderr
    with UpProcess(["--speed", "1", "--port", "0", "--broker", "mosquitto", "--broker-tls", "--orders-per-min", "30"],
                   fleet_home) as up:
        url = up.dashboard_url
        # On the fleet's host, the operator enrolls both robots while the fleet runs, and hands over to the robot's
        # host its key, its login and the broker's CA file: nothing else of the fleet's.
        handed: dict[str, dict[str, Any]] = {}
        for name, key_type in (("courier-r", "secp256k1"), ("js-r", "ed25519")):  # a peaqOS did:peaq:0x robot too
            enrolled = depai(fleet_home, "bridge", "enroll", name, "--max-speed", SPEED, "--key-type", key_type,
                             "--json")
            assert enrolled.returncode == 0, enrolled.stderr
            record = json.loads(enrolled.stdout)
            assert record["admitted"] == "now", record  # admitted by the running broker: no restart
            folder = robot_host / name
            folder.mkdir(parents=True)
            shutil.copy(record["key_file"], folder / "robot.key")
            shutil.copy(record["record"], folder / "login.json")
            shutil.copy(fleet_home / "fleet" / "tls" / "ca.crt", folder / "ca.crt")  # never ca.key
            handed[name] = {"did": record["did"], "folder": folder}
        assert handed["courier-r"]["did"].startswith("did:peaq:0x")
        described = api(url, "/api/fleet")["descriptor"]
        assert (described.get("broker_tls") or "").startswith("mqtts://"), (
            "the fleet descriptor names no broker_tls although depai up runs a TLS listener: a robot on another "
            f"machine cannot find it ({described.get('broker')}, {described.get('broker_tls')})")
        roads = api(url, "/api/fleet/roads")  # where to put them: the depots, as the network says
        depots = [node["pos"] for node in roads["nodes"] if node["kind"] == "depot"]

        # The Python bridge, its robot's motors a stand-in, from its own home on the robot's host.
        py = handed["courier-r"]
        port = free_udp_port()
        motors = standin(port, *depots[0], max_speed=float(SPEED))
        bridge = subprocess.Popen(
            [sys.executable, "-m", "launch.cli", "bridge", "run", "courier-r", "--fleet", url,
             "--key-file", str(py["folder"] / "robot.key"), "--login-file", str(py["folder"] / "login.json"),
             "--ca-file", str(py["folder"] / "ca.crt"), "--udp", f"127.0.0.1:{port}", "--json"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "DEPAI_HOME": str(py["folder"] / "home")})
        # The JavaScript robot, from docs/protocol.md alone.
        js = handed["js-r"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPAI_")}
        env.update(DEPAI_FLEET=url, DEPAI_SEED=(js["folder"] / "robot.key").read_text().strip(),
                   DEPAI_PASSWORD=json.loads((js["folder"] / "login.json").read_text())["password"],
                   DEPAI_CA_FILE=str(js["folder"] / "ca.crt"), DEPAI_X=str(depots[-1][0]), DEPAI_Y=str(depots[-1][1]),
                   DEPAI_SECONDS="300")  # past the 30 s to join plus the 120 s to be paid; SIGINT ends it
        robot_js = subprocess.Popen([node, str(JS_ROBOT)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        js_lines: list[str] = []
        threading.Thread(target=lambda: js_lines.extend(iter(robot_js.stdout.readline, "")), daemon=True).start()
        try:
            deadline = time.monotonic() + 30
            while not all(seen(url, r["did"]) for r in handed.values()):
                assert time.monotonic() < deadline, f"not both online:\n{''.join(js_lines)[-2000:]}"
                assert bridge.poll() is None, bridge.communicate()[1]
                time.sleep(0.5)
            # The marketplace's key is rotated on the fleet's host while everything runs.
            rotated = depai(fleet_home, "id", "rotate", "market", "--state", str(fleet_home / "fleet"), "--json")
            assert rotated.returncode == 0, rotated.stderr
            assert json.loads(rotated.stdout)["didDocumentMetadata"]["versionId"] == "2"
            rotated_at = int(time.time() * 1000)
            deadline = time.monotonic() + 120  # a delivery begun before the rotation may take a minute to finish
            while not (releases(url, py["did"], rotated_at) and releases(url, js["did"], rotated_at)):
                assert time.monotonic() < deadline, (
                    f"not both paid after the rotation: python {len(releases(url, py['did']))}, javascript "
                    f"{len(releases(url, js['did']))}; the JavaScript robot said:\n{''.join(js_lines)[-3000:]}")
                assert bridge.poll() is None and robot_js.poll() is None, "a robot died"
                time.sleep(1)
        finally:
            for process in (bridge, robot_js, motors):
                process.send_signal(signal.SIGINT)
            bridge_out, bridge_err = bridge.communicate(timeout=30)
            robot_js.communicate(timeout=30)
            motors.communicate(timeout=10)
        assert up.stop() == 0

    assert bridge.returncode == 0, bridge_err
    summary = json.loads(bridge_out)
    assert summary["operator"] == described["operator"] and summary["pinned"] is True  # trust on first use
    assert summary["broker"] == described["broker_tls"] and summary["delivered"] >= 1
    assert summary["market_verified"].get("task key-2", 0) >= 1 and summary["market_verified"].get("award key-2", 0) >= 1
    events = [json.loads(line) for line in js_lines if line.startswith("{")]
    assert next(e for e in events if e["event"] == "fleet")["tls"] is True
    assert {"event": "connected", "tls": True} in events
    assert any(e["event"] == "award" and e.get("taken") for e in events)
    kids = {(e["kind"], e["kid"]) for e in events if e["event"] == "verified"}
    assert {("award", "key-2")} <= kids
