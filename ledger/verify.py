"""Recompute a ledger from its signed log and name every row that does not add up (``depai ledger verify``).

Nothing the database says about itself is trusted: the keys come from outside
it, and every table is compared with what the log alone implies.

- Each entry: numbered 1..n without gaps; its leaf hash recomputed from its
  content; its signature under one of the given keys; integer amounts that
  balance (or no postings: a record entry).
- The books, from the log alone: accounts exist because a record entry opened
  them (with their currency, kind, owner and rule); every posting goes to an
  opened account in its currency; an account that may not go negative never
  does. Then the tables are held against them: the accounts table, every
  balance, and postings that belong to no entry (orphans).
- Every checkpoint: its signature, and its root against the recomputed leaves.
- Auditors: the other layers hold their own tables (tasks, shares) against the
  entries that concern them (``Auditor``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from identity.canonical import canonicalize
from identity.keys import verify
from ledger import merkle
from ledger.checkpoint import Checkpoint, NoteError, open_note
from ledger.journal import ACCOUNT_OPEN, Account, Entry, Ledger, LedgerError

BATCH = 10_000
_ACCOUNT_TERMS = ("account", "currency", "kind", "owner", "may_go_negative")


class Auditor(Protocol):
    """A layer's check of its own tables against the log: it sees every entry in order, then names problems."""

    def take(self, entry: Entry) -> None:
        """Fold one entry of the log (in order, as read from the database)."""
        ...

    def problems(self) -> list[str]:
        """What in the layer's tables the log does not account for, one plain sentence each."""
        ...


