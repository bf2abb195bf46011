"""A robot written in JavaScript from docs/protocol.md alone joins a real fleet, and is refused when it cheats.

robots/js/robot.mjs (Node.js with the `mqtt` and `tweetnacl` npm packages) is run
as a subprocess against what a fleet runs: a DID registry holding the robot's
identity (machine profile and topic root, as launch/fleet.py registers robots), a
real broker with the topic ACL and the robot's own login, and an ingest worker
logged in as the fleet's services. Every message the robot signs is verified by
the Python verifier; an accepted envelope is therefore byte-for-byte what the
protocol says.

Without `node` these tests skip (they fail under CI, where .ci/run installs it);
without robots/js/node_modules they run `npm ci` first, once per session.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
from identity.lifecycle import create_identity
from identity.registry import DidRegistry

from tests.conftest import JS_ROBOT as ROBOT
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
