"""``depai bridge``: put a real robot into a ``depai up`` fleet, and run the bridge that speaks for it.

``depai bridge enroll NAME --state DIR`` gives the robot a key (or takes yours,
``--key-file``), registers its DID document in the fleet's registry with the
fleet's DAO as controller, and makes its MQTT login (a broker login limited to
its own topics). A fleet running now on Mosquitto admits it at once; otherwise
the next ``depai up`` on that state does. ``depai bridge revoke NAME`` takes the
login away (ending the robot's session on a running Mosquitto fleet) and keeps
the record, marked revoked, so no later start admits it. ``depai bridge run NAME --state DIR`` then
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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from bus.broker import BrokerError, MqttUser, admit_login, dynsec_command, remove_login
from bus.client import parse_broker_url
from identity import secp256k1
from identity.did import did_peaq
from identity.document import MachineProfile
from identity.http_resolver import HttpResolver
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.broker_info import LiveBroker, broker_addresses, live_broker
from launch.broker_tls import TlsError, client_cert
from launch.bridge_status import add_status_parser
from launch.fleet import register
from launch.home import Home
from launch.output import EXIT_IO, EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, emit
from robots.body import Body, BodyProfile
from robots.bridge.adapter import SerialAdapter, UdpAdapter
from robots.bridge.bridge import Bridge, BridgeError, check_key
from robots.bridge.remote import fetch_fleet

FLEET_INFO = "bridge.json"  # what depai up tells bridges about the running fleet
ROADS = "roads.json"
PINNED = "fleet.json"  # a remote robot's own record of whose signature its fleet's descriptor carries


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
    revoked_at: float | None = None  # wall time of `depai bridge revoke`: the record stays, no start admits it

    def mqtt_user(self) -> MqttUser:
        """The robot's broker login: its address, confined to its own topics, pinned to its address as client id."""
        return MqttUser(self.address, self.password, "robot", client_id=self.address)

    def profile(self) -> BodyProfile:
        """The robot's datasheet as the agent reads it (energy figures: a small courier's)."""
        return BodyProfile(self.model, self.max_speed_mps, max_turn_rps=2.0, radius_m=0.35,
                           payload_kg=self.payload_kg, mass_kg=25.0, battery_wh=400.0, wh_per_m=0.02, idle_w=15.0)


