"""A machine's side of the protocol: the signed birth, messages under its topic root, and its death.

The birth opens a session and fixes its boot epoch (the birth's own sequence
number, in the manner of Sparkplug B's bdSeq); a death names that epoch, so a
stale will from an earlier connection cannot end a newer session. Epochs are
unique per connection and grow across runs and crashes because the signer's
sequence starts at the wall clock (identity.envelope.Sequencer), never at a
simulated fleet clock. The will is
signed when the connection is made and published by the broker if the machine
vanishes; an explicit death says the same thing on a clean shutdown, and is how
machines sharing one connection (a simulator, a gateway) say goodbye one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bus.schemas import BY_KIND
from identity.envelope import EnvelopeSigner

WILL_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready for the bus: topic, signed payload, QoS and retain flag from the catalogue."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def astuple(self) -> tuple[str, bytes, int, bool]:
        """(topic, payload, qos, retain), as BusClient.publish_many and its wills take them."""
        return (self.topic, self.payload, self.qos, self.retain)


class MachineSession:
    """Builds one machine's signed messages for its topic root."""

    def __init__(
        self,
        signer: EnvelopeSigner,
        topic_root: str,
        document: dict[str, Any],
        *,
        via: str | None = None,
        software: str = "depai",
    ) -> None:
        self.signer = signer
        self.topic_root = topic_root.rstrip("/")
        self.document = document
        self.via = via
        self.software = software
        self.epoch: int | None = None

    def _outgoing(self, kind: str, payload: bytes) -> Outgoing:
        spec = BY_KIND[kind]
        return Outgoing(f"{self.topic_root}/{spec.channel}", payload, spec.qos, spec.retain)

    def birth(self) -> Outgoing:
        """A new session's birth (retained), carrying the DID document; starts a new epoch."""
        epoch = self.signer.sequencer.next()
        body: dict[str, Any] = {"document": self.document, "epoch": epoch, "software": self.software}
        if self.via:
            body["via"] = self.via
        self.epoch = epoch
        return self._outgoing("birth", self.signer.seal("birth", body, seq=epoch))

    def death(self, reason: str = "shutdown", *, ttl_s: float | None = None) -> Outgoing:
        """The signed death of the current session (``reason`` "will" for the broker-held last will)."""
        if self.epoch is None:
            raise RuntimeError("no session to end: publish a birth first")
        return self._outgoing("death", self.signer.seal("death", {"epoch": self.epoch, "reason": reason}, ttl_s=ttl_s))

    def will(self) -> Outgoing:
        """The death the broker publishes if this connection drops; sign it right after the birth."""
        return self.death("will", ttl_s=WILL_TTL_S)

    def message(self, kind: str, body: Any) -> Outgoing:
        """Any other message of this machine (telemetry, scan, event, bid, receipt), signed now."""
        if kind in ("birth", "death") or BY_KIND[kind].sender != "robot":
            raise ValueError(f"{kind!r} is not a message a machine sends on its own topic root")
        return self._outgoing(kind, self.signer.seal(kind, body))

def connection_greeting(
    machines: Sequence[MachineSession], gateway: MachineSession | None = None
) -> Callable[[], tuple[tuple[str, bytes, int, bool], list[tuple[str, bytes, int, bool]]]]:
    """The BusClient ``on_session`` hook for one connection: fresh births on every connect, and its will.

    The will is the death of the identity whose death ends every session on the
    connection: the single machine, or the gateway that several machines name as
    ``via`` (the gateway is born first, so its machines can point to it).
    """
    owner = gateway or (machines[0] if len(machines) == 1 else None)
    if owner is None:
        raise ValueError("several machines on one connection need a gateway identity for the will")

    def greet() -> tuple[tuple[str, bytes, int, bool], list[tuple[str, bytes, int, bool]]]:
        speakers = ([gateway] if gateway is not None else []) + [m for m in machines if m is not gateway]
        births = [speaker.birth().astuple() for speaker in speakers]
        return owner.will().astuple(), births

    return greet