def verify_ledger(ledger: Ledger, keys: Sequence[bytes], *, auditors: Sequence[Auditor] = (),
                  progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Every problem with ``ledger`` as ``keys`` (from outside its database) and its log see it; [] when intact."""
    if not keys:
        raise LedgerError("verifying needs the ledger's public keys from outside its database (the DID registry "
                          "or the command line)")
    books = Books()
    checkpoints = _checkpoints(ledger)
    problems: list[str] = []
    tree = merkle.CompactRange()
    total = ledger.size()
    problems += _checkpoints_at(0, tree, checkpoints, ledger.origin, keys)
    for start in range(1, total + 1, BATCH):
        for entry in ledger.entries(start, min(start + BATCH, total + 1)):
            leaf = merkle.leaf_hash(canonicalize(_hashable(entry.content())))
            tree.append(leaf)
            problems += entry_problems(entry, tree.size, leaf, keys)
            problems += books.take(entry)
            for auditor in auditors:
                auditor.take(entry)
            problems += _checkpoints_at(tree.size, tree, checkpoints, ledger.origin, keys)
        if progress is not None:
            progress(tree.size, total)
    if tree.size != total:
        problems.append(f"the journal's numbering has gaps: {tree.size} entries up to number {total}")
    problems += [f"checkpoint {size}: signed for {size} entries, but the journal holds {tree.size}"
                 for size in sorted(checkpoints) if size > tree.size]
    problems += _outside_the_log(ledger, total)
    problems += books.against(ledger)
    for auditor in auditors:
        problems += auditor.problems()
    return problems


class Books:
    """Accounts and balances as the log alone states them, entry by entry."""

    def __init__(self) -> None:
        self.accounts: dict[str, tuple[Account, int]] = {}  # id -> (terms, the entry that opened it)
        self.balances: dict[str, int] = {}

    def take(self, entry: Entry) -> list[str]:
        """Fold one entry; what it does wrong to the books."""
        if entry.kind == ACCOUNT_OPEN:
            return self._open(entry)
        problems = []
        for account_id, currency, amount in entry.postings:
            if type(amount) is not int:
                problems.append(f"entry {entry.seq}: its posting to {account_id} holds {amount!r}, not an integer "
                                "number of minor units")
                continue
            opened = self.accounts.get(account_id)
            if opened is None:
                problems.append(f"entry {entry.seq}: posts to {account_id}, which no earlier entry opened")
            elif opened[0].currency != currency:
                problems.append(f"entry {entry.seq}: posts {currency} to {account_id}, opened in "
                                f"{opened[0].currency} by entry {opened[1]}")
            balance = self.balances[account_id] = self.balances.get(account_id, 0) + amount
            if balance < 0 and opened is not None and not opened[0].may_go_negative and amount < 0:
                problems.append(f"entry {entry.seq}: takes {account_id} to {balance}, below zero, which its "
                                f"opening entry {opened[1]} does not allow")
        return problems

    def _open(self, entry: Entry) -> list[str]:
        refs = entry.refs
        if entry.postings or set(refs) != set(_ACCOUNT_TERMS):
            return [f"entry {entry.seq}: an account opening must move no money and state exactly "
                    f"{', '.join(_ACCOUNT_TERMS)}"]
        account = Account(str(refs["account"]), str(refs["currency"]), str(refs["kind"]), refs["owner"],
                          bool(refs["may_go_negative"]))
        if account.id in self.accounts:
            return [f"entry {entry.seq}: opens {account.id} again (entry {self.accounts[account.id][1]} opened it)"]
        self.accounts[account.id] = (account, entry.seq)
        return []

    def against(self, ledger: Ledger) -> list[str]:
        """The accounts table and the balances the tables give, held against the log's."""
        problems = []
        table = {account.id: account for account in ledger.accounts()}
        for account_id in sorted(table.keys() | self.accounts.keys()):
            held, opened = table.get(account_id), self.accounts.get(account_id)
            if opened is None:
                problems.append(f"account {account_id}: in the accounts table, but no entry of the log opened it")
            elif held is None:
                problems.append(f"account {account_id}: opened by entry {opened[1]} but missing from the accounts "
                                "table")
            elif held != opened[0]:
                problems.append(f"account {account_id}: the accounts table says {_terms(held)}, its opening entry "
                                f"{opened[1]} says {_terms(opened[0])}")
        tables = ledger.balances()
        for account_id in sorted(tables.keys() | self.balances.keys()):
            stated, logged = tables.get(account_id, 0), self.balances.get(account_id, 0)
            if stated != logged:
                problems.append(f"account {account_id}: the tables give a balance of {stated!r}, the log {logged}")
        return problems


def entry_problems(entry: Entry, position: int, leaf: bytes, keys: Sequence[bytes]) -> list[str]:
    """What is wrong with one entry read back from the database (``leaf``: recomputed from its content)."""
    problems = []
    if entry.seq != position:
        problems.append(f"entry {entry.seq}: found where entry {position} belongs (a row is missing)")
    if leaf != entry.leaf:
        problems.append(f"entry {entry.seq}: its content does not match its leaf hash (the row was altered)")
    if not any(verify(key, entry.leaf, entry.sig) for key in keys):
        problems.append(f"entry {entry.seq}: its signature does not verify under the ledger's keys (the row was "
                        "altered or re-signed by another key)")
    totals: dict[str, Any] = {}
    for _, currency, amount in entry.postings:
        totals[currency] = totals.get(currency, 0) + amount
    if len(entry.postings) == 1 or any(totals.values()):
        problems.append(f"entry {entry.seq}: its postings do not balance: {totals}")
    if "unreadable" in entry.refs:
        problems.append(f"entry {entry.seq}: its refs are not JSON: {entry.refs['unreadable']!r}")
    return problems


def _hashable(content: dict[str, Any]) -> dict[str, Any]:
    """The content as canonical JSON can hash it: a non-integer amount (a tampered row) becomes its text, so the
    entry still gets a (wrong) leaf hash and is named instead of stopping the verifier."""
    content["postings"] = [[a, c, n if type(n) is int and abs(n) < 2**53 else repr(n)] for a, c, n in
                           content["postings"]]
    return content


def _checkpoints(ledger: Ledger) -> dict[int, tuple[bytes, str]]:
    return {int(size): (bytes(root), str(note))
            for size, root, note in ledger.db.read("SELECT size, root, note FROM checkpoints")}


def _checkpoints_at(size: int, tree: merkle.CompactRange, checkpoints: dict[int, tuple[bytes, str]], origin: str,
                    keys: Sequence[bytes]) -> list[str]:
    """What is wrong with the stored checkpoint of ``size`` entries (if there is one) against the leaves so far."""
    if size not in checkpoints:
        return []
    root, note = checkpoints[size]
    checkpoint = None
    for key in keys:
        try:
            checkpoint = Checkpoint.parse(open_note(note, origin, key))
            break
        except NoteError as err:
            reason = str(err)
    if checkpoint is None:
        return [f"checkpoint {size}: its signed note does not verify under the ledger's keys: {reason}"]
    if checkpoint.size != size or checkpoint.root != root:
        return [f"checkpoint {size}: the stored size or root differs from the signed note"]
    if tree.root() != root:
        return [f"checkpoint {size}: the first {size} entries no longer hash to the signed root"]
    return []


def _outside_the_log(ledger: Ledger, total: int) -> list[str]:
    """Rows the log does not hold: postings under no entry, entries numbered below 1."""
    problems = [f"a posting of {amount!r} {currency} to {account} under entry {entry}, which "
                f"{'is beyond the last entry ' + str(total) if int(entry) > total else 'does not exist'} "
                "(an orphan row)"
                for entry, account, currency, amount in ledger.db.read(
                    "SELECT entry, account, currency, amount FROM postings p WHERE NOT EXISTS "
                    "(SELECT 1 FROM entries e WHERE e.seq = p.entry) ORDER BY entry, account")]
    problems += [f"entry {seq}: numbered below 1, outside the log" for (seq,) in
                 ledger.db.read("SELECT seq FROM entries WHERE seq < 1 ORDER BY seq")]
    return problems


def _terms(account: Account) -> str:
    return (f"{account.currency}, kind {account.kind}, owner {account.owner}, "
            f"{'may' if account.may_go_negative else 'may not'} go negative")
