"""Every DID's newest signed version, retained on the bus: ``depai/v1/identities/{method-specific id}``.

The payload is the registry's own stored version, byte for byte (RFC 8785 JSON): the DID document with its
eddsa-jcs-2022 proof, or, once the DID is deactivated, the signed statement ``{"id", "deactivated": true,
"proof"}``. It carries its own proof, so the broker is not trusted; docs/protocol.md ("Resolving DIDs over
HTTP") says what a subscriber checks. ``{method-specific id}`` is the part of the DID after ``did:peaq:`` or
``did:key:`` (an SS58 address, or a multibase key starting ``z``): never a ``/``, ``+`` or ``#``, and the two
methods' ids cannot collide.

It runs in one place, the dashboard service (``depai serve dashboard``), which also serves the same registry over
HTTP: the registry changes in many processes (``depai up`` founding the fleet, the DAO keeper buying a robot,
``depai bridge enroll``, ``depai id rotate`` from a shell), so the publisher looks at the shared registry every
few seconds and publishes what changed, instead of every writer remembering to. A restarted dashboard publishes
every DID again (the same retained bytes: harmless).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bus.session import Outgoing
from bus.topics import IDENTITIES
from identity.canonical import canonicalize
from identity.did import parse_did
from identity.registry import DidRegistry



def identity_topic(did: str) -> str:
    """The retained topic of ``did``'s newest version."""
    return f"{IDENTITIES}/{parse_did(did).identifier}"


class IdentityPublisher:
    """A fleet service step: the newest version of every DID in ``registry``, retained (QoS 1) when it is new to
    this publisher; the registry is looked at once every ``every_s`` seconds of ``monotonic``."""

    def __init__(self, registry: DidRegistry, *, every_s: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.every_s, self._monotonic = registry, every_s, monotonic
        self._next = -float("inf")
        self._sent: dict[str, int] = {}  # DID -> the version published
        self.published = 0

    def step(self, *, now: bool = False) -> list[Outgoing]:
        """The versions not published yet (``now``: look even if a look is not due)."""
        started = self._monotonic()
        if started < self._next and not now:
            return []
        self._next = started + self.every_s
        out = []
        for did in self.registry.dids():
            newest = self.registry.history(did)[-1]
            if self._sent.get(did) == newest.version:
                continue
            out.append(Outgoing(identity_topic(did), canonicalize(newest.document), 1, True))
            self._sent[did] = newest.version
        self.published += len(out)
        return out
