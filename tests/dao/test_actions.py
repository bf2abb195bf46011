"""Proposal actions: every kind round-trips through JSON, and every bad field is refused by name."""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dao.actions import (
    KINDS,
    PARAMETERS,
    ActionError,
    AddMember,
    AdmitRobot,
    Burn,
    BuyRobot,
    ChangeSplit,
    Mint,
    RemoveMember,
    RetireRobot,
    SetParameter,
    Spend,
    parse_action,
    parse_actions,
)
from dao.lifecycle import Params

ALICE = "did:peaq:5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ROBOT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
PARAMS = Params(voting_delay_s=60.0, voting_period_s=600.0, quorum_bps=4_000, timelock_s=120.0, grace_period_s=3_600.0)

EXAMPLES = [
    ChangeSplit({"operator": 2_000, "reserve": 1_000, "treasury": 1_000, "members": 6_000}),
    ChangeSplit({"members": 10_000}),
    SetParameter("quorum_bps", 5_000),
    SetParameter("voting_period_s", 86_400.0),
    SetParameter("voting_delay_s", 0),
    SetParameter("proposal_threshold", 10),
    SetParameter("fee_bps", 250),
    BuyRobot("unitree-go2", 160_000, "EUR"),
    RetireRobot(ROBOT),
    AdmitRobot(ROBOT, KEY),
    Spend(ALICE, 5_000, "EUR"),
    Spend(ALICE, 1, "USD", "spare parts"),
    AddMember(ALICE, 10),
    RemoveMember(ALICE),
    Mint(ALICE, 5),
    Burn(ALICE, 40),
]


def test_every_kind_has_an_example() -> None:
    assert {a.kind for a in EXAMPLES} == set(KINDS) == {
        "change_split", "set_parameter", "buy_robot", "retire_robot", "admit_robot", "spend", "add_member",
        "remove_member", "mint", "burn"}


@pytest.mark.parametrize("action", EXAMPLES, ids=lambda a: a.kind)
def test_every_kind_round_trips_through_json(action) -> None:
    wire = action.to_json()
    assert next(iter(wire)) == "kind" and wire["kind"] == action.kind
    assert set(wire) == {"kind"} | {f.name for f in fields(action)}
    assert parse_action(wire) == action
    assert parse_action(json.loads(json.dumps(wire))) == action
    assert parse_actions([wire]) == (action,)
    hash(action)  # frozen actions can key a dict, even a split
    with pytest.raises(FrozenInstanceError):
        setattr(action, fields(action)[0].name, None)


def test_parsing_builds_the_same_action_as_code() -> None:
    assert parse_action({"kind": "mint", "member": ALICE, "shares": 5}) == Mint(member=ALICE, shares=5)
    assert parse_action({"kind": "spend", "to": ALICE, "amount": 7, "currency": "EUR"}) == Spend(ALICE, 7, "EUR", "")


def test_a_split_is_a_copy_the_caller_cannot_change() -> None:
    shares = {"members": 9_000, "treasury": 1_000}
    action = ChangeSplit(shares)
    shares["members"] = 1
    wire = action.to_json()
    wire["shares"]["members"] = 2
    assert action.shares == {"members": 9_000, "treasury": 1_000}


def test_an_action_error_is_a_value_error() -> None:
    assert issubclass(ActionError, ValueError)


_TOO_LONG = [{"kind": "retire_robot", "robot": ROBOT}] * 11


