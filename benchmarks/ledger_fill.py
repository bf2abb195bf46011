"""A large, valid ledger written fast: a month of a 200-robot fleet's escrow, settlements, splits and claims.

    .venv/bin/python benchmarks/ledger_fill.py --entries 1000000     # build (or reuse) and print the path

Benchmarks of what reads a ledger need one with a million entries; posting them
one by one through ``Ledger.post`` (a durable commit each) would take hours. This
writes the same rows the ledger would: each entry's canonical content
(``Entry.content``, RFC 8785), its RFC 6962 leaf hash and the operator's Ed25519
signature of it, with ``executemany`` into the ledger's own schema in large
transactions. The schema's triggers still check every entry (balanced, sealed,
the account's currency); ``Ledger.verify`` accepts the result (tests/benchmarks
checks a small one).

The fleet: 200 robots (180 owned by the DAO, 20 by four other owners), 100
customers, 20 DAO members, over 30 days. Tasks are posted (``escrow.lock``) at
a steady rate and settled (``escrow.release``) 2 to 20 minutes later, 3 %
expire and are refunded, about one settlement in 20,000 is reversed; every 6
hours the DAO splits what its robots earned (``dao.split``, by dao/split.py) and
members claim now and then (``dao.claim``). Keys, kinds and memos are the ones
marketplace/market.py and dao/dao.py write.

Built files are kept under the temp directory, named by their parameters, so a
second run reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/ledger_fill.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from dao.dao import Dao  # noqa: E402
from dao.lifecycle import Params  # noqa: E402
from dao.split import SplitRules, distribute  # noqa: E402
from identity.canonical import canonicalize  # noqa: E402
from identity.keys import Signer  # noqa: E402
from ledger import merkle  # noqa: E402
from ledger.journal import ACCOUNT_OPEN, Account, Entry, Ledger  # noqa: E402

VERSION = 2  # bump when what is written changes: cached files of older versions are not reused
OPERATOR = Signer(hashlib.sha256(b"depai benchmark ledger operator").digest())
START_S = 1_790_000_000  # 2026-09-21, the test suite's clock
CURRENCY = "EUR"
FEE_BPS = 500
BOND = 2_000
PARAMS = Params(voting_delay_s=60.0, voting_period_s=1_800.0, quorum_bps=4_000, timelock_s=60.0,
                grace_period_s=86_400.0)
RULES = SplitRules.of({"operator": 1_500, "reserve": 1_000, "treasury": 1_500, "members": 6_000})
SPLIT_EVERY_S = 6 * 3_600
BATCH = 50_000  # entries per transaction


def did(kind: str, n: int) -> str:
    """A did:key-shaped DID (as long as a real Ed25519 one), the same for the same kind and number."""
    digest = hashlib.sha256(f"{kind}{n}".encode()).hexdigest()
    return "did:key:z6Mk" + digest[:44]


DAO_DID = did("dao", 0)


@dataclass(frozen=True)
class Shape:
    """What the fleet looks like; also the cache key."""

    entries: int
    robots: int = 200
    dao_robots: int = 180
    customers: int = 100
    members: int = 20
    days: int = 30
    seed: int = 7

    def name(self) -> str:
        return (f"ledger-v{VERSION}-{self.entries}e-{self.robots}r-{self.dao_robots}d-{self.customers}c-"
                f"{self.members}m-{self.days}days-s{self.seed}.sqlite3")


@dataclass(frozen=True)
class Fleet:
    """Who is who in a built ledger."""

    dao: str
    robots: tuple[str, ...]
    dao_robots: tuple[str, ...]
    members: dict[str, int]  # member -> shares
    customers: tuple[str, ...]


def fleet_of(shape: Shape) -> Fleet:
    """The DIDs and shares a ledger of ``shape`` is built with."""
    rng = random.Random(shape.seed)
    robots = tuple(did("robot", n) for n in range(shape.robots))
    members = {did("member", n): rng.randint(10, 500) for n in range(shape.members)}
    return Fleet(DAO_DID, robots, robots[:shape.dao_robots], members,
                 tuple(did("customer", n) for n in range(shape.customers)))


def cached(shape: Shape, cache_dir: Path | None = None,
           progress: Callable[[int, int], None] | None = None) -> tuple[Path, bool]:
    """The path of a ledger of ``shape``, built unless a finished one is cached; and whether it was built now."""
    folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "depai-bench"
    path = folder / shape.name()
    if path.exists():
        return path, False
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".partial{os.getpid()}")
    try:
        fill(partial, shape, progress)
        os.replace(partial, path)  # only a finished file gets the name
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-wal"), partial.with_name(partial.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return path, True


def fill(path: Path, shape: Shape, progress: Callable[[int, int], None] | None = None) -> Fleet:
    """Write a new ledger of ``shape.entries`` entries at ``path`` (which must not exist)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; fill writes a new ledger")
    fleet = fleet_of(shape)
    ledger = Ledger.open(f"sqlite:///{path}", OPERATOR, clock=lambda: float(START_S))
    try:  # the schema, its triggers, and the DAO's own tables, accounts and shares, by the real code
        Dao(ledger, fleet.dao, currency=CURRENCY, clock=lambda: float(START_S)).create(fleet.members, PARAMS, RULES)
    finally:
        ledger.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")  # the postings' references are checked as the ledger's are
        conn.execute("PRAGMA synchronous=OFF")  # a throwaway file: built whole or not named at all
        _write(conn, shape, fleet, progress)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return fleet


