"""The named identities of one local fleet, kept across runs so ``depai up`` resumes as the same fleet.

Each name (``dao``, ``member-1``, ``robot-0``, ...) maps to an Ed25519 seed in
one JSON file, written atomically with mode 0600 beside the DID registry. A
rotated identity's entry is ``{"seed": ..., "did": ...}`` (its DID was derived
from its first key, not its current one), with ``"next"`` while a rotation is
under way: saved before the registry learns the new key, promoted after. These
are simulated machines' and services' keys on the operator's own disk; a real
robot keeps its key on the robot (see docs/hardware.md) and a person's key lives
in the passphrase-protected keystore (``depai id``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from typing import Any

from identity.did import did_peaq
from identity.document import MachineProfile
from identity.errors import RegistryError
from identity.keys import Signer
from identity.lifecycle import current_method, rotate_key
from identity.registry import DidRegistry
from launch.fleet import Identity, register


class IdentityStore:
    """Named identities: the same name gives the same key and DID in every run."""

    def __init__(self, path: Path, registry: DidRegistry) -> None:
        self.path, self.registry = path, registry
        self._seeds: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
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
        if isinstance(self._seeds[name], dict) and "next" in self._seeds[name]:
            self._settle_rotation(name)
        signer, did = Signer(bytes.fromhex(_seed(self._seeds[name]))), _did(self._seeds[name])
        self._names[did] = name
        if did not in self.registry:  # saved but not registered yet (a crash in between): register it now
            return register(self.registry, controller=controller, machine=machine, with_topic_root=with_topic_root,
                            signer=signer)
        return Identity(signer, did, self.registry.active(did).document)

    def reload(self) -> None:
        """Take in what another process saved since this store was read: new names, and rotated keys (the file
        wins; no name is ever removed)."""
        if self.path.exists():
            self._seeds = {**self._seeds, **json.loads(self.path.read_text())}

    def rotate(self, name: str) -> Identity:
        """Give ``name`` a new key: published as its DID's next key (signed by its current key, or by its
        controller's when this store holds the controller), the old key retired. Crash-safe: the new seed is
        saved as ``next`` first, and whichever key the registry holds wins on the next enroll."""
        current = self.enroll(name)
        authorizer = current
        controller = current.document.get("controller")
        if isinstance(controller, str) and controller != current.did:
            held = self.directory_all().get(controller)
            if held is None:
                raise RegistryError(f"{name} is controlled by {controller}, whose key this fleet does not hold",
                                    code="not_controller", hint="rotate it where its controller's key lives")
            authorizer = self.enroll(held)
        successor = Signer.generate()
        self._seeds[name] = {"seed": _seed(self._seeds[name]), "did": current.did, "next": successor.seed.hex()}
        self._save()
        rotate_key(self.registry, current.did, successor.public_key, authorizer.signer,
                   current_method(self.registry, authorizer.did))
        return self.enroll(name)

    def _settle_rotation(self, name: str) -> None:
        """Finish a rotation a crash interrupted: keep ``next`` if the registry has its key, else drop it."""
        entry = self._seeds[name]
        successor = Signer(bytes.fromhex(entry["next"]))
        held = self.registry.active(entry["did"]).public_key
        self._seeds[name] = {"seed": entry["next"] if held == successor.public_key else entry["seed"],
                             "did": entry["did"]}
        self._save()

    def names(self, prefix: str = "") -> list[str]:
        """The stored names starting with ``prefix``, in the order they were first enrolled."""
        return [name for name in self._seeds if name.startswith(prefix)]

    def directory(self) -> dict[str, str]:
        """DID -> name of every identity enrolled in this run (for people reading a dashboard)."""
        return dict(self._names)

    def directory_all(self) -> dict[str, str]:
        """DID -> name of every stored identity, as saved by any process of the fleet so far; registers nothing."""
        self.reload()
        return {_did(entry, self._derived): name for name, entry in self._seeds.items()}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._seeds, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def _seed(entry: Any) -> str:
    """The current seed of a stored entry (a plain seed, or a rotated identity's record)."""
    return entry["seed"] if isinstance(entry, dict) else entry


def _did(entry: Any, cache: dict[str, str] | None = None) -> str:
    """The DID of a stored entry: a rotated identity's recorded DID, else the one derived from its seed."""
    if isinstance(entry, dict):
        return str(entry["did"])
    if cache is None:
        return did_peaq(Signer(bytes.fromhex(entry)).public_key)
    if entry not in cache:
        cache[entry] = did_peaq(Signer(bytes.fromhex(entry)).public_key)
    return cache[entry]

