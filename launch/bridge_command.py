"""``depai bridge``: put a real robot into a ``depai up`` fleet, and run the bridge that speaks for it.

``depai bridge enroll NAME --state DIR`` gives the robot a key (or takes yours,
``--key-file``), registers its DID document in the fleet's registry with the
fleet's DAO as controller, and makes its MQTT login; the next ``depai up`` on
that state admits it (a broker login limited to its own topics, a marketplace
registration with the DAO's bond). ``depai bridge run NAME --state DIR`` then
runs the fleet's robot agent for it: the robot's motors and sensors answer over
the JSON adapter (``--udp HOST:PORT``, or ``--serial /dev/tty...``), see
docs/hardware.md. The fleet should run in real time (``depai up --speed 1``):
a real robot's clock is the wall clock.
"""

from __future__ import annotations

import argparse
import json
import re
import os
import secrets
import signal
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from identity import secp256k1
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.bridge_status import add_status_parser
from launch.fleet import register
from launch.home import Home
from launch.output import EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, emit
from robots.body import BodyProfile
from robots.bridge.adapter import SerialAdapter, UdpAdapter
from robots.bridge.bridge import Bridge, BridgeError, check_key

FLEET_INFO = "bridge.json"  # what depai up tells bridges about the running fleet
ROADS = "roads.json"


@dataclass(frozen=True)
class Enrollment:
    """A robot enrolled in a fleet: its DID, its MQTT login, where its key is, and its datasheet."""

    name: str
    did: str
    address: str
    password: str
    key_file: str
    model: str
    max_speed_mps: float
    payload_kg: float

    def profile(self) -> BodyProfile:
        """The robot's datasheet as the agent reads it (energy figures: a small courier's)."""
        return BodyProfile(self.model, self.max_speed_mps, max_turn_rps=2.0, radius_m=0.35,
                           payload_kg=self.payload_kg, mass_kg=25.0, battery_wh=400.0, wh_per_m=0.02, idle_w=15.0)


def enrolled(state: Path) -> list[Enrollment]:
    """Every robot enrolled in the fleet at ``state``."""
    folder = state / "bridges"
    records = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".document.json"))
    return [Enrollment(**json.loads(path.read_text())) for path in records]


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai bridge enroll | run``."""
    bridge = commands.add_parser("bridge", help="put a real robot into a depai up fleet")
    actions = bridge.add_subparsers(dest="action", required=True, metavar="ACTION")
    enroll = actions.add_parser("enroll", parents=[parent], help="register a robot with a fleet",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    enroll.add_argument("name", help="the robot's name in the fleet")
    enroll.add_argument("--state", help="the fleet's state directory (default: HOME/fleet)")
    enroll.add_argument("--key-file", type=Path, help="the robot's Ed25519 seed, 64 hex characters (default: a new "
                                                      "key in STATE/bridges/NAME.key)")
    enroll.add_argument("--key-type", choices=["ed25519", "secp256k1"], default="ed25519",
                        help="secp256k1: a peaqOS machine ID, did:peaq:0x<EIP-55 address> of the key (then "
                             "--key-file holds its 32-byte private key, 64 hex characters, as EVM wallets export it)")
    enroll.add_argument("--model", default="courier")
    enroll.add_argument("--max-speed", type=float, default=1.5, metavar="M/S")
    enroll.add_argument("--payload", type=float, default=10.0, metavar="KG")
    enroll.set_defaults(handler=cmd_enroll)
    run = actions.add_parser("run", parents=[parent], help="run the bridge for an enrolled robot",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("name", help="the enrolled robot")
    run.add_argument("--state", help="the fleet's state directory (default: HOME/fleet)")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--udp", metavar="HOST:PORT", help="listen for the robot's JSON readings on this UDP address")
    where.add_argument("--serial", metavar="DEVICE", help="the robot's JSON lines on this serial device")
    run.add_argument("--broker", metavar="URL", help="the fleet's broker (default: the one depai up started)")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this long")
    run.set_defaults(handler=cmd_run)
    add_status_parser(actions, parent)


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a robot's name in the fleet: it names its files too


def _checked_name(name: str) -> str:
    """The robot's name, if it is one (letters, digits, '-' and '_', 1 to 64, not starting with '-' or '_')."""
    if not NAME.fullmatch(name):
        raise CliError(f"{name!r} is not a robot name", code="bad_name", exit_code=EXIT_USAGE,
                       hint="use 1 to 64 letters, digits, '-' or '_', starting with a letter or digit "
                            "(for example courier-7)")
    return name


