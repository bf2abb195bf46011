"""peaqOS machine IDs: secp256k1 keys, ``did:peaq:0x<EIP-55 address>``, their documents, proofs and envelopes.

Published vectors first (EIP-55's own addresses, private keys with the addresses Ethereum tools print, the
RFC 6979 secp256k1 signature bitcointalk and trezor-crypto publish), then our own vectors file
(docs/vectors/secp256k1.json, which this module writes: ``.venv/bin/python -m tests.identity.test_secp256k1``),
then the registry's genesis rule and the envelope verifier's refusals for such a machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from identity import secp256k1
from identity.base58 import b58decode
from identity.canonical import canonicalize
from identity.did import did_peaq, parse_did
from identity.document import MachineProfile, build_document, current_key
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier, Refusal, Sequencer, digest
from identity.errors import DidError, RegistryError
from identity.keys import Signer
from identity.lifecycle import create_identity, rotate_key
from identity.proof import SECP256K1_CRYPTOSUITE, add_proof, verify_proof
from identity.registry import DidRegistry

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "secp256k1.json"

# EIP-55 "Test Cases" (https://eips.ethereum.org/EIPS/eip-55): all caps, all lower, mixed.
EIP55 = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
# Private key -> address as published (compared case-insensitively where the source prints lower case).
KEY_TO_ADDRESS = [
    {"source": "https://docs.web3js.org/api/web3-eth-accounts/function/privateKeyToAccount",
     "private_key": "348ce564d427a3311b6536bbcff9390d69395b06ed6c486954e971d960fe8709",
     "address": "0xb8CE9ab6943e0eCED004cDe8e3bBed6568B2Fa01"},
    {"source": "https://besu.hyperledger.org/global/test_accounts (Test Account 1)",
     "private_key": "8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63",
     "address": "0xfe3b557e8fb62b89f4916b721be55ceb828dbd73"},
    {"source": "https://besu.hyperledger.org/global/test_accounts (Test Account 2)",
     "private_key": "c87509a1c067bbde78beb793e6fa76530b6382a4c0241e5e4a9ec0a0f44dc0d3",
     "address": "0x627306090abaB3A6e1400e9345bC60c78a8BEf57"},
    {"source": "https://besu.hyperledger.org/global/test_accounts (Test Account 3)",
     "private_key": "ae6ae8e5ccbfb04590405997ee2d52d2b330726137b875053c36d94e974d162f",
     "address": "0xf17f52151EbEF6C7334FAD080c5704D77216b732"},
]
# RFC 6979 ECDSA over secp256k1 with SHA-256, private key 1, message "Satoshi Nakamoto"
# (https://bitcointalk.org/index.php?topic=285142.msg3150733, used by trezor-crypto's tests/test_check.c).
# The published s is the high one; libsecp256k1 (and this project) sign its low twin, n - s.
RFC6979 = {
    "source": "https://bitcointalk.org/index.php?topic=285142.msg3150733",
    "private_key": "0000000000000000000000000000000000000000000000000000000000000001",
    "message": "Satoshi Nakamoto",
    "published_signature": "934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8"
                           "dbbd3162d46e9f9bef7feb87c16dc13b4f6568a87f4e83f728e2443ba586675c",
}

PRIVATE_KEY_LABEL = b"depai/vectors/secp256k1/robot-1"
CREATED_MS = 1_790_000_000_000
BODY = {"battery": 0.93, "x": 1.5}


def vector_signer() -> secp256k1.Signer:
    return secp256k1.Signer(hashlib.sha256(PRIVATE_KEY_LABEL).digest())


def s_twin(signature: bytes) -> bytes:
    """The other valid encoding of an ECDSA signature: (r, n - s)."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (secp256k1.GROUP_ORDER - s).to_bytes(32, "big")


def case_flipped(did: str) -> str:
    """``did`` with the case of the first letter of its address swapped: the same address, a wrong checksum."""
    i = next(i for i, c in enumerate(did) if i >= len("did:peaq:0x") and c.isalpha())
    return did[:i] + did[i].swapcase() + did[i + 1:]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def with_sig(wire: bytes, signature: bytes) -> bytes:
    obj = json.loads(wire)
    obj["sig"] = _b64(signature)
    return canonicalize(obj)