def enrolled(state: Path, *, revoked: bool = False) -> list[Enrollment]:
    """Every robot enrolled in the fleet at ``state`` and not revoked (``revoked``: those revoked too)."""
    folder = state / "bridges"
    records = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".document.json"))
    robots = [Enrollment(**json.loads(path.read_text())) for path in records]
    return [robot for robot in robots if revoked or robot.revoked_at is None]


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai bridge enroll | revoke | run``."""
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
    revoke = actions.add_parser("revoke", parents=[parent], help="take an enrolled robot's login away",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    revoke.add_argument("name", help="the enrolled robot")
    revoke.add_argument("--state", help="the fleet's state directory (default: HOME/fleet)")
    revoke.set_defaults(handler=cmd_revoke)
    run = actions.add_parser("run", parents=[parent], help="run the bridge for an enrolled robot",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("name", help="the enrolled robot")
    run.add_argument("--state", help="the fleet's state directory (default: HOME/fleet); with --fleet, this "
                                     "robot's own (default: HOME/robots/NAME)")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--udp", metavar="HOST:PORT", help="listen for the robot's JSON readings on this UDP address")
    where.add_argument("--serial", metavar="DEVICE", help="the robot's JSON lines on this serial device")
    run.add_argument("--broker", metavar="URL", help="the fleet's broker (default: the one depai up started, or "
                                                     "the one the fleet's descriptor names)")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this long")
    remote = run.add_argument_group("a robot on another machine (everything from the fleet's network address)")
    remote.add_argument("--fleet", metavar="URL", help="the fleet's dashboard, http://HOST:PORT: its descriptor, "
                                                       "road graph and DID resolver; no fleet state needed")
    remote.add_argument("--key-file", type=Path, help="the robot's Ed25519 seed, 64 hex characters")
    remote.add_argument("--did", help="the robot's DID (default: the login file's, else the key's did:peaq)")
    remote.add_argument("--login-file", type=Path, help="the robot's MQTT login as enroll wrote it (its JSON "
                                                        "record), or a file holding just the password")
    remote.add_argument("--mqtt-password", help="the robot's MQTT password (instead of --login-file)")
    remote.add_argument("--ca-file", type=Path, help="the CA certificate the fleet's broker's TLS certificate is "
                                                     "checked against (the operator hands it over)")
    remote.add_argument("--operator", metavar="DID", help="the fleet operator's DID, whose signature the "
                                                          "descriptor must carry (default: pinned on first use)")
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


def _signer_kind(did: str) -> type[Signer] | type[secp256k1.Signer]:
    """The key type a robot's DID says its key file holds: secp256k1 for a peaqOS ``did:peaq:0x...``."""
    return secp256k1.Signer if did.startswith("did:peaq:0x") else Signer


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
        revoked = json.loads(record.read_text()).get("revoked_at") is not None
        raise CliError(f"a robot named {args.name!r} is enrolled already{' (and revoked)' * revoked}", code="exists",
                       exit_code=EXIT_REFUSED, hint=f"its record is {record}" + (
                           "; a revoked robot's record is kept: enroll it again under another name" if revoked else ""))
    live = _live_for_enroll(state)  # before anything is written: a broker that should answer and does not stops it
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
    certificate = _client_cert(state, enrollment)
    admitted, why = _admit(state, live, enrollment)
    addresses = broker_addresses(state) if admitted == "now" else {}
    out = {"name": args.name, "did": did, "controller": dao, "mqtt_username": enrollment.address,
           "key_file": enrollment.key_file, "record": str(record), "document": str(document), "admitted": admitted,
           "note": why, **addresses, "client_cert": [str(p) for p in certificate] if certificate else None}
    where = (f"the running fleet's broker ({addresses['broker']}"
             f"{', TLS ' + addresses['broker_tls'] if addresses.get('broker_tls') else ''}) admitted it now"
             if admitted == "now" else f"{why}: (re)start `depai up --speed 1` so the fleet admits it")
    emit(out, as_json=args.json, text="\n".join([
        f"enrolled {args.name}: {did}, controlled by the DAO {dao}",
        f"  key: {enrollment.key_file} (keep it on the robot; never share it)",
        f"  MQTT login: {enrollment.address} (password in {record}); DID document: {document}",
        *([f"  TLS client certificate: {certificate[0]} (key {certificate[1]})"] if certificate else []),
        f"  {where}",
        f"  next: `depai bridge run {args.name} --udp 127.0.0.1:7700`"]))
    return EXIT_OK


def _live_for_enroll(state: Path) -> LiveBroker | str:
    """The running fleet's broker, checked to take the admin login (a BrokerError here changes nothing), or why
    the robot waits for the next start (``live_broker``'s reason)."""
    live = live_broker(state)
    if live == "unreachable":
        raise CliError(f"the fleet in {state} is running, but its broker does not answer", code="broker_unreachable",
                       exit_code=EXIT_IO, hint="wait until depai up says its robots are online and enroll again; or "
                                               "stop the fleet, enroll, and start it (it admits the robot then)")
    if isinstance(live, LiveBroker) and live.admin is not None:
        try:
            dynsec_command(live.url, live.admin, [{"command": "getDefaultACLAccess"}], timeout=10.0)
        except BrokerError as err:
            raise CliError(f"cannot admit a robot on the running fleet's broker: {err}", code=err.code,
                           exit_code=EXIT_IO, hint=err.hint) from None
    return live