def _state(args: argparse.Namespace, home: Home) -> Path:
    state = Path(args.state).expanduser() if args.state else home.root / "fleet"
    if not (state / "identities.json").exists():
        raise CliError(f"no fleet in {state}", code="no_fleet", exit_code=EXIT_NOT_FOUND,
                       hint="start one with `depai up` (or pass --state DIR)")
    return state


def _seed_file(path: Path, kind: type[Signer] | type[secp256k1.Signer] = Signer) -> Signer | secp256k1.Signer:
    try:
        return kind(bytes.fromhex(path.read_text().strip()))
    except (ValueError, OSError) as err:
        raise CliError(f"{path} does not hold a key: {err}", code="bad_key", exit_code=EXIT_USAGE,
                       hint="a key file holds the 32-byte Ed25519 seed (or, with --key-type secp256k1, the "
                            "secp256k1 private key) as 64 hex characters") from None


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def cmd_enroll(args: argparse.Namespace, home: Home) -> int:
    """Key, DID document and MQTT login for a new robot of the fleet."""
    _checked_name(args.name)
    state = _state(args, home)
    record = state / "bridges" / f"{args.name}.json"
    if record.exists():
        raise CliError(f"a robot named {args.name!r} is enrolled already", code="exists", exit_code=EXIT_REFUSED,
                       hint=f"its record is {record}")
    key_file = args.key_file or state / "bridges" / f"{args.name}.key"
    kind = secp256k1.Signer if args.key_type == "secp256k1" else Signer  # did_peaq gives 0x... for a secp256k1 key
    if args.key_file is None:
        _write_secret(key_file, kind.generate().seed.hex() + "\n")
    signer = _seed_file(key_file, kind)
    seeds = json.loads((state / "identities.json").read_text())
    dao = did_peaq(Signer(bytes.fromhex(seeds["dao"])).public_key)
    did = did_peaq(signer.public_key)
    with DidRegistry(state / "registry.sqlite3") as registry:
        if did in registry:
            raise CliError(f"{did} is registered already", code="exists", exit_code=EXIT_REFUSED,
                           hint="each robot needs its own key")
        identity = register(registry, controller=dao, signer=signer, with_topic_root=True,
                            machine=MachineProfile(args.model, ["delivery", "lidar-2d", "gnss"], args.max_speed,
                                                   args.payload))
    document = state / "bridges" / f"{args.name}.document.json"  # what the robot's birth carries
    document.write_text(json.dumps(identity.document, indent=1))
    enrollment = Enrollment(args.name, did, did.rsplit(":", 1)[1], secrets.token_urlsafe(18), str(key_file.resolve()),
                            args.model, args.max_speed, args.payload)
    _write_secret(record, json.dumps(asdict(enrollment), indent=1))
    out = {"name": args.name, "did": did, "controller": dao, "mqtt_username": enrollment.address,
           "key_file": enrollment.key_file, "record": str(record), "document": str(document)}
    emit(out, as_json=args.json, text="\n".join([
        f"enrolled {args.name}: {did}, controlled by the DAO {dao}",
        f"  key: {enrollment.key_file} (keep it on the robot; never share it)",
        f"  MQTT login: {enrollment.address} (password in {record}); DID document: {document}",
        "  next: (re)start `depai up --speed 1` so the fleet admits it, then "
        f"`depai bridge run {args.name} --udp 127.0.0.1:7700`"]))
    return EXIT_OK


