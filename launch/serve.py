"""``depai serve ROLE``: one service of a fleet, as its own process, on this machine or another.

Each role talks to the others only through the MQTT broker and the database
(``--broker URL``, ``--db URL``), and learns the run (its clock, city and the
services' DIDs) from the fleet descriptor the operator signs and retains on
the bus (``--operator DID`` names whose signature to trust). ``depai up``
starts and supervises every role on one machine (launch/supervisor.py); the
same commands, run by hand on another machine, add shards and workers to it
(docs/deploy.md).

Roles: ``ingest`` (verifies robots' messages for its partitions and forwards
them on the verified channel), ``sim`` (a simulator shard: its robots' bodies
and agents, and their gateway), ``map``, ``market``, ``customers`` (simulated
customers posting signed tasks), ``dao`` (the keeper) and ``dashboard``.
Each publishes a signed, retained status every second (its counters) on
``depai/v1/fleet/services/{role}/{index}``; SIGTERM or Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.client import BusClient
from bus.ingest import quantile
from bus.relay import VerifiedIn, VerifiedOut
from bus.router import Router
from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import FLEET_SPAWN, MAP_GRAPH, MAP_PRESENCE, MARKET_ORDERS, service_topic, verified_topic
from bus.worker import IngestWorker
from dao.dao import Dao
from identity.envelope import EnvelopeRefused, EnvelopeVerifier
from identity.errors import DepaiError
from identity.registry import DidRegistry
from launch.dao_hooks import FleetHooks
from launch.dao_service import DaoService
from launch.descriptor import FleetDescriptor, await_descriptor, await_signed_descriptor, roads_digest, roads_json
from launch.fleet import FleetConfig, Identity, SimFleet, SurveyRequests, gateway_name, robot_profile
from launch.home import Home, registry_target
from launch.identities import IdentityStore
from launch.links import ShardLink
from launch.witness_command import CheckpointPublisher
from ledger.journal import Ledger
from marketplace.dispatch import Dispatcher
from marketplace.market import Marketplace
from marketplace.policy import MarketPolicy
from marketplace.proof import WitnessRule
from marketplace.service import MarketService
from sim.city import generate_city
from sim.customers import Customers
from sim.demand import Demand
from sim.world import RobotSpec
from spatial.service import MapService
from launch.output import EXIT_OK, EXIT_USAGE, CliError
from launch.statuses import STATUS_KIND

SPAWN_KIND = "fleet.spawn"
MAX_BEHIND_WALL_S = 2.0  # a shard further behind the fleet's clock than this skips ahead (and says so)
STATUS_EVERY_S = 1.0
ROBOTS_IN_STATUS = 200  # robots an ingest worker's status counts one by one (about 150 bytes each)
TURN_S = 0.05  # how often a service takes its turn (wall seconds)
BROKER_FILE = "broker.json"  # the broker's URL and the roles' logins, written by depai up (mode 0600)


class Context:
    """What every role needs: the state directory, the registry, named identities, the bus and the descriptor."""

    def __init__(self, args: argparse.Namespace, home: Home) -> None:
        self.role, self.index, self.of, self.robots = args.role, args.index, args.of, args.robots
        self.witness = bool(getattr(args, "witness", False))  # market: judge receipts by peers' sightings too
        self.state = Path(args.state).expanduser() if args.state else home.root / "fleet"
        self.state.mkdir(parents=True, exist_ok=True)
        self.db_url = args.db or f"sqlite:///{self.state / 'ledger.sqlite3'}"
        self.registry = DidRegistry(registry_target(self.state, args.db))
        self.identities = IdentityStore(self.state / "identities.json", self.registry)
        self.broker_url = args.broker or _local_broker(self.state, ROLES[self.role].login)
        operator = args.operator or (self.identities.enroll("operator").did
                                     if "operator" in self.identities.names() else None)
        if operator is None:
            raise CliError("which fleet? this state directory has no operator identity", code="no_operator",
                           hint="pass --operator DID (depai up prints it), or --state DIR of the fleet",
                           exit_code=EXIT_USAGE)
        self.name = f"{self.role}-{self.index}"
        self.client = BusClient(self.broker_url, client_id=f"depai-{self.name}-{_host_tag()}",
                                outbox_path=self.state / f"outbox-{self.name}.sqlite3")
        self.client.start()
        if not self.client.wait_connected(30):
            raise CliError(f"cannot reach the broker at {self.client.address.display}", code="no_broker",
                           hint="check --broker (and that depai up is running)", exit_code=EXIT_USAGE)
        self.descriptor: FleetDescriptor = await_descriptor(self.client, self.registry, operator, run=args.run)
        self.clock = self.descriptor.clock()
        self.stop = threading.Event()

    def identity(self, name: str, *, controller: str | None = None) -> Identity:
        """The named identity of this state directory (created and registered on first use)."""
        return self.identities.enroll(name, controller=controller)

    def publish(self, messages: list[Outgoing]) -> None:
        """Send signed messages on this process's connection."""
        if messages:
            self.client.publish_many([message.astuple() for message in messages])

    def close(self) -> None:
        """Drain what is queued, disconnect, close the registry."""
        self.client.close()
        self.registry.close()


