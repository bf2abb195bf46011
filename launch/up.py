"""``depai up``: the whole fleet in one command: broker, ledger, map, marketplace, DAO, robots and dashboard.

Everything the fleet is lives in one state directory (``HOME/fleet`` unless
``--state`` says otherwise): the identities' keys, the DID registry, the ledger
(SQLite there, or PostgreSQL by ``--db``), the DAO inside it, and the broker's
data. Running ``depai up`` again resumes from it: the same DAO, members and
robots, the same balances, open tasks announced again. The DAO owns the robots
(each robot's DID document names the DAO as its controller) and earns what they
earn; customers post tasks at ``--orders-per-min``; members watch and vote in the
dashboard. A TOML file (``--config``) takes the same keys as the options.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


from bus.broker import CLIENT_CERTS, BrokerError, check_tls_mode, choose_kind, leftover_broker
from bus.ingest import Ingest
from dao.dao import Dao
from dao.lifecycle import Params
from dao.split import SplitRules
from dashboard.revenue import RevenueBook
from dashboard.server import DashboardError, DashboardServer
from dashboard.live import city_layout
from dashboard.telemetry import TelemetryBoard
from dashboard.resolver import ResolverView, SignedDescriptor
from dashboard.view import Live
from identity.did import did_peaq
from identity.envelope import EnvelopeVerifier
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.bridge_command import Enrollment, enrolled, fleet_info
from launch.bridge_status import dashboard_info
from launch.broker_info import DEFAULT_BROKER_PORT, FLEET_LOCK, broker_addresses
from launch.broker_tls import loopback
from launch.dao_command import DEFAULT_SPLIT
from launch.dao_hooks import FleetHooks
from launch.dao_service import DaoService
from launch.descriptor import FleetDescriptor, public_broker, roads_digest, roads_json
from launch.fleet import FleetConfig, Identity, SimFleet, SurveyRequests, run
from launch.home import Home, registry_target
from launch.identities import IdentityStore
from bus.router import Router
from launch.links import MqttLink, fleet_router, open_link
from launch.serve import BROKER_FILE
from launch.witness_command import CheckpointPublisher
from launch.output import EXIT_CONFLICT, EXIT_OK, EXIT_USAGE, CliError, emit, status_line
from ledger.db import DatabaseError, open_database
from ledger.journal import MAX_AMOUNT, Ledger, LedgerError
from marketplace.dispatch import Dispatcher
from marketplace.market import MIN_BOND, Marketplace
from marketplace.policy import MarketPolicy
from marketplace.service import MarketService
from sim.customers import CustomerOrders, Customers
from sim.demand import Demand
from spatial.service import MapService

CURRENCY = "EUR"
CUSTOMERS = 3
FUNDS = 1_000_000  # each customer's deposit, in cents (once, when the fleet is founded)
BOND = 5_000  # each robot's bond, posted by the DAO
MEMBERS = {"member-1": 500, "member-2": 300, "member-3": 200}  # the founding members' voting shares
GOVERNANCE = Params(voting_delay_s=30.0, voting_period_s=1_800.0, quorum_bps=4_000, timelock_s=60.0,
                    grace_period_s=86_400.0)  # in the fleet's (simulated) seconds
STEPS = 5


_KINDS: dict[str, type | tuple[type, ...]] = {"int": int, "int | None": (int, type(None)), "float": (int, float),
                                              "float | None": (int, float, type(None)), "str": str,
                                              "str | None": (str, type(None))}


@dataclass(frozen=True)
class UpConfig:
    """What ``depai up`` runs: options, else the TOML file's keys, else these defaults."""

    robots: int | None = None  # founding: 10; resuming: the robots the fleet has (more if asked)
    city: int | None = None  # founding: 6 blocks a side; resuming: the fleet's own city
    seed: int | None = None  # founding: 7; resuming: the fleet's own
    broker: str = "auto"
    db: str | None = None
    speed: float = 5.0
    port: int = 8080
    host: str = "127.0.0.1"
    orders_per_min: float | None = None
    scan_hz: float = 0.5  # 10 robots at 5x real time: what one ingest thread fuses with room to spare
    state: str | None = None
    duration: float = 0.0  # simulated seconds; 0: until Ctrl-C
    bond: int = BOND  # what the DAO posts for each robot on the marketplace, in cents
    governance: Params = GOVERNANCE  # the DAO's rules when it is founded (later, only its proposals change them)
    ingest_workers: int = 0  # 0: by the fleet's size and this machine's cores
    sim_shards: int = 0  # 0: likewise
    ingest_of: int = 0  # ingest workers in all, with those other hosts run (0: only this host's)
    broker_host: str = "127.0.0.1"  # where the broker depai up starts listens (0.0.0.0: for other hosts too)
    broker_port: int = DEFAULT_BROKER_PORT  # 0: any free port ($DEPAI_BROKER_PORT changes the default)
    broker_tls: bool | None = None  # a TLS listener too; None: when broker_host is not loopback
    broker_tls_port: int | None = None  # None: broker_port + 1 (any free port when broker_port is 0)
    tls_cert: str | None = None  # the TLS listener's certificate chain, key and CA (PEM), all three or none:
    tls_key: str | None = None  # none, and the fleet makes its own CA and server certificate in STATE/tls/
    tls_ca: str | None = None
    tls_client_certs: str = "off"  # off, optional (amqtt) or required (Mosquitto): see bus.broker.TlsListener
    witness: bool = False  # the market pays a receipt only once peers' lidar witnessed it (docs/marketplace.md)

    @property
    def tls(self) -> bool:
        """Whether the broker depai up starts gets a TLS listener."""
        return self.broker_tls if self.broker_tls is not None else not loopback(self.broker_host)

    @property
    def tls_port(self) -> int:
        """The TLS listener's port (0: any free one)."""
        if self.broker_tls_port is not None:
            return self.broker_tls_port
        return self.broker_port + 1 if self.broker_port else 0

    def check(self) -> None:
        """Refuse settings that cannot run, saying which and why."""
        for f in fields(self):
            value, kinds = getattr(self, f.name), _KINDS.get(str(f.type))
            if kinds is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                key = "for" if f.name == "duration" else f.name.replace("_", "-")
                raise CliError(f"{key} must be {str(f.type).replace(' | None', '')}, not {value!r}",
                               code="bad_config", hint="check the option or the --config file", exit_code=EXIT_USAGE)
        if self.broker != "none" and self.speed == 0:
            raise CliError("a fleet of services keeps one clock and needs a speed", code="bad_time",
                           hint="give --speed (for example 20), or --broker none to run flat out in one process",
                           exit_code=EXIT_USAGE)
        if (self.robots is not None and self.robots < 1) or (self.city is not None and self.city < 1):
            raise CliError("--robots and --city must be at least 1", code="bad_size", exit_code=EXIT_USAGE)
        if self.speed < 0 or self.duration < 0:
            raise CliError("--speed and --for must not be negative", code="bad_time",
                           hint="--speed 0 runs as fast as possible (with --broker none); no --for runs until Ctrl-C",
                           exit_code=EXIT_USAGE)
        if self.ingest_of and self.ingest_of < max(1, self.ingest_workers):
            raise CliError(f"--ingest-of {self.ingest_of} is fewer than this host's --ingest-workers",
                           code="bad_size", hint="--ingest-of counts every host's workers", exit_code=EXIT_USAGE)
        if self.ingest_workers < 0 or self.sim_shards < 0:
            raise CliError("--ingest-workers and --sim-shards must not be negative", code="bad_size",
                           hint="leave them out to size them by the fleet", exit_code=EXIT_USAGE)
        if not 0 <= self.broker_port <= 65_535:
            raise CliError(f"--broker-port {self.broker_port} is not a TCP port", code="bad_port", exit_code=EXIT_USAGE)
        self._check_tls()
        if self.bond != 0 and not MIN_BOND <= self.bond <= MAX_AMOUNT:
            raise CliError(f"bond {self.bond} is neither 0 nor from {MIN_BOND} to {MAX_AMOUNT} cents", code="bad_config",
                           hint=f"a robot's bond is at least {MIN_BOND} cents, so a failure's slash never rounds to "
                                "nothing (0: robots post no bond and may not bid)", exit_code=EXIT_USAGE)
        if not isinstance(self.witness, bool):
            raise CliError(f"witness must be true or false, not {self.witness!r}", code="bad_config",
                           hint="check the option or the --config file", exit_code=EXIT_USAGE)
        if self.witness and self.broker == "none":
            raise CliError("--witness is the market service's rule: it needs the fleet's services", code="bad_config",
                           hint="drop --broker none (the map service's sightings reach the market over the broker)",
                           exit_code=EXIT_USAGE)
        if not 0 <= self.port <= 65_535:
            raise CliError(f"--port {self.port} is not a TCP port", code="bad_port", exit_code=EXIT_USAGE)

    def _check_tls(self) -> None:
        """The TLS options: a port, a client certificate mode, and your files all three or none, each there."""
        if self.broker_tls is not None and not isinstance(self.broker_tls, bool):
            raise CliError(f"broker-tls must be true or false, not {self.broker_tls!r}", code="bad_config",
                           hint="check the option or the --config file", exit_code=EXIT_USAGE)
        if self.tls and (not 0 <= self.tls_port <= 65_535 or (self.tls_port and self.tls_port == self.broker_port)):
            raise CliError(f"--broker-tls-port {self.tls_port} is not a TCP port apart from --broker-port",
                           code="bad_port", hint="give another port, or 0 for any free one", exit_code=EXIT_USAGE)
        if self.tls_client_certs not in CLIENT_CERTS:
            raise CliError(f"--tls-client-certs {self.tls_client_certs!r} is not one of {', '.join(CLIENT_CERTS)}",
                           code="bad_tls", exit_code=EXIT_USAGE)
        given = {option: path for option, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                                                   ("--tls-ca", self.tls_ca)) if path is not None}
        missing = [option for option in ("--tls-cert", "--tls-key", "--tls-ca") if option not in given]
        if given and missing:
            raise CliError(f"{', '.join(given)} given without {', '.join(missing)}", code="bad_tls",
                           hint="give the server's certificate chain, its key and the CA robots check it against "
                                "(PEM files) together, or none: the fleet makes its own", exit_code=EXIT_USAGE)
        for option, path in given.items():
            if not Path(path).expanduser().is_file():
                raise CliError(f"{option} {path}: no such file", code="bad_tls", exit_code=EXIT_USAGE)
        if (given or self.broker_tls or self.tls_client_certs != "off") and (self.broker == "none"
                                                                              or "://" in self.broker):
            raise CliError("the TLS options are for the broker depai up starts", code="bad_tls",
                           hint="drop them with --broker none or --broker URL (give your broker its own TLS)",
                           exit_code=EXIT_USAGE)


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai up``."""
    up = commands.add_parser("up", parents=[parent], help="start a whole fleet with its dashboard",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("--config", type=Path, metavar="FILE", help="a TOML file with any of the keys below")
    up.add_argument("--robots", type=int, help="robots when the fleet is founded (default 10; a resumed fleet "
                                               "keeps the ones it has)")
    up.add_argument("--city", type=int, help="city size in blocks per side (default 6)")
    up.add_argument("--seed", type=int, help="the city, spawn points and orders (default 7)")
    up.add_argument("--broker", metavar="KIND|URL|none", help="auto (default), mosquitto or amqtt to start one; "
                                                             "an mqtt:// URL to use yours; none: in process")
    up.add_argument("--broker-host", metavar="ADDRESS", help="where the broker it starts listens (default "
                                                             "127.0.0.1; 0.0.0.0 lets other hosts join)")
    up.add_argument("--broker-port", type=int, metavar="PORT", help=f"the port of the broker it starts (default "
                                                                  f"{DEFAULT_BROKER_PORT}, or $DEPAI_BROKER_PORT; "
                                                                  "0: any free port)")
    up.add_argument("--broker-tls", action=argparse.BooleanOptionalAction, default=None,
                    help="a second, TLS listener for robots on other hosts (default: on when --broker-host is not "
                         "loopback)")
    up.add_argument("--broker-tls-port", type=int, metavar="PORT", help="the TLS listener's port (default: "
                                                                      "--broker-port + 1)")
    up.add_argument("--tls-cert", metavar="PEM", help="the TLS listener's certificate chain (with --tls-key and "
                                                      "--tls-ca; default: made once in STATE/tls/ by a CA of the "
                                                      "fleet's own)")
    up.add_argument("--tls-key", metavar="PEM", help="the key of --tls-cert")
    up.add_argument("--tls-ca", metavar="PEM", help="the CA robots check --tls-cert against (and that signs client "
                                                    "certificates)")
    up.add_argument("--tls-client-certs", choices=CLIENT_CERTS, help="off (default): robots log in with their "
                                                                     "password; required: and a certificate from the "
                                                                     "CA (Mosquitto); optional: checked when shown "
                                                                     "(amqtt)")
    up.add_argument("--witness", action=argparse.BooleanOptionalAction, default=None,
                    help="pay a receipt only when other robots' lidar witnessed the delivery (default: off, so a robot "
                         "no simulated peer can see, such as a real one on another host, is paid on its own trail)")
    up.add_argument("--db", metavar="URL", help="the ledger: a postgresql:// URL (default: SQLite in the state dir)")
    up.add_argument("--speed", type=float, help="simulated seconds per real second (default 5; 0: flat out, in one "
                                                     "process with --broker none)")
    up.add_argument("--for", dest="duration", type=float, metavar="SECONDS",
                    help="run this many simulated seconds, then stop and print a summary (default: until Ctrl-C)")
    up.add_argument("--port", type=int, help="the dashboard's port (default 8080; 0: any free port)")
    up.add_argument("--host", help="the dashboard's address (default 127.0.0.1)")
    up.add_argument("--orders-per-min", type=float, metavar="N", help="customer orders per simulated minute "
                                                                     "(default: robots / 4)")
    up.add_argument("--scan-hz", type=float, metavar="HZ", help="lidar scans per robot per second (default 0.5)")
    up.add_argument("--state", metavar="DIR", help="where the fleet lives (default: HOME/fleet)")
    up.add_argument("--ingest-workers", type=int, metavar="N", help="ingest processes, each owning a share of the "
                                                                    "robots' partitions (default: by fleet size)")
    up.add_argument("--ingest-of", type=int, metavar="N", help="ingest workers in all, counting those other hosts "
                                                               "run with `depai serve ingest --index I --of N`")
    up.add_argument("--sim-shards", type=int, metavar="N", help="simulator processes, each running a share of the "
                                                                "robots (default: by fleet size)")
    up.set_defaults(handler=cmd_up)


def load_config(args: argparse.Namespace) -> UpConfig:
    """Defaults, overridden by the TOML file, overridden by the options given."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(UpConfig)} - {"governance"}
    if os.environ.get("DEPAI_BROKER_PORT"):  # a default of this machine's (options and the file override it)
        try:
            values["broker_port"] = int(os.environ["DEPAI_BROKER_PORT"])
        except ValueError:
            raise CliError(f"DEPAI_BROKER_PORT={os.environ['DEPAI_BROKER_PORT']!r} is not a port", code="bad_port",
                           hint="set it to a TCP port, or 0 for any free one", exit_code=EXIT_USAGE) from None
    if args.config is not None:
        try:
            text = args.config.read_text()
            table = tomllib.loads(text)
        except OSError as err:
            raise CliError(f"cannot read {args.config}: {err.strerror}", code="no_config",
                           exit_code=EXIT_USAGE) from None
        except tomllib.TOMLDecodeError as err:
            raise CliError(f"{args.config} is not valid TOML: {err}", code="bad_config", exit_code=EXIT_USAGE) from None
        table = {key.replace("-", "_"): value for key, value in table.items()}
        table["duration"] = table.pop("for", table.get("duration", 0.0))
        unknown = sorted(set(table) - names)
        if unknown:
            raise CliError(f"{args.config}: unknown keys {', '.join(unknown)}", code="bad_config",
                           hint=f"the keys are {', '.join(sorted(names - {'duration'}) + ['for'])}",
                           exit_code=EXIT_USAGE)
        values.update(table)
    values.update({name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    try:
        config = UpConfig(**values)
    except TypeError as err:
        raise CliError(f"bad configuration: {err}", code="bad_config", exit_code=EXIT_USAGE) from None
    config.check()
    return config


class _Stop:
    """Ctrl-C (or SIGTERM) asks the run to stop cleanly; a second one stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, *_: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()


def cmd_up(args: argparse.Namespace, home: Home) -> int:
    """Start the fleet, run it until Ctrl-C (or ``--for``), stop it cleanly and report."""
    config = load_config(args)
    state = Path(config.state).expanduser() if config.state else home.root / "fleet"
    default_state = config.state is None
    say = _Steps(quiet=args.json)
    stop = _Stop()
    preflight(config, state)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            lock_state(state, stack)
            (state / BROKER_FILE).unlink(missing_ok=True)  # the last run's broker: this run writes its own
            if config.broker == "none":
                fleet_up = start(config, state, stack, say)
                fleet_up.default_state = default_state
                summary = _run(fleet_up, config, stop, quiet=args.json)
            else:
                from launch.services_up import up_services  # it builds on this module's founding
                summary = up_services(config, state, stack, say, stop.event, quiet=args.json,
                                      default_state=default_state)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    emit(summary, as_json=args.json, text=_text(summary))
    return EXIT_OK


def preflight(config: UpConfig, state: Path | None = None) -> None:
    """Check what can be checked before anything is written: the database answers, the ports are free (those a
    broker this state's last, killed run left behind holds are: the broker's start ends it first)."""
    if config.db:
        try:
            open_database(config.db, create=False).close()
        except DatabaseError as err:
            raise CliError(f"cannot open the ledger: {err}", code="bad_db",
                           hint="check --db (a postgresql:// URL of a server that runs)",
                           exit_code=EXIT_USAGE) from None
    ports = [("the dashboard", config.host, config.port, "--port")]
    if config.broker != "none" and "://" not in config.broker:
        if config.tls:
            try:
                kind, _ = choose_kind(config.broker)
                check_tls_mode(kind, config.tls_client_certs)
            except BrokerError as err:
                raise CliError(str(err), code=err.code, hint=err.hint, exit_code=EXIT_USAGE) from None
        if state is None or leftover_broker(state / "broker") is None:
            ports.append(("the broker", config.broker_host, config.broker_port, "--broker-port"))
            if config.tls:
                ports.append(("the broker's TLS listener", config.broker_host, config.tls_port, "--broker-tls-port"))
    for what, host, port, option in ports:
        if port:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a last run's closed connections
                try:
                    probe.bind((host, port))
                except OSError as err:
                    raise CliError(f"{what}'s port {host}:{port} cannot be used: {err.strerror}", code="port_taken",
                                   hint=f"pass {option} 0 to take any free port (or {option} PORT for another), "
                                        "or stop what holds it (another depai up?)", exit_code=EXIT_USAGE) from None


def lock_state(state: Path, stack: contextlib.ExitStack) -> None:
    """Hold the fleet's state for this run: a second ``depai up`` on it is refused before it changes anything."""
    state.mkdir(parents=True, exist_ok=True)
    handle = open(state / FLEET_LOCK, "a+b")  # noqa: SIM115 - held until the run ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CliError(f"the fleet in {state} is running already (another depai up holds it)", code="state_in_use",
                       hint="stop that one first (Ctrl-C), or give this one another --state",
                       exit_code=EXIT_CONFLICT) from None
    stack.callback(handle.close)


class _Steps:
    """Numbered progress lines on stderr while the fleet starts."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet, self.done = quiet, 0

    def __call__(self, text: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"depai up [{self.done}/{STEPS}] {text}", file=sys.stderr, flush=True)


@dataclass
class RunningFleet:
    """Everything one ``depai up`` started; ``start()`` builds it, ``drive()`` runs it."""

    state: Path
    run_no: int
    fleet: SimFleet
    ledger: Ledger
    dao: Dao
    market: MarketService
    dao_service: DaoService
    shared_map: MapService
    dispatcher: Dispatcher
    ingest: Ingest
    tally: Router
    link: Any
    where: str
    dashboard: DashboardServer
    demand: Demand
    book: RevenueBook  # the dashboard's own projection of the ledger, shared by the status line
    surveys: SurveyRequests
    orders: CustomerOrders  # the simulated customers' orders, signed and posted on the market service
    memory: _Memory | None = None  # the fleet's run counter and clock, saved as it runs
    default_state: bool = False  # started in HOME/fleet: plain `depai up` resumes it

    def drive(self, duration_s: float, *, speed: float = 0.0, progress: Callable[[float], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> tuple[float, float]:
        """Run the fleet for ``duration_s`` simulated seconds, then settle what is in flight; (sim s, wall s)."""
        checkpoints = [CheckpointPublisher(self.ledger)] if isinstance(self.link, MqttLink) else []  # for witnesses
        report = run(self.fleet, self.link, duration_s=duration_s, speed=speed, dispatcher=self.dispatcher,
                     demand=self.demand, orders=self.orders, progress=progress, should_stop=should_stop,
                     services=[self.shared_map, self.surveys, self.market, self.dao_service, *checkpoints])
        self.link.settle()
        self.market.step()  # receipts that arrived while the link settled are settled too
        self.dao.distribute(f"run{self.run_no}-{self.fleet.world.time_s:.0f}")
        self.ledger.checkpoint()
        for publisher in checkpoints:
            self.link.publish_services(publisher.step(now=True))
        return report.sim_s, report.wall_s

    def earned(self) -> int:
        """What the DAO's robots have earned in all runs (read incrementally from the ledger)."""
        self.book.refresh()
        return int(self.book.summary()["earned"])


@dataclass
class Founding:
    """The fleet's identities and terms, loaded or made before anything runs (both ways of running share it)."""

    state: Path
    memory: _Memory
    run_no: int
    registry: DidRegistry
    store: IdentityStore
    operator: Identity
    dao: Identity
    services: dict[str, Identity]
    customers: list[Identity]
    members: dict[str, int]
    ledger_url: str
    ledger_key: Signer
    robots: int
    city: int
    seed: int
    bridged: list[Enrollment]

    @property
    def commanders(self) -> list[str]:
        """Whose signed commands robots obey: the dispatcher's and the marketplace's."""
        return [self.services["dispatcher"].did, self.services["market"].did]


def found(config: UpConfig, state: Path, stack: contextlib.ExitStack, say: Callable[[str], None]) -> Founding:
    """Load the fleet in ``state`` (or found it): its run number, identities, city and robots."""
    state.mkdir(parents=True, exist_ok=True)
    memory = _Memory(state / "fleet.json")
    run_no = memory.runs + 1
    registry = stack.enter_context(DidRegistry(registry_target(state, config.db)))
    store = IdentityStore(state / "identities.json", registry)
    founded = bool(store.names("dao"))
    say(f"{'resuming the fleet' if founded else 'founding a new fleet'} in {state} (run {run_no})")
    operator = store.enroll("operator")
    dao_id = store.enroll("dao")
    services = {name: store.enroll(name, controller=operator.did) for name in ("dispatcher", "map", "market")}
    customers = [store.enroll(f"customer-{i}") for i in range(1, CUSTOMERS + 1)]
    members = {store.enroll(name).did: shares for name, shares in MEMBERS.items()}
    ledger_url = config.db or f"sqlite:///{state / 'ledger.sqlite3'}"
    ledger_key = store.enroll("ledger", controller=operator.did).signer
    robots = max(config.robots or 0, len(store.names("robot-"))) if founded else config.robots or 10
    city, seed = memory.place(config.city, config.seed)
    return Founding(state, memory, run_no, registry, store, operator, dao_id, services, customers, members,
                    ledger_url, ledger_key, robots, city, seed, enrolled(state))


def describe(f: Founding, config: UpConfig, *, origin: tuple[float, float], shards: int, broker: str | None,
             chargers: list[tuple[float, float]], roads: bytes, broker_tls: str | None = None) -> FleetDescriptor:
    """The run's descriptor: its clock from ``origin`` (fleet time, wall time), its city, its services' DIDs, the
    ``broker`` (and ``broker_tls``) robots on other hosts use (no login), the chargers and the road graph's served
    bytes."""
    return FleetDescriptor(
        run=f.run_no, origin_fleet_s=origin[0], origin_wall_s=origin[1], speed=config.speed, city=f.city, seed=f.seed,
        robots=f.robots, shards=shards, scan_hz=config.scan_hz,
        orders_per_min=config.orders_per_min if config.orders_per_min is not None else f.robots / 4.0,
        currency=CURRENCY, bond=config.bond, operator=f.operator.did, dao=f.dao.did, market=f.services["market"].did,
        map=f.services["map"].did, dispatcher=f.services["dispatcher"].did, ledger=did_peaq(f.ledger_key.public_key),
        broker=broker, broker_tls=broker_tls, chargers=tuple(chargers), roads_sha256=roads_digest(roads))


def open_ledger(url: str, key: Signer | None, clock: Callable[[], float]) -> Ledger:
    """The fleet's ledger, or a CliError that says what to check."""
    try:
        return Ledger.open(url, key, clock=clock)
    except (DatabaseError, LedgerError) as err:
        raise CliError(f"cannot open the ledger: {err}", code="bad_db",
                       hint="check --db, or start afresh with another --state", exit_code=EXIT_USAGE) from None


def resume_after(memory: _Memory, ledger: Ledger) -> float:
    """The fleet time a resumed run starts after: past the clock it saved as it ran and past the ledger's last
    entry (a killed run may have saved its clock seconds before its last settlement)."""
    size = ledger.size()
    last = ledger.entry(size).at_ms / 1000 if size else 0.0
    return max(memory.clock_s, last) + 1.0


def settle_terms(f: Founding, config: UpConfig, market: Marketplace, dao: Dao, robot_dids: list[str]) -> None:
    """The DAO (founded once), the customers' deposits, and a bond for every robot new to the marketplace."""
    if not _exists(dao):
        dao.create(f.members, config.governance, SplitRules.of(DEFAULT_SPLIT))
    for customer in f.customers:
        market.fund(customer.did, FUNDS, CURRENCY, key=customer.did)
    registered = set(market.robots())  # robots of earlier runs, and those the DAO bought (bonded by the treasury)
    for did in robot_dids + [robot.did for robot in f.bridged]:
        if did not in registered:  # the DAO's bond for a robot new to the market, deposited once
            market.fund(f.dao.did, config.bond, CURRENCY, key=f"bond-for:{did}", role="owner")
            market.register_robot(did, f.dao.did, config.bond, CURRENCY)


def start(config: UpConfig, state: Path, stack: contextlib.ExitStack, say: Callable[[str], None]) -> RunningFleet:
    """Build every part of the fleet in this process (``--broker none``: lockstep, repeatable for a seed)."""
    f = found(config, state, stack, say)
    memory, run_no, registry, store, operator, dao_id = f.memory, f.run_no, f.registry, f.store, f.operator, f.dao
    services, customers, ledger_url = f.services, f.customers, f.ledger_url
    robots, city, seed = f.robots, f.city, f.seed
    commanders = f.commanders
    say(f"building a {city}x{city}-block city with {robots} robots owned by the DAO {dao_id.did[:24]}...")
    fleet = SimFleet(FleetConfig(robots=robots, seed=seed, blocks=city, scan_hz=config.scan_hz,
                                 orders_per_min=config.orders_per_min),
                     registry, controller=dao_id.did, commanders=commanders, map_services=[services["map"].did],
                     enroll=store.enroll)
    stack.callback(fleet.close)
    clock = fleet.clock
    ledger = open_ledger(ledger_url, f.ledger_key, clock)
    stack.callback(ledger.close)
    clock.epoch_s = max(clock.epoch_s, resume_after(memory, ledger) - fleet.world.time_s)  # time never goes back
    memory.save(run_no, clock)  # the city is the fleet's from now on, even if this run is killed
    market = Marketplace(ledger, services["market"].envelope_signer(clock), clock=clock)
    dao = Dao(ledger, dao_id.did, currency=CURRENCY, clock=clock,
              hooks=FleetHooks(fleet, market, registry, dao_id.did, bond=config.bond, currency=CURRENCY))
    settle_terms(f, config, market, dao, [agent.did for agent in fleet.agents])
    bridged = f.bridged
    say(f"ledger {_redact(ledger_url)}: {ledger.size()} entries; DAO of {len(dao.members())} members")

    verifier = EnvelopeVerifier(registry, clock=clock)
    policy = MarketPolicy()
    market_service = MarketService(market, verifier, clock=clock, policy=policy, currency=CURRENCY)
    market_service.resume()
    orders = CustomerOrders(Customers([c.envelope_signer(clock) for c in customers], policy.quote, clock=clock,
                                      currency=CURRENCY, task_life_s=policy.task_life_s), market_service)
    dao_service = DaoService(dao, ledger, clock=clock)
    dispatcher = Dispatcher(services["dispatcher"].envelope_signer(clock), clock=clock)
    real = {robot.did for robot in bridged}
    shared_map = MapService(services["map"].envelope_signer(clock), fleet.city.road_graph(),
                            bounds=fleet.city.bounds(), clock=clock,
                            level_of=lambda did: "fleet" if did in fleet.dids or did in real else "self")
    roads = fleet.city.road_graph()  # read by bridges and the dashboard's map
    board = TelemetryBoard()
    tally = fleet_router(dispatcher, shared_map, market_service).declare(TelemetryBoard.KINDS, board.observe)
    ingest = Ingest(registry, tally, clock=clock)
    link, where = open_link(config.broker, fleet, ingest, state, stack,
                            robots=[robot.mqtt_user() for robot in bridged])
    if isinstance(link, MqttLink):  # what a bridge needs to join: the broker, whose commands count, the roads
        fleet_info(state, broker=link.url, commanders=commanders, map_services=[services["map"].did],
                   chargers=fleet.chargers, roads=roads)
    say(f"{len(fleet.agents)} simulated robots online{f', {len(bridged)} real ones admitted' if bridged else ''}, "
        f"{where}")

    view_ledger = Ledger.open(ledger_url, None)  # the dashboard's own connection, read-only but for votes
    stack.callback(view_ledger.close)
    live = Live(telemetry=board, verifier=EnvelopeVerifier(registry),
                documents=lambda did: registry.active(did).document,
                counters=lambda: _counters(fleet, ingest, market_service), map=shared_map,
                map_layout=city_layout(fleet.city, roads), ledger_did=did_peaq(f.ledger_key.public_key))
    served_roads = roads_json(roads)  # the descriptor, signed by the operator, for the dashboard to serve
    own = broker_addresses(state) if isinstance(link, MqttLink) else {"broker": None, "broker_tls": None}
    descriptor = describe(f, config, origin=(clock(), time.time()), shards=1, chargers=fleet.chargers,
                          broker=own["broker"] or (public_broker(link.url) if isinstance(link, MqttLink) else None),
                          broker_tls=own["broker_tls"], roads=served_roads)
    signed = SignedDescriptor.of(descriptor.seal(operator.envelope_signer(clock)), operator.did, served_roads)
    view = ResolverView(view_ledger, Dao(view_ledger, dao_id.did, currency=CURRENCY, clock=clock),
                        Marketplace(view_ledger, None), live,
                        names=lambda: {**store.directory(), **{robot.did: robot.name for robot in bridged}},
                        registry=registry, descriptor=lambda: signed)
    try:
        dashboard = DashboardServer(view, host=config.host, port=config.port).start()
    except DashboardError as err:
        raise CliError(str(err), code="port_taken", hint="pass --port 0 to take any free port",
                       exit_code=EXIT_USAGE) from None
    stack.callback(dashboard.stop)
    dashboard_info(state, dashboard.url)  # where `depai bridge status` asks
    say(f"dashboard at {dashboard.url}  (member keys: {state / 'identities.json'}; Ctrl-C stops)")
    demand = Demand(fleet.city, seed * 1_000 + run_no, fleet.config.order_rate, prefix=f"run{run_no}-order")
    stack.callback(memory.save, run_no, clock)
    return RunningFleet(state, run_no, fleet, ledger, dao, market_service, dao_service, shared_map, dispatcher, ingest,
                        tally, link, where, dashboard, demand, view.book, SurveyRequests(shared_map, dispatcher),
                        orders, memory)


def _exists(dao: Dao) -> bool:
    try:
        dao.params()
    except ValueError:
        return False
    return True


def _run(up: RunningFleet, config: UpConfig, stop: _Stop, *, quiet: bool) -> dict[str, Any]:
    show = None if quiet else status_line(sys.stderr)
    next_save = [0.0]

    def progress(sim_s: float) -> None:
        if up.memory is not None and time.monotonic() >= next_save[0]:  # a killed run's clock is not lost
            next_save[0] = time.monotonic() + 5.0
            up.memory.save(up.run_no, up.fleet.clock)
        if show is not None:
            counters = _counters(up.fleet, up.ingest, up.market)
            show(sim_s, f"robots {counters['robots']}  tasks posted {up.market.posted} settled "
                        f"{len(up.market.delivered)}  DAO revenue {_money(up.earned())}  "
                        f"refused {sum(counters['refused'].values())}")

    sim_s, wall_s = up.drive(config.duration or float("inf"), speed=config.speed, progress=progress,
                             should_stop=stop.event.is_set)
    if show is not None and sys.stderr.isatty():
        print(file=sys.stderr)
    return _summary(up, sim_s, wall_s)


def _counters(fleet: SimFleet, ingest: Ingest, market: MarketService) -> dict[str, Any]:
    return {"sim_s": round(fleet.world.time_s, 1), "clock_s": fleet.clock(), "robots": len(fleet.agents),
            "simulated": sorted(fleet.dids), **ingest.counters(), "market_refused": dict(market.refused)}


def _summary(up: RunningFleet, sim_s: float, wall_s: float) -> dict[str, Any]:
    balances = up.ledger.balances()
    dao = up.dao.did
    members = {member: balances.get(f"claimable:{dao}:{member}", 0) + balances.get(f"member:{member}", 0)
               for member in up.dao.members()}
    market = up.market.market
    return {
        "state": str(up.state), "default_state": up.default_state, "run": up.run_no, "link": up.where,
        "city": {"blocks": up.fleet.config.blocks, "seed": up.fleet.config.seed},
        "dashboard": up.dashboard.url,
        "sim_s": round(sim_s, 1), "wall_s": round(wall_s, 1), "robots": len(up.fleet.agents),
        "tasks": {"posted": up.market.posted, "delivered": len(up.market.delivered),
                  "settled": len(market.tasks("settled")), "refunded": len(up.market.failed),
                  "under_way": len(market.tasks("awarded")), "open": len(market.tasks("open"))},
        "revenue": {"currency": CURRENCY, "earned": up.earned(),
                    "accounts": {**{role: balances.get(f"{role}:{dao}", 0)
                                    for role in ("treasury", "reserve", "operator")},
                                 "undistributed": balances.get(f"owner:{dao}", 0)},
                    "members": members, "fees": balances.get(f"fees:{CURRENCY}", 0)},
        "refused": _counters(up.fleet, up.ingest, up.market)["refused"],
        "market_refused": dict(up.market.refused),
        "proposals": {"executed": up.dao_service.executed, "refused": dict(up.dao_service.refused)},
        "ledger": {"entries": up.ledger.size(), "intact": up.ledger.verify() == []},
    }


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} {CURRENCY}"


