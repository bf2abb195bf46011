"""The simulated fleet: a city, its robots with their own keys and minds, and the loop that runs them.

``SimFleet`` builds the world from a seed, gives every robot its own Ed25519 key
and registered did:peaq (controlled by the fleet's operator), and wires each
robot's agent to its simulated body. Every robot signs its own messages; one
gateway identity (the simulator) carries them on one MQTT connection.

``run`` drives the loop: step the world, step every agent, hand the signed
messages to a link (the real broker, or an in-process loopback that verifies
them with the same ingest pipeline), place customers' orders with the
dispatcher, and deliver its signed commands back to the robots. Simulated time
runs as fast as possible (``speed`` 0) or at ``speed`` times real time.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bus.session import MachineSession, Outgoing, connection_greeting
from bus.topics import MAP_GRAPH, MAP_TILES, MARKET_AWARDS, MARKET_TASKS, topic_root
from bus.trusted import Refused
from identity.did import did_peaq
from identity.document import MachineProfile, current_key
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry
from launch.simbody import SimBody
from marketplace.dispatch import Dispatcher
from robots.agent import AgentConfig, RobotAgent
from robots.commands import CommandGate, MarketGate
from robots.planner import RoadPlanner
from sim.city import CityLayout, generate_city
from sim.demand import Demand, Order
from sim.lidar import LidarSpec
from sim.obstacles import ObstacleSchedule
from sim.sensors import NoiseSpec
from sim.world import RobotSpec, World
from spatial.roads import BLOCKED, RouteCosts
from spatial.service import MapService, Suspect
from spatial.view import MapView


@dataclass(frozen=True)
class FleetConfig:
    """Everything that shapes a simulated fleet; the same config and seed give the same run."""

    robots: int = 10
    seed: int = 7
    blocks: int = 6
    physics: str = "kinematic"
    gui: bool = False
    dt: float = 0.1
    lidar: LidarSpec = field(default_factory=LidarSpec)
    telemetry_hz: float = 2.0
    scan_hz: float = 0.0
    orders_per_min: float | None = None  # None: one order per robot every four minutes
    obstacles: bool = True
    horizon_s: float = 4 * 3600.0  # how far ahead the obstacle schedule is drawn
    robot: RobotSpec = field(default_factory=RobotSpec)
    battery: float = 1.0  # every robot's state of charge at the start
    noise: NoiseSpec = field(default_factory=NoiseSpec)  # sensor noise: odometry drift, GNSS, lidar

    def __post_init__(self) -> None:
        if self.robots < 1:
            raise ValueError(f"a fleet needs at least one robot, got {self.robots}")
        if self.physics not in ("kinematic", "dynamic"):
            raise ValueError(f"physics is 'kinematic' or 'dynamic', got {self.physics!r}")

    @property
    def order_rate(self) -> float:
        """Orders per simulated minute."""
        return self.orders_per_min if self.orders_per_min is not None else self.robots / 4.0


class FleetClock:
    """Fleet time, in seconds since the epoch: when the fleet started plus the simulated time since."""

    def __init__(self, world: World, epoch_s: float) -> None:
        self.world = world
        self.epoch_s = epoch_s

    def __call__(self) -> float:
        return self.epoch_s + self.world.time_s


@dataclass(frozen=True, slots=True)
class Identity:
    """A registered machine or service identity whose key lives in this process."""

    signer: Signer
    did: str
    document: dict

    def envelope_signer(self, clock: Callable[[], float]) -> EnvelopeSigner:
        """Seals messages as this identity on ``clock``, naming its current key (key-N after N-1 rotations)."""
        return EnvelopeSigner(self.signer, self.did, current_key(self.document)[1], clock=clock)


def register(registry: DidRegistry, *, controller: str | None = None, machine: MachineProfile | None = None,
             with_topic_root: bool = False, signer: Signer | None = None) -> Identity:
    """A registered did:peaq for ``signer``'s key (a fresh key by default)."""
    signer = signer or Signer.generate()
    did = did_peaq(signer.public_key)
    resolution = create_identity(registry, signer, controller=controller, machine=machine,
                                 topic_root=topic_root(did) if with_topic_root else None)
    return Identity(signer, resolution.did, resolution.document)