def _local_broker(state: Path, login: str) -> str:
    """The URL, with this role's login, of the broker ``depai up`` started for the fleet in ``state``."""
    path = state / BROKER_FILE
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(f"no broker for the fleet in {state}", code="no_broker",
                       hint="start it with `depai up`, or pass --broker mqtt://user:password@host:port",
                       exit_code=EXIT_USAGE) from None
    user, password = held["logins"][login]
    return held["url"].replace("://", f"://{user}:{password}@", 1)


def _host_tag() -> str:
    """This machine, in client ids: stable across restarts, so a restarted service takes up its persistent session
    (and what the broker queued for it while it was down) instead of leaving an orphan session behind."""
    return socket.gethostname()


class FollowedIdentity:
    """One of this process's identities, following its key rotations (`depai id rotate NAME --state DIR`): every
    few seconds the registry's current key is compared with the one held, and a rotated key is loaded."""

    CHECK_EVERY_S = 2.0

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx, self.name = ctx, name
        self.identity = ctx.identity(name)
        self._next = time.monotonic() + self.CHECK_EVERY_S

    def current(self) -> tuple[Identity, bool]:
        """The identity with the key the registry holds now, and whether it changed since the last call."""
        if time.monotonic() < self._next:
            return self.identity, False
        self._next = time.monotonic() + self.CHECK_EVERY_S
        if self.ctx.registry.active(self.identity.did).public_key == self.identity.signer.public_key:
            return self.identity, False
        self.ctx.identities.reload()
        self.identity = self.ctx.identity(self.name)
        return self.identity, True


class Role:
    """One service: built from the context, given a turn every TURN_S, asked for its counters, closed at the end."""

    login = "service"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def turn(self) -> None:
        """Do what is due now."""

    def counters(self) -> dict[str, Any]:
        """What this service has done, for the status line, the summary and the dashboard."""
        return {}

    def close(self) -> None:
        """Finish cleanly: a last turn, flush what is pending."""

    @property
    def signer_name(self) -> str:
        """The identity that signs this service's status."""
        return "operator"


def run_role(ctx: Context, role: Role) -> None:
    """Turn ``role`` until asked to stop, publishing its signed status every second."""
    signer = FollowedIdentity(ctx, role.signer_name)
    topic = service_topic(ctx.role, ctx.index)
    next_status = 0.0

    def status(final: bool = False) -> None:
        body = {"role": ctx.role, "index": ctx.index, "pid": os.getpid(), "host": socket.gethostname(),
                "run": ctx.descriptor.run, "t": ctx.clock(), "final": final, "counters": role.counters()}
        sealer = signer.current()[0].envelope_signer(ctx.clock)
        ctx.client.publish(topic, sealer.seal(STATUS_KIND, body), qos=1, retain=True)

    try:
        while not ctx.stop.is_set():
            started = time.monotonic()
            role.turn()
            if started >= next_status:
                next_status = started + STATUS_EVERY_S
                status()
            ctx.stop.wait(max(0.0, TURN_S - (time.monotonic() - started)))
        role.close()
        status(final=True)
    finally:
        ctx.close()


