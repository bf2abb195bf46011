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

The DAO of a fleet that ``depai up`` runs lives in that fleet's state
directory instead: ``--state DIR`` (or, for a NAME that is no identity of the
keystore, HOME/fleet when its ``identities.json`` has that name) takes the
DAO's DID (``dao``), the members' keys (``member-1``, ...) and the ledger's
signing key (``ledger``) from ``DIR/identities.json``, the ledger from
``DIR/ledger.sqlite3`` (or ``--db``, the fleet's PostgreSQL database) and the
DID registry from ``DIR/registry.sqlite3`` (or that database). NAME may then
be left out. Its clock is the fleet's: the wall clock, or the fleet's newest
ledger entry when the fleet ran ahead of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dao.dao import VOTE_KIND, Dao, DaoError
from dao.lifecycle import Params
from dao.split import SplitRules
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.home import Home, registry_target
from launch.id_commands import did_of, unlock
from launch.output import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, emit
from ledger.journal import Ledger

NOW_ENV = "DEPAI_DAO_NOW"  # a Unix time in seconds that every `depai dao` command takes as now
FLEET_ACTIONS = ("buy_robot", "retire_robot", "admit_robot")  # and set_parameter fee_bps: the keeper's hooks do them
DEFAULT_SPLIT = {"operator": 1_500, "reserve": 1_000, "treasury": 1_500, "members": 6_000}


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai dao`` and its actions."""
    dao = commands.add_parser("dao", help="a fleet-owning DAO: members, revenue, proposals and votes")
    actions = dao.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[parent], help=help_text, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("name", nargs="?", help="the DAO: the name of its identity in the keystore (with --state: "
                         "of the fleet, default dao)")
        sub.add_argument("--db", metavar="URL", help="its database (default: HOME/dao/NAME.sqlite3; with --state, "
                         "STATE/ledger.sqlite3)")
        sub.add_argument("--state", metavar="DIR", help="the DAO of the fleet `depai up` runs in DIR (its "
                         "identities.json, ledger and DID registry); members are then its names, e.g. member-1")
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


@dataclass(frozen=True, slots=True)
class _Fleet:
    """A running fleet's state directory: its named identities (name -> seed, or {seed, did}) and databases."""

    state: Path
    seeds: dict[str, Any]
    db: str | None

    @classmethod
    def at(cls, state: Path, db: str | None) -> _Fleet:
        try:
            seeds = json.loads((state / "identities.json").read_text())
        except (OSError, ValueError):
            raise CliError(f"no fleet in {state}: it has no readable identities.json", code="no_fleet",
                           hint="pass the --state DIR that `depai up` used (default HOME/fleet)",
                           exit_code=EXIT_NOT_FOUND) from None
        return cls(state, seeds, db)

    def has(self, name: str) -> bool:
        return name in self.seeds

    def signer(self, name: str) -> Signer:
        entry = self.seeds[name]
        return Signer(bytes.fromhex(entry["seed"] if isinstance(entry, dict) else entry))

    def did(self, name: str) -> str:
        entry = self.seeds[name]
        return entry["did"] if isinstance(entry, dict) and entry.get("did") else did_peaq(self.signer(name).public_key)

    def members(self) -> list[str]:
        return sorted((n for n in self.seeds if n.startswith("member-")), key=lambda n: int(n[7:]) if n[7:].isdigit()
                      else 0)

    @property
    def ledger_url(self) -> str:
        return self.db or f"sqlite:///{self.state / 'ledger.sqlite3'}"

    def registry(self) -> DidRegistry:
        return DidRegistry(registry_target(self.state, self.db))


def _fleet(args: argparse.Namespace, home: Home) -> _Fleet | None:
    """The fleet whose DAO the command is about: --state, or HOME/fleet for a NAME of no keystore identity."""
    if args.state:
        fleet = _Fleet.at(Path(args.state).expanduser(), args.db)
        name = args.name or "dao"
        if not fleet.has(name):
            raise CliError(f"the fleet in {fleet.state} has no identity {name!r}", code="no_dao",
                           hint="the fleet's DAO is `dao`: `depai dao status --state " + str(fleet.state) + "`",
                           exit_code=EXIT_NOT_FOUND)
        return fleet
    default = home.root / "fleet"
    if args.name and home.keystore().exists(args.name):
        return None
    if (default / "identities.json").exists():
        fleet = _Fleet.at(default, args.db)
        if args.name is None or fleet.has(args.name):
            return fleet
    if args.name is None:
        raise CliError("which DAO? give the name of its identity, or --state DIR of a fleet", code="no_dao",
                       hint="`depai dao status NAME`, or `depai dao status --state DIR` for the DAO `depai up` "
                            "founded", exit_code=EXIT_USAGE)
    raise CliError(f"no identity named {args.name!r} for the DAO in the keystore of {home.root}", code="no_dao",
                   hint=f"found one with `depai id new {args.name}` and `depai dao create {args.name} ...`; for the "
                        "DAO of a fleet `depai up` runs, pass `--state DIR` (its state directory)",
                   exit_code=EXIT_NOT_FOUND)


def _open(args: argparse.Namespace, home: Home, *, write: bool) -> tuple[Dao, Ledger]:
    """The DAO's ledger (signed with its key when writing) and the DAO."""
    fleet = _fleet(args, home)
    if fleet is not None:
        signer = fleet.signer("ledger") if write and fleet.has("ledger") else None
        ledger = Ledger.open(fleet.ledger_url, signer)
        return Dao(ledger, fleet.did(args.name or "dao"), clock=_clock(ledger)), ledger
    keystore, clock = home.keystore(), _clock()
    signer, did, _ = unlock(keystore, args.name) if write else (None, did_of(keystore, args.name), None)
    url = args.db or f"sqlite:///{home.root / 'dao' / (args.name + '.sqlite3')}"
    ledger = Ledger.open(url, signer, origin=f"depai.local/dao/{args.name}")
    return Dao(ledger, did, clock=clock), ledger


def _clock(fleet_ledger: Ledger | None = None) -> Callable[[], float]:
    """The DAO's clock: the wall clock (a fleet's: never behind its newest ledger entry, as a fleet run faster
    than real time is ahead of the wall), or the fixed time ``DEPAI_DAO_NOW`` gives."""
    text = os.environ.get(NOW_ENV)
    if text is None and fleet_ledger is not None:
        size = fleet_ledger.size()
        ahead = fleet_ledger.entry(size).at_ms / 1000 if size else 0.0
        return lambda: max(time.time(), ahead)
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


def _did(home: Home, who: str, fleet: _Fleet | None = None) -> str:
    """A DID given as such, or the DID of a fleet's identity (with --state) or of an identity in the keystore."""
    if who.startswith("did:"):
        return who
    if fleet is not None:
        if fleet.has(who):
            return fleet.did(who)
        raise CliError(f"the fleet in {fleet.state} has no identity {who!r}", code="unknown_member",
                       hint=f"its members: {', '.join(fleet.members()) or 'none'}; or give a DID",
                       exit_code=EXIT_NOT_FOUND)
    return did_of(home.keystore(), who)


def _where(args: argparse.Namespace) -> str:
    """How to name this DAO again on the command line: ``NAME`` or ``--state DIR``."""
    return f"--state {args.state}" if args.state else (args.name or "--state DIR")


def _hint(args: argparse.Namespace, err: DaoError) -> str:
    """The next step after a refusal, by its reason."""
    where = _where(args)
    proposal = getattr(args, "proposal", None) or "ID"
    return {
        "not_active": f"votes are taken while a proposal is active: see its voting window in `depai dao status "
                      f"{where}`",
        "not_ready": f"a succeeded proposal is queued first, then executes once its timelock is over: run `depai dao "
                     f"execute {where} --proposal {proposal}` again then",
        "insufficient_treasury": "it executes once the treasury holds enough (revenue splits fill it), until it "
                                 f"expires; `depai dao status {where}` shows the balance",
        "not_a_member": f"only members vote and propose: `depai dao status {where}` lists them; a newcomer is "
                        f"proposed with `depai dao join {where} --as WHO --sponsor MEMBER --shares N`",
        "bad_action": "see the action kinds and their fields in docs/dao.md",
        "unknown_proposal": f"`depai dao status {where}` lists the proposals",
        "already_voted": "one vote per member and proposal",
        "no_dao": f"found it first with `depai dao create {args.name or 'NAME'} --member WHO=SHARES`",
    }.get(err.code, err.hint or f"see `depai dao status {where}`")


def _run(args: argparse.Namespace, home: Home, write: bool, work: Any) -> int:
    """Open the DAO, do ``work(dao)`` and print what it returns; refusals become clear errors."""
    dao, ledger = _open(args, home, write=write)
    try:
        result, text = work(dao)
    except DaoError as err:
        code = EXIT_CONFLICT if err.code in ("exists", "duplicate", "already_voted", "already_executed") \
            else EXIT_REFUSED
        raise CliError(str(err), code=err.code, hint=_hint(args, err), exit_code=code) from None
    finally:
        ledger.close()
    emit(result, as_json=args.json, text=text)
    return EXIT_OK


@contextmanager
def _member_key(args: argparse.Namespace, home: Home) -> Iterator[tuple[Signer, str, DidRegistry]]:
    """The member ``--as`` names: its key, its DID and the registry that resolves it (the fleet's with --state)."""
    fleet = _fleet(args, home)
    if fleet is None:
        signer, member, _ = unlock(home.keystore(), args.who)
        with home.registry() as registry:
            yield signer, member, registry
        return
    if not fleet.has(args.who):
        raise CliError(f"the fleet in {fleet.state} has no identity {args.who!r}", code="unknown_member",
                       hint=f"its members: {', '.join(fleet.members()) or 'none'}", exit_code=EXIT_NOT_FOUND)
    with fleet.registry() as registry:
        yield fleet.signer(args.who), fleet.did(args.who), registry


def cmd_create(args: argparse.Namespace, home: Home) -> int:
    """Found the DAO."""
    if args.state or args.name is None:
        raise CliError("`depai up` founds a fleet's DAO itself", code="fleet_dao",
                       hint="see it with `depai dao status --state DIR`; `depai dao create NAME` founds a DAO of a "
                            "keystore identity", exit_code=EXIT_USAGE)
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
    fleet = _fleet(args, home)
    newcomer, sponsor = _did(home, args.who, fleet), _did(home, args.sponsor, fleet)
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

    proposer = _did(home, args.who, _fleet(args, home))

    def work(dao: Dao) -> tuple[dict, str]:
        proposal = dao.propose(proposer, args.proposal, actions, args.description)
        return _proposal_json(proposal), f"depai dao: proposal {proposal.id} is {proposal.state}; votes open at " \
            f"{proposal.timeline.snapshot_s:.0f}"

    return _run(args, home, False, work)


def cmd_vote(args: argparse.Namespace, home: Home) -> int:
    """Sign a vote with the member's key and count it."""
    def work(dao: Dao) -> tuple[dict, str]:
        with _member_key(args, home) as (signer, member, registry):
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

    fleet = _fleet(args, home)

    def work(dao: Dao) -> tuple[dict, str]:
        proposal = dao.proposal(args.proposal)
        changes_fleet = [a.kind for a in proposal.actions if a.kind in FLEET_ACTIONS
                         or getattr(a, "name", None) == "fee_bps"]
        if fleet is not None and proposal.state != "succeeded" and changes_fleet:
            raise DaoError("fleet_action", f"proposal {proposal.id} changes the running fleet "
                                           f"({', '.join(changes_fleet)}): only the fleet's DAO keeper can do that",
                           hint="the keeper executes it on its own once the timelock is over, while `depai up` runs; "
                                f"`depai dao status {_where(args)}` says if it cannot and why")
        proposal = dao.queue(proposal.id) if proposal.state == "succeeded" else dao.execute(proposal.id)
        return _proposal_json(proposal), f"depai dao: proposal {proposal.id} is {proposal.state}"

    return _run(args, home, True, work)


def cmd_claim(args: argparse.Namespace, home: Home) -> int:
    """Distribute the revenue not yet split, then pay the member what it may claim."""
    member = _did(home, args.who, _fleet(args, home))

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
        proposals = [_proposal_json(p, dao) for p in dao.proposals()]
        status = {"dao": dao.did, "members": dao.members(), "params": asdict(params), "split": rules.as_dict(),
                  "fee_bps": fee, "balances": balances, "proposals": proposals}
        lines = [f"depai dao: {args.name or 'dao'} ({dao.did})",
                 "  members: " + ", ".join(f"{m} {s}" for m, s in status["members"].items()),
                 "  split: " + ", ".join(f"{k} {v / 100:g} %" for k, v in status["split"].items()),
                 *(f"  {account}: {amount / 100:.2f}" for account, amount in sorted(balances.items())),
                 *(f"  proposal {p['id']}: {p['state']} (for {p['for']}, against {p['against']}, "
                   f"abstain {p['abstain']})" + _why(p) for p in proposals)]
        return status, "\n".join(lines)

    return _run(args, home, False, work)


def _proposal_json(proposal: Any, dao: Dao | None = None) -> dict[str, Any]:
    out = {"id": proposal.id, "proposer": proposal.proposer, "state": str(proposal.state),
           "actions": [action.to_json() for action in proposal.actions], "for": proposal.tally.for_votes,
           "against": proposal.tally.against, "abstain": proposal.tally.abstain,
           "snapshot": proposal.timeline.snapshot_s, "deadline": proposal.timeline.deadline_s, "eta": proposal.eta_s,
           "execution_error": proposal.execution_error and proposal.execution_error.to_json()}
    if dao is not None:
        out["cost"] = dao.cost(proposal.actions).to_json()
    return out


def _why(p: dict[str, Any]) -> str:
    """Why a queued (or expired) proposal has not executed: its recorded refusal, or a cost the treasury cannot pay
    now; for an executed one, a fleet change that failed after it."""
    error = p["execution_error"]
    if error and p["state"] in ("queued", "expired", "executed"):  # executed: a fleet change that then failed
        what = "a problem" if p["state"] == "executed" else "not executed"
        return f"\n    {what} ({error['code']}, {error['attempts']} attempt(s)): {error['message']}"
    if p["state"] != "queued":
        return ""
    cost = p.get("cost")
    if cost and not cost["covered"]:
        return (f"\n    cannot execute yet: needs {cost['total'] / 100:.2f} {cost['currency']} from the treasury, "
                f"which holds {cost['treasury'] / 100:.2f}")
    return ""

