"""The keystore: encrypted and plain round trips, owner-only files, passphrase sources, tamper checks, rotation."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.pwhash.argon2id import MEMLIMIT_MIN, OPSLIMIT_MIN

from identity import keystore as keystore_module
from identity.errors import KeystoreError
from identity.keys import Signer
from identity.keystore import PASSPHRASE_ENV, KeyInfo, Keystore, resolve_passphrase

PASS = "correct horse battery staple"
DID = "did:peaq:5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


class FakeTty(io.StringIO):
    """A stdin that claims to be a terminal, so the prompt path can be exercised."""

    def isatty(self) -> bool:
        return True


def no_prompt(prompt: str = "") -> str:
    raise AssertionError(f"unexpected passphrase prompt: {prompt!r}")


@pytest.fixture(autouse=True)
def no_ambient_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's environment or terminal, and none can hang on a prompt."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(keystore_module.getpass, "getpass", no_prompt)


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys", opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Pretend stdin is a terminal; append the answers getpass should give, in order."""
    answers: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(sys, "stdin", FakeTty(""))
    monkeypatch.setattr(keystore_module.getpass, "getpass", fake_getpass)
    yield answers
    assert not answers, "not every prepared answer was asked for"


def record_of(path: Path) -> dict:
    return json.loads(path.read_text())


def rewrite(path: Path, record: dict) -> None:
    """Edit a key file in place, keeping its 0o600 mode (open(..., 'w') keeps the inode)."""
    with open(path, "w") as handle:
        json.dump(record, handle)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- round trips -------------------------------------------------------------


def test_encrypted_round_trip(store: Keystore) -> None:
    signer = Signer.generate()
    path = store.save("robot-1", signer, did=DID, passphrase=PASS)
    assert path == store.directory / "robot-1.key.json"
    loaded = store.load("robot-1", passphrase=PASS)
    assert loaded.seed == signer.seed
    assert loaded.public_key == signer.public_key
    record = record_of(path)
    assert record["kdf"] == "argon2id"
    assert record["version"] == 1
    assert record["opslimit"] == OPSLIMIT_MIN and record["memlimit"] == MEMLIMIT_MIN
    assert record["public_key"] == signer.public_key.hex()
    assert record["did"] == DID
    assert "seed" not in record


def test_default_cost_is_interactive(tmp_path: Path) -> None:
    import nacl.pwhash.argon2id as argon2id

    store = Keystore(tmp_path)
    assert (store.opslimit, store.memlimit) == (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)
    with pytest.raises(ValueError):
        Keystore(tmp_path, memlimit=1)


def test_plain_round_trip_needs_no_passphrase(store: Keystore) -> None:
    signer = Signer.generate()
    path = store.save("sim-7", signer, plain=True)
    record = record_of(path)
    assert record["kdf"] == "none"
    assert record["seed"] == signer.seed.hex()
    # No env var, no terminal, getpass forbidden: loading still works.
    assert store.load("sim-7").seed == signer.seed
    assert store.info("sim-7").encrypted is False


def test_plain_with_a_passphrase_is_a_caller_error(store: Keystore) -> None:
    with pytest.raises(ValueError):
        store.save("sim-7", Signer.generate(), plain=True, passphrase=PASS)
    assert not store.exists("sim-7")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passphrase=st.text(min_size=1, max_size=40))
def test_any_non_empty_unicode_passphrase_round_trips(store: Keystore, passphrase: str) -> None:
    signer = Signer.generate()
    store.save("prop", signer, passphrase=passphrase, overwrite=True)
    assert store.load("prop", passphrase=passphrase).seed == signer.seed


