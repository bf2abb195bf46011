"""The simulated fleet earning money: customers post tasks, robots bid, win, deliver, prove it and are paid."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.ingest import Ingest
from identity.envelope import EnvelopeVerifier
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.fleet import FleetConfig, SimFleet, register, run
from launch.links import LoopbackLink
from launch.market_service import MarketService
from ledger.journal import Ledger
from marketplace.market import Marketplace
from sim.demand import Demand

SEED = 5


@pytest.fixture(scope="module")
def earned(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("market-fleet")
    registry = DidRegistry(tmp / "registry.sqlite3")
    operator = register(registry)
    market_id = register(registry, controller=operator.did)
    customers = [register(registry) for _ in range(2)]
    config = FleetConfig(robots=4, seed=SEED, blocks=2, obstacles=False, orders_per_min=3.0)
    fleet = SimFleet(config, registry, controller=operator.did, commanders=[market_id.did])
    ledger = Ledger.open(f"sqlite:///{tmp / 'ledger.sqlite3'}", Signer.generate(), clock=fleet.clock)
    market = Marketplace(ledger, market_id.envelope_signer(fleet.clock), fee_bps=500, clock=fleet.clock)
    for customer in customers:
        market.fund(customer.did, 1_000_000, "EUR", key=customer.did)
    market.fund(operator.did, 100_000, "EUR", key="operator", role="owner")
    for agent in fleet.agents:
        market.register_robot(agent.did, operator.did, 5_000, "EUR")
    owner_before = ledger.balance(f"owner:{operator.did}")
    service = MarketService(market, [c.envelope_signer(fleet.clock) for c in customers],
                            EnvelopeVerifier(registry, clock=fleet.clock), clock=fleet.clock)
    ingest = Ingest(registry, service.observe, clock=fleet.clock)
    link = LoopbackLink(fleet, ingest)
    run(fleet, link, duration_s=420.0, demand=Demand(fleet.city, SEED, config.order_rate), services=[service],
        orders=service)
    yield {"fleet": fleet, "market": market, "ledger": ledger, "service": service, "operator": operator,
           "owner_before": owner_before, "ingest": ingest}
    fleet.close()
    ledger.close()
    registry.close()


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
