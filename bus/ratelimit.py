"""Per-DID token buckets: each machine may send ``rate`` messages a second, in bursts of ``burst``.

Checked after the signature, so only a machine itself can spend its tokens: a
forger flooding in another robot's name cannot silence that robot. Time is the
messages' own signed issue time when the caller gives it, so a robot's backlog
sent again after an outage (messages issued over minutes, arriving in one
burst) passes, while a robot signing many messages at once is held to its
rate. A machine cannot win tokens by backdating (each bucket's time only moves
forward) and wins at most the verifier's allowed skew by dating ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token buckets keyed by DID."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, at: float | None = None) -> bool:
        """Spend one token of ``key`` if it has one; False when it is over its rate. ``at`` is the message's own
        time in seconds (its signed issue time); the clock's time when not given."""
        now = self._clock() if at is None else at
        tokens, last = self._buckets.get(key, (self.burst, now))
        now = max(now, last)  # a message dated before the last one earns nothing
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True
