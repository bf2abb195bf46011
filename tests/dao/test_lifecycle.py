"""The proposal lifecycle: OpenZeppelin Governor's states, boundary instants and exact quorum arithmetic."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dao.lifecycle import (
    Params,
    State,
    Tally,
    Timeline,
    can_cancel,
    can_execute,
    can_queue,
    can_vote,
    quorum_reached,
    state,
    timeline,
    vote_succeeded,
)

PARAMS = Params(voting_delay_s=60.0, voting_period_s=600.0, quorum_bps=4_000, timelock_s=120.0, grace_period_s=3_600.0)
LINE = timeline(1_000.0, PARAMS)  # created 1,000; snapshot 1,060; deadline 1,660
WON = Tally(for_votes=50, against=10)  # of 100 at the snapshot: quorum and success
LOST = Tally(for_votes=10, against=50)
ETA = 1_800.0


def _state(now: float, tally: Tally = WON, eta_s: float | None = None, *, executed: bool = False,
           canceled: bool = False, total: int = 100) -> State:
    return state(now=now, timeline=LINE, tally=tally, total_at_snapshot=total, quorum_bps=PARAMS.quorum_bps,
                 eta_s=eta_s, grace_period_s=PARAMS.grace_period_s, executed=executed, canceled=canceled)


def _after(t: float) -> float:
    return math.nextafter(t, math.inf)


def _before(t: float) -> float:
    return math.nextafter(t, -math.inf)


# --- parameters ---------------------------------------------------------------------------------------


def test_params_take_seconds_as_ints_or_floats_and_default_the_threshold() -> None:
    p = Params(voting_delay_s=0, voting_period_s=1, quorum_bps=0, timelock_s=0, grace_period_s=1)
    assert p.proposal_threshold == 0 and Params(0, 1.5, 10_000, 0.0, 1.0, 7).proposal_threshold == 7
    with pytest.raises(FrozenInstanceError):
        p.quorum_bps = 1  # type: ignore[misc]


@pytest.mark.parametrize(("change", "field"), [
    ({"voting_period_s": 0}, "voting_period_s"),
    ({"voting_period_s": -1.0}, "voting_period_s"),
    ({"voting_delay_s": -0.5}, "voting_delay_s"),
    ({"timelock_s": -1}, "timelock_s"),
    ({"grace_period_s": -1}, "grace_period_s"),
    ({"grace_period_s": math.inf}, "grace_period_s"),
    ({"voting_delay_s": math.nan}, "voting_delay_s"),
    ({"timelock_s": "120"}, "timelock_s"),
    ({"voting_period_s": True}, "voting_period_s"),
    ({"quorum_bps": -1}, "quorum_bps"),
    ({"quorum_bps": 10_001}, "quorum_bps"),
    ({"quorum_bps": 40.0}, "quorum_bps"),
    ({"quorum_bps": True}, "quorum_bps"),
    ({"proposal_threshold": -1}, "proposal_threshold"),
    ({"proposal_threshold": 1.5}, "proposal_threshold"),
    # Issue #21: values that would freeze governance for good, since undoing them would need a proposal.
    ({"voting_delay_s": 1e20}, "voting_delay_s"),  # snapshot and deadline round to the same float
    ({"voting_period_s": 0.5}, "voting_period_s"),  # a vote that closes before anyone can vote
    ({"grace_period_s": 0}, "grace_period_s"),  # queued proposals expire the instant their timelock ends
    ({"timelock_s": 10 * 365 * 86_400 + 1}, "timelock_s"),
    ({"proposal_threshold": 10**30}, "proposal_threshold"),
])
def test_params_refuse_out_of_range_values_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        replace(PARAMS, **change)


# --- tally and timeline -------------------------------------------------------------------------------


def test_a_tally_adds_votes_without_changing_itself() -> None:
    start = Tally()
    after = start.add("for", 5).add("against", 3).add("abstain", 2).add("for", 0)
    assert after == Tally(for_votes=5, against=3, abstain=2) and start == Tally(0, 0, 0)


@pytest.mark.parametrize(("support", "weight", "field"), [
    ("yes", 1, "support"), ("For", 1, "support"), ("for", -1, "weight"), ("for", 1.0, "weight"),
    ("for", True, "weight"),
])
def test_a_tally_refuses_unknown_support_and_bad_weights(support: str, weight: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Tally().add(support, weight)  # type: ignore[arg-type]


def test_a_tally_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="against"):
        Tally(against=-1)


def test_the_timeline_is_delay_then_period() -> None:
    assert LINE == Timeline(created_s=1_000.0, snapshot_s=1_060.0, deadline_s=1_660.0)
    assert timeline(5.0, replace(PARAMS, voting_delay_s=0)) == Timeline(5.0, 5.0, 605.0)


@pytest.mark.parametrize("bad", [(10.0, 9.0, 20.0), (0.0, 5.0, 5.0), (0.0, 1.0, math.inf), (math.nan, 1.0, 2.0)])
def test_a_timeline_must_run_forwards(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="timeline"):
        Timeline(*bad)


# --- quorum and success (GovernorCountingSimple) ------------------------------------------------------


def test_quorum_is_exact_integer_arithmetic_on_large_supplies() -> None:
    total = 10**30 + 7  # far beyond a float's 53 bits
    needed = -(-(3_333 * total) // 10_000)  # ceil(0.3333 * total), exactly
    assert quorum_reached(Tally(for_votes=needed), total, 3_333)
    assert not quorum_reached(Tally(for_votes=needed - 1), total, 3_333)
    assert quorum_reached(Tally(for_votes=needed - 10**12, abstain=10**12), total, 3_333)
    assert (needed - 1) / total >= 3_333 / 10_000  # where a float ratio would wrongly call it reached


@pytest.mark.parametrize(("tally", "total", "bps", "reached"), [
    (Tally(for_votes=40), 100, 4_000, True),  # exactly at quorum
    (Tally(for_votes=39), 100, 4_000, False),
    (Tally(for_votes=1, abstain=39), 100, 4_000, True),  # abstain counts toward quorum
    (Tally(for_votes=39, against=61), 100, 4_000, False),  # against does not
    (Tally(), 100, 0, True),  # a zero quorum is always met
    (Tally(), 0, 4_000, True),  # nothing to reach
    (Tally(for_votes=100), 100, 10_000, True),
    (Tally(for_votes=99, abstain=0), 100, 10_000, False),
    (Tally(for_votes=1), 3, 3_334, False),  # 1/3 < 33.34 %; OZ's rounded-down quorum (1) would pass it
])
def test_quorum_counts_for_and_abstain(tally: Tally, total: int, bps: int, reached: bool) -> None:
    assert quorum_reached(tally, total, bps) is reached


@pytest.mark.parametrize(("total", "bps"), [(-1, 4_000), (100, 10_001), (100, -1), (1.0, 4_000)])
def test_quorum_refuses_bad_inputs(total: object, bps: int) -> None:
    with pytest.raises(ValueError):
        quorum_reached(Tally(), total, bps)  # type: ignore[arg-type]


def test_for_must_exceed_against_and_abstain_does_not_help() -> None:
    assert vote_succeeded(Tally(for_votes=2, against=1))
    assert not vote_succeeded(Tally(for_votes=1, against=1))  # a tie is defeated
    assert not vote_succeeded(Tally(for_votes=0, abstain=100))
    assert not vote_succeeded(Tally())
    assert _state(_after(LINE.deadline_s), Tally(for_votes=30, against=30, abstain=40)) == State.DEFEATED
    assert _state(_after(LINE.deadline_s), Tally(abstain=100)) == State.DEFEATED  # quorum, no success
    assert _state(_after(LINE.deadline_s), Tally(for_votes=1, abstain=39)) == State.SUCCEEDED


def test_a_majority_without_quorum_is_defeated() -> None:
    assert _state(_after(LINE.deadline_s), Tally(for_votes=39)) == State.DEFEATED
    assert _state(_after(LINE.deadline_s), Tally(for_votes=40)) == State.SUCCEEDED


# --- states and boundary instants (Governor.state) ----------------------------------------------------


def test_pending_through_the_snapshot_instant_then_active() -> None:
    assert _state(LINE.created_s) == State.PENDING
    assert _state(LINE.snapshot_s) == State.PENDING  # OZ: snapshot >= clock() is Pending
    assert _state(_after(LINE.snapshot_s)) == State.ACTIVE


def test_active_through_the_deadline_instant_then_decided() -> None:
    assert _state(LINE.deadline_s, LOST) == State.ACTIVE  # OZ: deadline >= clock() is Active
    assert _state(LINE.deadline_s, WON) == State.ACTIVE
    assert _state(_after(LINE.deadline_s), LOST) == State.DEFEATED
    assert _state(_after(LINE.deadline_s), WON) == State.SUCCEEDED
    assert _state(1e12, LOST) == State.DEFEATED and _state(1e12, WON) == State.SUCCEEDED  # unqueued, it waits


def test_queued_until_the_grace_period_runs_out_then_expired() -> None:
    grace_end = ETA + PARAMS.grace_period_s
    assert _state(_after(LINE.deadline_s), eta_s=ETA) == State.QUEUED
    assert _state(ETA, eta_s=ETA) == State.QUEUED
    assert _state(_before(grace_end), eta_s=ETA) == State.QUEUED
    assert _state(grace_end, eta_s=ETA) == State.EXPIRED  # GovernorTimelockCompound: >= eta + GRACE_PERIOD
    assert _state(grace_end + 1e6, eta_s=ETA) == State.EXPIRED


def test_an_eta_does_not_rescue_a_defeated_proposal_or_start_one_early() -> None:
    assert _state(ETA, LOST, eta_s=ETA) == State.DEFEATED
    assert _state(LINE.deadline_s, eta_s=ETA) == State.ACTIVE


def test_a_zero_grace_period_expires_at_the_eta() -> None:
    line = state(now=ETA, timeline=LINE, tally=WON, total_at_snapshot=100, quorum_bps=4_000, eta_s=ETA,
                 grace_period_s=0.0, executed=False, canceled=False)
    assert line == State.EXPIRED


@pytest.mark.parametrize("now", [LINE.created_s, LINE.snapshot_s, _after(LINE.snapshot_s), LINE.deadline_s,
                                 _after(LINE.deadline_s), ETA, ETA + PARAMS.grace_period_s, 1e12])
@pytest.mark.parametrize("tally", [WON, LOST])
@pytest.mark.parametrize("eta_s", [None, ETA])
def test_executed_and_canceled_never_change_again(now: float, tally: Tally, eta_s: float | None) -> None:
    assert _state(now, tally, eta_s, executed=True) == State.EXECUTED
    assert _state(now, tally, eta_s, canceled=True) == State.CANCELED
    assert _state(now, tally, eta_s, executed=True, canceled=True) == State.EXECUTED  # OZ checks executed first


# --- what each state allows ---------------------------------------------------------------------------


@pytest.mark.parametrize("s", list(State))
def test_each_action_is_allowed_in_exactly_one_state(s: State) -> None:
    assert can_vote(s) is (s == State.ACTIVE)
    assert can_queue(s) is (s == State.SUCCEEDED)
    assert can_cancel(s) is (s == State.PENDING)
    assert can_execute(s, 1e12, ETA) is (s == State.QUEUED)


def test_execution_waits_for_the_eta() -> None:
    assert not can_execute(State.QUEUED, _before(ETA), ETA)
    assert can_execute(State.QUEUED, ETA, ETA)
    assert not can_execute(State.QUEUED, ETA, None)
    assert not can_execute(State.SUCCEEDED, ETA, ETA)


def test_states_are_their_lower_case_names() -> None:
    assert [str(s) for s in State] == ["pending", "active", "canceled", "defeated", "succeeded", "queued",
                                       "expired", "executed"]


# --- a proposal only moves forwards -------------------------------------------------------------------

_NEXT = {
    State.PENDING: {State.ACTIVE},
    State.ACTIVE: {State.DEFEATED, State.SUCCEEDED},
    State.SUCCEEDED: {State.QUEUED},
    State.QUEUED: {State.EXPIRED},
    State.DEFEATED: set(),
    State.EXPIRED: set(),
}


def _reachable(a: State) -> set[State]:
    seen, todo = {a}, [a]
    while todo:
        for b in _NEXT[todo.pop()] - seen:
            seen.add(b)
            todo.append(b)
    return seen


_seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
_windows = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)
_votes = st.integers(min_value=0, max_value=10**24)


@st.composite
def _proposals(draw: st.DrawFn) -> tuple:
    params = Params(voting_delay_s=draw(_seconds), voting_period_s=draw(_windows),
                    quorum_bps=draw(st.integers(0, 10_000)), timelock_s=draw(_seconds), grace_period_s=draw(_windows))
    line = timeline(draw(st.floats(0.0, 1e9)), params)
    tally = Tally(draw(_votes), draw(_votes), draw(_votes))
    total = draw(_votes)
    # Queued some time after the vote closed, or never; the eta is known only from then on.
    queued_at = draw(st.none() | st.floats(0.0, 1e6).map(lambda d: _after(line.deadline_s) + d))
    eta = None if queued_at is None else queued_at + params.timelock_s
    marks = [line.created_s, line.snapshot_s, line.deadline_s, _after(line.deadline_s)]
    if queued_at is not None:
        marks += [queued_at, eta, eta + params.grace_period_s]
    nows = draw(st.lists(st.sampled_from(marks) | st.floats(line.created_s, line.deadline_s + 3e6), min_size=2))
    return params, line, tally, total, queued_at, eta, sorted(nows)


@given(_proposals(), st.booleans(), st.booleans())
def test_the_state_only_moves_forwards_over_time(proposal: tuple, executed: bool, canceled: bool) -> None:
    params, line, tally, total, queued_at, eta, nows = proposal

    def at(now: float, **flags: bool) -> State:
        queued = queued_at is not None and now >= queued_at
        return state(now=now, timeline=line, tally=tally, total_at_snapshot=total, quorum_bps=params.quorum_bps,
                     eta_s=eta if queued else None, grace_period_s=params.grace_period_s,
                     executed=flags.get("executed", False), canceled=flags.get("canceled", False))

    seq = [at(now) for now in nows]
    for earlier, later in zip(seq, seq[1:]):
        assert later in _reachable(earlier), (earlier, later)
    if executed or canceled:
        final = State.EXECUTED if executed else State.CANCELED
        assert {at(now, executed=executed, canceled=canceled) for now in nows} == {final}
