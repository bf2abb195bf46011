"""secp256k1 machine keys, as peaqOS names machines: ``did:peaq:0x<EIP-55 address>``.

The same shape as ``identity.keys`` (a ``Signer`` built from 32 secret bytes, with
``public_key``, ``seed``, ``generate`` and ``sign``; a ``verify(public_key, message,
signature) -> bool``), so envelope, proof and registry code can hold either kind.

- Curve and key encoding: secp256k1 (SEC 2 v2 §2.4.1); a public key is the 33-byte
  compressed SEC 1 point (``02``/``03`` ‖ x, SEC 1 v2 §2.3.3), as the Multikey
  ``secp256k1-pub`` (multicodec 0xe7) carries it. Arithmetic is libsecp256k1's,
  through ``coincurve``.
- Signature: ES256K (RFC 8812 §3.2): ECDSA over SHA-256(message), with the RFC 6979
  deterministic nonce (libsecp256k1's default), written as 64 bytes r ‖ s, each
  32-byte big-endian (the JWS / IEEE P1363 form, no recovery byte). ``s`` is always
  in the lower half of the group order on signing, and a high ``s`` is refused on
  verifying (the low-s rule of BIP 62 and Ethereum's EIP-2), so a signature has one
  valid encoding, as an Ed25519 one does.
- Address: the last 20 bytes of Keccak-256 of the 64-byte uncompressed point without
  its ``04`` prefix (Ethereum Yellow Paper, Appendix F), written with the EIP-55
  mixed-case checksum. Keccak-256 is the original Keccak (pycryptodome's
  ``Crypto.Hash.keccak``), not NIST SHA3-256.

Why 64 bytes and not Ethereum's 65-byte (r, s, v): the verifier always holds the
public key (the DID document publishes it as a Multikey, the registry stores it),
so a recovery id adds nothing; and 64 bytes keep an envelope's ``sig`` member the
same 86 base64url characters for both key types, so the wire format, its size
limits and its parser are unchanged.
"""

from __future__ import annotations

from functools import lru_cache

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from Crypto.Hash import keccak

from identity.base58 import b58decode, b58encode
from identity.errors import DidError

PUBLIC_KEY_SIZE = 33
SEED_SIZE = 32
SIGNATURE_SIZE = 64
ADDRESS_SIZE = 20
SECP256K1_PUB = b"\xe7\x01"  # multicodec secp256k1-pub (0xe7) as an unsigned varint
GROUP_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = GROUP_ORDER // 2


class Signer:
    """A secp256k1 private key that signs (ES256K, 64-byte r ‖ s, low s); built from its 32 secret bytes."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"a secp256k1 private key is {SEED_SIZE} bytes, got {len(seed)}")
        self._key = PrivateKey(seed)  # refuses 0 and values >= the group order
        self.public_key: bytes = self._key.public_key.format(compressed=True)

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key from the operating system's random source."""
        return cls(PrivateKey().secret)

    @property
    def seed(self) -> bytes:
        """The 32-byte private scalar, big-endian: what a key file or keystore saves (an EVM private key)."""
        return self._key.secret

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ES256K signature r ‖ s of ``message`` (ECDSA over SHA-256(message), RFC 6979 nonce, low s)."""
        return self._key.sign_recoverable(message)[:SIGNATURE_SIZE]  # r ‖ s ‖ recid; libsecp256k1 signs low-s

    def __repr__(self) -> str:
        return f"secp256k1.Signer(public_key={self.public_key.hex()})"


@lru_cache(maxsize=4096)
def _point(public_key: bytes) -> PublicKey:
    """The parsed point of a compressed key (cached: a fleet verifies many messages per robot)."""
    return PublicKey(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` (r ‖ s, low s) is an ES256K signature of ``message`` by the compressed ``public_key``."""
    if len(signature) != SIGNATURE_SIZE or not is_public_key(public_key):
        return False
    if int.from_bytes(signature[32:], "big") > _HALF_ORDER:
        return False  # high s: the malleated twin of a valid signature
    try:
        return _point(public_key).verify(cdata_to_der(deserialize_compact(signature)), message)
    except ValueError:  # not a point on the curve, or r or s not below the group order
        return False


