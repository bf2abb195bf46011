"""The simulated fleet end to end: real PyBullet world, real agents, real signatures, ground truth to judge.

Robots are commanded only through signed commands that their gates verify, and
everything they say goes through the ingest pipeline; ground truth is read only
to check what they did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import identity.envelope
import networkx as nx
import numpy as np
import pytest

from bus.broker import BrokerConfig, MqttUser, start_broker
from bus.ingest import Ingest
from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import MARKET_AWARDS, MARKET_TASKS
from identity.canonical import canonicalize
from identity.envelope import Envelope, reread
from identity.registry import DidRegistry
from launch.fleet import FleetConfig, Identity, SimFleet, register, run
from launch.links import LoopbackLink, MqttLink
from marketplace.dispatch import Dispatcher
from robots.agent import REBID_S
from sim.city import Place
from sim.demand import Demand
from sim.obstacles import ROADWORKS_HEIGHT_M, Obstacle


class Heard:
    """An ingest consumer that keeps every verified envelope, by kind."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def __call__(self, topic: str, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self, robot: str | None = None) -> list[str]:
        return [e.body["type"] for e in self.envelopes
                if e.kind == "event" and (robot is None or e.issuer == robot)]

    def kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.envelopes)


class Scene:
    """A fleet in process, a commander the robots trust, and what ingest heard."""

    def __init__(self, registry: DidRegistry, config: FleetConfig) -> None:
        self.operator = register(registry)
        self.commander: Identity = register(registry, controller=self.operator.did)
        self.fleet = SimFleet(config, registry, controller=self.operator.did, commanders=[self.commander.did])
        self.heard = Heard()
        self.ingest = Ingest(registry, self.heard, clock=self.fleet.clock)
        self.link = LoopbackLink(self.fleet, self.ingest)
        self._signer = self.commander.envelope_signer(self.fleet.clock)

    def command(self, index: int, kind: str, **fields: object) -> None:
        agent = self.fleet.agents[index]
        body = {"to": agent.did, "type": kind, **fields}
        topic = f"{agent.session.topic_root}/{BY_KIND['command'].channel}"
        self.link.publish_services([Outgoing(topic, self._signer.seal("command", body), 1, False)])

    def run_until(self, done, limit_s: float) -> float:
        """Run in one-second slices until ``done()``; returns the simulated seconds it took."""
        start = self.fleet.world.time_s
        while not done():
            assert self.fleet.world.time_s - start < limit_s, f"not done after {limit_s} simulated s"
            run(self.fleet, self.link, duration_s=1.0)
        return self.fleet.world.time_s - start

    def refused(self) -> int:
        return int(self.ingest.metrics.total("depai_ingest_refused_total"))


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[callable]:
    scenes: list[Scene] = []

    def make(**overrides: object) -> Scene:
        config = FleetConfig(**{"robots": 1, "blocks": 3, "seed": 11, "obstacles": False, **overrides})
        made = Scene(DidRegistry(tmp_path / f"registry-{len(scenes)}.sqlite3"), config)
        scenes.append(made)
        return made

    yield make
    for made in scenes:
        made.fleet.close()
        made.ingest.registry.close()


def _far_dropoff(scene: Scene, index: int = 0) -> tuple[float, float]:
    x, y, _ = scene.fleet.world.truth.poses[index]
    place = max(scene.fleet.city.places_of("dropoff"), key=lambda p: math.hypot(p.x - x, p.y - y))
    return place.x, place.y


def test_a_robot_drives_to_where_it_is_sent(scene) -> None:
    s = scene()
    gx, gy = _far_dropoff(s)
    s.command(0, "goto", args={"x": gx, "y": gy})
    s.run_until(lambda: "goto.arrived" in s.heard.events(), limit_s=600)
    said = [e.body["state"] for e in s.heard.envelopes if e.kind == "telemetry" and e.issuer == s.fleet.agents[0].did]
    assert "goto" in said and said[-1] == "idle"  # telemetry says what it is doing
    truth = s.fleet.world.truth
    assert math.hypot(truth.poses[0, 0] - gx, truth.poses[0, 1] - gy) < 2.0
    assert truth.collisions.sum() == 0 and s.refused() == 0
    believed = s.fleet.agents[0].pose
    assert math.hypot(believed[0] - truth.poses[0, 0], believed[1] - truth.poses[0, 1]) < 1.5


