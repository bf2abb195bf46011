"""Issue #21: every money-moving method of the marketplace checks its own inputs, whoever calls it, and bonds mean
something (a minimum, top-ups with their own keys, nothing posted for a retired robot, its remainder released).

The attacker calls the class directly with envelopes whose bodies skipped the bus schema (``_replace``), as a
colluding service or a bug in another caller would.
"""

from __future__ import annotations

import pytest

from marketplace.market import AWARDED, MIN_BOND, REFUNDED, MarketError
from tests.marketplace.test_market import World


@pytest.fixture
def world(registry, clock, database_url):
    made = World(registry, clock, database_url)
    yield made
    made.ledger.close()


def refused(code: str, call, *args, **kwargs) -> MarketError:
    """``call`` is refused with ``code`` and the ledger does not move."""
    before = call.__self__.ledger.balances()
    with pytest.raises(MarketError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    assert call.__self__.ledger.balances() == before, "a refusal moved money"
    return caught.value


@pytest.mark.parametrize("price", [-400, 0, 1.5, True, "600", 1_001])
def test_a_bid_outside_1_to_the_max_price_is_refused_by_the_class_itself(world, price) -> None:
    """A bid of -400 awarded through award_to used to move -20 from the fees, -380 from the owner, +1,400 to the
    customer on settlement."""
    world.post()
    good = world.signed(world.robots[0], "bid", {"task": "t1", "price": 600, "currency": "EUR", "eta_ms": 1_000})
    refused("bad_price", world.market.bid, good._replace(body={**good.body, "price": price}))
    assert world.market.offers("t1") == []
    with pytest.raises(MarketError) as no_bid:
        world.market.award_to("t1", world.robots[0].did)
    assert no_bid.value.code == "no_bid"


def test_a_bid_with_a_negative_or_fractional_eta_is_refused(world) -> None:
    world.post()
    good = world.signed(world.robots[0], "bid", {"task": "t1", "price": 600, "currency": "EUR", "eta_ms": 1_000})
    for eta in (-1, 0.5, None):
        refused("bad_eta", world.market.bid, good._replace(body={**good.body, "eta_ms": eta}))


def test_a_task_and_a_deposit_must_be_positive_whole_amounts(world) -> None:
    body = {"id": "neg", "customer": world.customer.did, "pickup": {"x": 0.0, "y": 0.0},
            "dropoff": {"x": 5.0, "y": 5.0}, "deadline": int((world.clock() + 600) * 1000), "max_price": 100,
            "currency": "EUR", "payload_kg": 1.0}
    task = world.signed(world.customer, "task", body)
    for price in (0, -100, 2**63):
        refused("bad_price", world.market.post, task._replace(body={**body, "max_price": price}))
    for amount in (-5_000, 0, 10.0):  # a negative deposit would be a withdrawal to the world
        refused("bad_amount", world.market.fund, world.customer.did, amount, "EUR", key=f"w{amount}")


def test_a_bond_too_small_to_slash_is_refused_and_every_failure_costs_something(world) -> None:
    """A 10 % slash of a 9-cent bond rounded to 0: a robot that failed 25 tasks kept bidding."""
    newcomer = world.stranger
    refused("bad_bond", world.market.register_robot, newcomer.did, world.owner.did, MIN_BOND - 1, "EUR")
    world.market.register_robot(newcomer.did, world.owner.did, MIN_BOND, "EUR")
    world.post()
    world.bid(newcomer, price=600)
    world.market.award_to("t1", newcomer.did)
    assert world.market.fail("t1", newcomer.did, "stuck").state == REFUNDED
    assert world.balance(f"bond:{newcomer.did}") == MIN_BOND - 1  # a tenth of 10 is 1: never 0
    world.post("t2")
    with pytest.raises(MarketError) as below:
        world.bid(newcomer, "t2")
    assert below.value.code == "no_bond"


def test_a_top_up_has_its_own_key_and_a_second_registration_posts_nothing(world) -> None:
    robot = world.robots[0]
    world.post()
    world.bid(robot)
    world.market.award_to("t1", robot.did)
    world.market.fail("t1", robot.did, "stuck")
    assert world.balance(f"bond:{robot.did}") == 450
    owner = world.balance(f"owner:{world.owner.did}")
    world.market.register_robot(robot.did, world.owner.did, 500, "EUR")  # a fleet resuming: nothing moves
    assert world.balance(f"owner:{world.owner.did}") == owner
    world.market.post_bond(robot.did, 500, key="after-t1")
    world.market.post_bond(robot.did, 500, key="after-t1")  # the same top-up again: once
    assert world.balance(f"bond:{robot.did}") == 950
    world.market.post_bond(robot.did, 500, key="after-t2")  # another top-up of the same amount: moves again
    assert world.balance(f"bond:{robot.did}") == 1_450
    refused("bad_amount", world.market.post_bond, robot.did, -500, key="neg")
    refused("bad_key", world.market.post_bond, robot.did, 500, key="")


def test_nothing_is_posted_for_a_retired_robot_and_its_remaining_bond_is_released(world) -> None:
    """register_robot on a retired robot used to move 700 into a bond that nothing could release."""
    robot = world.robots[0]
    world.post()
    world.bid(robot)
    world.market.award_to("t1", robot.did)
    assert world.market.retire_robot(robot.did) == 500  # its bond went back, though it still holds t1
    refused("retired", world.market.register_robot, robot.did, world.owner.did, 700, "EUR")
    refused("unknown_robot", world.market.post_bond, robot.did, 700, key="late")
    refused("still_awarded", world.market.release_bond, robot.did)
    refused("not_retired", world.market.release_bond, world.robots[1].did)
    assert world.market.task("t1").state == AWARDED
    world.market.fail("t1", robot.did, "stuck")  # nothing left to slash
    assert world.market.release_bond(robot.did) == 0
    # what the old register_robot posted into a retired robot's bond (as a database from before the fix holds)
    world.ledger.post("legacy-bond", {f"owner:{world.owner.did}": -700, f"bond:{robot.did}": 700}, kind="bond")
    owner = world.balance(f"owner:{world.owner.did}")
    assert world.market.release_bond(robot.did) == 700 and world.market.release_bond(robot.did) == 0
    assert world.balance(f"owner:{world.owner.did}") == owner + 700
    assert sum(world.ledger.balances().values()) == 0 and world.ledger.verify() == []
