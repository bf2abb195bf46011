"""The keystore: each named machine identity's Ed25519 secret key in its own owner-only file.

A key lives in ``<directory>/<NAME>.key.json``. By default the 32-byte seed is
encrypted with a passphrase (Argon2id stretches it into a key for NaCl's
SecretBox, an XSalsa20-Poly1305 authenticated cipher), so a copied file is useless
without the passphrase. The file also carries the public key and an optional DID in
the clear, so ``info`` can say whose key it is without asking for anything.

Plain files (the seed as hex, ``"kdf": "none"``) exist for simulated fleets and
are written only when the caller asks for them with ``plain=True``; a missing
passphrase is an error, never a reason to store a key unencrypted.

Files are created 0o600 through a temporary file, fsync and an atomic rename, in a
directory created 0o700; a key file anyone else can read is refused on load.
Key rotation goes through ``Keystore.staging``: the new key is written to a side
file and ``commit`` swaps it in while keeping the previous key as a numbered
archive, so rotating never destroys a key.

File format, version 1 (JSON object)::

    format      "depai-keystore"
    version     1
    public_key  hex of the 32-byte Ed25519 public key
    did         a DID string or null (metadata given by the caller)
    kdf         "argon2id" or "none"
    argon2id:   opslimit, memlimit (ints), salt (base64, 16 bytes),
                ciphertext (base64: 24-byte nonce + SecretBox of the 32-byte seed)
    none:       seed (hex of the 32-byte seed)

Only the ciphertext is authenticated; the public key is checked against the
decrypted seed on every load, and a file whose cost parameters were altered simply
fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import errno
import getpass
import hmac
import json
import os
import re
import secrets
import shlex
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import nacl.pwhash.argon2id as argon2id
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from identity.errors import KeystoreError
from identity.keys import PUBLIC_KEY_SIZE, SEED_SIZE, Signer

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PASSPHRASE_ENV",
    "KeyInfo",
    "Keystore",
    "StagedKey",
    "resolve_passphrase",
    "validate_name",
]

FORMAT = "depai-keystore"
FORMAT_VERSION = 1
PASSPHRASE_ENV = "DEPAI_PASSPHRASE"

KEY_SUFFIX = ".key.json"
STAGING_SUFFIX = ".key.json.new"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KDF_ARGON2ID = "argon2id"
_KDF_NONE = "none"
_CIPHERTEXT_SIZE = SecretBox.NONCE_SIZE + SecretBox.MACBYTES + SEED_SIZE
_MAX_FILE_SIZE = 64 * 1024
_OWNER_ONLY_FILE = 0o600
_OWNER_ONLY_DIR = 0o700
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_POSIX = os.name == "posix"


@dataclass(frozen=True)
class KeyInfo:
    """What a key file says about itself without the passphrase: whose key it is and how it is stored."""

    name: str
    public_key: bytes
    did: str | None
    encrypted: bool
    path: Path


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe key name (it becomes a file name), else raise ``bad_name``."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise KeystoreError(
            f"{name!r} is not a valid key name",
            code="bad_name",
            hint="use 1 to 64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return name


def resolve_passphrase(
    passphrase: str | None, *, confirm: bool, prompt: str = "Keystore passphrase: "
) -> str:
    """The passphrase to use: the argument, else $DEPAI_PASSPHRASE, else a terminal prompt; resolve once, reuse for load and save."""
    if passphrase is not None:
        return _non_empty(passphrase, "the passphrase given")
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return _non_empty(from_env, f"${PASSPHRASE_ENV}")
    if not _stdin_is_tty():
        raise KeystoreError(
            "a passphrase is needed and there is no terminal to ask for it",
            code="passphrase_required",
            hint=(
                f"set {PASSPHRASE_ENV}, pass the passphrase explicitly, or, for a simulated "
                "fleet only, store the key unencrypted with the plain option (plain=True)"
            ),
        )
    first = _non_empty(getpass.getpass(prompt), "the passphrase typed")
    if confirm:
        second = getpass.getpass("Repeat the passphrase: ")
        if not hmac.compare_digest(first.encode("utf-8"), second.encode("utf-8")):
            raise KeystoreError(
                "the two passphrases typed differ",
                code="passphrase_mismatch",
                hint="type the same passphrase twice",
            )
    return first


def _non_empty(passphrase: str, source: str) -> str:
    """``passphrase`` unchanged, or ``passphrase_empty``: an empty passphrase protects nothing."""
    if not isinstance(passphrase, str):
        raise TypeError(f"a passphrase is a str, got {type(passphrase).__name__}")
    if passphrase == "":
        raise KeystoreError(
            f"{source} is empty",
            code="passphrase_empty",
            hint=f"use a non-empty passphrase (and unset {PASSPHRASE_ENV} if it is set to nothing)",
        )
    return passphrase


def _stdin_is_tty() -> bool:
    """True when a person can be prompted: stdin exists, is open and is a terminal."""
    stdin = sys.stdin
    if stdin is None:
        return False
    try:
        return bool(stdin.isatty())
    except (ValueError, OSError):
        return False


class Keystore:
    """A directory of named, passphrase-encrypted (or explicitly plain) Ed25519 key files."""

    def __init__(
        self,
        directory: Path,
        *,
        opslimit: int = argon2id.OPSLIMIT_INTERACTIVE,
        memlimit: int = argon2id.MEMLIMIT_INTERACTIVE,
    ) -> None:
        """Open (lazily: nothing is created until the first save) the keystore at ``directory`` with Argon2id cost for new keys."""
        if not argon2id.OPSLIMIT_MIN <= opslimit <= argon2id.OPSLIMIT_MAX:
            raise ValueError(f"opslimit {opslimit} is outside argon2id's range")
        if not argon2id.MEMLIMIT_MIN <= memlimit <= argon2id.MEMLIMIT_MAX:
            raise ValueError(f"memlimit {memlimit} is outside argon2id's range")
        self.directory = Path(directory)
        self.opslimit = opslimit
        self.memlimit = memlimit

    def __repr__(self) -> str:
        return f"Keystore({str(self.directory)!r})"

    # -- paths ---------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Where the live key file of ``name`` is (or would be)."""
        return self.directory / f"{validate_name(name)}{KEY_SUFFIX}"

    def _staging_path(self, name: str) -> Path:
        return self.directory / f"{validate_name(name)}{STAGING_SUFFIX}"

    def archives(self, name: str) -> list[Path]:
        """The archived previous keys of ``name``, oldest first, as left by committed rotations."""
        return [path for _, path in self._archives(validate_name(name))]

    def _archives(self, name: str) -> list[tuple[int, Path]]:
        pattern = re.compile(re.escape(name) + r"\.key-([0-9]+)\.json\.old")
        found: list[tuple[int, Path]] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match:
                found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    # -- queries -------------------------------------------------------------

    def names(self) -> list[str]:
        """The sorted names of the live keys, so callers can list identities without any passphrase."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if entry.name.endswith(KEY_SUFFIX):
                name = entry.name[: -len(KEY_SUFFIX)]
                if _NAME_RE.fullmatch(name) and entry.is_file():
                    found.append(name)
        return sorted(found)

    def exists(self, name: str) -> bool:
        """True when a live key file for ``name`` exists."""
        return self.path(name).is_file()

    def info(self, name: str) -> KeyInfo:
        """The public facts of a key file (public key, DID, encrypted or not), readable without the passphrase."""
        path = self._require(name)
        record = _parse(path, _read_file(path, check_permissions=False))
        return KeyInfo(
            name=name,
            public_key=record["public_key"],
            did=record["did"],
            encrypted=record["kdf"] != _KDF_NONE,
            path=path,
        )

    # -- load / save ---------------------------------------------------------

    def load(self, name: str, *, passphrase: str | None = None) -> Signer:
        """The Signer stored under ``name``, decrypted and checked against its public key; changes nothing on disk."""
        path = self._require(name)
        return _open_record(
            path,
            _parse(path, _read_file(path, check_permissions=True)),
            passphrase,
            prompt=f"Passphrase for key {name!r}: ",
        )

    def save(
        self,
        name: str,
        signer: Signer,
        *,
        did: str | None = None,
        passphrase: str | None = None,
        plain: bool = False,
        overwrite: bool = False,
    ) -> Path:
        """Store ``signer`` as ``name`` (encrypted unless ``plain``), atomically and owner-only; return the file's path."""
        path = self.path(name)
        self._write_key(path, name, signer, did=did, passphrase=passphrase, plain=plain,
                        replace=overwrite, exists=_key_exists)
        return path

    def staging(
        self,
        name: str,
        signer: Signer,
        *,
        did: str | None = None,
        passphrase: str | None = None,
        plain: bool = False,
    ) -> StagedKey:
        """Write ``signer`` as the next key of ``name`` to a side file, to be swapped in by ``commit`` once the rotation is published."""
        side = self._staging_path(name)
        self._write_key(side, name, signer, did=did, passphrase=passphrase, plain=plain,
                        replace=False, exists=_staging_exists)
        return StagedKey(self, name, side, signer.public_key)

    def pending(self, name: str) -> StagedKey | None:
        """The unfinished rotation of ``name`` (a side file left by a crash), to commit or abort; None when there is none."""
        side = self._staging_path(name)
        if not os.path.lexists(side):
            return None
        record = _parse(side, _read_file(side, check_permissions=True))
        return StagedKey(self, name, side, record["public_key"])

    # -- internals -----------------------------------------------------------

    def _write_key(
        self,
        path: Path,
        name: str,
        signer: Signer,
        *,
        did: str | None,
        passphrase: str | None,
        plain: bool,
        replace: bool,
        exists: Callable[[str, Path], KeystoreError],
    ) -> None:
        """Encode ``signer`` and write it to ``path`` owner-only; ``exists`` builds the error for a taken path."""
        if not replace and os.path.lexists(path):
            raise exists(name, path)
        data = self._encode(name, signer, did=did, passphrase=passphrase, plain=plain)
        self._ensure_directory()
        try:
            write_private(path, data, replace=replace)
        except FileExistsError:
            raise exists(name, path) from None

    def _require(self, name: str) -> Path:
        """The live path of ``name``, or ``key_not_found`` naming the keys that do exist."""
        path = self.path(name)
        if not os.path.lexists(path):
            known = self.names()
            listed = ", ".join(known) if known else "none"
            raise KeystoreError(
                f"no key named {name!r} in {self.directory} (keys there: {listed})",
                code="key_not_found",
                hint=f"pick one of the listed names, or create it with `depai id new {name}`",
            )
        return path

    def _encode(
        self, name: str, signer: Signer, *, did: str | None, passphrase: str | None, plain: bool
    ) -> bytes:
        """The file contents for ``signer``; resolves the passphrase (with confirmation) unless plain."""
        if not isinstance(signer, Signer):
            raise TypeError(f"expected a Signer, got {type(signer).__name__}")
        if did is not None and (not isinstance(did, str) or not did):
            raise ValueError("did must be a non-empty string or None")
        record: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "public_key": signer.public_key.hex(),
            "did": did,
        }
        if plain:
            if passphrase is not None:
                raise ValueError("plain=True stores the key unencrypted; do not pass a passphrase with it")
            record["kdf"] = _KDF_NONE
            record["seed"] = signer.seed.hex()
        else:
            secret = resolve_passphrase(
                passphrase, confirm=True, prompt=f"New passphrase for key {name!r}: "
            )
            salt = random_bytes(argon2id.SALTBYTES)
            box = SecretBox(_derive(secret, salt, self.opslimit, self.memlimit))
            record["kdf"] = _KDF_ARGON2ID
            record["opslimit"] = self.opslimit
            record["memlimit"] = self.memlimit
            record["salt"] = _b64(salt)
            record["ciphertext"] = _b64(bytes(box.encrypt(signer.seed)))
        return (json.dumps(record, indent=2) + "\n").encode("utf-8")

    def _ensure_directory(self) -> None:
        """Create the keystore directory owner-only (0o700) if it does not exist yet."""
        try:
            self.directory.mkdir(mode=_OWNER_ONLY_DIR, parents=True)
        except FileExistsError:
            if not self.directory.is_dir():
                raise KeystoreError(
                    f"keystore path {self.directory} exists and is not a directory",
                    code="not_a_directory",
                    hint="point the keystore at a directory",
                ) from None
            return
        if _POSIX:
            os.chmod(self.directory, _OWNER_ONLY_DIR)  # mkdir's mode is filtered by the umask

    def _archive_live(self, name: str) -> Path | None:
        """Hard-link (or copy) the live key of ``name`` to the next ``<NAME>.key-<n>.json.old``; None when there is no live key."""
        live = self.path(name)
        if not os.path.lexists(live):
            return None
        existing = self._archives(name)
        number = existing[-1][0] + 1 if existing else 1
        while True:
            archive = self.directory / f"{name}.key-{number}.json.old"
            try:
                _link_or_copy(live, archive)
            except FileExistsError:
                number += 1
                continue
            return archive


