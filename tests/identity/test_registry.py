"""The DID registry: genesis, rotation, controller authority, deactivation, history, persistence.

Every test that takes ``registry`` or ``database_url`` runs twice: on a SQLite file and on a PostgreSQL
database of the suite's server (tests/conftest.py).
"""

import copy
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from identity.did import Method, did_peaq
from identity.document import MachineProfile, build_document, next_document
from identity.errors import RegistryError
from identity.keys import Signer
from identity.lifecycle import create_identity, current_method, deactivate_identity, rotate_key
from identity.proof import add_proof
from identity.registry import DidRegistry, Resolution
from tests.pgserver import free_port


@pytest.fixture
def registry(database_url: str, clock) -> Iterator[DidRegistry]:
    """A registry on SQLite, then on PostgreSQL, that checks for other writers on every key lookup."""
    with DidRegistry(database_url, clock=clock, refresh_interval_s=0.0) as reg:
        yield reg


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


def raw_execute(url: str, statement: str) -> None:
    """Run ``statement`` on the registry's database directly, past DidRegistry, and commit it."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///"):])) as raw:
            raw.execute(statement)
            raw.commit()
    else:
        with psycopg.connect(url) as raw:
            raw.execute(statement)


def test_history_survives_reopening_and_is_append_only(database_url: str, clock) -> None:
    k1, k2 = Signer.generate(), Signer.generate()
    with DidRegistry(database_url, clock=clock) as registry:
        robot = create_identity(registry, k1)
        rotate_key(registry, robot.did, k2.public_key, k1, f"{robot.did}#key-1")
    statements = ["UPDATE did_versions SET key_id = 'key-9'", "DELETE FROM did_versions"]
    if database_url.startswith("postgresql://"):
        statements.append("TRUNCATE did_versions")
    for statement in statements:
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.RaiseException), match="append-only"):
            raw_execute(database_url, statement)
    with DidRegistry(database_url, clock=clock) as reopened:
        assert [v.key_id for v in reopened.history(robot.did)] == ["key-1", "key-2"]


def test_a_path_and_a_sqlite_url_open_the_same_file(tmp_path: Path, clock) -> None:
    path = tmp_path / "deep" / "reg.sqlite3"
    with DidRegistry(path, clock=clock) as by_path, DidRegistry(f"sqlite:///{path}", clock=clock) as by_url:
        robot = create_identity(by_path, Signer.generate())
        assert by_url.dids() == [robot.did]
        assert by_path.path == by_url.path == path


def test_a_database_it_cannot_use_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="unknown registry database URL") as unknown:
        DidRegistry("mysql://depai@127.0.0.1/fleet")
    with pytest.raises(RegistryError, match="cannot connect") as unreachable:
        DidRegistry(f"postgresql://depai:s3cret@127.0.0.1:{free_port()}/postgres")
    assert unknown.value.code == unreachable.value.code == "registry_unavailable"
    assert "s3cret" not in str(unreachable.value) and "postgresql://depai:***@" in str(unreachable.value)


def test_another_process_sees_registrations_and_rotations(database_url: str, clock) -> None:
    """A second registry on the same database (as another process would have) drops its cached keys."""
    k1, k2 = Signer.generate(), Signer.generate()
    with DidRegistry(database_url, clock=clock) as writer, \
            DidRegistry(database_url, clock=clock, refresh_interval_s=0.0) as reader:
        robot = create_identity(writer, k1)
        assert robot.did in reader and reader.dids() == [robot.did]
        assert reader.key(robot.did, "key-1").valid_until_ms is None
        clock.advance(5)
        rotated = rotate_key(writer, robot.did, k2.public_key, k1, f"{robot.did}#key-1")
        assert reader.key(robot.did, "key-1").valid_until_ms == rotated.valid_from_ms
        assert reader.key(robot.did, "key-2").public_key == k2.public_key
        assert reader.active(robot.did).version == 2
        gone = deactivate_identity(writer, robot.did, k2, f"{robot.did}#key-2")
        assert reader.key(robot.did, "key-2").deactivated_at_ms == gone.valid_from_ms


def test_a_concurrent_double_registration_records_one_genesis(database_url: str, clock) -> None:
    """Two processes register one DID with different genesis documents at once: one wins, the other is refused."""
    with DidRegistry(database_url, clock=clock) as first, DidRegistry(database_url, clock=clock) as second:
        for _ in range(5):
            key = Signer.generate()
            start = threading.Barrier(2)
            outcomes: dict[str, Resolution | RegistryError] = {}

            def register(registry: DidRegistry, topic_root: str) -> None:
                start.wait()
                try:
                    outcomes[topic_root] = create_identity(registry, key, topic_root=topic_root)
                except RegistryError as err:
                    outcomes[topic_root] = err

            threads = [threading.Thread(target=register, args=(first, "depai/v1/robots/a")),
                       threading.Thread(target=register, args=(second, "depai/v1/robots/b"))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            (winner,) = [topic for topic, outcome in outcomes.items() if isinstance(outcome, Resolution)]
            (loser,) = [outcome for outcome in outcomes.values() if isinstance(outcome, RegistryError)]
            assert loser.code == "already_registered"
            (genesis,) = first.history(did_peaq(key.public_key))
            assert genesis.version == 1
            assert genesis.document["service"][0]["serviceEndpoint"] == {"topicRoot": winner}


@pytest.mark.parametrize("taken", [1, 2], ids=["genesis", "rotation"])
def test_a_version_another_writer_took_first_is_a_registry_error(postgres_url: str, clock, taken: int) -> None:
    """A writer that skips the registry's lock (an older build, a hand-written INSERT) makes the registry's own
    INSERT wait on the primary key and then fail: that failure is a RegistryError, not a psycopg one."""
    key = Signer.generate()
    did = did_peaq(key.public_key)
    with DidRegistry(postgres_url, clock=clock) as registry, psycopg.connect(postgres_url) as intruder, \
            psycopg.connect(postgres_url, autocommit=True) as watcher:
        if taken == 1:
            document = add_proof(build_document(did, key.public_key), key, f"{did}#key-1", created_ms=0)
        else:
            robot = create_identity(registry, key)
            document = add_proof(next_document(robot.document, Signer.generate().public_key), key,
                                 f"{did}#key-1", created_ms=0)
        intruder.execute("INSERT INTO did_versions (did, version, document, valid_from, authorized_by)"
                         " VALUES (%s, %s, '{}', 0, 'intruder')", (did, taken))
        submit = registry.register if taken == 1 else registry.update
        codes: list[str] = []
        writer = threading.Thread(target=lambda: codes.append(refused(lambda: submit(document))))
        writer.start()
        deadline = time.monotonic() + 10
        while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
            assert time.monotonic() < deadline, "the registry's INSERT never waited on the intruder's row"
            time.sleep(0.01)
        intruder.commit()
        writer.join(timeout=30)
    assert codes == ["already_registered" if taken == 1 else "stale_update"]
    with DidRegistry(postgres_url, clock=clock) as reopened:
        assert [v.authorized_by for v in reopened.history(did)][taken - 1:] == ["intruder"]
