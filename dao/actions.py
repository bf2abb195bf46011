"""The typed actions a DAO proposal may carry, parsed from JSON with errors that name the field at fault.

A proposal holds one to ten actions. Each is a frozen dataclass with a
``kind`` and ``to_json()``; ``parse_action`` reads that JSON back to an equal
action and refuses unknown kinds, missing fields and fields it does not know.
Validation lives in each class, so an action built in code is checked too.
Parameter ranges are those of ``dao.lifecycle.Params``.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from dao.lifecycle import BPS, MAX_SHARES, Params, check_parameter
from dao.split import RESERVED, check_recipient
from identity.errors import DepaiError
from ledger.journal import MAX_AMOUNT

MAX_ACTIONS = 10
FLEET_PARAMETERS = ("fee_bps",)
PARAMETERS = tuple(f.name for f in fields(Params)) + FLEET_PARAMETERS
# W3C DID Core: "did:" method-name ":" method-specific-id, idchar = ALPHA / DIGIT / "." / "-" / "_" / pct-encoded.
_IDCHAR = r"(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})"
_DID = re.compile(rf"did:[a-z0-9]+:(?:{_IDCHAR}|:)*{_IDCHAR}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ED25519_HEX = re.compile(r"[0-9a-f]{64}")


class ActionError(DepaiError, ValueError):
    """A proposal action the DAO refuses; the message names the field at fault."""

    code = "bad_action"


def _fail(kind: str, name: str, expected: str, value: object) -> ActionError:
    return ActionError(f"{kind}.{name} must be {expected}, got {value!r}")


def _did(kind: str, name: str, value: object) -> None:
    if type(value) is not str or not _DID.fullmatch(value):
        raise _fail(kind, name, "a DID (did:<method>:<id>)", value)


def _positive(kind: str, name: str, value: object, most: int = MAX_AMOUNT) -> None:
    if type(value) is not int or not 0 < value <= most:
        raise _fail(kind, name, f"a positive integer up to {most}", value)


def _currency(kind: str, name: str, value: object) -> None:
    if type(value) is not str or not _CURRENCY.fullmatch(value):
        raise _fail(kind, name, "a currency code of 3 upper-case letters", value)


class _Action:
    """What every action shares: its kind and its JSON form."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """This action as a JSON object, ``kind`` first, that ``parse_action`` reads back to an equal action."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, dict) else value
        return out


@dataclass(frozen=True, slots=True)
class ChangeSplit(_Action):
    """Replace the revenue split: basis points per recipient, summing to 10,000, "members" among them."""

    kind: ClassVar[str] = "change_split"
    shares: dict[str, int] = field(hash=False)  # a dict is unhashable; equal splits still compare equal

    def __post_init__(self) -> None:
        if type(self.shares) is not dict or not self.shares:
            raise _fail(self.kind, "shares", "a non-empty object of recipient to basis points", self.shares)
        for name, bps in self.shares.items():
            try:
                check_recipient(name)
            except ValueError:
                raise _fail(self.kind, "shares", "keyed by recipient names of 1 to 32 lower-case letters, digits, "
                                                 f"'_' or '-', none of {', '.join(sorted(RESERVED))}", name) from None
            if type(bps) is not int or not 0 <= bps <= BPS:
                raise _fail(self.kind, f"shares[{name!r}]", f"an integer from 0 to {BPS}", bps)
        if "members" not in self.shares:
            raise _fail(self.kind, "shares", 'a split that includes "members"', self.shares)
        if sum(self.shares.values()) != BPS:
            raise _fail(self.kind, "shares", f"basis points summing to {BPS}", sum(self.shares.values()))
        object.__setattr__(self, "shares", dict(sorted(self.shares.items())))  # a copy the caller cannot change


@dataclass(frozen=True, slots=True)
class SetParameter(_Action):
    """Change one governance parameter (as in Params) or the fleet's marketplace fee, ``fee_bps``."""

    kind: ClassVar[str] = "set_parameter"
    name: str
    value: int | float

    def __post_init__(self) -> None:
        if self.name not in PARAMETERS:
            raise _fail(self.kind, "name", f"one of {', '.join(PARAMETERS)}", self.name)
        if self.name == "fee_bps":
            if type(self.value) is not int or not 0 <= self.value <= BPS:
                raise _fail(self.kind, "value", f"an integer from 0 to {BPS} for fee_bps", self.value)
            return
        try:
            check_parameter(self.name, self.value)
        except ValueError as err:
            raise ActionError(f"{self.kind}.value: {err}") from None


