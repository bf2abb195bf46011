"""The revenue split: rules, then members pro rata, in integer minor units, the floors' remainder carried exactly."""

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dao.split import BPS, RESERVED, Distribution, SplitRules, distribute

RULES = SplitRules.of({"operator": 2_000, "reserve": 1_000, "members": 7_000})
THREE = {"did:key:a": 1, "did:key:b": 1, "did:key:c": 1}


def test_worked_example_three_equal_members_and_the_unit_that_carries() -> None:
    first = distribute(1_000, RULES, THREE)
    assert first == Distribution({"operator": 200, "reserve": 100}, dict.fromkeys(THREE, 233), 1)
    second = distribute(0, RULES, THREE, carry=first.carry)  # 1 unit: every floor is 0, so it carries on
    assert second == Distribution({"operator": 0, "reserve": 0}, dict.fromkeys(THREE, 0), 1)
    third = distribute(9, RULES, THREE, carry=second.carry)  # 10 units: 2, 1 and 7 for 3 members, 2 each
    assert third == Distribution({"operator": 2, "reserve": 1}, dict.fromkeys(THREE, 2), 1)


def test_worked_example_uneven_shares_carry_both_stages_remainders() -> None:
    out = distribute(12_345, RULES, {"did:key:c": 1, "did:key:a": 3, "did:key:b": 2, "did:key:z": 0})
    # 2,469 + 1,234.5 + 8,641.5: one unit left; 8,641 * 3/6, 2/6, 1/6 = 4,320.5, 2,880.33, 1,440.17: one more
    assert out.payouts == {"operator": 2_469, "reserve": 1_234}
    assert out.to_members == {"did:key:a": 4_320, "did:key:b": 2_880, "did:key:c": 1_440}  # z, with 0, left out
    assert list(out.to_members) == ["did:key:a", "did:key:b", "did:key:c"]
    assert out.carry == 2 and out.total == 12_345


def test_without_members_holding_shares_the_members_part_carries() -> None:
    assert distribute(1_000, RULES, {}) == Distribution({"operator": 200, "reserve": 100}, {}, 700)
    assert distribute(1_001, RULES, {"did:key:a": 0}) == Distribution({"operator": 200, "reserve": 100}, {}, 701)
    later = distribute(0, RULES, THREE, carry=700)
    assert later.payouts == {"operator": 140, "reserve": 70} and later.to_members == dict.fromkeys(THREE, 163)
    assert later.carry == 1


def test_rules_are_sorted_by_name_and_read_back() -> None:
    assert RULES.shares == (("members", 7_000), ("operator", 2_000), ("reserve", 1_000))
    assert SplitRules.of(RULES.as_dict()) == RULES
    assert RULES.as_dict() == {"members": 7_000, "operator": 2_000, "reserve": 1_000}


@pytest.mark.parametrize(("shares", "message"), [
    ((), "at least one recipient"),
    ((("members", 9_000), ("", 1_000)), "a recipient is named by"),
    ((("members", 9_000), ("  ", 1_000)), "a recipient is named by"),
    ((("members", 9_000), (7, 1_000)), "a recipient is named by"),
    # Issue #21: a split paying "owner" posted the pot onto itself, and every distribution after it failed.
    ((("members", 9_000), ("owner", 1_000)), "none of .*owner"),
    ((("members", 9_000), ("claimable", 1_000)), "none of .*claimable"),
    ((("members", 9_000), ("ops:x", 1_000)), "a recipient is named by"),
    ((("members", 11_000), ("operator", -1_000)), "'operator' must be an int >= 0, got -1000"),
    ((("members", 9_000), ("operator", 1_000.0)), "'operator' must be an int >= 0, got 1000.0"),
    ((("members", 9_999), ("operator", True)), "'operator' must be an int >= 0, got True"),
    ((("members", 5_000), ("operator", 2_500), ("operator", 2_500)), "'operator' is named more than once"),
    ((("members", 5_000), ("members", 5_000)), "'members' is named more than once"),
    ((("operator", 10_000),), 'recipient named "members"'),
    ((("members", 7_000), ("operator", 2_000)), "must sum to exactly 10000, but they sum to 9000"),
    ((("members", 7_000), ("operator", 3_001)), "must sum to exactly 10000, but they sum to 10001"),
])
def test_invalid_rules_are_refused_saying_what_is_wrong(shares, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SplitRules(shares)


def test_invalid_rules_are_refused_from_a_mapping_too() -> None:
    with pytest.raises(ValueError, match="sum to 9999"):
        SplitRules.of({"members": 9_999})
    with pytest.raises(ValueError, match="a recipient is named by"):
        SplitRules.of({"members": 9_000, 1: 1_000})


@pytest.mark.parametrize("bad", [-1, 1.0, 2.5, True, False, "10", None])
def test_bad_amounts_and_carries_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="amount must be"):
        distribute(bad, RULES, THREE)
    with pytest.raises(ValueError, match="carry must be"):
        distribute(10, RULES, THREE, carry=bad)


