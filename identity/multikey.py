"""Multikey encoding of Ed25519 keys: multibase base58btc (``z``) over a multicodec-prefixed key.

Spec: W3C Controlled Identifiers "Multikey" and the multicodec table:
``ed25519-pub`` is 0xed (varint ``ed 01``), ``ed25519-priv`` is 0x1300 (varint ``80 26``).
A did:key identifier and a DID document's ``publicKeyMultibase`` are both this text.
"""

from __future__ import annotations

from identity.base58 import b58decode, b58encode
from identity.errors import DidError

ED25519_PUB = b"\xed\x01"
ED25519_PRIV = b"\x80\x26"
_KEY_SIZE = 32


def encode_multikey(raw: bytes, codec: bytes = ED25519_PUB) -> str:
    """The ``z…`` multibase text of a 32-byte key under ``codec``."""
    if len(raw) != _KEY_SIZE:
        raise DidError(f"an Ed25519 key is {_KEY_SIZE} bytes, got {len(raw)}", code="key_length")
    return "z" + b58encode(codec + raw)


def decode_multikey(text: str, codec: bytes = ED25519_PUB) -> bytes:
    """The 32 raw key bytes in multibase ``text``, checking the base, the codec and the length."""
    if not text.startswith("z"):
        raise DidError(
            f"multikey {text[:12]!r}… is not base58btc multibase (it must start with 'z')",
            code="multibase",
        )
    try:
        raw = b58decode(text[1:])
    except ValueError as err:
        raise DidError(f"multikey: {err}", code="multibase") from None
    if raw[:2] != codec:
        raise DidError(
            f"multikey codec is 0x{raw[:2].hex()}, expected 0x{codec.hex()} (Ed25519)",
            code="multicodec",
            hint="only Ed25519 keys are supported",
        )
    key = raw[2:]
    if len(key) != _KEY_SIZE:
        raise DidError(
            f"multikey holds {len(key)} key bytes; an Ed25519 key is {_KEY_SIZE}",
            code="key_length",
        )
    return key
