"""``depai id …``: create, show, list, rotate and deactivate machine identities; derive DIDs from keys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bus.topics import topic_root
from identity.did import Method, did_key, did_peaq
from identity.document import MachineProfile
from identity.keys import Signer, parse_public_key_hex
from identity.keystore import Keystore, resolve_passphrase
from identity.lifecycle import create_identity, current_method, deactivate_identity, rotate_key
from identity.registry import DidRegistry, Resolution
from launch.home import Home, registry_target
from launch.identities import IdentityStore
from launch.output import EXIT_NOT_FOUND, EXIT_OK, CliError, emit


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai id`` and its subcommands."""
    group = commands.add_parser("id", help="machine identities (DIDs and keys)", description=__doc__)
    sub = group.add_subparsers(dest="id_command", required=True, metavar="COMMAND")

    new = sub.add_parser("new", parents=[parent], help="create a key and register its DID",
                         description="Create an Ed25519 key, store it in the keystore and register its DID document.")
    new.add_argument("name", help="local name of the identity, e.g. robot-7")
    new.add_argument("--method", choices=[m.value for m in Method], default=Method.PEAQ.value,
                     help="DID method (default: peaq; did:key identities cannot rotate)")
    new.add_argument("--controller", metavar="DID", help="DID that controls this identity (the owner, e.g. a DAO)")
    new.add_argument("--model", default="generic", help="machine model")
    new.add_argument("--capability", action="append", default=[], metavar="CAP",
                     help="a capability, repeatable (e.g. --capability delivery --capability lidar)")
    new.add_argument("--max-speed", type=float, default=1.5, metavar="M_PER_S", help="maximum speed in m/s")
    new.add_argument("--payload", type=float, default=10.0, metavar="KG", help="maximum payload in kg")
    new.add_argument("--topic-root", help="MQTT topic root (default: depai/v1/robots/<partition>/<address>)")
    new.add_argument("--plain", action="store_true",
                     help="store the secret key unencrypted (simulated fleets only)")
    new.set_defaults(handler=cmd_new)

    show = sub.add_parser("show", parents=[parent], help="print an identity's DID document",
                          description="Print the DID document of a named identity as the registry holds it now.")
    show.add_argument("name")
    show.set_defaults(handler=cmd_show)

    listing = sub.add_parser("list", parents=[parent], help="list the identities in the keystore")
    listing.set_defaults(handler=cmd_list)

    did = sub.add_parser("did", parents=[parent], help="the DIDs of a raw Ed25519 public key",
                         description="Print the did:peaq and did:key of a 32-byte Ed25519 public key, one per line.")
    did.add_argument("public_key", metavar="PUBKEY_HEX", help="64 hex digits")
    did.set_defaults(handler=cmd_did)

    rotate = sub.add_parser("rotate", parents=[parent], help="replace an identity's key",
                            description="Generate a new key, publish it as key-N+1 signed by the current key, "
                                        "then swap it into the keystore (the old key is archived). With --state, "
                                        "NAME is one of a fleet's own identities (market, map, dispatcher, ...): "
                                        "signed by its controller's key when the fleet holds it, and its running "
                                        "service signs with the new key within a few seconds.")
    rotate.add_argument("name")
    rotate.add_argument("--state", metavar="DIR", help="rotate the identity NAME of the fleet in DIR (the state "
                        "directory of `depai up`) instead of the keystore's")
    rotate.add_argument("--db", metavar="URL", help="with --state: the fleet's PostgreSQL database, when `depai up "
                        "--db` named one (its DID registry lives there)")
    rotate.set_defaults(handler=cmd_rotate)

    deactivate = sub.add_parser("deactivate", parents=[parent], help="deactivate an identity for good",
                                description="Deactivate the DID: messages issued after this are refused.")
    deactivate.add_argument("name")
    deactivate.set_defaults(handler=cmd_deactivate)


def _resolution_json(resolution: Resolution) -> dict[str, Any]:
    return {
        "didDocument": resolution.document,
        "didDocumentMetadata": {
            "versionId": str(resolution.version),
            "updated": resolution.valid_from_ms,
            "deactivated": resolution.deactivated,
            "authorizedBy": resolution.authorized_by,
        },
    }


def _summary(name: str, resolution: Resolution) -> str:
    document = resolution.document
    machine = document.get("machine", {})
    lines = [
        f"name        {name}",
        f"did         {resolution.did}",
        f"key         {resolution.key_id}  {resolution.public_key.hex() if resolution.public_key else '-'}",
        f"controller  {document.get('controller', resolution.did)}",
        f"version     {resolution.version}{'  (deactivated)' if resolution.deactivated else ''}",
    ]
    if machine:
        caps = ", ".join(machine.get("capabilities", [])) or "-"
        lines.append(f"machine     {machine.get('model')}  max {machine.get('max_speed_mps')} m/s"
                     f"  payload {machine.get('payload_kg')} kg  [{caps}]")
    for service in document.get("service", []):
        lines.append(f"service     {service['type']}  {service['serviceEndpoint'].get('topicRoot')}")
    return "\n".join(lines)


def did_of(keystore: Keystore, name: str) -> str:
    """The DID a named key belongs to (recorded in its file, else derived as did:peaq)."""
    info = keystore.info(name)
    return info.did or did_peaq(info.public_key)


