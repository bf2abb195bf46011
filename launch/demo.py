"""``depai demo``: a guided walk through machine identity, signing and verification, in a throwaway home.

Until the fleet exists this is the project's main job: it shows, with real keys
and a real registry file, what every later layer relies on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bus.topics import topic_root
from identity.did import did_key, did_peaq
from identity.document import MachineProfile
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from identity.keys import Signer
from identity.lifecycle import create_identity, current_method, deactivate_identity, rotate_key
from identity.registry import DidRegistry
from launch.output import EXIT_OK, emit


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai demo``."""
    demo = commands.add_parser("demo", parents=[parent], help="walk through identities and signed envelopes",
                               description=__doc__)
    demo.add_argument("--keep", type=Path, metavar="DIR", help="keep the demo's registry in DIR instead of a temp dir")
    demo.set_defaults(handler=cmd_demo)


def _refusal(verifier: EnvelopeVerifier, wire: bytes) -> str:
    try:
        verifier.verify(wire)
    except EnvelopeRefused as refusal:
        return refusal.reason.value
    return "accepted"


def run_demo(directory: Path) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Run every step in ``directory``; returns (step, outcome) lines and a machine-readable summary."""
    steps: list[tuple[str, str]] = []
    with DidRegistry(directory / "registry.sqlite3") as registry:
        dao_key, robot_key = Signer.generate(), Signer.generate()
        dao = create_identity(registry, dao_key)
        steps.append(("DAO identity registered", dao.did))
        robot = create_identity(
            registry, robot_key, controller=dao.did, topic_root=topic_root(did_peaq(robot_key.public_key)),
            machine=MachineProfile("courier-s", ["delivery", "lidar"], 1.8, 12.0),
        )
        steps.append(("robot identity registered, controlled by the DAO", robot.did))
        steps.append(("the same key as did:key", did_key(robot_key.public_key)))

        verifier = EnvelopeVerifier(registry)
        robot_signer = EnvelopeSigner(robot_key, robot.did, "key-1")
        telemetry = robot_signer.seal("telemetry", {"pose": {"x": 12.5, "y": -3.25, "theta": 1.5708}, "battery": 0.93})
        steps.append(("signed telemetry verified", _refusal(verifier, telemetry)))
        steps.append(("the same message replayed", _refusal(verifier, telemetry)))
        second = robot_signer.seal("telemetry", {"pose": {"x": 12.9, "y": -3.25, "theta": 1.5708}, "battery": 0.92})
        tampered = second.replace(b'"battery":0.92', b'"battery":0.99')
        steps.append(("battery level tampered with", _refusal(verifier, tampered)))

        new_key = Signer.generate()
        time.sleep(0.005)  # the rotation comes after the messages above: a key's window ends at its rotation's ms
        rotated = rotate_key(registry, robot.did, new_key.public_key, dao_key, current_method(registry, dao.did))
        steps.append(("robot key rotated by its controller", f"now {rotated.key_id}"))
        stale = robot_signer.seal("telemetry", {"battery": 0.9})
        steps.append(("old key signs a new message", _refusal(verifier, stale)))
        archived = verifier.verify_archived(telemetry)
        steps.append(("the first message, verified as of its time", f"valid (seq {archived.seq})"))
        fresh = EnvelopeSigner(new_key, robot.did, rotated.key_id or "key-2").seal("telemetry", {"battery": 0.9})
        steps.append(("new key signs a new message", _refusal(verifier, fresh)))

        deactivate_identity(registry, robot.did, dao_key, current_method(registry, dao.did))
        late = EnvelopeSigner(new_key, robot.did, rotated.key_id or "key-2").seal("telemetry", {"battery": 0.8})
        steps.append(("robot deactivated; it signs again", _refusal(verifier, late)))
        summary = {
            "dao": dao.did,
            "robot": robot.did,
            "robot_versions": len(registry.history(robot.did)),
            "steps": [{"step": s, "outcome": o} for s, o in steps],
        }
    return steps, summary


def cmd_demo(args: argparse.Namespace, home: object) -> int:
    """Run the walk-through and print it."""
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        steps, summary = run_demo(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="depai-demo-") as tmp:
            steps, summary = run_demo(Path(tmp))
    width = max(len(step) for step, _ in steps)
    lines = ["depai identity walk-through: real Ed25519 keys, a real DID registry, signed envelopes", ""]
    lines += [f"  {i:>2}. {step:<{width}}  {outcome}" for i, (step, outcome) in enumerate(steps, 1)]
    lines += ["", "Every refusal above is a typed reason code; see docs/identity.md."]
    emit(summary, as_json=args.json, text="\n".join(lines))
    return EXIT_OK
