"""Where ``depai ledger`` gets the keys a ledger must be signed by: always from outside the ledger's database.

A verifier that read the key from the database it checks would accept a ledger
an attacker re-signed with a key of their own. So the keys come, in order of
preference, from ``--key HEX`` (published out of band), or from the DID
registry: every key the ledger's DID ever had (``--did``, or the ``ledger``
identity of the fleet's state directory), so entries signed before a rotation
still verify. The registry is self-certifying: a DID is derived from its first
key, and each later version is signed by the key before it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from identity.did import did_peaq
from identity.errors import DepaiError
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.home import Home
from launch.output import EXIT_NOT_FOUND, EXIT_USAGE, CliError


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """The public keys a ledger's entries and checkpoints may be signed by, and where they came from."""

    keys: tuple[bytes, ...]
    source: str


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say where the ledger and its keys are: ``--db``, ``--key``, ``--did``, ``--registry``,
    ``--state``."""
    parser.add_argument("--db", metavar="URL", help="the ledger: a file path, sqlite:///path or "
                        "postgresql://user@host:port/database (default: STATE/ledger.sqlite3)")
    parser.add_argument("--key", metavar="HEX", action="append", default=[],
                        help="a public key (64 hex digits) the ledger signs with, published out of band; repeat it "
                             "for a key rotated since")
    parser.add_argument("--did", help="the ledger's DID, resolved in the DID registry: every key it ever had "
                        "(default: the `ledger` identity of --state)")
    parser.add_argument("--registry", metavar="PATH|URL", help="the DID registry (default: STATE/registry.sqlite3, "
                        "or the PostgreSQL database of --db)")
    parser.add_argument("--state", metavar="DIR", help="the fleet's state directory (default: HOME/fleet, where "
                        "`depai up` keeps it)")


def state_dir(args: argparse.Namespace, home: Home) -> Path:
    """The fleet state directory the options name (``--state``, else HOME/fleet)."""
    return Path(args.state).expanduser() if args.state else home.root / "fleet"


def ledger_url(args: argparse.Namespace, home: Home) -> str:
    """The ledger's database: ``--db``, else the state directory's ``ledger.sqlite3``."""
    return args.db or f"sqlite:///{state_dir(args, home) / 'ledger.sqlite3'}"


def ledger_keys(args: argparse.Namespace, home: Home) -> LedgerKeys:
    """The keys to verify against, never read from the ledger's own database; CliError when none can be found."""
    if args.key:
        return LedgerKeys(tuple(_hex_key(text) for text in args.key), "--key")
    state = state_dir(args, home)
    did = args.did or _state_ledger_did(state)
    if did is None:
        raise CliError("no key to verify the ledger against: a verifier takes the key from outside the database",
                       code="no_ledger_key", exit_code=EXIT_USAGE,
                       hint="pass --key HEX (the ledger's published public key), --did DID with --registry, or "
                            "--state DIR of the fleet whose ledger this is")
    registry = args.registry or (args.db if args.db and args.db.startswith("postgres") else
                                 str(state / "registry.sqlite3"))
    try:
        with DidRegistry(registry) as reg:
            versions = reg.history(did)
    except DepaiError as err:
        raise CliError(f"cannot resolve the ledger's DID {did}: {err}", code="unknown_did", exit_code=EXIT_NOT_FOUND,
                       hint="check --did and --registry, or pass --key HEX") from None
    keys = tuple(dict.fromkeys(bytes(v.public_key) for v in versions if v.public_key))
    if not keys:
        raise CliError(f"{did} has no key in the registry", code="unknown_did", exit_code=EXIT_NOT_FOUND,
                       hint="pass --key HEX")
    return LedgerKeys(keys, f"{did} ({len(keys)} key{'s' if len(keys) != 1 else ''} in the DID registry)")


def _hex_key(text: str) -> bytes:
    """A 32-byte Ed25519 public key from 64 hex digits; CliError otherwise."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CliError(f"--key {text[:20]!r} is not 64 hex digits (a 32-byte Ed25519 public key)", code="bad_key",
                       hint="copy the ledger's key from its DID document", exit_code=EXIT_USAGE)
    return key


def _state_ledger_did(state: Path) -> str | None:
    """The DID of the ``ledger`` identity a fleet's state directory holds, if it holds one."""
    path = state / "identities.json"
    try:
        seed = json.loads(path.read_text()).get("ledger")
    except (OSError, ValueError, AttributeError):
        return None
    try:
        return did_peaq(Signer(bytes.fromhex(seed)).public_key) if isinstance(seed, str) else None
    except ValueError:
        return None
