"""The hardware bridge: the fleet's robot agent driving a real robot's ``Body``, over the fleet's MQTT broker.

The bridge holds the robot's key and is the robot on the bus: it checks the key
against the robot's DID document, connects with the robot's own MQTT login
(persistent session, an outbox on disk so nothing is lost while the broker is
away), greets with a signed birth on every connection and leaves a signed death
as its will, runs the agent at ``hz`` in real time, publishes what the agent
says, and hands the agent what the fleet sends it (commands, tasks, awards, the
road graph). Commands, tasks and awards are verified by the agent's own gate.
Keys come from the fleet's registry, or over HTTP from the fleet's DID resolver
(``HttpResolver``) on a machine of its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path

import networkx as nx

from bus.client import BusClient
from bus.session import MachineSession, Outgoing, connection_greeting
from bus.topics import COMMAND_CHANNEL, MAP_GRAPH, MAP_TILES, MARKET_AWARDS, MARKET_TASKS, map_tiles_filter, topic_root
from identity.envelope import Envelope, EnvelopeSigner
from identity.errors import DepaiError, DidError, RegistryError
from identity.http_resolver import HttpResolver
from identity.keys import Signer
from identity.registry import DidRegistry
from robots.agent import AgentConfig, RobotAgent
from robots.body import Body
from robots.commands import CommandGate
from robots.planner import RoadPlanner
from spatial.tiles import BELIEF
from spatial.view import MapView


class BridgeError(DepaiError, ValueError):
    """The bridge cannot speak for this robot (unknown DID, wrong key, ...); ``hint`` says what to do."""

    code = "bridge_refused"

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message, code=code, hint=hint)

    def __str__(self) -> str:  # the message alone: callers show the hint on a line of its own
        return Exception.__str__(self)


def check_key(registry: DidRegistry | HttpResolver, did: str, signer: Signer) -> dict:
    """The robot's DID document, if ``signer`` holds its active key; BridgeError otherwise."""
    try:
        resolution = registry.active(did)
    except (DidError, RegistryError) as err:
        if isinstance(err, RegistryError) and err.code not in ("unknown_did", "registry_error"):
            raise BridgeError(err.code, f"cannot check {did}'s key: {Exception.__str__(err)}",
                              err.hint or "check the fleet's address") from None
        raise BridgeError("unknown_did", f"{did} is not registered with this fleet",
                          "enroll the robot first: depai bridge enroll NAME --state FLEET_STATE") from None
    if resolution.public_key != signer.public_key:
        raise BridgeError("wrong_key", f"the key given is not {did}'s key "
                                       f"(its document holds {resolution.public_key.hex()[:16]}..., the key "
                                       f"is {signer.public_key.hex()[:16]}...)",
                          "use the key file made when the robot was enrolled")
    return resolution.document


class _CountingGate(CommandGate):
    """The agent's gate, counting the market messages it let in by kind and signing key (``task key-2``): which of
    the marketplace's keys the robot has verified, across a rotation."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.market_verified: Counter[str] = Counter()

    def admit_market(self, topic: str, payload: bytes) -> Envelope:
        envelope = super().admit_market(topic, payload)
        self.market_verified[f"{envelope.kind} {envelope.key_id}"] += 1
        return envelope


class Bridge:
    """One real robot in the fleet: its agent over ``body``, its key, its connection."""

    def __init__(self, signer: Signer, did: str, body: Body, registry: DidRegistry | HttpResolver, roads: nx.Graph,
                 *, broker_url: str, username: str | None, password: str | None, commanders: Sequence[str],
                 map_services: Sequence[str] = (), chargers: Sequence[tuple[float, float]] = (),
                 state_dir: Path | None = None, hz: float = 10.0, clock: Callable[[], float] = time.time,
                 config: AgentConfig = AgentConfig(scan_hz=1.0), ca_file: Path | None = None) -> None:
        document = check_key(registry, did, signer)
        self.did, self.hz, self.clock = did, hz, clock
        root = topic_root(did)
        key_id = registry.active(did).key_id or "key-1"  # after a rotation of the robot's key: key-N
        self.session = MachineSession(EnvelopeSigner(signer, did, key_id, clock=clock), root, document,
                                      software="depai-bridge")
        self.map_view = MapView(registry, map_services, clock=clock)
        gate = self.gate = _CountingGate(did, root, registry, commanders, clock=clock)
        self._said: list[Outgoing] = []
        self.agent = RobotAgent(body, self.session, RoadPlanner(roads), send=self._said.append, clock=clock,
                                chargers=chargers, gate=gate, config=config, map_view=self.map_view)
        self._arrived: deque[tuple[str, bytes]] = deque()
        self.client = BusClient(broker_url, client_id=root.rsplit("/", 1)[1],  # its address: the one id its login may use
                                username=username, password=password, on_session=connection_greeting([self.session]),
                                outbox_path=state_dir / "outbox.sqlite3" if state_dir else None, outbox_durable=True,
                                ca_file=ca_file)
        for topic_filter in (f"{root}/{COMMAND_CHANNEL}", MARKET_TASKS, MARKET_AWARDS, MAP_GRAPH,
                             map_tiles_filter(BELIEF)):  # the agent localizes on the map's belief tiles
            self.client.subscribe(topic_filter, self._arrive)
        self._stop = threading.Event()

    def _arrive(self, topic: str, payload: bytes) -> None:
        self._arrived.append((topic, payload))  # handed to the agent on its own thread, at its next step

    def start(self, timeout: float = 10.0) -> Bridge:
        """Connect; TimeoutError if the broker does not take the robot's login and subscriptions in time."""
        self.client.start()
        if not (self.client.wait_connected(timeout) and self.client.wait_subscribed(timeout)):
            raise TimeoutError(f"the broker at {self.client.address.display} did not accept the robot within "
                               f"{timeout:.0f} s; check the URL and the robot's MQTT login")
        return self

    def step(self) -> int:
        """One control tick: what arrived goes to the agent, the agent steps, what it said is published."""
        arrived = self._arrived
        while arrived:
            topic, payload = arrived.popleft()
            if topic == MAP_GRAPH or topic.startswith(MAP_TILES):
                self.map_view.receive(topic, payload)
            else:
                self.agent.receive(topic, payload)
        self.agent.step()
        said, self._said[:] = list(self._said), []
        if said:
            self.client.publish_many([message.astuple() for message in said])
        return len(said)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Step at ``hz`` in real time until ``stop()`` or ``should_stop()``."""
        period = 1.0 / self.hz
        next_tick = time.monotonic()
        while not self._stop.is_set() and not should_stop():
            self.step()
            next_tick += period
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        """Ask ``run()`` to return after the current tick."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """Say the robot is leaving (a signed death), flush what is queued (within ``timeout``), disconnect."""
        self.client.publish_many([self.session.death().astuple()])
        self.client.wait_drained(timeout)
        self.client.close(timeout)
