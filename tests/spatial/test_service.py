"""The map service: verified scans in, a trust-weighted map and signed tiles and road states out; bad input changes nothing."""

from __future__ import annotations

import math
import threading

import networkx as nx
import numpy as np
import pytest

from bus.ingest import Ingest
from bus.session import MachineSession
from bus.schemas import validate_body
from bus.topics import MAP_GRAPH, MAP_PRESENCE, topic_root
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.envelope import Envelope, EnvelopeSigner, reread
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

    def __init__(self, registry, clock, **options) -> None:
        self.clock = clock
        map_key = Signer.generate()
        map_did = create_identity(registry, map_key).did
        self.service = MapService(EnvelopeSigner(map_key, map_did, clock=clock), ROAD, bounds=(-50, -50, 50, 50),
                                  clock=clock, spec=GridSpec(), level_of=lambda did: "fleet", publish_every_s=1.0,
                                  **options)
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


def _disc_ranges(x: float, cx: float, radius: float, y0: float = 0.0) -> list[float | None]:
    """What a lidar at (x, 0) sees of a robot-sized disc at (cx, y0), nothing else around."""
    ranges: list[float | None] = []
    for angle in ANGLES:
        c, s = math.cos(angle), math.sin(angle)
        b = (cx - x) * c + y0 * s
        disc = b * b - ((cx - x) ** 2 + y0 ** 2 - radius ** 2)
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
    fleet.service.fuse_pending()  # the grid itself holds what has been fused (queries fuse first on their own)
    dids = {s.signer.did for s in fleet.sessions[:2]}
    for key in fleet.service.grid.tiles():
        assert set(fleet.service.provenance(key)) <= dids
    assert set().union(*(fleet.service.provenance(k) for k in fleet.service.grid.tiles())) == dids



# --- batched fusion: observe() queues, fuse_pending() (the start of every step) fuses --------------------------


def _envelope(kind: str, did: str, body: dict) -> Envelope:
    """What an ingest worker hands a consumer once it has verified a message (the service checks no signature)."""
    return Envelope(kind, did, "key-1", 0, 0, 0, body, b"", b"")


def _scan_body(t_s: float, x: float, y: float, ranges: list[float | None]) -> dict:
    return {"t": round(t_s * 1000), "pose": {"x": x, "y": y, "theta": 0.0}, "angle_min": -math.pi,
            "angle_increment": 2 * math.pi / RAYS, "range_max": 12.0, "ranges": ranges}


def test_a_scan_is_queued_by_observe_and_fused_only_by_fuse_pending_or_step(fleet) -> None:
    assert MapService.declared_kinds == ("birth", "telemetry", "scan")
    service = fleet.service
    fleet.scan(0, 2.5, 0.0)
    assert service.pending == 1 and service.scans == 0 and service.grid.tiles() == []
    assert service.fuse_pending() == 1
    assert service.pending == 0 and service.scans == 1 and service.grid.tiles() != []
    fleet.clock.advance(0.5)
    fleet.scan(1, 3.0, 0.0)
    assert service.pending == 1
    service.step()  # fuses first, then publishes
    assert service.pending == 0 and service.scans == 2


def test_observe_never_waits_for_the_maps_lock(fleet) -> None:
    """A long publishing turn or query holds the lock; the ingest thread's scans and telemetry go on."""
    did = fleet.sessions[0].signer.did
    t_s = fleet.clock()
    done = threading.Event()

    def ingest() -> None:
        fleet.service.observe("scan", _envelope("scan", did, _scan_body(t_s, 2.5, 0.0, _wall_ranges(2.5, 0.0))))
        fleet.service.observe("telemetry", _envelope("telemetry", did, {
            "t": round(t_s * 1000) + 100, "pose": {"x": 2.6, "y": 0.0, "theta": 0.0}, "twist": {"v": 1.0, "w": 0.0},
            "battery": 0.9}))
        done.set()

    with fleet.service._lock:  # as step() holds it while it fuses and publishes
        worker = threading.Thread(target=ingest, daemon=True)
        worker.start()
        assert done.wait(5.0), "observe() blocked on the map's lock"
    worker.join()
    assert fleet.service.pending == 1 and fleet.service.fuse_pending() == 1


def test_a_full_queue_drops_scans_and_counts_them(registry, clock) -> None:
    service = Fleet(registry, clock).service
    service.max_pending = 2
    for robot in range(3):
        service.observe("scan", _envelope("scan", f"did:key:r{robot}", _scan_body(clock(), 0.0, 0.0, [None] * RAYS)))
    assert service.pending == 2 and service.refused["backlog"] == 1
    assert service.fuse_pending() == 2 and service.scans == 2


