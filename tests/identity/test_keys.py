"""Ed25519 through identity.keys, checked against the RFC 8032 section 7.1 test vectors."""

import pytest

from identity.errors import DidError
from identity.keys import Signer, parse_public_key_hex, verify

# RFC 8032, section 7.1: TEST 1, TEST 2, TEST 3 (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    signer = Signer(bytes.fromhex(secret))
    assert signer.public_key.hex() == public
    assert signer.sign(bytes.fromhex(message)).hex() == signature
    assert verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_any_flipped_bit_fails(secret: str, public: str, message: str, signature: str) -> None:
    sig = bytearray(bytes.fromhex(signature))
    sig[5] ^= 0x01
    assert not verify(bytes.fromhex(public), bytes.fromhex(message), bytes(sig))
    assert not verify(bytes.fromhex(public), bytes.fromhex(message) + b"x", bytes.fromhex(signature))


def test_verify_rejects_wrong_sizes_without_raising() -> None:
    signer = Signer.generate()
    sig = signer.sign(b"m")
    assert not verify(signer.public_key[:31], b"m", sig)
    assert not verify(signer.public_key, b"m", sig[:63])


def test_seed_round_trip() -> None:
    signer = Signer.generate()
    assert Signer(signer.seed).public_key == signer.public_key
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"\x00" * 31)


@pytest.mark.parametrize(
    ("text", "code"),
    [("zz" * 32, "key_not_hex"), ("ab" * 31, "key_length"), ("ab" * 33, "key_length"), ("", "key_length")],
)
def test_parse_public_key_hex_errors(text: str, code: str) -> None:
    with pytest.raises(DidError) as caught:
        parse_public_key_hex(text)
    assert caught.value.code == code


def test_parse_public_key_hex_accepts_0x_and_case() -> None:
    assert parse_public_key_hex("0x" + "AB" * 32) == b"\xab" * 32
