"""``depai ledger witness``: a DAO member's witness of the fleet's ledger, and ``--witness`` for ``ledger verify``.

Each turn the witness reads the fleet's newest signed checkpoint
(``GET FLEET/api/ledger/checkpoint``) and, when the ledger grew, a consistency
proof from the size it kept (``GET FLEET/api/ledger/consistency?old=M&new=N``);
it cosigns the checkpoint only if the ledger's own key signed it and the proof
shows the new tree extends the one it cosigned before (C2SP tlog-witness), and
keeps it in its state file. A smaller ledger is a ROLLBACK, one that does not
extend the kept tree a FORK; both are printed, kept in the state file as
evidence, and exit 1 with ``--once``.

The ledger's keys come from ``--key``, ``--did`` or ``--state`` (never from the
fleet it watches); the witness's own Ed25519 key is made on the first run and
kept beside the state file (``STATE.key``, owner-only); its public key is
printed. With ``--listen`` it serves its latest cosigned checkpoint at
``/checkpoint`` (text/plain), which ``depai ledger verify --witness URL`` reads.

The fleet also publishes each new checkpoint note, retained, on the bus topic
``depai/v1/ledger/checkpoint``; a witness still needs the consistency proof from
the fleet's HTTP API, so it polls the API.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bus.session import Outgoing
from bus.topics import LEDGER_CHECKPOINT
from identity.errors import DepaiError
from identity.keys import SEED_SIZE, Signer
from identity.keystore import write_private
from launch.home import Home
from launch.ledger_keys import LedgerKeys, add_key_arguments, ledger_keys
from launch.output import EXIT_AUTH, EXIT_IO, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError
from ledger.checkpoint import NoteError
from ledger.journal import Ledger
from ledger.witness import (
    Conflict,
    Fork,
    Rollback,
    UntrustedCheckpoint,
    Witness,
    WitnessError,
    Witnessed,
    WitnessState,
    open_checkpoint,
    witnessed_problems,
)

MAX_RESPONSE_BYTES = 1 << 20
HTTP_TIMEOUT_S = 10.0
DEFAULT_EVERY_S = 10.0


def add_witness_parser(actions: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai ledger witness`` under ``depai ledger``."""
    witness = actions.add_parser("witness", parents=[parent], help="witness the fleet's ledger: cosign each "
                                 "checkpoint that extends the last; catch a truncated or forked ledger",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    witness.add_argument("--fleet", required=True, metavar="URL",
                         help="the fleet's dashboard, e.g. http://127.0.0.1:8080 (as `depai up` printed it)")
    witness.add_argument("--state-file", required=True, metavar="FILE",
                         help="where this witness keeps the latest checkpoint it cosigned (its key goes beside it)")
    witness.add_argument("--name", help="the witness's key name, a schema-less URL without spaces or '+' "
                         "(default: HOST/depai-witness; fixed by the first run)")
    when = witness.add_mutually_exclusive_group()
    when.add_argument("--every", type=float, default=DEFAULT_EVERY_S, metavar="S",
                      help=f"seconds between turns (default {DEFAULT_EVERY_S:g})")
    when.add_argument("--once", action="store_true", help="take one turn; exit 1 on a fork or rollback")
    witness.add_argument("--listen", metavar="HOST:PORT", help="serve the latest cosigned checkpoint at "
                         "http://HOST:PORT/checkpoint (port 0: any free port)")
    add_key_arguments(witness)
    for action in witness._actions:
        if action.dest == "db":  # a witness never reads the ledger's database; --db only locates a PostgreSQL registry
            action.help = argparse.SUPPRESS
    witness.set_defaults(handler=cmd_witness)


# --- ledger verify --witness ---------------------------------------------------------------------------

def witness_check(ledger: Ledger, sources: Sequence[str], keys: LedgerKeys | Sequence[bytes]) -> list[str]:
    """The problems of ``ledger`` against each witness ``source`` (a state file, a cosigned note file, or the
    http(s) URL of a witness's /checkpoint): a truncation or rollback below a witnessed size, or a fork from a
    witnessed root. Empty when the database agrees with every witness. CliError when a source cannot be read or
    its checkpoint is not signed by ``keys`` (the ledger's keys, taken from outside the database)."""
    log_keys = tuple(keys.keys if isinstance(keys, LedgerKeys) else keys)
    seen = [load_witnessed(source, log_keys) for source in sources]
    return witnessed_problems(lambda size: ledger_root(ledger, size), ledger.size(), seen)


def ledger_root(ledger: Ledger, size: int) -> bytes | None:
    """The RFC 6962 root of the ledger's first ``size`` entries, or None when it holds fewer."""
    return ledger.root(size) if size <= ledger.size() else None


def load_witnessed(source: str, log_keys: Sequence[bytes]) -> Witnessed:
    """The witnessed checkpoint at ``source``: a witness's state file, a file holding a cosigned note, or an
    http(s) URL serving one (a witness's base URL means its /checkpoint). The ledger's signature on it must
    verify under ``log_keys``; a state file's cosignature is checked against the witness's key it records."""
    try:
        if _is_url(source):
            url = source.rstrip("/") + "/checkpoint" if urllib.parse.urlsplit(source).path in ("", "/") else source
            return Witnessed.from_note(_fetch(url, "text/plain").decode(), log_keys, url)
        text = Path(source).expanduser().read_text()
        if text.lstrip().startswith("{"):
            return Witnessed.from_state(WitnessState.from_json(json.loads(text)), source, log_keys)
        return Witnessed.from_note(text, log_keys, source)
    except UntrustedCheckpoint as err:
        raise CliError(f"the checkpoint witnessed at {source} is not the ledger's: {err}", code=err.code,
                       hint="check the ledger's key (--key, --did): a witness only vouches for what that key signed",
                       exit_code=EXIT_REFUSED) from None
    except (WitnessError, NoteError, ValueError, UnicodeDecodeError) as err:
        raise CliError(f"cannot read a witnessed checkpoint from {source}: {err}", code="bad_witness",
                       hint="give a witness's state file (--state-file of `depai ledger witness`) or its "
                            "http://HOST:PORT/checkpoint", exit_code=EXIT_USAGE) from None
    except OSError as err:
        raise CliError(f"cannot read the witness file {source}: {err.strerror or err}", code="bad_witness",
                       hint="check the path", exit_code=EXIT_IO) from None


# --- publishing checkpoints on the bus ----------------------------------------------------------------------

class CheckpointPublisher:
    """A fleet service: the ledger's newest signed checkpoint note, retained on ``depai/v1/ledger/checkpoint``
    each time it changes (looked for at most once every ``every_s`` wall seconds)."""

    def __init__(self, ledger: Ledger, *, every_s: float = 1.0) -> None:
        self.ledger, self.every_s = ledger, every_s
        self._next = 0.0
        self._sent: str | None = None

    def step(self, *, now: bool = False) -> list[Outgoing]:
        """The newest note as a retained QoS 1 message when it is new (``now``: look even if not due)."""
        started = time.monotonic()
        if started < self._next and not now:
            return []
        self._next = started + self.every_s
        latest = self.ledger.latest_checkpoint()
        if latest is None or latest[1] == self._sent:
            return []
        self._sent = latest[1]
        return [Outgoing(LEDGER_CHECKPOINT, self._sent.encode(), 1, True)]


# --- depai ledger witness ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Turn:
    """What one turn found: ``outcome`` witnessed, fork, rollback, untrusted or unreachable."""

    outcome: str
    message: str
    size: int | None = None
    old_size: int | None = None

    @property
    def alarm(self) -> bool:
        return self.outcome in ("fork", "rollback")

    def line(self) -> str:
        prefix = {"fork": "FORK: ", "rollback": "ROLLBACK: ", "untrusted": "UNTRUSTED: "}.get(self.outcome, "")
        return prefix + self.message


class Follower:
    """Follows one fleet's ledger: fetch, check, cosign, save."""

    def __init__(self, fleet: str, path: Path, signer: Signer, name: str, keys: tuple[bytes, ...],
                 state: WitnessState | None) -> None:
        self.fleet, self.path, self.signer, self.name, self.keys = fleet, path, signer, name, keys
        self.witness = None if state is None else self._witness(replace(state, log_keys=keys))

    def _witness(self, state: WitnessState) -> Witness:
        return Witness(self.signer, state, save=lambda updated: updated.save(self.path))

    def turn(self) -> Turn:
        """Take one turn. FetchError when the fleet cannot be read."""
        data = _json(_fetch(f"{self.fleet}/api/ledger/checkpoint", "application/json"))
        note = data.get("note") if isinstance(data, dict) else None
        if not isinstance(note, str):
            raise FetchError(f"{self.fleet}/api/ledger/checkpoint did not answer a checkpoint note",
                             hint="check --fleet: it is the dashboard's URL")
        try:
            checkpoint = open_checkpoint(note, None if self.witness is None else self.witness.state.origin,
                                         self.keys)
        except UntrustedCheckpoint as err:
            return Turn("untrusted", f"{err}; not cosigned")
        first = self.witness is None
        if self.witness is None:
            self.witness = self._witness(WitnessState(checkpoint.origin, self.keys, self.name, self.signer.public_key))
        old = self.witness.state.size
        proof = self._consistency(old, checkpoint.size) if 0 < old < checkpoint.size else []
        try:
            self.witness.add_checkpoint(note, old, proof)
        except Rollback as err:
            return Turn("rollback", str(err), checkpoint.size, old)
        except Fork as err:
            return Turn("fork", str(err), checkpoint.size, old)
        except Conflict as err:  # another process moved the state file on: take up its size next turn
            self.witness = self._witness(replace(WitnessState.load(self.path), log_keys=self.keys))
            return Turn("conflict", str(err), checkpoint.size, old)
        if first:
            return Turn("witnessed", f"witnessed size {checkpoint.size}, the first checkpoint of "
                                     f"{checkpoint.origin} (trusted on first use)", checkpoint.size, 0)
        return Turn("witnessed", f"witnessed size {checkpoint.size}, consistent with {old}", checkpoint.size, old)

    def _consistency(self, old: int, new: int) -> list[bytes]:
        """The fleet's consistency proof from ``old`` to ``new`` entries."""
        url = f"{self.fleet}/api/ledger/consistency?old={old}&new={new}"
        data = _json(_fetch(url, "application/json"))
        try:
            if (int(data["old_size"]), int(data["new_size"])) != (old, new):
                raise ValueError(f"it answered sizes {data['old_size']} to {data['new_size']}")
            return [bytes.fromhex(node) for node in data["proof"]]
        except (KeyError, TypeError, ValueError) as err:
            raise FetchError(f"{url} did not answer a consistency proof: {err}",
                             hint="the fleet's dashboard may predate consistency proofs; update it") from None


def cmd_witness(args: argparse.Namespace, home: Home) -> int:
    """Witness the fleet's ledger until stopped (or once); exit 1 on a fork or rollback with --once."""
    fleet = _fleet_url(args.fleet)
    if args.once and args.listen:
        raise CliError("--listen serves while the witness runs; --once stops at once", code="bad_arguments",
                       hint="drop --once (the witness then takes a turn every --every seconds)")
    if args.every <= 0:
        raise CliError("--every must be a positive number of seconds", code="bad_arguments", hint="e.g. --every 10")
    keys = ledger_keys(args, home)
    path = Path(args.state_file).expanduser()
    state = WitnessState.load(path) if path.exists() else None
    signer, made = _witness_key(path, must_exist=state is not None)
    name = _witness_name(args.name, state)
    follower = Follower(fleet, path, signer, name, keys.keys, state)
    say = _printer(args.json)
    key_path = _key_path(path)
    say({"event": "started", "witness": name, "public_key": signer.public_key.hex(), "state_file": str(path)},
        f"depai ledger witness {name}: public key {signer.public_key.hex()} "
        f"({'new, kept in' if made else 'from'} {key_path}); trusting the ledger's keys from {keys.source}")
    stop = threading.Event()
    server = _serve(args.listen, follower, say) if args.listen else None
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                turn = follower.turn()
            except FetchError as err:
                if args.once:
                    raise CliError(Exception.__str__(err), code=err.code, hint=err.hint, exit_code=EXIT_IO) from None
                turn = Turn("unreachable", f"{err}; trying again in {args.every:g} s")
            say({"event": "turn", "outcome": turn.outcome, "size": turn.size, "old_size": turn.old_size,
                 "message": turn.message}, turn.line())
            if args.once:
                if turn.outcome == "untrusted":
                    raise CliError(turn.message, code="checkpoint_untrusted", exit_code=EXIT_REFUSED,
                                   hint="check the ledger's key (--key, --did): the fleet's checkpoint is not "
                                        "signed by it")
                return EXIT_REFUSED if turn.alarm else EXIT_OK
            if stop.wait(args.every):
                return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.shutdown()
            server.server_close()


def _witness_name(requested: str | None, state: WitnessState | None) -> str:
    """The witness's key name: the state's, else --name, else HOST/depai-witness."""
    if state is not None:
        if requested is not None and requested != state.name:
            raise CliError(f"this state file's witness is named {state.name!r}, not {requested!r}",
                           code="bad_arguments", hint="drop --name, or start another witness with another "
                                                      "--state-file")
        return state.name
    name = requested or f"{socket.gethostname() or 'localhost'}/depai-witness"
    if not name or "+" in name or any(c.isspace() for c in name):
        raise CliError(f"--name {name!r} holds a space or a plus sign", code="bad_name",
                       hint="use a schema-less URL such as example.org/witness")
    return name


def _key_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.stem + ".key")