# --- writing ---------------------------------------------------------------------------------------------

def _write(conn: sqlite3.Connection, shape: Shape, fleet: Fleet,
           progress: Callable[[int, int], None] | None) -> None:
    known = {account for (account,) in conn.execute("SELECT id FROM accounts")}
    claimable = f"claimable:{fleet.dao}:"
    accounts: list[tuple[str, str, str, str | None, int]] = []
    entries: list[tuple[int, str, str, str, int, int | None, bytes, bytes, str | None]] = []
    postings: list[tuple[int, str, str, int]] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO accounts (id, currency, kind, owner, may_go_negative) VALUES (?, ?, ?, ?, ?)",
                         accounts)
        conn.executemany("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, ?, ?)", postings)
        conn.executemany("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, reverses, leaf, sig, refs) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
        conn.execute("COMMIT")
        accounts.clear(), entries.clear(), postings.clear()

    def add(key: str, kind: str, memo: str, at_ms: int, reverses: int | None, rows: tuple[tuple[str, str, int], ...],
            refs: dict[str, object]) -> None:
        content = Entry(seq, key, kind, memo, at_ms, reverses, rows, b"", b"", refs).content()
        leaf = merkle.leaf_hash(canonicalize(content))
        entries.append((seq, key, kind, memo, at_ms, reverses, leaf, OPERATOR.sign(leaf),
                        canonicalize(refs).decode() if refs else None))
        postings.extend((seq, account, currency, amount) for account, currency, amount in rows)

    seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0])  # after the DAO's own
    for key, kind, memo, at_ms, reverses, lines in _events(shape, fleet):
        for account in lines:
            if account not in known and seq < shape.entries:  # opened as the ledger opens an account: a record entry of its terms
                known.add(account)
                prefix, _, owner = account.partition(":")
                if prefix == "claimable":
                    owner = account[len(claimable):]
                terms = Account(account, CURRENCY, prefix, None if prefix in ("world", "fees") else owner,
                                prefix == "world")
                accounts.append((account, CURRENCY, terms.kind, terms.owner, int(terms.may_go_negative)))
                seq += 1
                add(f"account:{account}", ACCOUNT_OPEN, "", at_ms, None, (), terms.refs())
        if seq >= shape.entries:  # the accounts it opened filled the ledger
            break
        seq += 1
        if reverses == PREVIOUS:
            reverses, memo = seq - 1, f"reverses entry {seq - 1}"
        rows = tuple(sorted((account, CURRENCY, amount) for account, amount in lines.items()))
        add(key, kind, memo, at_ms, reverses, rows, _refs(key, kind, memo))
        if len(entries) >= BATCH:
            flush()
            if progress is not None:
                progress(seq, shape.entries)
        if seq >= shape.entries:
            break
    if entries:
        flush()
    if progress is not None:
        progress(seq, shape.entries)


Event = tuple[str, str, str, int, int | None, dict[str, int]]  # key, kind, memo, at_ms, reverses, postings
PREVIOUS = -1  # as ``reverses``: the entry written just before this one


