"""Verified messages per second end to end (publish, broker, verify, consumer), beside their baselines.

Run:  python benchmarks/bus.py [--messages N] [--rounds R] [--brokers mosquitto,amqtt]
                               [--robots N] [--rate MSG_PER_S] [--latency-seconds S]

For each broker kind, each round measures on the same pre-signed telemetry
envelopes of a registered fleet (its retained births published first):

  raw verify   PyNaCl ``VerifyKey.verify`` of the same canonical bytes, in this process
  ingest       ``Ingest.handle`` on the same messages in this process: every check, no MQTT
  raw broker   the messages through the broker at QoS 1 to a plain paho subscriber process
               (one wildcard filter) that only counts: no verification, no BusClient
  BusClient    the same to a ``BusClient`` subscriber process with exactly the subscriptions of
               one ingest worker (7 channels x 16 partitions), counting only: a worker's transport
  1 worker     end to end: one ingest worker process started by ``start_worker_processes``
               (spawn); every message verified and checked, then handed to a consumer that counts
  2 workers    the same with two worker processes, each owning 8 of the 16 partitions

How a throughput figure is taken. Signing is not what is measured, and on two
cores a publisher would take CPU from the broker and the workers, so the broker
is loaded first: the subscriber processes connect and take the retained births
(the ingest refuses telemetry before a birth: the benchmark waits until every
worker has accepted every birth of its partitions), then each one blocks inside
its consumer on its first telemetry message. The publisher sends all N messages
at QoS 1 and waits until the broker has acknowledged every one; the broker now
holds them queued for the paused subscribers. The subscribers are released
together, and the figure is the messages handled after the release divided by
the time from the release to the last one handled (CLOCK_MONOTONIC, one clock
for all processes). It is the rate at which a backlog is drained (broker
delivery, MQTT client, verification and consumer) with the cores shared by the
broker and the subscribers only; the publisher's cost and the broker's intake
are not in it.

Every measurement gets a fresh broker and fresh processes, so the same signed
bytes are new to each (fresh replay windows, rate buckets and sessions). The
brokers run with ``persistence=False``: Mosquitto's 1 s autosave would rewrite
its whole state, here the entire queued backlog, which a broker that keeps up
never holds (amqtt never persists). Every message must be accepted: the consumer
counts only what the ingest hands over, each worker counts the ingest's refusals
and errors through its logger, and any refusal, loss or duplicate fails the run.

Latency, in every round: with one worker, messages are published at a fixed offered
load (``--rate``) for ``--latency-seconds``, signed beforehand; a message's latency is
the time from just before ``BusClient.publish`` (outbox, sender thread, broker,
worker, verification) to the consumer's call, matched by (issuer, seq) through a
queue.

Figures are medians over rounds, and ratios compare them with baselines of the
same run. Goals (issue #3): one worker >= 0.70 of the raw verify rate; two
workers >= 1.6x one worker.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/bus.py``: this file's directory is first on sys.path,
    # where this very module would shadow the ``bus`` package.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import paho.mqtt.client as mqtt  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bus.broker import BrokerConfig, RunningBroker, mosquitto_binary, start_broker  # noqa: E402
from bus.client import BusClient, parse_broker_url  # noqa: E402
from bus.ingest import Consumer, Ingest  # noqa: E402
from bus.session import MachineSession  # noqa: E402
from bus.topics import ROBOTS, partition_of, topic_root  # noqa: E402
from bus.worker import assign_partitions, start_worker_processes, worker_filters  # noqa: E402
from identity.did import did_peaq  # noqa: E402
from identity.document import MachineProfile  # noqa: E402
from identity.envelope import Envelope, EnvelopeSigner  # noqa: E402
from identity.keys import Signer  # noqa: E402
from identity.lifecycle import create_identity  # noqa: E402
from identity.registry import DidRegistry  # noqa: E402

PROFILE = MachineProfile("courier", [], 2.0, 10.0)
# Envelopes are signed once per round and used by every measurement of it, on
# both brokers, so they must outlive the round; the verifier accepts up to 3600 s.
ENVELOPE_TTL_S = 900.0
# The ingest's default per-robot rate limit (start_worker_processes keeps the defaults): a burst of
# 100 messages, then 50 a second. A measurement stays within the burst, so its speed cannot trip it.
INGEST_BURST, INGEST_RATE = 100, 50.0
MAX_WORKERS = 2
STALL_S = 20.0  # no progress for this long: the measurement fails
_BIRTHS, _TELEMETRY, _REFUSED, _ERRORS = range(4)
_FIELDS = 4


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- shared counters, and what runs inside the subscriber processes -----------------------------
# Everything below until the next section is imported by the spawned processes: keep it at module level.

class Tally:
    """Counters the subscriber processes write and this process reads: one slot per subscriber.

    Each slot is written by one process only, so the raw shared arrays need no lock (aligned
    8-byte stores). Times are ``time.monotonic()``: CLOCK_MONOTONIC, the same in every process.
    """

    def __init__(self, context: Any, slots: int = MAX_WORKERS) -> None:
        self.slots = slots
        self.counts = context.RawArray("q", slots * _FIELDS)
        self.last = context.RawArray("d", slots)
        self.go = context.Event()
        self.refusals = context.Queue()  # the first few refusals, for the error message

    def get(self, slot: int, what: int) -> int:
        return int(self.counts[slot * _FIELDS + what])

    def total(self, what: int) -> int:
        return sum(self.get(slot, what) for slot in range(self.slots))

    def last_handled(self) -> float:
        return max(self.last)


class Counter:
    """The consumer: counts births and telemetry, optionally pauses at the first telemetry or reports latency."""

    def __init__(self, tally: Tally, slot: int, *, gated: bool, latency: Any = None) -> None:
        self.counts, self.last, self.go = tally.counts, tally.last, tally.go
        self.births = slot * _FIELDS + _BIRTHS
        self.telemetry = slot * _FIELDS + _TELEMETRY
        self.slot = slot
        self.waiting = gated
        self.latency = latency

    def __call__(self, topic: str, envelope: Envelope) -> None:
        if envelope.kind == "telemetry":
            self.tick()
            if self.latency is not None:
                self.latency.put((envelope.issuer, envelope.seq, time.monotonic()))
        elif envelope.kind == "birth":
            self.counts[self.births] += 1

    def tick(self) -> None:
        self.counts[self.telemetry] += 1
        self.last[self.slot] = time.monotonic()
        if self.waiting:  # the first one: hold the connection until the broker holds the whole backlog
            self.waiting = False
            self.go.wait(600)

    def on_message(self, topic: str, payload: bytes) -> None:
        """As a plain BusClient handler: count by topic, verify nothing."""
        if topic.endswith("/telemetry"):
            self.tick()
        elif topic.endswith("/birth"):
            self.counts[self.births] += 1


class RefusalCounter(logging.Handler):
    """Counts what the ingest refuses (its DEBUG "refused ..." line) and every error it logs, per worker."""

    def __init__(self, tally: Tally, slot: int) -> None:
        super().__init__(logging.DEBUG)
        self.counts, self.refusals = tally.counts, tally.refusals
        self.refused = slot * _FIELDS + _REFUSED
        self.errors = slot * _FIELDS + _ERRORS

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            print(f"{record.name}: {record.getMessage()}", file=sys.stderr, flush=True)
        if record.levelno >= logging.ERROR:
            self.counts[self.errors] += 1
        elif record.name == "depai.bus.ingest" and str(record.msg).startswith("refused "):
            self.counts[self.refused] += 1
        else:
            return
        if self.counts[self.refused] + self.counts[self.errors] <= 5:
            self.refusals.put(record.getMessage()[:300])


def _quiet_child() -> None:
    """In a subscriber process: Ctrl-C is the parent's to handle (it stops us through an event)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ConsumerFactory:
    """What ``start_worker_processes`` calls in each worker: a Counter on that worker's slot."""

    def __init__(self, tally: Tally, *, gated: bool, latency: Any = None) -> None:
        self.tally, self.gated, self.latency = tally, gated, latency

    def __call__(self, index: int) -> Consumer:
        _quiet_child()
        logging.getLogger("depai.bus.ingest").setLevel(logging.DEBUG)  # its refusals are DEBUG lines
        logging.getLogger("depai.bus").addHandler(RefusalCounter(self.tally, index))
        return Counter(self.tally, index, gated=self.gated, latency=self.latency)


