"""The two ways a simulated fleet talks to its services: over a real MQTT broker, or in process.

Both pass every robot message through the same verify-on-ingest pipeline and
every command through each robot's own command gate; the loopback only skips
the network, which makes a run exactly repeatable for a seed.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path

from bus.broker import BrokerConfig, BrokerError, MqttUser, choose_kind, start_broker
from bus.client import BusClient, Message
from bus.frames import pack_within
from bus.ingest import Ingest
from bus.router import Router
from bus.session import Outgoing
from bus.topics import (
    COMMAND_CHANNEL,
    MAP_GRAPH,
    MARKET_AWARDS,
    MARKET_TASKS,
    gateway_topic,
    map_tiles_filter,
    parse_robot_topic,
    robot_filter,
)
from identity.envelope import Envelope
from launch.fleet import Link, SimFleet
from launch.output import EXIT_USAGE, CliError
from marketplace.dispatch import Dispatcher
from marketplace.service import MarketService
from spatial.service import MapService
from spatial.tiles import BELIEF


class LoopbackLink:
    """In process: robots' messages go straight into ``ingest``; services' messages reach robots at the next pump."""

    def __init__(self, fleet: SimFleet, ingest: Ingest) -> None:
        self.fleet = fleet
        self.ingest = ingest
        self._to_robots: list[Outgoing] = []
        self._listeners: dict[str, Callable[[str, bytes], None]] = {}
        self.publish(fleet.births())

    def listen(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Hand the services' messages on ``topic`` to ``handler`` (a service subscribed to another's channel, as the
        market is to map.presence) instead of the robots, as the broker would."""
        self._listeners[topic] = handler

    def publish(self, messages: list[Outgoing]) -> None:
        """Verify and consume each message, in order."""
        handle = self.ingest.handle
        for message in messages:
            handle(message.topic, message.payload)

    def publish_services(self, messages: list[Outgoing]) -> None:
        """Queue the services' messages (commands, the road graph) for the robots."""
        self._to_robots.extend(messages)

    def settle(self, timeout: float = 10.0) -> None:
        """Nothing is in flight in process."""

    def pump(self) -> None:
        """Hand the queued messages to their robots, and those on a listened topic to its service."""
        queued, self._to_robots = self._to_robots, []
        for message in queued:
            listener = self._listeners.get(message.topic)
            if listener is not None:
                listener(message.topic, message.payload)
            else:
                self.fleet.deliver(message.topic, message.payload)