def _text(s: dict[str, Any]) -> str:
    tasks, revenue = s["tasks"], s["revenue"]
    accounts = ", ".join(f"{role} {_money(n)}" for role, n in revenue["accounts"].items())
    refused = ", ".join(f"{n} {reason}" for reason, n in s["refused"].items()) or "none"
    return "\n".join([
        f"depai up: run {s['run']} of the fleet in {s['state']}: {s['robots']} robots, {s['sim_s']} simulated s "
        f"in {s['wall_s']} s, {s['link']}",
        f"  tasks this run: {tasks['posted']} posted, {tasks['delivered']} delivered, {tasks['refunded']} refunded; "
        f"on the marketplace (all runs): {tasks['settled']} settled, {tasks['under_way']} under way, "
        f"{tasks['open']} open",
        "  marketplace refused: " + (", ".join(f"{n} {reason}" for reason, n in s["market_refused"].items())
                                     or "nothing"),
        f"  revenue: the DAO's robots have earned {_money(revenue['earned'])}; {accounts}; "
        f"members {_money(sum(revenue['members'].values()))}; marketplace fees {_money(revenue['fees'])}",
        _messages_line(s, refused),
        f"  ledger: {s['ledger']['entries']} entries, {'verified intact' if s['ledger']['intact'] else 'NOT intact'}",
        f"  resume with `depai up{'' if s['default_state'] else ' --state ' + s['state']}`",
    ])


