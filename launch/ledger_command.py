"""``depai ledger verify``: recompute a ledger from its rows and name every row that does not add up.

Each entry's leaf hash is recomputed from its content and its operator
signature checked; balances per currency, the numbering and every signed
checkpoint (its signature and its Merkle root over the entries it covers) are
checked too. The operator's key is the one the ledger recorded when it was
created, unless ``--key`` gives the published one to check against.
"""

from __future__ import annotations

import argparse
import sys

from ledger.db import DatabaseError
from ledger.journal import Ledger, LedgerError
from launch.home import Home
from launch.output import EXIT_IO, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, emit


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai ledger``."""
    ledger = commands.add_parser("ledger", help="inspect and verify the double-entry ledger")
    actions = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", parents=[parent], help="recompute everything; name tampered rows",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("--db", required=True, metavar="URL",
                        help="the ledger: a file path, sqlite:///path or postgresql://user@host:port/database")
    verify.add_argument("--key", metavar="HEX", help="the operator's Ed25519 public key (64 hex digits) to check "
                        "signatures against (default: the key the ledger recorded)")
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace, home: Home) -> int:
    """Verify the ledger; exit 0 when intact, 1 when some row does not add up."""
    key = None
    if args.key is not None:
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise CliError("--key must be 64 hex digits (a 32-byte Ed25519 public key)", code="bad_key",
                           hint="copy the operator's key from its DID document", exit_code=EXIT_USAGE)
    try:
        ledger = Ledger.open(args.db, None)
    except (DatabaseError, LedgerError) as err:
        raise CliError(str(err), code="no_ledger", hint="check --db", exit_code=EXIT_IO) from None
    try:
        problems = ledger.verify(key, progress=None if args.json else _progress)
        size, latest = ledger.size(), ledger.latest_checkpoint()
    finally:
        ledger.close()
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    summary = {"entries": size, "checkpoint": latest[0].size if latest else None, "problems": problems,
               "intact": not problems}
    lines = [f"depai ledger: {size} entries, latest signed checkpoint at {summary['checkpoint']}"]
    lines += (["  intact: every leaf, signature, balance and checkpoint adds up"] if not problems
              else [f"  {len(problems)} problems:"] + [f"  - {problem}" for problem in problems])
    emit(summary, as_json=args.json, text="\n".join(lines))
    return EXIT_OK if not problems else EXIT_REFUSED


def _progress(done: int, total: int) -> None:
    """A status line on a terminal while a large ledger is read."""
    if sys.stderr.isatty():
        print(f"\rdepai ledger: verified {done:,} of {total:,} entries", end="", file=sys.stderr, flush=True)
