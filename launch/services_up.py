"""``depai up`` as a supervisor: the broker, then one process per service, watched, restarted, stopped in order.

What runs (each a ``depai serve ROLE`` process, see launch/serve.py): ingest
workers owning the robots' partitions, the marketplace, the DAO keeper, the
map, the dashboard, simulator shards and the simulated customers. They share
only the broker and the database; this process founds or resumes the fleet
(identities, ledger, DAO, bonds), starts the broker with a login per role,
signs and retains the run's descriptor (its clock, city and services), then
starts the services and shows what their signed statuses say: the requested
and achieved speed, the ingest's lag, the messages not yet verified, and the
economy. Ctrl-C stops the simulators and customers first, lets ingest catch
up, then stops the rest, which settle, split and checkpoint as they close.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.broker import BrokerError, choose_kind
from bus.client import BusClient
from bus.topics import FLEET_DESCRIPTOR
from dao.dao import Dao
from dashboard.revenue import RevenueBook
from launch.bridge_command import fleet_info
from launch.broker_info import broker_addresses, start_fleet_broker
from launch.broker_tls import TlsError, client_cert, fleet_tls, server_names
from launch.descriptor import public_broker, roads_json
from launch.ledger_command import auditors
from launch.fleet import gateway_name, robot_profile
from launch.output import EXIT_REFUSED, EXIT_USAGE, CliError, status_line
from launch.serve import BROKER_FILE
from launch.statuses import StatusBoard
from launch.supervisor import ServiceSpec, Supervisor
from launch.up import CURRENCY, Founding, UpConfig, describe, found, open_ledger, resume_after, settle_terms
from marketplace.market import Marketplace
from sim.city import generate_city
from sim.world import RobotSpec

SERVE = [sys.executable, "-m", "launch.cli", "serve"]
BEHIND_S = 2.0  # wall seconds: a shard or ingest this far behind is falling behind, and the line says so


def plan(robots: int, ingest_workers: int, sim_shards: int) -> tuple[int, int]:
    """How many ingest workers and simulator shards: as asked, else by the fleet's size and this machine's cores."""
    cores = os.cpu_count() or 1
    workers = ingest_workers or max(1, min(cores, 4, robots // 100 + 1))
    shards = sim_shards or max(1, min(cores, robots // 150 + 1))
    return workers, shards


def up_services(config: UpConfig, state: Path, stack: contextlib.ExitStack, say: Callable[[str], None],
                stop: threading.Event, *, quiet: bool, default_state: bool) -> dict[str, Any]:
    """Found or resume the fleet, run it as supervised services until ``stop`` (or ``--for``), return the summary."""
    f = found(config, state, stack, say)
    workers, shards = plan(f.robots, config.ingest_workers, config.sim_shards)
    say(f"building a {f.city}x{f.city}-block city with {f.robots} robots owned by the DAO {f.dao.did[:24]}... "
        f"in {shards} simulator shard{'s' * (shards > 1)}, {workers} ingest worker{'s' * (workers > 1)}")
    robot_dids = _enroll_robots(f, shards)
    for i in range(workers):  # each ingest worker signs its status as itself
        f.store.enroll(f"ingest-{i}", controller=f.operator.did)
    clock_origin = [time.time(), time.time()]  # (fleet time, wall time) the run's clock counts from

    def clock() -> float:
        return clock_origin[0] + config.speed * (time.time() - clock_origin[1])

    ledger = open_ledger(f.ledger_url, f.ledger_key, clock)
    stack.callback(ledger.close)
    clock_origin[:] = [max(time.time(), resume_after(f.memory, ledger)), time.time()]  # time never goes back
    f.memory.save(f.run_no, clock)
    market = Marketplace(ledger, f.services["market"].envelope_signer(clock), clock=clock)
    dao = Dao(ledger, f.dao.did, currency=CURRENCY, clock=clock)
    settle_terms(f, config, market, dao, robot_dids)
    say(f"ledger: {ledger.size()} entries; DAO of {len(dao.members())} members")

    url, where = _broker(config, f, stack)
    external = "://" in config.broker  # the user's broker: every service logs in with the URL's own login
    client = BusClient(url if external else url.replace("://", f"://{_login(state, 'service')}@", 1),
                       client_id=f"depai-up-{os.getpid()}", outbox_path=state / "outbox-up.sqlite3")
    client.start()
    stack.callback(client.close)
    if not client.wait_connected(30):
        raise CliError(f"cannot reach the broker at {where}", code="no_broker", exit_code=EXIT_USAGE)
    city = generate_city(f.seed, f.city)  # what a robot needs to join: the broker, whose commands count, the roads
    roads, chargers = city.road_graph(), [(p.x, p.y) for p in city.places_of("charger")]
    own = broker_addresses(state) if not external else {"broker": None, "broker_tls": None}  # ours, with TLS
    descriptor = describe(f, config, origin=(clock_origin[0], clock_origin[1]), shards=shards,
                          broker=own["broker"] or public_broker(url), broker_tls=own["broker_tls"], chargers=chargers,
                          roads=roads_json(roads))
    client.publish(FLEET_DESCRIPTOR, descriptor.seal(f.operator.envelope_signer(clock)), qos=1, retain=True)
    board = StatusBoard(f.registry, run=f.run_no).subscribe(client)
    fleet_info(state, broker=_without_login(url), commanders=descriptor.commanders,  # bridge.json, for local bridges
               map_services=[descriptor.map], chargers=chargers, roads=roads)

    supervisor = Supervisor(say=lambda text: print(text, file=sys.stderr, flush=True))
    stack.callback(supervisor.stop)
    common = ["--state", str(state), "--run", str(f.run_no), "--operator", f.operator.did]
    if config.db:
        common += ["--db", config.db]
    if external:
        common += ["--broker", config.broker]
    env = {"DEPAI_DASHBOARD_HOST": config.host, "DEPAI_DASHBOARD_PORT": str(config.port)}
    logs = state / "logs"

    def spec(role: str, index: int = 0, of: int = 1) -> ServiceSpec:
        return ServiceSpec(f"{role}-{index}", [*SERVE, role, *common, "--index", str(index), "--of", str(of)],
                           logs / f"{role}-{index}.log", env)

    market_spec = spec("market")
    if config.witness:  # receipts judged by the map service's sightings too (depai serve market --witness)
        market_spec = dataclasses.replace(market_spec, argv=[*market_spec.argv, "--witness"])

    def ready(s: ServiceSpec) -> bool:
        role, index = s.name.rsplit("-", 1)
        return any(st["index"] == int(index) and st["pid"] == s.process.pid for st in board.services(role))

    order = ([spec("ingest", i, config.ingest_of or workers) for i in range(workers)]
             + [market_spec, spec("dao"), spec("map"), spec("dashboard")]
             + [spec("sim", k, shards) for k in range(shards)] + [spec("customers")])
    for s in order:
        try:
            supervisor.start(s, ready, timeout=120)
        except RuntimeError as err:
            raise CliError(str(err), code="service_failed", hint=f"the service logs are in {logs}",
                           exit_code=EXIT_REFUSED) from None
    dashboard = next(iter(board.services("dashboard")), {}).get("counters", {}).get("url", "")
    say(f"{f.robots} simulated robots online in {shards} shard{'s' * (shards > 1)}"
        f"{f', {len(f.bridged)} real ones admitted' if f.bridged else ''}, {where}")
    say(f"dashboard at {dashboard}  (member keys: {state / 'identities.json'}; join another host with "
        f"`depai serve sim --broker URL --operator {f.operator.did}`; Ctrl-C stops)")

    show = None if quiet else status_line(sys.stderr)
    started_wall, started_sim = time.monotonic(), clock()  # --for counts from when every service is up
    shards_at_start = _sim_s(board)  # the shards' worlds ran while the later services started
    duration = config.duration or float("inf")
    next_save, worst = 0.0, [0.0, 0.0]  # the most the shards and ingest were behind, in wall seconds
    while not stop.is_set() and clock() - started_sim < duration:
        supervisor.watch()
        if time.monotonic() >= next_save:
            next_save = time.monotonic() + 5.0
            f.memory.save(f.run_no, clock)
        worst = [max(a, b) for a, b in zip(worst, lags(board, config.speed))]
        if show is not None:
            show(_sim_s(board) - shards_at_start, status_text(board, config.speed, supervisor))
        stop.wait(0.25)
    wall_s = time.monotonic() - started_wall
    if show is not None and sys.stderr.isatty():
        print(file=sys.stderr)
    supervisor.stop([s.name for s in order if s.name.startswith(("sim-", "customers-"))])
    _drain(board, timeout=15.0)
    supervisor.stop()
    f.memory.save(f.run_no, clock)
    time.sleep(0.5)  # the services' final statuses
    return summary(f, config, board, supervisor, ledger, market, dao, where, dashboard, wall_s, default_state,
                   shards_at_start, worst)


def _enroll_robots(f: Founding, shards: int) -> list[str]:
    """Every simulated robot's and shard gateway's identity, made here once so no two services write the store."""
    profile = robot_profile(RobotSpec())
    for k in range(shards):
        f.store.enroll(gateway_name((k, shards)), controller=f.dao.did, with_topic_root=True)
    return [f.store.enroll(f"robot-{i}", controller=f.dao.did, machine=profile, with_topic_root=True).did
            for i in range(f.robots)]


def _login(state: Path, role: str) -> str:
    user, password = json.loads((state / BROKER_FILE).read_text())["logins"][role]
    return f"{user}:{password}"


def _broker(config: UpConfig, f: Founding, stack: contextlib.ExitStack) -> tuple[str, str]:
    """Start the fleet's broker with a login per role, and a TLS listener when asked (or take the one at --broker
    URL); (URL, a phrase). Its logins and addresses are in STATE/broker.json (launch/broker_info.py)."""
    if "://" in config.broker:
        return config.broker, f"broker {_without_login(config.broker)}"
    try:
        kind, _ = choose_kind(config.broker)
        tls = None
        if config.tls:
            tls = fleet_tls(f.state, server_names(config.broker_host), cert=_path(config.tls_cert),
                            key=_path(config.tls_key), ca=_path(config.tls_ca))
            if tls.generated and config.tls_client_certs != "off":  # each robot's, from the fleet's CA
                for robot in f.bridged:
                    client_cert(f.state, robot.name, robot.address)
        broker, _ = start_fleet_broker(stack, f.state, kind, host=config.broker_host, port=config.broker_port,
                                       robots=[robot.mqtt_user() for robot in f.bridged], tls=tls,
                                       tls_port=config.tls_port, client_certs=config.tls_client_certs)
    except (BrokerError, TlsError) as err:
        raise CliError(str(err), code=err.code, hint=err.hint, exit_code=EXIT_USAGE) from None
    where = f"{kind} broker at {broker.url} with the topic ACL"
    if broker.tls_url:
        where += f", TLS at {broker.tls_url} (robots check it against {tls.cafile})"
    return broker.url, where


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser() if text else None


def _without_login(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _sim_s(board: StatusBoard) -> float:
    return min((float(s["counters"]["sim_s"]) for s in board.services("sim")), default=0.0)


def messages(board: StatusBoard) -> dict[str, int]:
    """What the simulators sent, what ingest checked (verified or refused), and what was not checked yet."""
    published = sum(sum(s["counters"].get("published", {}).values()) for s in board.services("sim"))
    verified = sum(board.merged("ingest", "accepted").values())
    refused = sum(board.merged("ingest", "refused").values())
    stale = sum(board.merged("ingest", "stale").values())  # old retained births and wills: not refusals
    return {"published": published, "verified": verified, "refused": refused, "stale": stale,
            "unverified": max(0, published - verified - refused - stale)}


def lags(board: StatusBoard, speed: float) -> tuple[float, float]:
    """(how far the slowest shard is behind the fleet's clock, how long ingest takes to check a message), in wall
    seconds. Robots stamp messages with their shard's clock, so a message's age at ingest includes its shard's
    delay; that part is the shards', the rest is ingest's."""
    behind = max(0.0, board.worst("sim", "behind_s") or 0.0)
    age = max(0.0, board.worst("ingest", "lag_p99_s") or 0.0)
    return behind / speed, max(0.0, age - behind) / speed


def status_text(board: StatusBoard, speed: float, supervisor: Supervisor) -> str:
    """The live status line after the clock: speed, lag, backlog, economy, and what to do when falling behind."""
    m = messages(board)
    behind, lag = lags(board, speed)
    achieved = board.worst("sim", "speed", pick=min)
    text = (f"(asked x{speed:g}, shards x{achieved if achieved is not None else 0:g})  "
            f"robots {board.total('sim', 'robots')}  ingest lag {lag:.1f} s  unverified {m['unverified']}  "
            f"tasks posted {board.total('market', 'posted')} settled {board.total('market', 'delivered')}  "
            f"refused {m['refused']}")
    if supervisor.restarts:
        text += f"  restarts {sum(supervisor.restarts.values())}"
    skipped = sum(float(s["counters"].get("skipped_s") or 0) for s in board.services("sim"))
    if skipped:
        text += f"  skipped {skipped:.0f} s"
    if behind > BEHIND_S or any(s["counters"].get("skipping") for s in board.services("sim")):
        text += ("  FALLING BEHIND: the simulators cannot keep up (they skip ahead, the world standing still); use "
                 "fewer --robots, a lower --speed, or more --sim-shards")
    elif lag > BEHIND_S:
        text += (f"  FALLING BEHIND: ingest is {lag:.0f} s behind; use fewer --robots, a lower --speed, or more "
                 "--ingest-workers")
    return text


def _drain(board: StatusBoard, timeout: float) -> None:
    """Wait (a while) until ingest has checked everything the stopped simulators sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and messages(board)["unverified"] > 0:
        time.sleep(0.5)


def summary(f: Founding, config: UpConfig, board: StatusBoard, supervisor: Supervisor, ledger: Any, market: Any,
            dao: Dao, where: str, dashboard: str, wall_s: float, default_state: bool,
            shards_at_start: float, worst: list[float]) -> dict[str, Any]:
    """The run as the ledger and the services' last statuses tell it (simulated time since every service was up)."""
    balances = ledger.balances()
    members = {member: balances.get(f"claimable:{dao.did}:{member}", 0) + balances.get(f"member:{member}", 0)
               for member in dao.members()}
    sim_s = _sim_s(board) - shards_at_start
    return {
        "state": str(f.state), "default_state": default_state, "run": f.run_no, "link": where,
        "city": {"blocks": f.city, "seed": f.seed}, "dashboard": dashboard,
        "sim_s": round(sim_s, 1), "wall_s": round(wall_s, 1), "robots": board.total("sim", "robots"),
        "speed": {"asked": config.speed, "achieved": round(sim_s / wall_s, 2) if wall_s > 0 else None,
                  "shards_behind_max_s": round(worst[0], 2), "ingest_lag_max_s": round(worst[1], 2),
                  "skipped_s": round(sum(float(s["counters"].get("skipped_s") or 0) for s in board.services("sim")),
                                     1)},
        "tasks": {"posted": board.total("market", "posted"), "delivered": board.total("market", "delivered"),
                  "settled": len(market.tasks("settled")), "refunded": board.total("market", "failed"),
                  "under_way": len(market.tasks("awarded")), "open": len(market.tasks("open"))},
        "revenue": {"currency": CURRENCY, "earned": _earned(ledger, dao.did),
                    "accounts": {**{role: balances.get(f"{role}:{dao.did}", 0)
                                    for role in ("treasury", "reserve", "operator")},
                                 "undistributed": balances.get(f"owner:{dao.did}", 0)},
                    "members": members, "fees": balances.get(f"fees:{CURRENCY}", 0)},
        "messages": messages(board),
        "refused": board.merged("ingest", "refused"),
        "market_refused": board.merged("market", "refused"),
        "proposals": {"executed": board.total("dao", "executed"), "refused": board.merged("dao", "refused")},
        "services": {"processes": len(supervisor.services), "restarts": dict(supervisor.restarts),
                     "exits": [{"service": name, "code": code} for name, code in supervisor.exits]},
        "ledger": {"entries": ledger.size(), "intact": ledger.verify(auditors=auditors(ledger)) == []},
    }


def _earned(ledger: Any, dao: str) -> int:
    """What the DAO's robots have earned in all runs, as the dashboard's revenue projection reads the ledger."""
    book = RevenueBook(ledger, dao, currency=CURRENCY)
    book.refresh()
    return int(book.summary()["earned"])