# --- the roles ---------------------------------------------------------------------------------------------

class IngestRole(Role):
    """Verifies its partitions' robot messages and forwards what passed on the verified channel."""

    login = "ingest"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.lags: list[float] = []
        out = VerifiedOut(lambda messages: self.worker.client.publish_many(messages))
        self.out = out

        def forward(topic: str, envelope: Any) -> None:
            self.lags.append(ctx.clock() - envelope.issued_at_ms / 1000)
            out(topic, envelope)
        forward.flush = out.flush  # type: ignore[attr-defined]
        # The worker has a connection of its own: the one that receives is the one that forwards, so a batch is
        # in the outbox before the robot's message is acknowledged.
        ctx.client.close()
        ctx.client = BusClient(ctx.broker_url, client_id=f"depai-{ctx.name}-status-{_host_tag()}",
                               outbox_path=ctx.state / f"outbox-{ctx.name}-status.sqlite3")
        ctx.client.start()
        # Sessions and replay windows survive a restart (bus/ingest.py): a restarted worker refuses what it took.
        self.worker = IngestWorker(ctx.broker_url, ctx.registry, forward, index=ctx.index, workers=ctx.of,
                                   client_id=f"depai-ingest-{ctx.index}-of-{ctx.of}",
                                   outbox_path=ctx.state / f"outbox-{ctx.name}.sqlite3", clock=ctx.clock,
                                   state_path=ctx.state / f"ingest-{ctx.index}-of-{ctx.of}.sqlite3")
        self.worker.start()  # after the assignment: what its session kept arrives, and is forwarded, at once

    def counters(self) -> dict[str, Any]:
        lags, self.lags = sorted(self.lags), []
        metrics = self.worker.ingest.metrics
        # Per robot (messages by kind, refusals by reason) for this worker's registered robots, bounded so the
        # signed status stays well under the 64 KiB an envelope may be.
        return {"partitions": self.worker.partitions, "forwarded": self.out.forwarded,
                **self.worker.ingest.counters(robots=ROBOTS_IN_STATUS),
                "bad_batches": int(metrics.total("depai_ingest_bad_batches_total")),
                "lag_p50_s": quantile(lags, 0.5), "lag_p99_s": quantile(lags, 0.99), "lag_n": len(lags)}

    def close(self) -> None:
        self.out.flush()
        self.worker.close()

    @property
    def signer_name(self) -> str:
        return f"ingest-{self.ctx.index}"