@pytest.mark.parametrize(("members", "message"), [
    ({"did:key:a": -1}, "must be an int >= 0, got -1"),
    ({"did:key:a": 1.0}, "must be an int >= 0, got 1.0"),
    ({"did:key:a": True}, "must be an int >= 0, got True"),
    ({"": 1}, "non-empty id"),
])
def test_bad_member_shares_are_refused(members, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distribute(10, RULES, members)


# --- properties ----------------------------------------------------------------------------------------

AMOUNTS = st.integers(0, 10**15)
NAMES = st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(lambda n: n != "members" and n not in RESERVED), max_size=5,
                 unique=True)
MEMBER_IDS = st.from_regex(r"did:key:[a-z0-9]{1,6}", fullmatch=True)
HOLDERS = st.dictionaries(MEMBER_IDS, st.integers(1, 10**9), min_size=1, max_size=8)  # at least one with shares
ANY_MEMBERS = st.dictionaries(MEMBER_IDS, st.integers(0, 10**9), max_size=8)
ROUND_MEMBERS = st.lists(st.integers(0, 10**9), max_size=8).map(  # cheap to draw 50 times: ids m0, m1, ...
    lambda shares: {f"did:key:m{i}": n for i, n in enumerate(shares)})


@st.composite
def rules(draw) -> SplitRules:
    """Random rules: "members" and up to 5 other recipients, the 10,000 bps cut at random points."""
    names = ["members", *draw(NAMES)]
    cuts = sorted(draw(st.lists(st.integers(0, BPS), min_size=len(names) - 1, max_size=len(names) - 1)))
    bounds = [0, *cuts, BPS]
    return SplitRules.of({name: bounds[i + 1] - bounds[i] for i, name in enumerate(names)})


@given(AMOUNTS, rules(), ANY_MEMBERS, AMOUNTS)
def test_everything_adds_back_exactly(amount: int, split: SplitRules, members: dict[str, int], carry: int) -> None:
    out = distribute(amount, split, members, carry=carry)
    assert out.total == amount + carry
    assert min([out.carry, *out.payouts.values(), *out.to_members.values()]) >= 0
    assert list(out.payouts) == sorted(name for name, _ in split.shares if name != "members")
    assert list(out.to_members) == sorted(member for member, shares in members.items() if shares > 0)


@given(AMOUNTS, rules(), HOLDERS, AMOUNTS)
def test_the_carry_is_bounded_by_recipients_plus_members(amount: int, split: SplitRules, members: dict[str, int],
                                                         carry: int) -> None:
    """Each floor loses less than 1 unit and each stage's losses add up to an integer: at most R - 1 + M - 1."""
    out = distribute(amount, split, members, carry=carry)
    recipients = len(split.shares)
    assert out.carry <= (recipients - 1) + (len(members) - 1) < recipients + len(members)


@given(rules(), st.lists(st.tuples(AMOUNTS, ROUND_MEMBERS), min_size=50, max_size=50))
def test_fifty_distributions_pay_out_every_unit_once(split: SplitRules, rounds: list) -> None:
    """Members come and go and shares change; whatever is paid plus the final carry is all that came in."""
    paid: Counter[str] = Counter()
    carry = 0
    for amount, members in rounds:
        out = distribute(amount, split, members, carry=carry)
        paid.update(out.payouts)
        paid.update(out.to_members)
        carry = out.carry
        if out.to_members:
            assert carry < len(split.shares) + len(out.to_members)
    assert sum(paid.values()) + carry == sum(amount for amount, _ in rounds)


@given(AMOUNTS, rules(), HOLDERS, AMOUNTS)
def test_more_shares_never_get_less_in_the_same_distribution(amount: int, split: SplitRules,
                                                             members: dict[str, int], carry: int) -> None:
    pays = distribute(amount, split, members, carry=carry).to_members
    for a, shares_a in members.items():
        for b, shares_b in members.items():
            if shares_a > shares_b:
                assert pays[a] >= pays[b]
            if shares_a == shares_b:
                assert pays[a] == pays[b]
