"""Per-issuer replay protection: sequence numbers must advance, within a bounded window for redelivery.

The sliding-window check of IPsec ESP (RFC 4303, section 3.4.3): for each issuer
we keep the highest sequence number accepted and a bitmap of the ``window``
numbers below it. A number above the highest is new; one inside the window is
new only if its bit is clear (MQTT QoS 1 may redeliver, and brokers may reorder
across reconnects); one below the window is too old to tell, so it is refused.
"""

from __future__ import annotations

import threading
from enum import StrEnum


class ReplayVerdict(StrEnum):
    """Why a sequence number was refused."""

    REPLAYED = "replayed"
    STALE = "stale_sequence"


class ReplayGuard:
    """Thread-safe sliding-window replay state for many issuers."""

    def __init__(self, window: int = 1024) -> None:
        if window < 1:
            raise ValueError("the replay window holds at least one sequence number")
        self.window = window
        self._mask = (1 << window) - 1
        self._state: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, issuer: str, seq: int) -> ReplayVerdict | None:
        """Why ``seq`` from ``issuer`` would be refused, or None if it is new; changes nothing."""
        state = self._state.get(issuer)
        if state is None:
            return None
        highest, seen = state
        if seq > highest:
            return None
        behind = highest - seq
        if behind >= self.window:
            return ReplayVerdict.STALE
        return ReplayVerdict.REPLAYED if (seen >> behind) & 1 else None

    def accept(self, issuer: str, seq: int) -> ReplayVerdict | None:
        """Record ``seq`` as seen if it is new (check and set in one step); else say why not."""
        with self._lock:
            verdict = self.check(issuer, seq)
            if verdict is not None:
                return verdict
            state = self._state.get(issuer)
            if state is None:
                self._state[issuer] = (seq, 1)
            elif seq - state[0] >= self.window:
                self._state[issuer] = (seq, 1)
            elif seq > state[0]:
                self._state[issuer] = (seq, ((state[1] << (seq - state[0])) | 1) & self._mask)
            else:
                self._state[issuer] = (state[0], state[1] | (1 << (state[0] - seq)))
            return None

    def highest(self, issuer: str) -> int | None:
        """The highest sequence number accepted from ``issuer``, if any."""
        state = self._state.get(issuer)
        return None if state is None else state[0]
