"""Ingest workers: one or several processes sharing the robots' stream, each owning whole partitions.

Robots publish under ``depai/v1/robots/{partition}/…`` (16 partitions, fixed by
each DID). Worker ``i`` of ``n`` owns the partitions ``p`` with ``p % n == i``,
so every robot's sequence window, session and motion state live in exactly one
process, and the stream is split across processes by the broker's own topic
matching.

By default each worker subscribes to its partitions with plain persistent
subscriptions: while a worker is down, the broker queues its partitions'
messages and nothing is lost. ``shared=True`` takes the data channels through
MQTT shared subscriptions instead (``$share/depai-ingest/…``, one group per
partition filter), so a standby process can join a group and take over at once;
but measured on Mosquitto 2.0, a shared subscription whose members are all
offline is not queued for (tests/bus/test_pipeline.py shows the plain default
losing nothing across a broker kill), so use it only with a standby always
connected. Births and deaths are plain subscriptions either way, because
brokers do not send retained messages to shared subscribers.

``state_path`` gives the worker a memory across restarts (bus/ingest.py): each
issuer's session and replay window, written in batches to one SQLite file per
worker, so a restarted worker refuses what it accepted before. Keep one file
per worker index and count (``ingest-{index}-of-{workers}.sqlite3``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bus.client import BusClient
from bus.frames import FrameError, unpack
from bus.ingest import Consumer, Ingest
from bus.metrics import serve_metrics
from bus.topics import PARTITIONS, gateway_filter
from identity.registry import DidRegistry

SHARE_GROUP = "depai-ingest"
_SESSION_CHANNELS = ("birth", "death")


def assign_partitions(workers: int, index: int) -> list[int]:
    """The partitions worker ``index`` of ``workers`` owns."""
    if not 0 <= index < workers <= PARTITIONS:
        raise ValueError(f"worker index {index} of {workers}: need 0 <= index < workers <= {PARTITIONS}")
    return [p for p in range(PARTITIONS) if p % workers == index]


def worker_filters(ingest: Ingest, partitions: list[int], *, shared: bool) -> list[str]:
    """The subscriptions of one worker: plain for births and deaths, shared (if asked) for the rest."""
    filters = []
    for topic_filter in ingest.subscriptions(partitions):
        channel = topic_filter.rsplit("/", 1)[-1]
        if shared and channel not in _SESSION_CHANNELS:
            topic_filter = f"$share/{SHARE_GROUP}/{topic_filter}"
        filters.append(topic_filter)
    return filters


class IngestWorker:
    """One ingest process's machinery: a registry, an Ingest, and a BusClient subscribed to its partitions.

    It takes each robot's own messages and gateways' batches (bus/frames.py) of its partitions; a consumer
    with a ``flush()`` (bus.relay.VerifiedOut) is flushed after every MQTT message, before it is acknowledged.
    With ``state_path``, the Ingest keeps its sessions and replay windows there (written in batches, and
    on ``close()``), and a worker started again on the same file goes on from them.
    """

    def __init__(
        self,
        url: str,
        registry: DidRegistry | Path | str,
        consumer: Consumer,
        *,
        index: int = 0,
        workers: int = 1,
        shared: bool = False,
        client_id: str | None = None,
        metrics_port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        outbox_path: Path | None = None,
        state_path: Path | None = None,
        **ingest_options: Any,
    ) -> None:
        self.partitions = assign_partitions(workers, index)
        self._own_registry = not isinstance(registry, DidRegistry)
        self.registry = DidRegistry(registry) if self._own_registry else registry  # type: ignore[arg-type]
        self.ingest = Ingest(self.registry, consumer, state_path=state_path, **ingest_options)
        self.ingest.metrics.describe("depai_ingest_bad_batches_total", "counter", "Gateway batches refused whole.")
        self._flush: Callable[[], object] | None = getattr(consumer, "flush", None)
        self.client = BusClient(url, client_id=client_id or f"{SHARE_GROUP}-{index}-of-{workers}",
                                username=username, password=password, outbox_path=outbox_path)
        self.filters = worker_filters(self.ingest, self.partitions, shared=shared)
        self.batch_filters = [f"$share/{SHARE_GROUP}/{f}" if shared else f for f in gateway_filter(self.partitions)]
        self.metrics_port = metrics_port
        self.metrics_server: ThreadingHTTPServer | None = None

    def handle(self, topic: str, payload: bytes) -> None:
        """One robot message, then forward what passed."""
        self.ingest.handle(topic, payload)
        if self._flush is not None:
            self._flush()

    def handle_batch(self, topic: str, payload: bytes) -> None:
        """A gateway's batch: every envelope checked as if it had come alone, then forward what passed."""
        try:
            frames = unpack(payload)
        except FrameError:
            self.ingest.metrics.inc("depai_ingest_bad_batches_total")
            frames = []
        handle = self.ingest.handle
        for inner, wire in frames:
            handle(inner, wire)
        if self._flush is not None:
            self._flush()

    def start(self, timeout: float = 10.0) -> IngestWorker:
        """Subscribe, connect and wait for the subscriptions to be granted."""
        for topic_filter in self.filters:
            self.client.subscribe(topic_filter, self.handle)
        for topic_filter in self.batch_filters:
            self.client.subscribe(topic_filter, self.handle_batch)
        self.client.start()
        if not self.client.wait_subscribed(timeout):
            self.close()
            raise TimeoutError(f"ingest worker could not subscribe at {self.client.address.display()}")
        if self.metrics_port is not None:
            self.metrics_server = serve_metrics(self.ingest.metrics, port=self.metrics_port)
        return self

    def close(self) -> None:
        """Stop serving metrics, disconnect, write the ingest's last state and close the registry (if this
        worker opened it)."""
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.client.close()
        self.ingest.close()  # after the client: no handler runs any more
        if self._own_registry:
            self.registry.close()

    def __enter__(self) -> IngestWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_worker_process(
    url: str,
    registry_path: str,
    index: int,
    workers: int,
    consumer_factory: Callable[[int], Consumer],
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> None:
    """Body of a worker process: run an IngestWorker until ``stop`` is set (``consumer_factory`` must be importable)."""
    with IngestWorker(url, registry_path, consumer_factory(index), index=index, workers=workers):
        ready.set()
        stop.wait()


def start_worker_processes(
    url: str,
    registry_path: Path | str,
    workers: int,
    consumer_factory: Callable[[int], Consumer],
    *,
    timeout: float = 30.0,
) -> tuple[list[multiprocessing.Process], multiprocessing.synchronize.Event]:
    """Spawn ``workers`` ingest processes and wait until all are subscribed; set the returned event to stop them."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    processes, readies = [], []
    for index in range(workers):
        ready = context.Event()
        process = context.Process(
            target=run_worker_process,
            args=(url, str(registry_path), index, workers, consumer_factory, ready, stop),
            name=f"depai-ingest-{index}",
            daemon=True,
        )
        process.start()
        processes.append(process)
        readies.append(ready)
    for index, ready in enumerate(readies):
        if not ready.wait(timeout):
            stop.set()
            raise TimeoutError(f"ingest worker {index} did not become ready within {timeout:g} s")
    return processes, stop
