"""The revenue split of the fleet's earnings, in integer minor units, exact to the last unit.

A distribution splits ``amount + carry`` in two stages: each rule recipient (operator, maintenance
reserve, ..., and "members") gets floor(pot * bps / 10,000), then the members' part is divided among
the members floor(part * shares / total shares). What the floors leave over is the new carry, paid
in the next distribution, so every unit adds back exactly.

The carry stays bounded: with R rule recipients the first stage's remainders are R fractional parts
(each < 1) that add up to an integer, so they leave at most R - 1 units; likewise the members' stage
leaves at most M - 1 among M members. The carry after a distribution is thus below R + M whatever
carried in, unless no member holds shares: then the members' whole part carries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

BPS = 10_000
MEMBERS = "members"  # the rule recipient whose part is paid out pro rata to the members' shares
# The DAO's own accounts and every account kind of the ledger and the marketplace: a recipient named like one
# would post the split onto that account (a split paying "owner" moves the pot onto itself and never balances).
RESERVED = frozenset({"owner", "claimable", "member", "account", "bond", "customer", "dao", "escrow", "external",
                      "fees", "fund", "robot", "shares", "task", "world"})
_RECIPIENT = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_recipient(name: object) -> str:
    """``name`` if it may name a split recipient: 1 to 32 of a-z, 0-9, '_', '-' (a letter first), not reserved."""
    if type(name) is not str or not _RECIPIENT.fullmatch(name) or name in RESERVED:
        raise ValueError(f"a recipient is named by 1 to 32 lower-case letters, digits, '_' or '-' (a letter first), "
                         f"none of {', '.join(sorted(RESERVED))}; got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class SplitRules:
    """Basis points per recipient, summing to 10,000, one of them "members"."""

    shares: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not self.shares:
            raise ValueError("split rules need at least one recipient")
        names = [name for name, _ in self.shares]
        for name, bps in self.shares:
            check_recipient(name)
            if type(bps) is not int or bps < 0:
                raise ValueError(f"basis points of {name!r} must be an int >= 0, got {bps!r}")
            if names.count(name) > 1:
                raise ValueError(f"recipient {name!r} is named more than once")
        if MEMBERS not in names:
            raise ValueError(f'split rules need a recipient named "{MEMBERS}" for the members\' part, got {names}')
        total = sum(bps for _, bps in self.shares)
        if total != BPS:
            raise ValueError(f"basis points must sum to exactly {BPS}, but they sum to {total}")

    @classmethod
    def of(cls, mapping: Mapping[str, int]) -> SplitRules:
        """Rules from recipient -> basis points, sorted by name so equal splits compare equal."""
        return cls(tuple(sorted(mapping.items(), key=lambda item: str(item[0]))))

    def as_dict(self) -> dict[str, int]:
        """Recipient -> basis points, e.g. to store the rules as JSON."""
        return dict(self.shares)


@dataclass(frozen=True, slots=True)
class Distribution:
    """One distribution: payouts per rule recipient (but "members"), per member, and the carry for next time."""

    payouts: dict[str, int]
    to_members: dict[str, int]
    carry: int

    @property
    def total(self) -> int:
        """Everything paid plus the carry: the amount and the carry that went in."""
        return sum(self.payouts.values()) + sum(self.to_members.values()) + self.carry


def distribute(amount: int, rules: SplitRules, member_shares: Mapping[str, int], carry: int = 0) -> Distribution:
    """Split ``amount + carry`` by the rules and the members' part by their shares; what floors leave carries."""
    pot = _money("amount", amount) + _money("carry", carry)
    parts = {name: pot * bps // BPS for name, bps in sorted(rules.shares)}
    members_part = parts.pop(MEMBERS)
    holders = _holders(member_shares)
    total_shares = sum(holders.values())
    to_members = {member: members_part * shares // total_shares for member, shares in holders.items()}
    left = pot - sum(parts.values()) - sum(to_members.values())
    out = Distribution(parts, to_members, left)
    assert out.total == pot and min([left, *parts.values(), *to_members.values()]) >= 0, out
    return out


def _money(what: str, value: int) -> int:
    """``value`` if it is an int >= 0 of minor units: floats round and bools are no money."""
    if type(value) is not int:
        raise ValueError(f"{what} must be an int of minor units (not bool or float), got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _holders(member_shares: Mapping[str, int]) -> dict[str, int]:
    """The members with shares, sorted by id; members with 0 shares get nothing and are left out."""
    for member, shares in member_shares.items():
        if type(member) is not str or not member:
            raise ValueError(f"a member needs a non-empty id, got {member!r}")
        if type(shares) is not int or shares < 0:
            raise ValueError(f"shares of {member!r} must be an int >= 0, got {shares!r}")
    return {member: shares for member, shares in sorted(member_shares.items()) if shares > 0}
