"""What a DAO's executed proposals do to a running simulated fleet: buy, retire and admit robots, set the fee.

A bought robot joins the fleet with its own identity, controlled by the DAO's
DID, and is registered on the marketplace with the DAO as its owner (its bond
was paid from the treasury in the proposal's transaction), so what it earns
flows back to the DAO. An admitted robot is an external, real one: its DID
must already be registered with the key the proposal names.
"""

from __future__ import annotations

from identity.registry import DidRegistry
from launch.fleet import SimFleet
from marketplace.market import Marketplace


class FleetHooks:
    """The DAO's hands on one running fleet and its marketplace."""

    def __init__(self, fleet: SimFleet | None, market: Marketplace, registry: DidRegistry, dao_did: str, *,
                 bond: int, currency: str) -> None:
        self.fleet, self.market, self.registry, self.dao_did = fleet, market, registry, dao_did
        self.bond, self.currency = bond, currency
        self.bought: dict[str, str] = {}  # proposal -> robot DID

    def buy_robot(self, proposal: str, model: str) -> str:
        """Add a robot (once per proposal) owned by the DAO, and register it on the marketplace."""
        if proposal not in self.bought and self.fleet is not None:
            agent = self.fleet.add_robot(controller=self.dao_did)
            self.market.register_robot(agent.did, self.dao_did, self.bond, self.currency)
            self.bought[proposal] = agent.did
        return self.bought[proposal]

    def retire_robot(self, robot: str) -> None:
        """Take the robot off the market; its bond returns to the DAO."""
        self.market.retire_robot(robot)

    def admit_robot(self, proposal: str, robot: str, owner_key: str) -> None:
        """Register an external robot, whose DID's active key is ``owner_key``, on the marketplace for the DAO
        (without a bond: the robot's own owner posts one through the marketplace if it wants to bid)."""
        held = self.registry.active(robot).public_key
        if held is None or held.hex() != owner_key:
            raise ValueError(f"{robot}'s DID document does not hold the key {owner_key[:16]}...")
        self.market.register_robot(robot, self.dao_did, 0, self.currency)

    def set_fee(self, fee_bps: int) -> None:
        """The marketplace's fee from now on."""
        self.market.fee_bps = fee_bps
