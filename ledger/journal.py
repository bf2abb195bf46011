"""The double-entry journal: accounts, balanced entries, idempotent posting, signed checkpoints, verification.

Amounts are integers in minor units; a posting adds its amount to its account's
balance (negative takes away). Every entry balances in every currency, checked
here and again by the database (ledger/schema.py). Entries are append-only and
numbered 1, 2, 3, ...; each is a leaf of an RFC 6962 Merkle tree (its leaf hash
is over its canonical JSON, RFC 8785) and carries the operator's Ed25519
signature of that leaf hash, so ``verify()`` can name any row changed behind the
database's back. A checkpoint (C2SP tlog-checkpoint, signed as a C2SP
signed-note) commits the operator to the tree of the first ``size`` entries;
inclusion and consistency proofs are answered against it.

Each write runs in one database transaction: an entry, its postings and whatever
the caller changed beside it (the marketplace's compare-and-set on a task)
commit together or not at all, and a retried request with the same idempotency
key returns the entry already written instead of posting twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from identity.canonical import canonicalize
from identity.errors import DepaiError
from identity.keys import Signer, verify
from ledger import merkle, schema
from ledger.checkpoint import Checkpoint, NoteError, open_note, sign_note
from ledger.db import Cursor, Database, IntegrityError, open_database

MAX_AMOUNT = 2**53 - 1  # what every JSON reader holds exactly


class LedgerError(DepaiError, ValueError):
    """A request the ledger refuses (unbalanced, unknown account, zero amount, ...); nothing was written."""

    code = "ledger_refused"


class IdempotencyConflict(LedgerError):
    """The idempotency key was used before for a different entry."""

    code = "idempotency_conflict"


class InsufficientFunds(LedgerError):
    """The entry would take an account that may not go negative below zero."""

    code = "insufficient_funds"


@dataclass(frozen=True, slots=True)
class Account:
    """An account: its id, currency, kind (customer, escrow, owner, fees, treasury, ...) and owner DID."""

    id: str
    currency: str
    kind: str
    owner: str | None
    may_go_negative: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One written journal entry and its postings (account, currency, amount), sorted by account."""

    seq: int
    key: str
    kind: str
    memo: str
    at_ms: int
    reverses: int | None
    postings: tuple[tuple[str, str, int], ...]
    leaf: bytes
    sig: bytes

    def content(self) -> dict[str, Any]:
        """What the leaf hash covers."""
        return _content(self.seq, self.key, self.kind, self.memo, self.at_ms, self.reverses, self.postings)