def _deliver(s: Scene, task: str, payload_kg: float) -> tuple[Place, tuple[float, float]]:
    """Send robot 0 a signed deliver command from the first depot to the farthest drop-off; (depot, drop-off)."""
    depot, drop = s.fleet.city.places_of("depot")[0], _far_dropoff(s)
    s.command(0, "deliver", task=task, args={"pickup": {"x": depot.x, "y": depot.y},
                                             "dropoff": {"x": drop[0], "y": drop[1]}, "payload_kg": payload_kg})
    return depot, drop


def test_a_delivery_runs_through_every_state_with_a_receipt(scene) -> None:
    s = scene()
    _, drop = _deliver(s, "task-1", 3.0)
    s.run_until(lambda: "task.delivered" in s.heard.events(), limit_s=900)
    assert s.heard.events() == ["task.to_pickup", "task.loaded", "task.to_dropoff", "task.delivered"]
    [receipt] = [e for e in s.heard.envelopes if e.kind == "receipt"]
    assert receipt.body["task"] == "task-1"
    assert math.hypot(receipt.body["pose"]["x"] - drop[0], receipt.body["pose"]["y"] - drop[1]) < 2.5
    assert s.fleet.world.payload(0) == (None, 0.0)
    telemetry = [e.body for e in s.heard.envelopes if e.kind == "telemetry"]
    assert any(t.get("load_kg") == 3.0 and t["state"] == "to_dropoff" for t in telemetry)
    assert s.refused() == 0


def test_an_aborted_task_takes_its_parcel_back(scene) -> None:
    s = scene()
    depot, _ = _deliver(s, "task-2", 1.0)
    s.run_until(lambda: "task.loaded" in s.heard.events(), limit_s=600)
    assert s.fleet.world.payload(0)[0] == "task-2"
    run(s.fleet, s.link, duration_s=10)
    s.command(0, "abort", task="task-2")
    s.run_until(lambda: "parcel.returned" in s.heard.events(), limit_s=300)
    assert s.heard.events()[-2:] == ["task.failed", "parcel.returned"]
    assert s.fleet.world.payload(0) == (None, 0.0) and s.fleet.agents[0].state.value == "idle"
    x, y = s.fleet.world.truth.poses[0, :2]
    assert math.hypot(x - depot.x, y - depot.y) < 2.0


def test_a_forged_or_untrusted_command_moves_nothing(scene, tmp_path: Path) -> None:
    s = scene()
    stranger = register(s.ingest.registry)
    run(s.fleet, s.link, duration_s=1.0)  # fleet time passes the stranger's registration
    agent = s.fleet.agents[0]
    topic = f"{agent.session.topic_root}/cmd"
    forged = stranger.envelope_signer(s.fleet.clock).seal("command", {"to": agent.did, "type": "goto",
                                                                       "args": {"x": 0, "y": 0}})
    s.link.publish_services([Outgoing(topic, forged, 1, False)])
    s.run_until(lambda: "command.refused" in s.heard.events(), limit_s=5)
    assert agent.mode == "idle" and agent.refused == Counter({"untrusted_sender": 1})


def _street_on_route(s: Scene, goal: tuple[float, float]) -> str:
    """A street in the middle of the robot's planned route whose closure leaves a detour."""
    planner, graph = s.fleet.planner, s.fleet.planner.graph
    x, y, _ = s.fleet.agents[0].pose
    route = planner.plan((x, y), goal)
    bridges = {graph.edges[u, v]["street"] for u, v in nx.bridges(graph)}
    junctions = [n for n in route.nodes if graph.nodes[n]["kind"] == "junction"]
    streets = [graph.edges[u, v]["street"] for u, v in zip(junctions, junctions[1:]) if graph.has_edge(u, v)]
    candidates = [street for street in streets[1:] if street not in bridges]
    assert candidates, f"route {route.nodes} has no closable street"
    return candidates[0]


