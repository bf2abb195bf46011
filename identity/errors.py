"""Typed identity errors: each carries a stable reason code and a hint on what to do next.

Every refusal in the identity layer (a malformed DID, a wrong passphrase, a forged
envelope) is one of these, so callers can count refusals by ``code`` and people
can read ``str(error)``.
"""

from __future__ import annotations


class DepaiError(Exception):
    """Base of every error the project raises on purpose: ``code`` is machine-readable, ``hint`` says what to do.

    It lives here, in the layer everything else may depend on, so that each layer's
    errors (identity, bus, broker, …) share one shape and the CLI one way to report them.
    """

    code: str = "depai_error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class IdentityError(DepaiError):
    """Base of every identity-layer error."""

    code = "identity_error"


class DidError(IdentityError):
    """A DID or key encoding that does not parse: wrong method, checksum, prefix or length."""

    code = "did_malformed"


class KeystoreError(IdentityError):
    """A keystore operation that cannot proceed: missing key, wrong passphrase, unsafe file."""

    code = "keystore_error"


class RegistryError(IdentityError):
    """A DID registry refusal: unknown DID, unauthorized update, deactivated DID."""

    code = "registry_error"


class ProofError(IdentityError):
    """A signed document whose proof is missing, malformed or does not verify."""

    code = "proof_invalid"
