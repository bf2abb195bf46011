"""The fleet descriptor: what every process of one run shares, signed by the operator and retained on the bus.

A fleet of processes (and of machines) keeps one clock: fleet time is
``origin_fleet_s + speed * (wall time - origin_wall_s)``, computed alike by
every process from the descriptor (wall clocks agree to NTP's milliseconds,
far below a message's lifetime). Simulator shards step their worlds to keep up
with it and report how far behind they are; services judge deadlines, votes and
message times by it. The descriptor also names the run, the city, and the DIDs
of the services whose signed messages robots and services obey.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from bus.client import BusClient
from bus.topics import FLEET_DESCRIPTOR
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from identity.errors import DepaiError
from identity.registry import DidRegistry

KIND = "fleet.descriptor"


class DescriptorError(DepaiError):
    """No valid fleet descriptor: none arrived, or it was not signed by the operator named."""

    code = "no_descriptor"


@dataclass(frozen=True)
class FleetDescriptor:
    """One run of a fleet: its clock, its city and the DIDs of its services."""

    run: int
    origin_fleet_s: float  # fleet time at origin_wall_s
    origin_wall_s: float
    speed: float  # simulated seconds per wall-clock second
    city: int
    seed: int
    robots: int  # simulated robots of the supervising host, across its shards
    shards: int
    scan_hz: float
    orders_per_min: float
    currency: str
    bond: int  # what the DAO posts for each robot it puts on the marketplace, in minor units
    operator: str
    dao: str
    market: str
    map: str
    dispatcher: str
    ledger: str  # whose key signs the ledger's entries and checkpoints: verifiers resolve it in the DID registry

    def clock(self) -> Callable[[], float]:
        """The fleet's clock, as every process of this run reads it."""
        origin_fleet, origin_wall, speed = self.origin_fleet_s, self.origin_wall_s, self.speed
        return lambda: origin_fleet + speed * (time.time() - origin_wall)

    @property
    def commanders(self) -> list[str]:
        """Whose signed commands robots obey: the dispatcher's and the marketplace's."""
        return [self.dispatcher, self.market]

    def seal(self, operator: EnvelopeSigner) -> bytes:
        """The descriptor as a signed envelope (retained on ``depai/v1/fleet/descriptor``)."""
        return operator.seal(KIND, asdict(self), ttl_s=365 * 86_400.0)

    @classmethod
    def from_body(cls, body: Any) -> FleetDescriptor:
        """A descriptor from a verified body; DescriptorError if a field is missing or of the wrong type."""
        names = {f.name: f.type for f in fields(cls)}
        if not isinstance(body, dict) or set(body) != set(names):
            raise DescriptorError(f"a fleet descriptor has exactly the fields {sorted(names)}")
        try:
            return cls(**{name: {"int": int, "float": float, "str": str}[kind](body[name])
                          for name, kind in names.items()})
        except (TypeError, ValueError) as err:
            raise DescriptorError(f"a fleet descriptor field has the wrong type: {err}") from None


def await_descriptor(client: BusClient, registry: DidRegistry, operator: str, *, run: int | None = None,
                     timeout: float = 30.0) -> FleetDescriptor:
    """The retained descriptor signed by ``operator`` (of run ``run`` when given), from the bus; waits for it."""
    verifier = EnvelopeVerifier(registry)
    found: list[FleetDescriptor] = []
    problems: list[str] = []
    arrived = threading.Event()

    def take(topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            envelope = verifier.verify_archived(payload, kinds=(KIND,))
            if envelope.issuer != operator:
                raise DescriptorError(f"the descriptor is signed by {envelope.issuer}, not the operator {operator}")
            descriptor = FleetDescriptor.from_body(envelope.body)
        except (EnvelopeRefused, DescriptorError) as err:
            problems.append(str(err))
            return
        if run is None or descriptor.run == run:
            found.append(descriptor)
            arrived.set()

    client.subscribe(FLEET_DESCRIPTOR, take)
    if not arrived.wait(timeout):
        said = f" (refused: {problems[-1]})" if problems else ""
        raise DescriptorError(f"no fleet descriptor{f' of run {run}' if run else ''} from {operator} on the bus "
                              f"within {timeout:g} s{said}",
                              hint="start the fleet with `depai up` first, and pass the --operator DID it printed")
    return found[-1]