@pytest.mark.parametrize(("obj", "message"), [
    # the object and its kind
    (["kind", "mint"], "JSON object"),
    ({"member": ALICE, "shares": 1}, "action.kind"),
    ({"kind": "transfer", "to": ALICE}, "action.kind"),
    ({"kind": "Mint", "member": ALICE, "shares": 1}, "action.kind"),
    ({"kind": ["mint"], "member": ALICE, "shares": 1}, "action.kind"),
    # missing and extra fields
    ({"kind": "mint", "member": ALICE}, "mint.shares is missing"),
    ({"kind": "spend", "amount": 1, "currency": "EUR"}, "spend.to is missing"),
    ({"kind": "mint", "member": ALICE, "shares": 1, "reason": "x"}, "mint has no field 'reason'"),
    ({"kind": "retire_robot", "robot": ROBOT, "kind2": 1, "x": 2}, "retire_robot has no field 'kind2', 'x'"),
    # change_split
    ({"kind": "change_split", "shares": {"members": 9_999}}, "change_split.shares"),
    ({"kind": "change_split", "shares": {"members": 5_000, "treasury": 5_001}}, "change_split.shares"),
    ({"kind": "change_split", "shares": {"treasury": 10_000}}, "change_split.shares"),
    ({"kind": "change_split", "shares": {}}, "change_split.shares"),
    ({"kind": "change_split", "shares": [["members", 10_000]]}, "change_split.shares"),
    ({"kind": "change_split", "shares": {"members": 10_001, "treasury": -1}}, "change_split.shares['members']"),
    ({"kind": "change_split", "shares": {"members": 9_000, "treasury": 1_000.0}}, "change_split.shares['treasury']"),
    ({"kind": "change_split", "shares": {"members": 9_999, "treasury": True}}, "change_split.shares['treasury']"),
    ({"kind": "change_split", "shares": {"members": 9_000, " ": 1_000}}, "change_split.shares"),
    # set_parameter
    ({"kind": "set_parameter", "name": "quorum", "value": 1}, "set_parameter.name"),
    ({"kind": "set_parameter", "name": "quorum_bps", "value": 10_001}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "quorum_bps", "value": -1}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "quorum_bps", "value": 50.0}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "voting_period_s", "value": 0}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "voting_delay_s", "value": -1.0}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "timelock_s", "value": True}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "grace_period_s", "value": "3600"}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "proposal_threshold", "value": -5}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "fee_bps", "value": 10_001}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "fee_bps", "value": 2.5}, "set_parameter.value"),
    ({"kind": "set_parameter", "name": "fee_bps", "value": False}, "set_parameter.value"),
    # buy_robot
    ({"kind": "buy_robot", "model": "", "price": 1, "currency": "EUR"}, "buy_robot.model"),
    ({"kind": "buy_robot", "model": 7, "price": 1, "currency": "EUR"}, "buy_robot.model"),
    ({"kind": "buy_robot", "model": "go2", "price": 0, "currency": "EUR"}, "buy_robot.price"),
    ({"kind": "buy_robot", "model": "go2", "price": 1.5, "currency": "EUR"}, "buy_robot.price"),
    ({"kind": "buy_robot", "model": "go2", "price": True, "currency": "EUR"}, "buy_robot.price"),
    ({"kind": "buy_robot", "model": "go2", "price": 1, "currency": "eur"}, "buy_robot.currency"),
    ({"kind": "buy_robot", "model": "go2", "price": 1, "currency": "EURO"}, "buy_robot.currency"),
    # retire_robot and admit_robot
    ({"kind": "retire_robot", "robot": "robot-7"}, "retire_robot.robot"),
    ({"kind": "retire_robot", "robot": "did:key:"}, "retire_robot.robot"),
    ({"kind": "retire_robot", "robot": "DID:key:z6Mk"}, "retire_robot.robot"),
    ({"kind": "retire_robot", "robot": "did:key:z6Mk "}, "retire_robot.robot"),
    ({"kind": "admit_robot", "robot": "robot-7", "owner_key": KEY}, "admit_robot.robot"),
    ({"kind": "admit_robot", "robot": ROBOT, "owner_key": KEY[:-1]}, "admit_robot.owner_key"),
    ({"kind": "admit_robot", "robot": ROBOT, "owner_key": KEY.upper()}, "admit_robot.owner_key"),
    ({"kind": "admit_robot", "robot": ROBOT, "owner_key": "g" * 64}, "admit_robot.owner_key"),
    ({"kind": "admit_robot", "robot": ROBOT, "owner_key": 0}, "admit_robot.owner_key"),
    # spend
    ({"kind": "spend", "to": "alice", "amount": 1, "currency": "EUR"}, "spend.to"),
    ({"kind": "spend", "to": ALICE, "amount": 0, "currency": "EUR"}, "spend.amount"),
    ({"kind": "spend", "to": ALICE, "amount": -5, "currency": "EUR"}, "spend.amount"),
    ({"kind": "spend", "to": ALICE, "amount": True, "currency": "EUR"}, "spend.amount"),
    ({"kind": "spend", "to": ALICE, "amount": 1, "currency": "E1R"}, "spend.currency"),
    ({"kind": "spend", "to": ALICE, "amount": 1, "currency": "EUR", "memo": None}, "spend.memo"),
    # members and shares
    ({"kind": "add_member", "member": "alice", "shares": 1}, "add_member.member"),
    ({"kind": "add_member", "member": ALICE, "shares": 0}, "add_member.shares"),
    ({"kind": "add_member", "member": ALICE, "shares": True}, "add_member.shares"),
    ({"kind": "remove_member", "member": ""}, "remove_member.member"),
    ({"kind": "mint", "member": ALICE, "shares": -1}, "mint.shares"),
    ({"kind": "mint", "member": ALICE, "shares": 1.0}, "mint.shares"),
    ({"kind": "mint", "member": None, "shares": 1}, "mint.member"),
    ({"kind": "burn", "member": ALICE, "shares": False}, "burn.shares"),
    ({"kind": "burn", "member": ALICE, "shares": 0}, "burn.shares"),
])
def test_every_invalid_action_is_refused_naming_the_field(obj: object, message: str) -> None:
    with pytest.raises(ActionError, match=re.escape(message)):
        parse_action(obj)  # type: ignore[arg-type]