def _messages_line(s: dict[str, Any], refused: str) -> str:
    """What was checked: in process every message is verified as it is sent; services say how many were not yet."""
    m = s.get("messages")
    if m is None:
        return f"  refused messages: {refused}"
    return (f"  messages: {m['published']} sent by the simulators, {m['verified']} verified, {m['refused']} refused"
            f"{f' ({refused})' if m['refused'] else ''}, {m['stale']} stale (an earlier session's retained birth or "
            f"will: not a refusal), {m['unverified']} not verified when the run stopped")


def _redact(url: str) -> str:
    return url.split("@")[-1] if "://" in url and "@" in url else url


class _Memory:
    """What a fleet remembers between runs beyond its databases: how many runs, its city, and how far its clock
    got (so a resumed fleet's time never goes back, even after running faster than real time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        held = json.loads(path.read_text()) if path.exists() else {}
        self.runs, self.clock_s = int(held.get("runs", 0)), float(held.get("clock_s", 0.0))
        self.city, self.seed = held.get("city"), held.get("seed")

    def place(self, city: int | None, seed: int | None) -> tuple[int, int]:
        """The fleet's city and seed: its own when resuming (asking for another is refused), else as given."""
        for name, asked, held in (("--city", city, self.city), ("--seed", seed, self.seed)):
            if held is not None and asked is not None and asked != held:
                raise CliError(f"{name} {asked}: this fleet's city was built with {name} {held}", code="other_city",
                               hint="leave it out to resume this fleet, or found another with --state DIR",
                               exit_code=EXIT_USAGE)
        self.city = self.city or city or 6
        self.seed = self.seed if self.seed is not None else seed if seed is not None else 7
        return self.city, self.seed

    def save(self, run_no: int, clock: Callable[[], float]) -> None:
        """Record this run, the city, and the fleet's clock as it stops."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"runs": run_no, "clock_s": clock(), "city": self.city, "seed": self.seed}))
        tmp.replace(self.path)