def _heading(city: CityLayout, street: str, rng: np.random.Generator) -> float:
    u, v = city.streets[street]
    (x0, y0), (x1, y1) = city.nodes[u], city.nodes[v]
    theta = math.atan2(y1 - y0, x1 - x0)
    return theta if rng.random() < 0.5 else math.atan2(y0 - y1, x0 - x1)


def robot_profile(spec: RobotSpec) -> MachineProfile:
    """What a simulated delivery robot's DID document declares about the machine."""
    return MachineProfile(spec.model, ["delivery", "lidar-2d", "gnss"], spec.max_speed_mps, spec.payload_kg)


def gateway_name(shard: tuple[int, int]) -> str:
    """The name of simulator shard k of n's gateway identity (``gateway`` when there is one simulator)."""
    return "gateway" if shard == (0, 1) else f"gateway-{shard[0]}"


class Enroll(Protocol):
    """Gives the fleet the identity called ``name`` (``gateway``, ``robot-0``, ...): fresh, or kept from before."""

    def __call__(self, name: str, *, controller: str | None = None, machine: MachineProfile | None = None,
                 with_topic_root: bool = False) -> Identity: ...


_BELIEF_TILES = f"{MAP_TILES}/belief/"


class SimFleet:
    """The world and one agent per robot, each with its own registered identity."""

    def __init__(self, config: FleetConfig, registry: DidRegistry, *, controller: str,
                 commanders: Sequence[str], map_services: Sequence[str] = (), epoch_s: float | None = None,
                 agent_class: Callable[[int], type[RobotAgent]] = lambda index: RobotAgent,
                 enroll: Enroll | None = None, shard: tuple[int, int] = (0, 1),
                 receive_clock: Callable[[], float] | None = None) -> None:
        """``agent_class(i)`` is the agent robot i runs (benchmarks run adversarial robots this way); ``enroll``
        names each identity (default: a fresh key every time; ``depai up`` keeps them across runs); ``shard`` (k, n)
        makes this simulator shard k of n: its robots are robot-k, robot-(k+n), ... and it has a gateway of its
        own, so several simulators split one fleet (robots of different shards do not see each other);
        ``receive_clock`` judges the time of what the robots receive (default: the simulator's own clock): a shard
        that follows a shared fleet clock from behind passes that clock, so the services' messages, stamped on it,
        are not taken for future-dated."""
        self.shard = shard
        self._receive_clock = receive_clock
        self._enroll: Enroll = enroll or (lambda name, **terms: register(registry, **terms))
        self.config = config
        self.city = generate_city(config.seed, config.blocks)
        self.schedule = (ObstacleSchedule.generate(self.city, config.seed, config.horizon_s) if config.obstacles
                         else ObstacleSchedule())
        self.chargers = [(p.x, p.y) for p in self.city.places_of("charger")]
        self.world = World(self.city.buildings, seed=config.seed, dt=config.dt, physics=config.physics,
                           gui=config.gui, lidar=config.lidar, noise=config.noise, obstacles=self.schedule,
                           chargers=self.chargers)
        self.clock = FleetClock(self.world, 0.0)  # its epoch is set once every identity is registered
        self.planner = RoadPlanner(self.city.road_graph())
        # One verified view of the shared road graph for the whole gateway (a site bridge would do the same).
        self.map_view = MapView(registry, map_services, clock=self.receive_clock)
        self.gateway_identity = self._enroll(gateway_name(shard), controller=controller, with_topic_root=True)
        self.gateway = MachineSession(self.gateway_identity.envelope_signer(self.clock),
                                      topic_root(self.gateway_identity.did), self.gateway_identity.document,
                                      software="depai-sim")
        self._outbox: list[Outgoing] = []
        self.agents: list[RobotAgent] = []
        self.dids: set[str] = set()  # every robot's DID, for services that ask "is this one of ours?"
        self._by_topic: dict[str, RobotAgent] = {}
        self.stray_commands = 0
        self._registry, self._controller, self._commanders = registry, controller, list(commanders)
        self._agent_class = agent_class
        # One verifier of the marketplace's announcements and awards for every robot here (one trust domain,
        # like the map view): each is checked once, then handed only to the robots it concerns.
        self.market_gate = MarketGate(registry, self._commanders, clock=self.receive_clock)
        self.market_refused: Counter[str] = Counter()  # market messages refused, once each for the whole fleet
        self._by_did: dict[str, RobotAgent] = {}  # filled by deliver() as robots are added
        self._rng = np.random.default_rng([config.seed, 1] if shard == (0, 1) else [config.seed, 1, *shard])
        for _ in range(config.robots):
            self.add_robot()
        # Fleet time starts after the last registration, so no message predates its signer's key.
        self.clock.epoch_s = time.time() if epoch_s is None else epoch_s

    @property
    def receive_clock(self) -> Callable[[], float]:
        """The clock that judges what the robots receive."""
        return self._receive_clock or self.clock

    def add_robot(self, controller: str | None = None, *, name: str | None = None) -> RobotAgent:
        """A new robot at a random street point, with its own registered identity (controlled by ``controller``,
        the fleet's operator by default; called ``name``, else by its place in the fleet). Added while the fleet
        runs, its birth goes out with the next step."""
        config, spec, index = self.config, self.config.robot, len(self.agents)
        machine = robot_profile(spec)
        x, y, street = self.city.random_road_point(self._rng)
        self.world.add_robot(x, y, _heading(self.city, street, self._rng), spec, battery=config.battery)
        name = name or f"robot-{self.shard[0] + index * self.shard[1]}"
        me = self._enroll(name, controller=controller or self._controller, machine=machine,
                          with_topic_root=True)
        root = topic_root(me.did)
        session = MachineSession(me.envelope_signer(self.clock), root, me.document,
                                 via=self.gateway_identity.did, software="depai-sim")
        gate = CommandGate(me.did, root, self._registry, self._commanders, clock=self.receive_clock)
        agent_config = AgentConfig(telemetry_hz=config.telemetry_hz, scan_hz=config.scan_hz,
                                   telemetry_phase=(index * 0.618034) % 1.0, seed=config.seed * 100_003 + index)
        agent = self._agent_class(index)(SimBody(self.world, index, spec), session, self.planner,
                                         send=self._outbox.append, clock=self.clock, chargers=self.chargers,
                                         gate=gate, config=agent_config, map_view=self.map_view)
        self.agents.append(agent)
        self.dids.add(me.did)
        self._by_topic[gate.topic] = agent
        if self.clock.epoch_s:  # the fleet is running: say it is here
            self._outbox.append(session.birth())
        return agent

    def greeting(self) -> Callable[[], tuple[tuple[str, bytes, int, bool], list[tuple[str, bytes, int, bool]]]]:
        """The gateway connection's on_session hook: births of the simulator and every robot, and the will."""
        return connection_greeting([agent.session for agent in self.agents], gateway=self.gateway)

    def births(self) -> list[Outgoing]:
        """Fresh births of the gateway and every robot (for a link without MQTT sessions)."""
        return [self.gateway.birth()] + [agent.session.birth() for agent in self.agents]

    def step(self) -> list[Outgoing]:
        """One tick: the world moves, then every agent senses, thinks and acts; returns what they said."""
        self.world.step()
        for agent in self.agents:
            agent.step()
        said, self._outbox[:] = list(self._outbox), []
        return said

    def deliver(self, topic: str, payload: bytes) -> None:
        """A message for the robots: a command to the robot whose topic it is, the road graph to the fleet's
        map view; a marketplace announcement or award is verified once here, then an award goes to the robot it
        names and an announcement to every robot free to bid on it (a refused one is counted in market_refused)."""
        if topic == MAP_GRAPH or topic.startswith(_BELIEF_TILES):  # the robots localize on the belief layer
            self.map_view.receive(topic, payload)
            return
        if topic in (MARKET_TASKS, MARKET_AWARDS):
            try:
                envelope = self.market_gate.admit(topic, payload)
            except Refused as refusal:  # counted, not answered: market traffic is broadcast
                self.market_refused[refusal.code] += 1
                return
            if envelope.kind == "award":
                if len(self._by_did) < len(self.agents):
                    self._by_did.update((agent.did, agent) for agent in self.agents[len(self._by_did):])
                winner = self._by_did.get(envelope.body["robot"])
                if winner is not None:  # else a robot of another gateway won it
                    winner.receive_market(envelope)
                return
            for agent in self.agents:
                if agent.wants_tasks():
                    agent.receive_market(envelope)
            return
        agent = self._by_topic.get(topic)
        if agent is None:
            self.stray_commands += 1
        else:
            agent.receive(topic, payload)

    def close(self) -> None:
        """Disconnect the physics engine."""
        self.world.close()


