"""Base58 with the Bitcoin alphabet, as used by SS58 addresses and multibase ``z`` (base58btc).

Spec: draft-msporny-base58 (the IETF draft of the Bitcoin encoding). Leading zero
bytes map to leading ``1`` characters, so the encoding round-trips exactly.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """The base58btc text of ``data``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes behind base58btc ``text``; ValueError names the first character outside the alphabet."""
    number = 0
    for position, char in enumerate(text):
        value = _INDEX.get(char)
        if value is None:
            raise ValueError(f"character {char!r} at position {position} is not in the base58 alphabet")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body