def run_paho_subscriber(url: str, tally: Tally, ready: Any, stop: Any) -> None:
    """Body of the raw-broker subscriber process: a plain paho client, one wildcard filter, counting only."""
    _quiet_child()
    counter = Counter(tally, 0, gated=True)
    address = parse_broker_url(url)
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="depai-bench-paho", protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, userdata, flags, reason, properties: c.subscribe(f"{ROBOTS}/#", 1)
    client.on_subscribe = lambda c, userdata, mid, reasons, properties: subscribed.set()
    client.on_message = lambda c, userdata, message: counter.on_message(message.topic, message.payload)
    client.connect(address.host, address.port, keepalive=60)
    client.loop_start()
    try:
        if subscribed.wait(30):
            ready.set()
            stop.wait()
    finally:
        client.disconnect()
        client.loop_stop()


def run_busclient_subscriber(url: str, tally: Tally, filters: list[str], ready: Any, stop: Any) -> None:
    """Body of the transport-only subscriber process: a BusClient with a worker's subscriptions, counting only."""
    _quiet_child()
    counter = Counter(tally, 0, gated=True)
    client = BusClient(url, client_id="depai-bench-busclient")
    try:
        for topic_filter in filters:
            client.subscribe(topic_filter, counter.on_message)
        client.start()
        if client.wait_subscribed(30):
            ready.set()
            stop.wait()
    finally:
        client.close(timeout=0)


