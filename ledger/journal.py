"""The double-entry journal: accounts, balanced entries, idempotent posting, signed checkpoints, proofs.

Amounts are integers in minor units; a posting adds its amount to its account's
balance (negative takes away). Every entry balances in every currency, checked
here and again by the database (ledger/schema.py). Entries are append-only and
numbered 1, 2, 3, ...; each is a leaf of an RFC 6962 Merkle tree (its leaf hash
is over its canonical JSON, RFC 8785) and carries the ledger's Ed25519
signature of that leaf hash. A checkpoint (C2SP tlog-checkpoint, signed as a
C2SP signed-note) commits the ledger to the tree of the first ``size`` entries;
inclusion and consistency proofs are answered against it.

Every row that decides money is in the log: an account is opened by a record
entry (no postings) that carries its terms, and entries carry typed references
(``refs``: the task, robot, customer, member, ...) in their signed content, so
``ledger/verify.py`` recomputes balances, accounts and, through the other
layers' auditors, task outcomes and shares from the log alone.

Each write runs in one database transaction: an entry, its postings and whatever
the caller changed beside it (the marketplace's compare-and-set on a task)
commit together or not at all, and a retried request with the same idempotency
key returns the entry already written instead of posting twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from identity.canonical import canonicalize
from identity.errors import DepaiError
from identity.keys import Signer
from ledger import merkle, schema
from ledger.checkpoint import Checkpoint, sign_note, split_note
from ledger.db import Cursor, Database, IntegrityError, open_database
from ledger.tree import MerkleTree

MAX_AMOUNT = 2**53 - 1  # what every JSON reader holds exactly
ACCOUNT_OPEN = "account.open"  # the record entry that opens an account and states its terms


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

    def refs(self) -> dict[str, Any]:
        """The account's terms as its opening entry states them."""
        return {"account": self.id, "currency": self.currency, "kind": self.kind, "owner": self.owner,
                "may_go_negative": self.may_go_negative}