# -- files on disk -----------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("plain", [False, True])
def test_files_are_owner_only_whatever_the_umask(tmp_path: Path, plain: bool) -> None:
    store = Keystore(tmp_path / "a" / "keys", opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    old_umask = os.umask(0)  # a permissive umask must not leak into the modes
    try:
        path = store.save("robot-1", Signer.generate(), passphrase=None if plain else PASS, plain=plain)
        staged = store.staging("robot-1", Signer.generate(), passphrase=None if plain else PASS, plain=plain)
        assert mode_of(staged.path) == 0o600
        archive = staged.commit()
    finally:
        os.umask(old_umask)
    assert mode_of(store.directory) == 0o700
    assert mode_of(path) == 0o600
    assert archive is not None and mode_of(archive) == 0o600
    # no temp files left behind
    assert sorted(p.name for p in store.directory.iterdir()) == ["robot-1.key-1.json.old", "robot-1.key.json"]


def test_secret_seed_never_appears_in_encrypted_file(store: Keystore) -> None:
    signer = Signer.generate()
    path = store.save("robot-1", signer, did=DID, passphrase=PASS)
    raw = path.read_bytes()
    seed = signer.seed
    for form in (seed, seed.hex().encode(), seed.hex().upper().encode(), base64.b64encode(seed)):
        assert form not in raw
    assert PASS.encode() not in raw
    # The same key saved twice encrypts differently (fresh salt and nonce).
    again = store.save("robot-2", signer, passphrase=PASS)
    assert record_of(again)["ciphertext"] != record_of(path)["ciphertext"]
    assert record_of(again)["salt"] != record_of(path)["salt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o660])
@pytest.mark.parametrize("plain", [False, True])
def test_group_or_world_accessible_key_is_refused(store: Keystore, mode: int, plain: bool) -> None:
    path = store.save("robot-1", Signer.generate(), passphrase=None if plain else PASS, plain=plain)
    os.chmod(path, mode)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase=None if plain else PASS)
    assert caught.value.code == "insecure_permissions"
    assert f"chmod 600 {path}" in str(caught.value)
    os.chmod(path, 0o600)
    store.load("robot-1", passphrase=None if plain else PASS)


# -- passphrases -------------------------------------------------------------


def test_wrong_passphrase_is_refused_and_changes_nothing(store: Keystore) -> None:
    signer = Signer.generate()
    path = store.save("robot-1", signer, passphrase=PASS)
    before = path.read_bytes()
    before_stat = os.stat(path)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase="not the passphrase")
    assert caught.value.code == "wrong_passphrase"
    assert "passphrase" in str(caught.value)
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == before_stat.st_mtime_ns
    assert sorted(p.name for p in store.directory.iterdir()) == ["robot-1.key.json"]
    assert store.load("robot-1", passphrase=PASS).seed == signer.seed