class SimRole(Role):
    """A simulator shard: its robots' bodies and agents, on the fleet's clock, behind one gateway connection."""

    login = "gateway"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        d = ctx.descriptor
        robots = len(range(ctx.index, d.robots, ctx.of)) if ctx.robots is None else ctx.robots
        if robots < 1:
            raise CliError(f"sim shard {ctx.index} of {ctx.of} has no robots (the fleet has {d.robots})",
                           code="empty_shard", hint="run fewer shards, or give --robots", exit_code=EXIT_USAGE)
        config = FleetConfig(robots=robots, seed=d.seed, blocks=d.city, scan_hz=d.scan_hz,
                             orders_per_min=d.orders_per_min)
        self.fleet = SimFleet(config, ctx.registry, controller=d.dao, commanders=d.commanders, map_services=[d.map],
                              enroll=ctx.identities.enroll, epoch_s=ctx.clock(), shard=(ctx.index, ctx.of),
                              receive_clock=ctx.clock)
        self.fleet.clock.epoch_s = ctx.clock()  # building the robots took time: the world starts now, not before
        self.spawner = SpawnOrders(ctx, self.fleet)
        self.link = ShardLink(self.fleet, ctx.broker_url, name=f"{_host_tag()}-{ctx.index}",
                              outbox=ctx.state / f"outbox-{ctx.name}-gateway.sqlite3",
                              subscribe_extra={FLEET_SPAWN: self.spawner.take} if ctx.index == 0 else {}).start()
        self.started_wall, self.started_sim = time.monotonic(), self.fleet.world.time_s
        self.max_catch_up_s = 0.5  # wall seconds of stepping per turn at most, so the status keeps flowing
        self.skipped_s, self.skipped_at = 0.0, -math.inf

    def turn(self) -> None:
        fleet, world = self.fleet, self.fleet.world
        self.spawner.apply()
        skip = skip_ahead(self.ctx.clock() - fleet.clock(), self.ctx.descriptor.speed)
        if skip:
            fleet.clock.epoch_s += skip
            self.skipped_s += skip
            self.skipped_at = time.monotonic()
        target = self.ctx.clock() - fleet.clock.epoch_s
        deadline = time.monotonic() + self.max_catch_up_s
        while world.time_s + world.dt / 2 <= target and time.monotonic() < deadline:
            self.link.publish(fleet.step())
            self.link.pump()
        self.link.pump()

    def counters(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started_wall
        sim = self.fleet.world.time_s - self.started_sim
        return {"robots": len(self.fleet.agents), "sim_s": round(self.fleet.world.time_s, 1),
                "behind_s": round(self.ctx.clock() - self.fleet.clock(), 2), "skipped_s": round(self.skipped_s, 1),
                "skipping": time.monotonic() - self.skipped_at < 5.0,
                "speed": round(sim / wall, 2) if wall > 0 else None, "published": self.link.published,
                "market_refused": dict(self.fleet.market_refused), "dids": sorted(self.fleet.dids)}

    def close(self) -> None:
        self.link.close()
        self.fleet.close()

    @property
    def signer_name(self) -> str:
        return gateway_name(self.fleet.shard)


def skip_ahead(behind_s: float, speed: float) -> float:
    """How far a shard ``behind_s`` fleet seconds behind the clock jumps: all of it past MAX_BEHIND_WALL_S of wall
    time, else nothing. More than the machine can simulate, it skips rather than fall further behind, so its robots'
    messages stay current (stamped later than their lifetime, ingest would refuse every one); the world stands still
    in the gap, and the skipped time is counted and shown with what to do."""
    return behind_s if behind_s > MAX_BEHIND_WALL_S * speed else 0.0


class SpawnOrders:
    """Robots the DAO bought, added to the shard beside the keeper (shard 0, which shares its state directory)."""

    def __init__(self, ctx: Context, fleet: SimFleet) -> None:
        self.ctx, self.fleet = ctx, fleet
        self.verifier = EnvelopeVerifier(ctx.registry)
        self._queued: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def take(self, topic: str, payload: bytes) -> None:
        """A signed ``fleet.spawn`` from the operator: remember it for the next turn (the sim is not thread-safe)."""
        try:
            envelope = self.verifier.verify_archived(payload, kinds=(SPAWN_KIND,))
        except EnvelopeRefused:
            return
        body = envelope.body
        if envelope.issuer == self.ctx.descriptor.operator and isinstance(body, dict):
            with self._lock:
                self._queued.append((str(body.get("name")), str(body.get("controller"))))

    def apply(self) -> None:
        """Add the robots asked for since the last turn (once each: a known name is not added again)."""
        with self._lock:
            queued, self._queued = self._queued, []
        for name, controller in queued:
            self.ctx.identities.reload()
            if name in self.ctx.identities.names() and self.ctx.identities.enroll(name).did not in self.fleet.dids:
                self.fleet.add_robot(controller, name=name)


class MapRole(Role):
    """The shared map, the dispatcher's surveys of suspect roads, and the tiles and road graph they publish."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        d = ctx.descriptor
        city = generate_city(d.seed, d.city)
        me = ctx.identity("map")
        registry = ctx.registry

        def level_of(did: str) -> str:  # the DAO's own robots are vouched for by the fleet
            try:
                return "fleet" if registry.active(did).document.get("controller") == d.dao else "self"
            except DepaiError:
                return "self"

        self.map = MapService(me.envelope_signer(ctx.clock), city.road_graph(), bounds=city.bounds(), clock=ctx.clock,
                              level_of=level_of)
        self._resume_graph_version(me.did)
        self.dispatcher = Dispatcher(ctx.identity("dispatcher").envelope_signer(ctx.clock), clock=ctx.clock)
        self.surveys = SurveyRequests(self.map, self.dispatcher)
        router = Router().declare(MapService.declared_kinds, self.map.observe)
        router.declare(Dispatcher.declared_kinds, self.dispatcher.observe)
        self.inbound = VerifiedIn(router)
        self.inbound.subscribe(ctx.client)

    def _resume_graph_version(self, did: str) -> None:
        """Go on from the road graph an earlier map process retained, waiting briefly for it (a first run has
        none): from its version (robots ignore a graph not newer than the one they hold), and with its
        closures held until the fleet sees them open (the grid starts empty, and nobody drives a closed road)."""
        verifier, heard = EnvelopeVerifier(self.ctx.registry), threading.Event()
        retained: list[dict[str, Any]] = []

        def take(topic: str, payload: bytes) -> None:
            try:
                envelope = verifier.verify_archived(payload, kinds=("map.graph",))
            except EnvelopeRefused:
                return
            if envelope.issuer == did:
                self.map.graph_version = max(self.map.graph_version, int(envelope.body["version"]))
                if not heard.is_set():  # the retained one; what follows is this process's own
                    retained.append(envelope.body)
                heard.set()

        self.ctx.client.subscribe(MAP_GRAPH, take)
        self.closures_resumed = self.resume_closures(self.map, retained[0]) if heard.wait(2.0) else 0

    @staticmethod
    def resume_closures(service: MapService, graph: dict[str, Any]) -> int:
        """Latch in ``service`` every blocked road of a ``map.graph`` body at the point it names, as the map process
        that published the body held them; how many. A road this city lacks (another city's body) is skipped."""
        resumed = 0
        for edge in graph["edges"]:
            if edge["state"] == "blocked" and "at" in edge:
                try:
                    service.roads.latch((edge["u"], edge["v"]), (edge["at"]["x"], edge["at"]["y"]))
                except ValueError:
                    continue
                resumed += 1
        return resumed

    def turn(self) -> None:
        self.ctx.publish(self.dispatcher.step() + self.surveys.step() + self.map.step())

    def counters(self) -> dict[str, Any]:
        return {"scans": self.map.scans, "refused": dict(self.map.refused), "graph_version": self.map.graph_version,
                "closures_resumed": self.closures_resumed, "surveys": self.surveys.requested,
                "received": self.inbound.received,
                "trust": {did: round(w, 4) for did, w in self.map.trust.weights().items()}}

    @property
    def signer_name(self) -> str:
        return "map"


class MarketRole(Role):
    """The marketplace: customers' signed tasks in, robots' verified bids and receipts in, awards out."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        d = ctx.descriptor
        self.ledger = Ledger.open(ctx.db_url, ctx.identity("ledger", controller=d.operator).signer, clock=ctx.clock)
        self.dao = Dao(self.ledger, d.dao, currency=self.ctx.descriptor.currency, clock=ctx.clock)
        self.key = FollowedIdentity(ctx, "market")  # a rotated key signs the next announcement and award
        market = Marketplace(self.ledger, self.key.identity.envelope_signer(ctx.clock), clock=ctx.clock,
                             fee_bps=self.dao.params()[2], witness=WitnessRule() if ctx.witness else None)
        # The map service's verdicts on where robots were, believed only from the map the descriptor names.
        self.service = MarketService(market, EnvelopeVerifier(ctx.registry, clock=ctx.clock), clock=ctx.clock,
                                     currency=self.ctx.descriptor.currency, map_services=[d.map])
        self.service.resume()
        self.lock = threading.Lock()  # bus handlers and the turn share the marketplace's connection
        router = Router().declare(MarketService.declared_kinds, self.service.observe)
        router.declare(("birth",), self._admit)
        self.registered = set(market.robots())
        self.inbound = VerifiedIn(router)
        # A batch's receipts are settled before the batch is acknowledged: a kill loses none of them.
        for kind in MarketService.declared_kinds:
            ctx.client.subscribe(verified_topic(kind), self._locked(self._verified))
        ctx.client.subscribe(MARKET_ORDERS, lambda topic, payload: self._locked(self.service.post)(payload))
        ctx.client.subscribe(MAP_PRESENCE, self._locked(self.service.presence))
        self._next_fee = 0.0

    def _locked(self, call: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            with self.lock:
                call(*args)
        return run

    def _admit(self, topic: str, envelope: Any) -> None:
        """A robot of the DAO born on another host joins the marketplace as founding robots did: the DAO's bond
        for it deposited once (keyed by the robot), then posted."""
        did, d = envelope.issuer, self.ctx.descriptor
        document = envelope.body.get("document", {}) if isinstance(envelope.body, dict) else {}
        if did in self.registered or document.get("controller") != d.dao or "machine" not in document:
            return
        market = self.service.market
        market.fund(d.dao, d.bond, d.currency, key=f"bond-for:{did}", role="owner")
        market.register_robot(did, d.dao, d.bond, d.currency)
        self.registered.add(did)

    def _verified(self, topic: str, payload: bytes) -> None:
        self.inbound.handle(topic, payload)
        if topic.endswith("/receipt"):
            self.ctx.publish(self.service.step())

    def turn(self) -> None:
        with self.lock:
            identity, rotated = self.key.current()
            if rotated:
                self.service.market.signer = identity.envelope_signer(self.ctx.clock)
            if time.monotonic() >= self._next_fee:  # the DAO's proposals set the fee, in its own process
                self._next_fee = time.monotonic() + 5.0
                self.service.market.fee_bps = self.dao.params()[2]
            out = self.service.step()
        self.ctx.publish(out)

    def counters(self) -> dict[str, Any]:
        s = self.service
        return {"posted": s.posted, "awarded": s.awarded, "delivered": len(s.delivered), "failed": len(s.failed),
                "released": len(s.released), "refused": dict(s.refused), "received": self.inbound.received,
                "held": len(s.held), "sightings": s.sightings, "presence_refused": dict(s.presence_refused)}

    def close(self) -> None:
        self.turn()  # receipts that arrived last are settled
        self.ledger.close()

    @property
    def signer_name(self) -> str:
        return "market"


class CustomersRole(Role):
    """Simulated customers: the simulator's orders, as tasks each customer signs, posted to the marketplace."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        d = ctx.descriptor
        city = generate_city(d.seed, d.city)
        self.demand = Demand(city, d.seed * 1_000 + d.run, d.orders_per_min, prefix=f"run{d.run}-order")
        signers = [ctx.identity(name).envelope_signer(ctx.clock) for name in ctx.identities.names("customer-")]
        self.customers = Customers(signers, MarketPolicy().quote, clock=ctx.clock, currency=ctx.descriptor.currency)
        self.progress = ctx.state / f"customers-{d.run}.json"  # how far this run's orders went (a restart skips them)
        done = json.loads(self.progress.read_text())["t"] if self.progress.exists() else 0.0
        self.demand.due(done)
        self.ordered = 0

    def turn(self) -> None:
        orders = self.demand.due(self.ctx.clock() - self.ctx.descriptor.origin_fleet_s)
        if not orders:
            return
        spec = BY_KIND["task"]
        self.ctx.publish([Outgoing(MARKET_ORDERS, self.customers.order(order), spec.qos, False) for order in orders])
        self.ordered += len(orders)
        tmp = self.progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"t": self.ctx.clock() - self.ctx.descriptor.origin_fleet_s}))
        tmp.replace(self.progress)

    def counters(self) -> dict[str, Any]:
        return {"ordered": self.ordered}


