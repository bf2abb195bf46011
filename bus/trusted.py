"""Admitting messages from fleet services: a valid envelope, from a service this receiver trusts, on its topic.

Robots receive commands, map tiles and road graphs from services. Each receiver
keeps its own verifier (its own replay window) and its own list of trusted
service DIDs; a message that fails any check changes nothing and burns no
sequence number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from bus.schemas import SchemaError, validate_body
from identity.envelope import Envelope, EnvelopeRefused, EnvelopeVerifier, KeyResolver
from identity.errors import DepaiError


class Refused(DepaiError):
    """A service message this receiver will not act on; ``code`` names why (an envelope refusal or a gate check)."""

    code = "refused"


class ServiceGate:
    """Verifies messages of some kinds from a set of trusted service DIDs."""

    def __init__(self, keys: KeyResolver, trusted: Collection[str], *, clock: Callable[[], float] = time.time) -> None:
        self.trusted = frozenset(trusted)
        self.verifier = EnvelopeVerifier(keys, clock=clock)

    def admit(self, topic: str, payload: bytes, *, kinds: Collection[str], expected_topic: Callable[[Envelope], str],
              check: Callable[[Envelope], None] | None = None) -> Envelope:
        """The verified envelope; Refused (code = reason) if it must not be acted on.

        ``expected_topic`` says where a given envelope belongs; ``check`` adds the receiver's own
        checks (raising Refused), run before the sequence number is recorded.
        """
        def checks(envelope: Envelope) -> None:
            if envelope.issuer not in self.trusted:
                raise Refused(f"{envelope.issuer} is not a service this receiver trusts", code="untrusted_sender",
                              hint="add the service's DID to the trusted services")
            if topic != expected_topic(envelope):
                raise Refused(f"{envelope.kind} arrived on {topic}, not on {expected_topic(envelope)}",
                              code="wrong_topic")
            try:
                validate_body(envelope.kind, envelope.body)
            except SchemaError as err:
                raise Refused(str(err), code="schema_invalid") from None
            if check is not None:
                check(envelope)

        try:
            return self.verifier.verify(payload, kinds=kinds, check=checks)
        except EnvelopeRefused as refusal:
            raise Refused(refusal.args[0], code=refusal.reason.value, hint=refusal.hint) from None
