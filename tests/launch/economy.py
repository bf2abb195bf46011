"""A simulated fleet with a marketplace and a ledger, in process: what the economy tests of the fleet start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bus.ingest import Ingest
from identity.envelope import EnvelopeVerifier
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.fleet import FleetConfig, Identity, SimFleet, register, run
from launch.links import LoopbackLink
from ledger.journal import Ledger
from marketplace.market import Marketplace
from marketplace.policy import MarketPolicy
from marketplace.service import MarketService
from sim.customers import CustomerOrders, Customers
from sim.demand import Demand


@dataclass
class Economy:
    """The parts, and ``drive(seconds)`` to run the fleet with customers posting tasks."""

    registry: DidRegistry
    owner: Identity
    fleet: SimFleet
    ledger: Ledger
    market: Marketplace
    service: MarketService
    customers: Customers
    ingest: Ingest
    link: LoopbackLink
    demand: Demand

    def drive(self, seconds: float) -> None:
        run(self.fleet, self.link, duration_s=seconds, demand=self.demand, services=[self.service],
            orders=CustomerOrders(self.customers, self.service))

    def close(self) -> None:
        self.fleet.close()
        self.ledger.close()
        self.registry.close()


def start_economy(tmp: Path, *, robots: int, seed: int, orders_per_min: float, owner_funds: int,
                  bond: int) -> Economy:
    """Robots owned (and controlled) by a fresh owner identity, each registered on the market with ``bond``."""
    registry = DidRegistry(tmp / "registry.sqlite3")
    owner = register(registry)
    market_id = register(registry, controller=owner.did)
    customers = [register(registry) for _ in range(2)]
    config = FleetConfig(robots=robots, seed=seed, blocks=2, obstacles=False, orders_per_min=orders_per_min)
    fleet = SimFleet(config, registry, controller=owner.did, commanders=[market_id.did])
    ledger = Ledger.open(f"sqlite:///{tmp / 'ledger.sqlite3'}", Signer.generate(), clock=fleet.clock)
    market = Marketplace(ledger, market_id.envelope_signer(fleet.clock), fee_bps=500, clock=fleet.clock)
    for customer in customers:
        market.fund(customer.did, 1_000_000, "EUR", key=customer.did)
    market.fund(owner.did, owner_funds, "EUR", key="owner", role="owner")
    for agent in fleet.agents:
        market.register_robot(agent.did, owner.did, bond, "EUR")
    policy = MarketPolicy()
    service = MarketService(market, EnvelopeVerifier(registry, clock=fleet.clock), clock=fleet.clock, policy=policy)
    signed = Customers([c.envelope_signer(fleet.clock) for c in customers], policy.quote, clock=fleet.clock,
                       task_life_s=policy.task_life_s)
    ingest = Ingest(registry, service.observe, clock=fleet.clock)
    return Economy(registry, owner, fleet, ledger, market, service, signed, ingest, LoopbackLink(fleet, ingest),
                   Demand(fleet.city, seed, config.order_rate))
