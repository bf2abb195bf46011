"""``depai broker``: run the fleet's MQTT broker until Ctrl-C or SIGTERM.

Mosquitto when it is installed, else the embedded amqtt broker (``--kind`` picks
one). Its configuration, saved state and log live in ``--data-dir`` (default:
``broker/`` in the depai home), so retained messages survive a restart of a
Mosquitto broker. Access is anonymous: keep it on loopback, or behind a firewall.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from bus.broker import BrokerConfig, BrokerError, RunningBroker, choose_kind
from launch.home import Home
from launch.output import EXIT_CONFLICT, EXIT_IO, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CliError

_EXIT_BY_CODE = {
    "mosquitto_missing": EXIT_NOT_FOUND,
    "port_in_use": EXIT_CONFLICT,
    "data_dir_in_use": EXIT_CONFLICT,
    "bad_address": EXIT_USAGE,
    "bad_kind": EXIT_USAGE,
}


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai broker``."""
    broker = commands.add_parser("broker", parents=[parent], help="run an MQTT broker for the fleet",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    broker.add_argument("--kind", choices=["auto", "mosquitto", "amqtt"], default="auto",
                        help="auto (default): Mosquitto if installed, else the embedded amqtt")
    broker.add_argument("--port", type=int, default=1883, help="TCP port (default 1883; 0 picks a free one)")
    broker.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    broker.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="configuration, saved state and log (default: HOME/broker)")
    broker.set_defaults(handler=cmd_broker)


def _cli_error(err: BrokerError) -> CliError:
    return CliError(str(err), code=err.code, hint=err.hint, exit_code=_EXIT_BY_CODE.get(err.code, EXIT_IO))


def cmd_broker(args: argparse.Namespace, home: Home) -> int:
    """Start the broker, say where it is, and keep it running until told to stop."""
    if not 0 <= args.port <= 65535:
        raise CliError(f"port {args.port} is out of range", code="bad_port", hint="give 0-65535 (0: any free port)")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        kind, note = choose_kind(args.kind)
        config = BrokerConfig(host=args.host, port=args.port, data_dir=args.data_dir or home.root / "broker")
        with RunningBroker(kind, config).start() as broker:
            _announce(broker, note, as_json=args.json)
            while not stop.wait(0.5):
                if not broker.running:
                    raise CliError(f"the {kind} broker exited unexpectedly; its log ends:\n{broker.log_tail(10)}",
                                   code="broker_died", hint=f"read the whole log in {broker.log_path}",
                                   exit_code=EXIT_IO)
    except BrokerError as err:
        raise _cli_error(err) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.json:
        print("depai broker: stopped", flush=True)
    return EXIT_OK


def _announce(broker: RunningBroker, note: str, *, as_json: bool) -> None:
    """One JSON line (scripts read it while the command keeps running), or a few lines for people."""
    info = {"url": broker.url, "kind": str(broker.kind), "pid": broker.pid,
            "data_dir": str(broker.data_dir), "note": note}
    if as_json:
        print(json.dumps(info, sort_keys=True), flush=True)
    else:
        print(f"depai broker: {broker.url}  ({broker.kind}, pid {broker.pid})\n"
              f"  {note}\n  data and log in {broker.data_dir}\n  Ctrl-C to stop", flush=True)