@dataclass(frozen=True, slots=True)
class Entry:
    """One written journal entry: its postings (account, currency, amount) sorted by account, and its references
    (what the entry is about, signed with it: ``{"task": ..., "robot": ...}``)."""

    seq: int
    key: str
    kind: str
    memo: str
    at_ms: int
    reverses: int | None
    postings: tuple[tuple[str, str, int], ...]
    leaf: bytes
    sig: bytes
    refs: Mapping[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        """What the leaf hash covers (docs/ledger.md, "The leaf")."""
        return _content(self.seq, self.key, self.kind, self.memo, self.at_ms, self.reverses, self.postings, self.refs)


class Ledger:
    """A journal in one SQLite or PostgreSQL database, signed by the ledger's key (None: read only)."""

    def __init__(self, db: Database, signer: Signer | None, *, origin: str = "depai.local/ledger",
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.origin, self.clock = db, origin, clock
        if signer is None and not db.has_table("ledger_meta"):  # a reader changes nothing, not even the schema
            raise LedgerError("this database holds no ledger; open it with the ledger's key to create one")
        if signer is not None:
            db.script(schema.statements(db.dialect))
            db.script(schema.migrations(db.columns))
        self._signer = signer
        self.public_key = self._claimed_key(signer)
        self._columns = _ENTRY_COLUMNS if "refs" in db.columns("entries") else _ENTRY_COLUMNS_BEFORE_REFS
        self._tree = MerkleTree()
        self._tree_lock = threading.Lock()
        if signer is not None:
            self._record_unopened_accounts()

    @classmethod
    def open(cls, url: str, signer: Signer | None, **options: Any) -> Ledger:
        """Open (creating if new) the ledger at a path, ``sqlite:///path`` or ``postgresql://`` URL."""
        db = open_database(url, create=signer is not None)
        try:
            return cls(db, signer, **options)
        except BaseException:
            db.close()
            raise

    def _claimed_key(self, signer: Signer | None) -> bytes:
        """The key the database says the ledger was created with: shown, never trusted (a verifier takes its keys
        from the DID registry or the command line); a writer records its own key in a new ledger."""
        rows = self.db.read("SELECT origin, public_key FROM ledger_meta")
        if not rows:
            if signer is None:
                raise LedgerError("this database holds no ledger yet; open it with the ledger's key to create one")
            self.db.run(lambda c: c.execute("INSERT INTO ledger_meta (origin, public_key) VALUES (?, ?)",
                                            (self.origin, signer.public_key)))
            return signer.public_key
        origin, key = rows[0][0], bytes(rows[0][1])
        if origin != self.origin:
            raise LedgerError(f"this database holds the ledger {origin!r}; it was opened as {self.origin!r}")
        return key

    def _record_unopened_accounts(self) -> None:
        """Give every account a ledger made before opening entries existed its opening entry (once)."""
        rows = self.db.read("SELECT a.id, a.currency, a.kind, a.owner, a.may_go_negative FROM accounts a "
                            "WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.idem_key = 'account:' || a.id)")
        for row in rows:
            account = _account_of(row)
            self.db.run(lambda c, a=account: self._record(c, f"account:{a.id}", ACCOUNT_OPEN, "", a.refs()))

    @property
    def signer(self) -> Signer:
        """The ledger's signing key; LedgerError for a ledger opened read-only."""
        if self._signer is None:
            raise LedgerError("this ledger was opened read-only (no ledger key); it cannot write")
        return self._signer

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # --- accounts ------------------------------------------------------------------------------------

    def open_account(self, account_id: str, currency: str, kind: str, *, owner: str | None = None,
                     may_go_negative: bool = False, cursor: Cursor | None = None) -> Account:
        """Open an account with a record entry stating its terms (again with the same terms: a no-op); a different
        currency or kind is refused."""
        if not account_id or not kind or len(account_id) > 190:
            raise LedgerError("an account needs an id of 1 to 190 characters and a kind")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise LedgerError(f"currency must be a 3-letter ISO 4217 code like 'EUR', got {currency!r}")
        wanted = Account(account_id, currency, kind, owner, may_go_negative)

        def work(c: Cursor) -> Account:
            held = _account(c, account_id)
            if held is None:
                c.execute("INSERT INTO accounts (id, currency, kind, owner, may_go_negative) VALUES (?, ?, ?, ?, ?)",
                          (account_id, currency, kind, owner, int(may_go_negative)))
                self._record(c, f"account:{account_id}", ACCOUNT_OPEN, "", wanted.refs())
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

    def balance(self, account_id: str, *, cursor: Cursor | None = None, default: int | None = None) -> int:
        """The account's balance: the sum of its postings (read inside the caller's transaction when given one).
        An account never opened is a LedgerError, or ``default`` when one is given."""
        sql, params = "SELECT COALESCE(SUM(amount), 0) FROM postings WHERE account = ?", (account_id,)
        if cursor is not None:
            return int(cursor.execute(sql, params).fetchone()[0])
        if default is None:
            self.account(account_id)
        elif not self.db.read("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
            return default
        return int(self.db.read(sql, params)[0][0])

    def postings_count(self, account_id: str, *, cursor: Cursor | None = None) -> int:
        """How many postings the account has had: a number that only grows, for idempotency keys."""
        sql, params = "SELECT COUNT(*) FROM postings WHERE account = ?", (account_id,)
        rows = cursor.execute(sql, params).fetchall() if cursor is not None else self.db.read(sql, params)
        return int(rows[0][0])

    def movements(self, account_id: str, *, after: int = 0, cursor: Cursor | None = None) -> list[tuple[int, int, int]]:
        """The account's postings in entries after seq ``after``, in order: (entry seq, at_ms, amount) each."""
        sql = ("SELECT e.seq, e.at_ms, p.amount FROM postings p JOIN entries e ON e.seq = p.entry "
               "WHERE p.account = ? AND e.seq > ? ORDER BY e.seq")
        rows = cursor.execute(sql, (account_id, after)).fetchall() if cursor is not None \
            else self.db.read(sql, (account_id, after))
        return [(int(seq), int(at_ms), int(amount)) for seq, at_ms, amount in rows]

    def balances(self) -> dict[str, int]:
        """Every account's balance, by id: the sum of its postings (an account without postings at 0)."""
        totals = {str(account): int(total) for account, total in
                  self.db.read("SELECT account, SUM(amount) FROM postings GROUP BY account")}
        return {account: totals.get(account, 0)
                for account in sorted({*totals, *(a for (a,) in self.db.read("SELECT id FROM accounts"))})}

    # --- posting -------------------------------------------------------------------------------------

    def post(self, key: str, postings: Mapping[str, int] | Iterable[tuple[str, int]], *, kind: str, memo: str = "",
             reverses: int | None = None, refs: Mapping[str, Any] | None = None,
             cursor: Cursor | None = None) -> Entry:
        """Write one balanced entry under idempotency ``key``; the same request again returns the same entry.

        ``postings``: account -> amount (or pairs). ``refs``: what the entry is about (task, robot, customer, ...),
        signed with it. With ``cursor`` it joins the caller's transaction.
        """
        lines = _lines(postings)
        _check_head(key, kind, refs)
        return (self._post(cursor, key, lines, kind, memo, reverses, dict(refs or {})) if cursor is not None
                else self.db.run(lambda c: self._post(c, key, lines, kind, memo, reverses, dict(refs or {}))))

    def record(self, key: str, kind: str, refs: Mapping[str, Any], *, memo: str = "",
               cursor: Cursor | None = None) -> Entry:
        """Write an entry that moves no money but records a fact money depends on (a task awarded, shares minted):
        ``refs`` says what, signed into the log like any entry; idempotent per ``key``."""
        _check_head(key, kind, refs)
        if not refs:
            raise LedgerError("a record entry needs refs saying what it records")
        return (self._record(cursor, key, kind, memo, dict(refs)) if cursor is not None
                else self.db.run(lambda c: self._record(c, key, kind, memo, dict(refs))))

    def _record(self, c: Cursor, key: str, kind: str, memo: str, refs: dict[str, Any]) -> Entry:
        return self._post(c, key, {}, kind, memo, None, refs)

    def _post(self, c: Cursor, key: str, lines: dict[str, int], kind: str, memo: str,
              reverses: int | None, refs: dict[str, Any]) -> Entry:
        held = self.entry_by_key(key, cursor=c)
        if held is not None:
            if (held.kind, held.memo, held.reverses, {a: n for a, _, n in held.postings}, dict(held.refs)) != (
                    kind, memo, reverses, lines, refs):
                raise IdempotencyConflict(f"idempotency key {key!r} was used for entry {held.seq}, a different one")
            return held
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
                balance = self.balance(account_id, cursor=c)
                if balance + amount < 0:
                    raise InsufficientFunds(f"account {account_id} holds {balance}, cannot pay {-amount}")
        if reverses is not None and c.execute("SELECT 1 FROM entries WHERE seq = ?", (reverses,)).fetchone() is None:
            raise LedgerError(f"entry {reverses} to reverse does not exist")
        if self.db.dialect == "postgresql":
            c.execute("LOCK TABLE entries IN SHARE ROW EXCLUSIVE MODE")  # one writer numbers entries at a time
        seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM entries").fetchone()[0])
        at_ms = int(self.clock() * 1000)
        rows = tuple(sorted((a, accounts[a].currency, n) for a, n in lines.items()))
        leaf = merkle.leaf_hash(canonicalize(_content(seq, key, kind, memo, at_ms, reverses, rows, refs)))
        sig = self.signer.sign(leaf)
        for account_id, currency, amount in rows:
            c.execute("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, ?, ?)",
                      (seq, account_id, currency, amount))
        c.execute("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, reverses, leaf, sig, refs) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (seq, key, kind, memo, at_ms, reverses, leaf, sig, _refs_text(refs)))
        return Entry(seq, key, kind, memo, at_ms, reverses, rows, leaf, sig, refs)

    def reverse(self, seq: int, key: str, memo: str = "") -> Entry:
        """A correction: a new entry with every posting of entry ``seq`` negated."""
        original = self.entry(seq)
        if not original.postings:
            raise LedgerError(f"entry {seq} moves no money; there is nothing to reverse")
        return self.post(key, {a: -n for a, _, n in original.postings}, kind="reversal",
                         memo=memo or f"reverses entry {seq}", reverses=seq, refs=original.refs)

    # --- reading -------------------------------------------------------------------------------------

    def entry(self, seq: int) -> Entry:
        """Entry ``seq``; LedgerError when there is none. A plain read: it never takes the write lock."""
        found = self.entries(seq, seq + 1)
        if not found:
            raise LedgerError(f"no entry {seq}")
        return found[0]

    def entry_by_key(self, key: str, *, cursor: Cursor | None = None) -> Entry | None:
        """The entry written under idempotency ``key``, or None (inside the caller's transaction when given one)."""
        sql = f"SELECT {self._columns} FROM entries WHERE idem_key = ?"
        rows = cursor.execute(sql, (key,)).fetchall() if cursor is not None else self.db.read(sql, (key,))
        if not rows:
            return None
        seq = int(rows[0][0])
        sql = "SELECT account, currency, amount FROM postings WHERE entry = ? ORDER BY account"
        postings = cursor.execute(sql, (seq,)).fetchall() if cursor is not None else self.db.read(sql, (seq,))
        return _entry_of(rows[0], postings)

    def entries(self, start: int = 1, stop: int | None = None) -> list[Entry]:
        """Entries start..stop-1 (to the end by default), in order, as the database holds them."""
        stop = self.size() + 1 if stop is None else stop
        rows = self.db.read(f"SELECT {self._columns} FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq",
                            (start, stop))
        postings: dict[int, list[tuple[str, str, Any]]] = {}
        for entry, account, currency, amount in self.db.read(
                "SELECT entry, account, currency, amount FROM postings WHERE entry >= ? AND entry < ? "
                "ORDER BY entry, account", (start, stop)):
            postings.setdefault(int(entry), []).append((account, currency, amount))
        return [_entry_of(row, postings.get(int(row[0]), [])) for row in rows]

    def size(self) -> int:
        """How many entries the journal holds."""
        return int(self.db.read("SELECT COALESCE(MAX(seq), 0) FROM entries")[0][0])

    def tree(self) -> MerkleTree:
        """The Merkle tree of every entry's stored leaf hash, kept in memory and grown from the database as the
        journal grows, so roots and proofs of any size cost O(log n) hashes (ledger/tree.py)."""
        with self._tree_lock:
            self._tree.extend(bytes(leaf) for (leaf,) in self.db.read(
                "SELECT leaf FROM entries WHERE seq > ? ORDER BY seq", (len(self._tree),)))
            return self._tree

    def leaves(self) -> list[bytes]:
        """Every entry's leaf hash, in order."""
        tree = self.tree()
        return [tree.leaf(index) for index in range(len(tree))]

    # --- checkpoints and proofs -----------------------------------------------------------------------

    def checkpoint(self) -> str:
        """Sign (and keep) a checkpoint of the journal as it stands; returns the signed note."""
        tree = self.tree()
        size = len(tree)
        held = self.db.read("SELECT note FROM checkpoints WHERE size = ?", (size,))
        if held:
            return str(held[0][0])
        root = tree.root(size)
        note = sign_note(Checkpoint(self.origin, size, root).body(), self.origin, self.signer.sign,
                         self.signer.public_key)

        def work(c: Cursor) -> None:
            if c.execute("SELECT 1 FROM checkpoints WHERE size = ?", (size,)).fetchone() is None:
                c.execute("INSERT INTO checkpoints (size, root, note, at_ms) VALUES (?, ?, ?, ?)",
                          (size, root, note, int(self.clock() * 1000)))

        self.db.run(work)
        return str(self.db.read("SELECT note FROM checkpoints WHERE size = ?", (size,))[0][0])

    def latest_checkpoint(self) -> tuple[Checkpoint, str] | None:
        """The newest checkpoint the database holds (parsed, its signature not checked here: a verifier checks it
        against keys from outside) and its note, or None before the first."""
        rows = self.db.read("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
        if not rows:
            return None
        note = str(rows[0][0])
        return Checkpoint.parse(split_note(note)[0]), note

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """The RFC 6962 audit path of entry ``seq`` in the tree of the first ``size`` entries (default: all)."""
        tree = self.tree()
        size = len(tree) if size is None else size
        if not 1 <= seq <= size <= len(tree):
            raise LedgerError(f"no entry {seq} in a tree of {size} entries (the journal holds {len(tree)})")
        return tree.inclusion_proof(seq - 1, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 6962 proof that the tree of ``new_size`` entries extends that of ``old_size``."""
        tree = self.tree()
        new_size = len(tree) if new_size is None else new_size
        if not 0 < old_size <= new_size <= len(tree):
            raise LedgerError(f"need 0 < old_size <= new_size <= {len(tree)}, got {old_size}, {new_size}")
        return tree.consistency_proof(old_size, new_size)

    def root(self, size: int | None = None) -> bytes:
        """The RFC 6962 root of the first ``size`` entries (default: all) as the database holds their leaves."""
        tree = self.tree()
        size = len(tree) if size is None else size
        if not 0 <= size <= len(tree):
            raise LedgerError(f"no tree of {size} entries: the journal holds {len(tree)}")
        return tree.root(size)

    # --- verification --------------------------------------------------------------------------------

    def verify(self, keys: Sequence[bytes] | None = None, *, auditors: Sequence[Any] = (),
               progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Recompute everything from the signed log and name each problem (an empty list: intact).

        ``keys``: the public keys the ledger may have signed with, from outside its database (the DID registry,
        the command line); a ledger opened with its key checks against that key by default. ``auditors``: the other layers' checks of their own tables against the log
        (``ledger.verify.Auditor``). See ledger/verify.py for what is checked.
        """
        from ledger.verify import verify_ledger  # verification reads the journal; the journal does not need it

        trusted = keys if keys is not None else [self._signer.public_key] if self._signer is not None else []
        return verify_ledger(self, trusted, auditors=auditors, progress=progress)


_ENTRY_COLUMNS = "seq, idem_key, kind, memo, at_ms, reverses, leaf, sig, refs"
_ENTRY_COLUMNS_BEFORE_REFS = "seq, idem_key, kind, memo, at_ms, reverses, leaf, sig, NULL"  # read-only, not migrated


def _check_head(key: str, kind: str, refs: Mapping[str, Any] | None) -> None:
    """Refuse an entry's key, kind or refs before anything is read or written."""
    if not key or len(key) > 200:
        raise LedgerError("an entry needs an idempotency key of 1 to 200 characters")
    if not kind:
        raise LedgerError("an entry needs a kind (e.g. 'escrow.lock')")
    if refs:
        try:
            canonicalize(dict(refs))
        except (DepaiError, TypeError, ValueError) as err:
            raise LedgerError(f"refs must be JSON of strings, safe integers, booleans and nulls: {err}") from None


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
             postings: Sequence[tuple[str, str, Any]], refs: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical content of an entry: what its leaf hash covers ("refs" only when the entry has any, so
    entries written before refs existed hash as they did)."""
    content = {"seq": seq, "key": key, "kind": kind, "memo": memo, "at": at_ms, "reverses": reverses,
               "postings": [list(p) for p in postings]}
    if refs:
        content["refs"] = dict(refs)
    return content


def _refs_text(refs: Mapping[str, Any]) -> str | None:
    return canonicalize(dict(refs)).decode() if refs else None


def _account(c: Cursor, account_id: str) -> Account | None:
    row = c.execute("SELECT id, currency, kind, owner, may_go_negative FROM accounts WHERE id = ?",
                    (account_id,)).fetchone()
    return None if row is None else _account_of(row)


def _account_of(row: Sequence[Any]) -> Account:
    return Account(row[0], row[1], row[2], row[3], bool(row[4]))


def _entry_of(row: Sequence[Any], postings: Sequence[tuple[str, str, Any]]) -> Entry:
    """An entry as its row and postings hold it: amounts as stored (a verifier names any that is not an integer)."""
    seq, key, kind, memo, at_ms, reverses, leaf, sig, refs = row
    return Entry(int(seq), key, kind, memo, int(at_ms), None if reverses is None else int(reverses),
                 tuple((a, cur, n) for a, cur, n in postings), bytes(leaf), bytes(sig), _refs_of(refs))


def _refs_of(text: str | None) -> dict[str, Any]:
    """The refs a row holds; a row whose refs are not JSON reads as ``{"unreadable": text}`` for the verifier."""
    if not text:
        return {}
    try:
        refs = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"unreadable": text}
    return refs if isinstance(refs, dict) else {"unreadable": text}


__all__ = ["ACCOUNT_OPEN", "Account", "Entry", "IdempotencyConflict", "InsufficientFunds", "IntegrityError", "Ledger",
           "LedgerError"]