class MqttLink:
    """Over a broker: the simulator's gateway connection for the robots, a service connection for ingest."""

    def __init__(
        self,
        fleet: SimFleet,
        ingest: Ingest,
        url: str,
        *,
        gateway_login: tuple[str, str] | None = None,
        service_login: tuple[str, str] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.fleet, self.url = fleet, url
        self._arrived: deque[tuple[str, bytes]] = deque()
        gateway_address = fleet.gateway_identity.did.rsplit(":", 1)[1]
        user, password = gateway_login or (None, None)
        self.gateway = BusClient(url, client_id=f"depai-sim-{gateway_address[:16]}", username=user,
                                 password=password, on_session=fleet.greeting(),
                                 outbox_path=state_dir / "gateway-outbox.sqlite3" if state_dir else None)
        for topic_filter in [*robot_filter(COMMAND_CHANNEL), MAP_GRAPH, map_tiles_filter(BELIEF), MARKET_TASKS,
                             MARKET_AWARDS]:  # the robots plan on the graph and localize on the belief tiles
            self.gateway.subscribe(topic_filter, self._arrive)
        user, password = service_login or (None, None)
        self.service = BusClient(url, client_id=f"depai-services-{gateway_address[:16]}", username=user,
                                 password=password,
                                 outbox_path=state_dir / "service-outbox.sqlite3" if state_dir else None)
        for topic_filter in ingest.subscriptions():
            self.service.subscribe(topic_filter, ingest.handle)

    def start(self, timeout: float = 10.0) -> MqttLink:
        """Connect both clients and wait until their subscriptions stand."""
        self.service.start()
        if not (self.service.wait_connected(timeout) and self.service.wait_subscribed(timeout)):
            raise TimeoutError(f"the service connection to {self.service.address.display()} did not come up")
        self.gateway.start()
        if not (self.gateway.wait_connected(timeout) and self.gateway.wait_subscribed(timeout)):
            raise TimeoutError(f"the simulator connection to {self.gateway.address.display()} did not come up")
        return self

    def _arrive(self, topic: str, payload: bytes) -> None:
        self._arrived.append((topic, payload))

    def publish(self, messages: list[Outgoing]) -> None:
        """Publish the robots' messages on the gateway connection."""
        if messages:
            self.gateway.publish_many([message.astuple() for message in messages])

    def publish_services(self, messages: list[Outgoing]) -> None:
        """Publish the services' messages (commands, map tiles and graph) on the service connection."""
        if messages:
            self.service.publish_many([message.astuple() for message in messages])

    def pump(self) -> None:
        """Hand what arrived for the robots since the last pump to them."""
        arrived = self._arrived
        while arrived:
            self.fleet.deliver(*arrived.popleft())

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until everything sent was acknowledged and deliveries to the services have stopped arriving."""
        deadline = time.monotonic() + timeout
        self.gateway.wait_drained(timeout)
        self.service.wait_drained(max(0.0, deadline - time.monotonic()))
        received = -1
        while time.monotonic() < deadline and received != self.service.stats()["received"]:
            received = self.service.stats()["received"]
            time.sleep(0.2)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued messages drain, then disconnect both clients."""
        self.gateway.wait_drained(timeout)
        self.service.wait_drained(timeout)
        self.gateway.close()
        self.service.close()


class ShardLink:
    """A simulator shard's one connection: its robots' births and will, their messages in batches per partition
    (bus/frames.py; each envelope still signed by its robot), and what the services send them."""

    def __init__(self, fleet: SimFleet, url: str, *, name: str, outbox: Path,
                 subscribe_extra: dict[str, Callable[[str, bytes], None]] | None = None) -> None:
        self.fleet, self.name = fleet, name
        self.published: Counter[str] = Counter()
        self._arrived: deque[tuple[str, bytes]] = deque()
        greeting = fleet.greeting()

        def greet() -> tuple[Message, list[Message]]:  # the births of every connection count as sent
            will, births = greeting()
            self.published["birth"] += len(births)
            return will, births

        self.client = BusClient(url, client_id=f"depai-sim-{name}", on_session=greet, outbox_path=outbox)
        for topic_filter in [*robot_filter(COMMAND_CHANNEL), MAP_GRAPH, map_tiles_filter(BELIEF), MARKET_TASKS,
                             MARKET_AWARDS]:
            self.client.subscribe(topic_filter, self._arrive)
        for topic_filter, handler in (subscribe_extra or {}).items():
            self.client.subscribe(topic_filter, handler)

    def start(self, timeout: float = 30.0) -> ShardLink:
        """Connect and wait until the subscriptions stand."""
        self.client.start()
        if not (self.client.wait_connected(timeout) and self.client.wait_subscribed(timeout)):
            raise TimeoutError(f"the simulator connection to {self.client.address.display} did not come up")
        return self

    def _arrive(self, topic: str, payload: bytes) -> None:
        self._arrived.append((topic, payload))

    def publish(self, messages: list[Outgoing]) -> None:
        """Retained messages (births) one by one, as late subscribers need them; the rest in a batch per partition."""
        if not messages:
            return
        singles, batches = [], {}
        for message in messages:
            parsed = parse_robot_topic(message.topic)
            channel = parsed.channel if parsed else "other"
            self.published[channel] += 1
            if message.retain or parsed is None:
                singles.append(message.astuple())
            else:
                batches.setdefault(parsed.partition, []).append((message.topic, message.payload))
        self.client.publish_many(singles + [(gateway_topic(partition, self.name), batch, 1, False)
                                            for partition, frames in batches.items() for batch in pack_within(frames)])

    def pump(self) -> None:
        """Hand what arrived for the robots since the last pump to them."""
        arrived = self._arrived
        while arrived:
            self.fleet.deliver(*arrived.popleft())

    def close(self, timeout: float = 5.0) -> None:
        """Let queued messages drain, then disconnect."""
        self.client.wait_drained(timeout)
        self.client.close()


def fleet_router(dispatcher: Dispatcher, shared_map: MapService, market: MarketService) -> Router:
    """The in-process fleet's routes: each verified kind to the services that declared it."""
    return (Router().declare(Dispatcher.declared_kinds, dispatcher.observe)
            .declare(MapService.declared_kinds, shared_map.observe)
            .declare(MarketService.declared_kinds, market.observe))


def open_link(broker: str, fleet: SimFleet, ingest: Ingest, work: Path, stack: contextlib.ExitStack, *,
              robots: Sequence[MqttUser] = ()) -> tuple[Link, str]:
    """The link a run goes through, and a phrase saying what it is: ``broker`` is none (in process), a URL, or
    the kind of broker to start (auto, mosquitto, amqtt) with the topic ACL, giving ``robots`` (real robots'
    logins) their own topics; ``stack`` closes what it opens."""
    if broker == "none":
        return LoopbackLink(fleet, ingest), "in process (no broker)"
    if "://" in broker:
        link = MqttLink(fleet, ingest, broker, state_dir=work)
        stack.callback(link.close)
        return link.start(), f"broker {broker}"
    try:
        kind, _ = choose_kind(broker)
    except BrokerError as err:
        raise CliError(str(err), code=err.code, hint=err.hint, exit_code=EXIT_USAGE) from None
    gateway = MqttUser("simulator", secrets.token_urlsafe(18), "gateway")
    service = MqttUser("services", secrets.token_urlsafe(18), "service")
    broker = stack.enter_context(start_broker(kind, BrokerConfig(data_dir=work / "broker",
                                                                users=[gateway, service, *robots])))
    link = MqttLink(fleet, ingest, broker.url, gateway_login=(gateway.username, gateway.password),
                    service_login=(service.username, service.password), state_dir=work)
    stack.callback(link.close)
    return link.start(), f"{kind} broker at {broker.url} with the topic ACL"
