"""The map service: verified scans in, a trust-weighted map and signed tiles and road states out; bad input changes nothing."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from bus.ingest import Ingest
from bus.session import MachineSession
from bus.topics import MAP_GRAPH, topic_root
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.envelope import Envelope, EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from spatial.grid import OCCUPIED, GridSpec
from spatial.service import MapService
from spatial.tiles import decode_tile
from spatial.view import MapView

RAYS = 64
ANGLES = -math.pi + np.arange(RAYS) * (2 * math.pi / RAYS)
WALL_X = 6.0  # a wall across the street at x = 6 m, from y = -4 to 4: it closes the road
ROAD = nx.Graph()
ROAD.add_node("a", pos=(-20.0, 0.0), kind="junction")
ROAD.add_node("b", pos=(20.0, 0.0), kind="junction")
ROAD.add_edge("a", "b", length=40.0, street="a|b")


def _wall_ranges(x: float, y: float) -> list[float | None]:
    """What a lidar at (x, y), facing +x, sees of the wall (nothing else is there within 12 m)."""
    ranges: list[float | None] = []
    for angle in ANGLES:
        c, s = math.cos(angle), math.sin(angle)
        r = (WALL_X - x) / c if c > 1e-9 else math.inf
        ranges.append(round(r, 3) if r < 12.0 and abs(y + r * s) <= 4.0 else None)
    return ranges


class Fleet:
    """Registered robots that seal scans, the map service behind an ingest pipeline, and a robot's view."""

    def __init__(self, registry, clock) -> None:
        self.clock = clock
        map_key = Signer.generate()
        map_did = create_identity(registry, map_key).did
        self.service = MapService(EnvelopeSigner(map_key, map_did, clock=clock), ROAD, bounds=(-50, -50, 50, 50),
                                  clock=clock, spec=GridSpec(), level_of=lambda did: "fleet", publish_every_s=1.0)
        self.ingest = Ingest(registry, self.service.observe, clock=clock)
        self.view = MapView(registry, [map_did], clock=clock)
        self.sessions: list[MachineSession] = []
        for _ in range(4):
            key = Signer.generate()
            did = did_peaq(key.public_key)
            document = create_identity(registry, key, topic_root=topic_root(did),
                                       machine=MachineProfile("m", ["lidar-2d"], 1.5, 5.0)).document
            self.sessions.append(MachineSession(EnvelopeSigner(key, did, clock=clock), topic_root(did), document))
        clock.advance(1)
        for session in self.sessions:
            message = session.birth()
            self.ingest.handle(message.topic, message.payload)

    def scan(self, robot: int, x: float, y: float, ranges: list[float | None] | None = None) -> Envelope | None:
        body = {"t": int(self.clock() * 1000), "pose": {"x": x, "y": y, "theta": 0.0}, "angle_min": -math.pi,
                "angle_increment": 2 * math.pi / RAYS, "range_max": 12.0,
                "ranges": _wall_ranges(x, y) if ranges is None else ranges}
        message = self.sessions[robot].message("scan", body)
        return self.ingest.handle(message.topic, message.payload)

    def publish(self) -> int:
        """Run the service's turn and hand what it sends to the robot's view; how many the view took."""
        return sum(self.view.receive(m.topic, m.payload) for m in self.service.step())


@pytest.fixture
def fleet(registry, clock) -> Fleet:
    return Fleet(registry, clock)


def _sweep(fleet: Fleet, robots: list[int], scans: int = 4, **kwargs) -> None:
    for _ in range(scans):
        for robot in robots:
            fleet.scan(robot, 2.5 + 0.5 * robot, 0.0, **kwargs)  # the whole wall within the 6 m insertion range
        fleet.clock.advance(0.5)


