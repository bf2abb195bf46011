"""Ed25519 keys (RFC 8032) through PyNaCl: generate, load, sign, verify.

The rest of the project handles keys only through this module, so the choice of
library and the raw-bytes conventions (32-byte public keys, 32-byte seeds,
64-byte detached signatures) live in one place.
"""

from __future__ import annotations

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey

from identity.errors import DidError

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64


class Signer:
    """An Ed25519 private key that signs; built from a 32-byte seed so it can be stored and restored."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        self._key = SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key from the operating system's random source."""
        return cls(bytes(SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed: what a keystore encrypts and saves."""
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of ``message``."""
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, CryptoError, ValueError):
        return False
    return True


def parse_public_key_hex(text: str) -> bytes:
    """The 32 raw bytes of a hex-encoded Ed25519 public key, with a clear error for anything else."""
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise DidError(
            f"public key {text!r} is not hexadecimal",
            code="key_not_hex",
            hint="give the 32-byte Ed25519 public key as 64 hex digits",
        ) from None
    if len(raw) != PUBLIC_KEY_SIZE:
        raise DidError(
            f"public key is {len(raw)} bytes; an Ed25519 public key is {PUBLIC_KEY_SIZE}",
            code="key_length",
            hint="give the 32-byte Ed25519 public key as 64 hex digits",
        )
    return raw