# --- the fleet and its messages ------------------------------------------------------------------

@dataclass
class Robot:
    """A registered robot: its session (signer, topic root), and its key for the raw baseline."""

    session: MachineSession
    raw_key: SigningKey
    birth: tuple[str, bytes]
    step: int = 0
    last_t: int = 0

    @property
    def did(self) -> str:
        return self.session.signer.did


@dataclass
class Batch:
    """One round's pre-signed telemetry: (topic, payload) in publishing order, and who signed each."""

    messages: list[tuple[str, bytes]]
    robots: list[Robot]
    seqs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def payload_bytes(self) -> float:
        return statistics.fmean(len(p) for _, p in self.messages)


def build_fleet(registry: DidRegistry, count: int) -> list[Robot]:
    """``count`` registered robots, half of them in even partitions and half in odd ones.

    Worker i of 2 owns the partitions p with p % 2 == i, so a 2-worker run splits the load
    evenly, as it does (within a few percent, by the DID hash) in a fleet of thousands.
    """
    quota = [math.ceil(count / 2), count // 2]
    robots: list[Robot] = []
    while len(robots) < count:
        key = Signer.generate()
        parity = partition_of(did_peaq(key.public_key)) % 2
        if quota[parity] == 0:
            continue
        quota[parity] -= 1
        did = create_identity(registry, key, machine=PROFILE).did
        session = MachineSession(EnvelopeSigner(key, did, ttl_s=ENVELOPE_TTL_S), topic_root(did),
                                 registry.resolve(did).document)
        birth = session.birth()
        robots.append(Robot(session, SigningKey(key.seed), (birth.topic, birth.payload)))
    return robots


def sign_telemetry(robots: list[Robot], count: int) -> Batch:
    """``count`` telemetry envelopes, round robin over the robots, each sample timed at its signing."""
    batch = Batch([], robots)
    while len(batch.messages) < count:
        for robot in robots:
            if len(batch.messages) == count:
                break
            robot.step += 1
            robot.last_t = max(int(time.time() * 1000), robot.last_t + 1)  # samples advance, near iat
            body = {"t": robot.last_t, "pose": {"x": 0.001 * robot.step, "y": 0.0, "theta": 0.0},
                    "twist": {"v": 0.1, "w": 0.0}, "battery": 0.9, "odometer_m": 0.001 * robot.step}
            seq = robot.session.signer.sequencer.next()
            payload = robot.session.signer.seal("telemetry", body, seq=seq)
            batch.messages.append((f"{robot.session.topic_root}/telemetry", payload))
            batch.seqs.append((robot.did, seq))
    return batch


# --- measurements ---------------------------------------------------------------------------------

def rate(operation: Callable[[int], object], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - start)


def raw_verify_rate(batch: Batch) -> float:
    """PyNaCl verify per second over the same canonical bytes (as benchmarks/envelope.py does)."""
    by_did = {robot.did: robot for robot in batch.robots}
    signed = []
    for (did, _), (_, wire) in zip(batch.seqs, batch.messages, strict=True):
        robot = by_did[did]
        signed.append((robot.raw_key.verify_key, robot.raw_key.sign(wire[: wire.rindex(b',"sig":')] + b"}")))
    return rate(lambda i: signed[i][0].verify(signed[i][1]), len(signed))


def ingest_rate(registry: DidRegistry, batch: Batch) -> float:
    """``Ingest.handle`` per second in this process, births first (not timed); every message must pass."""
    accepted: list[int] = [0]

    def consumer(topic: str, envelope: Envelope) -> None:
        accepted[0] += 1

    ingest = Ingest(registry, consumer)
    for topic, payload in (robot.birth for robot in batch.robots):
        ingest.handle(topic, payload)
    messages = batch.messages
    result = rate(lambda i: ingest.handle(*messages[i]), len(messages))
    refused = ingest.metrics.total("depai_ingest_refused_total")
    if refused or accepted[0] != len(batch.robots) + len(messages):
        reasons = sorted({entry.reason for entry in ingest.quarantine.entries()})
        raise RuntimeError(f"in-process ingest refused {refused} messages ({', '.join(reasons)})")
    return result


@dataclass
class Drain:
    """One drained backlog: messages handled after the release, over the time to the last one."""

    rate: float
    cpu: dict[str, float]  # share of one core used during the drain, by process role


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Measurement:
    """A fresh broker with the fleet's retained births on it, a publisher and subscriber processes.

    Whatever happens (an error, Ctrl-C), leaving it stops the subscribers, the publisher and the broker.
    """

    def __init__(self, setup: Setup, name: str) -> None:
        self.setup, self.kind, self.name = setup, setup.kind, name
        self.directory = setup.directory / name
        self.stack = contextlib.ExitStack()
        self.context = multiprocessing.get_context("spawn")
        self.broker: RunningBroker | None = None
        self.publisher: BusClient | None = None
        self.processes: list[multiprocessing.Process] = []

    def __enter__(self) -> Measurement:
        try:
            # persistence=False: what is measured is the broker's delivery path. With Mosquitto's
            # persistence on, its 1 s autosave would rewrite the whole state, here the entire
            # queued backlog, which a broker keeping up never holds; amqtt never persists anyway.
            self.broker = self.stack.enter_context(
                start_broker(self.kind, BrokerConfig(data_dir=self.directory / "broker", persistence=False)))
            self.publisher = BusClient(self.broker.url, client_id=f"depai-bench-publisher-{self.name}",
                                       outbox_path=self.directory / "outbox.sqlite3")
            self.stack.callback(self.publisher.close, 2.0)
            self.publisher.start()
            if not self.publisher.wait_connected(15):
                raise RuntimeError(f"the publisher could not connect to {self.broker.url}")
            self.publish([(topic, payload, 1, True) for topic, payload in (r.birth for r in self.setup.robots)])
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def publish(self, messages: list[tuple[str, bytes, int, bool]], chunk: int = 2000) -> None:
        """Publish at QoS 1 and wait until the broker acknowledged every message."""
        assert self.publisher is not None
        for start in range(0, len(messages), chunk):
            self.publisher.publish_many(messages[start:start + chunk])
        deadline = time.monotonic() + 30 + len(messages) / 500
        while not self.publisher.wait_drained(0.5):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.kind} broker did not acknowledge {self.publisher.pending} messages")

    def own(self, processes: list[multiprocessing.Process], stop: Any, tally: Tally) -> None:
        """Stop ``processes`` (through ``stop``, then by force) when the measurement ends."""
        self.processes += processes

        def finish() -> None:
            tally.go.set()  # a subscriber still paused at its first message could not stop
            stop.set()
            for process in processes:
                process.join(10)
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()

        self.stack.callback(finish)

    def start_workers(self, workers: int, factory: ConsumerFactory) -> None:
        """Ingest worker processes, by ``start_worker_processes`` (spawn), subscribed when this returns."""
        assert self.broker is not None
        try:
            processes, stop = start_worker_processes(self.broker.url, self.setup.registry_path, workers, factory,
                                                     timeout=60)
        except BaseException:
            _reap_children("depai-ingest-")  # start_worker_processes does not hand them back when it fails
            raise
        self.own(processes, stop, factory.tally)

    def start_subscriber(self, target: Callable[..., None], tally: Tally, *args: Any) -> None:
        """A counting subscriber process running ``target(url, tally, *args, ready, stop)``, subscribed on return."""
        assert self.broker is not None
        ready, stop = self.context.Event(), self.context.Event()
        process = self.context.Process(target=target, name=f"depai-bench-{target.__name__}", daemon=True,
                                       args=(self.broker.url, tally, *args, ready, stop))
        process.start()
        self.own([process], stop, tally)
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{process.name} did not subscribe within 60 s")

    def check_alive(self) -> None:
        if self.broker is not None and not self.broker.running:
            raise RuntimeError(f"the {self.kind} broker died; its log ends:\n{self.broker.log_tail(10)}")
        for process in self.processes:
            if not process.is_alive():
                raise RuntimeError(f"{process.name} exited with status {process.exitcode}")

    def wait_for(self, tally: Tally, what: int, targets: list[int], label: str) -> None:
        """Wait until every slot counted its target of ``what``; fail on refusals, errors, deaths or a stall."""
        seen, changed = -1, time.monotonic()
        while True:
            counts = [tally.get(slot, what) for slot in range(len(targets))]
            refused, errors = tally.total(_REFUSED), tally.total(_ERRORS)
            if refused or errors:
                raise RuntimeError(f"{self.name}: {refused} messages refused and {errors} errors logged while "
                                   f"waiting for {label}; the first: {_drain_queue(tally.refusals)}")
            if all(c >= t for c, t in zip(counts, targets, strict=True)):
                if any(c > t for c, t in zip(counts, targets, strict=True)):
                    raise RuntimeError(f"{self.name}: {counts} {label} handled, expected {targets}: duplicates")
                return
            now = time.monotonic()
            if sum(counts) != seen:
                seen, changed = sum(counts), now
            elif now - changed > STALL_S:
                raise RuntimeError(f"{self.name}: stalled at {counts} {label} of {targets} for {STALL_S:g} s "
                                   "(lost, or refused without a log line)")
            self.check_alive()
            time.sleep(0.002)

    def drain(self, tally: Tally, batch: Batch, targets: list[int]) -> Drain:
        """Load the backlog while the subscribers are paused, release them, and time the drain."""
        self.publish([(topic, payload, 1, False) for topic, payload in batch.messages])
        time.sleep(0.2)  # let the broker settle after the burst of PUBACKs (its CPU is counted from here)
        roles = {"broker": [self.broker.pid] if self.broker else [],
                 "subscribers": [p.pid for p in self.processes if p.pid is not None]}
        before = {role: [_cpu_seconds(pid) for pid in pids] for role, pids in roles.items()}
        handled_before = tally.total(_TELEMETRY)
        start = time.monotonic()
        tally.go.set()
        self.wait_for(tally, _TELEMETRY, targets, "telemetry messages")
        wall = time.monotonic() - start
        cpu = {}
        for role, pids in roles.items():
            spent = [a - b for a, b in zip([_cpu_seconds(pid) for pid in pids], before[role], strict=True)
                     if a is not None and b is not None]
            if spent:
                cpu[role] = sum(spent) / wall
        # Each subscriber handled (and counted) its first message before the release, and held it.
        return Drain((sum(targets) - handled_before) / (tally.last_handled() - start), cpu)


