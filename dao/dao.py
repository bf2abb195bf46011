"""The fleet-owning DAO: members and shares, revenue split and claims, proposals, votes and execution.

The DAO has a DID and owns robots: the marketplace pays what they earn into
``owner:<dao>``. ``distribute()`` splits that by the current rules (e.g.
operator, maintenance reserve, treasury, members) and the members' part pro
rata to their shares at that moment, in integer minor units; what cannot be
divided stays in ``owner:<dao>`` for next time. Members pull their share with
``claim()``. Everything moves through the ledger.

Governance follows OpenZeppelin's Governor (dao/lifecycle.py): a member with
enough shares proposes typed actions (dao/actions.py); after the voting delay
members vote with signed envelopes (one vote each, with the member's next
nonce), weighted by their voting shares at the snapshot; a succeeded proposal
is queued behind the timelock and executed once, in one transaction, with a
compare-and-set on the proposal. Parameters and the split change only by
executing a proposal. Actions that change the running fleet (buy, retire or
admit a robot; the marketplace fee) are handed to ``FleetHooks`` after the
commit, keyed by the proposal, so a hook can make itself idempotent.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from dao import actions as act
from dao.lifecycle import MAX_SHARES, Params, State, Tally, Timeline, can_cancel, can_execute, can_queue, can_vote, state, timeline
from dao.shares import VOTING, Shares
from dao.split import SplitRules, distribute
from identity.envelope import Envelope
from identity.errors import DepaiError
from ledger.db import Cursor
from ledger.journal import Ledger, LedgerError

VOTE_KIND = "dao.vote"
SUPPORT = ("for", "against", "abstain")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS dao_config (
        version INTEGER PRIMARY KEY, params TEXT NOT NULL, rules TEXT NOT NULL, fee_bps INTEGER, at_s DOUBLE PRECISION,
        by_proposal TEXT)""",
    """CREATE TABLE IF NOT EXISTS dao_proposals (
        id TEXT PRIMARY KEY, proposer TEXT NOT NULL, actions TEXT NOT NULL, description TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL, snapshot_s DOUBLE PRECISION NOT NULL, deadline_s DOUBLE PRECISION NOT NULL,
        params TEXT NOT NULL, eta_s DOUBLE PRECISION, executed INTEGER NOT NULL DEFAULT 0,
        canceled INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS dao_votes (
        proposal TEXT NOT NULL, member TEXT NOT NULL, support TEXT NOT NULL, weight BIGINT NOT NULL,
        nonce BIGINT NOT NULL, PRIMARY KEY (proposal, member))""",
    "CREATE TABLE IF NOT EXISTS dao_nonces (member TEXT PRIMARY KEY, used BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dao_robots (robot TEXT PRIMARY KEY, origin TEXT NOT NULL, retired INTEGER NOT NULL)",
    # Why a queued proposal's execution was refused, the last time it was tried (kept until it executes).
    """CREATE TABLE IF NOT EXISTS dao_execution_failures (
        proposal TEXT PRIMARY KEY, code TEXT NOT NULL, message TEXT NOT NULL, at_s DOUBLE PRECISION NOT NULL,
        attempts BIGINT NOT NULL)""",
    # Terms the fleet's keeper states for every reader of the DAO (the dashboard has no hooks): the robot bond.
    "CREATE TABLE IF NOT EXISTS dao_terms (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    # Each revenue split, the last ledger entry it accounts for (the next split starts after it), and the instant
    # whose holders own what its floors left over.
    """CREATE TABLE IF NOT EXISTS dao_splits (
        key TEXT PRIMARY KEY, through_seq BIGINT NOT NULL, carry_s DOUBLE PRECISION NOT NULL)""",
]


class DaoError(DepaiError, ValueError):
    """A request the DAO refuses; ``code`` names the reason and nothing changed."""

    code = "dao_refused"

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint)