class StagedKey:
    """A new key written beside the live one: ``commit`` swaps it in (archiving the old key), ``abort`` discards it."""

    def __init__(self, keystore: Keystore, name: str, path: Path, public_key: bytes) -> None:
        """Wrap the side file ``path`` holding the next key of ``name`` in ``keystore``."""
        self.keystore = keystore
        self.name = name
        self.path = path
        self.public_key = public_key
        self.archive: Path | None = None
        self._state = "staged"

    def __repr__(self) -> str:
        return f"StagedKey(name={self.name!r}, public_key={self.public_key.hex()}, state={self._state})"

    @property
    def committed(self) -> bool:
        """True once ``commit`` has made this key the live one."""
        return self._state == "committed"

    @property
    def aborted(self) -> bool:
        """True once ``abort`` has discarded this key."""
        return self._state == "aborted"

    def commit(self) -> Path | None:
        """Atomically make the staged key live, keeping the previous key as an archive; return the archive's path (None if there was no key)."""
        self._require_staged("commit")
        if not os.path.lexists(self.path):
            raise KeystoreError(
                f"the staged key file {self.path} is gone",
                code="staging_missing",
                hint="stage the new key again",
            )
        store = self.keystore
        self.archive = store._archive_live(self.name)
        os.replace(self.path, store.path(self.name))
        _fsync_directory(store.directory)
        self._state = "committed"
        return self.archive

    def abort(self) -> None:
        """Remove the side file and leave the live key as it was; doing it twice is harmless."""
        if self._state == "aborted":
            return
        self._require_staged("abort")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        else:
            _fsync_directory(self.keystore.directory)
        self._state = "aborted"

    def _require_staged(self, action: str) -> None:
        if self._state != "staged":
            raise KeystoreError(
                f"cannot {action} the staged key of {self.name!r}: it is already {self._state}",
                code="staging_closed",
                hint="stage a new key to rotate again",
            )

    def __enter__(self) -> StagedKey:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Abort when the block raised before committing; a clean exit leaves an uncommitted side file for ``pending``."""
        if exc_type is not None and self._state == "staged":
            self.abort()


# -- file helpers ------------------------------------------------------------


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    """The SecretBox key Argon2id stretches out of ``passphrase``."""
    return argon2id.kdf(
        SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit
    )


def _open_record(path: Path, record: dict[str, Any], passphrase: str | None, *, prompt: str) -> Signer:
    """The Signer inside a parsed record: decrypt if needed, then check the seed against the stored public key."""
    if record["kdf"] == _KDF_NONE:
        seed = record["seed"]
    else:
        secret = resolve_passphrase(passphrase, confirm=False, prompt=prompt)
        key = _derive(secret, record["salt"], record["opslimit"], record["memlimit"])
        try:
            seed = SecretBox(key).decrypt(record["ciphertext"])
        except CryptoError:
            raise KeystoreError(
                f"cannot decrypt {path}: wrong passphrase, or the file was altered",
                code="wrong_passphrase",
                hint="check the passphrase (and $" + PASSPHRASE_ENV + " if set); the file is unchanged",
            ) from None
        if len(seed) != SEED_SIZE:
            raise _corrupt(path, f"the decrypted seed is {len(seed)} bytes, not {SEED_SIZE}")
    signer = Signer(seed)
    if signer.public_key != record["public_key"]:
        raise _corrupt(path, "the stored public key does not match the secret key")
    return signer


def _read_file(path: Path, *, check_permissions: bool) -> bytes:
    """The bytes of a key file, refusing non-regular files and (when checking) files others can access."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        raise KeystoreError(
            f"key file {path} does not exist", code="key_not_found", hint="list the keys to see what is there"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise _corrupt(path, "it is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if check_permissions and _POSIX and mode & 0o077:
            raise KeystoreError(
                f"key file {path} is accessible to other users (mode {mode:o}); a secret key must be "
                "readable by its owner only",
                code="insecure_permissions",
                hint=f"run `chmod 600 {shlex.quote(str(path))}` (and consider the key exposed)",
            )
        data = handle.read(_MAX_FILE_SIZE + 1)
    if len(data) > _MAX_FILE_SIZE:
        raise _corrupt(path, "it is far too large for a key file")
    return data


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    """The validated, decoded fields of a key file, or ``key_corrupt`` saying what is wrong."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(path, "it is not JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _corrupt(path, f"it is not a {FORMAT} file")
    version = raw.get("version")
    if type(version) is not int:
        raise _corrupt(path, "it has no format version")
    if version != FORMAT_VERSION:
        raise KeystoreError(
            f"key file {path} has format version {version}; this program reads version {FORMAT_VERSION}",
            code="unsupported_version",
            hint="use the program version that wrote it",
        )
    did = raw.get("did")
    if did is not None and (not isinstance(did, str) or not did):
        raise _corrupt(path, "its did is not a string")
    record: dict[str, Any] = {
        "public_key": _hex_field(path, raw, "public_key", PUBLIC_KEY_SIZE),
        "did": did,
        "kdf": raw.get("kdf"),
    }
    if record["kdf"] == _KDF_NONE:
        record["seed"] = _hex_field(path, raw, "seed", SEED_SIZE)
    elif record["kdf"] == _KDF_ARGON2ID:
        record["opslimit"] = _int_field(path, raw, "opslimit", argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_MAX)
        record["memlimit"] = _int_field(path, raw, "memlimit", argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_MAX)
        record["salt"] = _b64_field(path, raw, "salt", argon2id.SALTBYTES)
        record["ciphertext"] = _b64_field(path, raw, "ciphertext", _CIPHERTEXT_SIZE)
    else:
        raise _corrupt(path, f"its kdf {record['kdf']!r} is unknown")
    return record


def _hex_field(path: Path, raw: dict[str, Any], field: str, size: int) -> bytes:
    value = raw.get(field)
    try:
        decoded = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        decoded = None
    if decoded is None or len(decoded) != size:
        raise _corrupt(path, f"its {field} is not {size} bytes of hex")
    return decoded


def _b64_field(path: Path, raw: dict[str, Any], field: str, size: int) -> bytes:
    value = raw.get(field)
    try:
        decoded = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is None or len(decoded) != size:
        raise _corrupt(path, f"its {field} is not {size} bytes of base64")
    return decoded


def _int_field(path: Path, raw: dict[str, Any], field: str, low: int, high: int) -> int:
    value = raw.get(field)
    if type(value) is not int or not low <= value <= high:
        raise _corrupt(path, f"its {field} is not an integer in [{low}, {high}]")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _corrupt(path: Path, why: str) -> KeystoreError:
    return KeystoreError(
        f"key file {path} is damaged: {why}",
        code="key_corrupt",
        hint="restore the file from a backup or an archived .old copy",
    )


def _key_exists(name: str, path: Path) -> KeystoreError:
    return KeystoreError(
        f"a key named {name!r} already exists ({path})",
        code="key_exists",
        hint="choose another name, rotate the key, or overwrite it explicitly",
    )


def _staging_exists(name: str, path: Path) -> KeystoreError:
    return KeystoreError(
        f"an unfinished rotation of {name!r} left {path}, which may hold a key already in use",
        code="staging_exists",
        hint="commit it if the new key was published, otherwise abort it (Keystore.pending)",
    )


def write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` owner-only via a fsynced temp file; ``replace=False`` raises FileExistsError instead of clobbering."""
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, _OWNER_ONLY_FILE)
    try:
        try:
            if _POSIX:
                os.fchmod(fd, _OWNER_ONLY_FILE)  # exact, whatever the umask
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            _link_or_copy(temp, path)
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
    _fsync_directory(directory)


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a second name of ``source`` without clobbering (FileExistsError); copy owner-only where hard links fail."""
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
    data = Path(source).read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, _OWNER_ONLY_FILE)
    try:
        if _POSIX:
            os.fchmod(fd, _OWNER_ONLY_FILE)
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (rename, link, unlink) to disk where the platform allows it."""
    if not _POSIX:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
