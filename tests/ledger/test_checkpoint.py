"""C2SP checkpoints signed as C2SP signed-notes: the Go reference vector, round trips, and refusals."""

from __future__ import annotations

import base64

import pytest

from identity.keys import Signer
from ledger.checkpoint import Checkpoint, NoteError, key_hash, open_note, sign_note, verifier_key

OPERATOR = Signer(bytes(range(32)))
ORIGIN = "example.com/ledger"
ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")  # RFC 6962 test tree, 8 leaves
ROOT_B64 = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="

# The signed-note vector of golang.org/x/mod/sumdb/note note_test.go (TestNewVerifier, TestSign, TestOpen):
# PeterNeumann's private key (seed after the 0x01 algorithm byte), his and EnochRoot's verifier keys,
# the text, and the signature lines Go's Sign writes for it.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6"
             "RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1R"
             "vMc+QQ=\n")


def _go_public_key(vkey: str) -> bytes:
    """The raw Ed25519 key of a Go verifier key, after its 0x01 algorithm byte."""
    encoded = base64.b64decode(vkey.split("+", 2)[2])
    assert encoded[0] == 1
    return encoded[1:]


PETER = Signer(base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:])
ENOCH_PUBLIC_KEY = _go_public_key(ENOCH_VKEY)


# --- the Go reference vector ---------------------------------------------------------------------

def test_the_verifier_key_matches_go_byte_for_byte() -> None:
    assert PETER.public_key == _go_public_key(PETER_VKEY)
    assert verifier_key("PeterNeumann", PETER.public_key) == PETER_VKEY
    assert verifier_key("EnochRoot", ENOCH_PUBLIC_KEY) == ENOCH_VKEY
    assert key_hash("PeterNeumann", PETER.public_key) == bytes.fromhex("c74f20a3")


def test_the_signed_note_matches_go_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, "PeterNeumann", PETER.sign, PETER.public_key) == GO_TEXT + "\n" + PETER_SIG


def test_a_note_signed_by_go_opens_with_either_key_and_ignores_the_other() -> None:
    note = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, "PeterNeumann", PETER.public_key) == GO_TEXT
    assert open_note(note, "EnochRoot", ENOCH_PUBLIC_KEY) == GO_TEXT


def test_a_bad_signature_from_the_known_key_is_refused_even_beside_a_good_one() -> None:
    corrupt = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]  # Go's "invalid signature" probe
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(GO_TEXT + "\n" + corrupt, "PeterNeumann", PETER.public_key)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_TEXT + "\n" + PETER_SIG + corrupt, "PeterNeumann", PETER.public_key)


@pytest.mark.parametrize("note", [  # Go's badMsgs: each is a malformed note
    GO_TEXT,
    GO_TEXT + "\n",
    GO_TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + GO_TEXT + "\n" + PETER_SIG,
    "\ud800" + GO_TEXT + "\n" + PETER_SIG,  # Go's "\xff" probe: text that is not UTF-8
    GO_TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
    GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    GO_TEXT + "\n" + PETER_SIG * 101,
])
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError, match="malformed note"):
        open_note(note, "PeterNeumann", PETER.public_key)


def test_a_note_without_the_keys_signature_is_refused() -> None:
    with pytest.raises(NoteError, match="no signature by key EnochRoot\\+af0cfe78"):
        open_note(GO_TEXT + "\n" + PETER_SIG, "EnochRoot", ENOCH_PUBLIC_KEY)


# --- checkpoints ---------------------------------------------------------------------------------

def test_the_body_is_the_exact_tlog_checkpoint_text() -> None:
    assert Checkpoint(ORIGIN, 8, ROOT).body() == f"{ORIGIN}\n8\n{ROOT_B64}\n"
    assert Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext two")).body() == f"{ORIGIN}\n0\n{ROOT_B64}\next one\next two\n"


def test_a_signed_checkpoint_round_trips() -> None:
    checkpoint = Checkpoint(ORIGIN, 20852163, ROOT, ("extension",))
    note = sign_note(checkpoint.body(), ORIGIN, OPERATOR.sign, OPERATOR.public_key)
    assert note.startswith(checkpoint.body() + "\n\u2014 " + ORIGIN + " ")
    assert Checkpoint.parse(open_note(note, ORIGIN, OPERATOR.public_key)) == checkpoint


@pytest.mark.parametrize("old, new", [
    ("\n8\n", "\n9\n"),  # size
    (ROOT_B64, base64.b64encode(bytes(32)).decode()),  # root
    (ORIGIN + "\n", "example.org/ledger\n"),  # origin
])
def test_tampering_with_the_text_is_refused(old: str, new: str) -> None:
    note = sign_note(Checkpoint(ORIGIN, 8, ROOT).body(), ORIGIN, OPERATOR.sign, OPERATOR.public_key)
    tampered = note.replace(old, new, 1)
    assert tampered != note
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, ORIGIN, OPERATOR.public_key)