def test_a_closed_street_makes_the_robot_replan(scene) -> None:
    s = scene(seed=5)
    s.run_until(lambda: s.fleet.agents[0].estimator is not None, limit_s=2)
    goal = _far_dropoff(s)
    street = _street_on_route(s, goal)
    box = dataclasses.replace(s.fleet.city.street_box(street, fraction=0.15), height=ROADWORKS_HEIGHT_M)
    s.fleet.schedule.add(Obstacle("roadworks-test", "roadworks", 0.0, 1e9, box, street))
    s.command(0, "goto", args={"x": goal[0], "y": goal[1]})
    s.run_until(lambda: "goto.arrived" in s.heard.events(), limit_s=900)
    blocked = [e.body["detail"]["street"] for e in s.heard.envelopes
               if e.kind == "event" and e.body["type"] == "route.blocked"]
    assert street in blocked
    assert s.fleet.world.truth.collisions.sum() == 0


def test_a_low_battery_sends_the_robot_to_charge(scene) -> None:
    s = scene(battery=0.16)
    gx, gy = _far_dropoff(s)
    s.command(0, "goto", args={"x": gx, "y": gy})
    s.run_until(lambda: s.fleet.world.charging(0), limit_s=900)
    assert "battery.low" in s.heard.events()
    charger = min(s.fleet.chargers, key=lambda c: math.dist(c, s.fleet.world.truth.poses[0, :2]))
    assert math.dist(charger, s.fleet.world.truth.poses[0, :2]) < 2.0
    before = s.fleet.world.battery(0)
    run(s.fleet, s.link, duration_s=30)
    assert s.fleet.world.battery(0) > before and s.fleet.agents[0].mode == "charging"


def _dispatched_run(registry: DidRegistry, seed: int, duration_s: float) -> tuple[np.ndarray, list[str], int]:
    operator = register(registry)
    service = register(registry, controller=operator.did)
    config = FleetConfig(robots=4, blocks=3, seed=seed, orders_per_min=4.0)
    fleet = SimFleet(config, registry, controller=operator.did, commanders=[service.did])
    try:
        dispatcher = Dispatcher(service.envelope_signer(fleet.clock), clock=fleet.clock)
        ingest = Ingest(registry, dispatcher.observe, clock=fleet.clock)
        run(fleet, LoopbackLink(fleet, ingest), duration_s=duration_s, dispatcher=dispatcher,
            demand=Demand(fleet.city, seed, config.order_rate))
        return fleet.world.truth.poses, dispatcher.delivered, int(ingest.metrics.total("depai_ingest_refused_total"))
    finally:
        fleet.close()


def test_the_same_seed_gives_the_same_trajectories(tmp_path: Path) -> None:
    with DidRegistry(tmp_path / "a.sqlite3") as first, DidRegistry(tmp_path / "b.sqlite3") as second:
        poses_a, delivered_a, refused_a = _dispatched_run(first, seed=3, duration_s=240)
        poses_b, delivered_b, refused_b = _dispatched_run(second, seed=3, duration_s=240)
    assert np.array_equal(poses_a, poses_b) and delivered_a == delivered_b
    assert refused_a == refused_b == 0
    with DidRegistry(tmp_path / "c.sqlite3") as third:
        poses_c, _, _ = _dispatched_run(third, seed=4, duration_s=20)
    assert not np.array_equal(poses_a, poses_c)


