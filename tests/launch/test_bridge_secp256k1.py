"""``depai bridge enroll NAME --key-type secp256k1``: a peaqOS machine (did:peaq:0x...) enrolled in a fleet.

The enrolled robot's key file holds its secp256k1 private key; its DID is the key's EIP-55 address; its
registered document carries the secp256k1 Multikey under the DAO's control; the bridge's key check passes with
that key; and what it signs (a birth and telemetry through its session) passes the fleet's ingest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.ingest import Ingest
from bus.session import MachineSession
from bus.topics import topic_root
from identity import secp256k1
from identity.envelope import EnvelopeSigner, Sequencer
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.cli import main
from robots.bridge.bridge import BridgeError, check_key


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fleet's state as far as enroll reads it: the DAO's seed (the registry is made on first use)."""
    monkeypatch.setenv("DEPAI_HOME", str(tmp_path))
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "identities.json").write_text(json.dumps({"dao": "11" * 32}))
    return tmp_path / "fleet"


def test_enroll_makes_a_secp256k1_robot_the_fleet_admits(state: Path, clock, capsys) -> None:
    assert main(["bridge", "enroll", "k1", "--key-type", "secp256k1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    signer = secp256k1.Signer(bytes.fromhex((state / "bridges" / "k1.key").read_text().strip()))
    assert out["did"] == secp256k1.did_of(signer.public_key) and out["did"].startswith("did:peaq:0x")
    assert out["mqtt_username"] == out["did"].removeprefix("did:peaq:")
    with DidRegistry(state / "registry.sqlite3", clock=clock, refresh_interval_s=0.0) as registry:
        clock.now = registry.history(out["did"])[0].valid_from_ms / 1000 + 1  # enroll registered on the wall clock
        document = check_key(registry, out["did"], signer)
        assert document["verificationMethod"][0]["publicKeyMultibase"].startswith("zQ3s")
        assert document["controller"] == out["controller"]
        received: list = []
        ingest = Ingest(registry, lambda topic, envelope: received.append(envelope), clock=clock, rate=20, burst=40)
        session = MachineSession(EnvelopeSigner(signer, out["did"], clock=clock, sequencer=Sequencer(1000)),
                                 topic_root(out["did"]), document)
        birth = session.birth()
        assert ingest.handle(birth.topic, birth.payload) is not None
        clock.advance(0.5)
        telemetry = session.message("telemetry", {"t": int(clock.now * 1000), "pose": {"x": 0.5, "y": 0.0, "theta": 0.0},
                                                  "twist": {"v": 1.0, "w": 0.0}, "battery": 0.8})
        assert ingest.handle(telemetry.topic, telemetry.payload) is not None
        assert [e.kind for e in received] == ["birth", "telemetry"]


def test_an_ed25519_key_for_the_robot_is_refused_by_the_bridge_check(state: Path, capsys) -> None:
    assert main(["bridge", "enroll", "k2", "--key-type", "secp256k1", "--json"]) == 0
    did = json.loads(capsys.readouterr().out)["did"]
    seed = bytes.fromhex((state / "bridges" / "k2.key").read_text().strip())
    with DidRegistry(state / "registry.sqlite3") as registry:
        with pytest.raises(BridgeError, match="key"):
            check_key(registry, did, Signer(seed))  # the same 32 bytes read as an Ed25519 seed: not its key
