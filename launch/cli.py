"""The ``depai`` command line: one entry point, a subcommand per job, ``--help`` everywhere.

Every subcommand takes ``--json`` for scripts; errors go to stderr with a hint, and
the exit status says what kind of failure it was (see launch/output.py).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from identity.errors import DepaiError
from launch import (bridge_command, broker_command, dao_command, demo, envelope_commands, id_commands, ledger_command,
                    serve, sim_command, up)
from launch.home import Home
from launch.output import EXIT_IO, CliError, from_error, report_error


def _version() -> str:
    try:
        return version("depai")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (tests and docs read it too)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common.add_argument("--home", metavar="DIR", help="state directory (default: $DEPAI_HOME or ~/.depai)")
    parser = argparse.ArgumentParser(
        prog="depai",
        description="DePAI: decentralized physical AI robot fleets with signed machine identities.",
        epilog="Run `depai COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"depai {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(commands, common)
    id_commands.add_parser(commands, common)
    envelope_commands.add_parser(commands, common)
    broker_command.add_parser(commands, common)
    sim_command.add_parser(commands, common)
    ledger_command.add_parser(commands, common)
    dao_command.add_parser(commands, common)
    up.add_parser(commands, common)
    serve.add_parser(commands, common)
    bridge_command.add_parser(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``depai`` with ``argv`` and return its exit status."""
    args = build_parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        return args.handler(args, Home.locate(getattr(args, "home", None)))
    except DepaiError as err:
        return report_error(from_error(err), as_json=as_json)
    except CliError as err:
        return report_error(err, as_json=as_json)
    except KeyboardInterrupt:
        print("depai: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        return report_error(
            CliError(f"{err.strerror or err}: {err.filename or ''}".rstrip(": "), code="os_error",
                     hint="check the path and its permissions", exit_code=EXIT_IO),
            as_json=as_json,
        )


if __name__ == "__main__":
    sys.exit(main())