class Ledger:
    """A journal in one SQLite or PostgreSQL database, signed by its operator's key (None: read only)."""

    def __init__(self, db: Database, signer: Signer | None, *, origin: str = "depai.local/ledger",
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.origin, self.clock = db, origin, clock
        if signer is None and not db.has_table("ledger_meta"):  # a reader changes nothing, not even the schema
            raise LedgerError("this database holds no ledger; open it with the operator's key to create one")
        db.script(schema.statements(db.dialect))
        self.public_key = self._operator(signer)
        self._signer = signer
        self._leaves: list[bytes] = []
        self._leaves_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, signer: Signer | None, **options: Any) -> Ledger:
        """Open (creating if new) the ledger at a path, ``sqlite:///path`` or ``postgresql://`` URL."""
        db = open_database(url, create=signer is not None)
        try:
            return cls(db, signer, **options)
        except BaseException:
            db.close()
            raise

    def _operator(self, signer: Signer | None) -> bytes:
        """The operator's public key: recorded when the ledger is created, the same key ever after."""
        rows = self.db.read("SELECT origin, public_key FROM ledger_meta")
        if not rows:
            if signer is None:
                raise LedgerError("this database holds no ledger yet; open it with the operator's key to create one")
            self.db.run(lambda c: c.execute("INSERT INTO ledger_meta (origin, public_key) VALUES (?, ?)",
                                            (self.origin, signer.public_key)))
            return signer.public_key
        origin, key = rows[0][0], bytes(rows[0][1])
        if origin != self.origin or (signer is not None and signer.public_key != key):
            raise LedgerError(f"this ledger ({origin}) is signed by key {key.hex()[:16]}...; it was opened with "
                              f"origin {self.origin!r} and another key")
        return key

    @property
    def signer(self) -> Signer:
        """The operator's signing key; LedgerError for a ledger opened read-only."""
        if self._signer is None:
            raise LedgerError("this ledger was opened read-only (no operator key); it cannot write")
        return self._signer

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # --- accounts ------------------------------------------------------------------------------------

    def open_account(self, account_id: str, currency: str, kind: str, *, owner: str | None = None,
                     may_go_negative: bool = False, cursor: Cursor | None = None) -> Account:
        """Open an account (again with the same terms: a no-op); a different currency or kind is refused."""
        if not account_id or not kind:
            raise LedgerError("an account needs an id and a kind")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise LedgerError(f"currency must be a 3-letter ISO 4217 code like 'EUR', got {currency!r}")
        wanted = Account(account_id, currency, kind, owner, may_go_negative)

        def work(c: Cursor) -> Account:
            held = _account(c, account_id)
            if held is None:
                c.execute("INSERT INTO accounts (id, currency, kind, owner, may_go_negative) VALUES (?, ?, ?, ?, ?)",
                          (account_id, currency, kind, owner, int(may_go_negative)))
                return wanted
            if held != wanted:
                raise LedgerError(f"account {account_id} is already open as {held}; accounts never change")
            return held

        return work(cursor) if cursor is not None else self.db.run(work)

    def account(self, account_id: str) -> Account:
        """The account, or LedgerError naming it when there is none."""
        rows = self.db.read("SELECT id, currency, kind, owner, may_go_negative FROM accounts WHERE id = ?",
                            (account_id,))
        if not rows:
            raise LedgerError(f"unknown account {account_id!r}")
        return _account_of(rows[0])

    def accounts(self, kind: str | None = None) -> list[Account]:
        """Every account (of one kind), by id."""
        sql = "SELECT id, currency, kind, owner, may_go_negative FROM accounts"
        rows = self.db.read(sql + (" WHERE kind = ? ORDER BY id" if kind else " ORDER BY id"), (kind,) if kind else ())
        return [_account_of(row) for row in rows]

    def balance(self, account_id: str) -> int:
        """The account's balance: the sum of its postings."""
        self.account(account_id)
        return int(self.db.read("SELECT COALESCE(SUM(amount), 0) FROM postings WHERE account = ?",
                                (account_id,))[0][0])

    def balances(self) -> dict[str, int]:
        """Every account's balance, by id (accounts without postings at 0)."""
        rows = self.db.read("SELECT a.id, COALESCE(SUM(p.amount), 0) FROM accounts a "
                            "LEFT JOIN postings p ON p.account = a.id GROUP BY a.id ORDER BY a.id")
        return {account: int(total) for account, total in rows}

    # --- posting -------------------------------------------------------------------------------------

    def post(self, key: str, postings: Mapping[str, int] | Iterable[tuple[str, int]], *, kind: str, memo: str = "",
             reverses: int | None = None, cursor: Cursor | None = None) -> Entry:
        """Write one balanced entry under idempotency ``key``; the same request again returns the same entry.

        ``postings``: account -> amount (or pairs). With ``cursor`` it joins the caller's transaction.
        """
        lines = _lines(postings)
        if not key or len(key) > 200:
            raise LedgerError("an entry needs an idempotency key of 1 to 200 characters")
        if not kind:
            raise LedgerError("an entry needs a kind (e.g. 'escrow.lock')")
        return (self._post(cursor, key, lines, kind, memo, reverses) if cursor is not None
                else self.db.run(lambda c: self._post(c, key, lines, kind, memo, reverses)))

    def _post(self, c: Cursor, key: str, lines: dict[str, int], kind: str, memo: str,
              reverses: int | None) -> Entry:
        held = c.execute("SELECT seq FROM entries WHERE idem_key = ?", (key,)).fetchone()
        if held is not None:
            entry = _entry(c, int(held[0]))
            if (entry.kind, entry.memo, entry.reverses, {a: n for a, _, n in entry.postings}) != (
                    kind, memo, reverses, lines):
                raise IdempotencyConflict(f"idempotency key {key!r} was used for entry {entry.seq}, a different one")
            return entry
        accounts = {}
        for account_id in lines:
            account = _account(c, account_id)
            if account is None:
                raise LedgerError(f"unknown account {account_id!r}; open it first")
            accounts[account_id] = account
        totals: dict[str, int] = {}
        for account_id, amount in lines.items():
            currency = accounts[account_id].currency
            totals[currency] = totals.get(currency, 0) + amount
        if any(totals.values()):
            raise LedgerError(f"the entry does not balance: {dict(sorted(totals.items()))} (every currency "
                              "must sum to 0)")
        for account_id, amount in lines.items():
            if amount < 0 and not accounts[account_id].may_go_negative:
                balance = int(c.execute("SELECT COALESCE(SUM(amount), 0) FROM postings WHERE account = ?",
                                        (account_id,)).fetchone()[0])
                if balance + amount < 0:
                    raise InsufficientFunds(f"account {account_id} holds {balance}, cannot pay {-amount}")
        if reverses is not None and c.execute("SELECT 1 FROM entries WHERE seq = ?", (reverses,)).fetchone() is None:
            raise LedgerError(f"entry {reverses} to reverse does not exist")
        if self.db.dialect == "postgresql":
            c.execute("LOCK TABLE entries IN SHARE ROW EXCLUSIVE MODE")  # one writer numbers entries at a time
        seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM entries").fetchone()[0])
        at_ms = int(self.clock() * 1000)
        rows = tuple(sorted((a, accounts[a].currency, n) for a, n in lines.items()))
        leaf = merkle.leaf_hash(canonicalize(_content(seq, key, kind, memo, at_ms, reverses, rows)))
        sig = self.signer.sign(leaf)
        for account_id, currency, amount in rows:
            c.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, ?, ?)",
                      (seq, account_id, currency, amount))
        c.execute("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, reverses, leaf, sig) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, key, kind, memo, at_ms, reverses, leaf, sig))
        return Entry(seq, key, kind, memo, at_ms, reverses, rows, leaf, sig)

    def reverse(self, seq: int, key: str, memo: str = "") -> Entry:
        """A correction: a new entry with every posting of entry ``seq`` negated."""
        original = self.entry(seq)
        return self.post(key, {a: -n for a, _, n in original.postings}, kind="reversal",
                         memo=memo or f"reverses entry {seq}", reverses=seq)

    # --- reading -------------------------------------------------------------------------------------

    def entry(self, seq: int) -> Entry:
        """Entry ``seq``; LedgerError when there is none."""
        return self.db.run(lambda c: _entry(c, seq))

    def entries(self, start: int = 1, stop: int | None = None) -> list[Entry]:
        """Entries start..stop-1 (to the end by default), in order."""
        stop = self.size() + 1 if stop is None else stop
        rows = self.db.read("SELECT seq, idem_key, kind, memo, at_ms, reverses, leaf, sig FROM entries "
                            "WHERE seq >= ? AND seq < ? ORDER BY seq", (start, stop))
        postings: dict[int, list[tuple[str, str, int]]] = {}
        for entry, account, currency, amount in self.db.read(
                "SELECT entry, account, currency, amount FROM postings WHERE entry >= ? AND entry < ? "
                "ORDER BY entry, account", (start, stop)):
            postings.setdefault(int(entry), []).append((account, currency, int(amount)))
        return [_entry_of(row, postings.get(int(row[0]), [])) for row in rows]

    def size(self) -> int:
        """How many entries the journal holds."""
        return int(self.db.read("SELECT COALESCE(MAX(seq), 0) FROM entries")[0][0])

    def leaves(self) -> list[bytes]:
        """Every entry's leaf hash, in order (kept in memory, read from the database as it grows)."""
        with self._leaves_lock:
            have = len(self._leaves)
            self._leaves += [bytes(leaf) for (leaf,) in self.db.read(
                "SELECT leaf FROM entries WHERE seq > ? ORDER BY seq", (have,))]
            return list(self._leaves)

    # --- checkpoints and proofs -----------------------------------------------------------------------

    def checkpoint(self) -> str:
        """Sign (and keep) a checkpoint of the journal as it stands; returns the signed note."""
        leaves = self.leaves()
        size = len(leaves)
        held = self.db.read("SELECT note FROM checkpoints WHERE size = ?", (size,))
        if held:
            return str(held[0][0])
        body = Checkpoint(self.origin, size, merkle.root(leaves)).body()
        note = sign_note(body, self.origin, self.signer.sign, self.signer.public_key)

        def work(c: Cursor) -> None:
            if c.execute("SELECT 1 FROM checkpoints WHERE size = ?", (size,)).fetchone() is None:
                c.execute("INSERT INTO checkpoints (size, root, note, at_ms) VALUES (?, ?, ?, ?)",
                          (size, merkle.root(leaves), note, int(self.clock() * 1000)))

        self.db.run(work)
        return str(self.db.read("SELECT note FROM checkpoints WHERE size = ?", (size,))[0][0])

    def latest_checkpoint(self) -> tuple[Checkpoint, str] | None:
        """The newest signed checkpoint (parsed) and its note, or None before the first."""
        rows = self.db.read("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
        if not rows:
            return None
        note = str(rows[0][0])
        return Checkpoint.parse(open_note(note, self.origin, self.public_key)), note

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """The RFC 6962 audit path of entry ``seq`` in the tree of the first ``size`` entries (default: all)."""
        leaves = self.leaves()
        size = len(leaves) if size is None else size
        if not 1 <= seq <= size <= len(leaves):
            raise LedgerError(f"no entry {seq} in a tree of {size} entries (the journal holds {len(leaves)})")
        return merkle.inclusion_proof(seq - 1, leaves[:size])

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 6962 proof that the tree of ``new_size`` entries extends that of ``old_size``."""
        leaves = self.leaves()
        new_size = len(leaves) if new_size is None else new_size
        if not 0 < old_size <= new_size <= len(leaves):
            raise LedgerError(f"need 0 < old_size <= new_size <= {len(leaves)}, got {old_size}, {new_size}")
        return merkle.consistency_proof(old_size, leaves[:new_size])

    # --- verification --------------------------------------------------------------------------------

    def verify(self, public_key: bytes | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Recompute everything; each problem names the row. An empty list: the journal is intact.

        ``public_key``: the operator's published key to check against (default: the one the ledger recorded).
        Checks each entry's leaf hash against its content, its signature, its balance and the numbering;
        every currency's postings summing to zero; every checkpoint's signature, and its root against the
        tree of the leaves recomputed from the entries' content.
        """
        key = self.public_key if public_key is None else public_key
        problems: list[str] = []
        leaves: list[bytes] = []
        total = self.size()
        batch = 10_000
        for start in range(1, total + 1, batch):
            for entry in self.entries(start, min(start + batch, total + 1)):
                leaves.append(merkle.leaf_hash(canonicalize(entry.content())))  # from the content, as it is now
                problems += _entry_problems(entry, leaves[-1], len(leaves), key)
            if progress is not None:
                progress(len(leaves), total)
        if len(leaves) != total:
            problems.append(f"the journal's numbering has gaps: {len(leaves)} entries up to number {total}")
        sums: dict[str, int] = {}
        for currency, amount in self.db.read("SELECT currency, SUM(amount) FROM postings GROUP BY currency"):
            sums[currency] = int(amount)
        problems += [f"currency {cur}: postings sum to {n}, not 0" for cur, n in sorted(sums.items()) if n]
        for size, root, note in self.db.read("SELECT size, root, note FROM checkpoints ORDER BY size"):
            problems += _checkpoint_problems(int(size), bytes(root), str(note), leaves, self.origin, key)
        return problems


def _lines(postings: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[str, int]:
    """Postings as account -> amount, refusing what no entry may hold."""
    pairs = list(postings.items()) if isinstance(postings, Mapping) else list(postings)
    lines: dict[str, int] = {}
    for account, amount in pairs:
        if type(amount) is not int:
            raise LedgerError(f"amounts are integers in minor units, got {amount!r} for {account}")
        if amount == 0:
            raise LedgerError(f"a posting of 0 to {account} means nothing; leave it out")
        if abs(amount) > MAX_AMOUNT:
            raise LedgerError(f"amount {amount} for {account} is beyond {MAX_AMOUNT}")
        if account in lines:
            raise LedgerError(f"account {account} appears twice in one entry; add the amounts")
        lines[account] = amount
    if len(lines) < 2:
        raise LedgerError("an entry needs at least two postings")
    return lines


def _content(seq: int, key: str, kind: str, memo: str, at_ms: int, reverses: int | None,
             postings: Sequence[tuple[str, str, int]]) -> dict[str, Any]:
    """The canonical content of an entry: what its leaf hash covers."""
    return {"seq": seq, "key": key, "kind": kind, "memo": memo, "at": at_ms, "reverses": reverses,
            "postings": [list(p) for p in postings]}


def _account(c: Cursor, account_id: str) -> Account | None:
    row = c.execute("SELECT id, currency, kind, owner, may_go_negative FROM accounts WHERE id = ?",
                    (account_id,)).fetchone()
    return None if row is None else _account_of(row)


def _account_of(row: Sequence[Any]) -> Account:
    return Account(row[0], row[1], row[2], row[3], bool(row[4]))


def _entry(c: Cursor, seq: int) -> Entry:
    row = c.execute("SELECT seq, idem_key, kind, memo, at_ms, reverses, leaf, sig FROM entries WHERE seq = ?",
                    (seq,)).fetchone()
    if row is None:
        raise LedgerError(f"no entry {seq}")
    postings = c.execute("SELECT account, currency, amount FROM postings WHERE entry = ? ORDER BY account",
                         (seq,)).fetchall()
    return _entry_of(row, [(a, cur, int(n)) for a, cur, n in postings])


def _entry_of(row: Sequence[Any], postings: Sequence[tuple[str, str, int]]) -> Entry:
    seq, key, kind, memo, at_ms, reverses, leaf, sig = row
    return Entry(int(seq), key, kind, memo, int(at_ms), None if reverses is None else int(reverses),
                 tuple(postings), bytes(leaf), bytes(sig))


def _entry_problems(entry: Entry, leaf: bytes, position: int, public_key: bytes) -> list[str]:
    """What is wrong with one entry read back from the database (``leaf``: recomputed from its content)."""
    problems = []
    if entry.seq != position:
        problems.append(f"entry {entry.seq}: found where entry {position} belongs (a row is missing)")
    if leaf != entry.leaf:
        problems.append(f"entry {entry.seq}: its content does not match its leaf hash (the row was altered)")
    if not verify(public_key, entry.leaf, entry.sig):
        problems.append(f"entry {entry.seq}: the operator's signature does not verify (the row was altered)")
    totals: dict[str, int] = {}
    for _, currency, amount in entry.postings:
        totals[currency] = totals.get(currency, 0) + amount
    if len(entry.postings) < 2 or any(totals.values()):
        problems.append(f"entry {entry.seq}: its postings do not balance: {totals}")
    return problems


def _checkpoint_problems(size: int, root: bytes, note: str, leaves: list[bytes], origin: str,
                         public_key: bytes) -> list[str]:
    """What is wrong with one stored checkpoint against the leaves read back."""
    try:
        checkpoint = Checkpoint.parse(open_note(note, origin, public_key))
    except NoteError as err:
        return [f"checkpoint {size}: its signed note does not verify: {err}"]
    if checkpoint.size != size or checkpoint.root != root:
        return [f"checkpoint {size}: the stored size or root differs from the signed note"]
    if size > len(leaves):
        return [f"checkpoint {size}: signed for {size} entries, but the journal holds {len(leaves)}"]
    if merkle.root(leaves[:size]) != root:
        return [f"checkpoint {size}: the first {size} entries no longer hash to the signed root"]
    return []


__all__ = ["Account", "Entry", "IdempotencyConflict", "InsufficientFunds", "IntegrityError", "Ledger", "LedgerError"]