def test_a_few_robots_over_a_real_broker_every_message_verified(tmp_path: Path) -> None:
    gateway = MqttUser("simulator", "gateway-secret", "gateway")
    service = MqttUser("services", "service-secret", "service")
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker", users=[gateway, service])) as broker, \
            DidRegistry(tmp_path / "registry.sqlite3") as registry:
        operator = register(registry)
        dispatcher_id = register(registry, controller=operator.did)
        config = FleetConfig(robots=3, blocks=3, seed=2, orders_per_min=6.0)
        fleet = SimFleet(config, registry, controller=operator.did, commanders=[dispatcher_id.did])
        dispatcher = Dispatcher(dispatcher_id.envelope_signer(fleet.clock), clock=fleet.clock)
        heard = Heard()

        def consume(topic: str, envelope: Envelope) -> None:
            heard(topic, envelope)
            dispatcher.observe(topic, envelope)

        ingest = Ingest(registry, consume, clock=fleet.clock)
        link = MqttLink(fleet, ingest, broker.url, gateway_login=(gateway.username, gateway.password),
                        service_login=(service.username, service.password), state_dir=tmp_path).start()
        try:
            report = run(fleet, link, duration_s=240, speed=0, dispatcher=dispatcher,
                         demand=Demand(fleet.city, 2, config.order_rate))
            link.gateway.wait_drained(10)
            give_up = time.monotonic() + 10
            while len(heard.envelopes) < report.messages + 4 and time.monotonic() < give_up:
                time.sleep(0.05)
        finally:
            link.close()
            fleet.close()
    kinds = heard.kinds()
    assert kinds["birth"] == 4  # the simulator and its three robots
    assert len(heard.envelopes) == report.messages + 4, (len(heard.envelopes), report.messages, kinds)
    assert int(ingest.metrics.total("depai_ingest_refused_total")) == 0
    assert kinds["telemetry"] == pytest.approx(3 * 2 * 240, abs=6)
    assert heard.events().count("task.to_pickup") >= 1, "no command crossed the broker to a robot"
    assert sum(agent.refused.total() for agent in fleet.agents) == 0



def _task(s: Scene, task_id: str, max_price: int = 5_000) -> dict:
    depot, drop = s.fleet.city.places_of("depot")[0], _far_dropoff(s)
    return {"id": task_id, "customer": s.operator.did, "pickup": {"x": depot.x, "y": depot.y},
            "dropoff": {"x": drop[0], "y": drop[1]}, "deadline": int((s.fleet.clock() + 900) * 1000),
            "max_price": max_price, "currency": "EUR", "payload_kg": 2.0}


def _announce(s: Scene, task_id: str, max_price: int = 5_000) -> dict:
    body = _task(s, task_id, max_price)
    s.link.publish_services([Outgoing(MARKET_TASKS, s._signer.seal("task", body), 1, False)])
    return body


def _award(s: Scene, body: dict, *, robot: str, task_hash: str | None = None) -> bytes:
    award = {"task": body["id"], "robot": robot, "price": 1_000, "currency": "EUR", "bid_hash": "0" * 64,
             "task_hash": task_hash or hashlib.sha256(canonicalize(body)).hexdigest()}
    return s._signer.seal("award", award)


def test_a_robot_bids_on_an_announced_task_and_delivers_what_it_is_awarded(scene) -> None:
    s = scene()
    run(s.fleet, s.link, duration_s=4.0)  # localized
    body = _announce(s, "m1")
    s.run_until(lambda: s.heard.kinds()["bid"] >= 1, limit_s=5)
    bid = next(e for e in s.heard.envelopes if e.kind == "bid")
    assert bid.body["task"] == "m1" and 0 < bid.body["price"] <= 5_000 and bid.body["eta_ms"] > 0
    agent = s.fleet.agents[0]
    wrong = _award(s, body, robot=agent.did, task_hash="f" * 64)
    s.link.publish_services([Outgoing(MARKET_AWARDS, wrong, 1, False)])
    s.run_until(lambda: "command.rejected" in s.heard.events(), limit_s=5)
    assert agent.mode == "idle"  # an award that does not match the task it bid on is refused ...
    body = _announce(s, "m2")  # ... and the task it was for is spent: a new announcement, a new bid
    s.run_until(lambda: s.heard.kinds()["bid"] >= 2, limit_s=5)
    award = _award(s, body, robot=agent.did)
    s.link.publish_services([Outgoing(MARKET_AWARDS, award, 1, False), Outgoing(MARKET_AWARDS, award, 1, False)])
    s.run_until(lambda: "task.delivered" in s.heard.events(), limit_s=900)
    assert s.fleet.market_refused == Counter({"replayed": 1})  # the same award twice: the copy is refused
    assert any(e.kind == "receipt" and e.body["task"] == "m2" for e in s.heard.envelopes)