def test_teammates_are_dropped_for_a_whole_batch_moving_fast_or_slow(fleet) -> None:
    """Robots 0 and 1 scan robot 2 (reported at 1.2 m/s) and robot 3 (reported at 10 m/s: it moves further
    within one time slice than a teammate's radius) at several times, all fused in one batch: neither robot
    becomes an obstacle."""
    start = fleet.clock()
    _telemetry(fleet, 2, 1.0, 0.0, v=1.2)
    body = {"t": round(start * 1000), "pose": {"x": 0.0, "y": 3.0, "theta": 0.0}, "twist": {"v": 10.0, "w": 0.0},
            "battery": 0.9}  # a machine faster than these robots' profile (ingest would refuse it for them)
    fleet.service.observe("telemetry", _envelope("telemetry", fleet.sessions[3].signer.did, body))
    for robot, dt in ((0, 0.1), (1, 0.3), (0, 0.6), (1, 0.7), (0, 1.2)):  # one time slice holds 0.1 and 0.3
        slow, fast = 1.0 + 1.2 * dt, 10.0 * dt  # where robots 2 and 3 are at start + dt
        y = 3.0 * robot
        fleet.clock.now = start + dt
        ranges = [a if b is None else b if a is None else min(a, b)
                  for a, b in zip(_disc_ranges(-2.0, slow, 0.35, y0=-y), _disc_ranges(-2.0, fast, 0.35, y0=3.0 - y),
                                  strict=True)]
        fleet.scan(robot, -2.0, y, ranges=ranges)
    assert fleet.service.pending == 5
    fleet.service.fuse_pending()
    assert fleet.service.scans == 5
    grid, now, size = fleet.service.grid, fleet.clock(), fleet.service.grid.spec.tile_cells
    for cx, cy in [(1.0 + 1.2 * dt, 0.0) for dt in (0.1, 0.6, 1.2)] + [(10.0 * dt, 3.0) for dt in (0.1, 0.3)]:
        for robot in (0, 1):  # not one hit of either robot's own evidence lands on a teammate
            alone = {session.signer.did: float(index == robot) for index, session in enumerate(fleet.sessions)}
            for x in np.arange(cx - 0.5, cx + 0.51, 0.1):
                for y in np.arange(cy - 0.5, cy + 0.51, 0.1):
                    ix, iy = grid.cell_of(x, y)
                    own = grid.belief((ix // size, iy // size), alone, now).log_odds[ix % size, iy % size]
                    assert own <= 0.0, (robot, cx, cy)


def test_queries_and_step_run_while_another_thread_observes(fleet) -> None:
    """The dashboard's thread asks, the fleet loop steps, the ingest thread observes: nothing raises or is lost."""
    service, clock = fleet.service, fleet.clock
    dids = [session.signer.did for session in fleet.sessions]
    start = clock()
    sent = 400
    errors: list[BaseException] = []
    stop = threading.Event()

    def observe() -> None:
        try:
            for index in range(sent):
                did = dids[index % len(dids)]
                t_s = start + 0.25 * (index // len(dids)) + 0.01 * (index % len(dids))
                x = -10.0 + (index % 40) * 0.5
                service.observe("scan", _envelope("scan", did, _scan_body(t_s, x, 0.0, _wall_ranges(x, 0.0))))
                service.observe("telemetry", _envelope("telemetry", did, {
                    "t": round(t_s * 1000), "pose": {"x": x, "y": 0.0, "theta": 0.0}, "twist": {"v": 1.0, "w": 0.0},
                    "battery": 0.9}))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def ask() -> None:
        try:
            while not stop.is_set():
                service.occupancy(WALL_X + 0.05, 0.0)
                service.path_cost([(0.0, 0.0), (10.0, 0.0)])
                for key in service.tile_versions():
                    service.tile_png(key)
                    service.provenance(key)
                service.step()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    asking = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
    observing = threading.Thread(target=observe, daemon=True)
    for thread in [*asking, observing]:
        thread.start()
    observing.join(60.0)
    stop.set()
    for thread in asking:
        thread.join(60.0)
    assert not errors, errors
    service.fuse_pending()
    assert service.scans + sum(service.refused.values()) == sent and service.pending == 0
    assert service.scans > 0 and service.occupancy(WALL_X + 0.05, 0.0) == OCCUPIED


def test_a_scan_that_cannot_be_fused_costs_only_itself(registry, clock) -> None:
    """Past ingest's schema nothing like this arrives; should it, the batch's other scans and the turn go on."""
    service = Fleet(registry, clock).service
    service.observe("scan", _envelope("scan", "did:key:good", _scan_body(clock(), 2.5, 0.0, _wall_ranges(2.5, 0.0))))
    service.observe("scan", _envelope("scan", "did:key:bad", _scan_body(clock(), 3.0, 0.0, ["far"] * RAYS)))
    service.step()
    assert service.scans == 1 and service.refused["unfusable"] == 1 and service.pending == 0


def test_batched_fusion_maps_what_fusing_scan_by_scan_mapped() -> None:
    """benchmarks/map.py's city traffic through the per-scan path it keeps as a baseline and through MapService:
    the same fused grid, and trust scored against one consensus per batch within a hair of per scan."""
    from benchmarks import map as bench

    city, dids, ticks = bench.make_traffic(40, 8.0, seed=2)
    one_by_one = bench.drive(bench.PerScanService, city, dids, ticks[:30], ticks[30:])
    batched = bench.drive(MapService, city, dids, ticks[:30], ticks[30:])
    assert one_by_one.scans == batched.scans == batched.service.scans - sum(
        envelope.kind == "scan" for _, envelopes in ticks[:30] for envelope in envelopes) > 100
    tiles, worst, trust_gap = bench.grids_agree(one_by_one.service, batched.service)
    assert tiles > 20 and worst == 0.0  # the same evidence, teammates dropped alike
    assert trust_gap < 0.02


# --- witnessed location: peers' lidar and the map judge where robots say they are -----------------------------


def _presence(fleet: Fleet) -> list[dict]:
    """The map.presence bodies of one turn of the service (checked against the schema, signed by the map)."""
    bodies = []
    for message in fleet.service.step():
        if message.topic == MAP_PRESENCE:
            envelope = reread(message.payload)
            assert envelope.kind == "map.presence" and envelope.issuer == fleet.service.did
            validate_body("map.presence", envelope.body)
            bodies.append(envelope.body)
    return bodies


@pytest.mark.parametrize("witnessing", [True, False])
def test_a_liar_claiming_to_stand_on_a_wall_does_not_hide_it(registry, clock, witnessing: bool) -> None:
    """Robot 2 says it stands against the wall; robots 0 and 1 see the wall there and no robot. Before
    witnessing (witness=None), the returns within 0.9 m of its claim were dropped as a teammate's: the wall had
    a hole for as long as it kept saying so."""
    fleet = Fleet(registry, clock, **({} if witnessing else {"witness": None}))
    for _ in range(6):
        _telemetry(fleet, 2, WALL_X - 0.1, 0.5)
        for robot in (0, 1):
            fleet.scan(robot, 2.5 + 0.5 * robot, 0.0)
        fleet.service.fuse_pending()  # as the fleet loop's step() does every tick
        fleet.clock.advance(0.5)
    # The wall's cells within 0.9 m of the claim that both robots' beams hit (the cells at y = 1 m and beyond
    # only one of them does: never corroborated, liar or not).
    hidden = [fleet.service.occupancy(WALL_X + 0.05, y) == OCCUPIED for y in np.arange(0.0, 0.81, 0.2)]
    fleet.publish()
    liar = fleet.sessions[2].signer.did
    if witnessing:
        assert all(hidden)
        assert fleet.view.edge_cost("a", "b", {"length": 40.0}) is None  # the road stays closed
        report = {row["did"]: row for row in fleet.service.presence_report()}[liar]
        assert report["unseen"] + report["impossible"] > 0 and report["seen"] == 0 and report["confidence"] < 0.3
    else:
        assert not any(hidden)


def test_a_scan_from_inside_a_corroborated_wall_is_refused_and_its_claim_is_impossible(fleet) -> None:
    _sweep(fleet, [0, 1])
    _presence(fleet)
    fleet.scan(2, WALL_X + 0.05, 0.0, ranges=[None] * RAYS)  # it would erase the wall around it
    fleet.service.fuse_pending()
    assert fleet.service.refused["impossible_pose"] == 1 and fleet.service.occupancy(WALL_X + 0.05, 0.0) == OCCUPIED
    fleet.clock.advance(1.0)
    verdicts = [v for body in _presence(fleet) for v in body["verdicts"] if v["robot"] == fleet.sessions[2].signer.did]
    assert [(v["verdict"], v["by"], v["x"]) for v in verdicts] == [("impossible", [], WALL_X + 0.05)]


def test_robots_seen_where_they_say_and_missing_where_they_say_are_published_once_a_second(fleet) -> None:
    """Robot 2 stands at (4, 0) and robot 3 says it stands at (2, 2), where nothing is: robots 0 and 1 see both."""
    dids = [session.signer.did for session in fleet.sessions]
    versions = []
    for turn in range(4):
        _telemetry(fleet, 2, 4.0, 0.0)
        _telemetry(fleet, 3, 2.0, 2.0)
        for robot in (0, 1):
            fleet.scan(robot, 0.0, -0.5 * robot, ranges=_disc_ranges(0.0, 4.0, 0.35, y0=0.5 * robot))
        bodies = _presence(fleet)
        if turn % 2:
            assert bodies == []  # half a second after the last: verdicts wait for the next message
        else:
            (body,) = bodies
            versions.append(body["version"])
            kinds = {(v["robot"], v["verdict"]): set(v["by"]) for v in body["verdicts"]}
            assert kinds == {(dids[2], "seen"): {dids[0], dids[1]}, (dids[3], "unseen"): {dids[0], dids[1]}}
        fleet.clock.advance(0.5)
    assert versions == [1, 2]
    report = {row["did"]: row for row in fleet.service.presence_report()}
    assert report[dids[2]]["confidence"] > 0.8 and report[dids[3]]["confidence"] < 0.2
    assert report[dids[2]]["last"] == "seen" and report[dids[3]]["unseen"] == 4
    assert fleet.service.occupancy(3.7, 0.0) != OCCUPIED  # robot 2's body is still no obstacle
