"""The life of a machine identity: create and register it, rotate its key, deactivate it.

These are the only places that build, sign and submit DID documents, so the CLI,
the simulated fleet and the hardware bridge all follow the same rules.
"""

from __future__ import annotations

from typing import Any

from identity.did import Method, make_did
from identity.document import MachineProfile, build_document, next_document
from identity.keys import Signer
from identity.proof import add_proof
from identity.registry import DidRegistry, Resolution


def create_identity(
    registry: DidRegistry,
    signer: Signer,
    *,
    method: Method | str = Method.PEAQ,
    controller: str | None = None,
    topic_root: str | None = None,
    machine: MachineProfile | None = None,
) -> Resolution:
    """Derive the DID of ``signer``'s key, self-sign its genesis document and register it."""
    did = make_did(signer.public_key, method)
    document = build_document(
        did, signer.public_key, controller=controller, topic_root=topic_root, machine=machine
    )
    signed = add_proof(document, signer, f"{did}#key-1", created_ms=registry.now_ms())
    return registry.register(signed)


def rotate_key(
    registry: DidRegistry,
    did: str,
    new_public_key: bytes,
    authorizer: Signer,
    authorizer_method: str,
) -> Resolution:
    """Replace the key of ``did`` with ``new_public_key``, authorized by its current key or its controller's."""
    current = registry.active(did)
    successor = next_document(current.document, new_public_key)
    return registry.update(add_proof(successor, authorizer, authorizer_method, created_ms=registry.now_ms()))


def deactivate_identity(registry: DidRegistry, did: str, authorizer: Signer, authorizer_method: str) -> Resolution:
    """Deactivate ``did`` for good; later messages from it are refused, earlier ones stay verifiable."""
    statement: dict[str, Any] = {"id": did, "deactivated": True}
    return registry.deactivate(add_proof(statement, authorizer, authorizer_method, created_ms=registry.now_ms()))


def current_method(registry: DidRegistry, did: str) -> str:
    """The verification-method URL (``did#key-N``) of the DID's key in force now."""
    return f"{did}#{registry.active(did).key_id}"
