"""DIDs over Ed25519 keys: ``did:peaq:<SS58 address>`` and ``did:key:z6Mk…``.

``did:peaq`` follows peaq's convention of naming a machine by the SS58 address
(prefix 42) of its account key; ``did:key`` follows the W3C CCG did:key method.
Both derive from the same 32-byte key, and both resolve back to it. A did:peaq
names the key it was created with; after a rotation the registry holds the
current one, while a did:key can never rotate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from identity.errors import DidError
from identity.multikey import decode_multikey, encode_multikey
from identity.ss58 import ss58_decode, ss58_encode


class Method(StrEnum):
    """The DID methods this project issues and resolves."""

    PEAQ = "peaq"
    KEY = "key"


_DID_SYNTAX = re.compile(r"did:([a-z0-9]+):([A-Za-z0-9._%-]+(?::[A-Za-z0-9._%-]+)*)")


@dataclass(frozen=True, slots=True)
class Did:
    """A parsed DID: its method, method-specific id and the key it was derived from."""

    method: Method
    identifier: str
    public_key: bytes

    def __str__(self) -> str:
        return f"did:{self.method}:{self.identifier}"


def did_peaq(public_key: bytes) -> str:
    """The did:peaq of a 32-byte Ed25519 public key (SS58, network prefix 42)."""
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
            hint="a DID looks like did:peaq:5Grw… or did:key:z6Mk…",
        )
    method, identifier = match.groups()
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
