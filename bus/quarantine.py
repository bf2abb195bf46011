"""A bounded log of refused messages, newest last, for people and the dashboard to inspect."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One refused message: when, why, who claimed to send it, where, and the start of its bytes."""

    at_ms: int
    reason: str
    did: str | None
    topic: str
    detail: str
    excerpt: str


class Quarantine:
    """The last ``capacity`` refusals; older ones fall off, so memory stays bounded under attack."""

    EXCERPT_BYTES = 256

    def __init__(self, capacity: int = 1000) -> None:
        self._entries: deque[QuarantineEntry] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, at_ms: int, reason: str, did: str | None, topic: str, detail: str, payload: bytes) -> None:
        """Record a refusal with the first bytes of what was sent (undecodable bytes replaced)."""
        excerpt = payload[: self.EXCERPT_BYTES].decode("utf-8", "replace")
        with self._lock:
            self._entries.append(QuarantineEntry(at_ms, reason, did, topic, detail, excerpt))

    def entries(self) -> list[QuarantineEntry]:
        """The retained refusals, oldest first."""
        with self._lock:
            return list(self._entries)

    def to_json(self) -> list[dict[str, Any]]:
        """The retained refusals as JSON-ready dicts."""
        return [asdict(entry) for entry in self.entries()]

    def __len__(self) -> int:
        return len(self._entries)
