"""`depai ledger verify`: an intact ledger passes; an edited row is named; bad arguments say what to do."""

from __future__ import annotations

import json
import sqlite3

import pytest

from identity.keys import Signer
from launch.cli import main
from launch.output import EXIT_IO, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ledger.journal import Ledger

OPERATOR = Signer(bytes(range(32)))
KEY = ["--key", OPERATOR.public_key.hex()]


@pytest.fixture
def ledger_url(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("DEPAI_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    book = Ledger.open(url, OPERATOR)
    book.open_account("world:EUR", "EUR", "world", may_go_negative=True)
    book.open_account("alice", "EUR", "customer")
    for i in range(1, 4):
        book.post(f"d{i}", {"world:EUR": -i, "alice": i}, kind="deposit")
    book.checkpoint()
    book.close()
    return url


def test_an_intact_ledger_verifies(ledger_url, capsys) -> None:
    assert main(["ledger", "verify", "--db", ledger_url, *KEY]) == EXIT_OK
    assert "5 entries" in capsys.readouterr().out  # two accounts opened, three deposits
    assert main(["ledger", "verify", "--db", ledger_url, "--json", *KEY]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"entries": 5, "checkpoint": 5, "keys": "--key", "witnesses": 0,
                                                   "problems": [], "intact": True}


def test_the_key_never_comes_from_the_database_it_checks(ledger_url, capsys) -> None:
    assert main(["ledger", "verify", "--db", ledger_url]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "from outside the database" in err and "--key HEX" in err


def test_an_edited_row_is_named_and_the_exit_status_says_so(ledger_url, capsys) -> None:
    book = Ledger.open(ledger_url, None)
    with book.db.transaction() as cursor:
        cursor.execute("DROP TRIGGER entries_no_update")
        cursor.execute("UPDATE entries SET memo = 'nothing to see' WHERE seq = 2")
    book.close()
    assert main(["ledger", "verify", "--db", ledger_url, *KEY]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "entry 2: its content does not match its leaf hash" in out and "entry 1" not in out


def test_another_operator_key_fails_every_signature(ledger_url, capsys) -> None:
    other = Signer.generate().public_key.hex()
    assert main(["ledger", "verify", "--db", ledger_url, "--key", other, "--json"]) == EXIT_REFUSED
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert len([p for p in problems if "signature does not verify" in p]) == 5


@pytest.mark.parametrize("argv, code, says", [
    (["--key", "abc"], EXIT_USAGE, "64 hex digits"),
    (["--db", "mysql://x", *KEY], EXIT_IO, "sqlite:///path or postgresql://"),
])
def test_bad_arguments_say_what_to_do(ledger_url, capsys, argv, code, says) -> None:
    args = ["ledger", "verify", "--db", ledger_url, *argv] if "--db" not in argv else ["ledger", "verify", *argv]
    assert main(args) == code
    assert says in capsys.readouterr().err


def test_verifying_a_missing_path_is_refused_and_creates_nothing(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere" / "ledger.sqlite3"
    assert main(["ledger", "verify", "--db", str(missing), *KEY]) == EXIT_IO
    assert "there is no database at" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()


def test_verifying_a_file_that_is_not_a_database_is_refused_without_a_traceback_and_left_as_it_was(
        tmp_path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, not a database\n" * 100)
    assert main(["ledger", "verify", "--db", str(path), *KEY]) == EXIT_IO
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is not a SQLite database" in err
    assert path.read_bytes() == b"hello, not a database\n" * 100


def test_verifying_a_sqlite_database_without_a_ledger_adds_no_ledger_tables(tmp_path, capsys) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    assert main(["ledger", "verify", "--db", str(path), *KEY]) == EXIT_IO
    assert "holds no ledger" in capsys.readouterr().err
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    db.close()
    assert tables == ["notes"]
