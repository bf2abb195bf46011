"""The verify-on-ingest pipeline: every subscriber in the fleet receives messages through it.

For each MQTT message, in this order:

1. the envelope: size, canonical JSON, shape, kind, time window, issuer key,
   signature, and whether its sequence number was already seen (identity.envelope,
   the one place messages are verified);
2. the topic: the message sits under its issuer's own topic root, in its
   partition, on the channel of its kind (wrong_topic);
3. the body: the kind's schema from the protocol catalogue (schema_invalid);
4. the session: a machine speaks only after its birth (no_birth); a birth must
   open a newer epoch and a death must name the live one (stale_epoch);
5. physics: telemetry and scans within the machine's declared limits and
   continuous with what it said before (implausible);
6. the issuer's rate (rate_limited), checked after the signature so a forger
   cannot spend a robot's tokens;

then the replay window records the sequence number and the consumer gets the
message. Every refusal is counted by reason (``depai_ingest_refused_total``),
kept in a bounded quarantine, and changes nothing else: a refused message burns
no sequence number and moves no state. A refusal is also counted by DID
(``depai_ingest_refused_by_robot_total``) only when that DID is registered in
the fleet's registry: anyone can name a fresh ``did:key`` in a forged envelope,
and a series per forged DID would let a forger grow the metrics without bound.
Accepted messages are counted by kind, and per machine and kind
(``depai_robot_messages_total``: only verified issuers, so registered ones). An empty retained payload on a birth or death topic is how
MQTT clears a retained message; it is ignored, not refused.

Births and deaths are retained, so the broker hands them out again on every
subscribe, and a crashed connection's will may arrive after its successor's
birth. A birth or death that is not newer than the session this ingest holds
(a birth of the live or an older epoch, a death of an older or already ended
epoch) is therefore not a refusal: it changes nothing and is counted apart as
stale (``depai_ingest_stale_total``, by kind and DID), not quarantined. MQTT's
retain flag cannot tell such a copy from a resend (a broker clears it on live
delivery), and an old session message has no effect whatever its route, so
the epoch alone decides. A repeated sequence number of any other kind is still
refused as replayed.

With ``state_path`` the ingest keeps, per issuer, its session (epoch, live,
gateway) and its replay window (highest ``seq`` and the bitmap below it) in a
small SQLite file, and a new Ingest on the same file goes on from there: a
restarted worker refuses what it accepted before. The file is written in
batches, after ``state_batch`` accepted messages or once ``state_interval_s``
has passed since the last write (checked as messages arrive), and on
``close()``; a crash (kill -9) forgets at most the last unwritten batch, whose
messages a replay could then pass once more. Each write is one transaction
(WAL, synchronous=NORMAL: a process crash loses no committed batch).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from bus.metrics import Metrics
from bus.motion import MotionLimits, MotionTracker, scan_problem
from bus.quarantine import Quarantine
from bus.ratelimit import RateLimiter
from bus.schemas import BY_KIND, SchemaError, validate_body
from bus.topics import ROBOT_CHANNELS, parse_robot_topic, partition_of, robot_filter
from identity.envelope import Envelope, EnvelopeRefused, EnvelopeVerifier
from identity.errors import DepaiError, IdentityError
from identity.registry import DidRegistry
from identity.replay import ReplayGuard

log = logging.getLogger("depai.bus.ingest")

ROBOT_KINDS = frozenset(ROBOT_CHANNELS)
_SESSION_KINDS = frozenset({"birth", "death"})
_MOTION_KINDS = frozenset({"telemetry", "scan"})
Consumer = Callable[[str, Envelope], None]
RECENT_LAGS = 4096  # how many accepted messages' lags ``counters()`` takes its quantiles over


class IngestRefused(DepaiError):
    """A message the pipeline refuses after its envelope verified; ``reason`` (also ``code``) is the metric label."""

    code = "ingest_refused"

    def __init__(self, reason: str, issuer: str, detail: str) -> None:
        super().__init__(detail, code=reason)
        self.reason = reason
        self.issuer = issuer


class _Stale(Exception):
    """A birth or death not newer than the session ingest holds: counted as stale, not refused."""

    def __init__(self, kind: str, issuer: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.issuer = issuer


class DurableReplayGuard(ReplayGuard):
    """A replay window whose per-issuer state (highest seq, bitmap below it) can be read out and put back."""

    def snapshot(self, issuer: str) -> tuple[int, int] | None:
        """``(highest, seen)`` for ``issuer``: bit k of ``seen`` set if ``highest - k`` was accepted."""
        return self._state.get(issuer)

    def restore(self, issuer: str, highest: int, seen: int) -> None:
        """Put back a window read out by ``snapshot`` (bits beyond this guard's window are dropped)."""
        with self._lock:
            self._state[issuer] = (highest, (seen | 1) & self._mask)


StateRow = tuple[str, int | None, bool, str | None, int | None, bytes | None]


class IngestState:
    """The SQLite file where an ingest keeps, per issuer, its session and replay window across restarts."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS issuer (did TEXT PRIMARY KEY, epoch INTEGER, alive INTEGER NOT NULL,"
            " via TEXT, high INTEGER, seen BLOB)"
        )

    def rows(self) -> list[StateRow]:
        """Every issuer's (did, epoch, alive, via, highest seq, seen bitmap as little-endian bytes)."""
        return [(did, epoch, bool(alive), via, high, seen) for did, epoch, alive, via, high, seen
                in self._db.execute("SELECT did, epoch, alive, via, high, seen FROM issuer")]

    def write(self, rows: Iterable[StateRow]) -> None:
        """Replace these issuers' rows, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO issuer VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        """Close the file."""
        self._db.close()


class Ingest:
    """Verify, check and hand over messages from machines; count and quarantine the rest."""

    def __init__(
        self,
        registry: DidRegistry,
        consumer: Consumer,
        *,
        kinds: Collection[str] = ROBOT_KINDS,
        verifier: EnvelopeVerifier | None = None,
        rate: float = 50.0,
        burst: float = 100.0,
        quarantine_size: int = 1000,
        clock: Callable[[], float] = time.time,
        profile_ttl_s: float = 10.0,
        state_path: Path | str | None = None,
        state_batch: int = 1000,
        state_interval_s: float = 1.0,
    ) -> None:
        """``state_path``: keep sessions and replay windows in this SQLite file across restarts (see the
        module docstring), written every ``state_batch`` accepted messages or ``state_interval_s`` wall seconds."""
        self.registry = registry
        self.consumer = consumer
        self.kinds = frozenset(kinds)
        if verifier is None:
            verifier = EnvelopeVerifier(registry, clock=clock, replay=DurableReplayGuard() if state_path else None)
        elif state_path is not None and not isinstance(verifier.replay, DurableReplayGuard):
            raise ValueError("an ingest with a state_path needs a verifier whose replay guard is a DurableReplayGuard")
        self.verifier = verifier
        self.metrics = Metrics()
        self.metrics.describe("depai_ingest_accepted_total", "counter", "Messages handed to the consumer, by kind.")
        self.metrics.describe("depai_ingest_refused_total", "counter", "Messages refused, by reason.")
        self.metrics.describe("depai_ingest_refused_by_robot_total", "counter",
                              "Messages refused, by DID and reason, for DIDs registered in the fleet only.")
        self.metrics.describe("depai_robot_messages_total", "counter",
                              "Messages accepted, by issuer DID and kind; rate() gives each machine's message rate.")
        self.metrics.describe("depai_ingest_stale_total", "counter",
                              "Births and deaths not newer than the session held (retained copies, old wills), "
                              "by kind and DID; not refusals.")
        self.quarantine = Quarantine(quarantine_size)
        # Rates are per second of the fleet's time (a simulation may run faster than the wall clock).
        self._rate = RateLimiter(rate, burst, clock=time.monotonic if clock is time.time else clock)
        self._motion = MotionTracker()
        self._epochs: dict[str, int] = {}
        self._alive: set[str] = set()
        self._via: dict[str, str] = {}
        self._clock = clock
        self._profile_ttl = profile_ttl_s
        self._limits: dict[str, tuple[float, MotionLimits]] = {}
        self._registered: set[str] = set()  # DIDs found in the registry (a DID is never removed from it)
        self.recent_lags: deque[float] = deque(maxlen=RECENT_LAGS)  # fleet seconds from issue to acceptance
        self._store = IngestState(state_path) if state_path is not None else None
        self._changed: set[str] = set()  # issuers whose state changed since the last write
        self._unsaved = 0
        self._store_batch = state_batch
        self._store_interval = state_interval_s
        self._save_due = time.monotonic() + state_interval_s
        if self._store is not None:
            self._load_state()

    def subscriptions(self, partitions: list[int] | None = None) -> list[str]:
        """The topic filters this pipeline needs, births first, for all partitions or only ``partitions``."""
        order = sorted(self.kinds, key=lambda kind: (kind != "birth", kind))
        return [f for kind in order for f in robot_filter(ROBOT_CHANNELS[kind], partitions)]

    def online(self) -> dict[str, int]:
        """The machines with a live birth, and their boot epochs."""
        return {did: self._epochs[did] for did in self._alive}

    def handle(self, topic: str, payload: bytes) -> Envelope | None:
        """Take one MQTT message; the accepted envelope (after the consumer ran), or None if refused."""
        if not payload and _is_session_topic(topic):
            return None
        try:
            envelope = self._admit(topic, payload)
        except EnvelopeRefused as refusal:
            self._refuse(refusal.reason.value, refusal.issuer, topic, str(refusal), payload)
            return None
        except IngestRefused as refusal:
            self._refuse(refusal.reason, refusal.issuer, topic, str(refusal), payload)
            return None
        except _Stale as stale:
            self.metrics.inc("depai_ingest_stale_total", kind=stale.kind, did=stale.issuer)
            log.debug("stale %s from %s on %s: %s", stale.kind, stale.issuer, topic, stale)
            return None
        self.metrics.inc("depai_ingest_accepted_total", kind=envelope.kind)
        self.metrics.inc("depai_robot_messages_total", did=envelope.issuer, kind=envelope.kind)
        self.recent_lags.append(self._clock() - envelope.issued_at_ms / 1000)
        if self._store is not None:
            self._changed.add(envelope.issuer)
            self._unsaved += 1
            if self._unsaved >= self._store_batch or time.monotonic() >= self._save_due:
                self.save_state()
        try:
            self.consumer(topic, envelope)
        except Exception:
            log.exception("consumer failed on %s from %s", envelope.kind, envelope.issuer)
        return envelope

    # -- the checks, in order --------------------------------------------------

    def _admit(self, topic: str, payload: bytes) -> Envelope:
        if _is_session_topic(topic):
            return self._admit_session(topic, payload)
        envelope = self.verifier.verify(
            payload, kinds=self.kinds - _SESSION_KINDS, check=lambda verified: self._check(topic, verified)
        )
        if envelope.kind in _MOTION_KINDS:
            self._motion.record(envelope.issuer, envelope.kind, envelope.body)
        return envelope

    def _check(self, topic: str, envelope: Envelope) -> None:
        """Placement, session, physics and rate: run before the replay window records the message."""
        self._check_placement(topic, envelope)
        if envelope.issuer not in self._alive:
            raise IngestRefused("no_birth", envelope.issuer, f"{envelope.issuer} sent {envelope.kind} before any birth")
        if envelope.kind in _MOTION_KINDS:
            problem = self._motion.evaluate(envelope.issuer, envelope.kind, self._machine_limits(envelope.issuer),
                                            envelope.body, envelope.issued_at_ms)
            if problem is None and envelope.kind == "scan":
                problem = scan_problem(envelope.body)
            if problem is not None:
                raise IngestRefused("implausible", envelope.issuer, problem)
        if not self._rate.allow(envelope.issuer, envelope.issued_at_ms / 1000):
            raise IngestRefused("rate_limited", envelope.issuer, f"{envelope.issuer} is over {self._rate.rate:g} messages/s")

    def _admit_session(self, topic: str, payload: bytes) -> Envelope:
        """Births and deaths: verified as of their issue time (a retained birth or a will is old by nature)."""
        envelope = self.verifier.verify_archived(payload, kinds=_SESSION_KINDS & self.kinds)
        self._check_placement(topic, envelope)
        did, epoch = envelope.issuer, envelope.body["epoch"]
        current = self._epochs.get(did)
        if envelope.kind == "birth":
            if envelope.body["document"].get("id") != did:
                raise IngestRefused("schema_invalid", did, "a birth carries the issuer's own DID document")
            if epoch != envelope.seq:
                raise IngestRefused("schema_invalid", did, "a birth's epoch is its own sequence number")
            if current is not None and epoch <= current:
                raise _Stale("birth", did, f"birth epoch {epoch} is not newer than {current}, the last one held")
            self._epochs[did] = epoch
            self._alive.add(did)
            self._motion.reset(did)
            via = envelope.body.get("via")
            if via:
                self._via[did] = via
            else:
                self._via.pop(did, None)
            return envelope
        alive = did in self._alive
        if current is not None and (epoch < current or (epoch == current and not alive)):
            state = "live" if alive else "ended"
            raise _Stale("death", did, f"death for epoch {epoch}; the last epoch held is {current} ({state})")
        if not alive or epoch != current:
            live = current if alive else None
            raise IngestRefused("stale_epoch", did,
                                f"death for epoch {epoch}, which no birth seen here opened (live epoch: {live})")
        self._end_session(did)
        for machine in [m for m, gateway in self._via.items() if gateway == did]:
            self._end_session(machine)
        return envelope

    def _end_session(self, did: str) -> None:
        """Mark ``did`` offline; its last epoch is kept so an old birth cannot reopen it."""
        self._alive.discard(did)
        self._via.pop(did, None)
        self._motion.reset(did)
        if self._store is not None:
            self._changed.add(did)

    # -- what survives a restart -------------------------------------------------

    def _load_state(self) -> None:
        assert self._store is not None
        guard = self.verifier.replay
        assert isinstance(guard, DurableReplayGuard)
        for did, epoch, alive, via, high, seen in self._store.rows():
            if epoch is not None:
                self._epochs[did] = epoch
            if alive:
                self._alive.add(did)
            if via:
                self._via[did] = via
            if high is not None:
                guard.restore(did, high, int.from_bytes(seen or b"", "little"))

    def save_state(self) -> None:
        """Write what changed since the last write to the state file (if any); call from the thread that
        calls ``handle``, or after it stopped. A failed write is logged and retried with the next batch."""
        if self._store is None:
            return
        changed, self._changed = self._changed, set()
        self._unsaved = 0
        self._save_due = time.monotonic() + self._store_interval
        if not changed:
            return
        guard = self.verifier.replay
        assert isinstance(guard, DurableReplayGuard)
        rows: list[StateRow] = []
        for did in changed:
            window = guard.snapshot(did)
            high, seen = window if window is not None else (None, None)
            rows.append((did, self._epochs.get(did), did in self._alive, self._via.get(did), high,
                         None if seen is None else seen.to_bytes((seen.bit_length() + 7) // 8, "little")))
        try:
            self._store.write(rows)
        except sqlite3.Error:
            log.exception("could not write the ingest state to %s; will retry", self._store.path)
            self._changed |= changed

    def close(self) -> None:
        """Write the last batch and close the state file (nothing to do without one)."""
        if self._store is not None:
            self.save_state()
            self._store.close()
            self._store = None

    @staticmethod
    def _check_placement(topic: str, envelope: Envelope) -> None:
        """The message sits on its issuer's own topic root and partition, on its kind's channel, and fits its schema."""
        parsed = parse_robot_topic(topic)
        address = envelope.issuer.rsplit(":", 1)[-1]
        if (
            parsed is None
            or parsed.address != address
            or parsed.channel != BY_KIND[envelope.kind].channel
            or parsed.partition != partition_of(envelope.issuer)
        ):
            raise IngestRefused(
                "wrong_topic", envelope.issuer, f"{envelope.kind} from {envelope.issuer} does not belong on {topic}"
            )
        try:
            validate_body(envelope.kind, envelope.body)
        except SchemaError as err:
            raise IngestRefused("schema_invalid", envelope.issuer, str(err)) from None

    def _machine_limits(self, did: str) -> MotionLimits:
        """The machine's declared motion limits from its DID document, cached for a few seconds."""
        now = self._clock()
        cached = self._limits.get(did)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            machine: dict[str, Any] = self.registry.resolve(did).document.get("machine", {})
        except IdentityError:
            machine = {}
        limits = MotionLimits(max_speed_mps=float(machine.get("max_speed_mps", 1.5)))
        self._limits[did] = (now + self._profile_ttl, limits)
        return limits

    def counters(self, *, robots: int | None = None) -> dict[str, Any]:
        """What this ingest counted, as JSON-ready numbers: accepted messages by kind, refusals by reason, stale
        births and deaths by kind; per registered machine its accepted messages by kind and its refusals by
        reason, for at most ``robots`` machines (those with refusals first, then in DID order; how many were
        left out in ``robots_left_out``); and the median and 99th percentile of the recent messages' lag."""
        metrics = self.metrics
        messages = metrics.nested("depai_robot_messages_total", "did", "kind")
        refusals = metrics.nested("depai_ingest_refused_by_robot_total", "did", "reason")
        dids = [*refusals, *sorted(messages.keys() - refusals.keys())]
        kept = set(dids if robots is None else dids[:robots])
        lags = sorted(self.recent_lags)
        return {"accepted": _ints(metrics.by("depai_ingest_accepted_total", "kind")),
                "refused": _ints(metrics.by("depai_ingest_refused_total", "reason")),
                "stale": _ints(metrics.by("depai_ingest_stale_total", "kind")),
                "messages_by_robot": {did: _ints(row) for did, row in messages.items() if did in kept},
                "refused_by_robot": {did: _ints(row) for did, row in refusals.items() if did in kept},
                "robots_left_out": len(dids) - len(kept),
                "lag_p50_s": quantile(lags, 0.5), "lag_p99_s": quantile(lags, 0.99)}

    def _is_registered(self, did: str | None, reason: str) -> bool:
        """Whether ``did`` is registered in the fleet's registry (remembered once it is; an unknown issuer, just
        looked up by the verifier, is not looked up again)."""
        if did is None or reason == "unknown_issuer":
            return False
        if did not in self._registered:
            if did not in self.registry:
                return False
            self._registered.add(did)
        return True

    def _refuse(self, reason: str, did: str | None, topic: str, detail: str, payload: bytes) -> None:
        self.metrics.inc("depai_ingest_refused_total", reason=reason)
        if self._is_registered(did, reason):
            self.metrics.inc("depai_ingest_refused_by_robot_total", did=did, reason=reason)
        self.quarantine.add(int(self._clock() * 1000), reason, did, topic, detail, payload)
        log.debug("refused %s from %s on %s: %s", reason, did, topic, detail)


def _ints(counts: dict[str, float]) -> dict[str, int]:
    return {key: int(n) for key, n in counts.items()}


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``values`` (nearest rank, rounded to the millisecond); None for none."""
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def _is_session_topic(topic: str) -> bool:
    """True for a robot's birth or death topic."""
    parsed = parse_robot_topic(topic)
    return parsed is not None and parsed.channel in _SESSION_KINDS