def _admit(state: Path, live: LiveBroker | str, robot: Enrollment) -> tuple[str, str]:
    """Give the robot its login on the running fleet's broker now, when there is one that can: ("now", "") or
    ("next_start", why not)."""
    if live == "not_running":
        return "next_start", f"the fleet in {state} is not running"
    if live == "no_broker" or not isinstance(live, LiveBroker):
        return "next_start", ("the running fleet has no broker of its own (depai up --broker none or URL), or has not "
                              "started it yet")
    if live.admin is None:
        return "next_start", (f"the running fleet's {live.kind or 'broker'} cannot admit a robot while it runs "
                              "(only Mosquitto with its dynamic-security plugin can)")
    try:
        admit_login(live.url, live.admin, robot.mqtt_user())
    except BrokerError as err:
        raise CliError(f"enrolled {robot.name}, but the running fleet's broker did not admit it: {err}",
                       code=err.code, exit_code=EXIT_IO,
                       hint="restart depai up: it admits every enrolled robot when it starts") from None
    return "now", ""


def _client_cert(state: Path, robot: Enrollment) -> tuple[Path, Path] | None:
    """The robot's TLS client certificate from the fleet's own CA, when the fleet has one (STATE/tls/)."""
    try:
        return client_cert(state, robot.name, robot.address)
    except TlsError as err:
        raise CliError(f"enrolled {robot.name}, but no client certificate was made: {err}", code=err.code,
                       exit_code=EXIT_IO, hint=err.hint) from None


