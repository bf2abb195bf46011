"""DID documents (W3C DID Core 1.0) for machines, signed with a Data Integrity proof (identity/proof.py).

A machine's document lists its current key as a Multikey verification
method (``#key-N``, N counting rotations), uses it for authentication and
assertions, names a controller (the owner; for a fleet robot, the DAO), points to
the machine's MQTT topic root as a service, and carries machine metadata (model,
capabilities, maximum speed, payload) that planners and the marketplace read.

The key is Ed25519 (``ed25519-pub``, ``z6Mk…``) for an SS58 did:peaq or a did:key,
and secp256k1 (``secp256k1-pub``, multicodec 0xe7, the 33-byte compressed point,
``zQ3s…``) for a peaqOS ``did:peaq:0x…``. Multikey (W3C Controlled Identifiers v1.0)
rather than ``EcdsaSecp256k1RecoveryMethod2020`` with a ``blockchainAccountId``,
which peaq's own chain-side documents use: that method carries only the address,
so a verifier would have to recover the key from every signature (65-byte
recoverable signatures, ecrecover on every message), while a Multikey publishes
the key itself, lets any verifier check a plain 64-byte ES256K signature, keeps
one verification-method type and one ``@context`` for both kinds of key, and still
ties the key to the DID: the registry admits it only if its address is the DID's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from identity import secp256k1
from identity.did import parse_did, split_did_url
from identity.errors import DidError
from identity.multikey import decode_multikey, encode_multikey

DID_CONTEXT = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/multikey/v1",
    "https://w3id.org/security/data-integrity/v2",
]
MQTT_SERVICE_TYPE = "MQTTTopicRoot"


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """What a machine is and can do: published in its DID document for fleets and markets to read."""

    model: str = "generic"
    capabilities: list[str] = field(default_factory=list)
    max_speed_mps: float = 1.5
    payload_kg: float = 10.0

    def to_json(self) -> dict[str, Any]:
        """The ``machine`` member of a DID document."""
        return asdict(self)


def key_id(index: int) -> str:
    """The verification-method fragment of the ``index``-th key of a DID (``key-1`` is the first)."""
    return f"key-{index}"


def key_index(fragment: str) -> int:
    """The number in a ``key-N`` fragment; DidError for anything else."""
    prefix, _, number = fragment.partition("-")
    if prefix != "key" or not number.isdigit() or number.startswith("0"):
        raise DidError(f"key id {fragment!r} is not of the form key-N", code="key_id")
    return int(number)


def build_document(
    did: str,
    public_key: bytes,
    *,
    index: int = 1,
    controller: str | None = None,
    topic_root: str | None = None,
    machine: MachineProfile | None = None,
) -> dict[str, Any]:
    """An unsigned DID document for ``did`` whose current key is ``public_key`` as ``#key-<index>``."""
    parse_did(did)
    if controller is not None:
        parse_did(controller)
    method_id = f"{did}#{key_id(index)}"
    document: dict[str, Any] = {
        "@context": list(DID_CONTEXT),
        "id": did,
        "controller": controller or did,
        "verificationMethod": [_method(method_id, did, public_key)],
        "authentication": [method_id],
        "assertionMethod": [method_id],
    }
    if topic_root:
        document["service"] = [
            {"id": f"{did}#mqtt", "type": MQTT_SERVICE_TYPE, "serviceEndpoint": {"topicRoot": topic_root}}
        ]
    if machine is not None:
        document["machine"] = machine.to_json()
    return document


def next_document(previous: dict[str, Any], new_public_key: bytes) -> dict[str, Any]:
    """The unsigned successor of ``previous`` with its key replaced by ``new_public_key`` as the next ``key-N``."""
    _, fragment = current_key(previous)
    successor = {k: v for k, v in previous.items() if k != "proof"}
    method_id = f"{previous['id']}#{key_id(key_index(fragment) + 1)}"
    successor["verificationMethod"] = [_method(method_id, previous["id"], new_public_key)]
    successor["authentication"] = [method_id]
    successor["assertionMethod"] = [method_id]
    return successor


def current_key(document: dict[str, Any]) -> tuple[bytes, str]:
    """The public key and fragment of the document's one verification method, checked for shape."""
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        raise DidError("a DID document is a JSON object with a string 'id'", code="document_malformed")
    methods = document.get("verificationMethod")
    if not isinstance(methods, list) or len(methods) != 1 or not isinstance(methods[0], dict):
        raise DidError("a machine DID document lists exactly one verification method", code="document_malformed")
    method = methods[0]
    did, fragment = split_did_url(str(method.get("id", "")))
    if did != document["id"] or method.get("type") != "Multikey":
        raise DidError("the verification method must be a Multikey of the document's own DID", code="document_malformed")
    key_index(fragment)
    for relation in ("authentication", "assertionMethod"):
        if document.get(relation) != [method["id"]]:
            raise DidError(f"{relation} must name the verification method {method['id']}", code="document_malformed")
    multibase = str(method.get("publicKeyMultibase", ""))
    if parse_did(did).key_type == "secp256k1":
        return secp256k1.decode_multikey(multibase), fragment
    return decode_multikey(multibase), fragment


def _method(method_id: str, did: str, public_key: bytes) -> dict[str, Any]:
    """The Multikey verification method ``method_id`` of ``did``, Ed25519 or secp256k1 as the DID's kind requires."""
    if parse_did(did).key_type == "secp256k1":
        multibase = secp256k1.encode_multikey(public_key)
    else:
        multibase = encode_multikey(public_key)
    return {"id": method_id, "type": "Multikey", "controller": did, "publicKeyMultibase": multibase}


def controller_of(document: dict[str, Any]) -> str:
    """The DID that controls ``document`` (itself when none is named)."""
    controller = document.get("controller", document.get("id"))
    if not isinstance(controller, str):
        raise DidError("controller must be a single DID", code="document_malformed")
    parse_did(controller)
    return controller