class FleetHooks(Protocol):
    """What executing a proposal may do to the running fleet (launch provides it)."""

    bond: int  # what a robot the DAO buys posts as its marketplace bond, paid from the treasury with the price

    def buy_robot(self, proposal: str, model: str) -> str:
        """Add a robot of ``model`` to the fleet, owned by the DAO; its DID."""

    def retire_robot(self, robot: str) -> None:
        """Take a robot out of service."""

    def admit_robot(self, proposal: str, robot: str, owner_key: str) -> None:
        """Let an external, real robot's DID join the fleet."""

    def set_fee(self, fee_bps: int) -> None:
        """Change the marketplace's fee."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal as the DAO holds it, with its state now."""

    id: str
    proposer: str
    actions: tuple[act.Action, ...]
    description: str
    timeline: Timeline
    params: Params
    eta_s: float | None
    executed: bool
    canceled: bool
    tally: Tally
    state: State
    execution_error: ExecutionFailure | None = None  # why its last execution was refused, or its fleet effect failed


@dataclass(frozen=True, slots=True)
class ExecutionFailure:
    """A queued proposal's refused execution: the typed reason, what it says, when last tried and how often."""

    code: str
    message: str
    at_s: float
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at_s": self.at_s, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class Cost:
    """What executing a proposal takes from the treasury: each action's price and bond, against the balance."""

    currency: str
    lines: tuple[dict[str, Any], ...]  # {index, kind, price, bond, total} for each action that costs money
    total: int
    treasury: int

    @property
    def covered(self) -> bool:
        return self.total <= self.treasury

    def to_json(self) -> dict[str, Any]:
        return {"currency": self.currency, "lines": [dict(line) for line in self.lines], "total": self.total,
                "treasury": self.treasury, "covered": self.covered, "shortfall": max(0, self.total - self.treasury)}


