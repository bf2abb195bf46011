"""How the ``depai`` command talks to people and scripts: one place for text, JSON and errors.

Exit codes (documented in docs/cli.md) let scripts tell failures apart.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from identity.errors import DepaiError

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_CONFLICT = 5
EXIT_IO = 6

_EXIT_BY_CODE = {
    "key_not_found": EXIT_NOT_FOUND,
    "unknown_did": EXIT_NOT_FOUND,
    "wrong_passphrase": EXIT_AUTH,
    "passphrase_required": EXIT_AUTH,
    "insecure_permissions": EXIT_AUTH,
    "key_exists": EXIT_CONFLICT,
    "already_registered": EXIT_CONFLICT,
    "stale_update": EXIT_CONFLICT,
    "bad_name": EXIT_USAGE,
}


class CliError(DepaiError):
    """A failure the CLI reports in plain words with a next step, then exits with ``exit_code``."""

    code = "cli_error"

    def __init__(self, message: str, *, code: str, hint: str | None = None, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message, code=code, hint=hint)
        self.exit_code = exit_code

    def __str__(self) -> str:  # the message alone: report_error prints the hint on a line of its own
        return Exception.__str__(self)


def from_error(err: DepaiError) -> CliError:
    """The CLI error for any layer's refusal, with the exit code its reason maps to (a CliError keeps its own)."""
    if isinstance(err, CliError):
        return err
    message = Exception.__str__(err)
    return CliError(message, code=err.code, hint=err.hint, exit_code=_EXIT_BY_CODE.get(err.code, EXIT_REFUSED))


def emit(data: Any, *, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON for scripts, or ``text`` for people."""
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def report_error(err: CliError, *, as_json: bool) -> int:
    """Print ``err`` on stderr (as JSON when asked) and return its exit code."""
    if as_json:
        payload = {"error": {"code": err.code, "message": str(err), "hint": err.hint}}
        print(json.dumps(payload, sort_keys=True), file=sys.stderr)
    else:
        print(f"depai: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
    return err.exit_code


def status_line(stream: Any) -> Callable[[float, str], None]:
    """A live status line on ``stream``: rewritten in place on a terminal, else a line every 10 simulated s."""
    tty = stream.isatty()
    started = time.perf_counter()
    printed = [-1]  # the last ten simulated seconds a line was printed for (not on a terminal)

    def show(sim_s: float, text: str) -> None:
        wall = time.perf_counter() - started
        line = f"sim {sim_s:7.1f} s  x{sim_s / wall if wall > 0 else 0:5.1f} real time  {text}"
        if tty:
            print(f"\r{line}", end="", file=stream, flush=True)
        elif int(sim_s) // 10 > printed[0]:
            printed[0] = int(sim_s) // 10
            print(line, file=stream, flush=True)

    return show
