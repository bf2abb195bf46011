"""Where a fleet keeps its state on disk: ``$DEPAI_HOME`` (default ``~/.depai``).

Inside: ``keys/`` (the keystore) and ``registry.sqlite3`` (the DID registry).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from identity.keystore import Keystore
from identity.registry import DidRegistry

HOME_ENV = "DEPAI_HOME"


@dataclass(frozen=True, slots=True)
class Home:
    """The state directory of one fleet operator."""

    root: Path

    @classmethod
    def locate(cls, explicit: str | None = None) -> Home:
        """The home given on the command line, else ``$DEPAI_HOME``, else ``~/.depai``."""
        chosen = explicit or os.environ.get(HOME_ENV) or str(Path.home() / ".depai")
        return cls(Path(chosen).expanduser())

    def keystore(self, **limits: int) -> Keystore:
        """The keystore under this home (``limits`` override the Argon2id cost, for tests and demos)."""
        return Keystore(self.root / "keys", **limits)

    def registry(self) -> DidRegistry:
        """The DID registry under this home."""
        return DidRegistry(self.root / "registry.sqlite3")


def registry_target(state: Path, db: str | None) -> str:
    """Where a fleet's DID registry lives: in its shared PostgreSQL database when it has one, else beside its state."""
    return db if db and db.startswith("postgresql") else str(state / "registry.sqlite3")