def is_public_key(public_key: bytes) -> bool:
    """True when ``public_key`` has the form of a compressed secp256k1 key (the 33 bytes the registry stores)."""
    return len(public_key) == PUBLIC_KEY_SIZE and public_key[0] in (2, 3)


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (the original Keccak padding, not FIPS 202 SHA3-256)."""
    return keccak.new(digest_bits=256, data=data).digest()


def address_of(public_key: bytes) -> bytes:
    """The 20-byte EVM address of a compressed (33-byte) or uncompressed (65-byte) public key."""
    try:
        point = PublicKey(public_key).format(compressed=False)
    except ValueError:
        raise DidError(
            f"{public_key.hex()[:16]}... is not a secp256k1 public key",
            code="key_invalid",
            hint="give the 33-byte compressed or 65-byte uncompressed SEC 1 point",
        ) from None
    return keccak256(point[1:])[-ADDRESS_SIZE:]


def checksum_address(address: bytes) -> str:
    """The EIP-55 text of a 20-byte address: hex digit i is upper case when nibble i of Keccak-256(lower hex) >= 8."""
    if len(address) != ADDRESS_SIZE:
        raise DidError(f"an EVM address is {ADDRESS_SIZE} bytes, got {len(address)}", code="address_length")
    lower = address.hex()
    nibbles = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in zip(lower, nibbles, strict=False))


def parse_address(text: str) -> bytes:
    """The 20 bytes of an EIP-55 address; the exact checksummed spelling is required, so one address has one DID."""
    digits = text[2:] if text.startswith("0x") else None
    if digits is None or len(digits) != 2 * ADDRESS_SIZE:
        raise DidError(
            f"{text!r} is not an EVM address",
            code="address_length",
            hint="an EVM address is 0x and 40 hex digits",
        )
    try:
        address = bytes.fromhex(digits)
    except ValueError:
        raise DidError(f"{text!r} is not hexadecimal", code="address_not_hex") from None
    expected = checksum_address(address)
    if text != expected:
        raise DidError(
            f"{text!r} fails the EIP-55 checksum (the checksummed form is {expected})",
            code="eip55_checksum",
            hint="a digit was mistyped, or the address lost its mixed case; copy it again as the wallet prints it",
        )
    return address


def did_of(public_key: bytes) -> str:
    """The peaqOS machine ID of a secp256k1 key: ``did:peaq:`` and the EIP-55 address."""
    return f"did:peaq:{checksum_address(address_of(public_key))}"


def encode_multikey(public_key: bytes) -> str:
    """The Multikey ``publicKeyMultibase`` of a compressed key: ``z`` + base58btc(``e7 01`` ‖ key), ``zQ3s…``."""
    if not is_public_key(public_key):
        raise DidError(
            f"a secp256k1 Multikey holds a {PUBLIC_KEY_SIZE}-byte compressed key, got {len(public_key)} bytes",
            code="key_length",
        )
    return "z" + b58encode(SECP256K1_PUB + public_key)


def decode_multikey(text: str) -> bytes:
    """The 33-byte compressed key in a secp256k1 Multikey, checking the base, the codec and the point."""
    try:
        raw = b58decode(text[1:]) if text.startswith("z") else b""
    except ValueError:
        raw = b""
    if raw[:2] != SECP256K1_PUB:
        raise DidError(
            f"multikey {text[:12]!r}... is not a base58btc secp256k1-pub Multikey (z + e7 01 + key)",
            code="multicodec",
            hint="a did:peaq:0x... machine's key is secp256k1",
        )
    key = raw[2:]
    if not is_public_key(key):
        raise DidError(f"multikey holds {len(key)} bytes, not a compressed secp256k1 key", code="key_length")
    address_of(key)  # on the curve
    return key