def test_a_standing_bid_is_not_sent_again_for_a_re_announced_task_until_it_is_old(scene) -> None:
    s = scene()
    run(s.fleet, s.link, duration_s=4.0)  # localized
    body = _announce(s, "m1")
    s.run_until(lambda: s.heard.kinds()["bid"] >= 1, limit_s=5)
    for _ in range(3):  # the marketplace announces it again every few seconds while nobody is awarded it
        s.link.publish_services([Outgoing(MARKET_TASKS, s._signer.seal("task", body), 1, False)])
        run(s.fleet, s.link, duration_s=2.0)
    assert s.heard.kinds()["bid"] == 1  # the market keeps the standing bid: no new commit for a copy of it
    run(s.fleet, s.link, duration_s=REBID_S)
    s.link.publish_services([Outgoing(MARKET_TASKS, s._signer.seal("task", body), 1, False)])
    s.run_until(lambda: s.heard.kinds()["bid"] >= 2, limit_s=5)  # an old bid is refreshed (position, battery)


def test_awards_from_strangers_or_for_other_robots_move_nothing(scene) -> None:
    s = scene()
    stranger = register(s.ingest.registry)
    run(s.fleet, s.link, duration_s=4.0)
    body = _announce(s, "m1")
    s.run_until(lambda: s.heard.kinds()["bid"] >= 1, limit_s=5)
    agent = s.fleet.agents[0]
    award = {"task": "m1", "robot": agent.did, "price": 1_000, "currency": "EUR", "bid_hash": "0" * 64,
             "task_hash": hashlib.sha256(canonicalize(body)).hexdigest()}
    forged = stranger.envelope_signer(s.fleet.clock).seal("award", award)
    other = _award(s, body, robot="did:peaq:5SomeoneElse")
    s.link.publish_services([Outgoing(MARKET_AWARDS, forged, 1, False), Outgoing(MARKET_AWARDS, other, 1, False)])
    run(s.fleet, s.link, duration_s=3.0)
    assert agent.mode == "idle" and s.fleet.market_refused == Counter({"untrusted_sender": 1})
    assert not any(event.startswith("task.") for event in s.heard.events())


def _handed(monkeypatch: pytest.MonkeyPatch, s: Scene) -> dict[str, list[Envelope]]:
    """What the fleet hands each robot as already verified market traffic, by robot (the robots still act on it)."""
    handed: dict[str, list[Envelope]] = {agent.did: [] for agent in s.fleet.agents}
    for agent in s.fleet.agents:
        def spy(envelope: Envelope, receive=agent.receive_market, did: str = agent.did) -> None:
            handed[did].append(envelope)
            receive(envelope)
        monkeypatch.setattr(agent, "receive_market", spy)
    return handed


def _signature_checks(monkeypatch: pytest.MonkeyPatch, s: Scene, topic: str, payload: bytes) -> int:
    """How many Ed25519 verifications the fleet performs to take in one market message."""
    checks = []
    real = identity.envelope.verify
    with monkeypatch.context() as patch:
        patch.setattr(identity.envelope, "verify", lambda *args: checks.append(args) or real(*args))
        s.fleet.deliver(topic, payload)
    return len(checks)


def test_an_announcement_is_verified_once_for_the_whole_fleet_and_every_free_robot_bids(scene, monkeypatch) -> None:
    s = scene(robots=6)
    run(s.fleet, s.link, duration_s=4.0)  # localized
    handed = _handed(monkeypatch, s)
    announcement = s._signer.seal("task", _task(s, "m1", max_price=50_000))
    assert _signature_checks(monkeypatch, s, MARKET_TASKS, announcement) == 1
    assert s.fleet.market_gate.admitted == 1 and s.fleet.market_refused == Counter()
    assert all([e.body["id"] for e in got] == ["m1"] for got in handed.values())
    s.run_until(lambda: s.heard.kinds()["bid"] >= 6, limit_s=5)
    assert {e.issuer for e in s.heard.envelopes if e.kind == "bid"} == {a.did for a in s.fleet.agents}