def test_corroborated_scans_close_the_road_and_robots_hear_it(fleet) -> None:
    _sweep(fleet, [0, 1])
    assert fleet.service.occupancy(WALL_X + 0.05, 0.0) == OCCUPIED
    assert fleet.publish() > 0
    assert fleet.view.edge_cost("a", "b", {"length": 40.0}) is None
    assert set(fleet.service.blocked_roads()[("a", "b")]) == {s.signer.did for s in fleet.sessions[:2]}
    tiles = [body for key, body in fleet.view.tiles.items() if key[0] == "belief"]
    assert tiles and all(decode_tile(body)[3].shape == (64, 64) for body in tiles)
    assert fleet.service.path_cost([(0.0, 0.0), (10.0, 0.0)]) is None
    assert fleet.service.path_cost([(3.2, 0.0), (5.2, 0.0)]) == pytest.approx(2.0)  # seen free by both
    assert fleet.service.path_cost([(30.0, 30.0), (33.0, 30.0)]) == pytest.approx(4.5)  # nobody has seen it
    assert fleet.service.tile_png(fleet.service.grid.tiles()[0]).startswith(b"\x89PNG\r\n\x1a\n")


def test_one_robot_alone_is_not_believed_but_makes_the_road_a_suspect(fleet) -> None:
    for x in np.arange(2.0, 3.6, 0.25):  # one robot driving up to the wall: its hits fill the wall in
        fleet.scan(0, float(x), 0.0)
        fleet.clock.advance(0.5)
    assert fleet.service.occupancy(WALL_X + 0.05, 0.0) != OCCUPIED
    fleet.publish()
    assert fleet.view.edge_cost("a", "b", {"length": 40.0}) == 40.0  # suspect: planned as free
    assert fleet.view.states[("a", "b")] == "suspect"
    suspect = fleet.service.suspects()[("a", "b")]
    assert set(suspect.contributors) == {fleet.sessions[0].signer.did}
    assert suspect.at[0] == pytest.approx(WALL_X, abs=0.3) and suspect.at[1] == pytest.approx(0.0, abs=0.3)
    assert [x for x, _ in suspect.vantage_points] == pytest.approx([suspect.at[0] - 4.0, suspect.at[0] + 4.0])
    _sweep(fleet, [1])  # a second robot looks: corroborated, no longer a suspect
    fleet.clock.advance(1.0)
    fleet.publish()
    assert fleet.service.suspects() == {} and fleet.view.edge_cost("a", "b", {"length": 40.0}) is None


def _telemetry(fleet: Fleet, robot: int, x: float, y: float, v: float = 0.0) -> None:
    body = {"t": int(fleet.clock() * 1000), "pose": {"x": x, "y": y, "theta": 0.0}, "twist": {"v": v, "w": 0.0},
            "battery": 0.9}
    message = fleet.sessions[robot].message("telemetry", body)
    assert fleet.ingest.handle(message.topic, message.payload) is not None


def _disc_ranges(x: float, cx: float, radius: float) -> list[float | None]:
    """What a lidar at (x, 0) sees of a robot-sized disc at (cx, 0), nothing else around."""
    ranges: list[float | None] = []
    for angle in ANGLES:
        c, s = math.cos(angle), math.sin(angle)
        b = (cx - x) * c
        disc = b * b - ((cx - x) ** 2 - radius ** 2)
        r = b - math.sqrt(disc) if disc >= 0 and b > 0 else math.inf
        ranges.append(round(r, 3) if r < 12.0 else None)
    return ranges


def test_returns_from_another_robot_are_not_mapped(fleet) -> None:
    """A teammate standing (or driving, by its reported speed) in view is not an obstacle."""
    for _ in range(4):
        _telemetry(fleet, 2, 4.0, 0.0)
        for robot in (0, 1):
            fleet.scan(robot, 0.0, 0.0, ranges=_disc_ranges(0.0, 4.0, 0.35))
        fleet.clock.advance(0.5)
    around = [(4.0 + dx, dy) for dx in np.arange(-0.6, 0.61, 0.1) for dy in np.arange(-0.6, 0.61, 0.1)]
    assert not any(fleet.service.occupancy(x, y) == OCCUPIED for x, y in around)
    fleet.clock.advance(5.0)  # the robot went silent: its pose is stale; an obstacle there is mapped
    for _ in range(4):
        for robot in (0, 1):
            fleet.scan(robot, 0.0, 0.0, ranges=_disc_ranges(0.0, 4.0, 0.35))
        fleet.clock.advance(0.5)
    assert fleet.service.occupancy(3.7, 0.0) == OCCUPIED


