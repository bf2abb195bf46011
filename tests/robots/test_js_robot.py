"""A robot written in JavaScript from docs/protocol.md alone joins a real fleet, and is refused when it cheats.

robots/js/robot.mjs (Node.js with the `mqtt` and `tweetnacl` npm packages) is run
as a subprocess against what a fleet runs: a DID registry holding the robot's
identity (machine profile and topic root, as launch/fleet.py registers robots), a
real broker with the topic ACL and the robot's own login, and an ingest worker
logged in as the fleet's services. Every message the robot signs is verified by
the Python verifier; an accepted envelope is therefore byte-for-byte what the
protocol says.

With ``DEPAI_FLEET`` the robot gets everything from the network: the fleet
descriptor and every DID over HTTP (tests/identity/test_http_resolver.py's
stand-in of the dashboard's resolver, over the same registry), and takes part
in the marketplace: here the test is the marketplace, signing a task, rotating
its key and awarding with the new one, so the robot's own verification (key
windows, rotation, replay, who may sign) is what is tested.
tests/launch/test_remote_robot.py runs it against a whole fleet, paid.

Without `node` these tests skip (they fail under CI, where .ci/run installs it);
without robots/js/node_modules they run `npm ci` first, once per session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus.broker import BrokerConfig, MqttUser, RunningBroker, start_broker
from bus.topics import topic_root
from bus.worker import IngestWorker
from dashboard.telemetry import TelemetryBoard
from identity.canonical import canonicalize
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.envelope import Envelope
from identity.keys import Signer
from identity.lifecycle import create_identity, current_method, rotate_key
from identity.registry import DidRegistry

from bus.client import BusClient
from bus.topics import MARKET_AWARDS, MARKET_TASKS
from identity.envelope import EnvelopeSigner
from tests.conftest import JS_ROBOT as ROBOT
from tests.identity.test_http_resolver import ResolverServer
RUN_S = 2.6  # telemetry at 2 Hz: five or six samples
START = (12.5, -3.25)


@dataclass
class Heard:
    """What the fleet's ingest accepted, in order, and the map's view of it."""

    accepted: list[Envelope] = field(default_factory=list)
    board: TelemetryBoard = field(default_factory=TelemetryBoard)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, topic: str, envelope: Envelope) -> None:
        with self.lock:
            self.accepted.append(envelope)
        self.board.observe(topic, envelope)

    def of(self, kind: str) -> list[Envelope]:
        with self.lock:
            return [e for e in self.accepted if e.kind == kind]


@dataclass
class Fleet:
    """A registry with the robot's identity, a broker with its login, and an ingest worker."""

    seed: Signer
    did: str
    document: dict
    password: str
    broker: RunningBroker
    worker: IngestWorker
    heard: Heard

    def _env(self, mode: str, seconds: float, *, with_document: bool) -> dict[str, str]:
        """The robot's configuration, as an operator would provision it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPAI_")}
        env.update(DEPAI_SEED=self.seed.seed.hex(), DEPAI_DID=self.did, DEPAI_BROKER=self.broker.url,
                   DEPAI_USERNAME=self.did.rsplit(":", 1)[1], DEPAI_PASSWORD=self.password,
                   DEPAI_X=str(START[0]), DEPAI_Y=str(START[1]), DEPAI_SECONDS=str(seconds), DEPAI_MODE=mode)
        if with_document:
            env["DEPAI_DOCUMENT"] = json.dumps(self.document)
        return env

    def run_robot(self, node: str, mode: str, *, with_document: bool = True, seconds: float = RUN_S) -> list[dict]:
        """Run robot.mjs to its end; its stdout events. The process is always reaped, its pipes closed."""
        done = subprocess.run([node, str(ROBOT)], env=self._env(mode, seconds, with_document=with_document),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=seconds + 30,
                              check=False)
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert done.returncode == 0, f"robot.mjs exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return events

    def start_robot(self, node: str, mode: str, seconds: float) -> subprocess.Popen[str]:
        """Start robot.mjs in the background; the caller reaps it."""
        return subprocess.Popen([node, str(ROBOT)], env=self._env(mode, seconds, with_document=True),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until ingest has taken the robot's death (its last message), and then nothing more arrives."""
        deadline = time.monotonic() + timeout
        while not self.heard.of("death") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.heard.of("death"), f"no death accepted; refusals {self.refusals()}"
        time.sleep(0.2)

    def refusals(self) -> dict[str, float]:
        return self.worker.ingest.metrics.by("depai_ingest_refused_total", "reason")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    seed = Signer.generate()
    did = did_peaq(seed.public_key)
    with DidRegistry(tmp_path / "registry.sqlite3") as registry:
        document = create_identity(
            registry, seed, topic_root=topic_root(did),
            machine=MachineProfile("courier-js", ["delivery", "gnss"], 1.5, 10.0)).document
    password, service = secrets.token_urlsafe(18), secrets.token_hex(16)
    users = [MqttUser(did.rsplit(":", 1)[1], password, "robot"), MqttUser("services", service, "service")]
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker", users=users)) as broker:
        heard = Heard()
        url = broker.url.replace("mqtt://", f"mqtt://services:{service}@")
        with IngestWorker(url, tmp_path / "registry.sqlite3", heard, client_id="depai-ingest-js-test") as worker:
            yield Fleet(seed, did, document, password, broker, worker, heard)


