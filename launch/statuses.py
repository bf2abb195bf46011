"""Every service's latest signed status, from the bus: what the supervisor's status line and the dashboard show.

Each service process publishes a retained ``service.status`` envelope every
second on ``depai/v1/fleet/services/{role}/{index}`` (launch/serve.py). The
board keeps the newest verified one per service, refuses what is not signed by
a registered identity, and sums the counters the fleet reports as a whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bus.client import BusClient
from bus.topics import FLEET_SERVICES
from identity.envelope import EnvelopeRefused, EnvelopeVerifier
from identity.registry import DidRegistry

STATUS_KIND = "service.status"


class StatusBoard:
    """The newest verified status of every service process of one run."""

    def __init__(self, registry: DidRegistry, *, run: int | None = None) -> None:
        self.verifier = EnvelopeVerifier(registry)
        self.run = run
        self.refused = 0
        self._latest: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def subscribe(self, client: BusClient) -> StatusBoard:
        """Follow every service's status on ``client``; returns the board."""
        client.subscribe(f"{FLEET_SERVICES}/#", self.take)
        return self

    def take(self, topic: str, payload: bytes) -> None:
        """One retained status message (an empty one clears it)."""
        if not payload:
            return
        try:
            body = self.verifier.verify_archived(payload, kinds=(STATUS_KIND,)).body
            key = (str(body["role"]), int(body["index"]))
        except (EnvelopeRefused, KeyError, TypeError, ValueError):
            self.refused += 1
            return
        if self.run is not None and body.get("run") != self.run:
            return  # an earlier run's retained status
        with self._lock:
            held = self._latest.get(key)
            if held is None or body["t"] >= held["t"]:
                self._latest[key] = body

    def services(self, role: str | None = None) -> list[dict[str, Any]]:
        """The newest status of each service (of one role when given), by role and index."""
        with self._lock:
            return [self._latest[key] for key in sorted(self._latest) if role is None or key[0] == role]

    def total(self, role: str, counter: str) -> int:
        """A number counter summed over the services of ``role``."""
        return sum(int(s["counters"].get(counter) or 0) for s in self.services(role))

    def merged(self, role: str, counter: str) -> dict[str, int]:
        """A counter that is a dict (refusals by reason, ...) summed key by key over the services of ``role``."""
        out: dict[str, int] = {}
        for status in self.services(role):
            for key, n in (status["counters"].get(counter) or {}).items():
                out[key] = out.get(key, 0) + int(n)
        return out

    def worst(self, role: str, counter: str, pick: Callable[[list[float]], float] = max) -> float | None:
        """The worst (largest by default) of a number counter over the services of ``role``; None if none says."""
        values = [float(s["counters"][counter]) for s in self.services(role) if s["counters"].get(counter) is not None]
        return pick(values) if values else None