def _drain_queue(queue: Any) -> list[str]:
    items: list[str] = []
    with contextlib.suppress(Exception):
        while len(items) < 5:
            items.append(queue.get(timeout=0.2))
    return items


def _reap_children(prefix: str) -> None:
    """Stop this process's own children named ``prefix``… (left behind by a failed start)."""
    for child in multiprocessing.active_children():
        if child.name.startswith(prefix):
            child.terminate()
            child.join(5)


@dataclass
class Setup:
    """What every measurement on one broker kind shares: the fleet, its registry, a scratch directory."""

    kind: str
    directory: Path
    registry_path: Path
    robots: list[Robot]
    filters: list[str]  # the subscriptions of a single ingest worker (all 16 partitions)


def owners(dids: list[str], workers: int) -> list[int]:
    """How many of ``dids`` (with repeats) fall in each worker's partitions."""
    owner = {p: index for index in range(workers) for p in assign_partitions(workers, index)}
    counts = [0] * workers
    for did in dids:
        counts[owner[partition_of(did)]] += 1
    return counts


def raw_broker(setup: Setup, batch: Batch, name: str) -> Drain:
    """Baseline: the broker to a plain paho subscriber (one wildcard filter) that only counts."""
    tally = Tally(multiprocessing.get_context("spawn"), 1)
    with Measurement(setup, name) as measurement:
        measurement.start_subscriber(run_paho_subscriber, tally)
        measurement.wait_for(tally, _BIRTHS, [len(setup.robots)], "births")
        return measurement.drain(tally, batch, [len(batch.messages)])