@dataclass(frozen=True, slots=True)
class BuyRobot(_Action):
    """Buy a new robot of ``model`` from the treasury, for ``price`` minor units of ``currency``."""

    kind: ClassVar[str] = "buy_robot"
    model: str
    price: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.model) is not str or not self.model.strip():
            raise _fail(self.kind, "model", "a non-empty model name", self.model)
        _positive(self.kind, "price", self.price)
        _currency(self.kind, "currency", self.currency)


@dataclass(frozen=True, slots=True)
class RetireRobot(_Action):
    """Take the robot with this DID out of service."""

    kind: ClassVar[str] = "retire_robot"
    robot: str

    def __post_init__(self) -> None:
        _did(self.kind, "robot", self.robot)


@dataclass(frozen=True, slots=True)
class AdmitRobot(_Action):
    """Admit an external, real robot to the fleet by its DID and its Ed25519 public key (64 lower-case hex)."""

    kind: ClassVar[str] = "admit_robot"
    robot: str
    owner_key: str

    def __post_init__(self) -> None:
        _did(self.kind, "robot", self.robot)
        if type(self.owner_key) is not str or not _ED25519_HEX.fullmatch(self.owner_key):
            raise _fail(self.kind, "owner_key", "an Ed25519 public key as 64 lower-case hex characters",
                        self.owner_key)


@dataclass(frozen=True, slots=True)
class Spend(_Action):
    """Pay ``amount`` minor units of ``currency`` from the treasury to the DID ``to``."""

    kind: ClassVar[str] = "spend"
    to: str
    amount: int
    currency: str
    memo: str = ""

    def __post_init__(self) -> None:
        _did(self.kind, "to", self.to)
        _positive(self.kind, "amount", self.amount)
        _currency(self.kind, "currency", self.currency)
        if type(self.memo) is not str:
            raise _fail(self.kind, "memo", "a string", self.memo)


@dataclass(frozen=True, slots=True)
class _MemberShares(_Action):
    """An action on one member's voting shares: which member, how many shares."""

    member: str
    shares: int

    def __post_init__(self) -> None:
        _did(self.kind, "member", self.member)
        _positive(self.kind, "shares", self.shares, MAX_SHARES)


@dataclass(frozen=True, slots=True)
class AddMember(_MemberShares):
    """Admit a member by DID with a first grant of voting shares."""

    kind: ClassVar[str] = "add_member"


@dataclass(frozen=True, slots=True)
class RemoveMember(_Action):
    """Remove a member by DID, with all the voting shares it holds."""

    kind: ClassVar[str] = "remove_member"
    member: str

    def __post_init__(self) -> None:
        _did(self.kind, "member", self.member)


@dataclass(frozen=True, slots=True)
class Mint(_MemberShares):
    """Grant a member more voting shares."""

    kind: ClassVar[str] = "mint"


@dataclass(frozen=True, slots=True)
class Burn(_MemberShares):
    """Take voting shares from a member."""

    kind: ClassVar[str] = "burn"


Action = (ChangeSplit | SetParameter | BuyRobot | RetireRobot | AdmitRobot | Spend | AddMember | RemoveMember | Mint
          | Burn)
KINDS: dict[str, type[Action]] = {cls.kind: cls for cls in (ChangeSplit, SetParameter, BuyRobot, RetireRobot,
                                                             AdmitRobot, Spend, AddMember, RemoveMember, Mint, Burn)}


def parse_action(obj: dict) -> Action:
    """The action a JSON object describes, refusing unknown kinds, missing fields and extra fields."""
    if type(obj) is not dict:
        raise ActionError(f"an action must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if type(kind) is not str or kind not in KINDS:
        raise ActionError(f"action.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cls = KINDS[kind]
    known = {f.name: f for f in fields(cls)}
    extra = sorted(repr(k) for k in obj if k != "kind" and k not in known)
    if extra:
        raise ActionError(f"{kind} has no field {', '.join(extra)}")
    for name, f in known.items():
        if name not in obj and f.default is MISSING:
            raise ActionError(f"{kind}.{name} is missing")
    return cls(**{k: v for k, v in obj.items() if k != "kind"})


def parse_actions(objs: list) -> tuple[Action, ...]:
    """A proposal's actions, one to ten of them, each parsed by ``parse_action``."""
    if type(objs) is not list:
        raise ActionError(f"actions must be a JSON array, got {type(objs).__name__}")
    if not 1 <= len(objs) <= MAX_ACTIONS:
        raise ActionError(f"a proposal carries 1 to {MAX_ACTIONS} actions, got {len(objs)}")
    parsed = []
    for i, obj in enumerate(objs):
        try:
            parsed.append(parse_action(obj))
        except ActionError as err:
            raise ActionError(f"actions[{i}]: {err}") from None
    return tuple(parsed)
