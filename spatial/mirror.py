"""A read-only replica of the shared map, rebuilt from what the map service publishes on the bus.

The map service retains one signed ``map.tile`` per layer and tile on
``depai/v1/map/tiles/{layer}/{x}/{y}`` and the road graph's states on
``depai/v1/map/graph``. A process without the map service (the dashboard)
follows those topics: each message is verified (signature, the map service's
DID, the topic it belongs on, its schema) and anything else is refused and
counted by reason. A retained tile is kept however old it is (the map service
republishes a tile only when it changes), so envelopes are verified as of when
they were issued; of two messages for one tile or for the graph the one issued
later wins, so a replayed or stale retained message cannot undo a newer one.

It also follows ``map.presence`` on ``depai/v1/map/presence`` (not retained,
so verified as of now, expiry and replay included): each verdict adds to its
robot's witnessed evidence with the map service's own arithmetic
(spatial/presence.py), a seen or unseen verdict weighing what its witnesses'
trust weights add up to and an impossible one 1, faded from the verdict's time.
The map weighs every scan where a message carries one verdict per kind per
robot per second: the mirror's confidence is the map's while witnesses scan at
most once a second, and rests on less evidence (nearer 0.5) when they scan
faster; its counts are the map's, counted since the mirror started.

``SharedMap`` is what a reader of the map needs (the dashboard's map page):
both the in-process ``MapService`` and this ``MapMirror`` satisfy it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from bus.client import BusClient
from bus.schemas import validate_body
from bus.topics import MAP_GRAPH, MAP_PRESENCE, MAP_TILES, map_tile_topic
from bus.trusted import Refused
from identity.envelope import Envelope, EnvelopeRefused, EnvelopeVerifier, KeyResolver
from spatial.grid import DEFAULT_WEIGHT, GridSpec, TileKey
from spatial.presence import Presence
from spatial.roads import EdgeKey
from spatial.tiles import BELIEF, decode_tile, tile_png

MAX_SKEW_S = 5.0  # a message issued further than this in the future (by the fleet's clock) is refused
PRESENCE_FADE_S = 60.0  # the map service's presence_fade_s: witnessed evidence weighs exp(-age / this)


class SharedMap(Protocol):
    """What a reader of the shared map sees: tiles (as PNGs, with versions), road states, trust."""

    @property
    def graph_version(self) -> int:
        """Grows whenever some road's state changed (0 before the first road graph)."""

    @property
    def tile_side_m(self) -> float:
        """The side of one tile, in metres: tile (ix, iy) has its corner at (ix * side, iy * side)."""

    def tile_versions(self) -> dict[TileKey, int]:
        """Every tile of the map and its version (which grows whenever the tile changes)."""

    def road_states(self) -> dict[EdgeKey, str]:
        """The state (free, slow, blocked, suspect) of every road the map has judged, keyed by sorted (u, v)."""

    def tile_png(self, key: TileKey, layer: str = BELIEF) -> bytes:
        """A tile as an 8-bit greyscale PNG, north up."""

    def trust_weights(self) -> dict[str, float]:
        """How much the map trusts each contributor (DID -> weight in [0, 1])."""

    def presence_report(self) -> list[dict[str, Any]]:
        """Per robot with a verdict, in DID order: its witnessed confidence now, verdict counts (seen, unseen,
        impossible), the last verdict and its time (last, last_t) and when a peer last saw it (seen_t), in ms."""


class _Held(NamedTuple):
    issued: tuple[int, int]  # (iat ms, seq) of the envelope it came from: the later one wins
    version: int  # the mirror's version: the map's own, kept growing should the map's restart lower
    side_m: float
    cells: np.ndarray


