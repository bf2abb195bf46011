"""Can a robot that fakes its whole trail consistently be paid? Measured against the simulator's ground truth.

    .venv/bin/python benchmarks/delivery_fraud.py            # 20 robots, 2 spoofers, 600 s of orders
    .venv/bin/python benchmarks/delivery_fraud.py --quick    # a short run (the smoke test)

A seeded fleet earns on the marketplace (in process: SQLite ledger, ingest,
the map service and the market service, as launch/up.py wires them with
``--broker none``); the map service's signed ``map.presence`` verdicts reach the
market as the broker would deliver them, and the market judges receipts by the
witness rule (docs/marketplace.md#proof-of-delivery).

A spoofer is a robot with a valid key and no body where it claims: its agent
(the ordinary RobotAgent: it bids, wins, plans, drives, signs telemetry, scans
and receipts) drives a ghost in a world of its own that holds only the city's
static buildings, with the same kinematics, odometry, GNSS and lidar models;
its scans are ray-cast against those buildings, so its trail and scans are
consistent with each other and with the public map. Its real body stays parked
where it was placed, far from the ghost, and is never claimed. Peers' lidar
cannot see the ghost.

Every receipt is classed by ground truth (the sender's true distance to the
dropoff when it signed) and followed to its end: paid when it arrived, paid
after being held, refused (and why), or still held when the run ends. Orders
stop after ``--seconds``; the run goes on for the hold period and a margin so
that held receipts are judged.
Ground truth is read only here, to measure.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/delivery_fraud.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bus.ingest import Ingest  # noqa: E402
from bus.router import Router  # noqa: E402
from bus.topics import MAP_PRESENCE  # noqa: E402
from identity.envelope import Envelope, EnvelopeVerifier  # noqa: E402
from identity.keys import Signer  # noqa: E402
from identity.registry import DidRegistry  # noqa: E402
from launch.fleet import FleetConfig, SimFleet, register, run  # noqa: E402
from launch.links import LoopbackLink  # noqa: E402
from launch.simbody import SimBody  # noqa: E402
from ledger.journal import Ledger  # noqa: E402
from marketplace.market import AWARDED, SETTLED, Marketplace  # noqa: E402
from marketplace.policy import MarketPolicy  # noqa: E402
from marketplace.proof import Sighting, WitnessRule  # noqa: E402
from marketplace.service import MarketService  # noqa: E402
from robots.agent import RobotAgent  # noqa: E402
from robots.body import Sensors  # noqa: E402
from sim.city import CityLayout, generate_city  # noqa: E402
from sim.customers import CustomerOrders, Customers  # noqa: E402
from sim.demand import Demand  # noqa: E402
from sim.lidar import LidarSpec  # noqa: E402
from sim.world import World  # noqa: E402
from spatial.service import MapService  # noqa: E402

GHOST_AWAY_M = 60.0  # the ghost starts at least this far from the parked real body
TRUE_AT_DROPOFF_M = 5.0  # ground truth: a receipt is honest when its sender's body was this close to the dropoff


class GhostBody(SimBody):
    """A body that exists only in a world of its own (the city's static buildings, nothing else): the spoofer
    drives it, and reports what it senses there; its real body, in the fleet's world, never moves."""

    def __init__(self, fleet_world: World, city: CityLayout, config: FleetConfig, start: tuple[float, float, float],
                 seed: int) -> None:
        ghost = World(city.buildings, seed=seed, dt=config.dt, lidar=config.lidar, noise=config.noise,
                      chargers=[(p.x, p.y) for p in city.places_of("charger")])
        ghost.add_robot(*start, config.robot, battery=config.battery)  # the same model as its real body
        super().__init__(ghost, 0, config.robot)
        self.fleet_world = fleet_world

    def now_s(self) -> float:
        """The fleet's time (the ghost's world follows it)."""
        return self.fleet_world.time_s

    def sense(self) -> Sensors:
        """Step the ghost's world up to the fleet's time, then read the ghost's sensors."""
        while self.world.time_s + self.world.dt / 2 <= self.fleet_world.time_s:
            self.world.step()
        return super().sense()


def spoofer_class(city: CityLayout, config: FleetConfig) -> type[RobotAgent]:
    """A RobotAgent whose body is a ghost, started on a street far from where its real body was placed."""

    class Spoofer(RobotAgent):
        ghost: GhostBody

        def __init__(self, body: SimBody, *args: Any, **kwargs: Any) -> None:
            real_x, real_y = (float(v) for v in body.world.truth.poses[body.index, :2])
            rng = np.random.default_rng([config.seed, 17, body.index])
            while True:
                x, y, _ = city.random_road_point(rng)
                if math.hypot(x - real_x, y - real_y) >= GHOST_AWAY_M:
                    break
            body.drive(0.0, 0.0)  # parked for good
            self.ghost = GhostBody(body.world, city, config, (x, y, float(rng.uniform(-math.pi, math.pi))),
                                   config.seed * 1_000 + body.index)
            super().__init__(self.ghost, *args, **kwargs)

    return Spoofer


@dataclass
class Receipt:
    """One receipt as ground truth and the market saw it."""

    task: str
    robot: str
    spoofer: bool
    true_gap_m: float  # the sender's real distance to the dropoff when it signed
    held: bool = False
    outcome: str = "pending"  # paid, or the refusal's code, or held at the end
    receipt_ms: int = 0
    awarded_ms: int = 0
    pickup: tuple[float, float] = (0.0, 0.0)
    dropoff: tuple[float, float] = (0.0, 0.0)
    peers_in_range: int = 0  # other real bodies within lidar range of the sender's body when it signed
    judged_after_s: float | None = None  # from the receipt's time to its task's settlement or refund (1 s steps)
    sightings: list[Sighting] = field(default_factory=list)  # the verdicts from its award to the end of the run

    @property
    def evidence(self) -> Counter[str]:
        """Its verdicts by kind, those after the receipt's time marked ``_after``."""
        return Counter(s.verdict + ("_after" if s.t_ms > self.receipt_ms else "") for s in self.sightings)


@dataclass
class Outcome:
    """What one fleet measured."""

    robots: int
    spoofers: int
    sim_s: float
    receipts: list[Receipt] = field(default_factory=list)
    sightings: int = 0
    presence_refused: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)  # seen/unseen/impossible, honest robots
    spoofer_verdicts: Counter[str] = field(default_factory=Counter)

    def share(self, spoofer: bool, test: Callable[[Receipt], bool]) -> tuple[int, int]:
        """(how many of the spoofers' or honest robots' receipts pass ``test``, how many there are)."""
        mine = [r for r in self.receipts if r.spoofer == spoofer]
        return sum(test(r) for r in mine), len(mine)