def _events(shape: Shape, fleet: Fleet) -> Iterator[Event]:
    """The fleet's entries in time order, endless (the caller stops at the size it wants)."""
    rng = random.Random(shape.seed)
    dao, world, fees = fleet.dao, f"world:{CURRENCY}", f"fees:{CURRENCY}"
    ours = set(fleet.dao_robots)
    owners = {robot: dao if robot in ours else did("owner", n % 4) for n, robot in enumerate(fleet.robots)}
    start_ms = START_S * 1000
    span_ms = shape.days * 86_400_000
    tasks = max(1, shape.entries // 2)  # a lock and a release (or refund) each, roughly
    step_ms = max(1, span_ms // tasks)
    for customer in fleet.customers:
        yield f"fund:{customer}", "deposit", f"deposit {customer}", start_ms, None, {
            world: -10**12, f"customer:{customer}": 10**12}
    for owner in sorted(set(owners.values())):
        count = sum(1 for o in owners.values() if o == owner)
        yield f"fund:owner-{owner}", "deposit", f"deposit owner-{owner}", start_ms, None, {
            world: -count * BOND, f"owner:{owner}": count * BOND}
    for robot in fleet.robots:
        yield f"bond:{robot}:{BOND}", "bond", f"bond of {robot}", start_ms, None, {
            f"owner:{owners[robot]}": -BOND, f"bond:{robot}": BOND}
    balance = {"owner": 0}  # what the DAO's owner account holds beyond the bonds' funding (all spent on bonds)
    claimable = dict.fromkeys(fleet.members, 0)
    claims = dict.fromkeys(fleet.members, 0)
    pending: list[tuple[int, int, str, str, str, int, int]] = []  # (due ms, n, id, customer, robot, max, price)
    next_split = start_ms + SPLIT_EVERY_S * 1000
    splits = 1
    n = 0
    while True:
        now = start_ms + 1_000 + n * step_ms + rng.randrange(step_ms)
        while True:  # settlements and splits due by now, in time order
            due = pending[0][0] if pending else now + 1
            if next_split <= min(due, now):
                yield from _split(fleet, rng, next_split, splits, balance, claimable, claims)
                splits += 1
                next_split += SPLIT_EVERY_S * 1000
                continue
            if due > now:
                break
            _, _, task, customer, robot, max_price, price = heapq.heappop(pending)
            escrow = f"escrow:{task}"
            if price < 0:
                yield f"task:{task}:refund", "escrow.refund", "expired", due, None, {
                    escrow: -max_price, f"customer:{customer}": max_price}
                continue
            fee = price * FEE_BPS // 10_000
            owner = owners[robot]
            lines = {escrow: -max_price, f"owner:{owner}": price - fee, fees: fee}
            if max_price > price:
                lines[f"customer:{customer}"] = max_price - price
            yield f"task:{task}:settle", "escrow.release", f"delivered by {robot}", due, None, lines
            if owner == dao:
                balance["owner"] += price - fee
                if rng.random() < 1 / 20_000:  # delivered to the wrong door: taken back
                    yield f"undo:{task}", "reversal", "", due, PREVIOUS, {a: -amount for a, amount in lines.items()}
                    balance["owner"] -= price - fee
        task = f"run1-order-{n}"
        customer = fleet.customers[rng.randrange(len(fleet.customers))]
        robot = fleet.robots[rng.randrange(len(fleet.robots))]
        max_price = rng.randrange(600, 3_000)
        price = -1 if rng.random() < 0.03 else rng.randrange(300, max_price + 1)
        yield f"task:{task}:escrow", "escrow.lock", f"escrow for {task}", now, None, {
            f"customer:{customer}": -max_price, f"escrow:{task}": max_price}
        heapq.heappush(pending, (now + rng.randrange(120_000, 1_200_000), n, task, customer, robot, max_price, price))
        n += 1


def _split(fleet: Fleet, rng: random.Random, at_ms: int, number: int, balance: dict[str, int],
           claimable: dict[str, int], claims: dict[str, int]) -> Iterator[Event]:
    """The DAO's split of its owner account at ``at_ms`` (as Dao.distribute writes it), then some members' claims."""
    dao = fleet.dao
    pot = balance["owner"]
    if pot:
        split = distribute(pot, RULES, fleet.members)
        lines = {f"{name}:{dao}": amount for name, amount in split.payouts.items() if amount}
        for member, amount in split.to_members.items():
            if amount:
                lines[f"claimable:{dao}:{member}"] = amount
                claimable[member] += amount
        paid = sum(lines.values())
        if paid:
            lines[f"owner:{dao}"] = -paid
            balance["owner"] -= paid
            yield f"dao:{dao}:split:{number}", "dao.split", f"revenue split {number}", at_ms, None, lines
    for member in sorted(fleet.members):
        if claimable[member] and rng.random() < 0.25:
            claims[member] += 1
            amount, claimable[member] = claimable[member], 0
            yield (f"dao:{dao}:claim:{member}:{claims[member]}", "dao.claim", f"claim by {member}", at_ms, None,
                   {f"claimable:{dao}:{member}": -amount, f"member:{member}": amount})


def _refs(key: str, kind: str, memo: str) -> dict[str, object]:
    """The refs marketplace/market.py signs into a settlement (this generator made the key and memo it reads)."""
    if kind == "escrow.release":
        return {"task": key.removeprefix("task:").removesuffix(":settle"), "robot": memo.removeprefix("delivered by ")}
    return {}


def main(argv: list[str] | None = None) -> int:
    """Build (or find) a ledger and print its path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path, built = cached(Shape(args.entries), args.cache_dir, _progress)
    print(f"{'built' if built else 'reused'} {path} in {time.perf_counter() - started:.1f} s")
    return 0


def _progress(done: int, total: int) -> None:
    print(f"  {done:,}/{total:,} entries", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