class Link(Protocol):
    """How the fleet and the services exchange messages: the broker, or in process."""

    def publish(self, messages: list[Outgoing]) -> None:
        """Send the robots' signed messages."""
        ...

    def publish_services(self, messages: list[Outgoing]) -> None:
        """Send the services' signed messages: commands, map tiles and the road graph."""
        ...

    def pump(self) -> None:
        """Hand what arrived for the robots to them."""
        ...

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until what was sent has reached the other side."""
        ...


@dataclass
class RunReport:
    """What a run did, in simulated and wall time."""

    sim_s: float
    wall_s: float
    ticks: int
    messages: int
    delivered: int
    failed: int

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.sim_s / self.wall_s if self.wall_s > 0 else math.inf


class Service(Protocol):
    """A fleet service the loop gives a turn every tick (the map service, for one)."""

    def step(self) -> list[Outgoing]:
        """The signed messages it has to send now."""
        ...


class SurveyRequests:
    """Sends the dispatcher to look at every road the map suspects blocked on one robot's word, and, slowly, at
    every road it holds closed.

    A loop service that says nothing itself: each turn, a suspect it has not asked about (or not for
    ``resurvey_s``, or not since its last survey ended ``retry_s`` ago, the robot having looked or given up
    without settling it) becomes a survey, with the witnesses excluded so the second look is independent;
    a survey whose road was confirmed or cleared meanwhile is called off. A road the map holds closed
    (latched until robots see it open) is looked at every ``recheck_s`` from when it closed: the fleet
    plans around it, so without these looks nobody would see it reopen. Each survey's robot is the one with
    the shortest road to a vantage point around the roads the map holds closed at that moment (spatial.roads
    RouteCosts), not the nearest as the crow flies: that one may sit behind the very closure it would be sent past.
    """

    def __init__(self, map_service: MapService, dispatcher: Dispatcher, *, resurvey_s: float = 120.0,
                 retry_s: float = 20.0, recheck_s: float = 120.0, vantage_m: float = 2.0) -> None:
        self.map_service, self.dispatcher = map_service, dispatcher
        self.resurvey_s, self.retry_s, self.recheck_s = resurvey_s, retry_s, recheck_s
        self.vantage_m = vantage_m
        self.routes = RouteCosts(map_service.graph)
        self._asked: dict[tuple[str, str], float] = {}  # suspect -> when last asked
        self._checked: dict[tuple[str, str], float] = {}  # closure -> when it closed or was last asked
        self._ended: dict[str, float] = {}  # survey key -> when the dispatcher last finished it
        self._seen_ended = 0  # how much of dispatcher.surveyed has been read
        self.requested = 0

    def step(self) -> list[Outgoing]:
        """Ask for the surveys due now; the dispatcher's own turn sends the robots."""
        now = self.map_service.clock()
        finished = self.dispatcher.surveyed
        for key in finished[self._seen_ended:]:
            self._ended[key] = now
        self._seen_ended = len(finished)
        self._ask(self.map_service.suspects(self.vantage_m), self._asked, "survey", -math.inf, self.resurvey_s, now,
                  True)
        self._ask(self.map_service.closures(self.vantage_m), self._checked, "recheck", now, self.recheck_s, now,
                  False)
        return []

    def _ask(self, roads: Mapping[tuple[str, str], Suspect], asked: dict[tuple[str, str], float], name: str,
             first: float, every_s: float, now: float, retry: bool) -> None:
        """Survey each of ``roads`` every ``every_s`` (``first``: when a new one counts as asked) or, when ``retry``,
        ``retry_s`` after its survey ended, without its contributors; call off the surveys of roads gone."""
        for u, v in [edge for edge in asked if edge not in roads]:
            del asked[(u, v)]
            self.dispatcher.cancel_survey(f"{name}-{u}-{v}")
        for (u, v), road in roads.items():
            key = f"{name}-{u}-{v}"
            last, ended = asked.setdefault((u, v), first), self._ended.get(key, -math.inf)
            if now - last >= every_s or (retry and ended >= last and now - ended >= self.retry_s):
                asked[(u, v)] = now
                self.requested += 1
                self.dispatcher.survey(key, road.vantage_points, exclude=road.contributors if retry else (),
                                       cost=self.route_cost)

    def route_cost(self, target: tuple[float, float], starts: list[tuple[float, float]]) -> list[float | None]:
        """Metres of road from each of ``starts`` to ``target`` around the roads the map holds closed now."""
        report = self.map_service.report
        blocked = {} if report is None else {key: state.at for key, state in report.states.items()
                                             if state.state == BLOCKED and state.at is not None}
        return self.routes(target, starts, blocked)


