"""A fleet's own identities rotate their keys: crash-safe in the store, signed by the right key, followed by the
running service, and from the command line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from identity.envelope import EnvelopeVerifier
from identity.errors import DepaiError
from identity.keys import Signer
from identity.lifecycle import current_method, rotate_key
from launch.cli import main
from launch.identities import IdentityStore
from launch.output import EXIT_NOT_FOUND, EXIT_OK
from launch.serve import FollowedIdentity


@pytest.fixture
def store(tmp_path, registry):
    return IdentityStore(tmp_path / "identities.json", registry)


def test_a_rotated_identity_keeps_its_did_and_signs_with_key_2(store, registry, clock) -> None:
    market = store.enroll("market")
    clock.advance(1)
    rotated = store.rotate("market")
    assert rotated.did == market.did and rotated.signer.public_key != market.signer.public_key
    assert registry.active(market.did).public_key == rotated.signer.public_key
    clock.advance(1)
    wire = rotated.envelope_signer(clock).seal("award", {"task": "t1"})
    assert EnvelopeVerifier(registry, clock=clock).verify(wire).issuer == market.did  # key-2, named and valid
    again = IdentityStore(store.path, registry).enroll("market")  # another process reads the rotated record
    assert (again.did, again.signer.public_key) == (market.did, rotated.signer.public_key)


def test_a_controlled_identity_is_rotated_by_its_controller(store, registry) -> None:
    operator = store.enroll("operator")
    ledger = store.enroll("ledger", controller=operator.did)
    assert store.rotate("ledger").did == ledger.did
    assert registry.active(ledger.did).authorized_by.startswith(operator.did)


@pytest.mark.parametrize("registry_got_it", [False, True], ids=["killed before the registry", "killed after"])
def test_a_rotation_killed_half_way_settles_on_the_key_the_registry_holds(store, registry, clock,
                                                                         registry_got_it: bool) -> None:
    market = store.enroll("market")
    successor = Signer.generate()
    record = json.loads(store.path.read_text())
    record["market"] = {"seed": record["market"], "did": market.did, "next": successor.seed.hex()}
    store.path.write_text(json.dumps(record))  # the new seed saved first, as rotate() does
    if registry_got_it:
        clock.advance(1)
        rotate_key(registry, market.did, successor.public_key, market.signer, current_method(registry, market.did))
    held = IdentityStore(store.path, registry).enroll("market")
    expected = successor.public_key if registry_got_it else market.signer.public_key
    assert held.signer.public_key == expected == registry.active(market.did).public_key
    assert "next" not in json.loads(store.path.read_text())["market"]


def test_the_running_service_follows_a_rotation(store, registry, clock, monkeypatch) -> None:
    ctx = SimpleNamespace(identity=store.enroll, identities=store, registry=registry)
    followed = FollowedIdentity(ctx, "market")  # type: ignore[arg-type]
    monkeypatch.setattr(FollowedIdentity, "CHECK_EVERY_S", 0.0)
    followed._next = 0.0
    assert followed.current()[1] is False
    clock.advance(1)
    IdentityStore(store.path, registry).rotate("market")  # as `depai id rotate market --state` does elsewhere
    identity, changed = followed.current()
    assert changed and identity.signer.public_key == registry.active(identity.did).public_key


def test_depai_id_rotate_with_state_rotates_a_fleet_identity(tmp_path, registry, capsys) -> None:
    state = tmp_path / "fleet"
    state.mkdir()
    store = IdentityStore(state / "identities.json", registry)
    store.enroll("market")
    registry.close()
    assert main(["id", "rotate", "market", "--state", str(state), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["didDocumentMetadata"]["versionId"] == "2"
    assert main(["id", "rotate", "nobody", "--state", str(state)]) == EXIT_NOT_FOUND
    assert "has no identity 'nobody'" in capsys.readouterr().err
    assert main(["id", "rotate", "market", "--state", str(tmp_path / "none")]) == EXIT_NOT_FOUND


def test_an_identity_whose_controller_is_not_held_is_refused(store, registry) -> None:
    outsider = store.enroll("robot-x", controller="did:peaq:5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty")
    with pytest.raises(DepaiError, match="whose key this fleet does not hold"):
        store.rotate("robot-x")
    assert registry.active(outsider.did).version == 1
