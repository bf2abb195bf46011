"""A robot's view of the shared map: the latest verified road graph (as edge costs for its planner) and tiles.

Only the map service's signed ``map.graph`` and ``map.tile`` messages count
(bus.trusted checks the envelope, the issuer and the topic); anything else is
refused and counted. An older version than the one held is ignored, so a
replayed or stale retained message cannot undo a newer one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection

from bus.topics import MAP_GRAPH, map_tile_topic
from bus.trusted import Refused, ServiceGate
from identity.envelope import Envelope, KeyResolver

SLOW_FACTOR = 3.0  # a street the map calls slow costs this many times its length


class MapView:
    """Edge states from the map service, and the planner cost they imply."""

    def __init__(self, keys: KeyResolver, map_services: Collection[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._gate = ServiceGate(keys, map_services, clock=clock)
        self.version = -1
        self.states: dict[tuple[str, str], str] = {}
        self.tiles: dict[tuple[str, int, int], dict] = {}
        self.refused: Counter[str] = Counter()

    def receive(self, topic: str, payload: bytes) -> bool:
        """Take a message from a map topic; True when it moved the view to a newer graph or tile."""
        try:
            envelope = self._gate.admit(topic, payload, kinds=("map.graph", "map.tile"), expected_topic=_topic_of)
        except Refused as refusal:
            self.refused[refusal.code] += 1
            return False
        body = envelope.body
        if envelope.kind == "map.tile":
            key = (body["layer"], body["x"], body["y"])
            held = self.tiles.get(key)
            if held is not None and body["version"] <= held["version"]:
                return False
            self.tiles[key] = body
            return True
        if body["version"] <= self.version:
            return False
        self.states = {_edge(e["u"], e["v"]): e["state"] for e in body["edges"] if e["state"] != "free"}
        self.version = body["version"]
        return True

    def edge_cost(self, u: str, v: str, data: dict) -> float | None:
        """The planner's weight for edge u-v: None when the map believes it blocked, more when slow."""
        state = self.states.get(_edge(u, v))
        if state == "blocked":
            return None
        return data["length"] * SLOW_FACTOR if state == "slow" else data["length"]


def _topic_of(envelope: Envelope) -> str:
    """Where a map message belongs: the graph topic, or its tile's own topic."""
    if envelope.kind == "map.tile":
        body = envelope.body
        return map_tile_topic(body["layer"], body["x"], body["y"])
    return MAP_GRAPH


def _edge(u: str, v: str) -> tuple[str, str]:
    return (u, v) if u <= v else (v, u)
