"""Stand-ins for the parts the crash, model and benchmark runs do not test: verified envelopes and award seals.

Signature checks are tested elsewhere (identity, bus, tests/marketplace/test_market.py); these runs are about
crashes, money and speed, so their envelopes are built as already verified and the marketplace's awards are
sealed with a plain key, without a DID registry.
"""

from __future__ import annotations

from identity.envelope import Envelope
from identity.keys import Signer


class Sealer:
    """The marketplace's signer, minus the registry: awards are signed bytes, nothing more."""

    did = "did:key:zMarket"

    def __init__(self) -> None:
        self._key = Signer(bytes(32))

    def seal(self, kind: str, body: dict) -> bytes:
        return self._key.sign(repr((kind, sorted(body.items()))).encode())


def envelope(kind: str, issuer: str, body: dict, *, at_ms: int = 0) -> Envelope:
    """An envelope as if ingest had verified it (unique bytes, so bid hashes differ), issued at ``at_ms``."""
    return Envelope(kind, issuer, "key-1", 1, at_ms, at_ms + 60_000, body, b"", repr((kind, issuer, body)).encode())