def test_tampering_with_the_signature_is_refused() -> None:
    note = sign_note(Checkpoint(ORIGIN, 8, ROOT).body(), ORIGIN, OPERATOR.sign, OPERATOR.public_key)
    text, line = note.rsplit("\n\n", 1)
    prefix, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1  # the last byte of the Ed25519 signature, after the key ID
    forged = f"{text}\n\n{prefix} {base64.b64encode(raw).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(forged, ORIGIN, OPERATOR.public_key)


def test_a_note_signed_by_another_key_with_the_same_name_is_refused() -> None:
    impostor = Signer.generate()
    note = sign_note(Checkpoint(ORIGIN, 8, ROOT).body(), ORIGIN, impostor.sign, impostor.public_key)
    with pytest.raises(NoteError, match="no signature by key"):
        open_note(note, ORIGIN, OPERATOR.public_key)


def test_a_signature_by_the_right_key_under_another_name_is_refused() -> None:
    note = sign_note(Checkpoint(ORIGIN, 8, ROOT).body(), "example.org/other", OPERATOR.sign, OPERATOR.public_key)
    with pytest.raises(NoteError, match="no signature by key"):
        open_note(note, ORIGIN, OPERATOR.public_key)


def test_other_signers_lines_are_ignored_but_one_verified_signature_is_needed() -> None:
    body = Checkpoint(ORIGIN, 8, ROOT).body()
    witness = Signer.generate()
    ours = sign_note(body, ORIGIN, OPERATOR.sign, OPERATOR.public_key)
    theirs = sign_note(body, "witness.example", witness.sign, witness.public_key)
    cosigned = ours + theirs.split("\n\n", 1)[1]
    assert open_note(cosigned, ORIGIN, OPERATOR.public_key) == body
    assert open_note(cosigned, "witness.example", witness.public_key) == body


@pytest.mark.parametrize("body, message", [
    (f"{ORIGIN}\n8\n{ROOT_B64}", "ends in a newline"),
    (f"{ORIGIN}\n8\n", "at least 3 lines"),
    (f"\n8\n{ROOT_B64}\n", "origin"),
    (f"{ORIGIN}\n08\n{ROOT_B64}\n", "'08' is not a decimal"),
    (f"{ORIGIN}\n00\n{ROOT_B64}\n", "'00' is not a decimal"),
    (f"{ORIGIN}\n-1\n{ROOT_B64}\n", "'-1' is not a decimal"),
    (f"{ORIGIN}\n+8\n{ROOT_B64}\n", "'\\+8' is not a decimal"),
    (f"{ORIGIN}\n 8\n{ROOT_B64}\n", "' 8' is not a decimal"),
    (f"{ORIGIN}\n0x8\n{ROOT_B64}\n", "'0x8' is not a decimal"),
    (f"{ORIGIN}\n\u0668\n{ROOT_B64}\n", "is not a decimal"),  # ARABIC-INDIC DIGIT EIGHT
    (f"{ORIGIN}\n8\n{'9' * 30}\n", "not base64"),  # 30 characters: not whole base64 quanta
    (f"{ORIGIN}\n{'9' * 21}\n{ROOT_B64}\n", "is not a decimal uint64"),
    (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", "outside 0..2\\^64-1"),
    (f"{ORIGIN}\n8\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes"),
    (f"{ORIGIN}\n8\n{base64.b64encode(bytes(33)).decode()}\n", "33 bytes"),
    (f"{ORIGIN}\n8\n{ROOT_B64[:-1]}\n", "not base64"),
    (f"{ORIGIN}\n8\n{ROOT_B64[:-2]}h=\n", "canonical"),
    (f"{ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=\n", "not base64"),  # URL-safe alphabet
    (f"{ORIGIN}\n8\n{ROOT_B64}\n\n", "extension line ''"),
    (f"{ORIGIN}\n8\n{ROOT_B64}\next\r\n", "extension line"),
])
def test_parse_refuses_malformed_bodies(body: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(body)


@pytest.mark.parametrize("kwargs, message", [
    (dict(origin="", size=1, root=ROOT), "origin"),
    (dict(origin="a\nb", size=1, root=ROOT), "origin"),
    (dict(origin=ORIGIN, size=-1, root=ROOT), "outside"),
    (dict(origin=ORIGIN, size=1, root=ROOT[:16]), "16 bytes"),
    (dict(origin=ORIGIN, size=1, root=ROOT, extensions=("",)), "extension"),
])
def test_a_checkpoint_that_would_not_parse_back_cannot_be_made(kwargs: dict, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint(**kwargs)


@pytest.mark.parametrize("text, name, message", [
    ("no newline", ORIGIN, "ends in a newline"),
    ("bell\a\n", ORIGIN, "control character"),
    ("surrogate \ud800\n", ORIGIN, "not valid UTF-8"),
    ("text\n", "", "key name"),
    ("text\n", "has space", "key name"),
    ("text\n", "has+plus", "key name"),
])
def test_sign_note_refuses_what_could_not_be_opened(text: str, name: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        sign_note(text, name, OPERATOR.sign, OPERATOR.public_key)


def test_a_public_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        key_hash(ORIGIN, OPERATOR.public_key[:31])
    with pytest.raises(ValueError, match="32 bytes, got 33"):
        open_note(GO_TEXT + "\n" + PETER_SIG, "PeterNeumann", PETER.public_key + b"\x00")