def busclient_only(setup: Setup, batch: Batch, name: str) -> Drain:
    """The transport of one worker without the ingest: a BusClient with its subscriptions, counting only."""
    tally = Tally(multiprocessing.get_context("spawn"), 1)
    with Measurement(setup, name) as measurement:
        measurement.start_subscriber(run_busclient_subscriber, tally, setup.filters)
        measurement.wait_for(tally, _BIRTHS, [len(setup.robots)], "births")
        return measurement.drain(tally, batch, [len(batch.messages)])


def end_to_end(setup: Setup, batch: Batch, workers: int, name: str) -> Drain:
    """Ingest worker processes: every message verified and checked, then counted by the consumer."""
    tally = Tally(multiprocessing.get_context("spawn"), workers)
    with Measurement(setup, name) as measurement:
        measurement.start_workers(workers, ConsumerFactory(tally, gated=True))
        measurement.wait_for(tally, _BIRTHS, owners([r.did for r in setup.robots], workers), "births")
        return measurement.drain(tally, batch, owners([did for did, _ in batch.seqs], workers))


@dataclass
class Latency:
    offered: float  # messages per second actually offered
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def latency(setup: Setup, per_second: float, seconds: float, name: str) -> Latency:
    """One worker; publish at ``per_second`` for ``seconds``; from just before publish to the consumer."""
    context = multiprocessing.get_context("spawn")
    tally = Tally(context, 1)
    reports = context.Queue()
    with Measurement(setup, name) as measurement:
        measurement.start_workers(1, ConsumerFactory(tally, gated=False, latency=reports))
        measurement.wait_for(tally, _BIRTHS, [len(setup.robots)], "births")
        batch = sign_telemetry(setup.robots, max(2, round(per_second * seconds)))
        publisher = measurement.publisher
        assert publisher is not None
        published: dict[tuple[str, int], float] = {}
        start = time.monotonic()
        for i, ((topic, payload), key) in enumerate(zip(batch.messages, batch.seqs, strict=True)):
            delay = start + i / per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            published[key] = time.monotonic()
            publisher.publish(topic, payload, 1, False)
        offered = (len(batch.messages) - 1) / (published[batch.seqs[-1]] - start)
        measurement.wait_for(tally, _TELEMETRY, [len(batch.messages)], "telemetry messages")
        received = [reports.get(timeout=10) for _ in batch.messages]
    delays = sorted((at - published[(issuer, seq)]) * 1000 for issuer, seq, at in received)
    return Latency(offered, len(delays), _percentile(delays, 50), _percentile(delays, 99), delays[-1])