def _sent(events: list[dict], kind: str, **flags: bool) -> list[int]:
    """The seqs the robot says it sent (acknowledged by the broker) of ``kind``, with exactly ``flags`` set."""
    marks = ("tampered", "replayed")
    return [e["seq"] for e in events if e["event"] == "sent" and e["kind"] == kind
            and all(bool(e.get(m)) == flags.get(m, False) for m in marks)]


def _telemetry_seqs(fleet: Fleet) -> list[int]:
    return [e.seq for e in fleet.heard.of("telemetry")]


def test_an_honest_js_robot_is_born_publishes_telemetry_appears_on_the_map_and_dies(node: str, fleet: Fleet) -> None:
    events = fleet.run_robot(node, "honest")
    fleet.settle()

    assert events[0]["event"] == "start" and events[0]["topic_root"] == topic_root(fleet.did)
    assert {"event": "connected"} in events and events[-1] == {"event": "disconnected"}
    assert fleet.refusals() == {}
    assert fleet.worker.ingest.quarantine.entries() == []
    (birth,) = fleet.heard.of("birth")
    assert birth.issuer == fleet.did and birth.body["epoch"] == birth.seq == _sent(events, "birth")[0]
    assert birth.body["document"] == fleet.document  # the registered document, as the docs ask
    sent = _sent(events, "telemetry")
    assert len(sent) >= 4 and _telemetry_seqs(fleet) == sent
    (death,) = fleet.heard.of("death")
    assert death.body == {"epoch": birth.seq, "reason": "shutdown"}
    assert fleet.did not in fleet.worker.ingest.online()  # the session ended with the explicit death

    seqs = [birth.seq, *sent, death.seq]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for envelope in fleet.heard.accepted:  # JavaScript's bytes are the canonical bytes, signed as Python checks
        assert canonicalize(json.loads(envelope.wire)) == envelope.wire
        assert envelope.key_id == "key-1" and envelope.expires_at_ms - envelope.issued_at_ms <= 3_600_000

    # On the map: the dashboard's telemetry board has it, moving along +x from where it started.
    latest = fleet.heard.board.latest()[fleet.did].body
    first = fleet.heard.of("telemetry")[0].body
    assert first["pose"]["x"] == pytest.approx(START[0], abs=0.2) and latest["pose"]["y"] == START[1]
    assert latest["pose"]["x"] > first["pose"]["x"] + 1.0 and latest["twist"]["v"] == 1.0


def test_a_tampered_telemetry_envelope_is_refused_as_bad_signature(node: str, fleet: Fleet) -> None:
    events = fleet.run_robot(node, "tamper")
    fleet.settle()

    (tampered,) = _sent(events, "telemetry", tampered=True)
    assert fleet.refusals() == {"bad_signature": 1}
    (refused,) = fleet.worker.ingest.quarantine.entries()
    assert (refused.reason, refused.did) == ("bad_signature", fleet.did)
    assert refused.topic == f"{topic_root(fleet.did)}/telemetry"
    honest = _sent(events, "telemetry")
    assert len(honest) >= 3 and _telemetry_seqs(fleet) == honest and tampered not in honest
    assert len(fleet.heard.of("birth")) == len(fleet.heard.of("death")) == 1


