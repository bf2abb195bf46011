"""eddsa-jcs-2022 Data Integrity proofs, checked against the W3C vc-di-eddsa test vector."""

import copy

import pytest

from identity.errors import ProofError
from identity.keys import Signer
from identity.multikey import ED25519_PRIV, decode_multikey
from identity.proof import add_proof, verify_proof

# W3C "Data Integrity EdDSA Cryptosuites v1.0", test vectors for eddsa-jcs-2022
# (TestVectors/keyPair.json and TestVectors/eddsa-jcs-2022/signedJCS.json).
W3C_SECRET = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"
W3C_CREDENTIAL = {
    "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
    "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
    "type": ["VerifiableCredential", "AlumniCredential"],
    "name": "Alumni Credential",
    "description": "A minimum viable example of an Alumni Credential.",
    "issuer": "https://vc.example/issuers/5678",
    "validFrom": "2023-01-01T00:00:00Z",
    "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"},
}
W3C_METHOD = "https://vc.example/issuers/5678#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
W3C_CREATED_MS = 1677281798000  # 2023-02-24T23:36:38Z
W3C_PROOF_VALUE = "z63t83Y53KfzJ5ZosfKTnqfMcKB2dmTrfjSaQjeNNjAD5srBowQfmWqeRb8rRjmeEuCBEsddF9LsVogtuTsijJKh4"


@pytest.fixture
def w3c_signer() -> Signer:
    return Signer(decode_multikey(W3C_SECRET, ED25519_PRIV))


def test_w3c_eddsa_jcs_2022_vector(w3c_signer: Signer) -> None:
    signed = add_proof(W3C_CREDENTIAL, w3c_signer, W3C_METHOD, created_ms=W3C_CREATED_MS)
    assert signed["proof"]["created"] == "2023-02-24T23:36:38Z"
    assert signed["proof"]["proofValue"] == W3C_PROOF_VALUE
    assert verify_proof(signed, w3c_signer.public_key, purpose="assertionMethod")["proofValue"] == W3C_PROOF_VALUE


def test_any_change_breaks_the_proof(w3c_signer: Signer) -> None:
    signed = add_proof(W3C_CREDENTIAL, w3c_signer, W3C_METHOD, created_ms=W3C_CREATED_MS)
    for mutate in (
        lambda d: d.__setitem__("name", "Forged"),
        lambda d: d["credentialSubject"].__setitem__("alumniOf", "Elsewhere"),
        lambda d: d["proof"].__setitem__("created", "2024-01-01T00:00:00Z"),
        lambda d: d["proof"].__setitem__("proofPurpose", "authentication"),
        lambda d: d["proof"].__setitem__("proofValue", W3C_PROOF_VALUE[:-1] + "5"),
    ):
        forged = copy.deepcopy(signed)
        mutate(forged)
        with pytest.raises(ProofError):
            verify_proof(forged, w3c_signer.public_key)


def test_wrong_key_and_missing_proof(w3c_signer: Signer) -> None:
    signed = add_proof(W3C_CREDENTIAL, w3c_signer, W3C_METHOD, created_ms=W3C_CREATED_MS)
    with pytest.raises(ProofError) as caught:
        verify_proof(signed, Signer.generate().public_key)
    assert caught.value.code == "proof_signature"
    with pytest.raises(ProofError) as caught:
        verify_proof(W3C_CREDENTIAL, w3c_signer.public_key)
    assert caught.value.code == "proof_missing"


def test_wrong_purpose_and_suite(w3c_signer: Signer) -> None:
    signed = add_proof(W3C_CREDENTIAL, w3c_signer, W3C_METHOD, created_ms=W3C_CREATED_MS)
    with pytest.raises(ProofError) as caught:
        verify_proof(signed, w3c_signer.public_key, purpose="authentication")
    assert caught.value.code == "proof_purpose"
    other = copy.deepcopy(signed)
    other["proof"]["cryptosuite"] = "eddsa-rdfc-2022"
    with pytest.raises(ProofError) as caught:
        verify_proof(other, w3c_signer.public_key)
    assert caught.value.code == "proof_suite"