def build_vectors() -> dict[str, Any]:
    """The vectors file's content, from the fixed key: every value a maker in another language must reproduce."""
    signer = vector_signer()
    point = secp256k1._point(signer.public_key).format(compressed=False)
    did = did_peaq(signer.public_key)
    document = add_proof(
        build_document(did, signer.public_key, machine=MachineProfile("courier-k", ["delivery"], 1.8, 12.0)),
        signer, f"{did}#key-1", created_ms=CREATED_MS,
    )
    options = {k: v for k, v in document["proof"].items() if k != "proofValue"}
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    hash_data = hashlib.sha256(canonicalize(options)).digest() + hashlib.sha256(canonicalize(unsecured)).digest()
    sealer = EnvelopeSigner(signer, did, "key-1", clock=lambda: CREATED_MS / 1000, sequencer=Sequencer(100))
    wire = sealer.seal("telemetry", BODY)
    obj = json.loads(wire)
    unsigned = canonicalize({k: v for k, v in obj.items() if k != "sig"})
    envelope_digest = digest("telemetry", unsigned)
    signature = _unb64(obj["sig"])
    return {
        "about": "peaqOS machine ID (did:peaq:0x<EIP-55 address>) over secp256k1: key, address, DID, DID document "
                 "and a signed envelope; the spec is docs/protocol.md, section 'peaqOS machine IDs (secp256k1)'. "
                 "Written by `.venv/bin/python -m tests.identity.test_secp256k1`, checked by "
                 "tests/identity/test_secp256k1.py. All hex is lower case; all bytes are big-endian.",
        "key": {
            "private_key_is": 'SHA-256("' + PRIVATE_KEY_LABEL.decode() + '")',
            "private_key": signer.seed.hex(),
            "public_key_compressed": signer.public_key.hex(),
            "public_key_uncompressed": point.hex(),
            "keccak256_of_point_without_04": secp256k1.keccak256(point[1:]).hex(),
            "address_lower": secp256k1.address_of(signer.public_key).hex(),
            "address_eip55": did.removeprefix("did:peaq:"),
            "did": did,
            "public_key_multibase": secp256k1.encode_multikey(signer.public_key),
        },
        "document": document,
        "document_proof": {
            "cryptosuite": SECP256K1_CRYPTOSUITE,
            "hash_data": hash_data.hex(),
            "es256k_message_hash": hashlib.sha256(hash_data).hexdigest(),
            "signature_r_s": b58decode(document["proof"]["proofValue"][1:]).hex(),
        },
        "envelope": {
            "kind": "telemetry",
            "unsigned": unsigned.decode(),
            "digest": envelope_digest.hex(),
            "es256k_message_hash": hashlib.sha256(envelope_digest).hexdigest(),
            "signature_r": signature[:32].hex(),
            "signature_s": signature[32:].hex(),
            "sig": obj["sig"],
            "wire": wire.decode(),
        },
        "refused": [
            {"what": "the DID with one letter's case flipped", "code": "eip55_checksum", "did": case_flipped(did)},
            {"what": "the DID with the address in lower case (no checksum)", "code": "eip55_checksum",
             "did": "did:peaq:" + did.removeprefix("did:peaq:").lower()},
            {"what": "the envelope with the high-s twin of its signature (r, n - s)", "reason": "bad_signature",
             "wire": with_sig(wire, s_twin(signature)).decode()},
        ],
        "published": {"eip55": EIP55, "private_key_to_address": KEY_TO_ADDRESS, "es256k_rfc6979": RFC6979},
    }


# -- published vectors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", EIP55)
def test_eip55_test_cases_parse_and_reencode(address: str) -> None:
    raw = secp256k1.parse_address(address)
    assert secp256k1.checksum_address(raw) == address


@pytest.mark.parametrize("address", EIP55[4:])
def test_any_case_flip_of_an_eip55_address_is_refused(address: str) -> None:
    for i, char in enumerate(address[2:], start=2):
        if char.isalpha():
            with pytest.raises(DidError) as caught:
                secp256k1.parse_address(address[:i] + char.swapcase() + address[i + 1:])
            assert caught.value.code == "eip55_checksum" and address in str(caught.value)


@pytest.mark.parametrize("pair", KEY_TO_ADDRESS, ids=lambda p: p["address"][:10])
def test_published_private_keys_give_their_addresses(pair: dict[str, str]) -> None:
    public_key = secp256k1.Signer(bytes.fromhex(pair["private_key"])).public_key
    address = secp256k1.checksum_address(secp256k1.address_of(public_key))
    assert address.lower() == pair["address"].lower()
    if pair["address"] != pair["address"].lower():
        assert address == pair["address"]  # the published text is EIP-55 itself
    assert did_peaq(public_key) == f"did:peaq:{address}"


