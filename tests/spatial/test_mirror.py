"""The map mirror: the shared map rebuilt from the map service's signed messages, showing what the service shows;
anything not signed by the map service, out of place or older than what it holds changes nothing."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import orjson
import pytest

from bus.ingest import Ingest
from bus.session import MachineSession, Outgoing
from bus.topics import MAP_GRAPH, MAP_PRESENCE, map_tile_topic, topic_root
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from spatial.grid import GridSpec
from spatial.mirror import MapMirror, SharedMap
from spatial.roads import BLOCKED
from spatial.service import MapService
from spatial.tiles import decode_tile, encode_tile
from tests.spatial.test_service import Fleet, _disc_ranges, _telemetry

RAYS = 64
ANGLES = -math.pi + np.arange(RAYS) * (2 * math.pi / RAYS)
WALL_X = 6.0  # a wall across the street at x = 6 m: it closes the road a-b
ROAD = nx.Graph()
ROAD.add_node("a", pos=(-20.0, 0.0), kind="junction")
ROAD.add_node("b", pos=(20.0, 0.0), kind="junction")
ROAD.add_edge("a", "b", length=40.0, street="a|b")


def _wall_ranges(x: float, y: float) -> list[float | None]:
    ranges: list[float | None] = []
    for angle in ANGLES:
        c, s = math.cos(angle), math.sin(angle)
        r = (WALL_X - x) / c if c > 1e-9 else math.inf
        ranges.append(round(r, 3) if r < 12.0 and abs(y + r * s) <= 4.0 else None)
    return ranges


class Published:
    """A map service fed corroborated scans of a wall, and what it published on its turns."""

    def __init__(self, registry, clock) -> None:
        self.clock = clock
        self.map_key = Signer.generate()
        self.map_did = create_identity(registry, self.map_key).did
        self.service = MapService(EnvelopeSigner(self.map_key, self.map_did, clock=clock), ROAD,
                                  bounds=(-50, -50, 50, 50), clock=clock, spec=GridSpec(),
                                  level_of=lambda did: "fleet", publish_every_s=1.0)
        ingest = Ingest(registry, self.service.observe, clock=clock)
        self.sessions: list[MachineSession] = []
        sessions = self.sessions
        for _ in range(2):
            key = Signer.generate()
            did = did_peaq(key.public_key)
            document = create_identity(registry, key, topic_root=topic_root(did),
                                       machine=MachineProfile("m", ["lidar-2d"], 1.5, 5.0)).document
            sessions.append(MachineSession(EnvelopeSigner(key, did, clock=clock), topic_root(did), document))
        clock.advance(1)
        for session in sessions:
            birth = session.birth()
            ingest.handle(birth.topic, birth.payload)
        for _ in range(4):
            for i, session in enumerate(sessions):
                x = 2.5 + 0.5 * i
                scan = session.message("scan", {
                    "t": int(clock() * 1000), "pose": {"x": x, "y": 0.0, "theta": 0.0}, "angle_min": -math.pi,
                    "angle_increment": 2 * math.pi / RAYS, "range_max": 12.0, "ranges": _wall_ranges(x, 0.0)})
                assert ingest.handle(scan.topic, scan.payload) is not None
            clock.advance(0.5)
        self.messages: list[Outgoing] = self.service.step()


@pytest.fixture
def published(registry, clock) -> Published:
    return Published(registry, clock)


def _mirror(registry, published: Published) -> MapMirror:
    return MapMirror(registry, published.map_did, clock=published.clock,
                     trust=published.service.trust_weights)


def test_the_mirror_shows_what_the_map_service_shows(registry, published: Published) -> None:
    mirror = _mirror(registry, published)
    assert all(mirror.take(m.topic, m.payload) for m in published.messages)
    service: SharedMap = published.service
    assert mirror.tile_versions() == service.tile_versions() != {}
    for key in service.tile_versions():
        assert mirror.tile_png(key) == service.tile_png(key)
    assert mirror.road_states() == service.road_states() and mirror.road_states()[("a", "b")] == BLOCKED
    assert mirror.graph_version == service.graph_version == 1
    assert mirror.tile_side_m == service.tile_side_m == pytest.approx(64 * 0.2)
    assert mirror.trust_weights() == service.trust_weights() and len(mirror.trust_weights()) == 2
    assert mirror.refused == {}


def test_a_tile_not_signed_by_the_map_service_is_refused_and_not_shown(registry, clock,
                                                                       published: Published) -> None:
    mirror = _mirror(registry, published)
    for m in published.messages:
        mirror.take(m.topic, m.payload)
    key = next(iter(mirror.tile_versions()))
    shown = mirror.tile_png(key)
    layer_body = next(m for m in published.messages if m.topic == map_tile_topic("belief", *key))
    _, version, resolution, cells = decode_tile(_body(layer_body.payload))
    forged = encode_tile("belief", key, version + 1, resolution, np.full_like(cells, 2))  # all occupied
    clock.advance(1)

    intruder = Signer.generate()  # registered, validly signed: but not the map service
    intruder_did = create_identity(registry, intruder).did
    assert not mirror.take(map_tile_topic("belief", *key),
                           EnvelopeSigner(intruder, intruder_did, clock=clock).seal("map.tile", forged))
    stranger = Signer.generate()  # not registered at all
    assert not mirror.take(map_tile_topic("belief", *key),
                           EnvelopeSigner(stranger, did_peaq(stranger.public_key), clock=clock).seal("map.tile",
                                                                                                      forged))
    map_signer = EnvelopeSigner(published.map_key, published.map_did, clock=clock)
    assert not mirror.take(map_tile_topic("belief", key[0] + 1, key[1]), map_signer.seal("map.tile", forged))
    tampered = map_signer.seal("map.tile", forged).replace(b'"version":', b'"version":1')
    assert not mirror.take(map_tile_topic("belief", *key), tampered)
    assert not mirror.take(MAP_GRAPH, map_signer.seal("map.graph", {"version": 9, "edges": "all"}))
    assert not mirror.take(map_tile_topic("belief", *key), b"not an envelope")

    assert mirror.refused == {"untrusted_sender": 1, "unknown_issuer": 1, "wrong_topic": 1, "bad_signature": 1,
                              "schema_invalid": 1, "malformed_json": 1}
    assert mirror.tile_png(key) == shown and mirror.tile_versions()[key] == version
    assert mirror.road_states()[("a", "b")] == BLOCKED and mirror.graph_version == 1


def test_an_older_message_never_undoes_a_newer_one_however_old_the_retained_map(registry, clock,
                                                                                published: Published) -> None:
    first = {m.topic: m.payload for m in published.messages}
    key = next(iter(published.service.tile_versions()))
    topic = map_tile_topic("belief", *key)
    _, version, resolution, cells = decode_tile(_body(first[topic]))
    clock.advance(1)
    map_signer = EnvelopeSigner(published.map_key, published.map_did, clock=clock)
    newer = map_signer.seal("map.tile", encode_tile("belief", key, version + 1, resolution, np.full_like(cells, 1)))

    clock.advance(7200)  # long after every envelope expired: a retained map is still the map
    mirror = _mirror(registry, published)
    assert mirror.take(topic, newer)
    assert not mirror.take(topic, first[topic])  # the retained older one, arriving late or replayed
    assert mirror.tile_versions()[key] == version + 1
    assert mirror.tile_png(key) != published.service.tile_png(key)

    # the map service restarted without its versions: a later tile still wins, and the version still grows
    clock.advance(1)
    restarted = map_signer.seal("map.tile", encode_tile("belief", key, 1, resolution, cells))
    assert mirror.take(topic, restarted) and mirror.tile_versions()[key] == version + 2
    assert mirror.take(MAP_GRAPH, first[MAP_GRAPH]) and mirror.graph_version == 1


# --- witnessed location: map.presence ----------------------------------------------------------------------------


def _witnessing(registry, clock) -> tuple[Fleet, MapMirror, list[Outgoing]]:
    """Robot 2 stands at (4, 0) and robot 3 says it stands at (2, 2), where nothing is; robots 0 and 1 look (the
    scene of test_service's robots-seen test). The mirror takes every message the map service sends."""
    fleet = Fleet(registry, clock)
    mirror = MapMirror(registry, fleet.service.did, clock=clock, trust=fleet.service.trust_weights)
    sent: list[Outgoing] = []
    for turn in range(5):  # the last turn only publishes what waits
        if turn < 4:
            _telemetry(fleet, 2, 4.0, 0.0)
            _telemetry(fleet, 3, 2.0, 2.0)
            for robot in (0, 1):
                fleet.scan(robot, 0.0, -0.5 * robot, ranges=_disc_ranges(0.0, 4.0, 0.35, y0=0.5 * robot))
        for message in fleet.service.step():
            sent.append(message)
            assert mirror.take(message.topic, message.payload)
        clock.advance(0.5)
    return fleet, mirror, sent


def test_the_mirror_follows_map_presence_with_the_map_services_confidence_and_counts(registry, clock) -> None:
    fleet, mirror, sent = _witnessing(registry, clock)
    assert sum(m.topic == MAP_PRESENCE for m in sent) == 3
    clock.advance(30)  # both fade alike
    service, mirrored = fleet.service.presence_report(), mirror.presence_report()
    assert [row["did"] for row in mirrored] == [row["did"] for row in service] and len(service) == 2
    for theirs, ours in zip(service, mirrored, strict=True):
        counts = ("seen", "unseen", "impossible", "last", "last_t", "seen_t")
        assert {k: ours[k] for k in counts} == {k: theirs[k] for k in counts}
        # the map weighs every scan, a message carries one verdict per kind and second naming its witnesses: here
        # each witness scans once a second, so the same evidence (faster lidars leave the mirror less)
        assert ours["confidence"] == pytest.approx(theirs["confidence"], rel=1e-9)
    seen, missing = ({row["did"]: row for row in mirrored}[s.signer.did] for s in fleet.sessions[2:])
    assert seen["confidence"] > 0.75 and seen["seen_t"] is not None and seen["unseen"] == 0
    assert missing["confidence"] < 0.25 and missing["seen_t"] is None and missing["last"] == "unseen"
    assert mirror.counters()["presence_version"] == 3 and mirror.refused == {}


def test_map_presence_not_from_the_map_service_or_older_than_held_changes_nothing(registry, clock) -> None:
    fleet, mirror, sent = _witnessing(registry, clock)
    held = mirror.presence_report()
    first = next(m for m in sent if m.topic == MAP_PRESENCE)
    robot = fleet.sessions[3].signer.did
    body = {"version": 9, "verdicts": [{"robot": robot, "t": int(clock() * 1000), "x": 2.0, "y": 2.0,
                                        "verdict": "seen", "by": [fleet.sessions[0].signer.did]}]}
    intruder = Signer.generate()  # registered, validly signed: but not the map service
    intruder_did = create_identity(registry, intruder).did
    map_signer = fleet.service.signer
    assert not mirror.take(MAP_PRESENCE, EnvelopeSigner(intruder, intruder_did, clock=clock).seal("map.presence", body))
    assert not mirror.take(MAP_GRAPH, map_signer.seal("map.presence", body))  # on the graph's topic
    assert not mirror.take(MAP_PRESENCE, map_signer.seal("map.presence", {**body, "version": -1}))
    assert not mirror.take(MAP_PRESENCE, map_signer.seal("map.presence", body).replace(b'"seen"', b'"unseen"'))
    assert not mirror.take(MAP_PRESENCE, first.payload)  # replayed
    assert mirror.refused == {"untrusted_sender": 1, "wrong_kind": 1, "schema_invalid": 1, "bad_signature": 1,
                              "replayed": 1}
    assert mirror.presence_report() == held

    newer, older = map_signer.seal("map.presence", body), map_signer.seal("map.presence", {**body, "version": 8})
    clock.advance(1)
    assert mirror.take(MAP_PRESENCE, older) and not mirror.take(MAP_PRESENCE, newer)  # sealed before: older
    after = {row["did"]: row for row in mirror.presence_report()}[robot]
    assert after["seen"] == 1 and mirror.counters()["presence_version"] == 8


def _body(payload: bytes) -> dict:
    return orjson.loads(payload)["body"]