def _percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- the run --------------------------------------------------------------------------------------

NAMES = {
    "raw_verify": "raw PyNaCl verify (same bytes, this process)",
    "ingest": "Ingest.handle in this process (no MQTT)",
    "raw_broker": "raw broker: QoS 1 to a plain paho subscriber, counting only",
    "busclient": "broker to a BusClient with one worker's subscriptions, counting only",
    "workers_1": "end to end, 1 worker process",
    "workers_2": "end to end, 2 worker processes",
}
DRAINS = ("raw_broker", "busclient", "workers_1", "workers_2")


@dataclass
class Results:
    rates: dict[str, dict[str, list[float]]]
    cpu: dict[str, dict[str, list[dict[str, float]]]]
    latency: dict[str, list[Latency]]
    payload_bytes: float
    filters: int


def run(args: argparse.Namespace, directory: Path) -> Results:
    """Every measurement, round after round, each round on every broker kind in turn."""
    brokers: list[str] = args.brokers
    rates: dict[str, dict[str, list[float]]] = {kind: {m: [] for m in NAMES} for kind in brokers}
    cpu: dict[str, dict[str, list[dict[str, float]]]] = {kind: {m: [] for m in DRAINS} for kind in brokers}
    latencies: dict[str, list[Latency]] = {kind: [] for kind in brokers}
    sizes = []
    registry_path = directory / "registry.sqlite3"
    with DidRegistry(registry_path) as registry:
        progress(f"registering {args.robots} robots")
        robots = build_fleet(registry, args.robots)
        filters = worker_filters(Ingest(registry, lambda topic, envelope: None), assign_partitions(1, 0),
                                 shared=False)
        setups = {kind: Setup(kind, directory, registry_path, robots, filters) for kind in brokers}
        for round_number in range(1, args.rounds + 1):
            batch = sign_telemetry(robots, args.messages)  # before anything is timed, used by every measurement
            sizes.append(batch.payload_bytes)
            for kind, setup in setups.items():
                tag = f"round {round_number}/{args.rounds}, {kind}"
                rates[kind]["raw_verify"].append(raw_verify_rate(batch))
                rates[kind]["ingest"].append(ingest_rate(registry, batch))
                progress(f"{tag}: raw verify {rates[kind]['raw_verify'][-1]:,.0f}/s, "
                         f"Ingest.handle {rates[kind]['ingest'][-1]:,.0f}/s")
                name = f"r{round_number}-{kind}"
                drains: dict[str, Callable[[], Drain]] = {
                    "raw_broker": partial(raw_broker, setup, batch, f"{name}-paho"),
                    "busclient": partial(busclient_only, setup, batch, f"{name}-busclient"),
                    "workers_1": partial(end_to_end, setup, batch, 1, f"{name}-w1"),
                    "workers_2": partial(end_to_end, setup, batch, 2, f"{name}-w2"),
                }
                for measure, measure_it in drains.items():
                    drain = measure_it()
                    rates[kind][measure].append(drain.rate)
                    cpu[kind][measure].append(drain.cpu)
                    busy = ", ".join(f"{role} {share:.0%}" for role, share in drain.cpu.items())
                    progress(f"{tag}: {NAMES[measure]}: {drain.rate:,.0f}/s (CPU, share of one core: {busy})")
                result = latency(setup, args.rate, args.latency_seconds, f"{name}-latency")
                latencies[kind].append(result)
                progress(f"{tag}: latency at {result.offered:,.0f} messages/s, 1 worker: p50 {result.p50_ms:.2f} ms, "
                         f"p99 {result.p99_ms:.2f} ms, max {result.max_ms:.2f} ms")
    return Results(rates, cpu, latencies, statistics.fmean(sizes), len(filters))


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}"