def test_passphrase_from_environment(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer.generate()
    monkeypatch.setenv(PASSPHRASE_ENV, PASS)
    store.save("robot-1", signer)
    assert store.load("robot-1").seed == signer.seed
    monkeypatch.delenv(PASSPHRASE_ENV)
    assert store.load("robot-1", passphrase=PASS).seed == signer.seed  # it really was the env value
    monkeypatch.setenv(PASSPHRASE_ENV, "something else")
    assert store.load("robot-1", passphrase=PASS).seed == signer.seed  # an explicit argument wins
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1")
    assert caught.value.code == "wrong_passphrase"


def test_no_terminal_and_no_env_requires_a_passphrase(store: Keystore) -> None:
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", Signer.generate())
    assert caught.value.code == "passphrase_required"
    assert PASSPHRASE_ENV in str(caught.value)
    assert "plain" in str(caught.value)
    # never a silent fallback to an unencrypted file
    assert not store.exists("robot-1")
    assert not store.directory.exists() or list(store.directory.iterdir()) == []

    store.save("robot-1", Signer.generate(), passphrase=PASS)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1")
    assert caught.value.code == "passphrase_required"


def test_closed_or_missing_stdin_counts_as_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = io.StringIO()
    closed.close()
    for stdin in (None, closed):
        monkeypatch.setattr(sys, "stdin", stdin)
        with pytest.raises(KeystoreError) as caught:
            resolve_passphrase(None, confirm=False)
        assert caught.value.code == "passphrase_required"


def test_empty_passphrase_is_refused(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", Signer.generate(), passphrase="")
    assert caught.value.code == "passphrase_empty"
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", Signer.generate())
    assert caught.value.code == "passphrase_empty"
    assert not store.exists("robot-1")


def test_terminal_prompt_asks_twice_for_a_new_key_and_once_to_load(store: Keystore, tty: list[str]) -> None:
    signer = Signer.generate()
    tty.extend([PASS, PASS])
    store.save("robot-1", signer)
    tty.append(PASS)
    assert store.load("robot-1").seed == signer.seed


def test_terminal_prompt_mismatch_is_refused(store: Keystore, tty: list[str]) -> None:
    tty.extend([PASS, PASS + "x"])
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", Signer.generate())
    assert caught.value.code == "passphrase_mismatch"
    assert not store.exists("robot-1")


def test_terminal_prompt_empty_is_refused(store: Keystore, tty: list[str]) -> None:
    tty.append("")
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", Signer.generate())
    assert caught.value.code == "passphrase_empty"


def test_resolved_passphrase_is_reused_for_load_and_rotation(store: Keystore, tty: list[str]) -> None:
    old = Signer.generate()
    store.save("robot-1", old, passphrase=PASS)
    tty.extend([PASS, PASS])  # the only two prompts of the whole rotation
    secret = resolve_passphrase(None, confirm=True)
    assert store.load("robot-1", passphrase=secret).seed == old.seed
    new = Signer.generate()
    with store.staging("robot-1", new, passphrase=secret) as staged:
        staged.commit()
    assert store.load("robot-1", passphrase=PASS).seed == new.seed


# -- tampering ---------------------------------------------------------------


def test_tampered_ciphertext_is_refused(store: Keystore) -> None:
    path = store.save("robot-1", Signer.generate(), passphrase=PASS)
    record = record_of(path)
    ciphertext = bytearray(base64.b64decode(record["ciphertext"]))
    ciphertext[-1] ^= 0x01
    record["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    rewrite(path, record)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase=PASS)
    # Authenticated encryption cannot tell a flipped bit from a wrong passphrase; it refuses either way.
    assert caught.value.code == "wrong_passphrase"
    assert "altered" in str(caught.value)


@pytest.mark.parametrize("plain", [False, True])
def test_swapped_public_key_is_refused(store: Keystore, plain: bool) -> None:
    path = store.save("robot-1", Signer.generate(), passphrase=None if plain else PASS, plain=plain)
    record = record_of(path)
    record["public_key"] = Signer.generate().public_key.hex()
    rewrite(path, record)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase=None if plain else PASS)
    assert caught.value.code == "key_corrupt"


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.pop("salt"),
        lambda r: r.update(salt="!!!not base64!!!"),
        lambda r: r.update(ciphertext=base64.b64encode(b"short").decode()),
        lambda r: r.update(memlimit=1),
        lambda r: r.update(opslimit="2"),
        lambda r: r.update(kdf="scrypt"),
        lambda r: r.update(public_key="zz"),
        lambda r: r.update(format="something-else"),
        lambda r: r.update(did=7),
    ],
)
def test_malformed_fields_are_reported_as_corrupt(store: Keystore, edit) -> None:
    path = store.save("robot-1", Signer.generate(), passphrase=PASS)
    record = record_of(path)
    edit(record)
    rewrite(path, record)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase=PASS)
    assert caught.value.code == "key_corrupt"


def test_not_json_and_future_version(store: Keystore) -> None:
    path = store.save("robot-1", Signer.generate(), passphrase=PASS)
    record = record_of(path)
    path.write_text("{ not json")
    with pytest.raises(KeystoreError) as caught:
        store.info("robot-1")
    assert caught.value.code == "key_corrupt"
    record["version"] = 2
    rewrite(path, record)
    with pytest.raises(KeystoreError) as caught:
        store.load("robot-1", passphrase=PASS)
    assert caught.value.code == "unsupported_version"


# -- names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "-dash", "_under", "a/b", "../escape", "a b", "a\n", "robot\x00", "a" * 65, "ümlaut", "a:b"],
)
def test_bad_names_are_refused_everywhere(store: Keystore, name: str) -> None:
    signer = Signer.generate()
    calls = [
        lambda: store.save(name, signer, passphrase=PASS),
        lambda: store.load(name, passphrase=PASS),
        lambda: store.info(name),
        lambda: store.exists(name),
        lambda: store.staging(name, signer, passphrase=PASS),
    ]
    for call in calls:
        with pytest.raises(KeystoreError) as caught:
            call()
        assert caught.value.code == "bad_name"
    assert not store.directory.exists()


