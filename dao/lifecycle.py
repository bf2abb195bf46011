"""A proposal's lifecycle in the manner of OpenZeppelin's Governor, on a fleet clock in seconds instead of blocks.

This is the logic of three OpenZeppelin contracts (openzeppelin-contracts,
contracts/governance/), with no storage of its own:

- ``Governor.sol`` ``state()``: executed, then canceled, win over the clock;
  ``snapshot >= clock()`` is Pending, ``deadline >= clock()`` is Active, then
  Defeated unless quorum is reached and the vote succeeded, Succeeded until
  queued. Its public ``cancel()`` is the proposer's, and only while Pending.
- ``extensions/GovernorCountingSimple.sol``: For, Against and Abstain; quorum
  counts For + Abstain, success needs For strictly over Against.
- ``extensions/GovernorVotesQuorumFraction.sol``: quorum is a fraction of the
  total supply at the snapshot, here in basis points (denominator 10,000).
- Queued and Expired after the timelock: ``GovernorTimelockCompound.state()``
  returns Expired once ``block.timestamp >= eta + GRACE_PERIOD``, else Queued.
  (``GovernorTimelockControl`` asks its timelock instead; a fleet has none, so
  the grace period is the DAO's own parameter.)

Boundary instants, OpenZeppelin's ``>=`` read with seconds for blocks: at
exactly ``snapshot_s`` a proposal is still PENDING and voting opens just after
it, because weights are read as they stood at the snapshot and a share change
stamped at that very instant still counts (dao/shares.py reads ``at_s <= t``);
at exactly ``deadline_s`` it is still ACTIVE; just after, it is decided. At
exactly ``eta_s + grace_period_s`` it is EXPIRED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import StrEnum

BPS = 10_000
SUPPORT = ("for", "against", "abstain")
_SECONDS = ("voting_delay_s", "voting_period_s", "timelock_s", "grace_period_s")
MAX_SECONDS = 10 * 365 * 86_400  # ten years: every delay and period fits the clock, and each instant stays distinct
MIN_WINDOW_S = 1.0  # the voting period and the grace period: a window that can close before anyone acts freezes it
MAX_SHARES = 2**53 - 1  # as the ledger bounds amounts (ERC20Votes caps total supply the same way, at 2**208 - 1)


class State(StrEnum):
    """Where a proposal stands, as in OpenZeppelin's ``IGovernor.ProposalState``."""

    PENDING = "pending"
    ACTIVE = "active"
    CANCELED = "canceled"
    DEFEATED = "defeated"
    SUCCEEDED = "succeeded"
    QUEUED = "queued"
    EXPIRED = "expired"
    EXECUTED = "executed"


def check_parameter(name: str, value: object) -> None:
    """Refuse a governance parameter outside its range, so Params and a proposal to change one agree."""
    if name in _SECONDS:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        low = MIN_WINDOW_S if name in ("voting_period_s", "grace_period_s") else 0
        if not low <= value <= MAX_SECONDS:
            raise ValueError(f"{name} must be from {low:g} to {MAX_SECONDS:,} seconds (ten years), got {value!r}")
    elif name == "quorum_bps":
        if type(value) is not int or not 0 <= value <= BPS:
            raise ValueError(f"{name} must be an integer from 0 to {BPS}, got {value!r}")
    elif name == "proposal_threshold":
        if type(value) is not int or not 0 <= value <= MAX_SHARES:
            raise ValueError(f"{name} must be an integer from 0 to {MAX_SHARES}, got {value!r}")
    else:
        raise ValueError(f"no governance parameter {name!r}")


@dataclass(frozen=True, slots=True)
class Params:
    """A DAO's governance settings; a proposal keeps the ones it was created under."""

    voting_delay_s: float
    voting_period_s: float
    quorum_bps: int
    timelock_s: float
    grace_period_s: float
    proposal_threshold: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            check_parameter(f.name, getattr(self, f.name))