def test_rfc6979_signature_is_the_published_one_with_low_s() -> None:
    signer = secp256k1.Signer(bytes.fromhex(RFC6979["private_key"]))
    message = RFC6979["message"].encode()
    published = bytes.fromhex(RFC6979["published_signature"])
    assert signer.sign(message) == s_twin(published)
    assert secp256k1.verify(signer.public_key, message, s_twin(published))
    assert not secp256k1.verify(signer.public_key, message, published), "high s must be refused"


def test_keccak256_is_keccak_not_sha3() -> None:
    # Keccak-256 of the empty string, as Ethereum uses it; FIPS 202 SHA3-256 gives a7ffc6f8...
    assert secp256k1.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


# -- the vectors file --------------------------------------------------------------------------------------------


def test_vectors_file_is_what_the_code_produces() -> None:
    assert json.loads(VECTORS.read_text()) == build_vectors()


def test_vectors_hold_together_from_first_principles() -> None:
    """Each value from the one before it, with hashlib and coincurve alone, as a maker would check them."""
    v = json.loads(VECTORS.read_text())
    key, env = v["key"], v["envelope"]
    assert key["private_key"] == hashlib.sha256(PRIVATE_KEY_LABEL).hexdigest()
    point = bytes.fromhex(key["public_key_uncompressed"])
    assert secp256k1.keccak256(point[1:]).hex() == key["keccak256_of_point_without_04"]
    assert key["keccak256_of_point_without_04"][-40:] == key["address_lower"] == key["address_eip55"][2:].lower()
    assert key["did"] == "did:peaq:" + key["address_eip55"]
    unsigned = env["unsigned"].encode()
    preimage = b"depai/envelope/v1\x00" + env["kind"].encode() + b"\x00" + unsigned
    assert hashlib.sha256(preimage).hexdigest() == env["digest"]
    assert hashlib.sha256(bytes.fromhex(env["digest"])).hexdigest() == env["es256k_message_hash"]
    signature = bytes.fromhex(env["signature_r"] + env["signature_s"])
    assert _b64(signature) == env["sig"] and len(env["sig"]) == 86
    assert int(env["signature_s"], 16) <= secp256k1.GROUP_ORDER // 2
    assert env["wire"] == env["unsigned"][: -len(',"v":1}')] + f',"sig":"{env["sig"]}","v":1}}'
    from coincurve import PublicKey
    from coincurve.ecdsa import cdata_to_der, deserialize_compact

    der = cdata_to_der(deserialize_compact(signature))
    public_key = PublicKey(bytes.fromhex(key["public_key_compressed"]))
    assert public_key.verify(der, bytes.fromhex(env["es256k_message_hash"]), hasher=None)
    assert public_key.verify(der, bytes.fromhex(env["digest"]))  # the same: ES256K of the digest
    assert v["document"]["verificationMethod"][0]["publicKeyMultibase"] == key["public_key_multibase"]
    assert key["public_key_multibase"].startswith("zQ3s")
    verify_proof(v["document"], bytes.fromhex(key["public_key_compressed"]))


def test_refused_vectors_are_refused(registry: DidRegistry, clock) -> None:
    v = json.loads(VECTORS.read_text())
    for case in v["refused"]:
        if "did" in case:
            with pytest.raises(DidError) as caught:
                parse_did(case["did"])
            assert caught.value.code == case["code"]
    registry.register(v["document"])
    clock.now = CREATED_MS / 1000
    verifier = EnvelopeVerifier(registry, clock=clock)
    with pytest.raises(EnvelopeRefused) as caught:
        verifier.verify(v["refused"][2]["wire"].encode())
    assert caught.value.reason is Refusal(v["refused"][2]["reason"])
    assert verifier.verify(v["envelope"]["wire"].encode()).body == BODY


def test_protocol_md_says_what_the_code_does() -> None:
    """docs/protocol.md's section for makers names the same suite, codec, refusal and vectors, and the vectors'
    message is the worked example's (same body, iat, seq) from the secp256k1 robot."""
    protocol = (VECTORS.parents[1] / "protocol.md").read_text(encoding="utf-8")
    text = protocol.partition("## peaqOS machine IDs (secp256k1)")[2].partition("\n## ")[0]
    for claim in (SECP256K1_CRYPTOSUITE, "`e7 01`", "zQ3s", "eip55_checksum", "bad_signature", "malformed_did",
                  "vectors/secp256k1.json", "e      = SHA-256(digest)", "--key-type secp256k1"):
        assert claim in text, f"docs/protocol.md's secp256k1 section should say {claim!r}"
    worked = protocol.partition("## Worked example")[2]
    unsigned = json.loads(VECTORS.read_text())["envelope"]["unsigned"]
    shared = unsigned[: unsigned.index(',"iss":')]
    assert shared in worked and ',"seq":100,"v":1}' in unsigned


