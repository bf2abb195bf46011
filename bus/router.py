"""Routes each verified message to the services that declared its kind, and counts what it routed.

Every service names the robot message kinds it consumes (``declared_kinds``);
the router hands a verified envelope only to those, so the map never sees bids
and the marketplace never sees scans. In one process it is the ingest
pipeline's consumer; across processes the same declarations decide which
verified channels (``depai/v1/verified/{kind}``) a service subscribes to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from identity.envelope import Envelope

Consumer = Callable[[str, Envelope], None]


class Router:
    """Kind -> consumers; call it with ``(topic, envelope)`` to deliver one verified message."""

    def __init__(self) -> None:
        self._routes: dict[str, list[Consumer]] = {}
        self.routed: Counter[str] = Counter()

    def declare(self, kinds: Iterable[str], consumer: Consumer) -> Router:
        """``consumer`` takes the verified messages of ``kinds`` from now on; returns the router."""
        for kind in kinds:
            self._routes.setdefault(kind, []).append(consumer)
        return self

    def kinds(self) -> frozenset[str]:
        """Every kind some consumer declared."""
        return frozenset(self._routes)

    def __call__(self, topic: str, envelope: Envelope) -> None:
        self.routed[envelope.kind] += 1
        for consume in self._routes.get(envelope.kind, ()):
            consume(topic, envelope)
