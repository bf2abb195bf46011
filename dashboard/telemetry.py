"""The last verified telemetry of every robot: an ingest consumer, so the dashboard shows only what was verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from identity.envelope import Envelope


@dataclass(frozen=True, slots=True)
class Heard:
    """A robot's newest telemetry body and when it was issued (seconds since the epoch)."""

    body: dict[str, Any]
    at_s: float


class TelemetryBoard:
    """Keeps each robot's newest telemetry; older messages arriving late never overwrite newer ones."""

    def __init__(self) -> None:
        self._latest: dict[str, Heard] = {}

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: take a verified telemetry envelope."""
        if envelope.kind != "telemetry" or not isinstance(envelope.body, dict):
            return
        held = self._latest.get(envelope.issuer)
        at_s = envelope.issued_at_ms / 1000
        if held is None or at_s >= held.at_s:
            self._latest[envelope.issuer] = Heard(envelope.body, at_s)

    def latest(self) -> dict[str, Heard]:
        """A copy of robot DID -> its newest telemetry."""
        return dict(self._latest)