def test_a_replayed_telemetry_envelope_is_refused_as_replayed(node: str, fleet: Fleet) -> None:
    events = fleet.run_robot(node, "replay")
    fleet.settle()

    (replayed,) = _sent(events, "telemetry", replayed=True)
    assert fleet.refusals() == {"replayed": 1}
    (refused,) = fleet.worker.ingest.quarantine.entries()
    assert (refused.reason, refused.did) == ("replayed", fleet.did)
    sent = _sent(events, "telemetry")
    assert replayed in sent and _telemetry_seqs(fleet) == sent  # the original was accepted, once
    assert len(fleet.heard.of("birth")) == len(fleet.heard.of("death")) == 1


def test_without_its_document_the_robot_says_so_and_still_joins(node: str, fleet: Fleet) -> None:
    events = fleet.run_robot(node, "honest", with_document=False, seconds=1.2)
    fleet.settle()

    assert any(e["event"] == "warning" for e in events)
    assert fleet.refusals() == {}
    (birth,) = fleet.heard.of("birth")
    assert birth.body["document"]["id"] == fleet.did and "proof" not in birth.body["document"]
    assert _telemetry_seqs(fleet) == _sent(events, "telemetry") != []


def test_a_js_robot_that_vanishes_is_ended_by_its_signed_will(node: str, fleet: Fleet) -> None:
    robot = fleet.start_robot(node, "honest", seconds=60)
    watchdog = threading.Timer(20, robot.kill)
    watchdog.start()
    try:
        assert robot.stdout is not None
        for line in robot.stdout:  # online once its first telemetry was acknowledged
            if '"kind":"telemetry"' in line:
                break
    finally:
        robot.kill()  # no DISCONNECT: the broker publishes the will it was given at CONNECT
        watchdog.cancel()
        robot.communicate(timeout=10)
    fleet.settle()

    (birth,) = fleet.heard.of("birth")
    (death,) = fleet.heard.of("death")
    assert death.body == {"epoch": birth.seq, "reason": "will"}
    assert birth.seq < death.seq < fleet.heard.of("telemetry")[0].seq  # signed before CONNECT, after the birth
    assert death.expires_at_ms - death.issued_at_ms == 3_600_000
    assert fleet.refusals() == {} and fleet.did not in fleet.worker.ingest.online()


# RFC 8785 appendix B: IEEE 754 doubles (as hex) and the text JCS writes for each.
RFC8785_NUMBERS = {
    "0000000000000000": "0", "8000000000000000": "0", "0000000000000001": "5e-324",
    "8000000000000001": "-5e-324", "7fefffffffffffff": "1.7976931348623157e+308",
    "ffefffffffffffff": "-1.7976931348623157e+308", "4340000000000000": "9007199254740992",
    "c340000000000000": "-9007199254740992", "4430000000000000": "295147905179352830000",
    "44b52d02c7e14af5": "9.999999999999997e+22", "44b52d02c7e14af6": "1e+23",
    "44b52d02c7e14af7": "1.0000000000000001e+23", "444b1ae4d6e2ef4e": "999999999999999700000",
    "444b1ae4d6e2ef4f": "999999999999999900000", "444b1ae4d6e2ef50": "1e+21",
    "3eb0c6f7a0b5ed8c": "9.999999999999997e-7", "3eb0c6f7a0b5ed8d": "0.000001",
    "41b3de4355555553": "333333333.3333332", "41b3de4355555554": "333333333.33333325",
    "41b3de4355555555": "333333333.3333333", "41b3de4355555556": "333333333.3333334",
    "41b3de4355555557": "333333333.33333343", "becbf647612f3696": "-0.0000033333333333333333",
    "43143ff3c1cb0959": "1424953923781206.2",
}
# RFC 8785 section 3.2.3: member names sorted by UTF-16 code units, not by code points.
SORTING = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
           "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "o umlaut",
           "nested": {"b": [1.5, -0.0, 1e-7, None, True, "\u2028</\\\"\x1f"], "a": 12.0}}


