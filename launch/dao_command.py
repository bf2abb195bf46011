"""``depai dao``: found a fleet-owning DAO, and propose, vote, execute, claim and see where it stands.

The DAO is an identity of yours (``depai id new dao``); its ledger and
governance live in one database (``HOME/dao/NAME.sqlite3`` unless ``--db``
gives a path or a postgresql:// URL), signed with the DAO's key. Members are
identities too: a vote is an envelope the member signs with its own key. Times
are wall-clock seconds, so a proposal made with the default parameters opens
for votes a minute later and stays open an hour. ``DEPAI_DAO_NOW``, when set
to a Unix time in seconds, is the time every ``depai dao`` command takes as
now instead (for tests and rehearsals: a proposal's life played out without
waiting for it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dao.dao import VOTE_KIND, Dao, DaoError
from dao.lifecycle import Params
from dao.split import SplitRules
from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from launch.home import Home
from launch.id_commands import did_of, unlock
from launch.output import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, emit
from ledger.journal import Ledger

NOW_ENV = "DEPAI_DAO_NOW"  # a Unix time in seconds that every `depai dao` command takes as now
DEFAULT_SPLIT = {"operator": 1_500, "reserve": 1_000, "treasury": 1_500, "members": 6_000}


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai dao`` and its actions."""
    dao = commands.add_parser("dao", help="a fleet-owning DAO: members, revenue, proposals and votes")
    actions = dao.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[parent], help=help_text, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("name", help="the DAO: the name of its identity in the keystore")
        sub.add_argument("--db", metavar="URL", help="its database (default: HOME/dao/NAME.sqlite3)")
        sub.set_defaults(handler=handler)
        return sub

    create = action("create", "found the DAO with its first members and rules", cmd_create)
    create.add_argument("--member", action="append", required=True, metavar="WHO=SHARES",
                        help="a founding member (identity name or DID) and its voting shares; repeat")
    create.add_argument("--voting-delay", type=float, default=60.0, metavar="S")
    create.add_argument("--voting-period", type=float, default=3_600.0, metavar="S")
    create.add_argument("--quorum", type=int, default=4_000, metavar="BPS", help="of all shares (default 4000)")
    create.add_argument("--timelock", type=float, default=600.0, metavar="S")
    create.add_argument("--grace", type=float, default=86_400.0, metavar="S")
    create.add_argument("--split", metavar="JSON", default=json.dumps(DEFAULT_SPLIT),
                        help=f"basis points per recipient, must include members (default {json.dumps(DEFAULT_SPLIT)})")
    join = action("join", "a member sponsors a newcomer: a proposal to add it", cmd_join)
    join.add_argument("--as", dest="who", required=True, help="the newcomer (identity name or DID)")
    join.add_argument("--sponsor", required=True, help="the member who proposes it (identity name)")
    join.add_argument("--shares", type=int, required=True)
    propose = action("propose", "propose typed actions (see docs/dao.md)", cmd_propose)
    propose.add_argument("--as", dest="who", required=True, help="the proposing member (identity name)")
    propose.add_argument("--id", dest="proposal", required=True)
    propose.add_argument("--action", action="append", required=True, metavar="JSON",
                         help='e.g. \'{"kind": "spend", "to": "did:...", "amount": 500, "currency": "EUR"}\'')
    propose.add_argument("--description", default="")
    vote = action("vote", "vote on an active proposal, signed with your key", cmd_vote)
    vote.add_argument("--as", dest="who", required=True, help="the voting member (identity name)")
    vote.add_argument("--proposal", required=True)
    vote.add_argument("--support", choices=["for", "against", "abstain"], required=True)
    execute = action("execute", "queue a succeeded proposal, or execute a queued one", cmd_execute)
    execute.add_argument("--proposal", required=True)
    claim = action("claim", "split what the fleet earned, then pay a member its share", cmd_claim)
    claim.add_argument("--as", dest="who", required=True, help="the claiming member (identity name)")
    action("status", "members, rules, balances and proposals", cmd_status)