class DaoRole(Role):
    """The DAO keeper: queues and executes passed proposals, splits revenue, signs checkpoints."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        d = ctx.descriptor
        self.ledger = Ledger.open(ctx.db_url, ctx.identity("ledger", controller=d.operator).signer, clock=ctx.clock)
        market = Marketplace(self.ledger, None, clock=ctx.clock)
        self.hooks = SpawnHooks(ctx, market, bond=d.bond)
        self.dao = Dao(self.ledger, d.dao, currency=self.ctx.descriptor.currency, clock=ctx.clock, hooks=self.hooks)
        self.keeper = DaoService(self.dao, self.ledger, clock=ctx.clock)
        self.checkpoints = CheckpointPublisher(self.ledger)  # each new signed checkpoint, retained, for witnesses

    def turn(self) -> None:
        self.keeper.step()
        self.ctx.publish(self.checkpoints.step())

    def counters(self) -> dict[str, Any]:
        return {"executed": len(self.keeper.executed), "refused": dict(self.keeper.refused),
                "bought": len(self.hooks.bought)}

    def close(self) -> None:
        self.dao.distribute(f"run{self.ctx.descriptor.run}-{self.ctx.clock():.0f}")
        self.ledger.checkpoint()
        self.ctx.publish(self.checkpoints.step(now=True))
        self.ledger.close()


class SpawnHooks(FleetHooks):
    """The DAO's hands when the simulator runs in another process: a bought robot is named here and registered on
    the marketplace, then the simulator beside this keeper is told (signed) to add it."""

    def __init__(self, ctx: Context, market: Marketplace, *, bond: int) -> None:
        super().__init__(None, market, ctx.registry, ctx.descriptor.dao, bond=bond, currency=ctx.descriptor.currency)
        self.ctx = ctx
        self.operator = ctx.identity("operator").envelope_signer(ctx.clock)

    def buy_robot(self, proposal: str, model: str) -> str:
        if proposal not in self.bought:
            name = f"robot-bought-{proposal}"
            did = self.ctx.identities.enroll(name, controller=self.dao_did, with_topic_root=True,
                                             machine=robot_profile(RobotSpec())).did
            self.market.register_robot(did, self.dao_did, self.bond, self.currency)
            self.bought[proposal] = did
            self.ctx.client.publish(FLEET_SPAWN, self.operator.seal(SPAWN_KIND, {"name": name,
                                                                                  "controller": self.dao_did}))
        return self.bought[proposal]


class DashboardRole(Role):
    """The dashboard: pages and API over the shared database, the fleet's live parts fed from the bus."""

    NAMES_EVERY_S = 5.0  # how often the names beside DIDs are read again (robots bought, bridges enrolled)

    def __init__(self, ctx: Context) -> None:
        # Imported here: the web stack (uvicorn, FastAPI) is loaded only by the process that serves it.
        from dashboard.live import bus_live, city_layout
        from dashboard.resolver import ResolverView, SignedDescriptor
        from dashboard.server import DashboardError, DashboardServer
        from launch.bridge_command import enrolled
        from launch.bridge_status import dashboard_info
        from launch.identity_publisher import IdentityPublisher
        from launch.statuses import StatusBoard

        super().__init__(ctx)
        d = ctx.descriptor
        city = generate_city(d.seed, d.city)
        roads = roads_json(city.road_graph())  # served at d.roads_url: the bytes whose SHA-256 the operator signed
        if roads_digest(roads) != d.roads_sha256:
            raise CliError("this host's road graph is not the one the fleet descriptor pins (roads_sha256)",
                           code="other_roads", hint="run the same depai version as the supervisor",
                           exit_code=EXIT_USAGE)
        _, wire = await_signed_descriptor(ctx.client, ctx.registry, d.operator, run=d.run)
        signed = SignedDescriptor.of(wire, d.operator, roads)
        self.identities = IdentityPublisher(ctx.registry)  # every DID's newest version, retained on the bus
        self.statuses = StatusBoard(ctx.registry, run=d.run).subscribe(ctx.client)
        live = bus_live(ctx.client, ctx.registry, self.statuses, map_did=d.map, clock=ctx.clock,
                        map_layout=city_layout(city, city.road_graph()), ledger_did=d.ledger)
        self.ledger = Ledger.open(ctx.db_url, None)  # read-only but for members' signed votes and proposals
        self._names: dict[str, str] = {}
        self._names_at = -float("inf")
        self._enrolled = enrolled
        view = ResolverView(self.ledger, Dao(self.ledger, d.dao, currency=d.currency, clock=ctx.clock),
                            Marketplace(self.ledger, None), live, names=self.names, registry=ctx.registry,
                            descriptor=lambda: signed)
        host, port = os.environ.get("DEPAI_DASHBOARD_HOST", "127.0.0.1"), os.environ.get("DEPAI_DASHBOARD_PORT", "8080")
        if not port.isdigit() or int(port) > 65_535:
            self.ledger.close()
            raise CliError(f"DEPAI_DASHBOARD_PORT={port!r} is not a port number", code="bad_port",
                           hint="0 takes any free port", exit_code=EXIT_USAGE)
        try:
            self.dashboard = DashboardServer(view, host=host, port=int(port)).start()
            self.url = self.dashboard.url  # kept: the final status, after close(), still says where it was
            dashboard_info(ctx.state, self.url)  # where `depai bridge status` asks
        except DashboardError as err:
            self.ledger.close()
            raise CliError(str(err), code="port_taken", hint="set DEPAI_DASHBOARD_PORT (0: any free port)",
                           exit_code=EXIT_USAGE) from None

    def names(self) -> dict[str, str]:
        """DID -> name of the fleet's stored identities and enrolled real robots (read again every few seconds)."""
        if time.monotonic() - self._names_at >= self.NAMES_EVERY_S:
            self._names_at = time.monotonic()
            self._names = {**self.ctx.identities.directory_all(),
                           **{robot.did: robot.name for robot in self._enrolled(self.ctx.state)}}
        return self._names

    def turn(self) -> None:
        self.ctx.publish(self.identities.step())

    def counters(self) -> dict[str, Any]:
        return {"url": self.url, "identities_published": self.identities.published}

    def close(self) -> None:
        self.dashboard.stop()
        self.ledger.close()


