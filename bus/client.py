"""``BusClient``: the fleet's reliable MQTT client, over paho-mqtt 2.x and MQTT 3.1.1.

One ``BusClient`` is one MQTT connection with one stable client id and a
persistent session (``clean_session=False``). It is only the transport: payloads
are opaque bytes (signed envelopes made elsewhere), and many identities (a whole
simulated fleet) may publish through one client. There is no thread per robot.

Publishing (at-least-once, in order)
    ``publish(topic, payload, qos=1)`` first writes the message to the durable
    ``Outbox`` (bus/outbox.py) and returns its outbox id; the message is deleted
    from the outbox only when the broker's PUBACK arrives. One sender thread
    hands outbox entries to paho strictly in id order, at most ``max_inflight``
    unacknowledged at a time. While disconnected, messages simply wait in the
    outbox (up to its bounds; then ``OutboxFull``). On every (re)connect the
    sender starts again from the oldest entry, so whatever was pending (from
    before the disconnect, or from before a crash of the previous process) is
    re-published in its original order *before* anything newer: there is only
    one ordered queue, so new messages cannot overtake old ones. A message that
    was in flight when the connection dropped is sent again (a duplicate, never
    a loss); receivers deduplicate by the envelope's (issuer, seq).

    A fresh paho ``Client`` is made for every connection attempt (same client id,
    so the broker session persists). paho reuses message ids (mids) on a new
    connection, and keeps its own retransmission queue per ``Client`` object; with
    one object per connection the mapping mid -> outbox id is per connection by
    construction, and no paho-internal queue can replay stale messages out of
    order after a reconnect.

    QoS 2 is not offered (``ValueError``): its exactly-once handshake state
    would have to survive reconnects inside paho, and a packet id still held
    by the broker from an unfinished QoS 2 exchange would make it drop a new
    message as a duplicate. QoS 1 plus deduplication by (issuer, seq) gives
    the same result.

    QoS 0 (optional, e.g. high-rate telemetry) bypasses the outbox: sent if
    connected, else discarded (that is QoS 0) and counted in ``stats``. QoS 0
    and QoS 1 messages are therefore not ordered with respect to each other.
    ``outbox_path`` is required to publish at QoS 1; a client without one
    may subscribe and publish QoS 0 only (``BusError`` code ``no_outbox``).

    What at-least-once covers: from ``publish`` returning to the broker's PUBACK.
    After that the broker holds the only copy; a broker that crashes before it
    delivered or saved the message loses it (amqtt keeps nothing across a
    restart; Mosquitto keeps what its last periodic save wrote).

    Throughput (2-core VM, 300-byte payloads, local Mosquitto): about 4,500
    QoS 1 messages/s acknowledged for one client; the outbox alone does about
    15,000 put+ack/s one by one (see tests/bus/test_outbox.py).

Subscribing
    ``subscribe(filter, handler, qos=1)`` is remembered and sent again on every
    connect. (With a persistent session Mosquitto remembers subscriptions too,
    but amqtt loses everything on a restart; a repeated SUBSCRIBE is harmless,
    except that the broker re-sends retained messages for it, which receivers
    must treat as duplicates anyway.) Shared subscriptions
    ``$share/{group}/{filter}`` are routed by ``{filter}``: incoming messages
    carry the plain topic, and every remembered filter that matches it (MQTT
    ``+``/``#`` rules) gets the message. Overlapping filters may therefore see a
    message more than once.

    Handlers run on paho's network thread, one message at a time, in arrival
    order. This is deliberate: paho sends the PUBACK for a QoS 1 message only
    after the handler returned, so a process that dies inside a handler gets the
    message again from its persistent session (at-least-once end to end). A
    dispatcher thread would acknowledge messages that were only queued in
    memory. The price: a handler must be quick (verify, then hand heavy work to
    its own queue); while it runs, this connection reads nothing else. A handler
    may call ``publish`` (it only writes to the outbox). An exception from a
    handler is logged (logger ``depai.bus``) and counted; the client goes on.

Machines on the connection
    A machine must open every connection with a fresh birth, and its will must
    name that birth's epoch (bus/session.py). ``on_session`` is called before
    every connection attempt and returns that connection's will and the
    messages to send first (the births), ahead of anything in the outbox; a
    fixed ``will`` is for clients that are not machines.

Connection
    URLs are ``mqtt://[user:pass@]host[:1883]`` or ``mqtts://[user:pass@]host[:8883]``
    (TLS; ``ca_file`` or ``tls_context`` select the trust anchors, else the
    system's). One background thread connects, reconnects forever with
    exponential backoff and jitter (``min_reconnect_delay`` doubling up to
    ``max_reconnect_delay``) until ``close()``, and sends. Nothing is printed;
    everything goes to the ``depai.bus`` logger (paho's own log to
    ``depai.bus.paho``).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bus.outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Outbox, OutboxEntry, OutboxError
from identity.errors import DepaiError

log = logging.getLogger("depai.bus")


class _PahoLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """paho's log, under ``depai.bus.paho``, with two of its ERRORs demoted: they are expected here.

    "Client is not connected" follows every close (paho's loop polls once more after the socket
    closed); "failed to receive on socket" is a lost connection, which this module reports itself
    (a WARNING) and recovers from.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR and isinstance(msg, str):
            if msg.startswith("Client is not connected"):
                level = logging.DEBUG
            elif msg.startswith("failed to receive on socket"):
                level = logging.INFO
        super().log(level, msg, *args, **kwargs)