def unlock(keystore: Keystore, name: str) -> tuple[Signer, str, str | None]:
    """The named key, its DID and the passphrase it was unlocked with (None for a plain key), asking at most once."""
    info = keystore.info(name)
    passphrase = resolve_passphrase(None, confirm=False) if info.encrypted else None
    return keystore.load(name, passphrase=passphrase), info.did or did_peaq(info.public_key), passphrase


def cmd_new(args: argparse.Namespace, home: Home) -> int:
    """Create, store and register a new identity."""
    keystore = home.keystore()
    if keystore.exists(args.name):
        raise CliError(f"an identity named {args.name!r} already exists", code="key_exists",
                       hint=f"pick another name, or see it with `depai id show {args.name}`", exit_code=5)
    passphrase = None if args.plain else resolve_passphrase(None, confirm=True)
    signer = Signer.generate()
    machine = MachineProfile(args.model, list(args.capability), args.max_speed, args.payload)
    with home.registry() as registry:
        did = did_key(signer.public_key) if args.method == Method.KEY else did_peaq(signer.public_key)
        root = args.topic_root or topic_root(did)
        path = keystore.save(args.name, signer, did=did, passphrase=passphrase, plain=args.plain)
        try:
            resolution = create_identity(registry, signer, method=args.method, controller=args.controller,
                                         topic_root=root, machine=machine)
        except BaseException:
            path.unlink()
            raise
    emit(_resolution_json(resolution), as_json=args.json, text=_summary(args.name, resolution))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, home: Home) -> int:
    """Print an identity's current DID document."""
    did = did_of(home.keystore(), args.name)
    with home.registry() as registry:
        resolution = registry.resolve(did)
    emit(_resolution_json(resolution), as_json=args.json, text=_summary(args.name, resolution))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, home: Home) -> int:
    """List the identities in the keystore with their DIDs."""
    keystore = home.keystore()
    rows = []
    for name in keystore.names():
        info = keystore.info(name)
        rows.append({"name": name, "did": info.did or did_peaq(info.public_key), "encrypted": info.encrypted})
    text = "\n".join(f"{r['name']:<20} {r['did']}{'' if r['encrypted'] else '  (plain)'}" for r in rows)
    emit(rows, as_json=args.json, text=text or f"no identities in {keystore.directory}; create one with `depai id new NAME`")
    return EXIT_OK


def cmd_did(args: argparse.Namespace, home: Home) -> int:
    """Print the did:peaq and did:key of a raw public key."""
    public_key = parse_public_key_hex(args.public_key)
    dids = {"public_key": public_key.hex(), "did:peaq": did_peaq(public_key), "did:key": did_key(public_key)}
    emit(dids, as_json=args.json, text=f"{dids['did:peaq']}\n{dids['did:key']}")
    return EXIT_OK


def _finish_pending_rotation(keystore: Keystore, registry: DidRegistry, name: str, did: str) -> None:
    """Complete or undo a rotation that was interrupted between the registry update and the key swap."""
    staged = keystore.pending(name)
    if staged is None:
        return
    if registry.resolve(did).public_key == staged.public_key:
        staged.commit()
    else:
        staged.abort()


def cmd_rotate(args: argparse.Namespace, home: Home) -> int:
    """Rotate an identity's key: registry first, then the keystore, so a crash never strands the DID."""
    if args.state is not None:
        return _rotate_fleet_identity(args, Path(args.state).expanduser())
    keystore = home.keystore()
    current, did, passphrase = unlock(keystore, args.name)
    with home.registry() as registry:
        _finish_pending_rotation(keystore, registry, args.name, did)
        successor = Signer.generate()
        with keystore.staging(args.name, successor, did=did, passphrase=passphrase,
                              plain=passphrase is None) as staged:
            resolution = rotate_key(registry, did, successor.public_key, current, current_method(registry, did))
            staged.commit()
    emit(_resolution_json(resolution), as_json=args.json, text=_summary(args.name, resolution))
    return EXIT_OK


def _rotate_fleet_identity(args: argparse.Namespace, state: Path) -> int:
    """Rotate one of a fleet's own identities in its state directory (its registry may be in PostgreSQL)."""
    store_path = state / "identities.json"
    if not store_path.exists():
        raise CliError(f"no fleet in {state}", code="no_fleet", exit_code=EXIT_NOT_FOUND,
                       hint="pass the --state DIR that `depai up` used")
    with DidRegistry(registry_target(state, args.db)) as registry:
        store = IdentityStore(store_path, registry)
        if args.name not in store.names():
            raise CliError(f"the fleet in {state} has no identity {args.name!r}", code="unknown_identity",
                           exit_code=EXIT_NOT_FOUND, hint=f"its identities: {', '.join(store.names()[:12])} ...")
        store.rotate(args.name)
        resolution = registry.active(store.enroll(args.name).did)
    emit(_resolution_json(resolution), as_json=args.json, text=_summary(args.name, resolution))
    return EXIT_OK


def cmd_deactivate(args: argparse.Namespace, home: Home) -> int:
    """Deactivate an identity's DID with its current key."""
    signer, did, _ = unlock(home.keystore(), args.name)
    with home.registry() as registry:
        resolution = deactivate_identity(registry, did, signer, current_method(registry, did))
    emit(_resolution_json(resolution), as_json=args.json, text=f"{did} deactivated (version {resolution.version})")
    return EXIT_OK
