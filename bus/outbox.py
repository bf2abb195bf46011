"""A durable, bounded, ordered outbox: messages that must not be lost wait here until the broker has them.

A message is written to the outbox *before* it is handed to MQTT, and deleted
only when the broker acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2).
After a crash or a restart, whatever is still in the outbox is published again,
in the original order. Duplicates on the wire are therefore possible
(at-least-once delivery); receivers drop them by the envelope's (issuer, seq).

Storage is one SQLite file (stdlib ``sqlite3``) in WAL mode:

* ``durable=False`` (the default) runs ``synchronous=NORMAL``: every committed
  ``put`` is in the WAL file before ``put`` returns, so it survives the process
  being killed (SIGKILL, a crash, an OOM kill) at any moment. A power loss or a
  kernel panic may lose the last transactions that the operating system had not
  yet written to the disk (never corrupting the file). This is the right trade
  for a robot that sends thousands of messages a second.
* ``durable=True`` runs ``synchronous=FULL``: every commit is fsynced, so an
  acknowledged ``put`` also survives a power loss, at the price of one fsync per
  transaction (use ``put_many`` to amortize it).

One process owns an outbox file at a time: the connection holds SQLite's
exclusive lock for its whole life, so a second ``Outbox`` on the same file (a
second copy of the same robot, which would publish everything twice) fails with
``OutboxLocked`` instead of silently sharing it. The lock dies with the process,
so a killed process never leaves a stale lock behind.

The outbox is bounded by a message count and a byte size (payload plus topic).
``put`` never drops anything: when a bound would be exceeded it raises
``OutboxFull`` and stores nothing, and the caller decides (slow down, shed
optional data, alert).

Every method is thread-safe (one lock around one connection): publishers ``put``
from their own threads while the client's sender thread reads and acks.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from identity.errors import DepaiError

DEFAULT_MAX_MESSAGES = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL,
    size    INTEGER NOT NULL
)
"""


class OutboxError(DepaiError):
    """Base of the outbox's errors."""

    code = "outbox_error"


class OutboxFull(OutboxError):
    """Storing the message(s) would exceed the outbox's bounds; nothing was stored."""

    code = "outbox_full"


class OutboxLocked(OutboxError):
    """Another process (or another ``Outbox`` in this one) owns the outbox file."""

    code = "outbox_locked"


class OutboxEntry(NamedTuple):
    """One stored message: ``id`` orders the outbox and is what ``ack`` takes."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _size(topic: str, payload: bytes) -> int:
    return len(topic.encode()) + len(payload)


class Outbox:
    """A SQLite-backed FIFO of messages waiting for a broker acknowledgement."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        durable: bool = False,
        lock_timeout: float = 2.0,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an outbox holds at least one message and one byte")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.durable = durable
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so each single statement is its own
        # transaction and put_many/ack_many open theirs explicitly.
        conn = sqlite3.connect(self.path, timeout=lock_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            conn.execute("BEGIN IMMEDIATE")  # takes (and, in EXCLUSIVE mode, keeps) the write lock
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise OutboxError(
                    f"{self.path} has outbox schema {version}; this code reads {SCHEMA_VERSION}",
                    hint="drain it with the version that wrote it, or move it aside",
                )
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
            count, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        except sqlite3.OperationalError as err:
            conn.close()
            if "locked" in str(err) or "busy" in str(err):
                raise OutboxLocked(
                    f"outbox {self.path} is in use by another process",
                    hint="run one client per outbox file (one stable client id per process)",
                ) from None
            raise
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        self._count: int = count
        self._bytes: int = total

    # -- writing -----------------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Store one message durably (see the module docstring); its id, larger than every earlier id."""
        return self.put_many([(topic, payload, qos, retain)])[0]

    def put_many(self, messages: Iterable[tuple[str, bytes, int, bool]]) -> list[int]:
        """Store ``(topic, payload, qos, retain)`` messages in one transaction: all of them, or none."""
        rows = []
        added = 0
        for topic, payload, qos, retain in messages:
            if not isinstance(topic, str) or not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError("an outbox message is a str topic and a bytes payload")
            if qos not in (0, 1, 2):
                raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
            payload = bytes(payload)
            size = _size(topic, payload)
            rows.append((topic, payload, qos, int(bool(retain)), size))
            added += size
        if not rows:
            return []
        with self._lock:
            conn = self._open()
            if self._count + len(rows) > self.max_messages or self._bytes + added > self.max_bytes:
                raise OutboxFull(
                    f"outbox {self.path} holds {self._count} messages / {self._bytes} bytes; "
                    f"adding {len(rows)} / {added} would exceed {self.max_messages} / {self.max_bytes}",
                    hint="the broker has been unreachable for long: slow down, drop optional data "
                    "(or publish it at QoS 0), or raise max_messages/max_bytes",
                )
            insert = "INSERT INTO outbox (topic, payload, qos, retain, size) VALUES (?, ?, ?, ?, ?) RETURNING id"
            if len(rows) == 1:
                ids = [conn.execute(insert, rows[0]).fetchone()[0]]
            else:
                conn.execute("BEGIN")
                try:
                    ids = [conn.execute(insert, row).fetchone()[0] for row in rows]
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._count += len(rows)
            self._bytes += added
            return ids

    def ack(self, entry_id: int) -> bool:
        """Delete an acknowledged message; False if it was not there (already acked: harmless)."""
        return self.ack_many([entry_id]) == 1

    def ack_many(self, entry_ids: Iterable[int]) -> int:
        """Delete acknowledged messages in one transaction; how many were there."""
        ids = [(int(i),) for i in entry_ids]
        if not ids:
            return 0
        delete = "DELETE FROM outbox WHERE id = ? RETURNING size"
        with self._lock:
            conn = self._open()
            removed = freed = 0
            if len(ids) == 1:
                row = conn.execute(delete, ids[0]).fetchone()
                if row is not None:
                    removed, freed = 1, row[0]
            else:
                conn.execute("BEGIN")
                try:
                    for key in ids:
                        row = conn.execute(delete, key).fetchone()
                        if row is not None:
                            removed += 1
                            freed += row[0]
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._count -= removed
            self._bytes -= freed
            return removed

    # -- reading -----------------------------------------------------------------------------------

    def pending(self, limit: int = 1000, *, after: int = 0) -> list[OutboxEntry]:
        """Up to ``limit`` stored messages with an id above ``after``, oldest first."""
        with self._lock:
            rows = self._open().execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [OutboxEntry(i, t, p, q, bool(r)) for i, t, p, q, r in rows]

    def last_id(self) -> int:
        """The largest id ever handed out (0 for a new outbox); ids never repeat, even after acks."""
        with self._lock:
            row = self._open().execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return row[0] if row else 0

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        """Bytes stored (payloads plus topics), the quantity ``max_bytes`` bounds."""
        return self._bytes

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (idempotent); what is stored stays for the next ``Outbox`` on this path."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._conn

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, {self._count} messages, {self._bytes} bytes)"