def test_the_js_canonical_json_and_signer_match_python_and_the_docs(node: str) -> None:
    script = """
        import { jcs, selfTest } from "./robot.mjs";
        const input = JSON.parse(await new Promise((done) => {
          let text = ""; process.stdin.on("data", (c) => { text += c; }).on("end", () => done(text)); }));
        const numbers = input.numbers.map((hex) => jcs(Buffer.from(hex, "hex").readDoubleBE(0)));
        process.stdout.write(JSON.stringify({ numbers, sorting: jcs(input.sorting), example: selfTest() }));
    """
    stdin = json.dumps({"numbers": list(RFC8785_NUMBERS), "sorting": SORTING})
    done = subprocess.run([node, "--input-type=module", "-e", script], cwd=ROBOT.parent, input=stdin,
                          capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["example"] is True  # the worked example of docs/protocol.md, byte for byte
    assert out["numbers"] == list(RFC8785_NUMBERS.values())
    python = [canonicalize(struct.unpack(">d", bytes.fromhex(h))[0]).decode() for h in RFC8785_NUMBERS]
    assert out["numbers"] == python
    assert out["sorting"].encode() == canonicalize(SORTING)


# --- a robot that gets everything from the network -------------------------------------------------------------


@dataclass
class Market:
    """A fleet as the network shows it: a resolver and descriptor over HTTP, a broker, ingest; the test signs
    as its marketplace (``market``) and operator."""

    registry: DidRegistry
    served: ResolverServer
    robot: Signer
    robot_did: str
    password: str
    operator: Identity
    market: Identity
    outsider: Identity
    client: BusClient
    heard: Heard

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPAI_")}
        env.update(DEPAI_SEED=self.robot.seed.hex(), DEPAI_FLEET=self.served.url, DEPAI_PASSWORD=self.password,
                   DEPAI_X="0", DEPAI_Y="0", DEPAI_SECONDS="25", DEPAI_TASKS="1", **more)
        return env

    def sign(self, signer: Signer, did: str, key_id: str, kind: str, body: dict) -> bytes:
        return EnvelopeSigner(signer, did, key_id).seal(kind, body)

    def say(self, topic: str, wire: bytes) -> None:
        self.client.publish(topic, wire)


@dataclass
class Identity:
    signer: Signer
    did: str


@pytest.fixture
def market(tmp_path: Path) -> Iterator[Market]:
    registry = DidRegistry(tmp_path / "registry.sqlite3", refresh_interval_s=0.0)
    people = {name: Signer.generate() for name in ("operator", "market", "dispatcher", "map", "dao", "outsider")}
    dids = {name: create_identity(registry, signer).did for name, signer in people.items()}
    robot = Signer.generate()
    robot_did = did_peaq(robot.public_key)
    create_identity(registry, robot, controller=dids["dao"], topic_root=topic_root(robot_did),
                    machine=MachineProfile("courier-js", ["delivery", "gnss"], 5.0, 10.0))
    password, service = secrets.token_urlsafe(18), secrets.token_hex(16)
    users = [MqttUser(robot_did.rsplit(":", 1)[1], password, "robot"), MqttUser("services", service, "service")]
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker", users=users)) as broker, \
            ResolverServer(registry) as served:
        body = {"operator": dids["operator"], "market": dids["market"], "dispatcher": dids["dispatcher"],
                "map": dids["map"], "dao": dids["dao"], "commanders": [dids["dispatcher"], dids["market"]],
                "broker": broker.url, "broker_tls": None, "chargers": [[0.0, 0.0]]}
        envelope = EnvelopeSigner(people["operator"], dids["operator"]).seal("fleet.descriptor", body,
                                                                            ttl_s=86_400.0)
        served.routes["/api/fleet"] = lambda: {"descriptor": body, "operator": dids["operator"],
                                               "envelope": base64.b64encode(envelope).decode()}
        heard = Heard()
        url = broker.url.replace("mqtt://", f"mqtt://services:{service}@")
        client = BusClient(url, client_id="depai-test-market", outbox_path=tmp_path / "market-outbox.sqlite3").start()
        assert client.wait_connected(10)
        with IngestWorker(url, tmp_path / "registry.sqlite3", heard, client_id="depai-ingest-js-market") as worker:
            yield Market(registry, served, robot, robot_did, password,
                         Identity(people["operator"], dids["operator"]), Identity(people["market"], dids["market"]),
                         Identity(people["outsider"], dids["outsider"]), client, heard)
            assert worker.ingest.metrics.by("depai_ingest_refused_total", "reason") == {}, [
                (q.reason, q.detail) for q in worker.ingest.quarantine.entries()]
        client.close()
    registry.close()


def _wait(what: Callable[[], Any], timeout: float, message: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, message()
        time.sleep(0.05)
    return found


def test_a_js_robot_from_the_network_verifies_the_market_across_a_key_rotation_bids_delivers_and_proves_it(
        node: str, market: Market) -> None:
    robot = subprocess.Popen([node, str(ROBOT)], env=market.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(robot.stdout.readline, "")), daemon=True)
    reader.start()
    told = lambda: "".join(lines)[-3000:]  # noqa: E731
    try:
        _wait(lambda: market.heard.of("birth"), 10, lambda: f"the robot was never born:\n{told()}")
        now_ms = int(time.time() * 1000)
        task = {"id": "task-js-1", "customer": market.outsider.did, "pickup": {"x": 6.0, "y": 0.0},
                "dropoff": {"x": 6.0, "y": 4.0}, "deadline": now_ms + 120_000, "max_price": 2000, "currency": "EUR",
                "payload_kg": 1.5}
        m = market.market
        market.say(MARKET_TASKS, market.sign(market.outsider.signer, market.outsider.did, "key-1", "task",
                                             {**task, "id": "task-forged"}))  # not the marketplace's
        announced = market.sign(m.signer, m.did, "key-1", "task", task)
        market.say(MARKET_TASKS, announced)
        market.say(MARKET_TASKS, announced)  # the broker's redelivery, or a replay: never acted on twice
        (bid,) = _wait(lambda: market.heard.of("bid"), 10, lambda: f"no bid:\n{told()}")
        assert bid.issuer == market.robot_did and bid.body["task"] == "task-js-1" and bid.body["price"] <= 2000

        rotated = Signer.generate()  # the marketplace's key is rotated, then it awards with the new one
        rotate_key(market.registry, m.did, rotated.public_key, m.signer, current_method(market.registry, m.did))
        award = {"task": "task-js-1", "robot": market.robot_did, "price": bid.body["price"], "currency": "EUR",
                 "task_hash": hashlib.sha256(canonicalize(task)).hexdigest(),
                 "bid_hash": hashlib.sha256(bid.wire).hexdigest()}
        awarded = market.sign(rotated, m.did, "key-2", "award", award)
        market.say(MARKET_AWARDS, awarded)
        market.say(MARKET_AWARDS, awarded)  # replayed
        market.say(MARKET_AWARDS, market.sign(m.signer, m.did, "key-1", "award", award))  # the retired key

        (receipt,) = _wait(lambda: market.heard.of("receipt"), 15, lambda: f"no receipt:\n{told()}")
        assert robot.wait(15) == 0, told()
    finally:
        robot.kill()
        robot.communicate(timeout=10)
        reader.join(timeout=5)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"event": "operator", "did": market.operator.did, "pinned": True} in events  # trust on first use, said
    verified = [(e["kind"], e["kid"]) for e in events if e["event"] == "verified"]
    assert verified == [("task", "key-1"), ("award", "key-2")]  # the task before the rotation, the award after it
    refused = sorted((e["kind"], e["code"]) for e in events if e["event"] == "refused")
    if ("task", "replayed") in refused:  # else the copy came after the robot had decided, and was dropped unread
        refused.remove(("task", "replayed"))
    assert refused == [("award", "key_rotated"), ("award", "replayed"), ("task", "untrusted_sender")]
    assert receipt.body["task"] == "task-js-1"
    assert abs(receipt.body["pose"]["x"] - 6.0) < 0.01 and abs(receipt.body["pose"]["y"] - 4.0) < 0.01
    types = [e.body["type"] for e in market.heard.of("event")]
    assert types == ["task.to_pickup", "task.loaded", "task.to_dropoff", "task.delivered"]
    trail = [(e.body["pose"]["x"], e.body["pose"]["y"], e.body.get("task")) for e in market.heard.of("telemetry")]
    assert (6.0, 4.0, "task-js-1") in trail and any(abs(x - 6.0) < 0.01 and y == 0.0 for x, y, _ in trail)
    assert all(e.issued_at_ms <= receipt.issued_at_ms for e in market.heard.of("telemetry")
               if e.body["pose"] == receipt.body["pose"])  # its trail shows it there before it says so
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert summary["delivered"] == ["task-js-1"]


def test_a_js_robot_refuses_a_fleet_whose_descriptor_its_operator_did_not_sign(node: str, market: Market) -> None:
    done = subprocess.run([node, str(ROBOT)], env=market.env(DEPAI_OPERATOR=market.outsider.did), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2, done.stdout
    assert f"not {market.outsider.did}" in done.stdout
    served = market.served.routes["/api/fleet"]()
    forged = json.loads(base64.b64decode(served["envelope"]))
    forged["body"]["market"] = market.outsider.did  # the fleet (or the network) swaps the marketplace
    market.served.routes["/api/fleet"] = lambda: {**served, "envelope": base64.b64encode(canonicalize(forged)).decode()}
    done = subprocess.run([node, str(ROBOT)], env=market.env(), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2 and "bad_signature" in done.stdout, done.stdout