def test_an_award_is_verified_once_and_reaches_only_its_robot(scene, monkeypatch) -> None:
    s = scene(robots=4)
    run(s.fleet, s.link, duration_s=4.0)
    body = _announce(s, "m1", max_price=50_000)
    s.run_until(lambda: s.heard.kinds()["bid"] >= 4, limit_s=5)
    handed = _handed(monkeypatch, s)
    winner = s.fleet.agents[2]
    assert _signature_checks(monkeypatch, s, MARKET_AWARDS, _award(s, body, robot=winner.did)) == 1
    assert {did: [e.kind for e in got] for did, got in handed.items() if got} == {winner.did: ["award"]}
    s.run_until(lambda: "task.to_pickup" in s.heard.events(), limit_s=5)
    assert [a.tasks.busy for a in s.fleet.agents] == [False, False, True, False]


def test_an_announcement_reaches_only_robots_free_to_bid(scene, monkeypatch) -> None:
    s = scene(robots=3)
    run(s.fleet, s.link, duration_s=4.0)
    gx, gy = _far_dropoff(s)
    s.command(0, "goto", args={"x": gx, "y": gy})
    run(s.fleet, s.link, duration_s=1.0)
    busy, free = s.fleet.agents[0], s.fleet.agents[1:]
    assert busy.mode == "goto" and not busy.wants_tasks() and all(a.wants_tasks() for a in free)
    handed = _handed(monkeypatch, s)
    _announce(s, "m1", max_price=50_000)
    s.link.pump()
    assert handed[busy.did] == [] and all(len(handed[a.did]) == 1 for a in free)
    s.command(0, "charge")  # a command waiting in its inbox may free it: it is handed the next announcement
    s.link.pump()
    assert busy.wants_tasks()
    _announce(s, "m2", max_price=50_000)
    s.link.pump()
    assert [e.body["id"] for e in handed[busy.did]] == ["m2"]
    run(s.fleet, s.link, duration_s=1.0)
    assert busy.mode == "charging" and any(e.kind == "bid" and e.issuer == busy.did and e.body["task"] == "m2"
                                           for e in s.heard.envelopes)


def test_a_forged_announcement_is_refused_once_and_reaches_no_robot(scene, monkeypatch) -> None:
    s = scene(robots=5)
    stranger = register(s.ingest.registry)
    run(s.fleet, s.link, duration_s=4.0)
    handed = _handed(monkeypatch, s)
    forged = stranger.envelope_signer(s.fleet.clock).seal("task", _task(s, "forged", max_price=50_000))
    assert _signature_checks(monkeypatch, s, MARKET_TASKS, forged) == 1
    assert s.fleet.market_refused == Counter({"untrusted_sender": 1}) and s.fleet.market_gate.admitted == 0
    run(s.fleet, s.link, duration_s=2.0)
    assert all(got == [] for got in handed.values()) and s.heard.kinds()["bid"] == 0
    assert all(agent.refused.total() == 0 for agent in s.fleet.agents)


def test_a_robot_added_while_the_fleet_runs_is_born_and_heard(scene) -> None:
    s = scene()
    run(s.fleet, s.link, duration_s=3.0)
    newcomer = s.fleet.add_robot()
    s.run_until(lambda: any(e.kind == "telemetry" and e.issuer == newcomer.did for e in s.heard.envelopes),
                limit_s=10)
    assert any(e.kind == "birth" and e.issuer == newcomer.did for e in s.heard.envelopes)
    assert len(s.fleet.agents) == 2 and s.refused() == 0