@pytest.mark.parametrize("name", ["a", "A9", "robot-1.eu_west", "a" * 64, "0"])
def test_good_names_are_accepted(store: Keystore, name: str) -> None:
    store.save(name, Signer.generate(), plain=True)
    assert store.exists(name)
    assert store.names() == [name]


def test_existing_name_needs_overwrite(store: Keystore) -> None:
    first, second = Signer.generate(), Signer.generate()
    path = store.save("robot-1", first, passphrase=PASS)
    before = path.read_bytes()
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", second, passphrase=PASS)
    assert caught.value.code == "key_exists"
    assert path.read_bytes() == before
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", second, plain=True)
    assert caught.value.code == "key_exists"
    store.save("robot-1", second, passphrase=PASS, overwrite=True)
    assert store.load("robot-1", passphrase=PASS).seed == second.seed


def test_missing_name(store: Keystore) -> None:
    store.save("robot-2", Signer.generate(), plain=True)
    for call in (lambda: store.load("robot-1", passphrase=PASS), lambda: store.info("robot-1")):
        with pytest.raises(KeystoreError) as caught:
            call()
        assert caught.value.code == "key_not_found"
        assert "depai id new robot-1" in str(caught.value)
        assert "robot-2" in str(caught.value)


def test_names_lists_live_keys_sorted(store: Keystore) -> None:
    assert store.names() == []  # directory not created yet
    # neither this order nor its reverse is sorted, whatever order the directory lists in
    for name in ["b", "zeta", "alpha", "Mid.1", "c"]:
        store.save(name, Signer.generate(), plain=True)
    store.staging("alpha", Signer.generate(), plain=True).commit()  # leaves an archive
    store.staging("zeta", Signer.generate(), plain=True)  # leaves a side file
    (store.directory / "notes.txt").write_text("not a key")
    assert store.names() == ["Mid.1", "alpha", "b", "c", "zeta"]
    assert store.exists("alpha") and not store.exists("beta")


# -- info --------------------------------------------------------------------