def test_actions_built_in_code_are_checked_too() -> None:
    with pytest.raises(ActionError, match="spend.amount"):
        Spend(ALICE, 0, "EUR")
    with pytest.raises(ActionError, match="mint.shares"):
        replace(Mint(ALICE, 1), shares=True)


def test_a_proposal_carries_one_to_ten_actions() -> None:
    one = {"kind": "retire_robot", "robot": ROBOT}
    assert parse_actions([one] * 10) == (RetireRobot(ROBOT),) * 10
    for bad, message in (([], "1 to 10"), (_TOO_LONG, "1 to 10"), (one, "JSON array"), ((one,), "JSON array")):
        with pytest.raises(ActionError, match=message):
            parse_actions(bad)  # type: ignore[arg-type]


def test_a_bad_action_in_a_list_is_named_by_its_position() -> None:
    good = {"kind": "mint", "member": ALICE, "shares": 1}
    with pytest.raises(ActionError, match=re.escape("actions[1]: burn.shares")):
        parse_actions([good, {"kind": "burn", "member": ALICE, "shares": 0}])


_values = (st.integers(-20_000, 20_000) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.text(max_size=3) | st.none())


@given(st.sampled_from([f.name for f in fields(Params)]), _values)
def test_set_parameter_accepts_exactly_what_params_accepts(name: str, value: object) -> None:
    try:
        replace(PARAMS, **{name: value})
    except ValueError:
        with pytest.raises(ActionError, match=f"set_parameter.value: {name}"):
            SetParameter(name, value)  # type: ignore[arg-type]
    else:
        assert parse_action(SetParameter(name, value).to_json()) == SetParameter(name, value)  # type: ignore[arg-type]


def test_every_parameter_name_is_settable() -> None:
    assert set(PARAMETERS) == {"voting_delay_s", "voting_period_s", "quorum_bps", "timelock_s", "grace_period_s",
                               "proposal_threshold", "fee_bps"}
