"""Data Integrity proofs with the ``eddsa-jcs-2022`` cryptosuite (W3C "Data Integrity EdDSA Cryptosuites v1.0").

A proof signs SHA-256(JCS(proof options)) || SHA-256(JCS(document without proof))
with Ed25519 and stores the signature as a base58btc multibase ``proofValue``.
Because the canonical form is RFC 8785, any language can check a DID document
we sign, and we can check theirs. The W3C test vector is in the tests.

A secp256k1 key (a ``did:peaq:0x…`` machine) signs the same 64 bytes of hash data
with ES256K (identity/secp256k1.py: ECDSA over SHA-256 of them, 64-byte r ‖ s, low s)
under the cryptosuite name ``depai-es256k-jcs-1``: the ``ecdsa-jcs-2019``
procedure of "Data Integrity ECDSA Cryptosuites v1.0" with secp256k1 in place of
P-256, which that specification leaves out, so the suite carries our own name.
The suite follows the key: an Ed25519 key never verifies an ES256K proof, nor the reverse.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from identity import secp256k1
from identity.base58 import b58decode, b58encode
from identity.canonical import CanonicalError, canonicalize
from identity.errors import ProofError
from identity.keys import Signer, verify

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-jcs-2022"
SECP256K1_CRYPTOSUITE = "depai-es256k-jcs-1"


def cryptosuite_of(public_key: bytes) -> str:
    """The cryptosuite a key signs proofs with: ES256K for a compressed secp256k1 key, else eddsa-jcs-2022."""
    return SECP256K1_CRYPTOSUITE if secp256k1.is_public_key(public_key) else CRYPTOSUITE


def timestamp(ms: int) -> str:
    """An XML Schema dateTimeStamp in UTC with second precision, as proofs and DID metadata use."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_data(document: dict[str, Any], options: dict[str, Any]) -> bytes:
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    try:
        return hashlib.sha256(canonicalize(options)).digest() + hashlib.sha256(canonicalize(unsecured)).digest()
    except CanonicalError as err:
        raise ProofError(f"document cannot be canonicalized: {err}", code="proof_malformed") from None


def add_proof(
    document: dict[str, Any],
    signer: Signer | secp256k1.Signer,
    verification_method: str,
    *,
    created_ms: int,
    purpose: str = "assertionMethod",
) -> dict[str, Any]:
    """A copy of ``document`` with a proof by ``signer`` (eddsa-jcs-2022, or ES256K for a secp256k1 key),
    replacing any existing proof."""
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    options: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": cryptosuite_of(signer.public_key),
        "created": timestamp(created_ms),
        "verificationMethod": verification_method,
        "proofPurpose": purpose,
    }
    if "@context" in unsecured:
        options["@context"] = unsecured["@context"]
    signature = signer.sign(_hash_data(unsecured, options))
    return {**unsecured, "proof": {**options, "proofValue": "z" + b58encode(signature)}}


def proof_of(document: dict[str, Any]) -> dict[str, Any]:
    """The document's single proof object, checked for type and cryptosuite."""
    proof = document.get("proof") if isinstance(document, dict) else None
    if not isinstance(proof, dict):
        raise ProofError("document carries no proof object", code="proof_missing", hint="sign it first")
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") not in (CRYPTOSUITE, SECP256K1_CRYPTOSUITE):
        raise ProofError(
            f"proof is {proof.get('type')}/{proof.get('cryptosuite')}, expected {PROOF_TYPE}/{CRYPTOSUITE}"
            f" (or {SECP256K1_CRYPTOSUITE} for a secp256k1 key)",
            code="proof_suite",
        )
    for field in ("verificationMethod", "proofPurpose", "proofValue", "created"):
        if not isinstance(proof.get(field), str):
            raise ProofError(f"proof field {field!r} is missing or not a string", code="proof_malformed")
    return proof


def verify_proof(document: dict[str, Any], public_key: bytes, *, purpose: str | None = None) -> dict[str, Any]:
    """Check the document's proof against ``public_key``; returns the proof, raises ProofError if it fails."""
    proof = proof_of(document)
    if proof["cryptosuite"] != cryptosuite_of(public_key):
        raise ProofError(
            f"proof is {proof['cryptosuite']}, but the key of {proof['verificationMethod']} signs"
            f" {cryptosuite_of(public_key)}",
            code="proof_suite",
        )
    if purpose is not None and proof["proofPurpose"] != purpose:
        raise ProofError(f"proof purpose is {proof['proofPurpose']!r}, expected {purpose!r}", code="proof_purpose")
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if "@context" in options:
        context = document.get("@context")
        expected = options["@context"] if isinstance(options["@context"], list) else [options["@context"]]
        actual = context if isinstance(context, list) else [context]
        if actual[: len(expected)] != expected:
            raise ProofError("proof @context does not match the document's", code="proof_malformed")
    value = proof["proofValue"]
    try:
        signature = b58decode(value[1:]) if value.startswith("z") else b""
    except ValueError:
        signature = b""
    check = secp256k1.verify if proof["cryptosuite"] == SECP256K1_CRYPTOSUITE else verify
    if not check(public_key, _hash_data(document, options), signature):
        raise ProofError(
            f"proof by {proof['verificationMethod']} does not verify",
            code="proof_signature",
            hint="the document was changed after signing, or signed by another key",
        )
    return proof
