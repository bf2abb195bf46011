"""The running fleet as the dashboard sees it from a process of its own: everything from the bus and the registry.

In ``depai up``'s single process the dashboard reads the fleet's parts directly
(launch/up.py builds its ``Live``). As a service of its own (``depai serve
dashboard``) it learns the same things the way every other service does:

- robots' telemetry, births and deaths from ingest's verified channels
  (``depai/v1/verified/{kind}``);
- the shared map from the map service's signed, retained tiles and road graph
  (a ``spatial.mirror.MapMirror``), its trust weights from the map service's status;
- the fleet's counters (simulated time, robots, refusals, per-robot messages and
  refusals, ingest lag) from the services' signed statuses (launch/statuses.py's
  board, passed in: nothing imports launch);
- DID documents from the registry in the shared database; votes and proposals
  verified against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import networkx as nx

from bus.client import BusClient
from bus.relay import VerifiedIn
from bus.router import Router
from dashboard.telemetry import TelemetryBoard
from dashboard.view import Live
from identity.envelope import EnvelopeVerifier
from identity.registry import DidRegistry
from spatial.mirror import MapMirror

if TYPE_CHECKING:
    from sim.city import CityLayout



class Statuses(Protocol):
    """The services' newest signed statuses (launch.statuses.StatusBoard)."""

    def services(self, role: str | None = None) -> list[dict[str, Any]]: ...

    def total(self, role: str, counter: str) -> int: ...

    def merged(self, role: str, counter: str) -> dict[str, int]: ...

    def worst(self, role: str, counter: str, pick: Callable[[list[float]], float] = max) -> float | None: ...


def bus_live(client: BusClient, registry: DidRegistry, statuses: Statuses, *, map_did: str,
             clock: Callable[[], float], map_layout: dict[str, Any] | None = None,
             ledger_did: str | None = None) -> Live:
    """A ``Live`` fed from the bus on ``client`` (started; its subscriptions are made here) for the fleet whose
    map service is ``map_did``; ``statuses`` must already follow the services' statuses of this run."""
    board = TelemetryBoard()
    VerifiedIn(Router().declare(TelemetryBoard.KINDS, board.observe)).subscribe(client)
    shared = MapMirror(registry, map_did, clock=clock, trust=lambda: map_trust(statuses)).subscribe(client)
    return Live(telemetry=board, verifier=EnvelopeVerifier(registry),
                documents=lambda did: registry.active(did).document,
                counters=lambda: fleet_counters(statuses, clock), map=shared, map_layout=map_layout or {},
                ledger_did=ledger_did)


def fleet_counters(statuses: Statuses, clock: Callable[[], float]) -> dict[str, Any]:
    """The fleet's counters as one process's ``depai up`` reports them, from the services' statuses: simulated
    time (the shard furthest behind), robots and their DIDs (over the shards), ingest's counters (summed over
    the workers, per robot too; the worst worker's lag) and the marketplace's refusals."""
    sim_s = statuses.worst("sim", "sim_s", pick=min)
    ingest = statuses.services("ingest")
    return {"sim_s": round(sim_s, 1) if sim_s is not None else 0.0, "clock_s": clock(),
            "robots": statuses.total("sim", "robots"),
            "simulated": sorted({did for s in statuses.services("sim") for did in s["counters"].get("dids") or ()}),
            "refused": statuses.merged("ingest", "refused"),
            "accepted": statuses.merged("ingest", "accepted"), "stale": statuses.merged("ingest", "stale"),
            "messages_by_robot": _per_robot(ingest, "messages_by_robot"),
            "refused_by_robot": _per_robot(ingest, "refused_by_robot"),
            "robots_left_out": statuses.total("ingest", "robots_left_out"),
            "lag_p50_s": statuses.worst("ingest", "lag_p50_s"), "lag_p99_s": statuses.worst("ingest", "lag_p99_s"),
            "market_refused": statuses.merged("market", "refused")}


def _per_robot(services: list[dict[str, Any]], counter: str) -> dict[str, dict[str, int]]:
    """A per-robot counter (DID -> name -> count) summed over services (each ingest worker has its own robots)."""
    out: dict[str, dict[str, int]] = {}
    for status in services:
        for did, row in (status["counters"].get(counter) or {}).items():
            mine = out.setdefault(did, {})
            for name, n in row.items():
                mine[name] = mine.get(name, 0) + int(n)
    return out


def map_trust(statuses: Statuses) -> dict[str, float]:
    """The map service's trust weights, as its newest status says (``counters.trust``: DID -> weight)."""
    weights: dict[str, float] = {}
    for status in statuses.services("map"):
        trust = status.get("counters", {}).get("trust")
        if isinstance(trust, dict):
            weights.update(trust)
    return weights


def city_layout(city: CityLayout, graph: nx.Graph) -> dict[str, Any]:
    """The map's fixed part for the dashboard: the city's bounds, its roads and its places."""
    positions = {node: data["pos"] for node, data in graph.nodes(data=True)}
    return {"bounds": list(city.bounds()),
            "roads": [{"u": u, "v": v, "a": list(positions[u]), "b": list(positions[v]), "street": data.get("street")}
                      for u, v, data in graph.edges(data=True)],
            "places": [{"kind": kind, "x": p.x, "y": p.y} for kind in ("depot", "dropoff", "charger")
                       for p in city.places_of(kind)]}
