"""C2SP tlog-checkpoint bodies, signed and opened as C2SP signed-notes with Ed25519.

A checkpoint commits a log to its size and RFC 6962 root hash in three lines of
text (c2sp.org/tlog-checkpoint); a signed note appends a blank line and one
"— <key name> <base64(key ID || signature)>" line per signer
(c2sp.org/signed-note). Both follow the specs' wording and the behaviour of
golang.org/x/mod/sumdb/note, whose published test vector the tests reproduce
byte for byte. Keys are the project's own Ed25519 keys (identity/keys.py): a
signer is any function from bytes to a 64-byte signature, a verifier a 32-byte
raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from identity.errors import DepaiError
from identity.keys import PUBLIC_KEY_SIZE, verify

ED25519 = b"\x01"  # the signed-note signature type byte of Ed25519
KEY_ID_SIZE = 4
HASH_SIZE = 32
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16; golang.org/x/mod/sumdb/note allows 100
MAX_TREE_SIZE = 2**64 - 1  # tree sizes are uint64 in golang.org/x/mod/sumdb/tlog and transparency-dev

SIGNATURE_PREFIX = "\u2014 "  # EM DASH, SPACE
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")  # at most 20 digits; Checkpoint checks the exact uint64 bound
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline


class NoteError(DepaiError, ValueError):
    """A note or checkpoint that is malformed, not signed by the expected key, or signed wrongly."""

    code = "note_invalid"


@dataclass(frozen=True)
class Checkpoint:
    """A log's size and root hash as one origin states them (C2SP tlog-checkpoint, "Note text")."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a checkpoint whose body would not parse back to it."""
        if not _is_line(self.origin):
            raise NoteError(f"the origin {self.origin!r} is not one non-empty line without control characters")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"the tree size {self.size} is outside 0..2^64-1")
        if len(self.root) != HASH_SIZE:
            raise NoteError(f"the root hash is {len(self.root)} bytes; an RFC 6962 root is {HASH_SIZE}")
        for line in self.extensions:
            if not _is_line(line):
                raise NoteError(f"the extension line {line!r} is not one non-empty line without control characters")

    def body(self) -> str:
        """The note text: origin, decimal size, base64 root, extension lines, each ending in a newline."""
        lines = (self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions)
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """The checkpoint a note text states, refusing anything but the exact form body() writes."""
        if not body.endswith("\n"):
            raise NoteError("a checkpoint body ends in a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"a checkpoint has at least 3 lines (origin, size, root), got {len(lines)}")
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise NoteError(f"the tree size {size!r} is not a decimal uint64 without leading zeros")
        return cls(origin, int(size), _decode_root(root), tuple(extensions))


def key_hash(name: str, public_key: bytes, algorithm: bytes = ED25519) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || algorithm || public key)[:4] (signed-note, "Ed25519
    signatures"; the algorithm byte is 0x01 for a note's signer, 0x04 for a cosignature/v1 witness)."""
    check_public_key(public_key)
    return hashlib.sha256(name.encode() + b"\n" + algorithm + public_key).digest()[:KEY_ID_SIZE]


def verifier_key(name: str, public_key: bytes, algorithm: bytes = ED25519) -> str:
    """The verifier key "<name>+<hex key ID>+<base64(algorithm || key)>" of golang.org/x/mod/sumdb/note."""
    check_name(name)
    encoded = base64.b64encode(algorithm + public_key).decode("ascii")
    return f"{name}+{key_hash(name, public_key, algorithm).hex()}+{encoded}"


def sign_note(text: str, name: str, sign: Callable[[bytes], bytes], public_key: bytes) -> str:
    """``text``, a blank line, and the signature line of key ``name`` over the text (signed-note, "Format")."""
    _check_text(text)
    check_name(name)
    signature = base64.b64encode(key_hash(name, public_key) + sign(text.encode())).decode("ascii")
    return f"{text}\n{SIGNATURE_PREFIX}{name} {signature}\n"


def open_note(note: str, name: str, public_key: bytes) -> str:
    """The text of ``note`` once a signature by key ``name`` verifies; other keys' lines are ignored (signed-note)."""
    key_id = key_hash(name, public_key)
    text, lines = split_note(note)
    verified = False
    for line in lines:
        signer, signed_id, signature = parse_signature_line(line)
        if (signer, signed_id) != (name, key_id):
            continue  # another key's signature, or one sharing only our name or our ID: not ours to judge
        if not verify(public_key, text.encode(), signature):
            raise NoteError(f"invalid signature for key {name}+{key_id.hex()}")
        verified = True
    if not verified:
        raise NoteError(f"the note has no signature by key {name}+{key_id.hex()}")
    return text


def split_note(note: str) -> tuple[str, list[str]]:
    """The text (with its final newline) and the signature lines, split at the note's last blank line."""
    _check_characters(note, "malformed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line separates the text from the signatures")
    text, block = note[:split + 1], note[split + 2:]
    if not block.endswith("\n"):
        raise NoteError("malformed note: the signature block is empty or lacks its final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: {len(lines)} signature lines, more than the {MAX_SIGNATURES} accepted")
    return text, lines


def parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    """Key name, key ID and signature of one "— <name> <base64>" line (signed-note, "Signatures")."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"malformed note: {line!r} is not a signature line")
    name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"malformed note: the signature of {name!r} is not base64") from None
    if not _is_name(name) or len(raw) <= KEY_ID_SIZE:
        raise NoteError(f"malformed note: {line!r} is not a signature line")
    return name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]


def _decode_root(text: str) -> bytes:
    """The 32-byte root hash a checkpoint's third line encodes in canonical standard base64."""
    try:
        root = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"the root hash {text!r} is not base64") from None
    if base64.b64encode(root).decode("ascii") != text:
        raise NoteError(f"the root hash {text!r} is not in canonical base64")
    if len(root) != HASH_SIZE:
        raise NoteError(f"the root hash is {len(root)} bytes; an RFC 6962 root is {HASH_SIZE}")
    return root


def _is_line(text: str) -> bool:
    """Whether ``text`` fits one non-empty line of a note: no newline or other ASCII control character."""
    return bool(text) and "\n" not in text and not _CONTROL.search(text)


def _is_name(name: str) -> bool:
    """Whether ``name`` is a key name: non-empty, no Unicode space, no plus (signed-note, "Format")."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def check_name(name: str) -> None:
    """Refuse a key name a note could not carry."""
    if not _is_name(name):
        raise NoteError(f"the key name {name!r} is empty or holds a space or a plus sign")


def _check_text(text: str) -> None:
    """Refuse a note text that would not open again: it must end in a newline and hold no control characters."""
    if not text.endswith("\n"):
        raise NoteError("a note text ends in a newline")
    _check_characters(text, "note text")


def _check_characters(text: str, what: str) -> None:
    """Refuse text a note may not hold: invalid UTF-8 or an ASCII control other than newline (signed-note)."""
    if _CONTROL.search(text):
        raise NoteError(f"{what}: it holds an ASCII control character other than newline")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise NoteError(f"{what}: it is not valid UTF-8 (it holds a lone surrogate)") from None


def check_public_key(public_key: bytes) -> None:
    """Refuse anything but a raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
