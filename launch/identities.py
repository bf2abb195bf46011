"""The named identities of one local fleet, kept across runs so ``depai up`` resumes as the same fleet.

Each name (``dao``, ``member-1``, ``robot-0``, ...) maps to an Ed25519 seed in
one JSON file, written atomically with mode 0600 beside the DID registry. These
are simulated machines' and services' keys on the operator's own disk; a real
robot keeps its key on the robot (see docs/hardware.md) and a person's key lives
in the passphrase-protected keystore (``depai id``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from identity.did import did_peaq
from identity.document import MachineProfile
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.fleet import Identity, register


class IdentityStore:
    """Named identities: the same name gives the same key and DID in every run."""

    def __init__(self, path: Path, registry: DidRegistry) -> None:
        self.path, self.registry = path, registry
        self._seeds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self._names: dict[str, str] = {}  # DID -> name, filled as identities are enrolled
        self._derived: dict[str, str] = {}  # seed -> DID, for directory_all

    def enroll(self, name: str, *, controller: str | None = None, machine: MachineProfile | None = None,
               with_topic_root: bool = False) -> Identity:
        """The identity called ``name``: loaded if known, else a fresh key saved first and then registered."""
        if name not in self._seeds:
            self.reload()  # another process of the fleet (the DAO keeper buying a robot) may have made it
        if name not in self._seeds:
            self._seeds[name] = Signer.generate().seed.hex()
            self._save()
        signer = Signer(bytes.fromhex(self._seeds[name]))
        did = did_peaq(signer.public_key)
        self._names[did] = name
        if did not in self.registry:  # saved but not registered yet (a crash in between): register it now
            return register(self.registry, controller=controller, machine=machine, with_topic_root=with_topic_root,
                            signer=signer)
        return Identity(signer, did, self.registry.active(did).document)

    def reload(self) -> None:
        """Take in the names another process saved since this store was read (none is ever removed)."""
        if self.path.exists():
            self._seeds = {**json.loads(self.path.read_text()), **self._seeds}

    def names(self, prefix: str = "") -> list[str]:
        """The stored names starting with ``prefix``, in the order they were first enrolled."""
        return [name for name in self._seeds if name.startswith(prefix)]

    def directory(self) -> dict[str, str]:
        """DID -> name of every identity enrolled in this run (for people reading a dashboard)."""
        return dict(self._names)

    def directory_all(self) -> dict[str, str]:
        """DID -> name of every stored identity, as saved by any process of the fleet so far; registers nothing."""
        self.reload()
        for seed in self._seeds.values():
            if seed not in self._derived:
                self._derived[seed] = did_peaq(Signer(bytes.fromhex(seed)).public_key)
        return {self._derived[seed]: name for name, seed in self._seeds.items()}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._seeds, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
