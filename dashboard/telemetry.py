"""The last verified telemetry of every robot, and whether it is online: an ingest consumer, so the dashboard
shows only what was verified.

A robot is **offline** when its signed death was verified (its own, or its gateway's for a simulated robot
behind a shard's gateway) and no newer birth came since, or when nothing was heard from it (telemetry or birth)
for ``OFFLINE_AFTER_S`` seconds of the fleet's clock. A new birth brings it back. Births and deaths are
ordered by their epoch, not by when they arrive: a death names the epoch it ends, and a will is signed long
before it fires.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from identity.envelope import Envelope

OFFLINE_AFTER_S = 10.0  # fleet seconds of silence after which a robot is shown offline


@dataclass(frozen=True, slots=True)
class Heard:
    """A robot's newest telemetry body and when it was issued (seconds since the epoch)."""

    body: dict[str, Any]
    at_s: float


@dataclass(frozen=True, slots=True)
class Session:
    """A robot's newest session as its births and deaths tell: its epoch, whether a death ended it, when its birth
    was issued (None if only its death was seen), the gateway it was born through (None if it speaks itself), and
    whether telemetry of this session arrived since (until then its last telemetry is an older session's)."""

    epoch: int
    ended: bool
    born_s: float | None
    via: str | None
    reported: bool = False


class TelemetryBoard:
    """Keeps each robot's newest telemetry and session; older messages arriving late never overwrite newer ones."""

    KINDS = ("telemetry", "birth", "death")  # what it takes: declare these to the router that feeds it

    def __init__(self) -> None:
        self._latest: dict[str, Heard] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: take a verified telemetry, birth or death envelope."""
        if not isinstance(envelope.body, dict):
            return
        if envelope.kind == "telemetry":
            held = self._latest.get(envelope.issuer)
            at_s = envelope.issued_at_ms / 1000
            if held is None or at_s >= held.at_s:
                self._latest[envelope.issuer] = Heard(envelope.body, at_s)
            session = self._sessions.get(envelope.issuer)
            if session is not None and not session.reported and not session.ended \
                    and (session.born_s is None or at_s >= session.born_s):
                with self._lock:
                    self._sessions[envelope.issuer] = replace(session, reported=True)
        elif envelope.kind in ("birth", "death") and isinstance(envelope.body.get("epoch"), int):
            with self._lock:
                self._session(envelope)

    def _session(self, envelope: Envelope) -> None:
        did, epoch = envelope.issuer, envelope.body["epoch"]
        held = self._sessions.get(did)
        if envelope.kind == "birth":
            if held is None or epoch > held.epoch:
                via = envelope.body.get("via")
                self._sessions[did] = Session(epoch, False, envelope.issued_at_ms / 1000,
                                              via if isinstance(via, str) else None)
            return
        if held is not None and (epoch < held.epoch or held.ended):
            return  # a death of an older session, or of one already ended
        self._sessions[did] = Session(epoch, True, held.born_s if held else None, held.via if held else None)
        for robot, session in list(self._sessions.items()):  # a gateway's death ends the robots born through it
            if session.via == did and not session.ended:
                self._sessions[robot] = replace(session, ended=True)

    def latest(self) -> dict[str, Heard]:
        """A copy of robot DID -> its newest telemetry."""
        return dict(self._latest)

    def sessions(self) -> dict[str, Session]:
        """A copy of robot DID -> its newest session."""
        with self._lock:
            return dict(self._sessions)


def presence(heard: Heard | None, session: Session | None, now_s: float,
             offline_after_s: float = OFFLINE_AFTER_S) -> str:
    """``online``, ``offline`` or ``unheard`` (neither telemetry nor a birth yet) for a robot at ``now_s``, by the
    rule of the module docstring."""
    if session is not None and session.ended:
        return "offline"
    last = max([t for t in (heard.at_s if heard else None, session.born_s if session else None) if t is not None],
               default=None)
    if last is None:
        return "unheard"
    return "offline" if now_s - last > offline_after_s else "online"