def test_info_needs_no_passphrase(store: Keystore) -> None:
    signer = Signer.generate()
    path = store.save("robot-1", signer, did=DID, passphrase=PASS)
    info = store.info("robot-1")  # no env var, no terminal, getpass forbidden
    assert info == KeyInfo(name="robot-1", public_key=signer.public_key, did=DID, encrypted=True, path=path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.did = "did:key:z6Mk"  # type: ignore[misc]
    store.save("robot-2", signer, plain=True)
    assert store.info("robot-2").did is None


# -- rotation ----------------------------------------------------------------


def test_staging_commit_archives_the_old_key(store: Keystore) -> None:
    old, new, newer = Signer.generate(), Signer.generate(), Signer.generate()
    live = store.save("robot-1", old, did=DID, passphrase=PASS)
    staged = store.staging("robot-1", new, did=DID, passphrase=PASS)
    assert staged.path == store.directory / "robot-1.key.json.new"
    assert staged.public_key == new.public_key
    # nothing live changes before commit
    assert store.load("robot-1", passphrase=PASS).seed == old.seed
    archive = staged.commit()
    assert archive == store.directory / "robot-1.key-1.json.old"
    assert staged.committed and not staged.path.exists()
    assert store.load("robot-1", passphrase=PASS).seed == new.seed
    assert record_of(archive)["public_key"] == old.public_key.hex()

    second = store.staging("robot-1", newer, passphrase=PASS).commit()
    assert second == store.directory / "robot-1.key-2.json.old"
    assert store.archives("robot-1") == [archive, second]
    assert record_of(archive)["public_key"] == old.public_key.hex()  # never overwritten
    assert record_of(second)["public_key"] == new.public_key.hex()
    # an archive is a complete key file: the old key is recoverable
    os.replace(archive, live.with_name("restored.key.json"))
    assert store.load("restored", passphrase=PASS).seed == old.seed


def test_staging_commit_twice_is_refused(store: Keystore) -> None:
    store.save("robot-1", Signer.generate(), plain=True)
    staged = store.staging("robot-1", Signer.generate(), plain=True)
    staged.commit()
    with pytest.raises(KeystoreError) as caught:
        staged.commit()
    assert caught.value.code == "staging_closed"
    assert len(store.archives("robot-1")) == 1


def test_staging_abort_keeps_the_old_key(store: Keystore) -> None:
    old = Signer.generate()
    live = store.save("robot-1", old, passphrase=PASS)
    before = live.read_bytes()
    staged = store.staging("robot-1", Signer.generate(), passphrase=PASS)
    assert staged.path.exists()
    staged.abort()
    staged.abort()  # harmless twice
    assert staged.aborted and not staged.path.exists()
    assert live.read_bytes() == before
    assert store.archives("robot-1") == []
    assert store.load("robot-1", passphrase=PASS).seed == old.seed
    with pytest.raises(KeystoreError):
        staged.commit()


def test_staging_context_manager_aborts_on_exception(store: Keystore) -> None:
    old = Signer.generate()
    store.save("robot-1", old, passphrase=PASS)
    with pytest.raises(RuntimeError, match="registry unreachable"):
        with store.staging("robot-1", Signer.generate(), passphrase=PASS) as staged:
            raise RuntimeError("registry unreachable")
    assert staged.aborted and not staged.path.exists()
    assert store.load("robot-1", passphrase=PASS).seed == old.seed
    assert store.archives("robot-1") == []


def test_staging_context_manager_keeps_a_commit(store: Keystore) -> None:
    new = Signer.generate()
    store.save("robot-1", Signer.generate(), passphrase=PASS)
    with pytest.raises(RuntimeError):
        with store.staging("robot-1", new, passphrase=PASS) as staged:
            staged.commit()
            raise RuntimeError("after the commit")
    assert store.load("robot-1", passphrase=PASS).seed == new.seed
    assert len(store.archives("robot-1")) == 1


def test_unfinished_rotation_is_never_clobbered_and_can_be_resumed(
    store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save("robot-1", Signer.generate(), passphrase=PASS)
    new = Signer.generate()
    store.staging("robot-1", new, passphrase=PASS)  # e.g. the process died before commit
    assert store.pending("robot-2") is None
    with pytest.raises(KeystoreError) as caught:
        store.staging("robot-1", Signer.generate(), passphrase=PASS)
    assert caught.value.code == "staging_exists"
    # refused before asking for anything: the check comes first
    monkeypatch.setattr(sys, "stdin", FakeTty(""))
    with pytest.raises(KeystoreError) as caught:
        store.staging("robot-1", Signer.generate())
    assert caught.value.code == "staging_exists"
    resumed = store.pending("robot-1")
    assert resumed is not None and resumed.public_key == new.public_key
    resumed.commit()
    assert store.load("robot-1", passphrase=PASS).seed == new.seed


def test_staging_a_new_name_commits_without_archive(store: Keystore) -> None:
    signer = Signer.generate()
    assert store.staging("fresh", signer, plain=True).commit() is None
    assert store.load("fresh").seed == signer.seed


def test_archive_numbers_keep_increasing_after_an_archive_is_removed(store: Keystore) -> None:
    store.save("robot-1", Signer.generate(), plain=True)
    first = store.staging("robot-1", Signer.generate(), plain=True).commit()
    second = store.staging("robot-1", Signer.generate(), plain=True).commit()
    assert first is not None and second is not None
    first.unlink()  # an operator pruned the oldest archive
    third = store.staging("robot-1", Signer.generate(), plain=True).commit()
    assert third == store.directory / "robot-1.key-3.json.old"
    assert store.archives("robot-1") == [second, third]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_works_where_hard_links_are_not_supported(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # what e.g. some FUSE and SMB mounts say

    monkeypatch.setattr(keystore_module.os, "link", no_links)
    old, new = Signer.generate(), Signer.generate()
    store.save("robot-1", old, passphrase=PASS)
    with pytest.raises(KeystoreError) as caught:
        store.save("robot-1", new, passphrase=PASS)
    assert caught.value.code == "key_exists"
    archive = store.staging("robot-1", new, passphrase=PASS).commit()
    assert archive is not None and mode_of(archive) == 0o600
    assert record_of(archive)["public_key"] == old.public_key.hex()
    assert store.load("robot-1", passphrase=PASS).seed == new.seed
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]
