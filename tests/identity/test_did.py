"""SS58, did:peaq, multikey and did:key: spec vectors, round trips and every kind of malformed input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.base58 import b58decode, b58encode
from identity.did import Method, did_key, did_peaq, make_did, parse_did, split_did_url
from identity.errors import DidError
from identity.multikey import ED25519_PRIV, ED25519_PUB, decode_multikey, encode_multikey
from identity.ss58 import ss58_decode, ss58_encode

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_ss58_vector_from_the_issue() -> None:
    assert ss58_encode(ALICE) == ALICE_SS58
    assert ss58_decode(ALICE_SS58) == ALICE
    assert did_peaq(ALICE) == f"did:peaq:{ALICE_SS58}"


def test_ss58_other_networks_match_substrate() -> None:
    # The same account on Polkadot (prefix 0) and Kusama (prefix 2), as Substrate tools print it.
    assert ss58_encode(ALICE, 0) == "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"
    assert ss58_encode(ALICE, 2) == "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"
    two_byte = ss58_encode(ALICE, 3338)
    assert ss58_decode(two_byte, 3338) == ALICE


def test_ss58_wrong_checksum_is_named() -> None:
    broken = ALICE_SS58[:-1] + ("R" if ALICE_SS58[-1] != "R" else "S")
    with pytest.raises(DidError) as caught:
        ss58_decode(broken)
    assert caught.value.code == "ss58_checksum"


def test_ss58_wrong_prefix_is_named() -> None:
    with pytest.raises(DidError) as caught:
        ss58_decode(ss58_encode(ALICE, 0))
    assert caught.value.code == "ss58_prefix"
    assert "prefix 0" in str(caught.value)


@pytest.mark.parametrize("address", [ALICE_SS58[:-3], ALICE_SS58 + "111", ""])
def test_ss58_wrong_length_is_named(address: str) -> None:
    with pytest.raises(DidError) as caught:
        ss58_decode(address)
    assert caught.value.code == "ss58_length"


def test_ss58_bad_alphabet_is_named() -> None:
    with pytest.raises(DidError) as caught:
        ss58_decode("0" + ALICE_SS58[1:])
    assert caught.value.code == "ss58_alphabet"


@pytest.mark.parametrize(
    ("base58_key", "did"),
    [
        # Public did:key examples: (publicKeyBase58, did) pairs published with did:key implementations.
        ("HrBXe7XnjMbscM1roSDTSMCcLNraetDQM9wSVjnzDxn3", "did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR"),
        ("8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K", "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th"),
    ],
)
def test_did_key_vectors(base58_key: str, did: str) -> None:
    key = b58decode(base58_key)
    assert did_key(key) == did
    assert parse_did(did).public_key == key


def test_did_key_of_w3c_test_key() -> None:
    # vc-di-eddsa test key pair: the multikey secret decodes to a seed whose public key is the z6Mk text.
    from identity.keys import Signer

    seed = decode_multikey("z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq", ED25519_PRIV)
    assert encode_multikey(Signer(seed).public_key) == "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"


@given(st.binary(min_size=32, max_size=32))
def test_every_did_resolves_back_to_its_key(key: bytes) -> None:
    for method in Method:
        did = make_did(key, method)
        parsed = parse_did(did)
        assert parsed.public_key == key
        assert parsed.method is method
        assert str(parsed) == did


@given(st.binary(max_size=40))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("peaq:" + ALICE_SS58, "did_malformed"),
        ("did:peaq:", "did_malformed"),
        ("did:PEAQ:" + ALICE_SS58, "did_malformed"),
        ("did:web:example.com", "did_method"),
        ("did:peaq:" + ALICE_SS58[:-1] + "X", "ss58_checksum"),
        ("did:key:z" + b58encode(ED25519_PUB + ALICE[:31]), "key_length"),
        ("did:key:m" + encode_multikey(ALICE)[1:], "multibase"),
        ("did:key:z6LSnjagzhe8Df6gZmroW3wjDd7XQLwAuYfwa4ZeTBCGFoYc", "multicodec"),
        ("did:key:z6Mk0OIl", "multibase"),
    ],
)
def test_malformed_dids_each_say_why(text: str, code: str) -> None:
    with pytest.raises(DidError) as caught:
        parse_did(text)
    assert caught.value.code == code


def test_did_url_needs_a_fragment() -> None:
    assert split_did_url(f"did:peaq:{ALICE_SS58}#key-2") == (f"did:peaq:{ALICE_SS58}", "key-2")
    with pytest.raises(DidError):
        split_did_url(f"did:peaq:{ALICE_SS58}")
