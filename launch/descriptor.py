"""The fleet descriptor: what every process of one run shares, signed by the operator and retained on the bus.

A fleet of processes (and of machines) keeps one clock: fleet time is
``origin_fleet_s + speed * (wall time - origin_wall_s)``, computed alike by
every process from the descriptor (wall clocks agree to NTP's milliseconds,
far below a message's lifetime). Simulator shards step their worlds to keep up
with it and report how far behind they are; services judge deadlines, votes and
message times by it. The descriptor also names the run, the city, and the roles
by DID, so nothing is guessed: which DID is the marketplace, the map service,
the dispatcher, the ledger's signer, the DAO and the operator; whose commands
count (``commanders``, derived: the dispatcher's and the marketplace's); the
broker a robot on another host connects to; the chargers; and the road graph
(served by the dashboard at ``roads_url``, pinned by ``roads_sha256``, its shape
in ``roads_schema``). It is retained on ``depai/v1/fleet/descriptor`` and served
by the dashboard at ``GET /api/fleet`` (docs/protocol.md, "The fleet
descriptor").
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import networkx as nx

from bus.client import BusClient
from bus.topics import FLEET_DESCRIPTOR
from identity.canonical import canonicalize
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from identity.errors import DepaiError
from identity.registry import DidRegistry

KIND = "fleet.descriptor"
ROADS_URL = "/api/fleet/roads"  # where the dashboard serves the road graph (relative to the dashboard's address)
ROADS_SCHEMA: dict[str, Any] = {  # what roads_url serves: networkx's node-link form of the city's road graph
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "depai road graph",
    "description": "networkx node_link_data(graph, edges='edges') of an undirected graph of junctions and places, "
                   "in metres of the fleet's map frame; every edge can be driven both ways",
    "type": "object",
    "required": ["directed", "multigraph", "graph", "nodes", "edges"],
    "properties": {
        "directed": {"const": False},
        "multigraph": {"const": False},
        "graph": {"type": "object"},
        "nodes": {"type": "array", "items": {
            "type": "object", "required": ["id", "kind", "pos"],
            "properties": {"id": {"type": "string"},
                           "kind": {"enum": ["junction", "depot", "dropoff", "charger"]},
                           "pos": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                                   "description": "[x, y] in metres"}}}},
        "edges": {"type": "array", "items": {
            "type": "object", "required": ["source", "target", "length", "street"],
            "properties": {"source": {"type": "string", "description": "a node id"},
                           "target": {"type": "string", "description": "a node id"},
                           "length": {"type": "number", "exclusiveMinimum": 0, "description": "metres"},
                           "street": {"type": "string", "description": "the street the edge lies on"}}}},
    },
}
_WILDCARDS = ("0.0.0.0", "::", "")


class DescriptorError(DepaiError):
    """No valid fleet descriptor: none arrived, or it was not signed by the operator named."""

    code = "no_descriptor"


@dataclass(frozen=True)
class FleetDescriptor:
    """One run of a fleet: its clock, its city, the DIDs of its services, its broker and its roads."""

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
    operator: str  # who signs this descriptor
    dao: str
    market: str  # the marketplace: signs tasks and awards
    map: str  # the map service: signs tiles and the road graph's states
    dispatcher: str  # signs commands
    ledger: str  # whose key signs the ledger's entries and checkpoints: verifiers resolve it in the DID registry
    broker: str | None  # mqtt://host:port, no login: the address robots on other hosts use; None without a broker
    broker_tls: str | None  # mqtts://host:port when the broker also listens with TLS, else None
    chargers: tuple[tuple[float, float], ...]  # (x, y) of every charger, metres
    roads_sha256: str  # hex SHA-256 of the exact bytes served at roads_url
    roads_url: str = ROADS_URL
    roads_schema: dict[str, Any] = field(default_factory=lambda: ROADS_SCHEMA)

    def clock(self) -> Callable[[], float]:
        """The fleet's clock, as every process of this run reads it."""
        origin_fleet, origin_wall, speed = self.origin_fleet_s, self.origin_wall_s, self.speed
        return lambda: origin_fleet + speed * (time.time() - origin_wall)

    @property
    def commanders(self) -> list[str]:
        """Whose signed commands count: the dispatcher's and the marketplace's (derived, and signed in the body)."""
        return [self.dispatcher, self.market]

    def to_body(self) -> dict[str, Any]:
        """The signed body: every field, chargers as [x, y] lists, and ``commanders``."""
        return {**asdict(self), "chargers": [[x, y] for x, y in self.chargers], "commanders": self.commanders}

    def seal(self, operator: EnvelopeSigner) -> bytes:
        """The descriptor as a signed envelope (retained on ``depai/v1/fleet/descriptor``)."""
        return operator.seal(KIND, self.to_body(), ttl_s=365 * 86_400.0)

    @classmethod
    def from_body(cls, body: Any) -> FleetDescriptor:
        """A descriptor from a verified body; DescriptorError if a field is missing, extra or of the wrong type."""
        names = {f.name: str(f.type) for f in fields(cls)}
        expected = set(names) | {"commanders"}
        if not isinstance(body, dict) or set(body) != expected:
            raise DescriptorError(f"a fleet descriptor has exactly the fields {sorted(expected)}")
        try:
            descriptor = cls(**{name: _CONVERT[kind](body[name]) for name, kind in names.items()})
        except (TypeError, ValueError) as err:
            raise DescriptorError(f"a fleet descriptor field has the wrong type: {err}") from None
        if body["commanders"] != descriptor.commanders:
            raise DescriptorError("a fleet descriptor's commanders are [dispatcher, market]")
        return descriptor


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string or null")
    return value