def _witness_key(state_path: Path, *, must_exist: bool) -> tuple[Signer, bool]:
    """The witness's Ed25519 key beside its state file, made on the first run; (signer, newly made)."""
    path = _key_path(state_path)
    if path == state_path:
        raise CliError(f"the state file {state_path} would be its own key file", code="bad_arguments",
                       hint="give the state file a .json name")
    if not path.exists():
        if must_exist:
            raise CliError(f"the witness key {path} is missing, but its state file is there", code="key_not_found",
                           hint="restore the key file: without it this witness cannot cosign as before",
                           exit_code=EXIT_AUTH)
        path.parent.mkdir(parents=True, exist_ok=True)
        signer = Signer.generate()
        try:
            write_private(path, (signer.seed.hex() + "\n").encode(), replace=False)
            return signer, True
        except FileExistsError:
            pass  # another witness process made it first: use that one
    if path.stat().st_mode & 0o077:
        raise CliError(f"the witness key {path} is readable by others", code="insecure_permissions",
                       hint=f"chmod 600 {path}", exit_code=EXIT_AUTH)
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except ValueError:
        seed = b""
    if len(seed) != SEED_SIZE:
        raise CliError(f"{path} is not a witness key (64 hex digits)", code="bad_key", exit_code=EXIT_AUTH,
                       hint="restore the key file this witness made on its first run")
    return Signer(seed), False


