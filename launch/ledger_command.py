"""``depai ledger verify``: recompute a ledger from its signed log and name every row that does not add up.

Each entry's leaf hash is recomputed from its content and its signature checked
against the ledger's keys, taken from outside the database (``--key``, or the
ledger's DID in the registry); accounts, balances, orphan postings, every signed
checkpoint, the marketplace's tasks and robots and the DAO's shares are held
against the log. ``--witness`` adds checkpoints that witnesses kept outside the
database, so a ledger cut back together with its checkpoints is caught.
"""

from __future__ import annotations

import argparse
import sys

from dao.audit import SharesAudit
from ledger.db import DatabaseError
from ledger.journal import Ledger, LedgerError
from ledger.verify import Auditor
from launch.home import Home
from launch.ledger_keys import add_key_arguments, ledger_keys, ledger_url
from launch.output import EXIT_IO, EXIT_OK, EXIT_REFUSED, CliError, emit
from marketplace.audit import MarketAudit

SHOWN = 50  # problems listed on a terminal; --json lists them all


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai ledger``."""
    ledger = commands.add_parser("ledger", help="inspect, verify and witness the double-entry ledger")
    actions = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", parents=[parent], help="recompute everything; name tampered rows",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_key_arguments(verify)
    verify.add_argument("--witness", metavar="FILE|URL", action="append", default=[],
                        help="a checkpoint a witness cosigned (its state file, or the URL it serves it at); the "
                             "database must still hold what it witnessed")
    verify.set_defaults(handler=cmd_verify)
    from launch.witness_command import add_witness_parser  # depai ledger witness (launch/witness_command.py)
    add_witness_parser(actions, parent)


def auditors(ledger: Ledger) -> list[Auditor]:
    """The other layers' checks of their tables against the log, for the tables this database holds."""
    found: list[Auditor] = []
    if ledger.db.has_table("market_tasks"):
        found.append(MarketAudit(ledger.db))
    if ledger.db.has_table("dao_shares"):
        found.append(SharesAudit(ledger.db))
    return found


def cmd_verify(args: argparse.Namespace, home: Home) -> int:
    """Verify the ledger; exit 0 when intact, 1 when some row does not add up."""
    keys = ledger_keys(args, home)
    try:
        ledger = Ledger.open(ledger_url(args, home), None)
    except (DatabaseError, LedgerError) as err:
        raise CliError(str(err), code="no_ledger", hint="check --db (or --state)", exit_code=EXIT_IO) from None
    try:
        problems = ledger.verify(keys.keys, auditors=auditors(ledger), progress=None if args.json else _progress)
        problems += _witnessed(ledger, args.witness, keys.keys)
        size, latest = ledger.size(), ledger.latest_checkpoint()
    finally:
        ledger.close()
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    summary = {"entries": size, "checkpoint": latest[0].size if latest else None, "keys": keys.source,
               "witnesses": len(args.witness), "problems": problems, "intact": not problems}
    lines = [f"depai ledger: {size} entries, latest checkpoint at {summary['checkpoint']}, keys from {keys.source}"]
    if not problems:
        lines.append("  intact: every leaf, signature, account, balance, checkpoint, task and share adds up"
                     + (f", and it holds what {len(args.witness)} witness(es) saw" if args.witness else ""))
    else:
        lines += [f"  {len(problems)} problems:"] + [f"  - {problem}" for problem in problems[:SHOWN]]
        lines += [f"  ... and {len(problems) - SHOWN} more (--json lists them all)"] if len(problems) > SHOWN else []
        unsigned = sum("signature does not verify" in problem for problem in problems)
        if size and unsigned == size:
            lines.append("  hint: not one signature verifies; is the key the ledger identity's (its DID is the fleet "
                         "descriptor's `ledger`), not the operator's?")
    emit(summary, as_json=args.json, text="\n".join(lines))
    return EXIT_OK if not problems else EXIT_REFUSED


def _witnessed(ledger: Ledger, sources: list[str], keys: tuple[bytes, ...]) -> list[str]:
    """Problems against witnessed checkpoints (none asked: none)."""
    if not sources:
        return []
    from launch.witness_command import witness_check

    return witness_check(ledger, sources, keys)


def _progress(done: int, total: int) -> None:
    """A status line on a terminal while a large ledger is read."""
    if sys.stderr.isatty():
        print(f"\rdepai ledger: verified {done:,} of {total:,} entries", end="", file=sys.stderr, flush=True)
