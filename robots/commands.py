"""The robot's door for commands: only a verified, addressed command from a trusted service gets in.

A command must be a valid envelope (identity.envelope does the verifying), be
signed by one of the services this robot trusts, arrive on this robot's own
command topic, match the protocol's schema (bus.trusted checks those) and be
addressed to this robot in its body. A refused command changes nothing: it
burns no sequence number. The marketplace's task announcements and awards come
through the same door, on the marketplace's topics; where one process relays
for many robots (the simulator, a site gateway), a ``MarketGate`` verifies each
of them once for all its robots instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from bus.schemas import BY_KIND
from bus.topics import MARKET_AWARDS, MARKET_TASKS
from bus.trusted import Refused, ServiceGate
from identity.envelope import Envelope, KeyResolver

COMMAND = "command"
MARKET_TOPICS = {"task": MARKET_TASKS, "award": MARKET_AWARDS}
_MARKET_KINDS = tuple(MARKET_TOPICS)


class CommandGate:
    """Verifies the commands addressed to one robot."""

    def __init__(
        self,
        did: str,
        topic_root: str,
        keys: KeyResolver,
        trusted: Collection[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.did = did
        self.topic = f"{topic_root.rstrip('/')}/{BY_KIND[COMMAND].channel}"
        self._gate = ServiceGate(keys, trusted, clock=clock)

    def _addressed(self, envelope: Envelope) -> None:
        if envelope.body["to"] != self.did:
            raise Refused(f"command is addressed to {envelope.body['to']}, not {self.did}", code="wrong_robot")

    def admit(self, topic: str, payload: bytes) -> Envelope:
        """The verified command; bus.trusted.Refused (code = reason) if it must not be acted on."""
        return self._gate.admit(topic, payload, kinds=(COMMAND,), expected_topic=lambda _: self.topic,
                                check=self._addressed)

    def admit_market(self, topic: str, payload: bytes) -> Envelope:
        """A verified task announcement or award from a trusted marketplace; Refused (code = reason) if not."""
        return self._gate.admit(topic, payload, kinds=_MARKET_KINDS, expected_topic=_market_topic)


class MarketGate:
    """Verifies the marketplace's task announcements and awards once for every robot behind one gateway.

    The same checks as ``CommandGate.admit_market`` (a valid envelope from a trusted service, of a market kind,
    on its own topic, with a valid body, not replayed), in one replay window shared by those robots;
    ``admitted`` counts the envelopes it let in.
    """

    def __init__(self, keys: KeyResolver, trusted: Collection[str], *, clock: Callable[[], float] = time.time) -> None:
        self._gate = ServiceGate(keys, trusted, clock=clock)
        self.admitted = 0

    def admit(self, topic: str, payload: bytes) -> Envelope:
        """The verified task announcement or award; Refused (code = reason) if it must not be acted on."""
        envelope = self._gate.admit(topic, payload, kinds=_MARKET_KINDS, expected_topic=_market_topic)
        self.admitted += 1
        return envelope


def _market_topic(envelope: Envelope) -> str:
    """Where a market envelope belongs: announcements on the tasks topic, awards on the awards topic."""
    return MARKET_TOPICS[envelope.kind]