def _points(value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise TypeError("chargers is a list of [x, y]")
    return tuple((float(x), float(y)) for x, y in value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{value!r} is not an object")
    return value


_CONVERT: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str, "str | None": _optional_str,
                                             "tuple[tuple[float, float], ...]": _points, "dict[str, Any]": _object}


def roads_json(roads: nx.Graph) -> bytes:
    """The road graph as served at ``roads_url``: node-link JSON (``ROADS_SCHEMA``), RFC 8785 canonical."""
    return canonicalize(nx.node_link_data(roads, edges="edges"))


def roads_digest(roads: bytes) -> str:
    """``roads_sha256`` of the served bytes."""
    return hashlib.sha256(roads).hexdigest()


def public_broker(url: str) -> str:
    """``url`` as a robot on another host should use it: no login, and a wildcard listening address (0.0.0.0, ::)
    replaced by this host's address on its default route (or its name when it has none)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host in _WILDCARDS:
        host = _this_host()
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}{f':{parts.port}' if parts.port else ''}"


def _this_host() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent; the kernel picks the outgoing address
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostname()


def await_descriptor(client: BusClient, registry: DidRegistry, operator: str, *, run: int | None = None,
                     timeout: float = 30.0) -> FleetDescriptor:
    """The retained descriptor signed by ``operator`` (of run ``run`` when given), from the bus; waits for it."""
    return await_signed_descriptor(client, registry, operator, run=run, timeout=timeout)[0]


def await_signed_descriptor(client: BusClient, registry: DidRegistry, operator: str, *, run: int | None = None,
                            timeout: float = 30.0) -> tuple[FleetDescriptor, bytes]:
    """``await_descriptor``, with the envelope's exact bytes (what the dashboard serves for anyone to verify)."""
    verifier = EnvelopeVerifier(registry)
    found: list[tuple[FleetDescriptor, bytes]] = []
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
            found.append((descriptor, bytes(payload)))
            arrived.set()

    client.subscribe(FLEET_DESCRIPTOR, take)
    if not arrived.wait(timeout):
        said = f" (refused: {problems[-1]})" if problems else ""
        raise DescriptorError(f"no fleet descriptor{f' of run {run}' if run else ''} from {operator} on the bus "
                              f"within {timeout:g} s{said}",
                              hint="start the fleet with `depai up` first, and pass the --operator DID it printed")
    return found[-1]
