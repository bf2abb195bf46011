"""The robot's door for commands: only a verified, addressed command from a trusted service gets in.

A command must be a valid envelope (identity.envelope does the verifying), be
signed by one of the services this robot trusts, be addressed to this robot in
its body, arrive on this robot's own command topic and match the protocol's
schema. A refused command changes nothing: it burns no sequence number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from bus.schemas import BY_KIND, SchemaError, validate_body
from identity.envelope import Envelope, EnvelopeRefused, EnvelopeVerifier, KeyResolver
from identity.errors import DepaiError

COMMAND = "command"


class CommandRefused(DepaiError):
    """A command this robot will not act on; ``code`` names why (an envelope refusal or a gate check)."""

    code = "command_refused"


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
        self.trusted = frozenset(trusted)
        self.verifier = EnvelopeVerifier(keys, clock=clock)

    def _check(self, topic: str) -> Callable[[Envelope], None]:
        def check(envelope: Envelope) -> None:
            if envelope.issuer not in self.trusted:
                raise CommandRefused(f"{envelope.issuer} is not a service this robot takes commands from",
                                     code="untrusted_sender",
                                     hint="add the service's DID to the robot's trusted commanders")
            if topic != self.topic:
                raise CommandRefused(f"command arrived on {topic}, not on {self.topic}", code="wrong_topic")
            try:
                validate_body(COMMAND, envelope.body)
            except SchemaError as err:
                raise CommandRefused(str(err), code="schema_invalid") from None
            if envelope.body["to"] != self.did:
                raise CommandRefused(f"command is addressed to {envelope.body['to']}, not {self.did}",
                                     code="wrong_robot")
        return check

    def admit(self, topic: str, payload: bytes) -> Envelope:
        """The verified command; CommandRefused (code = reason) if it must not be acted on."""
        try:
            return self.verifier.verify(payload, kinds=(COMMAND,), check=self._check(topic))
        except EnvelopeRefused as refusal:
            raise CommandRefused(refusal.args[0], code=refusal.reason.value, hint=refusal.hint) from None