class OrderSink(Protocol):
    """Who takes customers' orders (the dispatcher, or the marketplace) and counts how they ended."""

    delivered: list[str]
    failed: list[str]

    def offer(self, order: Order) -> None:
        """Take a new order."""


def run(fleet: SimFleet, link: Link, *, duration_s: float, speed: float = 0.0,
        dispatcher: Dispatcher | None = None, demand: Demand | None = None, services: Sequence[Service] = (),
        progress: Callable[[float], None] | None = None, should_stop: Callable[[], bool] = lambda: False,
        orders: OrderSink | None = None) -> RunReport:
    """Run ``fleet`` for ``duration_s`` simulated seconds (``speed`` 0: as fast as possible).

    Each tick the world and its robots move, their messages go out, customers place orders with
    ``orders`` (the dispatcher by default), and every service (the dispatcher first) sends what it has
    for the robots.
    """
    sink = orders if orders is not None else dispatcher
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    world = fleet.world
    start_sim, start_wall = world.time_s, time.perf_counter()
    ticks = messages = 0
    next_progress = start_sim
    while world.time_s - start_sim < duration_s - 1e-9 and not should_stop():
        said = fleet.step()
        messages += len(said)
        link.publish(said)
        if demand is not None and sink is not None:
            for order in demand.due(world.time_s):
                sink.offer(order)
        for service in ([dispatcher] if dispatcher is not None else []) + list(services):
            outgoing = service.step()
            if outgoing:
                link.publish_services(outgoing)
        link.pump()
        ticks += 1
        if progress is not None and world.time_s >= next_progress:
            next_progress += 1.0
            progress(world.time_s - start_sim)
        if speed > 0:
            ahead = (world.time_s - start_sim) / speed - (time.perf_counter() - start_wall)
            if ahead > 0:
                time.sleep(ahead)
    return RunReport(world.time_s - start_sim, time.perf_counter() - start_wall, ticks, messages,
                     len(sink.delivered) if sink else 0, len(sink.failed) if sink else 0)