def _open(args: argparse.Namespace, home: Home, *, write: bool) -> tuple[Dao, Ledger]:
    """The DAO's ledger (signed with its key when writing) and the DAO."""
    keystore = home.keystore()
    if not keystore.exists(args.name):
        raise CliError(f"no identity named {args.name!r} for the DAO", code="no_dao",
                       hint=f"create it with `depai id new {args.name}`", exit_code=EXIT_NOT_FOUND)
    signer, did, _ = unlock(keystore, args.name) if write else (None, did_of(keystore, args.name), None)
    url = args.db or f"sqlite:///{home.root / 'dao' / (args.name + '.sqlite3')}"
    clock = _clock()
    ledger = Ledger.open(url, signer, origin=f"depai.local/dao/{args.name}")
    return Dao(ledger, did, clock=clock), ledger


def _clock() -> Callable[[], float]:
    """The DAO's clock: the wall clock, or the fixed time ``DEPAI_DAO_NOW`` gives."""
    text = os.environ.get(NOW_ENV)
    if text is None:
        return time.time
    try:
        now = float(text)
    except ValueError:
        now = math.nan
    if not math.isfinite(now) or now < 0:
        raise CliError(f"{NOW_ENV}={text!r} is not a time", code="bad_clock",
                       hint=f"give Unix seconds (e.g. {NOW_ENV}=1700000000), or unset it for the wall clock",
                       exit_code=EXIT_USAGE)
    return lambda: now


def _did(home: Home, who: str) -> str:
    """A DID given as such, or the DID of an identity in the keystore."""
    return who if who.startswith("did:") else did_of(home.keystore(), who)


def _run(args: argparse.Namespace, home: Home, write: bool, work: Any) -> int:
    """Open the DAO, do ``work(dao)`` and print what it returns; refusals become clear errors."""
    dao, ledger = _open(args, home, write=write)
    try:
        result, text = work(dao)
    except DaoError as err:
        code = EXIT_CONFLICT if err.code in ("exists", "duplicate", "already_voted", "already_executed") \
            else EXIT_REFUSED
        raise CliError(str(err), code=err.code, hint="see `depai dao status " + args.name + "`",
                       exit_code=code) from None
    finally:
        ledger.close()
    emit(result, as_json=args.json, text=text)
    return EXIT_OK


def cmd_create(args: argparse.Namespace, home: Home) -> int:
    """Found the DAO."""
    founders = {}
    for item in args.member:
        who, _, shares = item.partition("=")
        if not shares.isdigit() or int(shares) <= 0:
            raise CliError(f"--member {item!r}: give WHO=SHARES with a positive whole number of shares",
                           code="bad_member", hint="e.g. --member alice=60", exit_code=EXIT_USAGE)
        founders[_did(home, who)] = int(shares)
    try:
        params = Params(args.voting_delay, args.voting_period, args.quorum, args.timelock, args.grace)
        rules = SplitRules.of(json.loads(args.split))
    except (ValueError, TypeError) as err:
        raise CliError(str(err), code="bad_rules", hint="see `depai dao create --help`", exit_code=EXIT_USAGE) from None

    def work(dao: Dao) -> tuple[dict, str]:
        dao.create(founders, params, rules)
        return {"dao": dao.did, "members": founders}, f"depai dao: {args.name} ({dao.did}) founded by " \
            f"{len(founders)} members"

    return _run(args, home, True, work)


def cmd_join(args: argparse.Namespace, home: Home) -> int:
    """A sponsor proposes adding a newcomer."""
    newcomer, sponsor = _did(home, args.who), _did(home, args.sponsor)
    proposal_id = f"join-{newcomer.rsplit(':', 1)[-1][:16]}"
    action = {"kind": "add_member", "member": newcomer, "shares": args.shares}

    def work(dao: Dao) -> tuple[dict, str]:
        proposal = dao.propose(sponsor, proposal_id, [action], f"{args.sponsor} sponsors {args.who}")
        return _proposal_json(proposal), f"depai dao: proposal {proposal.id} to add {args.who} is {proposal.state}"

    return _run(args, home, False, work)