def test_a_resumed_fleet_is_born_above_its_crashed_run_and_heard(tmp_path: Path) -> None:
    """Issue 15: a second run with the same identities (``depai up`` again after a crash) opens newer epochs
    than the first, so an ingest that saw the first run, and its retained will, takes the second as it comes."""
    registry = DidRegistry(tmp_path / "registry.sqlite3")
    operator = register(registry)
    commander = register(registry, controller=operator.did)
    kept: dict[str, Identity] = {}

    def enroll(name: str, **terms: object) -> Identity:
        if name not in kept:
            kept[name] = register(registry, **terms)
        return kept[name]

    config = FleetConfig(robots=3, blocks=3, seed=11, obstacles=False)
    fleets: list[SimFleet] = []
    heard = Heard()
    ingest = Ingest(registry, heard, clock=lambda: fleets[-1].clock())

    def start() -> tuple[Outgoing, list[Outgoing]]:
        epoch_s = fleets[-1].clock() + 1.0 if fleets else None  # a resumed fleet's time goes on from the last
        fleets.append(SimFleet(config, registry, controller=operator.did, commanders=[commander.did],
                               enroll=enroll, epoch_s=epoch_s))
        will, births = fleets[-1].greeting()()
        return Outgoing(*will), [Outgoing(*birth) for birth in births]

    def say(messages: list[Outgoing]) -> None:
        for message in messages:
            ingest.handle(message.topic, message.payload)

    try:
        will, births = start()
        say(births)
        for _ in range(30):
            say(fleets[-1].step())
        first_epochs = {e.issuer: e.body["epoch"] for e in heard.envelopes if e.kind == "birth"}
        first_top = max(e.seq for e in heard.envelopes)
        assert len(first_epochs) == 4 and heard.kinds()["telemetry"] >= 3
        say([will])  # the run is killed: the broker publishes its will, and keeps it retained
        assert ingest.online() == {}

        resumed_will, resumed_births = start()
        epochs = {e.issuer: e.body["epoch"] for e in (reread(b.payload) for b in resumed_births)}
        assert epochs.keys() == first_epochs.keys()
        assert min(epochs.values()) > first_top, "every new epoch is above everything the first run signed"
        say(resumed_births)
        say([will])  # the retained will again, on the ingest's next subscribe: it ends nothing now
        assert ingest.online() == epochs
        for _ in range(30):
            say(fleets[-1].step())
        assert ingest.metrics.by("depai_ingest_refused_total", "reason") == {}  # no no_birth, no replayed
        assert ingest.metrics.value("depai_ingest_stale_total", kind="death", did=kept["gateway"].did) == 1
        second = [e for e in heard.envelopes if e.kind == "telemetry" and e.seq > first_top]
        assert {e.issuer for e in second} == {agent.did for agent in fleets[-1].agents}
    finally:
        for fleet in fleets:
            fleet.close()
        registry.close()


@pytest.mark.parametrize("follows_the_fleet_clock", [True, False])
def test_a_shard_behind_the_fleet_clock_takes_the_services_messages_only_when_it_judges_them_by_that_clock(
        tmp_path: Path, follows_the_fleet_clock: bool) -> None:
    """A shard following a shared clock from 30 s behind: announcements stamped on the fleet's clock are current
    by that clock, and would be future-dated by the shard's own."""
    registry = DidRegistry(tmp_path / "registry.sqlite3")
    operator = register(registry)
    market = register(registry, controller=operator.did)
    config = FleetConfig(robots=1, blocks=3, seed=11, obstacles=False)
    ahead: list[SimFleet] = []
    fleet_clock = lambda: ahead[0].clock() + 30.0  # noqa: E731 - the services' clock, ahead of the shard's
    fleet = SimFleet(config, registry, controller=operator.did, commanders=[market.did],
                     receive_clock=fleet_clock if follows_the_fleet_clock else None)
    ahead.append(fleet)
    try:
        body = {"id": "t1", "customer": operator.did, "pickup": {"x": 0.0, "y": 0.0}, "dropoff": {"x": 5.0, "y": 5.0},
                "deadline": int((fleet_clock() + 900) * 1000), "max_price": 5_000, "currency": "EUR",
                "payload_kg": 1.0}
        fleet.deliver(MARKET_TASKS, market.envelope_signer(fleet_clock).seal("task", body))
        assert fleet.market_refused == (Counter() if follows_the_fleet_clock else Counter({"future_dated": 1}))
    finally:
        fleet.close()
        registry.close()


def test_a_robot_does_not_bid_for_a_task_it_cannot_reach_before_its_deadline(scene) -> None:
    s = scene()
    run(s.fleet, s.link, duration_s=4.0)  # localized
    body = _task(s, "soon")
    body["deadline"] = int((s.fleet.clock() + 5) * 1000)  # the far drop-off is minutes away
    s.link.publish_services([Outgoing(MARKET_TASKS, s._signer.seal("task", body), 1, False)])
    _announce(s, "later")
    s.run_until(lambda: s.heard.kinds()["bid"] >= 1, limit_s=5)
    run(s.fleet, s.link, duration_s=2.0)
    assert [e.body["task"] for e in s.heard.envelopes if e.kind == "bid"] == ["later"]
