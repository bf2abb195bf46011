"""One small interface over SQLite and PostgreSQL, so the ledger and the marketplace run unchanged on either.

``open_database(url)``: a path or ``sqlite:///path`` opens SQLite in WAL mode
with ``synchronous=FULL`` (a commit is on disk when it returns) and foreign
keys on; ``postgresql://...`` opens PostgreSQL through psycopg 3. SQL is
written once with ``?`` placeholders; for PostgreSQL they become ``%s``. Writes
happen only inside ``transaction()``: SQLite takes its write lock up front
(``BEGIN IMMEDIATE``), so two writers never deadlock half-way; PostgreSQL runs
at SERIALIZABLE, and both retry a transaction the database aborted as a
conflict, up to a few times.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from identity.errors import DepaiError

T = TypeVar("T")
_RETRIES = 8


class DatabaseError(DepaiError, RuntimeError):
    """The database could not be opened or used; the message says what to do."""

    code = "database_unavailable"


class IntegrityError(DepaiError, ValueError):
    """The database refused a write: a constraint or trigger of the ledger fired (the message says which)."""

    code = "integrity_violation"


class Cursor(Protocol):
    """What a transaction hands out: execute with ``?`` placeholders, fetch rows."""

    @property
    def rowcount(self) -> int: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...


class Database:
    """A connection to SQLite or PostgreSQL; ``dialect`` says which."""

    dialect: str

    def transaction(self) -> Any:
        """A context manager yielding a cursor; commits on success, rolls back on an exception."""
        raise NotImplementedError

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only query, outside any write transaction."""
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        """True when the database has a table called ``name``."""
        raise NotImplementedError

    def columns(self, table: str) -> set[str]:
        """The names of ``table``'s columns (empty when there is no such table)."""
        raise NotImplementedError

    def script(self, statements: Sequence[str]) -> None:
        """Run DDL statements, each on its own, in one transaction."""
        with self.transaction() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def run(self, work: Callable[[Cursor], T]) -> T:
        """``work(cursor)`` in a transaction, retried when the database aborts it as a conflict."""
        for attempt in range(_RETRIES):
            try:
                with self.transaction() as cursor:
                    return work(cursor)
            except _Conflict:
                time.sleep(0.001 * 2 ** attempt)
        raise DatabaseError(f"a transaction conflicted {_RETRIES} times in a row; the database is overloaded")

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


class _Conflict(Exception):
    """A serialization failure or a busy database: the transaction may simply be retried."""


class SqliteDatabase(Database):
    """SQLite in WAL mode with synchronous=FULL: durable commits, readers never block the writer."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.is_file():
            raise DatabaseError(f"there is no database at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
                self._conn.execute(f"PRAGMA {pragma}")
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise DatabaseError(f"{path} is not a SQLite database ({err})") from None
        self._lock = threading.RLock()

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def columns(self, table: str) -> set[str]:
        return {str(row[0]) for row in self.read("SELECT name FROM pragma_table_info(?)", (table,))}

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                raise _Conflict(str(err)) from err
            try:
                yield _SqliteCursor(cursor)
            except BaseException:
                self._conn.rollback()
                raise
            else:
                self._conn.commit()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _SqliteCursor:
    """A sqlite3 cursor whose constraint failures are IntegrityError."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        """Rows the last UPDATE or INSERT changed: how a compare-and-set knows it won."""
        return self._cursor.rowcount

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _SqliteCursor:
        try:
            self._cursor.execute(sql, tuple(params))
        except sqlite3.IntegrityError as err:
            raise IntegrityError(str(err)) from err
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()


_PLACEHOLDER = re.compile(r"\?")


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3, each transaction SERIALIZABLE."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg  # only a PostgreSQL ledger needs the driver loaded

        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as err:
            raise DatabaseError(f"cannot connect to {_redact(url)}: {str(err).strip()}; is the server running and "
                                "the URL right (postgresql://user:password@host:port/database)?") from None
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        errors = self._psycopg.errors
        with self._lock:
            try:
                with self._conn.transaction():
                    cursor = self._conn.cursor()
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    yield _PostgresCursor(cursor, self._psycopg)
            except (errors.SerializationFailure, errors.DeadlockDetected) as err:
                raise _Conflict(str(err)) from err

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if not params:
                return self._conn.execute(sql).fetchall()
            return self._conn.execute(_PLACEHOLDER.sub("%s", sql), tuple(params)).fetchall()

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                              "AND table_name = ?", (name,)))

    def columns(self, table: str) -> set[str]:
        return {str(row[0]) for row in self.read("SELECT column_name FROM information_schema.columns WHERE "
                                                  "table_schema = current_schema() AND table_name = ?", (table,))}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresCursor:
    """A psycopg cursor taking ``?`` placeholders, whose constraint and trigger failures are IntegrityError."""

    def __init__(self, cursor: Any, psycopg: Any) -> None:
        self._cursor, self._psycopg = cursor, psycopg

    @property
    def rowcount(self) -> int:
        """Rows the last UPDATE or INSERT changed: how a compare-and-set knows it won."""
        return int(self._cursor.rowcount)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _PostgresCursor:
        errors = self._psycopg.errors
        try:
            if params:
                self._cursor.execute(_PLACEHOLDER.sub("%s", sql), tuple(params))
            else:  # no parameters: the SQL goes as written ('%' in a trigger body is no placeholder)
                self._cursor.execute(sql)
        except (errors.IntegrityError, errors.RaiseException) as err:
            raise IntegrityError(str(err).strip()) from err
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()


def open_database(url: str | Path, *, create: bool = True) -> Database:
    """SQLite for a path or ``sqlite:///path``, PostgreSQL for ``postgresql://`` (or ``postgres://``); with
    ``create`` False a SQLite file that does not exist is refused, not made."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if text.startswith("sqlite:///"):
        return SqliteDatabase(Path(text[len("sqlite:///"):]), create=create)
    if "://" in text:
        raise DatabaseError(f"unknown database URL {_redact(text)!r}: use a file path, sqlite:///path or "
                            "postgresql://user@host:port/database")
    return SqliteDatabase(Path(text), create=create)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