def _by_round(values: list[float], bases: list[float]) -> str:
    """The ratio of each round, to show how far the median ratio moves with the machine's noise."""
    return " ".join(f"{value / base:.2f}" for value, base in zip(values, bases, strict=True))


def report(results: Results, args: argparse.Namespace) -> str:
    """The figures as Markdown tables with ratios to the baselines of the same run, and the goals."""
    lines = [
        f"messages per measurement: {args.messages:,} telemetry envelopes (~{results.payload_bytes:.0f} bytes) "
        f"from {args.robots} robots, births first; rounds: {args.rounds} (medians); QoS 1; "
        f"brokers without persistence; {os.cpu_count()} CPUs",
        "",
        "| broker | measurement | messages/s | vs raw verify | vs raw broker | vs 1 worker |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for kind, measures in results.rates.items():
        median = {m: statistics.median(values) for m, values in measures.items()}
        for measure, label in NAMES.items():
            value = median[measure]
            cells = [
                _ratio(value, median["raw_verify"]),
                _ratio(value, median["raw_broker"]) if measure in DRAINS else "—",
                _ratio(value, median["workers_1"]) if measure.startswith("workers") else "—",
            ]
            lines.append(f"| {kind} | {label} | {value:,.0f} | {' | '.join(cells)} |")
        one = median["workers_1"] / median["raw_verify"]
        two = median["workers_2"] / median["workers_1"]
        one_by_round = _by_round(measures["workers_1"], measures["raw_verify"])
        two_by_round = _by_round(measures["workers_2"], measures["workers_1"])
        verdicts.append(f"{kind}: 1 worker >= 0.70 of raw verify: {'met' if one >= 0.70 else 'NOT met'} "
                        f"({one:.3f}; by round {one_by_round}); 2 workers >= 1.6x 1 worker: "
                        f"{'met' if two >= 1.6 else 'NOT met'} ({two:.3f}; by round {two_by_round})")
    lines += [
        "",
        "CPU while the backlog drains (medians; share of one core, summed over the processes):",
        "",
        "| broker | measurement | broker process | subscriber processes |",
        "|---|---|---:|---:|",
    ]
    for kind, measures in results.cpu.items():
        for measure in DRAINS:
            cells = []
            for role in ("broker", "subscribers"):
                values = [share[role] for share in measures[measure] if role in share]
                cells.append(f"{statistics.median(values):.0%}" if values else "—")
            lines.append(f"| {kind} | {NAMES[measure]} | {' | '.join(cells)} |")
    lines += [
        "",
        "Latency from just before BusClient.publish to the consumer, 1 worker (medians over rounds; max: the worst):",
        "",
        "| broker | offered load | messages per round | p50 ms | p99 ms | p99 ms by round | max ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, results_of_kind in results.latency.items():
        offered = statistics.median(r.offered for r in results_of_kind)
        p50 = statistics.median(r.p50_ms for r in results_of_kind)
        p99 = statistics.median(r.p99_ms for r in results_of_kind)
        by_round = " ".join(f"{r.p99_ms:.1f}" for r in results_of_kind)
        lines.append(f"| {kind} | {offered:,.0f}/s for {args.latency_seconds:g} s | {results_of_kind[0].count:,} | "
                     f"{p50:.2f} | {p99:.2f} | {by_round} | {max(r.max_ms for r in results_of_kind):.2f} |")
    return "\n".join([*lines, "", *verdicts])


def _brokers(text: str) -> list[str]:
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in ("mosquitto", "amqtt") for k in kinds):
        raise argparse.ArgumentTypeError("a comma-separated list of mosquitto and amqtt")
    return list(dict.fromkeys(kinds))


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: unwind, so that every broker and process is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables (progress goes to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="telemetry messages per measurement (10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--brokers", type=_brokers, default=["mosquitto", "amqtt"],
                        help="comma-separated broker kinds (default mosquitto,amqtt)")
    parser.add_argument("--robots", type=int, default=200, help="robots in the fleet (default 200)")
    parser.add_argument("--rate", type=float, default=500.0, help="offered load of the latency test, msg/s (500)")
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="length of the latency test (5 s)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1 or args.robots < 2 or args.rate <= 0 or args.latency_seconds <= 0:
        parser.error("--messages and --rounds must be >= 1, --robots >= 2, --rate and --latency-seconds > 0")
    if args.messages > INGEST_BURST * args.robots or args.rate > INGEST_RATE * args.robots:
        parser.error(f"the ingest lets each robot send a burst of {INGEST_BURST} messages, then {INGEST_RATE:g}/s: "
                     f"with {args.robots} robots use --messages <= {INGEST_BURST * args.robots} and "
                     f"--rate <= {INGEST_RATE * args.robots:g}, or more --robots")
    if "mosquitto" in args.brokers and mosquitto_binary() is None:
        parser.error("Mosquitto is not installed (apt-get install mosquitto); or pass --brokers amqtt")
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="depai-bench-bus-") as tmp:
            results = run(args, Path(tmp))
        progress(f"done in {time.monotonic() - started:.0f} s")
    except KeyboardInterrupt:
        print("interrupted: the brokers and processes it started are stopped", file=sys.stderr)
        return 130
    finally:
        if on_main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
