"""A robot's witnessed location: how far peers' lidar bears out where it says it is, as one faded number.

The map service (spatial/service.py) adds evidence as it judges claims; the map
mirror (spatial/mirror.py) adds it from the signed ``map.presence`` verdicts it
follows. Both keep a ``Presence`` per robot so the arithmetic lives here once:
the confidence is a beta reputation with a uniform prior (Jøsang and Ismail,
"The Beta Reputation System", 2002), (1 + seen) / (2 + seen + doubted), its
evidence fading exponentially so a robot's old record counts less than its new.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KINDS = ("seen", "unseen", "impossible")  # the verdicts of map.presence
UNWITNESSED = 0.5  # the confidence before any verdict: the prior's mean


@dataclass(slots=True)
class Presence:
    """One robot's witnessed evidence: faded weights of sightings and of doubts (unseen, impossible) as of ``at``,
    verdict counts (one per kind per second), its last verdict, and when a peer last saw it."""

    at: float
    seen: float = 0.0
    doubted: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    last: tuple[str, float] | None = None
    seen_at: float | None = None

    def add(self, seen: float, doubted: float, now: float, fade_s: float) -> None:
        """Fade the evidence held to ``now`` and add a batch's: sightings, and unseen or impossible doubts."""
        fade = math.exp(-max(0.0, now - self.at) / fade_s)
        self.seen = self.seen * fade + seen
        self.doubted = self.doubted * fade + doubted
        self.at = max(self.at, now)

    def record(self, kind: str, t_s: float) -> None:
        """Count one verdict (``seen``, ``unseen`` or ``impossible``) on a claim made at ``t_s``."""
        self.counts[kind] += 1
        if self.last is None or t_s >= self.last[1]:
            self.last = (kind, t_s)
        if kind == "seen" and (self.seen_at is None or t_s > self.seen_at):
            self.seen_at = t_s

    def confidence(self, now: float, fade_s: float) -> float:
        """(1 + seen) / (2 + seen + doubted), both faded to ``now``: a beta reputation with a uniform prior."""
        fade = math.exp(-max(0.0, now - self.at) / fade_s)
        return (1.0 + self.seen * fade) / (2.0 + (self.seen + self.doubted) * fade)

    def report(self, did: str, now: float, fade_s: float) -> dict[str, Any]:
        """The dashboard's row: its confidence now, verdict counts, the last verdict and when a peer last saw it
        (times in ms)."""
        return {"did": did, "confidence": self.confidence(now, fade_s),
                "seen": self.counts["seen"], "unseen": self.counts["unseen"],
                "impossible": self.counts["impossible"],
                "last": self.last[0] if self.last else None,
                "last_t": round(self.last[1] * 1000) if self.last else None,
                "seen_t": round(self.seen_at * 1000) if self.seen_at is not None else None}