def cmd_run(args: argparse.Namespace, home: Home) -> int:
    """Run the bridge until Ctrl-C (or --for)."""
    _checked_name(args.name)
    state = _state(args, home)
    mine = next((e for e in enrolled(state) if e.name == args.name), None)
    if mine is None:
        raise CliError(f"no robot named {args.name!r} is enrolled in {state}", code="not_enrolled",
                       exit_code=EXIT_NOT_FOUND, hint=f"depai bridge enroll {args.name} --state {state}")
    signer = _seed_file(Path(mine.key_file))
    with DidRegistry(state / "registry.sqlite3") as registry:
        try:
            check_key(registry, mine.did, signer)  # before anything connects
        except BridgeError as err:
            raise CliError(str(err), code=err.code, hint=err.hint, exit_code=EXIT_REFUSED) from None
    info = _fleet_info(state)
    adapter = UdpAdapter(_address(args.udp)) if args.udp else SerialAdapter(args.serial)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DidRegistry(state / "registry.sqlite3") as registry:
            bridge = Bridge(signer, mine.did, adapter.body(mine.profile()), registry, _roads(state),
                            broker_url=args.broker or info["broker"], username=mine.address, password=mine.password,
                            commanders=info["commanders"], map_services=info["map_services"],
                            chargers=[tuple(c) for c in info["chargers"]], state_dir=state / "bridges" / args.name)
            if not args.json:
                print(f"depai bridge: {args.name} ({mine.did}) waiting for the robot's first reading on "
                      f"{args.udp or args.serial} ...", file=sys.stderr, flush=True)
            adapter.wait_reading(timeout=60.0)
            bridge.start()
            if not args.json:
                print(f"depai bridge: {args.name} is online at {args.broker or info['broker']}; Ctrl-C stops",
                      file=sys.stderr, flush=True)
            if args.duration:
                threading.Timer(args.duration, stop.set).start()
            try:
                bridge.run(should_stop=stop.is_set)
            finally:
                bridge.close()
    finally:
        adapter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    agent = bridge.agent
    delivered = sum(1 for _, reached in agent.tasks.history if reached == "delivered")
    emit({"name": args.name, "did": mine.did, "delivered": delivered,
          "refused_commands": dict(agent.refused), "adapter_refused": dict(adapter.refused)}, as_json=args.json,
         text=f"depai bridge: {args.name} stopped; {delivered} delivered; refused from the fleet "
              f"{dict(agent.refused) or 'nothing'}; refused from the robot {dict(adapter.refused) or 'nothing'}")
    return EXIT_OK


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--udp {text}: expected HOST:PORT", code="bad_address", exit_code=EXIT_USAGE)
    return host, int(port)


def _fleet_info(state: Path) -> dict[str, Any]:
    path = state / FLEET_INFO
    if not path.exists():
        raise CliError(f"the fleet in {state} is not running", code="not_running", exit_code=EXIT_NOT_FOUND,
                       hint="start it with `depai up --speed 1`")
    return json.loads(path.read_text())


def _roads(state: Path) -> nx.Graph:
    return nx.node_link_graph(json.loads((state / ROADS).read_text()), edges="edges")


def fleet_info(state: Path, *, broker: str, commanders: list[str], map_services: list[str],
               chargers: list[tuple[float, float]], roads: nx.Graph) -> None:
    """Write what a bridge needs to join the running fleet: its broker, whose commands count, the road graph."""
    (state / ROADS).write_text(json.dumps(nx.node_link_data(roads, edges="edges")))
    (state / FLEET_INFO).write_text(json.dumps({"broker": broker, "commanders": commanders,
                                                 "map_services": map_services, "chargers": chargers}))
