"""The verify-on-ingest pipeline: every subscriber in the fleet receives messages through it.

For each MQTT message, in this order:

1. the envelope: size, canonical JSON, shape, kind, time window, issuer key,
   signature, and whether its sequence number was already seen (identity.envelope,
   the one place messages are verified);
2. the topic: the message sits under its issuer's own topic root, in its
   partition, on the channel of its kind (wrong_topic);
3. the body: the kind's schema from the protocol catalogue (schema_invalid);
4. the session: a machine speaks only after its birth (no_birth); births must
   open a newer epoch and deaths must name the live one (replayed, stale_epoch);
5. physics: telemetry and scans within the machine's declared limits and
   continuous with what it said before (implausible);
6. the issuer's rate (rate_limited), checked after the signature so a forger
   cannot spend a robot's tokens;

then the replay window records the sequence number and the consumer gets the
message. Every refusal is counted by reason and DID, kept in a bounded
quarantine, and changes nothing else: a refused message burns no sequence number
and moves no state. An empty retained payload on a birth or death topic is how
MQTT clears a retained message; it is ignored, not refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
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

log = logging.getLogger("depai.bus.ingest")

ROBOT_KINDS = frozenset(ROBOT_CHANNELS)
_SESSION_KINDS = frozenset({"birth", "death"})
_MOTION_KINDS = frozenset({"telemetry", "scan"})
Consumer = Callable[[str, Envelope], None]


class IngestRefused(DepaiError):
    """A message the pipeline refuses after its envelope verified; ``reason`` (also ``code``) is the metric label."""

    code = "ingest_refused"

    def __init__(self, reason: str, issuer: str, detail: str) -> None:
        super().__init__(detail, code=reason)
        self.reason = reason
        self.issuer = issuer


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
    ) -> None:
        self.registry = registry
        self.consumer = consumer
        self.kinds = frozenset(kinds)
        self.verifier = verifier or EnvelopeVerifier(registry, clock=clock)
        self.metrics = Metrics()
        self.metrics.describe("depai_ingest_accepted_total", "counter", "Messages handed to the consumer, by kind.")
        self.metrics.describe("depai_ingest_refused_total", "counter", "Messages refused, by reason and DID.")
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
        self.metrics.inc("depai_ingest_accepted_total", kind=envelope.kind)
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
        if not self._rate.allow(envelope.issuer):
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
                reason = "replayed" if epoch == current else "stale_epoch"
                raise IngestRefused(reason, did, f"birth epoch {epoch} is not newer than {current}")
            self._epochs[did] = epoch
            self._alive.add(did)
            self._motion.reset(did)
            via = envelope.body.get("via")
            if via:
                self._via[did] = via
            return envelope
        if did not in self._alive or epoch != current:
            live = current if did in self._alive else None
            raise IngestRefused("stale_epoch", did, f"death for epoch {epoch}, but the live epoch is {live}")
        self._end_session(did)
        for machine in [m for m, gateway in self._via.items() if gateway == did]:
            self._end_session(machine)
        return envelope

    def _end_session(self, did: str) -> None:
        """Mark ``did`` offline; its last epoch is kept so an old birth cannot reopen it."""
        self._alive.discard(did)
        self._via.pop(did, None)
        self._motion.reset(did)

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

    def _refuse(self, reason: str, did: str | None, topic: str, detail: str, payload: bytes) -> None:
        self.metrics.inc("depai_ingest_refused_total", reason=reason, did=did or "unknown")
        self.quarantine.add(int(self._clock() * 1000), reason, did, topic, detail, payload)
        log.debug("refused %s from %s on %s: %s", reason, did, topic, detail)


def _is_session_topic(topic: str) -> bool:
    """True for a robot's birth or death topic."""
    parsed = parse_robot_topic(topic)
    return parsed is not None and parsed.channel in _SESSION_KINDS
