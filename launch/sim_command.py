"""``depai sim``: run a simulated delivery fleet in a PyBullet city, every message signed and verified.

Each robot gets its own key and did:peaq, drives on its own mind (planning,
avoidance, battery, tasks), and publishes signed telemetry and events.
Customers post signed delivery tasks on the marketplace (the reward locked in
escrow in a ledger in the run's directory); robots bid, win, deliver and prove
it, and their owner is paid. The shared map's suspect roads are surveyed by a
dispatcher's signed commands. By default the run
goes through a real MQTT broker started for it (Mosquitto if installed, else the
embedded amqtt), with the topic ACL on; ``--broker URL`` uses yours, and
``--broker none`` runs in process (exactly repeatable for a seed).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bus.ingest import Ingest
from identity.envelope import EnvelopeVerifier
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.fleet import FleetConfig, Identity, RunReport, SimFleet, SurveyRequests, register, run
from launch.home import Home
from launch.ledger_command import auditors
from bus.router import Router
from launch.links import fleet_router, open_link
from launch.output import EXIT_OK, EXIT_USAGE, CliError, emit, status_line
from ledger.journal import Ledger
from marketplace.dispatch import Dispatcher
from marketplace.market import Marketplace
from marketplace.policy import MarketPolicy
from marketplace.service import MarketService
from sim.customers import CustomerOrders, Customers
from sim.demand import Demand
from spatial.service import MapService


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai sim``."""
    sim = commands.add_parser("sim", parents=[parent], help="run a simulated delivery fleet",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--robots", type=int, default=10, help="how many robots (default 10)")
    sim.add_argument("--seed", type=int, default=7, help="the city, spawn points, noise and orders (default 7)")
    sim.add_argument("--blocks", type=int, default=6, help="city size in blocks per side (default 6)")
    sim.add_argument("--duration", type=float, default=600.0, metavar="S",
                     help="simulated seconds to run (default 600; 0 runs until Ctrl-C)")
    sim.add_argument("--speed", type=float, default=5.0,
                     help="simulated seconds per real second (default 5; 1 = real time; 0 = as fast as possible)")
    sim.add_argument("--physics", choices=["kinematic", "dynamic"], default="kinematic",
                     help="kinematic (default, scales to 1000+ robots) or full wheeled dynamics")
    sim.add_argument("--gui", action="store_true", help="open the PyBullet window")
    sim.add_argument("--orders-per-min", type=float, metavar="N",
                     help="customer orders per simulated minute (default: robots / 4)")
    sim.add_argument("--scan-hz", type=float, default=1.0, metavar="HZ",
                     help="how often each robot publishes its lidar scan for the shared map (default 1; 0: never)")
    sim.add_argument("--broker", default="auto", metavar="KIND|URL|none",
                     help="auto (default), mosquitto or amqtt to start one; an mqtt:// URL to use yours; "
                          "none to run in process")
    sim.add_argument("--keep", type=Path, metavar="DIR", help="keep the run's registry and broker data in DIR")
    sim.set_defaults(handler=cmd_sim)


@contextlib.contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
    else:
        with tempfile.TemporaryDirectory(prefix="depai-sim-") as tmp:
            yield Path(tmp)


def _check(args: argparse.Namespace) -> None:
    if args.robots < 1:
        raise CliError(f"--robots {args.robots}: a fleet needs at least one robot", code="bad_robots",
                       exit_code=EXIT_USAGE)
    if args.speed < 0 or args.duration < 0:
        raise CliError("--speed and --duration must not be negative", code="bad_time",
                       hint="--speed 0 runs as fast as possible; --duration 0 runs until Ctrl-C", exit_code=EXIT_USAGE)
    if args.blocks < 1:
        raise CliError(f"--blocks {args.blocks}: the city needs at least one block", code="bad_blocks",
                       exit_code=EXIT_USAGE)


def _progress(report_to: Any, fleet: SimFleet, tally: Router, ingest: Ingest,
              market: MarketService) -> Callable[[float], None]:
    """The run's status line: simulated time, robots, tasks and messages."""
    show = status_line(report_to)
    return lambda sim_s: show(sim_s, f"robots {len(fleet.agents)}  tasks posted {market.posted} awarded "
                                     f"{market.awarded} settled {len(market.delivered)}  verified "
                                     f"{sum(tally.routed.values())} refused "
                                     f"{int(ingest.metrics.total('depai_ingest_refused_total'))}")


def cmd_sim(args: argparse.Namespace, home: Home) -> int:
    """Build the fleet, run it over the chosen link, and report what it did."""
    _check(args)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _workspace(args.keep) as work, DidRegistry(work / "registry.sqlite3") as registry, \
                contextlib.ExitStack() as stack:
            operator = register(registry)
            dispatcher_identity = register(registry, controller=operator.did)
            map_identity = register(registry, controller=operator.did)
            market_identity = register(registry, controller=operator.did)
            customers = [register(registry) for _ in range(CUSTOMERS)]
            config = FleetConfig(robots=args.robots, seed=args.seed, blocks=args.blocks, physics=args.physics,
                                 gui=args.gui, orders_per_min=args.orders_per_min, scan_hz=args.scan_hz)
            if not args.json:
                print(f"depai sim: building a {args.blocks}x{args.blocks}-block city and registering "
                      f"{args.robots} robot identities ...", file=sys.stderr, flush=True)
            fleet = SimFleet(config, registry, controller=operator.did,
                             commanders=[dispatcher_identity.did, market_identity.did], map_services=[map_identity.did])
            stack.callback(fleet.close)
            dispatcher = Dispatcher(dispatcher_identity.envelope_signer(fleet.clock), clock=fleet.clock)
            fleet_members = {agent.did for agent in fleet.agents}
            shared_map = MapService(map_identity.envelope_signer(fleet.clock), fleet.city.road_graph(),
                                    bounds=fleet.city.bounds(), clock=fleet.clock,
                                    level_of=lambda did: "fleet" if did in fleet_members else "self")
            market = _marketplace(work, stack, fleet, operator, market_identity, customers, registry)
            orders = CustomerOrders(Customers([c.envelope_signer(fleet.clock) for c in customers],
                                              market.policy.quote, clock=fleet.clock, currency=CURRENCY,
                                              task_life_s=market.policy.task_life_s), market)
            tally = fleet_router(dispatcher, shared_map, market)
            ingest = Ingest(registry, tally, clock=fleet.clock)
            link, where = open_link(args.broker, fleet, ingest, work, stack)
            if not args.json:
                print(f"depai sim: {len(fleet.agents)} robots, {where}; Ctrl-C to stop", file=sys.stderr, flush=True)
            report = run(fleet, link, duration_s=args.duration or float("inf"), speed=args.speed,
                         dispatcher=dispatcher, demand=Demand(fleet.city, args.seed, config.order_rate),
                         services=[shared_map, SurveyRequests(shared_map, dispatcher), market], orders=orders,
                         progress=None if args.json else _progress(sys.stderr, fleet, tally, ingest, market),
                         should_stop=stop.is_set)
            link.settle()
            market.step()  # a last turn: receipts that arrived while the link settled are settled too
            if not args.json and sys.stderr.isatty():
                print(file=sys.stderr)
            summary = _summary(report, fleet, tally, ingest, market, shared_map, where, operator.did)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    emit(summary, as_json=args.json, text=_text(summary))
    return EXIT_OK


CUSTOMERS = 3
CURRENCY = "EUR"
FUNDS = 1_000_000  # each customer's deposit, in cents
BOND = 5_000  # each robot's bond, posted by its owner


def _marketplace(work: Path, stack: contextlib.ExitStack, fleet: SimFleet, operator: Identity,
                 market_identity: Identity, customers: list[Identity], registry: DidRegistry) -> MarketService:
    """The run's ledger and marketplace: customers funded, every robot registered with a bond by its owner."""
    ledger = Ledger.open(f"sqlite:///{work / 'ledger.sqlite3'}", Signer.generate(), clock=fleet.clock)
    stack.callback(ledger.close)
    market = Marketplace(ledger, market_identity.envelope_signer(fleet.clock), clock=fleet.clock)
    for customer in customers:
        market.fund(customer.did, FUNDS, CURRENCY, key=customer.did)
    market.fund(operator.did, BOND * len(fleet.agents), CURRENCY, key=operator.did, role="owner")
    for agent in fleet.agents:
        market.register_robot(agent.did, operator.did, BOND, CURRENCY)
    return MarketService(market, EnvelopeVerifier(registry, clock=fleet.clock), clock=fleet.clock,
                         policy=MarketPolicy(), currency=CURRENCY)


def _summary(report: RunReport, fleet: SimFleet, tally: Router, ingest: Ingest, market: MarketService,
             shared_map: MapService, where: str, owner: str) -> dict[str, Any]:
    truth = fleet.world.truth
    ledger = market.market.ledger
    ledger.checkpoint()
    return {
        "robots": len(fleet.agents), "link": where,
        "sim_s": round(report.sim_s, 1), "wall_s": round(report.wall_s, 1),
        "real_time_factor": round(report.real_time_factor, 2),
        "messages_sent": report.messages, "verified": dict(sorted(tally.routed.items())),
        "refused": int(ingest.metrics.total("depai_ingest_refused_total")),
        "tasks": {"posted": market.posted, "settled": len(market.delivered), "refunded": len(market.failed),
                  "under_way": len(market.market.tasks("awarded")), "open": len(market.market.tasks("open")),
                  "refused": dict(market.refused)},
        "money": {"currency": CURRENCY, "owner_revenue": ledger.balance(f"owner:{owner}"),  # 0 after the bonds
                  "fees": _balance(ledger, f"fees:{CURRENCY}"), "ledger_entries": ledger.size(),
                  "ledger_intact": ledger.verify(auditors=auditors(ledger)) == [],
                  "ledger_key": ledger.signer.public_key.hex()},  # what `depai ledger verify --key` checks against
        "distance_m": round(float(truth.odometer_m.sum()), 1),
        "collisions": int(truth.collisions.sum()),
        "map": {"scans_fused": shared_map.scans, "tiles": len(shared_map.grid.tiles()),
                "refused": dict(shared_map.refused), "roads_blocked": len(shared_map.blocked_roads()),
                "graph_version": shared_map.graph_version, "robot_view_version": fleet.map_view.version},
    }


def _balance(ledger: Ledger, account: str) -> int:
    """An account's balance, 0 for one never opened (no task settled yet)."""
    return ledger.balances().get(account, 0)


def _text(summary: dict[str, Any]) -> str:
    tasks, money, shared = summary["tasks"], summary["money"], summary["map"]
    verified = ", ".join(f"{n} {kind}" for kind, n in summary["verified"].items())
    return "\n".join([
        f"depai sim: {summary['robots']} robots ran {summary['sim_s']} simulated s in {summary['wall_s']} s "
        f"(x{summary['real_time_factor']} real time), {summary['link']}",
        f"  tasks: {tasks['posted']} posted, {tasks['settled']} delivered and settled, {tasks['under_way']} under way, "
        f"{tasks['open']} waiting for a robot, {tasks['refunded']} refunded",
        f"  money: the fleet's owner earned {money['owner_revenue'] / 100:.2f} {money['currency']}, the marketplace "
        f"{money['fees'] / 100:.2f} in fees; {money['ledger_entries']} ledger entries, "
        f"{'verified intact' if money['ledger_intact'] else 'NOT intact: run depai ledger verify'}; the ledger's "
        f"key: {money['ledger_key']}",
        f"  messages: {summary['messages_sent']} signed; verified {verified or 'none'}; refused {summary['refused']}",
        f"  driven: {summary['distance_m']} m in total, {summary['collisions']} collisions (ground truth)",
        f"  shared map: {shared['scans_fused']} scans fused into {shared['tiles']} tiles; "
        f"{shared['roads_blocked']} roads believed blocked; road graph version {shared['graph_version']}",
    ])