def cmd_propose(args: argparse.Namespace, home: Home) -> int:
    """A member proposes typed actions."""
    try:
        actions = [json.loads(text) for text in args.action]
    except json.JSONDecodeError as err:
        raise CliError(f"--action is not JSON: {err}", code="bad_action", hint="quote it: --action '{...}'",
                       exit_code=EXIT_USAGE) from None

    def work(dao: Dao) -> tuple[dict, str]:
        proposal = dao.propose(_did(home, args.who), args.proposal, actions, args.description)
        return _proposal_json(proposal), f"depai dao: proposal {proposal.id} is {proposal.state}; votes open at " \
            f"{proposal.timeline.snapshot_s:.0f}"

    return _run(args, home, False, work)


def cmd_vote(args: argparse.Namespace, home: Home) -> int:
    """Sign a vote with the member's key and count it."""
    signer, member, _ = unlock(home.keystore(), args.who)

    def work(dao: Dao) -> tuple[dict, str]:
        with home.registry() as registry:
            key_id = registry.active(member).key_id or "key-1"
            wire = EnvelopeSigner(signer, member, key_id).seal(VOTE_KIND, {
                "dao": dao.did, "proposal": args.proposal, "support": args.support,
                "nonce": dao.next_nonce(member)})
            proposal = dao.vote(EnvelopeVerifier(registry).verify(wire, kinds=[VOTE_KIND]))
        return _proposal_json(proposal), f"depai dao: {args.who} voted {args.support} on {proposal.id}; " \
            f"for {proposal.tally.for_votes}, against {proposal.tally.against}, abstain {proposal.tally.abstain}"

    return _run(args, home, False, work)


def cmd_execute(args: argparse.Namespace, home: Home) -> int:
    """Queue a succeeded proposal, or execute a queued one whose timelock has passed."""

    def work(dao: Dao) -> tuple[dict, str]:
        proposal = dao.proposal(args.proposal)
        proposal = dao.queue(proposal.id) if proposal.state == "succeeded" else dao.execute(proposal.id)
        return _proposal_json(proposal), f"depai dao: proposal {proposal.id} is {proposal.state}"

    return _run(args, home, True, work)


def cmd_claim(args: argparse.Namespace, home: Home) -> int:
    """Distribute the revenue not yet split, then pay the member what it may claim."""
    member = _did(home, args.who)

    def work(dao: Dao) -> tuple[dict, str]:
        dao.distribute(f"claim-{dao.ledger.size()}")
        amount = dao.claim(member)
        return {"member": member, "claimed": amount, "currency": dao.currency}, \
            f"depai dao: {args.who} claimed {amount / 100:.2f} {dao.currency}"

    return _run(args, home, True, work)


def cmd_status(args: argparse.Namespace, home: Home) -> int:
    """Where the DAO stands."""

    def work(dao: Dao) -> tuple[dict, str]:
        params, rules, fee = dao.params()
        balances = {account: amount for account, amount in dao.ledger.balances().items() if dao.did in account}
        proposals = [_proposal_json(p) for p in dao.proposals()]
        status = {"dao": dao.did, "members": dao.members(), "params": asdict(params), "split": rules.as_dict(),
                  "fee_bps": fee, "balances": balances, "proposals": proposals}
        lines = [f"depai dao: {args.name} ({dao.did})",
                 "  members: " + ", ".join(f"{m} {s}" for m, s in status["members"].items()),
                 "  split: " + ", ".join(f"{k} {v / 100:g} %" for k, v in status["split"].items()),
                 *(f"  {account}: {amount / 100:.2f}" for account, amount in sorted(balances.items())),
                 *(f"  proposal {p['id']}: {p['state']} (for {p['for']}, against {p['against']}, "
                   f"abstain {p['abstain']})" for p in proposals)]
        return status, "\n".join(lines)

    return _run(args, home, False, work)


def _proposal_json(proposal: Any) -> dict[str, Any]:
    return {"id": proposal.id, "proposer": proposal.proposer, "state": str(proposal.state),
            "actions": [action.to_json() for action in proposal.actions], "for": proposal.tally.for_votes,
            "against": proposal.tally.against, "abstain": proposal.tally.abstain,
            "snapshot": proposal.timeline.snapshot_s, "deadline": proposal.timeline.deadline_s, "eta": proposal.eta_s}

