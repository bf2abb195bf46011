"""Every DID's newest signed version, retained on depai/v1/identities/{id}: once, and again when it changes."""

from __future__ import annotations

import json

from identity.document import current_key
from identity.keys import Signer
from identity.lifecycle import create_identity, deactivate_identity, rotate_key
from identity.proof import verify_proof
from identity.registry import DidRegistry
from launch.identity_publisher import IdentityPublisher, identity_topic


def test_each_did_is_retained_once_and_again_after_a_rotation_and_a_deactivation(tmp_path) -> None:
    first, second, other = Signer.generate(), Signer.generate(), Signer.generate()
    with DidRegistry(tmp_path / "registry.sqlite3") as registry:
        did = create_identity(registry, first).did
        peer = create_identity(registry, other, method="key").did
        publisher = IdentityPublisher(registry, every_s=3600.0)
        sent = publisher.step()
        assert {m.topic for m in sent} == {identity_topic(did), identity_topic(peer)}
        assert identity_topic(did) == f"depai/v1/identities/{did.removeprefix('did:peaq:')}"
        assert all(m.qos == 1 and m.retain for m in sent)
        mine = next(m for m in sent if m.topic == identity_topic(did))
        document = json.loads(mine.payload)
        assert document == registry.active(did).document  # the registry's signed version, byte for byte
        verify_proof(document, current_key(document)[0])  # genesis: self-signed by the key the DID was made from
        assert publisher.step(now=True) == []  # nothing changed
        assert publisher.step() == []  # and not due anyway

        rotate_key(registry, did, second.public_key, first, f"{did}#key-1")
        (rotated,) = publisher.step(now=True)
        document = json.loads(rotated.payload)
        assert rotated.topic == identity_topic(did) and document["verificationMethod"][0]["id"] == f"{did}#key-2"
        verify_proof(document, first.public_key)  # signed by the key it replaces

        deactivate_identity(registry, did, second, f"{did}#key-2")
        (gone,) = publisher.step(now=True)
        assert json.loads(gone.payload)["deactivated"] is True
        assert publisher.published == 4
