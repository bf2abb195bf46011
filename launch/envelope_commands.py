"""``depai envelope sign|verify``: seal and check signed envelopes by hand, for debugging messages."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from identity.envelope import Envelope, EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from launch.home import Home
from launch.id_commands import unlock
from launch.output import EXIT_OK, CliError, emit


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai envelope`` and its subcommands."""
    group = commands.add_parser("envelope", help="seal and verify signed envelopes by hand", description=__doc__)
    sub = group.add_subparsers(dest="envelope_command", required=True, metavar="COMMAND")

    sign = sub.add_parser("sign", parents=[parent], help="seal a message as one of your identities",
                          description="Print the wire bytes of a signed envelope (canonical JSON, one line).")
    sign.add_argument("--as", dest="name", required=True, metavar="NAME", help="identity that signs")
    sign.add_argument("--kind", required=True, help="message kind, e.g. telemetry")
    body = sign.add_mutually_exclusive_group()
    body.add_argument("--body", default="{}", metavar="JSON", help="message body as JSON (default: {})")
    body.add_argument("--body-file", type=Path, metavar="FILE", help="read the body from a JSON file")
    sign.add_argument("--ttl", type=float, default=60.0, metavar="SECONDS", help="lifetime (default: 60)")
    sign.set_defaults(handler=cmd_sign)

    verify = sub.add_parser("verify", parents=[parent], help="verify an envelope against the registry",
                            description="Verify an envelope's canonical form, issuer, key, time and signature. "
                                        "Exit status 0 when valid, 1 when refused (the reason is printed).")
    verify.add_argument("file", nargs="?", type=Path, help="file holding the envelope (default: stdin)")
    verify.add_argument("--kind", action="append", metavar="KIND", help="accept only this kind (repeatable)")
    verify.add_argument("--archived", action="store_true",
                        help="verify as of its issue time (no expiry or replay checks), for stored messages")
    verify.set_defaults(handler=cmd_verify)


def _read_body(args: argparse.Namespace) -> Any:
    source = args.body_file.read_text() if args.body_file else args.body
    try:
        return json.loads(source)
    except json.JSONDecodeError as err:
        raise CliError(f"the body is not valid JSON: {err}", code="malformed_json",
                       hint="quote the JSON for your shell, e.g. --body '{\"x\": 1}'") from None


def cmd_sign(args: argparse.Namespace, home: Home) -> int:
    """Seal a body as a named identity and print the envelope."""
    signer, did, _ = unlock(home.keystore(), args.name)
    with home.registry() as registry:
        key_id = registry.active(did).key_id or "key-1"
    try:
        wire = EnvelopeSigner(signer, did, key_id).seal(args.kind, _read_body(args), ttl_s=args.ttl)
    except ValueError as err:
        raise CliError(str(err), code="bad_argument") from None
    sys.stdout.write(wire.decode() + "\n")
    return EXIT_OK


def _envelope_json(envelope: Envelope) -> dict[str, Any]:
    return {
        "valid": True,
        "kind": envelope.kind,
        "iss": envelope.issuer,
        "kid": envelope.key_id,
        "seq": envelope.seq,
        "iat": envelope.issued_at_ms,
        "exp": envelope.expires_at_ms,
        "body": envelope.body,
    }


def cmd_verify(args: argparse.Namespace, home: Home) -> int:
    """Verify one envelope and say why it is refused, if it is."""
    wire = (args.file.read_bytes() if args.file else sys.stdin.buffer.read()).rstrip(b"\r\n")
    with home.registry() as registry:
        verifier = EnvelopeVerifier(registry)
        try:
            envelope = (verifier.verify_archived if args.archived else verifier.verify)(wire, kinds=args.kind)
        except EnvelopeRefused as refusal:
            raise CliError(f"refused ({refusal.reason.value}): {Exception.__str__(refusal)}",
                           code=refusal.reason.value, hint=refusal.hint, exit_code=1) from None
    text = (f"valid  {envelope.kind} from {envelope.issuer}#{envelope.key_id}  seq {envelope.seq}\n"
            f"body   {json.dumps(envelope.body, sort_keys=True)}")
    emit(_envelope_json(envelope), as_json=args.json, text=text)
    return EXIT_OK