def run_fleet(*, seed: int = 5, robots: int = 20, spoofers: int = 2, orders_s: float = 600.0, blocks: int = 3,
              rays: int = 64, rule: WitnessRule = WitnessRule(), orders_per_min: float | None = None,
              tail_s: float | None = None) -> Outcome:
    """One fleet with ``spoofers`` ghost robots among ``robots``, orders for ``orders_s``, then the hold to settle."""
    spoofing = set(range(robots - spoofers, robots))
    with tempfile.TemporaryDirectory(prefix="depai-fraud-") as tmp:
        registry = DidRegistry(Path(tmp) / "registry.sqlite3")
        operator = register(registry)
        map_id, market_id = register(registry, controller=operator.did), register(registry, controller=operator.did)
        customers = [register(registry) for _ in range(3)]
        config = FleetConfig(robots=robots, seed=seed, blocks=blocks, obstacles=False, scan_hz=2.0,
                             lidar=LidarSpec(rays=rays), orders_per_min=orders_per_min)
        spoofer = spoofer_class(generate_city(seed, blocks), config)  # the fleet's own city, by its seed
        fleet = SimFleet(config, registry, controller=operator.did, commanders=[market_id.did],
                         map_services=[map_id.did], agent_class=lambda i: spoofer if i in spoofing else RobotAgent)
        ledger = Ledger.open(f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}", Signer.generate(), clock=fleet.clock)
        try:
            clock = fleet.clock
            market = Marketplace(ledger, market_id.envelope_signer(clock), clock=clock, witness=rule)
            for customer in customers:
                market.fund(customer.did, 10**12, "EUR", key=customer.did)
            market.fund(operator.did, 10**9, "EUR", key="owner", role="owner")
            for agent in fleet.agents:
                market.register_robot(agent.did, operator.did, 5_000, "EUR")
            policy = MarketPolicy()
            service = MarketService(market, EnvelopeVerifier(registry, clock=clock), clock=clock, policy=policy,
                                    map_services=[map_id.did])
            orders = CustomerOrders(Customers([c.envelope_signer(clock) for c in customers], policy.quote,
                                              clock=clock, task_life_s=policy.task_life_s), service)
            shared_map = MapService(map_id.envelope_signer(clock), fleet.city.road_graph(),
                                    bounds=fleet.city.bounds(), clock=clock, level_of=lambda did: "fleet")
            index = {agent.did: i for i, agent in enumerate(fleet.agents)}
            receipts: dict[str, Receipt] = {}
            outcome = Outcome(robots, spoofers, 0.0)

            def witness(topic: str, envelope: Envelope) -> None:  # ground truth, read at the moment it was signed
                if envelope.issuer not in index or envelope.body["task"] in receipts:
                    return
                task = market.task(envelope.body["task"])
                i = index[envelope.issuer]
                poses = fleet.world.truth.poses
                x, y = poses[i, :2]
                near = np.hypot(poses[:, 0] - x, poses[:, 1] - y) <= config.lidar.range_max_m
                receipts[task.id] = Receipt(task.id, envelope.issuer, i in spoofing,
                                            math.hypot(x - task.dropoff[0], y - task.dropoff[1]),
                                            receipt_ms=int(envelope.body["t"]), peers_in_range=int(near.sum()) - 1)

            reader = EnvelopeVerifier(registry, clock=clock)

            def presence(topic: str, payload: bytes) -> None:  # count the verdicts per kind of robot, then judge
                envelope = reader.verify_archived(payload)
                for v in envelope.body["verdicts"]:
                    i = index.get(v["robot"])
                    if i is not None:
                        (outcome.spoofer_verdicts if i in spoofing else outcome.verdicts)[v["verdict"]] += 1
                service.presence(topic, payload)

            router = (Router().declare(("receipt",), witness).declare(MapService.declared_kinds, shared_map.observe)
                      .declare(MarketService.declared_kinds, service.observe))
            ingest = Ingest(registry, router, clock=clock)
            link = LoopbackLink(fleet, ingest)
            link.listen(MAP_PRESENCE, presence)
            demand = Demand(fleet.city, seed, config.order_rate)
            tail = rule.hold_s + 60.0 if tail_s is None else tail_s
            for second in range(int(orders_s + tail)):
                run(fleet, link, duration_s=1.0, demand=demand if second < orders_s else None,
                    services=[shared_map, service], orders=orders)
                for receipt in receipts.values():
                    if receipt.judged_after_s is None and market.task(receipt.task).state != AWARDED:
                        receipt.judged_after_s = clock() - receipt.receipt_ms / 1000
            held = set(service.held)
            for receipt in receipts.values():
                task = market.task(receipt.task)
                receipt.held = receipt.task in held
                body, awarded = market.db.read("SELECT body, awarded_ms FROM market_tasks WHERE id = ?",
                                               (task.id,))[0]
                pickup = orjson.loads(body)["pickup"]
                receipt.awarded_ms, receipt.pickup, receipt.dropoff = int(awarded), (pickup["x"], pickup["y"]), \
                    task.dropoff
                receipt.sightings = market.sightings(receipt.robot, receipt.awarded_ms)
                if task.state == SETTLED:
                    receipt.outcome = "paid"
                elif task.outcome is not None:
                    receipt.outcome = task.outcome.removeprefix("faked: ").split(":")[0]
                else:
                    receipt.outcome = "held" if receipt.task in market.held() else "pending"
            outcome.receipts = sorted(receipts.values(), key=lambda r: r.task)
            outcome.sim_s = fleet.world.time_s
            outcome.sightings = service.sightings
            outcome.presence_refused = sum(service.presence_refused.values())
            return outcome
        finally:
            for agent in fleet.agents:
                ghost = getattr(agent, "ghost", None)
                if ghost is not None:
                    ghost.world.close()
            ledger.close()
            fleet.close()
            registry.close()