def _weight(name: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Tally:
    """The votes cast so far, as GovernorCountingSimple counts them."""

    for_votes: int = 0
    against: int = 0
    abstain: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            _weight(f.name, getattr(self, f.name))

    def add(self, support: str, weight: int) -> Tally:
        """This tally with one more vote of ``weight`` for ``support`` ("for", "against" or "abstain")."""
        if support not in SUPPORT:
            raise ValueError(f"support must be one of {', '.join(SUPPORT)}, got {support!r}")
        _weight("weight", weight)
        if support == "for":
            return replace(self, for_votes=self.for_votes + weight)
        if support == "against":
            return replace(self, against=self.against + weight)
        return replace(self, abstain=self.abstain + weight)


@dataclass(frozen=True, slots=True)
class Timeline:
    """When a proposal was created, when its weights are read, and when its vote closes."""

    created_s: float
    snapshot_s: float
    deadline_s: float

    def __post_init__(self) -> None:
        if not all(map(math.isfinite, (self.created_s, self.snapshot_s, self.deadline_s))):
            raise ValueError(f"a timeline's instants must be finite, got {self!r}")
        if not self.created_s <= self.snapshot_s < self.deadline_s:
            raise ValueError(f"a timeline needs created_s <= snapshot_s < deadline_s, got {self!r}")


def timeline(created_s: float, params: Params) -> Timeline:
    """The timeline of a proposal created at ``created_s``, as OZ's ``_propose`` sets voteStart and voteDuration."""
    snapshot = created_s + params.voting_delay_s
    return Timeline(created_s, snapshot, snapshot + params.voting_period_s)


def quorum_reached(tally: Tally, total_supply_at_snapshot: int, quorum_bps: int) -> bool:
    """Whether For + Abstain reach ``quorum_bps`` of the supply at the snapshot, exactly in integers.

    OZ rounds the quorum down (``supply * numerator / denominator``); this
    compares the exact fraction, so a quorum never falls short by a rounding.
    """
    _weight("total_supply_at_snapshot", total_supply_at_snapshot)
    check_parameter("quorum_bps", quorum_bps)
    return (tally.for_votes + tally.abstain) * BPS >= quorum_bps * total_supply_at_snapshot


def vote_succeeded(tally: Tally) -> bool:
    """Whether For is strictly over Against (a tie is defeated), as GovernorCountingSimple decides."""
    return tally.for_votes > tally.against


def state(*, now: float, timeline: Timeline, tally: Tally, total_at_snapshot: int, quorum_bps: int,
          eta_s: float | None, grace_period_s: float, executed: bool, canceled: bool) -> State:
    """The proposal's state at ``now``: OZ ``Governor.state()`` plus GovernorTimelockCompound's Queued/Expired."""
    if executed:
        return State.EXECUTED
    if canceled:
        return State.CANCELED
    if now <= timeline.snapshot_s:  # OZ: snapshot >= clock() -> Pending
        return State.PENDING
    if now <= timeline.deadline_s:  # OZ: deadline >= clock() -> Active
        return State.ACTIVE
    if not (quorum_reached(tally, total_at_snapshot, quorum_bps) and vote_succeeded(tally)):
        return State.DEFEATED
    if eta_s is None:  # OZ: proposalEta == 0
        return State.SUCCEEDED
    if now >= eta_s + grace_period_s:  # GovernorTimelockCompound: timestamp >= eta + GRACE_PERIOD
        return State.EXPIRED
    return State.QUEUED


def can_vote(state: State) -> bool:
    """Whether votes are taken: only while ACTIVE (OZ ``_castVote``)."""
    return state == State.ACTIVE


def can_queue(state: State) -> bool:
    """Whether the proposal may be queued behind the timelock: only once SUCCEEDED (OZ ``queue``)."""
    return state == State.SUCCEEDED


def can_execute(state: State, now: float, eta_s: float | None) -> bool:
    """Whether the proposal may run now: QUEUED and its timelock has passed."""
    return state == State.QUEUED and eta_s is not None and now >= eta_s


def can_cancel(state: State) -> bool:
    """Whether the proposer may withdraw it: only while PENDING (OZ's public ``cancel``)."""
    return state == State.PENDING
