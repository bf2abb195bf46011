"""The DID registry: genesis, rotation, controller authority, deactivation, history, persistence."""

import copy
from collections.abc import Callable
import sqlite3
from pathlib import Path

import pytest

from identity.did import Method, did_peaq
from identity.document import MachineProfile, build_document, next_document
from identity.errors import RegistryError
from identity.keys import Signer
from identity.lifecycle import create_identity, current_method, deactivate_identity, rotate_key
from identity.proof import add_proof
from identity.registry import DidRegistry


def refused(action: Callable[[], object]) -> str:
    """The code of the RegistryError that ``action`` must raise."""
    with pytest.raises(RegistryError) as caught:
        action()
    return caught.value.code


def test_genesis_document_is_w3c_shaped(registry: DidRegistry) -> None:
    key = Signer.generate()
    dao = create_identity(registry, Signer.generate())
    robot = create_identity(
        registry, key, controller=dao.did, topic_root="depai/v1/robots/r1",
        machine=MachineProfile("courier", ["delivery"], 2.0, 15.0),
    )
    doc = robot.document
    assert doc["@context"][0] == "https://www.w3.org/ns/did/v1"
    assert doc["id"] == did_peaq(key.public_key)
    assert doc["controller"] == dao.did
    (method,) = doc["verificationMethod"]
    assert method["id"] == f"{doc['id']}#key-1"
    assert method["type"] == "Multikey"
    assert method["publicKeyMultibase"].startswith("z6Mk")
    assert doc["authentication"] == doc["assertionMethod"] == [method["id"]]
    assert doc["service"][0]["serviceEndpoint"] == {"topicRoot": "depai/v1/robots/r1"}
    assert doc["machine"] == {"model": "courier", "capabilities": ["delivery"], "max_speed_mps": 2.0, "payload_kg": 15.0}
    assert doc["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    assert robot.version == 1 and robot.key_id == "key-1" and robot.public_key == key.public_key


def test_genesis_must_be_signed_by_the_did_key(registry: DidRegistry) -> None:
    key, other = Signer.generate(), Signer.generate()
    did = did_peaq(key.public_key)
    document = build_document(did, key.public_key)
    assert refused(lambda: registry.register(add_proof(document, other, f"{did}#key-1", created_ms=0))) == "unauthorized"
    assert refused(lambda: registry.register(document)) == "unauthorized"
    assert did not in registry


def test_nobody_can_register_a_did_for_a_key_they_do_not_hold(registry: DidRegistry) -> None:
    victim, attacker = Signer.generate(), Signer.generate()
    did = did_peaq(victim.public_key)
    document = build_document(did, attacker.public_key)
    assert refused(lambda: registry.register(add_proof(document, attacker, f"{did}#key-1", created_ms=0))) == "genesis_mismatch"


def test_register_is_idempotent_but_refuses_a_different_genesis(registry: DidRegistry) -> None:
    key = Signer.generate()
    first = create_identity(registry, key)
    assert registry.register(first.document).version == 1
    assert refused(lambda: create_identity(registry, key, topic_root="elsewhere")) == "already_registered"


def test_rotation_by_current_key_and_history(registry: DidRegistry, clock) -> None:
    old, new = Signer.generate(), Signer.generate()
    robot = create_identity(registry, old)
    clock.advance(10)
    rotated = rotate_key(registry, robot.did, new.public_key, old, f"{robot.did}#key-1")
    assert rotated.version == 2 and rotated.key_id == "key-2" and rotated.public_key == new.public_key
    assert [v.key_id for v in registry.history(robot.did)] == ["key-1", "key-2"]
    key1 = registry.key(robot.did, "key-1")
    assert key1.valid_until_ms == rotated.valid_from_ms
    assert key1.valid_at(rotated.valid_from_ms - 1) and not key1.valid_at(rotated.valid_from_ms)
    assert registry.key(robot.did, "key-2").valid_until_ms is None
    assert registry.resolve(robot.did, at_ms=rotated.valid_from_ms - 1).key_id == "key-1"


def test_rotated_out_key_cannot_authorize_anything(registry: DidRegistry) -> None:
    k1, k2, k3 = Signer.generate(), Signer.generate(), Signer.generate()
    robot = create_identity(registry, k1)
    rotate_key(registry, robot.did, k2.public_key, k1, f"{robot.did}#key-1")
    assert refused(lambda: rotate_key(registry, robot.did, k3.public_key, k1, f"{robot.did}#key-1")) == "unauthorized"
    assert refused(lambda: rotate_key(registry, robot.did, k3.public_key, k1, f"{robot.did}#key-2")) == "unauthorized"
    assert len(registry.history(robot.did)) == 2


def test_controller_can_rotate_a_stranger_cannot(registry: DidRegistry) -> None:
    dao_key, robot_key, stranger = Signer.generate(), Signer.generate(), Signer.generate()
    dao = create_identity(registry, dao_key)
    intruder = create_identity(registry, stranger)
    robot = create_identity(registry, robot_key, controller=dao.did)
    assert refused(lambda: rotate_key(registry, robot.did, Signer.generate().public_key, stranger, current_method(registry, intruder.did))) == "unauthorized"
    rotated = rotate_key(registry, robot.did, Signer.generate().public_key, dao_key, current_method(registry, dao.did))
    assert rotated.authorized_by == f"{dao.did}#key-1"


def test_the_new_document_cannot_grab_control(registry: DidRegistry) -> None:
    """Authority comes from the current version's controller, not from the one the update claims."""
    robot_key, attacker = Signer.generate(), Signer.generate()
    robot = create_identity(registry, robot_key)
    hostile = create_identity(registry, attacker)
    successor = next_document(robot.document, attacker.public_key)
    successor["controller"] = hostile.did
    assert refused(lambda: registry.update(add_proof(successor, attacker, f"{hostile.did}#key-1", created_ms=0))) == "unauthorized"


def test_key_ids_must_count_up_by_one(registry: DidRegistry) -> None:
    key = Signer.generate()
    robot = create_identity(registry, key)
    skipping = next_document(next_document(robot.document, Signer.generate().public_key), Signer.generate().public_key)
    assert refused(lambda: registry.update(add_proof(skipping, key, f"{robot.did}#key-1", created_ms=0))) == "bad_key_id"
    reuse = next_document(robot.document, key.public_key)
    assert refused(lambda: registry.update(add_proof(reuse, key, f"{robot.did}#key-1", created_ms=0))) == "key_reused"


def test_metadata_update_keeps_the_key(registry: DidRegistry) -> None:
    key = Signer.generate()
    robot = create_identity(registry, key)
    changed = copy.deepcopy(robot.document)
    changed["machine"] = MachineProfile("courier-xl").to_json()
    updated = registry.update(add_proof(changed, key, f"{robot.did}#key-1", created_ms=0))
    assert updated.version == 2 and updated.key_id == "key-1"
    assert registry.key(robot.did, "key-1").valid_until_ms is None


def test_did_key_cannot_rotate(registry: DidRegistry) -> None:
    key = Signer.generate()
    robot = create_identity(registry, key, method=Method.KEY)
    assert refused(lambda: rotate_key(registry, robot.did, Signer.generate().public_key, key, f"{robot.did}#key-1")) == "not_rotatable"


def test_deactivation_is_final(registry: DidRegistry) -> None:
    key = Signer.generate()
    robot = create_identity(registry, key)
    gone = deactivate_identity(registry, robot.did, key, f"{robot.did}#key-1")
    assert gone.deactivated and gone.version == 2
    assert registry.key(robot.did, "key-1").deactivated_at_ms == gone.valid_from_ms
    for action in (
        lambda: rotate_key(registry, robot.did, Signer.generate().public_key, key, f"{robot.did}#key-1"),
        lambda: deactivate_identity(registry, robot.did, key, f"{robot.did}#key-1"),
    ):
        assert refused(action) == "deactivated"


def test_deactivation_needs_authority(registry: DidRegistry) -> None:
    robot = create_identity(registry, Signer.generate())
    stranger = Signer.generate()
    assert refused(lambda: deactivate_identity(registry, robot.did, stranger, f"{robot.did}#key-1")) == "unauthorized"
    assert not registry.resolve(robot.did).deactivated


def test_unknown_did_and_key(registry: DidRegistry) -> None:
    assert refused(lambda: registry.resolve(did_peaq(Signer.generate().public_key))) == "unknown_did"
    robot = create_identity(registry, Signer.generate())
    assert refused(lambda: registry.key(robot.did, "key-7")) == "unknown_key"


def test_history_survives_reopening_and_is_append_only(tmp_path: Path, clock) -> None:
    path = tmp_path / "reg.sqlite3"
    k1, k2 = Signer.generate(), Signer.generate()
    with DidRegistry(path, clock=clock) as registry:
        robot = create_identity(registry, k1)
        rotate_key(registry, robot.did, k2.public_key, k1, f"{robot.did}#key-1")
    with DidRegistry(path, clock=clock) as reopened:
        assert [v.key_id for v in reopened.history(robot.did)] == ["key-1", "key-2"]
    raw = sqlite3.connect(path)
    for statement in ("UPDATE did_versions SET public_key = x'00'", "DELETE FROM did_versions"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
    raw.close()


def test_another_process_sees_a_rotation(tmp_path: Path, clock) -> None:
    """A second registry handle on the same file (as another process would have) drops its cached keys."""
    path = tmp_path / "reg.sqlite3"
    k1, k2 = Signer.generate(), Signer.generate()
    with DidRegistry(path, clock=clock) as writer, DidRegistry(path, clock=clock, refresh_interval_s=0.0) as reader:
        robot = create_identity(writer, k1)
        assert reader.key(robot.did, "key-1").valid_until_ms is None
        rotate_key(writer, robot.did, k2.public_key, k1, f"{robot.did}#key-1")
        assert reader.key(robot.did, "key-1").valid_until_ms is not None
        assert reader.key(robot.did, "key-2").public_key == k2.public_key
