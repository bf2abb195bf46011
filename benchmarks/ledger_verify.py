"""``depai ledger verify`` time per 100,000 entries, against what reading the rows and checking the signatures cost.

    .venv/bin/python benchmarks/ledger_verify.py                    # 100,000 entries (built once, then cached)
    .venv/bin/python benchmarks/ledger_verify.py --entries 1000000

Verification recomputes every leaf hash from its content, checks its Ed25519
signature, folds the books (accounts, balances), the checkpoints and the DAO's
shares, and compares them with the tables. Two floors are measured in the same
run: reading every entry and its postings (``Ledger.entries``), and verifying
every signature alone; the ratios say how far verify is above them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/ledger_verify.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.ledger_fill import OPERATOR, Shape, cached  # noqa: E402
from identity.keys import verify  # noqa: E402
from launch.ledger_command import auditors  # noqa: E402
from ledger.journal import Ledger  # noqa: E402
from ledger.verify import BATCH  # noqa: E402


def read_all(ledger: Ledger) -> int:
    """The I/O floor: every entry and its postings read, nothing checked."""
    total, count = ledger.size(), 0
    for start in range(1, total + 1, BATCH):
        count += len(ledger.entries(start, min(start + BATCH, total + 1)))
    return count


def signatures(ledger: Ledger) -> int:
    """The crypto floor: every row's signature of its stored leaf hash checked, nothing recomputed."""
    bad = 0
    for leaf, sig in ledger.db.read("SELECT leaf, sig FROM entries"):
        bad += not verify(OPERATOR.public_key, bytes(leaf), bytes(sig))
    return bad


def timed(work, rounds: int) -> float:
    """The median wall seconds of ``work()`` over ``rounds``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    path, built = cached(Shape(args.entries), progress=lambda done, total: print(
        f"\r  building the ledger: {done:,}/{total:,} entries", end="", file=sys.stderr, flush=True))
    print(("\n" if built else "") + f"ledger: {args.entries:,} entries ({'built now' if built else 'cached'}: {path})")
    ledger = Ledger.open(f"sqlite:///{path}", None)
    try:
        problems: list[str] = []
        read_s = timed(lambda: read_all(ledger), args.rounds)
        sig_s = timed(lambda: signatures(ledger), args.rounds)
        verify_s = timed(lambda: problems.extend(ledger.verify([OPERATOR.public_key], auditors=auditors(ledger))),
                         args.rounds)
    finally:
        ledger.close()
    per = 100_000 / args.entries
    print(f"medians of {args.rounds} rounds, scaled to 100,000 entries:")
    print(f"  read every entry and its postings (floor)  {read_s * per:7.2f} s")
    print(f"  check every signature alone (floor)        {sig_s * per:7.2f} s")
    print(f"  depai ledger verify (everything)           {verify_s * per:7.2f} s   "
          f"{verify_s / read_s:.1f}x reading, {verify_s / sig_s:.1f}x the signatures")
    print(f"  problems found: {len(problems)}" + ("" if not problems else f" (first: {problems[0]})"))
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
