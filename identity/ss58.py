"""SS58, the Substrate address format peaq uses for ``did:peaq`` (network prefix 42 by default).

Layout (Substrate docs, "SS58 address format"): base58(prefix || public key || checksum),
where checksum is the first two bytes of BLAKE2b-512("SS58PRE" || prefix || public key).
Prefixes 0-63 take one byte; 64-16383 take two, in the "14-bit" layout Substrate defines.
"""

from __future__ import annotations

import hashlib

from identity.base58 import b58decode, b58encode
from identity.errors import DidError

GENERIC_SUBSTRATE_PREFIX = 42
_CONTEXT = b"SS58PRE"
_CHECKSUM_SIZE = 2
_KEY_SIZE = 32


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(_CONTEXT + payload, digest_size=64).digest()[:_CHECKSUM_SIZE]


def _encode_prefix(prefix: int) -> bytes:
    if 0 <= prefix < 64:
        return bytes([prefix])
    if 64 <= prefix < 16384:
        first = ((prefix & 0b1111_1100) >> 2) | 0b0100_0000
        second = (prefix >> 8) | ((prefix & 0b0000_0011) << 6)
        return bytes([first, second])
    raise ValueError(f"SS58 prefix {prefix} is outside 0..16383")


def _decode_prefix(raw: bytes) -> tuple[int, int]:
    """The network prefix and how many bytes it took."""
    if raw[0] < 64:
        return raw[0], 1
    if raw[0] < 128 and len(raw) > 1:
        lower = ((raw[0] << 2) | (raw[1] >> 6)) & 0xFF
        upper = raw[1] & 0b0011_1111
        return lower | (upper << 8), 2
    raise DidError(f"SS58 prefix byte 0x{raw[0]:02x} is reserved", code="ss58_prefix")


def ss58_encode(public_key: bytes, prefix: int = GENERIC_SUBSTRATE_PREFIX) -> str:
    """The SS58 address of a 32-byte public key under network ``prefix``."""
    if len(public_key) != _KEY_SIZE:
        raise DidError(f"an SS58 account key is {_KEY_SIZE} bytes, got {len(public_key)}", code="key_length")
    payload = _encode_prefix(prefix) + public_key
    return b58encode(payload + _checksum(payload))


def ss58_decode(address: str, expected_prefix: int | None = GENERIC_SUBSTRATE_PREFIX) -> bytes:
    """The 32-byte public key inside ``address``, after checking its alphabet, length, checksum and prefix."""
    try:
        raw = b58decode(address)
    except ValueError as err:
        raise DidError(f"SS58 address {address!r}: {err}", code="ss58_alphabet") from None
    if not raw:
        raise DidError("SS58 address is empty", code="ss58_length")
    prefix, prefix_size = _decode_prefix(raw)
    key_size = len(raw) - prefix_size - _CHECKSUM_SIZE
    if key_size != _KEY_SIZE:
        raise DidError(
            f"SS58 address {address!r} holds {max(key_size, 0)} key bytes; an Ed25519 account holds {_KEY_SIZE}",
            code="ss58_length",
            hint="the address looks truncated or padded; copy it again in full",
        )
    payload, checksum = raw[:-_CHECKSUM_SIZE], raw[-_CHECKSUM_SIZE:]
    if _checksum(payload) != checksum:
        raise DidError(
            f"SS58 address {address!r} has a wrong checksum",
            code="ss58_checksum",
            hint="a character was mistyped; copy the address again",
        )
    if expected_prefix is not None and prefix != expected_prefix:
        raise DidError(
            f"SS58 address {address!r} is for network prefix {prefix}, expected {expected_prefix}",
            code="ss58_prefix",
            hint=f"re-encode the key with network prefix {expected_prefix}",
        )
    return payload[prefix_size:]
