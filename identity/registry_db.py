"""Where the DID registry keeps its versions: one SQLite file, or one PostgreSQL database shared by the fleet.

Internal to ``identity.registry``; ``open_backend(target)`` picks the backend:
a filesystem path or ``sqlite:///path`` (the ledger's convention: what follows
``sqlite:///`` is the path, so ``sqlite:////abs/path`` is absolute) opens SQLite;
``postgresql://`` (or ``postgres://``) opens PostgreSQL through psycopg 3.

Both backends give the registry the same things:
- ``read(sql, params)``: the rows of one query; SQL uses ``?`` placeholders;
- ``write()``: a transaction that is the only writer of ``did_versions`` while it
  runs (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory
  lock, so two processes cannot interleave their check-then-insert);
- ``change_marker()``: a cheap value that changes when anyone commits a version
  (SQLite: ``PRAGMA data_version``; PostgreSQL: the row count and the latest
  ``valid_from`` of the append-only table, read in one snapshot);
- append-only versions enforced by the database itself: triggers that raise on
  UPDATE and DELETE (and, on PostgreSQL, TRUNCATE).
A row whose ``(did, version)`` another writer already committed raises
``VersionTaken`` instead of a driver error.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from identity.errors import RegistryError

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS did_versions (
    did          TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    key_id       TEXT,
    public_key   BLOB,
    document     TEXT    NOT NULL,
    valid_from   INTEGER NOT NULL,
    authorized_by TEXT   NOT NULL,
    deactivated  INTEGER NOT NULL DEFAULT 0 CHECK (deactivated IN (0, 1)),
    PRIMARY KEY (did, version)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS did_versions_no_update BEFORE UPDATE ON did_versions
BEGIN SELECT RAISE(ABORT, 'DID versions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS did_versions_no_delete BEFORE DELETE ON did_versions
BEGIN SELECT RAISE(ABORT, 'DID versions are append-only'); END;
"""

_POSTGRES_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS did_versions (
        did           TEXT     NOT NULL,
        version       INTEGER  NOT NULL CHECK (version >= 1),
        key_id        TEXT,
        public_key    BYTEA,
        document      TEXT     NOT NULL,
        valid_from    BIGINT   NOT NULL,
        authorized_by TEXT     NOT NULL,
        deactivated   SMALLINT NOT NULL DEFAULT 0 CHECK (deactivated IN (0, 1)),
        PRIMARY KEY (did, version)
    )""",
    """CREATE OR REPLACE FUNCTION did_versions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'DID versions are append-only';
    END $$""",
    # CREATE OR REPLACE TRIGGER needs PostgreSQL 14; this works from 11 on.
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'did_versions'::regclass
                       AND tgname = 'did_versions_no_change') THEN
            CREATE TRIGGER did_versions_no_change BEFORE UPDATE OR DELETE ON did_versions
                FOR EACH ROW EXECUTE FUNCTION did_versions_append_only();
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'did_versions'::regclass
                       AND tgname = 'did_versions_no_truncate') THEN
            CREATE TRIGGER did_versions_no_truncate BEFORE TRUNCATE ON did_versions
                FOR EACH STATEMENT EXECUTE FUNCTION did_versions_append_only();
        END IF;
    END $$""",
)

# The advisory lock every registry writer holds for its transaction: b"did_reg" as a number, so it is
# recognizable in pg_locks and unlikely to meet another application's key.
_WRITER_LOCK = int.from_bytes(b"did_reg", "big")
_PLACEHOLDER = re.compile(r"\?")


class VersionTaken(Exception):
    """Another writer committed this ``(did, version)`` first."""


class Rows(Protocol):
    """What an executed statement hands back."""

    def fetchone(self) -> Any: ...


class Executor(Protocol):
    """A statement runner inside a write transaction, taking ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...


class Backend(Protocol):
    """One connection to where the registry's versions live; every method is safe to call from any thread."""

    path: Path | None

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def write(self) -> AbstractContextManager[Executor]: ...
    def change_marker(self) -> object: ...
    def close(self) -> None: ...


def open_backend(target: str | Path) -> Backend:
    """SQLite for a path or ``sqlite:///path``, PostgreSQL for ``postgresql://`` or ``postgres://``."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(text)
    if text.startswith("sqlite:///"):
        return SqliteBackend(Path(text[len("sqlite:///"):]))
    if "://" in text:
        raise RegistryError(
            f"unknown registry database URL {_redact(text)!r}",
            code="registry_unavailable",
            hint="use a file path, sqlite:///path or postgresql://user@host:port/database",
        )
    return SqliteBackend(Path(text))


class SqliteBackend:
    """One SQLite file in WAL mode with synchronous=FULL; writers take the file's write lock up front."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SQLITE_SCHEMA)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    @contextmanager
    def write(self) -> Iterator[Executor]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

        Holding the write lock from the first statement, no other writer can insert between this
        transaction's check and its insert, so a primary-key clash cannot happen here.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def change_marker(self) -> object:
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresBackend:
    """One psycopg 3 connection, autocommit off: every read and write is an explicit, short transaction."""

    path = None

    def __init__(self, url: str) -> None:
        import psycopg  # only a PostgreSQL registry needs the driver loaded

        self._unique_violation = psycopg.errors.UniqueViolation
        self._idle = psycopg.pq.TransactionStatus.IDLE
        self._lock = threading.RLock()
        try:
            self._db = psycopg.connect(url, autocommit=False)
        except psycopg.OperationalError as err:
            raise RegistryError(
                f"cannot connect to the registry database {_redact(url)}: {str(err).strip()}",
                code="registry_unavailable",
                hint="is the server running and the URL right (postgresql://user:password@host:port/database)?",
            ) from None
        with self.write() as db:  # the writer lock also keeps two processes from creating the schema at once
            for statement in _POSTGRES_SCHEMA:
                db.execute(statement)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query; outside a write it is its own transaction, ended at once (no idle snapshot)."""
        with self._lock:
            own_transaction = self._db.info.transaction_status == self._idle
            try:
                return self._db.execute(_PLACEHOLDER.sub("%s", sql), tuple(params) or None).fetchall()
            finally:
                if own_transaction:
                    self._db.rollback()

    @contextmanager
    def write(self) -> Iterator[Executor]:
        """A transaction holding the registry's advisory writer lock; commits on success, rolls back on error.

        READ COMMITTED is enough: each statement after the lock sees every version committed
        before this writer got it.
        """
        with self._lock:
            cursor = self._db.cursor()
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK,))
                yield _PostgresExecutor(cursor, self._unique_violation)
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def change_marker(self) -> object:
        (row,) = self.read("SELECT count(*), max(valid_from) FROM did_versions")
        return row

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PostgresExecutor:
    """A psycopg cursor taking ``?`` placeholders; a clash on ``(did, version)`` becomes VersionTaken."""

    def __init__(self, cursor: Any, unique_violation: type[Exception]) -> None:
        self._cursor, self._unique_violation = cursor, unique_violation

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        try:
            if params:
                self._cursor.execute(_PLACEHOLDER.sub("%s", sql), tuple(params))
            else:  # DDL goes as written: '$$' and '%' in a function body are no placeholders
                self._cursor.execute(sql)
        except self._unique_violation as err:
            raise VersionTaken(str(err).strip()) from err
        return self._cursor


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