class MapMirror:
    """The latest verified tiles and road states from one map service (``map_did``), and each robot's witnessed
    location from its verdicts, for reading only."""

    def __init__(self, registry: KeyResolver, map_did: str, *, clock: Callable[[], float],
                 trust: Callable[[], dict[str, float]] = dict, spec: GridSpec = GridSpec(),
                 presence_fade_s: float = PRESENCE_FADE_S) -> None:
        """``trust()`` says the map service's trust weights (from its status); ``spec`` gives the tile side
        until the first tile arrives; ``presence_fade_s`` is the map service's."""
        self.map_did = map_did
        self.clock = clock
        self.verifier = EnvelopeVerifier(registry, clock=clock)
        self.refused: Counter[str] = Counter()
        self.received = 0  # messages that changed the mirror
        self._trust = trust
        self._side_m = spec.tile_cells * spec.resolution_m
        self._tiles: dict[tuple[str, int, int], _Held] = {}  # (layer, x, y) -> newest tile
        self._graph: tuple[tuple[int, int], int, dict[EdgeKey, str]] = ((-1, -1), 0, {})
        self.presence_fade_s = presence_fade_s
        self._presence: dict[str, Presence] = {}
        self._presence_issued = (-1, -1)  # (iat ms, seq) of the newest map.presence taken
        self.presence_version = 0
        self._lock = threading.Lock()

    def subscribe(self, client: BusClient) -> MapMirror:
        """Follow the map's tiles and road graph on ``client`` (retained: the current map arrives at once), and its
        verdicts on robots' claimed poses (map.presence: from now on)."""
        client.subscribe(f"{MAP_TILES}/#", self.take)
        client.subscribe(MAP_GRAPH, self.take)
        client.subscribe(MAP_PRESENCE, self.take)
        return self

    # --- in ------------------------------------------------------------------------------------------

    def take(self, topic: str, payload: bytes) -> bool:
        """One message from a map topic; True when it moved a tile, the graph or robots' presence forward, False if
        refused (counted in ``refused`` by reason) or older than what is held. An empty (cleared) message is
        ignored."""
        if not payload:
            return False
        try:
            envelope = self._admit(topic, payload)
            if envelope.kind == "map.tile":
                return self._take_tile(envelope)
            if envelope.kind == "map.presence":
                return self._take_presence(envelope)
            return self._take_graph(envelope)
        except EnvelopeRefused as err:
            self._refuse(err.reason.value)
        except Refused as err:
            self._refuse(err.code)
        return False

    def _refuse(self, code: str) -> None:
        with self._lock:
            self.refused[code] += 1

    def _admit(self, topic: str, payload: bytes) -> Envelope:
        if topic == MAP_PRESENCE:  # not retained: current, unexpired and not replayed, or refused
            envelope = self.verifier.verify(payload, kinds=("map.presence",))
        else:
            envelope = self.verifier.verify_archived(payload, kinds=("map.tile", "map.graph"))
        if envelope.issuer != self.map_did:
            raise Refused(f"{envelope.issuer} is not the map service {self.map_did}", code="untrusted_sender")
        if envelope.issued_at_ms > (self.clock() + MAX_SKEW_S) * 1000:
            raise Refused(f"issued {envelope.issued_at_ms} ms, ahead of this clock", code="future_dated")
        body = envelope.body
        if envelope.kind == "map.tile":
            expected = (map_tile_topic(body["layer"], body["x"], body["y"])
                        if isinstance(body, dict) and {"layer", "x", "y"} <= body.keys() else None)
        else:
            expected = MAP_PRESENCE if envelope.kind == "map.presence" else MAP_GRAPH
        if topic != expected:
            raise Refused(f"{envelope.kind} arrived on {topic}, not on {expected}", code="wrong_topic")
        return envelope

    def _take_tile(self, envelope: Envelope) -> bool:
        try:
            (x, y), version, resolution, cells = decode_tile(envelope.body)
        except ValueError as err:  # a SchemaError is one too
            raise Refused(str(err), code="schema_invalid") from None
        key = (envelope.body["layer"], x, y)
        issued = (envelope.issued_at_ms, envelope.seq)
        with self._lock:
            held = self._tiles.get(key)
            if held is not None and issued <= held.issued:
                return False
            if held is not None and version <= held.version:  # the map restarted below its old versions
                same = version == held.version and np.array_equal(cells, held.cells)
                version = held.version if same else held.version + 1
            self._tiles[key] = _Held(issued, version, len(cells) * resolution, cells)
            self.received += 1
        return True

    def _take_graph(self, envelope: Envelope) -> bool:
        body, issued = _checked(envelope)
        states = {_edge(e["u"], e["v"]): e["state"] for e in body["edges"]}
        with self._lock:
            held_issued, held_version, _ = self._graph
            if issued <= held_issued:
                return False
            version = body["version"] if body["version"] > held_version else held_version + 1
            self._graph = (issued, version, states)
            self.received += 1
        return True

    def _take_presence(self, envelope: Envelope) -> bool:
        body, issued = _checked(envelope)
        trust = self.trust_weights()
        with self._lock:
            if issued <= self._presence_issued:  # an older version than held: its verdicts are counted already
                return False
            self._presence_issued = issued
            self.presence_version = body["version"]
            for verdict in body["verdicts"]:
                t_s = verdict["t"] / 1000.0
                kind = verdict["verdict"]
                presence = self._presence.get(verdict["robot"])
                if presence is None:
                    presence = self._presence[verdict["robot"]] = Presence(t_s)
                weight = 1.0 if kind == "impossible" else sum(trust.get(peer, DEFAULT_WEIGHT) for peer in verdict["by"])
                presence.add(weight if kind == "seen" else 0.0, 0.0 if kind == "seen" else weight, t_s,
                             self.presence_fade_s)
                presence.record(kind, t_s)
            self.received += 1
        return True

    # --- SharedMap -----------------------------------------------------------------------------------

    @property
    def graph_version(self) -> int:
        return self._graph[1]

    @property
    def tile_side_m(self) -> float:
        with self._lock:
            for (layer, _, _), held in self._tiles.items():
                if layer == BELIEF:
                    return held.side_m
        return self._side_m

    def tile_versions(self) -> dict[TileKey, int]:
        with self._lock:
            return {(x, y): held.version for (layer, x, y), held in sorted(self._tiles.items()) if layer == BELIEF}

    def road_states(self) -> dict[EdgeKey, str]:
        return dict(self._graph[2])

    def tile_png(self, key: TileKey, layer: str = BELIEF) -> bytes:
        """KeyError for a tile the mirror does not hold."""
        with self._lock:
            held = self._tiles[(layer, key[0], key[1])]
        return tile_png(held.cells, layer)

    def trust_weights(self) -> dict[str, float]:
        try:
            weights = self._trust() or {}
            return {str(did): float(weight) for did, weight in weights.items()}
        except (TypeError, ValueError, AttributeError):
            return {}

    def presence_report(self) -> list[dict[str, Any]]:
        now = self.clock()
        with self._lock:
            return [presence.report(did, now, self.presence_fade_s) for did, presence in sorted(self._presence.items())]

    def counters(self) -> dict[str, Any]:
        """What the mirror holds and refused, for a status line."""
        with self._lock:
            return {"tiles": len(self._tiles), "graph_version": self._graph[1], "received": self.received,
                    "presence_version": self.presence_version, "robots_witnessed": len(self._presence),
                    "refused": dict(self.refused)}


def _edge(u: str, v: str) -> EdgeKey:
    return (u, v) if u <= v else (v, u)


def _checked(envelope: Envelope) -> tuple[Any, tuple[int, int]]:
    """A verified envelope's body, once its kind's schema accepts it, and its (issued ms, seq): which is newer."""
    try:
        validate_body(envelope.kind, envelope.body)
    except ValueError as err:
        raise Refused(str(err), code="schema_invalid") from None
    return envelope.body, (envelope.issued_at_ms, envelope.seq)
