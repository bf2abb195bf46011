"""DIDs: ``did:peaq:<SS58 address>`` and ``did:key:z6Mk…`` over Ed25519, ``did:peaq:0x…`` over secp256k1.

``did:peaq`` follows peaq's conventions of naming a machine by its account: the
legacy form is the SS58 address (prefix 42) of an Ed25519 key, and peaqOS's
peaqID is ``did:peaq:<0x address>``, the EIP-55 address of the machine's
secp256k1 EOA key (identity/secp256k1.py). ``did:key`` follows the W3C CCG
did:key method. An SS58 did:peaq and a did:key hold their key and resolve back
to it; a 0x did:peaq holds only the key's address, so its key comes from its
DID document, which must carry a key of that address. A did:peaq names the key
it was created with; after a rotation the registry holds the current one, while
a did:key can never rotate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from identity.errors import DidError
from identity import secp256k1
from identity.multikey import decode_multikey, encode_multikey
from identity.ss58 import ss58_decode, ss58_encode


class Method(StrEnum):
    """The DID methods this project issues and resolves."""

    PEAQ = "peaq"
    KEY = "key"


_DID_SYNTAX = re.compile(r"did:([a-z0-9]+):([A-Za-z0-9._%-]+(?::[A-Za-z0-9._%-]+)*)")


@dataclass(frozen=True, slots=True)
class Did:
    """A parsed DID: its method, method-specific id and the key it was derived from.

    A ``did:peaq:0x…`` holds only its key's 20-byte EVM ``address``; its ``public_key`` is None.
    """

    method: Method
    identifier: str
    public_key: bytes | None
    address: bytes | None = None

    def __str__(self) -> str:
        return f"did:{self.method}:{self.identifier}"

    @property
    def key_type(self) -> str:
        """``secp256k1`` for a 0x did:peaq, ``ed25519`` for the others: the kind of key its documents carry."""
        return "secp256k1" if self.address is not None else "ed25519"

    def derives_from(self, public_key: bytes) -> bool:
        """True when this DID is the one ``public_key`` gives (for a 0x did:peaq: the key's address is the DID's)."""
        if self.address is None:
            return public_key == self.public_key
        return secp256k1.is_public_key(public_key) and secp256k1.address_of(public_key) == self.address


def did_peaq(public_key: bytes) -> str:
    """The did:peaq of a public key: SS58 (network prefix 42) of a 32-byte Ed25519 key, the EIP-55 address of a
    33-byte compressed secp256k1 key (a peaqOS machine ID)."""
    if len(public_key) == secp256k1.PUBLIC_KEY_SIZE:
        return secp256k1.did_of(public_key)
    return f"did:peaq:{ss58_encode(public_key)}"


def did_key(public_key: bytes) -> str:
    """The did:key of a 32-byte Ed25519 public key (multicodec ed25519-pub, base58btc)."""
    return f"did:key:{encode_multikey(public_key)}"


def make_did(public_key: bytes, method: Method | str = Method.PEAQ) -> str:
    """The DID of ``public_key`` under ``method``."""
    return did_key(public_key) if Method(method) is Method.KEY else did_peaq(public_key)


def parse_did(text: str) -> Did:
    """Parse and check a DID (not a DID URL); DidError says what is wrong with it."""
    if not isinstance(text, str):
        raise DidError(f"a DID is a string, got {type(text).__name__}")
    match = _DID_SYNTAX.fullmatch(text)
    if match is None:
        raise DidError(
            f"{text!r} is not a DID",
            hint="a DID looks like did:peaq:5Grw…, did:peaq:0x5aAe… or did:key:z6Mk…",
        )
    method, identifier = match.groups()
    if method == Method.PEAQ and identifier.startswith("0x"):  # no SS58 address starts with 0 (not in base58)
        return Did(Method.PEAQ, identifier, None, secp256k1.parse_address(identifier))
    if method == Method.PEAQ:
        return Did(Method.PEAQ, identifier, ss58_decode(identifier))
    if method == Method.KEY:
        return Did(Method.KEY, identifier, decode_multikey(identifier))
    raise DidError(
        f"DID method {method!r} is not supported",
        code="did_method",
        hint="use did:peaq or did:key",
    )


def split_did_url(text: str) -> tuple[str, str]:
    """Split ``did:…#fragment`` into the DID and the fragment; the fragment must be there."""
    did, sep, fragment = text.partition("#")
    if not sep or not fragment:
        raise DidError(f"{text!r} has no #fragment naming a key", code="did_url")
    parse_did(did)
    return did, fragment