_paho_log = _PahoLog(logging.getLogger("depai.bus.paho"), {})

Handler = Callable[[str, bytes], None]
Will = tuple[str, bytes, int, bool]
Message = tuple[str, bytes, int, bool]
# Called before every connection attempt: (the will for this connection, the messages to send first on it).
SessionHook = Callable[[], tuple[Will | None, list[Message]]]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
MAX_TOPIC_BYTES = 65535
MAX_PAYLOAD_BYTES = 268_435_455
_NO_QOS2 = ("QoS 2 is not offered: its exactly-once state lives in one paho Client, and this client uses "
            "a fresh one per connection; use QoS 1 (receivers drop duplicates by the envelope's issuer and seq)")
ACK_BATCH = 256  # acknowledged outbox entries deleted per transaction, at most
ROUTE_CACHE_SIZE = 65_536  # topics whose matching subscriptions are remembered


class BusError(DepaiError):
    """A bus client refusal."""

    code = "bus_error"


class BusClosed(BusError):
    """The client is closing or closed and takes no more messages."""

    def __init__(self, message: str = "the bus client is closed") -> None:
        super().__init__(message, code="closed", hint="make a new BusClient")


# --- broker URLs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker URL. ``password`` is kept out of ``repr``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __repr__(self) -> str:
        return f"BrokerAddress({self.display!r})"

    @property
    def display(self) -> str:
        """The URL without the password, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``; ValueError says what is wrong."""
    if not isinstance(url, str):
        raise TypeError(f"a broker URL is a string, got {type(url).__name__}")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    shown = _redact(url)
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"broker URL {shown!r}: scheme {scheme or '(none)'!r} is not supported; "
            "use mqtt://host:1883, or mqtts://host:8883 for TLS"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {shown!r}: the port must be a number in 1..65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"broker URL {shown!r} names no host; use {scheme}://host:{DEFAULT_PORTS[scheme]}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {shown!r}: an MQTT URL has no path, query or fragment")
    if port == 0:
        raise ValueError(f"broker URL {shown!r}: the port must be a number in 1..65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(scheme, host, port or DEFAULT_PORTS[scheme], username, password)


def _redact(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return parts._replace(netloc=netloc).geturl()
    except ValueError:
        pass
    return url


# --- topics and filters ------------------------------------------------------------------------------

def check_topic(topic: str) -> None:
    """ValueError unless ``topic`` is a valid MQTT topic name to publish to (no wildcards)."""
    if not isinstance(topic, str) or not topic:
        raise ValueError("a topic is a non-empty string")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"topic {topic!r} may not contain '+', '#' or NUL: wildcards are for subscriptions")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic is longer than {MAX_TOPIC_BYTES} bytes")


def split_filter(topic_filter: str) -> tuple[str, ...]:
    """The levels a subscription filter matches topics by: ``$share/{group}/`` stripped; ValueError if invalid."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise ValueError("a subscription filter is a non-empty string")
    if "\x00" in topic_filter or len(topic_filter.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"filter {topic_filter!r} holds NUL or is too long")
    text = topic_filter
    if text.startswith("$share/"):
        _, group, *rest = text.split("/", 2)
        if not group or "+" in group or "#" in group or not rest or not rest[0]:
            raise ValueError(
                f"shared subscription {topic_filter!r} must be $share/{{group}}/{{filter}}, "
                "with a group name free of '+' and '#'"
            )
        text = rest[0]
    levels = tuple(text.split("/"))
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"filter {topic_filter!r}: '#' must be a whole level, and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"filter {topic_filter!r}: '+' must be a whole level")
    return levels


def filter_matches(levels: tuple[str, ...], topic: str) -> bool:
    """True if ``topic`` matches the filter ``levels`` (from ``split_filter``) by the MQTT rules.

    A leading wildcard does not match topics starting with ``$`` (MQTT 3.1.1, 4.7.2).
    """
    if topic[:1] == "$" and levels[0] in ("+", "#"):
        return False
    parts = topic.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(parts) == len(levels)


@dataclass(frozen=True)
class _Subscription:
    filter: str
    levels: tuple[str, ...]
    handler: Handler
    qos: int


# --- one connection -----------------------------------------------------------------------------------

class _TrackedTLS:
    """Our SSLContext as paho sees it, remembering the sockets it wraps.

    paho 2.2 does not close the socket when the TLS handshake fails (an untrusted certificate, say);
    the connection thread closes it, instead of leaking one per reconnect attempt.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self.sockets: list[ssl.SSLSocket] = []

    @property
    def check_hostname(self) -> bool:
        return self._context.check_hostname

    def wrap_socket(self, sock: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = self._context.wrap_socket(sock, **kwargs)
        self.sockets.append(wrapped)
        return wrapped

    def close_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


class _Session:
    """The state of one connection (one paho Client): mids are only meaningful within it."""

    def __init__(self) -> None:
        self.client: mqtt.Client | None = None
        self.tls: _TrackedTLS | None = None
        self.up = False  # CONNACK accepted
        self.dead = False  # disconnected (or never connected)
        self.inflight: dict[int, int] = {}  # paho mid -> outbox id, handed to paho, not yet acked
        self.early: set[int] = set()  # mids whose PUBACK came before publish() returned
        self.acked: list[int] = []  # outbox ids acknowledged, to delete in the next batch
        self.sub_mids: dict[int, str] = {}  # SUBSCRIBE mid -> filter
        self.early_subacks: dict[int, bool] = {}  # SUBACK mid -> granted, before subscribe() returned
        self.granted: set[str] = set()
        self.refused: set[str] = set()
        self.greeting: list[tuple[str, bytes, int, bool]] = []  # sent first on this connection, not via the outbox
        self.greeting_mids: set[int] = set()


class BusClient:
    """The fleet's MQTT client: persistent session, durable ordered outbox, reconnect forever.

    Call ``start()`` (or use ``with``) to connect. See the module docstring for the guarantees.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        outbox_path: Path | str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | str | None = None,
        tls_context: ssl.SSLContext | None = None,
        will: Will | None = None,
        on_session: SessionHook | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
        connect_timeout: float = 5.0,
        min_reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 10.0,
        max_inflight: int = 100,
        outbox_max_messages: int = DEFAULT_MAX_MESSAGES,
        outbox_max_bytes: int = DEFAULT_MAX_BYTES,
        outbox_durable: bool = False,
    ) -> None:
        self.address = parse_broker_url(url)
        if not isinstance(client_id, str) or not client_id or len(client_id.encode()) > 65535:
            raise ValueError("client_id must be a non-empty string: a stable id is what keeps the broker session")
        if not 0 < min_reconnect_delay <= max_reconnect_delay:
            raise ValueError("reconnect delays must satisfy 0 < min_reconnect_delay <= max_reconnect_delay")
        if not 1 <= max_inflight <= 65535:
            raise ValueError("max_inflight must be in 1..65535 (MQTT packet ids are 16 bits)")
        self.client_id = client_id
        self.username = username if username is not None else self.address.username
        self._password = password if password is not None else self.address.password
        if self._password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if tls_context is not None and not self.address.tls:
            raise ValueError("tls_context given for a plain mqtt:// URL; use mqtts://")
        if ca_file is not None and not self.address.tls:
            raise ValueError("ca_file given for a plain mqtt:// URL; use mqtts://")
        self._tls: ssl.SSLContext | None = None
        if self.address.tls:
            self._tls = tls_context or ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if will is not None:
            w_topic, w_payload, w_qos, w_retain = will
            check_topic(w_topic)
            if w_qos not in (0, 1, 2):
                raise ValueError("the will's qos must be 0, 1 or 2")
            will = (w_topic, bytes(w_payload), w_qos, bool(w_retain))
        if will is not None and on_session is not None:
            raise ValueError("give either a fixed will or on_session (which supplies a will per connection)")
        self.will = will
        self.on_session = on_session
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_inflight = max_inflight

        self._outbox: Outbox | None = None
        if outbox_path is not None:
            self._outbox = Outbox(outbox_path, max_messages=outbox_max_messages, max_bytes=outbox_max_bytes,
                                  durable=outbox_durable)
        self._cond = threading.Condition()
        self._last_put = self._outbox.last_id() if self._outbox is not None else 0
        self._subs: dict[str, _Subscription] = {}
        self._sub_list: tuple[_Subscription, ...] = ()  # copy-on-write, read lock-free by the dispatcher
        # topic -> matching subscriptions, valid for one _sub_list (only the network thread touches it)
        self._routes: tuple[tuple[_Subscription, ...], dict[str, tuple[_Subscription, ...]]] = ((), {})
        self._session: _Session | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._accepting = True
        self._closed = False
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._stats = {
            "queued": 0, "sent": 0, "acked": 0, "received": 0, "handler_errors": 0,
            "connects": 0, "connect_failures": 0, "qos0_sent": 0, "qos0_dropped": 0,
        }

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> BusClient:
        """Start connecting (in the background; see ``wait_connected``). Returns self."""
        with self._cond:
            if self._closed or not self._accepting:
                raise BusClosed()
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=f"depai-bus-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking messages, try to drain the outbox for up to ``timeout`` s, disconnect, close the outbox.

        What is still in the outbox stays on disk for the next client on the same file.
        Called from a handler, it does not wait (the drain would need this very thread).
        """
        with self._cond:
            if self._closed:
                return
            self._accepting = False
            thread = self._thread
        in_callback = getattr(self._local, "in_callback", False)
        if thread is not None and not in_callback and timeout > 0:
            self.wait_drained(timeout)
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if thread is None:
            if self._outbox is not None:
                self._outbox.close()
            return
        if not in_callback:
            thread.join(self.connect_timeout + 5.0)
            if thread.is_alive():
                log.warning("bus client %s: the connection thread did not stop in time", self.client_id)

    def __enter__(self) -> BusClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- state ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is up (CONNACK accepted, not yet lost)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; False on timeout."""
        return self._connected.wait(timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the outbox is empty (every QoS 1 message acknowledged by the broker); False on timeout."""
        if self._outbox is None:
            return True
        outbox = self._outbox
        with self._cond:
            self._cond.wait_for(lambda: outbox.closed or len(outbox) == 0, timeout)
            return len(outbox) == 0

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until the broker answered every remembered subscription on the current connection.

        True if all were granted; False on timeout or if the broker refused one (that is logged).
        """
        def answered() -> bool:
            session = self._session
            return (session is not None and session.up and not session.dead
                    and all(f in session.granted or f in session.refused for f in self._subs))

        with self._cond:
            if not self._cond.wait_for(answered, timeout):
                return False
            session = self._session
            return session is not None and not (session.refused & set(self._subs))

    @property
    def pending(self) -> int:
        """Messages in the outbox (waiting to be sent, or sent and not yet acknowledged)."""
        return len(self._outbox) if self._outbox is not None else 0  # after close: what stays on disk

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    def stats(self) -> dict[str, int]:
        """Counters: queued, sent, acked, received, handler_errors, connects, connect_failures, qos0_*."""
        with self._cond:
            return dict(self._stats, pending=self.pending)

    # --- publishing ----------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Publish; for QoS 1 the message is in the outbox when this returns, and its outbox id is returned.

        Raises OutboxFull (nothing stored) when the outbox is at its bounds, BusClosed after ``close()``.
        QoS 0 returns None; it is discarded when not connected.
        """
        return self._publish([(topic, payload, qos, retain)])[0]

    def publish_many(self, messages: Iterable[tuple[str, bytes, int, bool]]) -> list[int | None]:
        """Publish ``(topic, payload, qos, retain)`` messages, QoS 1 ones stored in one outbox transaction."""
        return self._publish(list(messages))

    def _publish(self, messages: list[tuple[str, bytes, int, bool]]) -> list[int | None]:
        checked = []
        for topic, payload, qos, retain in messages:
            check_topic(topic)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
            if qos not in (0, 1):
                raise ValueError(f"qos must be 0 or 1, got {qos!r}: {_NO_QOS2}")
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"payload of {len(payload)} bytes exceeds MQTT's {MAX_PAYLOAD_BYTES}")
            checked.append((topic, bytes(payload), qos, bool(retain)))
        if not self._accepting:
            raise BusClosed()
        stored = [m for m in checked if m[2] > 0]
        ids: list[int] = []
        if stored:
            if self._outbox is None:
                raise BusError(
                    f"bus client {self.client_id} has no outbox, so it cannot publish at QoS {stored[0][2]}",
                    code="no_outbox",
                    hint="pass outbox_path= to BusClient, or publish at qos=0",
                )
            try:
                ids = self._outbox.put_many(stored)
            except OutboxError as err:
                if self._outbox.closed:
                    raise BusClosed() from err
                raise
            with self._cond:
                self._last_put = max(self._last_put, ids[-1])
                self._stats["queued"] += len(ids)
                self._cond.notify_all()
        result: list[int | None] = []
        stored_ids = iter(ids)
        for topic, payload, qos, retain in checked:
            if qos > 0:
                result.append(next(stored_ids))
            else:
                self._publish_qos0(topic, payload, retain)
                result.append(None)
        return result

    def _publish_qos0(self, topic: str, payload: bytes, retain: bool) -> None:
        session = self._session
        client = session.client if session is not None and session.up and not session.dead else None
        sent = False
        if client is not None:
            sent = client.publish(topic, payload, 0, retain).rc == mqtt.MQTT_ERR_SUCCESS
        with self._cond:
            self._stats["qos0_sent" if sent else "qos0_dropped"] += 1

    # --- subscribing ---------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``handler(topic, payload)``, now and after every reconnect.

        Subscribing the same filter again replaces its handler and QoS.
        """
        levels = split_filter(topic_filter)
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {qos!r}: {_NO_QOS2}")
        if not callable(handler):
            raise TypeError("handler must be callable as handler(topic: str, payload: bytes)")
        with self._cond:
            if self._closed:
                raise BusClosed()
            self._subs[topic_filter] = _Subscription(topic_filter, levels, handler, qos)
            self._sub_list = tuple(self._subs.values())
            session = self._session
            live = session is not None and session.up and not session.dead
            if live:
                session.granted.discard(topic_filter)
                session.refused.discard(topic_filter)
        if live:
            self._send_subscribe(session, topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> None:
        """Forget a subscription (and tell the broker, if connected)."""
        with self._cond:
            if self._subs.pop(topic_filter, None) is None:
                return
            self._sub_list = tuple(self._subs.values())
            session = self._session
            client = session.client if session is not None and session.up and not session.dead else None
        if client is not None:
            client.unsubscribe(topic_filter)

    def _send_subscribe(self, session: _Session, topic_filter: str, qos: int) -> None:
        client = session.client
        if client is None:
            return  # the connection ended meanwhile: the next one subscribes again
        rc, mid = client.subscribe(topic_filter, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return  # not connected any more: the next connection subscribes again
        with self._cond:
            granted = session.early_subacks.pop(mid, None)
            if granted is None:
                session.sub_mids[mid] = topic_filter
            else:
                self._record_suback(session, topic_filter, granted)

    def _record_suback(self, session: _Session, topic_filter: str, granted: bool) -> None:
        (session.granted if granted else session.refused).add(topic_filter)
        if not granted:
            log.error("broker %s refused the subscription %r (shared subscriptions and ACLs are broker-specific)",
                      self.address.display, topic_filter)
        self._cond.notify_all()

    # --- the connection thread -------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                session = _Session()
                with self._cond:
                    self._session = session
                try:
                    self._connect(session, failures)
                    if session.up:
                        if failures:
                            log.info("bus client %s: connected after %d failed attempts", self.client_id, failures)
                        failures = 0
                        self._pump(session)
                except Exception:
                    log.exception("bus client %s: unexpected error in the connection thread", self.client_id)
                finally:
                    self._teardown(session)
                if self._stop.is_set():
                    break
                if not session.up:
                    failures += 1
                delay = min(self.max_reconnect_delay, self.min_reconnect_delay * 2 ** max(0, failures - 1))
                self._stop.wait(delay * random.uniform(0.75, 1.0))  # jitter: a fleet does not reconnect in step
        finally:
            with self._cond:
                self._connected.clear()
                self._cond.notify_all()
            if self._outbox is not None:
                self._outbox.close()

    def _new_client(self, session: _Session) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=self.clean_session,
            userdata=session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,  # this class reconnects, with a fresh Client per connection
        )
        client.enable_logger(_paho_log)  # type: ignore[arg-type]
        client.suppress_exceptions = True
        client.connect_timeout = self.connect_timeout
        client.max_inflight_messages_set(self.max_inflight)
        if self.username is not None:
            client.username_pw_set(self.username, self._password)
        if self._tls is not None:
            session.tls = _TrackedTLS(self._tls)
            client.tls_set_context(session.tls)  # type: ignore[arg-type]
        will = self.will
        if self.on_session is not None:
            will, session.greeting = self.on_session()
        if will is not None:
            client.will_set(*will)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect(self, session: _Session, failures: int) -> None:
        """Open one connection and wait for its CONNACK (session.up) or its end (session.dead)."""
        client = self._new_client(session)
        session.client = client
        try:
            client.connect(self.address.host, self.address.port, keepalive=self.keepalive)
        except (OSError, ValueError) as err:
            session.dead = True
            if session.tls is not None:
                session.tls.close_all()
            with self._cond:
                self._stats["connect_failures"] += 1
            # The first failure of an outage is a warning; the retries that follow are routine.
            log.log(logging.DEBUG if failures else logging.WARNING, "bus client %s: cannot reach %s: %s; retrying",
                    self.client_id, self.address.display, err)
            return
        client.loop_start()
        with self._cond:
            ok = self._cond.wait_for(lambda: session.up or session.dead or self._stop.is_set(),
                                     self.connect_timeout)
        if not ok:
            log.warning("bus client %s: no CONNACK from %s within %.1f s", self.client_id,
                        self.address.display, self.connect_timeout)

    def _greet(self, session: _Session) -> None:
        """Send the connection's greeting (a machine's birth) before any outbox entry.

        Not through the outbox: if this connection drops before the PUBACK, the next
        one calls ``on_session`` again and greets with a fresh birth.
        """
        client = session.client
        for topic, payload, qos, retain in session.greeting:
            mid = client.publish(topic, payload, qos, retain).mid
            with self._cond:
                if mid in session.early:
                    session.early.discard(mid)
                else:
                    session.greeting_mids.add(mid)

    def _pump(self, session: _Session) -> None:
        """Hand outbox entries to paho in id order, at most max_inflight unacked; delete acked ones in batches.

        Sending comes first: acknowledged ids are deleted ``ACK_BATCH`` at a time, or as soon as there
        is nothing to send (so ``wait_drained`` returns promptly). An ack not yet deleted when the
        process dies only means that message is sent once more. The window is refilled a quarter at
        a time, so a steady stream costs one outbox query per ``max_inflight / 4`` messages.
        """
        client = session.client
        self._greet(session)
        outbox = self._outbox
        refill = max(1, self.max_inflight // 4)
        last = 0  # the highest outbox id handed to paho on this connection
        while True:
            with self._cond:
                while True:
                    if self._stop.is_set() or session.dead:
                        return
                    room = self.max_inflight - len(session.inflight)
                    unsent = self._last_put - last  # ids above `last`: an upper bound of what is unsent
                    can_send = outbox is not None and unsent > 0 and room >= min(refill, unsent)
                    if len(session.acked) >= ACK_BATCH or (session.acked and not can_send):
                        acked, session.acked = session.acked, []
                        break
                    if can_send:
                        acked = []
                        break
                    self._cond.wait(1.0)
                target = self._last_put
            if acked:
                self._delete(acked)
            if not can_send or outbox is None:
                continue
            batch = outbox.pending(room, after=last)
            if not batch:
                last = max(last, target)  # everything up to target was acked before we looked
                continue
            for entry in batch:
                if session.dead or self._stop.is_set():
                    return
                self._send(session, client, entry)
                last = entry.id

    def _send(self, session: _Session, client: Any, entry: OutboxEntry) -> None:
        try:
            info = client.publish(entry.topic, entry.payload, entry.qos, entry.retain)
        except ValueError as err:  # cannot ever be sent (stored by older code?): keeping it would block all
            log.error("bus client %s: dropping outbox entry %d on %r, which MQTT cannot carry: %s",
                      self.client_id, entry.id, entry.topic, err)
            with self._cond:
                session.acked.append(entry.id)
            return
        with self._cond:
            self._stats["sent"] += 1
            if info.mid in session.early:
                session.acked.append(entry.id)
            else:
                session.inflight[info.mid] = entry.id
            # Only this thread publishes at QoS 1, one message at a time, and every earlier one is in
            # `inflight` already; so any other mid in `early` came from a QoS 0 publish (paho reports
            # those too) and must not linger to match a QoS 1 message once the 16-bit mids wrap.
            session.early.clear()

    def _delete(self, ids: list[int]) -> None:
        assert self._outbox is not None
        self._outbox.ack_many(ids)
        with self._cond:
            self._stats["acked"] += len(ids)
            self._cond.notify_all()

    def _teardown(self, session: _Session) -> None:
        client = session.client
        if client is not None:
            if not session.dead:
                client.disconnect()
            try:
                client.loop_stop()
            except AttributeError:  # paho's thread ended by itself and cleared its handle meanwhile
                pass
        with self._cond:
            session.dead = True
            session.client = None  # paho's client and this session hold each other: let both go now, sockets and all
            acked, session.acked = session.acked, []
            if self._session is session:
                self._connected.clear()
            unacked = len(session.inflight)
            session.inflight.clear()
        if acked and self._outbox is not None and not self._outbox.closed:
            self._delete(acked)
        if session.up and unacked:
            log.info("bus client %s: %d messages were in flight; they will be sent again", self.client_id, unacked)

    # --- paho callbacks (paho's network thread; they must never raise) ---------------------------------

    def _on_connect(self, client: mqtt.Client, session: _Session, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            hint = " (check the username and password)" if reason.value in (4, 5, 134, 135) else ""
            log.error("bus client %s: %s refused the connection: %s%s", self.client_id,
                      self.address.display, reason, hint)
            return
        with self._cond:
            session.up = True
            subs = list(self._subs.values())
            self._stats["connects"] += 1
        log.info("bus client %s: connected to %s (session present: %s)", self.client_id,
                 self.address.display, flags.session_present)
        for sub in subs:
            self._send_subscribe(session, sub.filter, sub.qos)
        with self._cond:
            if not session.dead:
                self._connected.set()
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, session: _Session, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            was_up = session.up and not session.dead
            session.dead = True
            if self._session is session:
                self._connected.clear()
            self._cond.notify_all()
        if was_up and not self._stop.is_set():
            log.warning("bus client %s: lost the connection to %s (%s); reconnecting", self.client_id,
                        self.address.display, reason)

    def _on_publish(self, client: mqtt.Client, session: _Session, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            if mid in session.greeting_mids:
                session.greeting_mids.discard(mid)
                self._cond.notify_all()
                return
            entry_id = session.inflight.pop(mid, None)
            if entry_id is None:
                session.early.add(mid)  # the sender records the mid right after publish() returns
            else:
                session.acked.append(entry_id)
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, session: _Session, mid: int, reasons: list[Any],
                      properties: Any) -> None:
        granted = all(not r.is_failure for r in reasons)
        with self._cond:
            topic_filter = session.sub_mids.pop(mid, None)
            if topic_filter is None:
                session.early_subacks[mid] = granted
            else:
                self._record_suback(session, topic_filter, granted)

    def _route(self, topic: str) -> tuple[_Subscription, ...]:
        """The subscriptions whose filters match ``topic``, cached per topic until the subscriptions change.

        A fleet's topics repeat (a few per machine), so after the first message on a
        topic dispatch is one dict lookup instead of matching every filter (an ingest
        worker holds dozens). The cache is bounded, so a flood of new topics costs
        matching time, not memory.
        """
        subs = self._sub_list
        owner, cache = self._routes
        if owner is not subs:
            cache = {}
            self._routes = (subs, cache)
        matching = cache.get(topic)
        if matching is None:
            matching = tuple(sub for sub in subs if filter_matches(sub.levels, topic))
            if len(cache) < ROUTE_CACHE_SIZE:
                cache[topic] = matching
        return matching

    def _on_message(self, client: mqtt.Client, session: _Session, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("bus client %s: dropped a message whose topic is not UTF-8", self.client_id)
            return
        payload = message.payload
        self._stats["received"] += 1  # only this thread writes it
        matching = self._route(topic)
        self._local.in_callback = True
        try:
            for sub in matching:
                try:
                    sub.handler(topic, payload)
                except Exception:
                    self._stats["handler_errors"] += 1
                    log.exception("bus client %s: the handler for %r failed on a message on %r",
                                  self.client_id, sub.filter, topic)
        finally:
            self._local.in_callback = False
        if not matching:
            log.debug("bus client %s: no handler for a message on %r", self.client_id, topic)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "disconnected"
        return f"<BusClient {self.client_id} {self.address.display} {state}, {self.pending} pending>"