def _serve(listen: str, follower: Follower, say: Callable[[dict[str, Any], str], None]) -> ThreadingHTTPServer:
    """Serve the latest cosigned checkpoint at /checkpoint from a daemon thread."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65_535:
        raise CliError(f"--listen {listen!r} is not HOST:PORT", code="bad_arguments", hint="e.g. 127.0.0.1:8090")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] != "/checkpoint":
                self._answer(404, "not found: this witness serves /checkpoint\n")
                return
            cosigned = follower.witness.state.cosigned if follower.witness is not None else None
            if cosigned is None:
                self._answer(404, "this witness has not cosigned a checkpoint yet\n")
            else:
                self._answer(200, cosigned)

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    try:
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError as err:
        raise CliError(f"cannot listen on {listen}: {err.strerror or err}", code="port_taken",
                       hint="choose another port (0: any free port)", exit_code=EXIT_USAGE) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="witness-http", daemon=True).start()
    url = f"http://{host}:{server.server_address[1]}/checkpoint"
    say({"event": "listening", "url": url}, f"serving the latest cosigned checkpoint at {url}")
    return server


def _printer(as_json: bool) -> Callable[[dict[str, Any], str], None]:
    """One line per event: JSON for scripts, text for people; flushed, since a witness runs for long."""
    def say(data: dict[str, Any], text: str) -> None:
        print(json.dumps(data, sort_keys=True) if as_json else text, flush=True)
    return say


# --- HTTP -------------------------------------------------------------------------------------------------

class FetchError(DepaiError):
    """The fleet (or a witness) could not be read; the message says which URL and why."""

    code = "fleet_unreachable"


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _fleet_url(text: str) -> str:
    """The fleet's dashboard URL, without a trailing slash; CliError for anything but http(s)://HOST[:PORT]."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--fleet {text!r} is not an http(s) URL", code="bad_url", exit_code=EXIT_USAGE,
                       hint="give the dashboard's address, e.g. http://127.0.0.1:8080")
    return text.rstrip("/")


def _fetch(url: str, accept: str) -> bytes:
    """GET ``url``; FetchError naming what went wrong and what to do (urllib: the standard library only)."""
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "depai-witness"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as err:
        with err:
            detail = _error_detail(err.read(MAX_RESPONSE_BYTES))
        raise FetchError(f"{url} answered {err.code}{f': {detail}' if detail else ''}", code="fetch_refused",
                         hint="a fleet with no checkpoint yet signs one within seconds of starting; otherwise "
                              "check the URL") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"cannot reach {url}: {reason}", hint="check that the fleet (or witness) runs and the URL "
                         "and port are right") from None
    except ValueError as err:
        raise FetchError(f"bad URL {url}: {err}", code="bad_url", hint="use http://HOST:PORT") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise FetchError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes", code="fetch_refused")
    return body


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise FetchError("the fleet did not answer JSON", hint="check --fleet: it is the dashboard's URL") from None


def _error_detail(body: bytes) -> str:
    """The message (and hint) of the dashboard's JSON error, else the start of the body."""
    try:
        error = json.loads(body)["error"]
        hint = f" ({error['hint']})" if error.get("hint") else ""
        return f"{error['message']}{hint}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace").strip()