# -- DIDs and documents ------------------------------------------------------------------------------------------


def test_did_parses_to_its_address_and_derives_only_from_its_key() -> None:
    signer = vector_signer()
    parsed = parse_did(did_peaq(signer.public_key))
    assert parsed.key_type == "secp256k1" and parsed.public_key is None
    assert parsed.address == secp256k1.address_of(signer.public_key)
    assert parsed.derives_from(signer.public_key)
    assert not parsed.derives_from(secp256k1.Signer.generate().public_key)
    assert not parsed.derives_from(Signer.generate().public_key)


@pytest.mark.parametrize(("text", "code"), [
    ("did:peaq:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "address_length"),
    ("did:peaq:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "address_length"),
    ("did:peaq:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg", "address_not_hex"),
    ("did:peaq:0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "eip55_checksum"),
    ("did:peaq:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "eip55_checksum"),
])
def test_malformed_0x_dids_are_named(text: str, code: str) -> None:
    with pytest.raises(DidError) as caught:
        parse_did(text)
    assert caught.value.code == code
    if code == "eip55_checksum":
        assert "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed" in str(caught.value)


def test_document_carries_a_secp256k1_multikey_and_refuses_an_ed25519_one() -> None:
    signer = vector_signer()
    did = did_peaq(signer.public_key)
    document = build_document(did, signer.public_key)
    assert document["verificationMethod"][0]["type"] == "Multikey"
    assert current_key(document) == (signer.public_key, "key-1")
    with pytest.raises(DidError) as caught:
        build_document(did, Signer.generate().public_key)
    assert caught.value.code == "key_length"
    forged = json.loads(json.dumps(document))
    forged["verificationMethod"][0]["publicKeyMultibase"] = build_document(
        did_peaq(Signer(bytes(32)).public_key), Signer(bytes(32)).public_key)["verificationMethod"][0][
        "publicKeyMultibase"]
    with pytest.raises(DidError) as caught:
        current_key(forged)
    assert caught.value.code == "multicodec"


# -- the registry's genesis rule ---------------------------------------------------------------------------------


def test_genesis_needs_the_key_the_0x_did_derives_from(registry: DidRegistry) -> None:
    signer, other = vector_signer(), secp256k1.Signer.generate()
    did = did_peaq(signer.public_key)
    impostor = add_proof(build_document(did, other.public_key), other, f"{did}#key-1", created_ms=CREATED_MS)
    with pytest.raises(RegistryError) as caught:
        registry.register(impostor)
    assert caught.value.code == "genesis_mismatch" and "EIP-55 address" in str(caught.value)
    resolution = create_identity(registry, signer)
    assert resolution.did == did and resolution.public_key == signer.public_key
    assert resolution.document["proof"]["cryptosuite"] == SECP256K1_CRYPTOSUITE


def test_genesis_signed_by_another_key_or_suite_is_unauthorized(registry: DidRegistry) -> None:
    signer = vector_signer()
    did = did_peaq(signer.public_key)
    document = build_document(did, signer.public_key)
    signed_by_other = add_proof(document, secp256k1.Signer.generate(), f"{did}#key-1", created_ms=CREATED_MS)
    ed25519_proof = add_proof(document, Signer.generate(), f"{did}#key-1", created_ms=CREATED_MS)
    for forged, message in ((signed_by_other, "does not verify"), (ed25519_proof, "eddsa-jcs-2022")):
        with pytest.raises(RegistryError) as caught:
            registry.register(forged)
        assert caught.value.code == "unauthorized" and message in str(caught.value)


def test_a_0x_machine_rotates_to_another_secp256k1_key_under_an_ed25519_controller(registry: DidRegistry,
                                                                                  clock) -> None:
    dao = Signer.generate()
    dao_did = create_identity(registry, dao).did
    signer, new = vector_signer(), secp256k1.Signer.generate()
    did = create_identity(registry, signer, controller=dao_did).did
    clock.advance(10)
    rotated = rotate_key(registry, did, new.public_key, dao, f"{dao_did}#key-1")
    assert rotated.key_id == "key-2" and rotated.public_key == new.public_key
    with pytest.raises(DidError):
        rotate_key(registry, did, Signer.generate().public_key, new, f"{did}#key-2")


# -- the envelope verifier: the same refusals --------------------------------------------------------------------


@pytest.fixture
def machine(registry: DidRegistry, clock) -> tuple[EnvelopeSigner, EnvelopeVerifier]:
    signer = vector_signer()
    did = create_identity(registry, signer).did
    return (EnvelopeSigner(signer, did, "key-1", clock=clock, sequencer=Sequencer(100)),
            EnvelopeVerifier(registry, clock=clock))


def refusal(verifier: EnvelopeVerifier, wire: bytes) -> Refusal:
    with pytest.raises(EnvelopeRefused) as caught:
        verifier.verify(wire)
    return caught.value.reason


def test_envelope_round_trip_and_replay(machine) -> None:
    sealer, verifier = machine
    wire = sealer.seal("telemetry", BODY)
    assert len(json.loads(wire)["sig"]) == 86
    assert verifier.verify(wire).issuer == sealer.did
    assert refusal(verifier, wire) is Refusal.REPLAYED


def test_envelope_refusals_match_ed25519(machine, registry: DidRegistry, clock) -> None:
    sealer, verifier = machine
    wire = sealer.seal("telemetry", BODY)
    signature = _unb64(json.loads(wire)["sig"])
    obj = json.loads(wire)
    obj["body"] = {**BODY, "battery": 0.5}
    assert refusal(verifier, canonicalize(obj)) is Refusal.BAD_SIGNATURE
    assert refusal(verifier, with_sig(wire, s_twin(signature))) is Refusal.BAD_SIGNATURE
    ed25519 = Signer.generate().sign(digest("telemetry", wire))  # an Ed25519 signature is no ES256K one
    assert refusal(verifier, with_sig(wire, ed25519)) is Refusal.BAD_SIGNATURE
    other_kid = EnvelopeSigner(vector_signer(), sealer.did, "key-2", clock=clock).seal("telemetry", BODY)
    assert refusal(verifier, other_kid) is Refusal.UNKNOWN_KEY
    stranger = secp256k1.Signer.generate()
    unknown = EnvelopeSigner(stranger, did_peaq(stranger.public_key), clock=clock).seal("telemetry", BODY)
    assert refusal(verifier, unknown) is Refusal.UNKNOWN_ISSUER
    forged = EnvelopeSigner(vector_signer(), case_flipped(sealer.did), clock=clock).seal("telemetry", BODY)
    assert refusal(verifier, forged) is Refusal.MALFORMED_DID
    clock.advance(120)
    assert refusal(verifier, wire) is Refusal.EXPIRED
    assert verifier.verify(sealer.seal("telemetry", BODY)).body == BODY


def test_a_message_signed_by_the_rotated_out_key_is_named(registry: DidRegistry, clock) -> None:
    old, new = vector_signer(), secp256k1.Signer.generate()
    did = create_identity(registry, old).did
    clock.advance(10)
    rotate_key(registry, did, new.public_key, old, f"{did}#key-1")
    verifier = EnvelopeVerifier(registry, clock=clock)
    clock.advance(1)
    stale = EnvelopeSigner(old, did, "key-1", clock=clock).seal("telemetry", BODY)
    assert refusal(verifier, stale) is Refusal.KEY_ROTATED
    wrong_kid = EnvelopeSigner(old, did, "key-2", clock=clock).seal("telemetry", BODY)
    assert refusal(verifier, wrong_kid) is Refusal.KEY_ROTATED
    assert verifier.verify(EnvelopeSigner(new, did, "key-2", clock=clock).seal("telemetry", BODY)).body == BODY


def test_signer_rejects_bad_private_keys_and_verify_rejects_bad_inputs() -> None:
    for seed in (bytes(32), secp256k1.GROUP_ORDER.to_bytes(32, "big"), bytes(31)):
        with pytest.raises(ValueError):
            secp256k1.Signer(seed)
    signer = vector_signer()
    signature = signer.sign(b"m")
    assert secp256k1.verify(signer.public_key, b"m", signature)
    assert not secp256k1.verify(signer.public_key, b"m", signature[:63])
    assert not secp256k1.verify(secp256k1._point(signer.public_key).format(compressed=False), b"m", signature)
    assert not secp256k1.verify(b"\x02" + bytes(32), b"m", signature)  # x = 0 is not on the curve
    overflow = secp256k1.GROUP_ORDER.to_bytes(32, "big") + signature[32:]
    assert not secp256k1.verify(signer.public_key, b"m", overflow)
    assert not secp256k1.verify(signer.public_key, b"m", bytes(64))


if __name__ == "__main__":
    sys.stdout.write(json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n")
