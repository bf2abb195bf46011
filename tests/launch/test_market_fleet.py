"""The simulated fleet earning money: customers post tasks, robots bid, win, deliver, prove it and are paid."""

from __future__ import annotations

import pytest

from tests.launch.economy import start_economy

SEED = 5


@pytest.fixture(scope="module")
def earned(tmp_path_factory):
    economy = start_economy(tmp_path_factory.mktemp("market-fleet"), robots=4, seed=SEED, orders_per_min=3.0,
                            owner_funds=100_000, bond=5_000)
    owner_before = economy.ledger.balance(f"owner:{economy.owner.did}")
    economy.drive(420.0)
    yield {"fleet": economy.fleet, "market": economy.market, "ledger": economy.ledger, "service": economy.service,
           "operator": economy.owner, "owner_before": owner_before, "ingest": economy.ingest}
    economy.close()


def test_robots_bid_win_deliver_and_their_owner_is_paid_exactly(earned) -> None:
    market, ledger, service = earned["market"], earned["ledger"], earned["service"]
    settled = market.tasks("settled")
    assert len(settled) >= 2 and service.awarded >= len(settled)
    fees = sum(task.price * 500 // 10_000 for task in settled)
    earnings = sum(task.price for task in settled) - fees
    slashed = sum(ledger.balance(f"bond:{a.did}") for a in earned["fleet"].agents) - 5_000 * 4
    assert ledger.balance(f"owner:{earned['operator'].did}") - earned["owner_before"] == earnings
    assert ledger.balance("fees:EUR") == fees and slashed <= 0
    assert all(ledger.balance(f"escrow:{task.id}") == 0 for task in settled)
    assert sum(ledger.balances().values()) == 0 and ledger.verify() == []


def test_every_bid_was_the_robots_own_and_nothing_was_refused_at_ingest(earned) -> None:
    assert earned["ingest"].metrics.total("depai_ingest_refused_total") == 0
    assert earned["service"].refused["unknown_robot"] == 0
    assert all(agent.refused == {} for agent in earned["fleet"].agents)


def test_no_robot_is_awarded_a_task_while_it_works_on_another(earned) -> None:
    """Its older bids are stale once it works: an award it must reject would refund the customer and slash it."""
    assert earned["market"].tasks("refunded") == []
    assert all(earned["ledger"].balance(f"bond:{a.did}") == 5_000 for a in earned["fleet"].agents)


def test_a_settled_task_was_delivered_where_the_customer_asked(earned) -> None:
    market = earned["market"]
    for task in market.tasks("settled"):
        assert task.outcome == "delivered" and task.robot in {a.did for a in earned["fleet"].agents}