class Dao:
    """One DAO in the ledger's database."""

    def __init__(self, ledger: Ledger, did: str, *, currency: str = "EUR", hooks: FleetHooks | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.did, self.currency, self.hooks, self.clock = ledger, did, currency, hooks, clock
        self.db = ledger.db
        self.db.script(_SCHEMA)
        self.shares = Shares(ledger, clock=clock)
        if hooks is not None and hooks.bond != self._stated_bond():
            bond = int(hooks.bond)
            self.db.run(lambda c: (c.execute("DELETE FROM dao_terms WHERE name = 'robot_bond'"),
                                   c.execute("INSERT INTO dao_terms (name, value) VALUES ('robot_bond', ?)", (bond,))))

    # --- creation and membership ---------------------------------------------------------------------

    def create(self, founders: dict[str, int], params: Params, rules: SplitRules, fee_bps: int = 500) -> None:
        """Found the DAO: its accounts, first parameters and split, and the founders' voting shares (once)."""
        if not founders:
            raise DaoError("no_members", "a DAO needs at least one founding member")

        def work(c: Cursor) -> None:
            if c.execute("SELECT 1 FROM dao_config").fetchone() is not None:
                raise DaoError("exists", "this DAO was created already")
            for name, _ in rules.shares:
                if name != "members":
                    self._account(name, c)
            self._account("owner", c)
            c.execute("INSERT INTO dao_config (version, params, rules, fee_bps, at_s, by_proposal) "
                      "VALUES (1, ?, ?, ?, ?, NULL)", (json.dumps(asdict(params)), json.dumps(rules.as_dict()),
                                                       fee_bps, self.clock()))
            for member, amount in sorted(founders.items()):
                self.shares.mint(member, amount, reason="founder", cursor=c)

        self.db.run(work)

    def params(self, *, cursor: Cursor | None = None) -> tuple[Params, SplitRules, int]:
        """The governance parameters, the revenue split and the marketplace fee in force now (read inside the
        caller's transaction when given its cursor)."""
        sql = "SELECT params, rules, fee_bps FROM dao_config ORDER BY version DESC LIMIT 1"
        rows = cursor.execute(sql).fetchall() if cursor is not None else self.db.read(sql)
        if not rows:
            raise DaoError("no_dao", "no DAO here yet: create it first")
        return Params(**json.loads(rows[0][0])), SplitRules.of(json.loads(rows[0][1])), int(rows[0][2])

    def members(self) -> dict[str, int]:
        """Members and their shares (voting and economic together) now."""
        return self.shares.holders()

    # --- revenue -------------------------------------------------------------------------------------

    def distribute(self, key: str) -> dict[str, int]:
        """Split what the DAO's robots earned since the last time; idempotent per ``key``. Returns the payouts.

        Revenue follows the shares of its time (docs/dao.md): each amount is split among the members as they
        held shares when it reached the DAO, so a member that joins just before a split earns nothing of the past.
        """
        _, rules, _ = self.params()

        def work(c: Cursor) -> dict[str, int]:
            owner = self._name("owner")
            pot = self.ledger.balance(owner, cursor=c)
            held = self.ledger.entry_by_key(f"dao:{self.did}:split:{key}", cursor=c)
            if held is not None or pot <= 0:
                return {}
            last = c.execute("SELECT through_seq, carry_s FROM dao_splits ORDER BY through_seq DESC LIMIT 1").fetchone()
            after, since = (0, 0.0) if last is None else (int(last[0]), float(last[1]))
            lines: dict[str, int] = {}
            parts = self._earned_by_holders(c, owner, pot, after, since)
            for at_s, amount in parts:
                split = distribute(amount, rules, self.shares.holders(at_s, cursor=c))
                for name, paid in split.payouts.items():
                    if paid:
                        account = self._account(name, c)
                        lines[account] = lines.get(account, 0) + paid
                for member, paid in split.to_members.items():
                    if paid:
                        account = self._claimable(member, c)
                        lines[account] = lines.get(account, 0) + paid
            paid = sum(lines.values())
            if paid == 0:
                return {}
            lines[owner] = -paid  # the floors' remainders stay in the owner account for next time
            entry = self.ledger.post(f"dao:{self.did}:split:{key}", lines, kind="dao.split",
                                     memo=f"revenue split {key}", refs={"dao": self.did}, cursor=c)
            # The remainders belong to the earliest holders they came from: a later member never receives them.
            c.execute("INSERT INTO dao_splits (key, through_seq, carry_s) VALUES (?, ?, ?)",
                      (key, entry.seq, min(at_s for at_s, _ in parts)))
            return {account: amount for account, amount in lines.items() if amount > 0}

        return self.db.run(work)

    def _earned_by_holders(self, c: Cursor, owner: str, pot: int, after: int, since: float) -> list[tuple[float, int]]:
        """The pot cut by who held shares when each part of it arrived: (instant whose holders share it, amount).

        Between two share changes the holders are the same, so the owner account's postings after the last split
        (entry ``after``) are summed per such interval; what the last split left over is shared by the holders
        at ``since``, the earliest instant it came from. An interval that paid out more than came in (a bond
        posted from the pot) is netted against the parts before it, then after it, so every amount is >= 0 and
        they add up to ``pot``.
        """
        moves = self.ledger.movements(owner, after=after, cursor=c)
        until = max([since, self.clock(), *(at_ms / 1000 for _, at_ms, _ in moves)])
        bounds = [since, *self.shares.changed_between(since, until, cursor=c)]
        amounts = [0] * len(bounds)
        amounts[0] = pot - sum(amount for _, _, amount in moves)
        for _, at_ms, amount in moves:
            amounts[max(0, bisect.bisect_right(bounds, at_ms / 1000) - 1)] += amount
        for i in range(len(amounts) - 1, 0, -1):
            if amounts[i] < 0:
                amounts[i - 1] += amounts[i]
                amounts[i] = 0
        for i in range(len(amounts) - 1):
            if amounts[i] < 0:
                amounts[i + 1] += amounts[i]
                amounts[i] = 0
        return [(at, amount) for at, amount in zip(bounds, amounts, strict=True) if amount > 0]

    def claimable(self, member: str) -> int:
        """What ``member`` may claim now."""
        return self.ledger.balance(f"claimable:{self.did}:{member}", default=0)

    def claim(self, member: str) -> int:
        """Pay ``member`` everything it may claim, into its own account; how much (0: nothing to claim)."""

        def work(c: Cursor) -> int:
            claimable = self._claimable(member, c)
            amount = self.ledger.balance(claimable, cursor=c)
            if amount == 0:
                return 0
            wallet = f"member:{member}"
            self.ledger.open_account(wallet, self.currency, "member", owner=member, cursor=c)
            seq = self.ledger.postings_count(claimable, cursor=c)
            self.ledger.post(f"dao:{self.did}:claim:{member}:{seq}", {claimable: -amount, wallet: amount},
                             kind="dao.claim", memo=f"claim by {member}", refs={"dao": self.did, "member": member},
                             cursor=c)
            return amount

        return self.db.run(work)

    # --- governance ----------------------------------------------------------------------------------

    def propose(self, proposer: str, proposal_id: str, actions: list[dict[str, Any]], description: str) -> Proposal:
        """Open a proposal of typed actions; the proposer needs proposal_threshold voting shares now."""
        parsed = _parse(actions)
        params, _, _ = self.params()
        now = self.clock()
        if self.shares.balance_at(proposer, now) < max(params.proposal_threshold, 1):
            raise DaoError("not_a_member", f"{proposer} holds too few voting shares to propose")
        line = timeline(now, params)

        def work(c: Cursor) -> None:
            if c.execute("SELECT 1 FROM dao_proposals WHERE id = ?", (proposal_id,)).fetchone() is not None:
                raise DaoError("duplicate", f"proposal {proposal_id} exists")
            self._check_feasible(c, parsed, params)
            c.execute("INSERT INTO dao_proposals (id, proposer, actions, description, created_s, snapshot_s, "
                      "deadline_s, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (proposal_id, proposer, json.dumps([a.to_json() for a in parsed]), description,
                       line.created_s, line.snapshot_s, line.deadline_s, json.dumps(asdict(params))))

        self.db.run(work)
        return self.proposal(proposal_id)

    def _check_feasible(self, c: Cursor, actions: tuple[act.Action, ...], params: Params) -> None:
        """Refuse, before anything is written, a proposal that could not execute as things stand or would leave
        governance frozen: burns beyond what a member holds, mints past the supply cap, and parameters under which
        no member holds enough shares to propose again (undoing any of them would need a proposal)."""
        holdings = self.shares.holders(share_class=VOTING, cursor=c)
        for index, action in enumerate(actions):
            if isinstance(action, (act.AddMember, act.Mint)):
                holdings[action.member] = holdings.get(action.member, 0) + action.shares
                if sum(holdings.values()) > MAX_SHARES:
                    raise DaoError("bad_action", f"actions[{index}]: minting {action.shares} shares would take the "
                                                 f"total supply past {MAX_SHARES}")
            elif isinstance(action, act.Burn):
                if holdings.get(action.member, 0) < action.shares:
                    raise DaoError("bad_action", f"actions[{index}]: {action.member} holds "
                                                 f"{holdings.get(action.member, 0)} voting shares; cannot burn "
                                                 f"{action.shares}")
                holdings[action.member] -= action.shares
            elif isinstance(action, act.RemoveMember):
                holdings.pop(action.member, None)
            elif isinstance(action, act.SetParameter) and action.name != "fee_bps":
                params = replace(params, **{action.name: action.value})
        _check_live(holdings, params.proposal_threshold)

    def vote(self, envelope: Envelope) -> Proposal:
        """Count a member's verified, signed vote: once per proposal, with its next nonce, weighted at the snapshot."""
        if envelope.kind != VOTE_KIND:
            raise DaoError("wrong_kind", f"a vote is a {VOTE_KIND!r} envelope, not {envelope.kind!r}")
        body, member = envelope.body, envelope.issuer
        if not isinstance(body, dict) or body.get("dao") != self.did or body.get("support") not in SUPPORT \
                or type(body.get("nonce")) is not int or not isinstance(body.get("proposal"), str):
            raise DaoError("bad_vote", f"a vote body is {{dao: {self.did}, proposal, support: for|against|abstain, "
                                       "nonce: int}}")
        proposal = self.proposal(body["proposal"])
        if not can_vote(proposal.state):
            raise DaoError("not_active", f"proposal {proposal.id} is {proposal.state}, not open for votes")
        weight = self.shares.balance_at(member, proposal.timeline.snapshot_s)
        if weight == 0:
            raise DaoError("not_a_member", f"{member} held no voting shares at the proposal's snapshot")

        def work(c: Cursor) -> None:
            used = c.execute("SELECT used FROM dao_nonces WHERE member = ?", (member,)).fetchone()
            expected = 1 if used is None else int(used[0]) + 1
            if body["nonce"] != expected:
                raise DaoError("bad_nonce", f"{member}'s next vote nonce is {expected}, not {body['nonce']} "
                                            "(a replayed or out-of-order vote)")
            if c.execute("SELECT 1 FROM dao_votes WHERE proposal = ? AND member = ?",
                         (proposal.id, member)).fetchone() is not None:
                raise DaoError("already_voted", f"{member} already voted on {proposal.id}")
            c.execute("INSERT INTO dao_votes (proposal, member, support, weight, nonce) VALUES (?, ?, ?, ?, ?)",
                      (proposal.id, member, body["support"], weight, body["nonce"]))
            if used is None:
                c.execute("INSERT INTO dao_nonces (member, used) VALUES (?, ?)", (member, expected))
            else:
                c.execute("UPDATE dao_nonces SET used = ? WHERE member = ? AND used = ?", (expected, member, used[0]))

        self.db.run(work)
        return self.proposal(proposal.id)

    def next_nonce(self, member: str) -> int:
        """The nonce ``member``'s next vote must carry."""
        rows = self.db.read("SELECT used FROM dao_nonces WHERE member = ?", (member,))
        return 1 if not rows else int(rows[0][0]) + 1

    def queue(self, proposal_id: str) -> Proposal:
        """Queue a succeeded proposal behind the timelock (its eta is now + timelock)."""
        proposal = self.proposal(proposal_id)
        if not can_queue(proposal.state):
            raise DaoError("not_succeeded", f"proposal {proposal_id} is {proposal.state}; only a succeeded one queues")
        eta = self.clock() + proposal.params.timelock_s

        def work(c: Cursor) -> None:
            c.execute("UPDATE dao_proposals SET eta_s = ? WHERE id = ? AND eta_s IS NULL", (eta, proposal_id))
            if c.rowcount != 1:
                raise DaoError("already_queued", f"proposal {proposal_id} is queued already")

        self.db.run(work)
        return self.proposal(proposal_id)

    def cancel(self, proposal_id: str, by: str) -> Proposal:
        """The proposer withdraws a proposal still pending."""
        proposal = self.proposal(proposal_id)
        if by != proposal.proposer or not can_cancel(proposal.state):
            raise DaoError("cannot_cancel", f"only the proposer may cancel, and only while pending ({proposal.state})")
        self.db.run(lambda c: c.execute("UPDATE dao_proposals SET canceled = 1 WHERE id = ? AND canceled = 0",
                                        (proposal_id,)))
        return self.proposal(proposal_id)

    def robot_bond(self) -> int:
        """What each robot the DAO buys posts as its marketplace bond: the hooks' own, else what the keeper stated."""
        return int(self.hooks.bond) if self.hooks is not None else self._stated_bond()

    def _stated_bond(self) -> int:
        rows = self.db.read("SELECT value FROM dao_terms WHERE name = 'robot_bond'")
        return int(rows[0][0]) if rows else 0

    def cost(self, actions: tuple[act.Action, ...]) -> Cost:
        """What ``actions`` take from the treasury (a robot's price plus its bond; a spend), against its balance."""
        bond, lines = self.robot_bond(), []
        for index, action in enumerate(actions):
            if isinstance(action, act.BuyRobot):
                lines.append({"index": index, "kind": action.kind, "price": action.price, "bond": bond,
                              "total": action.price + bond})
            elif isinstance(action, act.Spend):
                lines.append({"index": index, "kind": action.kind, "price": action.amount, "bond": 0,
                              "total": action.amount})
        treasury = self.ledger.balance(self._name("treasury"), default=0)  # 0 before the account is opened
        return Cost(self.currency, tuple(lines), sum(line["total"] for line in lines), treasury)

    def execute(self, proposal_id: str) -> Proposal:
        """Execute a queued proposal whose timelock has passed: every action in one transaction, exactly once.

        A refusal (the treasury cannot pay for it, the ledger or an action's rules refuse it) changes nothing but
        the proposal's ``execution_error``: the typed reason stays visible while the proposal stays queued, and
        the DaoError raised names it. The next attempt may succeed (the treasury filled up in between).
        """
        proposal = self.proposal(proposal_id)
        if not can_execute(proposal.state, self.clock(), proposal.eta_s):
            raise DaoError("not_ready", f"proposal {proposal_id} is {proposal.state}"
                                        + (f" until {proposal.eta_s}" if proposal.state == State.QUEUED else ""))
        cost = self.cost(proposal.actions)
        if not cost.covered:
            parts = ", ".join(f"{line['kind']} {_money(line['price'], cost.currency)}"
                              + (f" + bond {_money(line['bond'], cost.currency)}" if line["bond"] else "")
                              for line in cost.lines)
            self._refused(proposal_id, DaoError(
                "insufficient_treasury",
                f"proposal {proposal_id} needs {_money(cost.total, cost.currency)} from the treasury ({parts}) but "
                f"it holds {_money(cost.treasury, cost.currency)}: {_money(cost.total - cost.treasury, cost.currency)}"
                " short", hint="it executes once the treasury can pay, until it expires"))
        after_commit: list[Callable[[], None]] = []

        def work(c: Cursor) -> None:
            after_commit.clear()
            c.execute("UPDATE dao_proposals SET executed = 1 WHERE id = ? AND executed = 0", (proposal_id,))
            if c.rowcount != 1:
                raise DaoError("already_executed", f"proposal {proposal_id} was executed already")
            for index, action in enumerate(proposal.actions):
                self._apply(c, proposal_id, index, action, after_commit)
            _check_live(self.shares.holders(share_class=VOTING, cursor=c), self.params(cursor=c)[0].proposal_threshold)

        try:
            self.db.run(work)
        except DaoError as err:
            if err.code == "already_executed":
                raise
            self._refused(proposal_id, err)
        except LedgerError as err:
            self._refused(proposal_id, DaoError("ledger_refused", f"proposal {proposal_id} cannot execute: {err}"))
        except ValueError as err:  # an action's rules (e.g. burning more shares than held, a parameter set invalid)
            self._refused(proposal_id, DaoError("invalid_action", f"proposal {proposal_id} cannot execute: {err}"))
        except Exception as err:  # noqa: BLE001 - whatever else failed rolled back: typed, kept, and the keeper goes on
            self._refused(proposal_id, DaoError("execution_failed", f"proposal {proposal_id} cannot execute: "
                                                                    f"{type(err).__name__}: {err}"))
        self.db.run(lambda c: c.execute("DELETE FROM dao_execution_failures WHERE proposal = ?", (proposal_id,)))
        failures = []
        for effect in after_commit:
            try:
                effect()
            except Exception as err:  # noqa: BLE001 - the fleet's own code: the keeper must go on, the reason kept
                failures.append(f"{type(err).__name__}: {err}")
        if failures:
            self._refused(proposal_id, DaoError("fleet_effect_failed", f"proposal {proposal_id} executed, but the "
                                                f"fleet could not apply it: {'; '.join(failures)}"))
        return self.proposal(proposal_id)

    def _apply(self, c: Cursor, proposal_id: str, index: int, action: act.Action,
               after_commit: list[Callable[[], None]]) -> None:
        """One action's effect inside the execution's transaction (fleet changes run after the commit)."""
        key = f"dao:{self.did}:{proposal_id}:{index}"
        if isinstance(action, (act.ChangeSplit, act.SetParameter)):
            self._reconfigure(c, proposal_id, action, after_commit)
        elif isinstance(action, act.Spend):
            wallet = self.ledger.open_account(f"external:{action.to}", action.currency, "external", owner=action.to,
                                              cursor=c).id
            self.ledger.post(key, {self._name("treasury"): -action.amount, wallet: action.amount},
                             kind="dao.spend", memo=action.memo or f"spend by proposal {proposal_id}",
                             refs={"dao": self.did, "proposal": proposal_id, "to": action.to}, cursor=c)
        elif isinstance(action, act.BuyRobot):
            vendor = self.ledger.open_account(f"world:{action.currency}", action.currency, "world",
                                              may_go_negative=True, cursor=c).id
            self.ledger.post(key, {self._name("treasury"): -action.price, vendor: action.price}, kind="dao.buy_robot",
                             memo=f"a {action.model} robot, by proposal {proposal_id}",
                             refs={"dao": self.did, "proposal": proposal_id}, cursor=c)
            if self.hooks is not None and self.hooks.bond:
                self.ledger.post(f"{key}:bond", {self._name("treasury"): -self.hooks.bond,
                                                 self._name("owner"): self.hooks.bond},
                                 kind="dao.robot_bond", memo=f"bond for the robot of proposal {proposal_id}",
                                 refs={"dao": self.did, "proposal": proposal_id}, cursor=c)
            if self.hooks is not None:
                hooks = self.hooks
                after_commit.append(lambda: self._robot(hooks.buy_robot(proposal_id, action.model), "bought"))
        elif isinstance(action, act.RetireRobot):
            if self.hooks is not None:
                hooks = self.hooks
                after_commit.append(lambda: hooks.retire_robot(action.robot))
        elif isinstance(action, act.AdmitRobot):
            if self.hooks is not None:
                hooks = self.hooks
                after_commit.append(lambda: hooks.admit_robot(proposal_id, action.robot, action.owner_key))
        elif isinstance(action, (act.AddMember, act.Mint)):
            self.shares.mint(action.member, action.shares, reason=f"proposal {proposal_id}", cursor=c)
        elif isinstance(action, act.Burn):
            self.shares.burn(action.member, action.shares, reason=f"proposal {proposal_id}", cursor=c)
        elif isinstance(action, act.RemoveMember):
            held = int(c.execute("SELECT COALESCE(SUM(delta), 0) FROM dao_shares WHERE member = ? AND class = ?",
                                 (action.member, VOTING)).fetchone()[0])
            if held:
                self.shares.burn(action.member, held, reason=f"removed by proposal {proposal_id}", cursor=c)
        else:  # pragma: no cover - parse_actions admits no other kind
            raise DaoError("unknown_action", f"no executor for {action!r}")

    def _reconfigure(self, c: Cursor, proposal_id: str, action: act.Action,
                     after_commit: list[Callable[[], None]]) -> None:
        """A new version of the parameters, the split or the fee: the only way they change."""
        row = c.execute("SELECT version, params, rules, fee_bps FROM dao_config ORDER BY version DESC LIMIT 1").fetchone()
        params, rules, fee = json.loads(row[1]), json.loads(row[2]), int(row[3])
        if isinstance(action, act.ChangeSplit):
            rules = SplitRules.of(action.shares).as_dict()
        elif action.name == "fee_bps":
            fee = int(action.value)
            if self.hooks is not None:
                hooks = self.hooks
                after_commit.append(lambda: hooks.set_fee(fee))
        else:
            params[action.name] = action.value
            Params(**params)  # the new set must still be valid
        c.execute("INSERT INTO dao_config (version, params, rules, fee_bps, at_s, by_proposal) VALUES (?, ?, ?, ?, ?, ?)",
                  (int(row[0]) + 1, json.dumps(params), json.dumps(rules), fee, self.clock(), proposal_id))

    def _refused(self, proposal_id: str, err: DaoError) -> None:
        """Record why ``proposal_id``'s execution was refused (nothing else changed), then raise ``err``."""
        message, at = str(err), self.clock()

        def work(c: Cursor) -> None:
            row = c.execute("SELECT attempts FROM dao_execution_failures WHERE proposal = ?", (proposal_id,)).fetchone()
            attempts = 1 if row is None else int(row[0]) + 1
            c.execute("DELETE FROM dao_execution_failures WHERE proposal = ?", (proposal_id,))
            c.execute("INSERT INTO dao_execution_failures (proposal, code, message, at_s, attempts) "
                      "VALUES (?, ?, ?, ?, ?)", (proposal_id, err.code, message, at, attempts))

        self.db.run(work)
        raise err from None

    def execution_error(self, proposal_id: str) -> ExecutionFailure | None:
        """Why ``proposal_id``'s last execution was refused, if it was and it has not executed since."""
        rows = self.db.read("SELECT code, message, at_s, attempts FROM dao_execution_failures WHERE proposal = ?",
                            (proposal_id,))
        return None if not rows else ExecutionFailure(rows[0][0], rows[0][1], float(rows[0][2]), int(rows[0][3]))

    def proposal(self, proposal_id: str) -> Proposal:
        """The proposal with its tally and its state now."""
        rows = self.db.read("SELECT id, proposer, actions, description, created_s, snapshot_s, deadline_s, params, "
                            "eta_s, executed, canceled FROM dao_proposals WHERE id = ?", (proposal_id,))
        if not rows:
            raise DaoError("unknown_proposal", f"no proposal {proposal_id}")
        r = rows[0]
        tally = Tally()
        for support, weight in self.db.read("SELECT support, weight FROM dao_votes WHERE proposal = ?",
                                            (proposal_id,)):
            tally = tally.add(support, int(weight))
        params = Params(**json.loads(r[7]))
        line = Timeline(float(r[4]), float(r[5]), float(r[6]))
        eta = None if r[8] is None else float(r[8])
        now_state = state(now=self.clock(), timeline=line, tally=tally,
                          total_at_snapshot=self.shares.total_at(line.snapshot_s), quorum_bps=params.quorum_bps,
                          eta_s=eta, grace_period_s=params.grace_period_s, executed=bool(r[9]), canceled=bool(r[10]))
        failure = self.execution_error(proposal_id)  # once executed, only a fleet effect that failed after it
        return Proposal(r[0], r[1], act.parse_actions(json.loads(r[2])), r[3], line, params, eta, bool(r[9]),
                        bool(r[10]), tally, now_state, failure)

    def votes(self, proposal_id: str) -> list[tuple[str, str, int]]:
        """The votes cast on a proposal: (member, support, weight), by member."""
        return [(member, support, int(weight)) for member, support, weight in self.db.read(
            "SELECT member, support, weight FROM dao_votes WHERE proposal = ? ORDER BY member", (proposal_id,))]

    def proposals(self) -> list[Proposal]:
        """Every proposal, oldest first."""
        return [self.proposal(pid) for (pid,) in self.db.read("SELECT id FROM dao_proposals ORDER BY created_s, id")]

    # --- plumbing ------------------------------------------------------------------------------------

    def _robot(self, robot: str, origin: str) -> None:
        self.db.run(lambda c: c.execute("INSERT INTO dao_robots (robot, origin, retired) VALUES (?, ?, 0)",
                                        (robot, origin)))

    def _name(self, role: str) -> str:
        return f"{role}:{self.did}"

    def _account(self, role: str, c: Cursor) -> str:
        return self.ledger.open_account(self._name(role), self.currency, role, owner=self.did, cursor=c).id

    def _claimable(self, member: str, c: Cursor) -> str:
        return self.ledger.open_account(f"claimable:{self.did}:{member}", self.currency, "claimable", owner=member,
                                        cursor=c).id


def _check_live(voting: dict[str, int], threshold: int) -> None:
    """Refuse a state in which no member holds the voting shares to propose: governance could never move again."""
    most = max(voting.values(), default=0)
    if most < max(threshold, 1):
        raise DaoError("would_freeze", f"afterwards no member would hold the {max(threshold, 1)} voting shares "
                                       f"a proposal needs (the most any member would hold is {most}), and undoing "
                                       "that would need a proposal", hint="keep proposal_threshold at or below "
                                       "what some member holds, and keep at least one member with shares")


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}"


def _parse(actions: list[dict[str, Any]]) -> tuple[act.Action, ...]:
    try:
        return act.parse_actions(actions)
    except act.ActionError as err:
        raise DaoError("bad_action", str(err)) from None
