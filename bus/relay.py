"""The verified channel: how ingest hands what it verified to services in other processes.

Ingest workers verify every robot message once (bus/ingest.py). In a fleet of
processes they forward what passed on ``depai/v1/verified/{kind}``, which the
broker's ACL lets only the ingest role write, as batches (bus/frames.py) of the
original signed envelopes: a service reads them back without verifying again
(``identity.envelope.reread``) and routes each to the consumers that declared
its kind (bus/router.py). A service subscribes only to the kinds it declared.

Delivery is at least once end to end: ingest publishes a batch into its durable
outbox before the robot's message is acknowledged, and a service's handler runs
before the batch is acknowledged. Consumers drop duplicates by (issuer, seq) or
are idempotent (a settlement is keyed by its task).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bus.client import BusClient
from bus.frames import FrameError, pack_within, unpack
from bus.router import Router
from bus.topics import VERIFIED, verified_topic
from identity.envelope import Envelope, EnvelopeRefused, reread

log = logging.getLogger("depai.bus.relay")

Message = tuple[str, bytes, int, bool]


class VerifiedOut:
    """Ingest's consumer when services run apart: collects what passed and forwards it per kind in batches."""

    def __init__(self, publish_many: Callable[[list[Message]], Any], *, max_batch: int = 500) -> None:
        self.publish_many, self.max_batch = publish_many, max_batch
        self.forwarded = 0
        self._pending: dict[str, list[tuple[str, bytes]]] = {}
        self._lock = threading.Lock()

    def __call__(self, topic: str, envelope: Envelope) -> None:
        with self._lock:
            frames = self._pending.setdefault(envelope.kind, [])
            frames.append((topic, envelope.wire))
            full = len(frames) >= self.max_batch
        if full:
            self.flush()

    def flush(self) -> int:
        """Publish what was collected (one message per kind) into the durable outbox; how many envelopes."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        self.publish_many([(verified_topic(kind), batch, 1, False) for kind, frames in pending.items()
                           for batch in pack_within(frames)])
        count = sum(len(frames) for frames in pending.values())
        self.forwarded += count
        return count


class VerifiedIn:
    """A service's side: subscribe to the verified channels of the router's kinds and route what arrives."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.received = self.malformed = 0

    def subscribe(self, client: BusClient) -> None:
        """Subscribe ``client`` to ``depai/v1/verified/{kind}`` for every kind the router declared."""
        for kind in sorted(self.router.kinds()):
            client.subscribe(verified_topic(kind), self.handle)

    def handle(self, topic: str, payload: bytes) -> None:
        """One batch from ingest: each envelope routed in order (one of another kind than its channel is dropped)."""
        kind = topic.removeprefix(f"{VERIFIED}/")
        try:
            frames = unpack(payload)
        except FrameError as err:
            self.malformed += 1
            log.warning("malformed batch on %s: %s", topic, err)
            return
        for inner, wire in frames:
            try:
                envelope = reread(wire)
            except EnvelopeRefused as err:
                self.malformed += 1
                log.warning("malformed envelope on %s: %s", topic, err)
                continue
            if envelope.kind != kind:
                self.malformed += 1
                continue
            self.received += 1
            self.router(inner, envelope)