def report(outcome: Outcome) -> str:
    """The table and the verdict on the targets, as text."""
    lines = [f"{outcome.robots} robots ({outcome.spoofers} spoofers), {outcome.sim_s:.0f} simulated s; "
             f"{outcome.sightings} presence verdicts kept ({outcome.presence_refused} refused); verdicts on honest "
             f"robots {dict(outcome.verdicts)}, on spoofers {dict(outcome.spoofer_verdicts)}", "",
             "| robots | receipts | truly at the dropoff | no other robot within lidar range | paid at once "
             "| paid after a hold (median wait) | refused (why) | still held |", "|---|---:|---:|---:|---:|---|---|---:|"]
    for spoofer in (False, True):
        mine = [r for r in outcome.receipts if r.spoofer == spoofer]
        why = Counter(r.outcome for r in mine if r.outcome not in ("paid", "held", "pending"))
        waits = [r.judged_after_s for r in mine if r.outcome == "paid" and r.held and r.judged_after_s is not None]
        lines.append(f"| {'spoofers' if spoofer else 'honest'} | {len(mine)} "
                     f"| {sum(r.true_gap_m <= TRUE_AT_DROPOFF_M for r in mine)} "
                     f"| {sum(r.peers_in_range == 0 for r in mine)} "
                     f"| {sum(r.outcome == 'paid' and not r.held for r in mine)} "
                     f"| {len(waits)}{f' ({float(np.median(waits)):.0f} s)' if waits else ''} "
                     f"| {sum(why.values())} {dict(why) if why else ''} "
                     f"| {sum(r.outcome in ('held', 'pending') for r in mine)} |")
    refused, fakes = outcome.share(True, lambda r: r.outcome not in ("paid", "held", "pending"))
    delayed, honest = outcome.share(False, lambda r: r.held or r.outcome != "paid")
    lines += ["",
              f"spoofers' receipts refused: {refused} of {fakes} ({refused / fakes:.1%}); target >= 99 %: "
              f"{'met' if fakes and refused / fakes >= 0.99 else 'NOT met'}" if fakes else
              "spoofers sent no receipt",
              f"honest receipts delayed or refused: {delayed} of {honest} ({delayed / honest:.1%}); target <= 1 %: "
              f"{'met' if delayed / honest <= 0.01 else 'NOT met'}" if honest else "honest robots sent no receipt"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one seeded fleet and print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run with fewer robots (smoke test)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--robots", type=int, default=20)
    parser.add_argument("--spoofers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=600.0, help="simulated seconds of orders")
    parser.add_argument("--orders-per-min", type=float, default=None,
                        help="customers' orders per simulated minute (default: one per robot every 4 minutes)")
    parser.add_argument("--hold", type=float, default=WitnessRule().hold_s, help="the witness rule's hold, s")
    args = parser.parse_args(argv)
    robots, spoofers, seconds = (8, 1, 60.0) if args.quick else (args.robots, args.spoofers, args.seconds)
    rule = WitnessRule(hold_s=60.0 if args.quick else args.hold)
    print(f"  {robots} robots, {spoofers} spoofers, {seconds:.0f} s of orders + {rule.hold_s + 60:.0f} s ...",
          file=sys.stderr, flush=True)
    outcome = run_fleet(seed=args.seed, robots=robots, spoofers=spoofers, orders_s=seconds, rule=rule,
                        orders_per_min=args.orders_per_min)
    print(f"seed {args.seed}; witness rule {rule}\n")
    print(report(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