def test_a_moving_teammate_is_followed_by_its_reported_speed(fleet) -> None:
    _telemetry(fleet, 2, 2.8, 0.0, v=1.2)  # 1.2 m/s along +x: at x = 4 one second later
    fleet.clock.advance(1.0)
    for robot in (0, 1):
        fleet.scan(robot, 0.0, 0.0, ranges=_disc_ranges(0.0, 4.0, 0.35))
    assert fleet.service.occupancy(3.7, 0.0) != OCCUPIED


def test_a_robot_erasing_a_corroborated_wall_loses_trust_and_the_wall_stays(fleet) -> None:
    _sweep(fleet, [0, 1, 2])
    liar = fleet.sessions[3].signer.did
    before = fleet.service.trust.weight(liar)
    _sweep(fleet, [3], scans=10, ranges=[None] * RAYS)
    assert fleet.service.occupancy(WALL_X + 0.05, 0.0) == OCCUPIED
    assert fleet.service.trust.weight(liar) < min(before, 0.4)
    honest = fleet.service.trust.weight(fleet.sessions[0].signer.did)
    assert honest > fleet.service.trust.weight(liar)


@pytest.mark.parametrize("case, reason", [("outside", "outside_world"), ("flood", "too_frequent")])
def test_scans_the_map_refuses_are_counted_and_change_nothing(fleet, case: str, reason: str) -> None:
    if case == "outside":
        fleet.scan(0, 500.0, 0.0, ranges=[5.0] * RAYS)
    else:
        fleet.scan(0, 0.0, 0.0)
        tiles = {key: fleet.service.grid.version(key) for key in fleet.service.grid.tiles()}
        fleet.clock.advance(0.05)
        fleet.scan(0, 0.0, 0.0)  # 20 Hz: faster than any lidar the map takes
        assert {key: fleet.service.grid.version(key) for key in fleet.service.grid.tiles()} == tiles
    assert fleet.service.refused[reason] == 1
    if case == "outside":
        assert fleet.service.grid.tiles() == []


def test_impossible_ranges_stop_at_ingest(fleet) -> None:
    assert fleet.scan(0, 0.0, 0.0, ranges=[50.0] * RAYS) is None
    assert fleet.ingest.metrics.total("depai_ingest_refused_total", reason="implausible") == 1
    assert fleet.service.grid.tiles() == [] and fleet.service.scans == 0


def test_a_graph_from_anyone_but_the_map_service_is_refused(fleet, registry, clock) -> None:
    key = Signer.generate()
    impostor = EnvelopeSigner(key, create_identity(registry, key).did, clock=clock)
    clock.advance(1)
    forged = impostor.seal("map.graph", {"version": 99, "edges": [{"u": "a", "v": "b", "state": "blocked"}]})
    assert not fleet.view.receive(MAP_GRAPH, forged)
    assert fleet.view.refused["untrusted_sender"] == 1 and fleet.view.edge_cost("a", "b", {"length": 4.0}) == 4.0


def test_provenance_names_who_contributed(fleet) -> None:
    _sweep(fleet, [0, 1])
    dids = {s.signer.did for s in fleet.sessions[:2]}
    for key in fleet.service.grid.tiles():
        assert set(fleet.service.provenance(key)) <= dids
    assert set().union(*(fleet.service.provenance(k) for k in fleet.service.grid.tiles())) == dids