def cmd_revoke(args: argparse.Namespace, home: Home) -> int:
    """Mark the robot's enrollment revoked (its record and key stay), and end its login on the running broker."""
    _checked_name(args.name)
    state = _state(args, home)
    record = state / "bridges" / f"{args.name}.json"
    if not record.exists():
        names = ", ".join(robot.name for robot in enrolled(state)) or "none"
        raise CliError(f"no robot named {args.name!r} is enrolled in {state}", code="not_enrolled",
                       exit_code=EXIT_NOT_FOUND, hint=f"the enrolled robots: {names}")
    robot = Enrollment(**json.loads(record.read_text()))
    if robot.revoked_at is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(robot.revoked_at))
        raise CliError(f"{args.name} was revoked already, at {when}", code="revoked", exit_code=EXIT_REFUSED,
                       hint="nothing to do: no start admits it; enroll the robot again under another name")
    live = live_broker(state)
    revoked = Enrollment(**{**asdict(robot), "revoked_at": time.time()})
    temp = record.with_suffix(".revoking")
    _write_secret(temp, json.dumps(asdict(revoked), indent=1))
    os.replace(temp, record)  # from now on no start admits it
    out: dict[str, Any] = {"name": args.name, "did": robot.did, "mqtt_username": robot.address,
                           "record": str(record), "revoked_at": revoked.revoked_at, "session": "none"}
    if isinstance(live, LiveBroker) and live.admin is not None:
        try:
            had = remove_login(live.url, live.admin, robot.mqtt_user())
        except BrokerError as err:
            raise CliError(f"revoked {args.name} (no start admits it), but the running fleet's broker did not remove "
                           f"its login: {err}", code=err.code, exit_code=EXIT_IO,
                           hint="restart depai up now to end its session") from None
        out["session"] = "ended" if had else "none"
        note = ("the running fleet's broker removed its login and ended its session" if had
                else "the running fleet's broker had no login of it")
    elif isinstance(live, LiveBroker) or live == "unreachable":
        what = f"the running fleet's {live.kind} broker" if isinstance(live, LiveBroker) else \
            "the running fleet's broker does not answer, and"
        raise CliError(f"revoked {args.name} (no start admits it), but {what} cannot end its session now",
                       code="session_not_ended", exit_code=EXIT_REFUSED,
                       hint="restart depai up now: the robot stays connected until then (Mosquitto, with its "
                            "dynamic-security plugin, ends a revoked robot's session at once)")
    elif live == "no_broker":
        note = ("the running fleet has no broker of its own: on a broker you gave it (--broker URL), remove the "
                f"login {robot.address} yourself")
    else:
        note = f"the fleet in {state} is not running; no start admits it"
    out["note"] = note
    emit(out, as_json=args.json, text=f"revoked {args.name} ({robot.did}): {note}; its record and key are kept "
                                      f"({record})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, home: Home) -> int:
    """Run the bridge until Ctrl-C (or --for)."""
    _checked_name(args.name)
    if args.fleet:
        return _run_remote(args, home)
    state = _state(args, home)
    mine = next((e for e in enrolled(state, revoked=True) if e.name == args.name), None)
    if mine is None:
        raise CliError(f"no robot named {args.name!r} is enrolled in {state}", code="not_enrolled",
                       exit_code=EXIT_NOT_FOUND, hint=f"depai bridge enroll {args.name} --state {state}")
    if mine.revoked_at is not None:
        raise CliError(f"{args.name} was revoked: the fleet no longer admits it", code="revoked",
                       exit_code=EXIT_REFUSED, hint=f"enroll it again under a new name (depai bridge enroll NAME "
                                                    f"--state {state}); a revoked name stays taken")
    signer = _seed_file(Path(mine.key_file), _signer_kind(mine.did))
    with DidRegistry(state / "registry.sqlite3") as registry:
        try:
            check_key(registry, mine.did, signer)  # before anything connects
        except BridgeError as err:
            raise CliError(str(err), code=err.code, hint=err.hint, exit_code=EXIT_REFUSED) from None
    info = _fleet_info(state)
    broker = args.broker or info["broker"]
    with DidRegistry(state / "registry.sqlite3") as registry:
        return _drive(args, mine.did, mine.profile(), broker, lambda body: Bridge(
            signer, mine.did, body, registry, _roads(state), broker_url=broker, username=mine.address,
            password=mine.password, commanders=info["commanders"], map_services=info["map_services"],
            chargers=[tuple(c) for c in info["chargers"]], state_dir=state / "bridges" / args.name))


def _run_remote(args: argparse.Namespace, home: Home) -> int:
    """The bridge of a robot on another machine: the fleet's descriptor, keys and roads over HTTP, MQTT over TLS."""
    if args.key_file is None:
        raise CliError("--fleet needs the robot's key: --key-file FILE", code="no_key", exit_code=EXIT_USAGE,
                       hint="the key file `depai bridge enroll` made on the fleet's host, copied to this robot")
    login = _login(args)
    named = args.did or login.get("did")
    signer = _seed_file(args.key_file, _signer_kind(named or ""))
    did = named or did_peaq(signer.public_key)
    local = Path(args.state).expanduser() if args.state else home.root / "robots" / args.name
    local.mkdir(parents=True, exist_ok=True)
    pin = local / PINNED
    pinned = json.loads(pin.read_text()).get("operator") if pin.exists() else None
    resolver = HttpResolver(args.fleet)
    try:
        fleet = fetch_fleet(args.fleet, resolver, args.operator or pinned)
        check_key(resolver, did, signer)  # before anything connects
        document = resolver.active(did).document
    except BridgeError as err:
        raise CliError(str(err), code=err.code, hint=err.hint,
                       exit_code=EXIT_NOT_FOUND if err.code == "fleet_unreachable" else EXIT_REFUSED) from None
    newly_pinned = fleet.operator != pinned
    if newly_pinned:
        pin.write_text(json.dumps({"operator": fleet.operator, "fleet": fleet.url}, indent=1))
        if not args.json:
            how = "as given with --operator" if args.operator else "trust on first use; check it with the operator"
            print(f"depai bridge: pinned the fleet's operator {fleet.operator} ({how}) in {pin}", file=sys.stderr,
                  flush=True)
    broker = args.broker or fleet.broker
    if args.ca_file is not None and not broker.startswith("mqtts://"):
        raise CliError(f"--ca-file given, but the fleet's broker {broker} has no TLS", code="no_tls",
                       exit_code=EXIT_USAGE, hint="the fleet's operator must start its broker's TLS listener")
    if not broker.startswith("mqtts://") and not args.json:
        print(f"depai bridge: warning: {broker} is not TLS; the robot's password crosses the network in the clear",
              file=sys.stderr, flush=True)
    username = login.get("username") or login.get("mqtt_username") or login.get("address") or did.rsplit(":", 1)[1]
    return _drive(args, did, _profile(document), broker, lambda body: Bridge(
        signer, did, body, resolver, fleet.roads, broker_url=broker, username=username, password=login["password"],
        commanders=fleet.commanders, map_services=fleet.map_services, chargers=fleet.chargers,
        state_dir=local, ca_file=args.ca_file),
        said={"fleet": fleet.url, "operator": fleet.operator, "pinned": newly_pinned,
              "broker": parse_broker_url(broker).display})


def _drive(args: argparse.Namespace, did: str, profile: BodyProfile, broker: str,
           make: Callable[[Body], Bridge], said: dict[str, Any] | None = None) -> int:
    """Wait for the robot's first reading, connect as it, run until Ctrl-C (or --for), say what it did (and
    ``said``, in the JSON summary)."""
    adapter = UdpAdapter(_address(args.udp)) if args.udp else SerialAdapter(args.serial)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bridge = make(adapter.body(profile))
        if not args.json:
            print(f"depai bridge: {args.name} ({did}) waiting for the robot's first reading on "
                  f"{args.udp or args.serial} ...", file=sys.stderr, flush=True)
        adapter.wait_reading(timeout=60.0)
        bridge.start()
        if not args.json:
            print(f"depai bridge: {args.name} is online at {parse_broker_url(broker).display}; Ctrl-C stops",
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
    emit({"name": args.name, "did": did, **(said or {}), "delivered": delivered,
          "market_verified": dict(bridge.gate.market_verified),
          "refused_commands": dict(agent.refused), "adapter_refused": dict(adapter.refused)}, as_json=args.json,
         text=f"depai bridge: {args.name} stopped; {delivered} delivered; refused from the fleet "
              f"{dict(agent.refused) or 'nothing'}; refused from the robot {dict(adapter.refused) or 'nothing'}")
    return EXIT_OK


def _login(args: argparse.Namespace) -> dict[str, Any]:
    """The robot's MQTT login: --mqtt-password, or the login file (enroll's JSON record, or a bare password)."""
    if args.mqtt_password:
        return {"password": args.mqtt_password}
    if args.login_file is None:
        raise CliError("--fleet needs the robot's MQTT login: --login-file FILE or --mqtt-password", code="no_login",
                       exit_code=EXIT_USAGE, hint="the operator gets it from `depai bridge enroll` on the fleet's host")
    try:
        text = args.login_file.read_text().strip()
    except OSError as err:
        raise CliError(f"cannot read {args.login_file}: {err}", code="no_login", exit_code=EXIT_USAGE) from None
    login = json.loads(text) if text.startswith("{") else {"password": text}
    if not isinstance(login, dict) or not isinstance(login.get("password"), str) or not login["password"]:
        raise CliError(f"{args.login_file} holds no password", code="no_login", exit_code=EXIT_USAGE,
                       hint="a login file is enroll's JSON record of the robot, or the password alone")
    return login


def _profile(document: dict[str, Any]) -> BodyProfile:
    """The robot's datasheet from the machine profile of its DID document (energy figures: a small courier's)."""
    machine = document.get("machine") or {}
    return BodyProfile(str(machine.get("model", "courier")), float(machine.get("max_speed_mps", 1.5)),
                       max_turn_rps=2.0, radius_m=0.35, payload_kg=float(machine.get("payload_kg", 10.0)),
                       mass_kg=25.0, battery_wh=400.0, wh_per_m=0.02, idle_w=15.0)


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