ROLES: dict[str, type[Role]] = {"ingest": IngestRole, "sim": SimRole, "map": MapRole, "market": MarketRole,
                                "customers": CustomersRole, "dao": DaoRole,
                                "dashboard": DashboardRole}


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai serve``."""
    serve = commands.add_parser("serve", parents=[parent], help="run one service of a fleet (depai up runs them all)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("role", choices=sorted(ROLES), help="which service")
    serve.add_argument("--state", metavar="DIR", help="this service's state directory (default: HOME/fleet)")
    serve.add_argument("--broker", metavar="URL", help="mqtt://user:password@host:port (default: the broker "
                                                      "depai up started for --state)")
    serve.add_argument("--db", metavar="URL", help="the fleet's database: postgresql://... (default: SQLite in "
                                                  "--state)")
    serve.add_argument("--operator", metavar="DID", help="the fleet operator's DID, whose signed descriptor to "
                                                        "follow (default: --state's operator)")
    serve.add_argument("--index", type=int, default=0, help="which one of --of (ingest partitions, sim shards)")
    serve.add_argument("--of", type=int, default=1, help="how many of this role run in all (default 1)")
    serve.add_argument("--robots", type=int, help="sim: robots in this shard (default: its share of the fleet's)")
    serve.add_argument("--run", type=int, help="wait for this run's descriptor (depai up passes it)")
    serve.add_argument("--witness", action="store_true",
                       help="market: pay a receipt only when peers' lidar witnessed the delivery (the map service's "
                            "map.presence), holding it until then (docs/marketplace.md#proof-of-delivery)")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace, home: Home) -> int:
    """Run one role until SIGTERM or Ctrl-C."""
    if not 0 <= args.index < args.of:
        raise CliError(f"--index {args.index} --of {args.of}: need 0 <= index < of", code="bad_index",
                       exit_code=EXIT_USAGE)
    ctx = Context(args, home)
    previous = {sig: signal.signal(sig, lambda *_: ctx.stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_role(ctx, ROLES[args.role](ctx))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


RoleFactory = Callable[[Context], Role]
