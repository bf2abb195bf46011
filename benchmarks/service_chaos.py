"""Chaos for ``depai up``'s services: SIGKILL a random one again and again; time its restart and the next settlement.

Run:  python benchmarks/service_chaos.py [--kills 30] [--robots 6] [--speed 20] [--rng-seed 1]
                                         [--settle-timeout 300] [--restart-timeout 120] [--gap S]
                                         [--keep DIR] [--out FILE.json]

One real, fresh fleet, started as a subprocess of this script (tests/launch/up_process.py's UpProcess):

    depai up --robots 6 --city 2 --seed 3 --speed 20 --port 0 --orders-per-min 8 --broker mosquitto
             --json --state <dir>/state --home <dir>/home

(``--json``: the summary is printed as JSON on stdout when it stops; the supervisor's restart lines
still come on stderr). Once every service is up and a first task has settled, it kills ``--kills``
times: the role is drawn from a seeded ``random.Random`` (``--rng-seed``), evenly: the seven roles
(ingest, sim, map, market, dao, customers, dashboard) are shuffled in blocks of seven, so every role
is killed ``kills // 7`` or one more times; when a role runs several processes, one of them is
drawn. For each kill:

  restart s   wall seconds from the SIGKILL until the supervisor's replacement ``depai serve`` process
              of the same role and index is running (a new pid in /proc; polled every 0.1 s; bounded by
              --restart-timeout, a miss is a failure). It includes the supervisor's backoff, which
              doubles from 1 s to 30 s for a service that dies again within a minute of its start.
  status s    wall seconds until the replacement published its first signed status on the bus (it is
              up; read from the fleet's broker with the ``service`` login as ``depai serve`` does).
  settle s    wall seconds from the SIGKILL until some task that was not settled before it is settled
              in the ledger (polled every 0.5 s; bounded by --settle-timeout, a miss is a failure).
  refusals    what ingest and the marketplace refused (by reason) between the kill and that settlement,
              summed over every process of the role, from their statuses.

The next kill follows the settlement at once (after --gap seconds when given). Then depai up is
stopped with SIGINT (Ctrl-C) and the report gives: the summary's ``services.restarts`` and ``exits``,
its ``messages`` (published / verified / refused / unverified), ingest's and the marketplace's
refusals by reason, tasks posted / settled / refunded; beside them the same counters summed over
every process of each role (a service's counters are its own process's: the summary, built from each
service's latest status, counts only a role's last incarnation; a killed process's last status can
miss up to its last second), and the ledger's own task counts, refunds by outcome and bond slashes
(entries whose kind contains "slash", by memo). Checks (any failing one makes the exit code 1):

  - every kill's replacement was running within --restart-timeout and a task settled within
    --settle-timeout;
  - the supervisor's exits are exactly the kills (each killed by SIGKILL) and its restarts count them;
  - depai up exited 0 after SIGINT;
  - ``depai ledger verify --db sqlite:///<state>/ledger.sqlite3`` exits 0;
  - every escrow.release entry's key appears once (no task paid twice; tests/launch/test_services.py's
    ``paid_once``, which verifies the ledger as well);
  - no ``depai serve`` process of the state directory is left running.

Refunds and slashes are counted, not checked: a crash may still cost a robot's bond (issue #15). The
services' logs (<state>/logs/*.log) are searched for tracebacks and ERROR lines, and those are listed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/service_chaos.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.up_scale import log_trouble  # noqa: E402
from tests.launch.test_services import paid_once, services, settled  # noqa: E402
from tests.launch.up_process import ROOT, UpProcess  # noqa: E402

ROLES = ("ingest", "sim", "map", "market", "dao", "customers", "dashboard")
DEPAI = [sys.executable, "-m", "launch.cli"]
STARTUP_TIMEOUT_S = 300.0  # founding and starting the services one by one, then the first settlement
STOP_TIMEOUT_S = 240.0  # SIGINT: shards and customers stop, ingest drains, the rest stop (20 s + 15 s + 20 s ...)


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def kill_plan(rng: random.Random, kills: int, roles: tuple[str, ...] = ROLES) -> list[str]:
    """Which role each kill hits: the roles shuffled in blocks, so each is hit ``kills // len(roles)`` or one more."""
    plan: list[str] = []
    while len(plan) < kills:
        block = list(roles)
        rng.shuffle(block)
        plan += block
    return plan[:kills]


# --- every status of every service process, from the fleet's broker ----------------------------------------

class StatusLog:
    """The newest signed status of each service *process* (role, index, pid), and when each was first heard."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.latest: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.first_heard: dict[tuple[str, int, int], float] = {}  # monotonic
        self.connected = False
        self.error = ""
        self._client: Any = None
        self._registry: Any = None
        self._verifier: Any = None
        self._lock = threading.Lock()

    def connect(self) -> bool:
        """Connect once depai up wrote broker.json and the registry exists; False until then."""
        if self._client is not None:
            return True
        path = self.state / "broker.json"
        if not path.exists() or not (self.state / "registry.sqlite3").exists():
            return False
        try:
            from bus.client import BusClient
            from bus.topics import FLEET_SERVICES
            from identity.envelope import EnvelopeVerifier
            from identity.registry import DidRegistry

            logging.getLogger("depai.bus").setLevel(logging.ERROR)  # the broker goes when the fleet stops
            held = json.loads(path.read_text())
            user, password = held["logins"]["service"]
            url = held["url"].replace("://", f"://{user}:{password}@", 1)
            self._registry = DidRegistry(str(self.state / "registry.sqlite3"))
            self._verifier = EnvelopeVerifier(self._registry)
            # A clean session: once this watcher is gone the broker must not queue statuses for it.
            self._client = BusClient(url, client_id=f"service-chaos-{os.getpid()}", clean_session=True)
            self._client.start()
            self._client.subscribe(f"{FLEET_SERVICES}/#", self._take)
            self.connected = self._client.wait_connected(10)
        except Exception as err:  # noqa: BLE001 - the benchmark goes on without statuses, and says so
            self.error = f"{type(err).__name__}: {err}"
            self._client = self._client or False
        return True

    def _take(self, topic: str, payload: bytes) -> None:
        from identity.envelope import EnvelopeRefused
        from launch.statuses import STATUS_KIND

        if not payload:
            return
        try:
            body = self._verifier.verify_archived(payload, kinds=(STATUS_KIND,)).body
            key = (str(body["role"]), int(body["index"]), int(body["pid"]))
        except (EnvelopeRefused, KeyError, TypeError, ValueError):
            return
        self.take(key, body)

    def take(self, key: tuple[str, int, int], body: dict[str, Any]) -> None:
        with self._lock:
            self.first_heard.setdefault(key, time.monotonic())
            held = self.latest.get(key)
            if held is None or body["t"] >= held["t"]:
                self.latest[key] = body

    def heard(self, role: str, index: int, pid: int) -> float | None:
        with self._lock:
            return self.first_heard.get((role, index, pid))

    def merged(self, role: str, counter: str) -> dict[str, int]:
        """A dict counter summed key by key over every process of ``role`` that ever reported."""
        out: Counter[str] = Counter()
        with self._lock:
            for (r, _, _), body in self.latest.items():
                if r == role:
                    out.update({k: int(n) for k, n in (body["counters"].get(counter) or {}).items()})
        return dict(out)

    def total(self, role: str, counter: str) -> int:
        with self._lock:
            return sum(int(b["counters"].get(counter) or 0) for (r, _, _), b in self.latest.items() if r == role)

    def processes(self, role: str) -> int:
        with self._lock:
            return sum(1 for (r, _, _) in self.latest if r == role)

    def refusals(self) -> dict[str, dict[str, int]]:
        return {"ingest": self.merged("ingest", "refused"), "market": self.merged("market", "refused")}

    def messages(self) -> dict[str, int]:
        """As depai up's summary counts them (launch/services_up.py messages()), but over every process."""
        with self._lock:
            published = sum(sum((b["counters"].get("published") or {}).values())
                            for (r, _, _), b in self.latest.items() if r == "sim")
        verified = sum(self.merged("ingest", "accepted").values())
        refused = sum(self.merged("ingest", "refused").values())
        return {"published": published, "verified": verified, "refused": refused,
                "unverified": max(0, published - verified - refused)}

    def close(self) -> None:
        if self._client:
            self._client.close()
        if self._registry is not None:
            self._registry.close()


def minus(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Refusals by reason that grew between two readings (reasons that did not grow are left out)."""
    out = {}
    for who, reasons in after.items():
        grown = {r: n - before.get(who, {}).get(r, 0) for r, n in reasons.items()}
        grown = {r: n for r, n in grown.items() if n > 0}
        if grown:
            out[who] = grown
    return out


# --- the ledger's own account ------------------------------------------------------------------------------

def ledger_account(url: str) -> dict[str, Any]:
    """Tasks by state, refunds by outcome, escrow.release keys seen more than once, and bond slashes by memo."""
    from ledger.journal import Ledger
    from marketplace.market import Marketplace

    ledger = Ledger.open(url, None)
    try:
        market = Marketplace(ledger, None)
        counts = market.counts()
        refunds = Counter(_outcome(task.outcome) for task in market.tasks("refunded"))
        entries = ledger.entries(1, ledger.size() + 1)
        releases = Counter(e.key for e in entries if e.kind == "escrow.release")
        slashes = [e for e in entries if "slash" in e.kind]
        slashed = Counter(_outcome(e.memo.split(" by ")[0]) for e in slashes)
        amount = sum(-n for e in slashes for account, _, n in e.postings if account.startswith("bond:") and n < 0)
        return {"tasks": counts, "refunds": dict(refunds), "releases": sum(releases.values()),
                "paid_twice": sorted(k for k, n in releases.items() if n > 1),
                "slashes": len(slashes), "slashed": dict(slashed), "slashed_amount": amount,
                "entries": ledger.size()}
    finally:
        ledger.close()


def _outcome(text: str | None) -> str:
    """An outcome without its details: "failed: stuck at (3, 4)" -> "failed: stuck"."""
    if not text:
        return "?"
    head, _, rest = text.partition(": ")
    return f"{head}: {rest.split()[0]}" if rest else head


# --- the run -----------------------------------------------------------------------------------------------

def wait_for(condition: Any, timeout: float, every: float) -> tuple[Any, float | None]:
    """Poll ``condition()`` until it is truthy; (its value, seconds waited) or (None, None) after ``timeout``."""
    started = time.monotonic()
    while True:
        value = condition()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None, None
        time.sleep(every)


def run(args: argparse.Namespace, where: Path) -> dict[str, Any]:
    state, home = where / "state", where / "home"
    home.mkdir(parents=True, exist_ok=True)
    ledger_url = f"sqlite:///{state / 'ledger.sqlite3'}"
    fleet = ["--robots", str(args.robots), "--city", "2", "--seed", "3", "--speed", f"{args.speed:g}",
             "--port", "0", "--orders-per-min", f"{args.orders_per_min:g}", "--broker", "mosquitto", "--json",
             "--state", str(state), "--home", str(home)]
    command = ["depai", "up", *fleet]
    progress(" ".join(command))
    rng = random.Random(args.rng_seed)
    plan = kill_plan(rng, args.kills)
    kills: list[dict[str, Any]] = []
    watch = StatusLog(state)
    started = time.monotonic()
    aborted = ""
    up = UpProcess(fleet, home, startup_timeout=STARTUP_TIMEOUT_S)
    try:
        def all_up() -> bool:
            watch.connect()
            if up._exit_status() is not None:
                raise RuntimeError(f"depai up {up._exit_status()} while starting:\n{up.stderr_text[-3000:]}")
            running = {name.rsplit("-", 1)[0] for name in services(state)}
            return set(ROLES) <= running

        _, took = wait_for(all_up, STARTUP_TIMEOUT_S, 1.0)
        if took is None:
            raise RuntimeError(f"the services were not all up within {STARTUP_TIMEOUT_S:g} s")
        watch.connect()
        _, first = wait_for(lambda: settled(ledger_url), STARTUP_TIMEOUT_S, 1.0)
        if first is None:
            raise RuntimeError(f"no task settled within {STARTUP_TIMEOUT_S:g} s of the services being up")
        progress(f"all services up after {time.monotonic() - started:.0f} s; first settlement {first:.0f} s later; "
                 f"{args.kills} kills: {' '.join(plan)}")
        for n, role in enumerate(plan, 1):
            if up._exit_status() is not None:
                aborted = f"depai up {up._exit_status()} before kill {n}"
                break
            running, _ = wait_for(lambda: {k: p for k, p in services(state).items() if k.startswith(role + "-")},
                                  60.0, 0.2)
            if not running:
                kills.append({"n": n, "role": role, "service": None, "failure": f"no {role} process running"})
                progress(f"kill {n}: no {role} process running within 60 s")
                continue
            name = rng.choice(sorted(running))
            pid, index = running[name], int(name.rsplit("-", 1)[1])
            before_settled, before_refused = settled(ledger_url), watch.refusals()
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            record: dict[str, Any] = {"n": n, "role": role, "service": name, "pid": pid,
                                      "failure": "interrupted before its restart and settlement were seen"}
            kills.append(record)
            new_pid, restart_s = wait_for(lambda: (lambda p: p if p not in (None, pid) else None)(
                services(state).get(name)), args.restart_timeout, 0.1)
            fresh, settle_s = wait_for(lambda: settled(ledger_url) - before_settled,
                                       max(0.0, args.settle_timeout - (time.monotonic() - killed_at)), 0.5)
            if settle_s is not None:
                settle_s = time.monotonic() - killed_at  # from the kill, not from the restart
            heard = watch.heard(role, index, new_pid) if new_pid else None
            if heard is None and new_pid:  # not yet: give its first status a few more seconds
                _, _ = wait_for(lambda: watch.heard(role, index, new_pid), 30.0, 0.2)
                heard = watch.heard(role, index, new_pid)
            del record["failure"]
            record.update({"new_pid": new_pid, "broker_db_mb": broker_db_mb(state),
                           "restart_s": round(restart_s, 2) if restart_s is not None else None,
                           "status_s": round(heard - killed_at, 2) if heard is not None else None,
                           "settle_s": round(settle_s, 2) if settle_s is not None else None,
                           "settled": sorted(fresh)[:3] if fresh else [],
                           "refused": minus(watch.refusals(), before_refused)})
            failure = []
            if restart_s is None:
                failure.append(f"not restarted within {args.restart_timeout:g} s")
            if settle_s is None:
                failure.append(f"nothing settled within {args.settle_timeout:g} s")
            if failure:
                record["failure"] = "; ".join(failure)
            progress(f"kill {n:2}/{args.kills} {name:12} pid {pid}: restarted {_n(record['restart_s'])} s, "
                     f"status {_n(record['status_s'])} s, settled {_n(record['settle_s'])} s"
                     f"{', refused ' + json.dumps(record['refused']) if record['refused'] else ''}"
                     f"{'  FAILED: ' + record['failure'] if failure else ''}")
            if args.gap:
                time.sleep(args.gap)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - stop the fleet and report what was measured
        aborted = f"{type(err).__name__}: {err}"
        progress(f"aborted: {aborted}")
    finally:
        progress("stopping depai up (SIGINT) ...")
        stop_started = time.monotonic()
        code = up.stop(timeout=STOP_TIMEOUT_S)
        stop_s = time.monotonic() - stop_started
        watch.close()
    (where / "up-stdout.txt").write_text(up.stdout_text)
    (where / "up-stderr.txt").write_text(up.stderr_text)
    try:
        summary = json.loads(up.stdout_text)
    except ValueError:
        summary = None
    left, _ = wait_for(lambda: not services(state), 10.0, 0.5)
    return {"command": command, "dir": str(where), "state": str(state), "home": str(home),
            "kills": kills, "aborted": aborted, "exit": code, "stray_processes": up.stray_processes,
            "stop_s": round(stop_s, 1), "wall_s": round(time.monotonic() - started, 1), "summary": summary,
            "cumulative": {"messages": watch.messages(), "refused": watch.refusals(),
                           "market": {c: watch.total("market", c) for c in ("posted", "delivered", "failed")},
                           "processes": {r: watch.processes(r) for r in ROLES}},
            "statuses_connected": watch.connected, "statuses_error": watch.error,
            "left_running": services(state), "sigkill_lines": up.stderr_text.count("(killed by SIGKILL); restarting"),
            "logs": service_trouble(state / "logs"), "broker": broker_sessions(state)}


def service_trouble(logs: Path) -> dict[str, list[str]]:
    """benchmarks/up_scale.py's log_trouble (tracebacks' exceptions, ERROR lines), plus the ``depai: error:``
    lines a service prints when it exits on a CliError (its figures replaced by N, so that repeats group)."""
    found = log_trouble(logs)
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        lines = path.read_text(errors="replace").splitlines()
        said = [re.sub(r"(?<=\s)\d[\d,.]*(?=[\s;]|$)", "N", line.strip()) for line in lines
                if line.startswith("depai: error:")]
        if said:
            found.setdefault(path.name, []).extend(said)
    return found


def broker_db_mb(state: Path) -> float | None:
    """The size of Mosquitto's persistence file (every retained message and every session's queue), in MB."""
    try:
        return round((state / "broker" / "mosquitto.db").stat().st_size / 1e6, 1)
    except OSError:
        return None


def broker_sessions(state: Path) -> dict[str, Any]:
    """From Mosquitto's log: the client ids that connected with a persistent session (``c0``), and the
    persistence file's size at the end. A persistent session outlives its connection: the broker queues
    what its subscriptions match until the client id comes back (or persistent_client_expiration)."""
    try:
        text = (state / "broker" / "broker.log").read_text(errors="replace")
    except OSError:
        return {}
    ids = set(re.findall(r"New client connected from \S+ as (\S+) \(p\d, c0", text))
    return {"persistent_client_ids": len(ids), "db_mb": broker_db_mb(state),
            "saves": text.count("Saving in-memory database")}


def checks(result: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """(check, passed, detail), after the run; runs ``depai ledger verify`` and ``paid_once``."""
    out: list[tuple[str, bool, str]] = []
    kills = result["kills"]
    failed = [k for k in kills if k.get("failure")]
    out.append((f"{args.kills} kills made, each restarted within {args.restart_timeout:g} s and followed by a "
                f"settlement within {args.settle_timeout:g} s",
                len(kills) == args.kills and not failed and not result["aborted"],
                "; ".join([f"kill {k['n']} ({k['service'] or k['role']}): {k['failure']}" for k in failed]
                          + ([f"aborted: {result['aborted']}"] if result["aborted"] else [])
                          + ([f"{len(kills)} of {args.kills} kills made"] if len(kills) != args.kills else []))))
    services_ = (result["summary"] or {}).get("services") or {}
    exits, restarts = services_.get("exits"), services_.get("restarts")
    killed = Counter(k["service"] for k in kills if k.get("service"))
    exited = Counter(e["service"] for e in exits or [] if e.get("code") == -signal.SIGKILL)
    others = [e for e in exits or [] if e.get("code") != -signal.SIGKILL]
    other_exits = ", ".join(f"{name} code {code}: {n}" for (name, code), n in
                            sorted(Counter((e["service"], e["code"]) for e in others).items())) or "none"
    out.append(("the supervisor's exits are exactly the kills (SIGKILL), and its restarts count them",
                exits is not None and exited == killed and not others
                and sum((restarts or {}).values()) == sum(killed.values()),
                "no summary" if exits is None else
                f"exits {sum(exited.values())} by SIGKILL + {len(others)} other ({other_exits}); restarts "
                f"{sum((restarts or {}).values())}; kills {sum(killed.values())}"))
    out.append(("depai up exited 0 after SIGINT", result["exit"] == 0,
                f"exit {result['exit']}, stopped in {result['stop_s']} s"
                f"{', stray processes killed' if result['stray_processes'] else ''}"))
    ledger_url = f"sqlite:///{Path(result['state']) / 'ledger.sqlite3'}"
    verify = subprocess.run([*DEPAI, "ledger", "verify", "--db", ledger_url, "--home", result["home"]], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    out.append((f"depai ledger verify --db {ledger_url} exits 0", verify.returncode == 0,
                f"exit {verify.returncode}: {(verify.stdout + verify.stderr).strip().splitlines()[-1:]}"))
    try:
        paid_once(ledger_url)
        once, why = True, ""
    except AssertionError as err:
        once, why = False, str(err) or "no escrow.release at all, or a key released twice"
    account = ledger_account(ledger_url)
    result["ledger"] = account
    out.append(("every escrow.release key appears once (no task paid twice)", once and not account["paid_twice"],
                f"{account['releases']} releases; paid twice: {account['paid_twice'] or 'none'} {why}".strip()))
    out.append(("no depai serve process of the state left running", not result["left_running"],
                str(result["left_running"] or "none")))
    return out


# --- the report --------------------------------------------------------------------------------------------

def _n(value: Any, fmt: str = "{:.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def _mm(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f}" if values else "—"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "0"


def role_table(kills: list[dict[str, Any]]) -> list[str]:
    lines = ["| role | kills | restart s (median / max) | first status s (median / max) "
             "| next settlement s (median / max) | timeouts |",
             "|---|---:|---:|---:|---:|---:|"]
    for role in [*ROLES, "all"]:
        mine = [k for k in kills if role == "all" or k["role"] == role]
        if not mine:
            continue
        pick = lambda key: [k[key] for k in mine if k.get(key) is not None]  # noqa: E731
        timeouts = sum(1 for k in mine if k.get("failure"))
        lines.append(f"| {'**all**' if role == 'all' else role} | {len(mine)} | {_mm(pick('restart_s'))} "
                     f"| {_mm(pick('status_s'))} | {_mm(pick('settle_s'))} | {timeouts} |")
    return lines


def report(result: dict[str, Any], verdicts: list[tuple[str, bool, str]]) -> str:
    s = result["summary"] or {}
    c = result["cumulative"]
    lines = ["command: " + " ".join(result["command"]), f"state and logs: {result['state']}", ""]
    lines += ["| # | service | restart s | first status s | next settlement s | mosquitto.db MB | refused meanwhile |",
              "|---:|---|---:|---:|---:|---:|---|"]
    for k in result["kills"]:
        refused = "; ".join(f"{who}: {_reasons(r)}" for who, r in k.get("refused", {}).items()) or ""
        lines.append(f"| {k['n']} | {k.get('service') or k['role']} | {_n(k.get('restart_s'))} "
                     f"| {_n(k.get('status_s'))} | {_n(k.get('settle_s'))} | {_n(k.get('broker_db_mb'))} | {refused}"
                     f"{' **' + k['failure'] + '**' if k.get('failure') else ''} |")
    lines += [""] + role_table(result["kills"]) + [""]
    svc = s.get("services") or {}
    lines.append(f"summary services: restarts {svc.get('restarts')}; exits {len(svc.get('exits') or [])} "
                 f"({dict(Counter(e['code'] for e in svc.get('exits') or []))} by code)")
    m, cm = s.get("messages") or {}, c["messages"]
    lines.append("messages (summary, last process of each role): " + ", ".join(f"{k} {v:,}" for k, v in m.items()))
    lines.append("messages (summed over every process):          " + ", ".join(f"{k} {v:,}" for k, v in cm.items()))
    lines.append(f"ingest refused (summary): {_reasons(s.get('refused') or {})}; summed over every process: "
                 f"{_reasons(c['refused']['ingest'])}")
    lines.append(f"market refused (summary): {_reasons(s.get('market_refused') or {})}; summed over every process: "
                 f"{_reasons(c['refused']['market'])}")
    t = s.get("tasks") or {}
    lines.append(f"tasks (summary): posted {t.get('posted')}, delivered {t.get('delivered')}, settled "
                 f"{t.get('settled')}, refunded {t.get('refunded')}, under way {t.get('under_way')}, "
                 f"open {t.get('open')}")
    lines.append(f"market counters summed over every process: {c['market']}")
    led = result.get("ledger") or {}
    if led:
        lines.append(f"ledger: {led['entries']:,} entries; tasks {led['tasks']}; refunds by outcome "
                     f"{led['refunds'] or 'none'}; bond slashes {led['slashes']} ({led['slashed_amount']:,} minor "
                     f"units; {led['slashed'] or 'none'})")
    b = result.get("broker") or {}
    if b:
        sizes = [k["broker_db_mb"] for k in result["kills"] if k.get("broker_db_mb") is not None]
        lines.append(f"broker: {b.get('persistent_client_ids')} client ids connected with a persistent session; "
                     f"mosquitto.db {sizes[0] if sizes else '—'} MB at the first kill, "
                     f"{sizes[-1] if sizes else '—'} MB at the last, {b.get('db_mb')} MB at the end")
    lines.append(f"processes heard per role: {c['processes']}; wall {result['wall_s']:.0f} s; "
                 f"SIGKILL restart lines on stderr {result['sigkill_lines']}")
    if not result["statuses_connected"]:
        lines.append(f"statuses not read from the bus: {result['statuses_error'] or 'no connection'}")
    lines += ["", "checks:"]
    for name, ok, detail in verdicts:
        lines.append(f"  [{'ok' if ok else 'FAILED'}] {name}" + (f": {detail}" if detail else ""))
    if result["logs"]:
        lines += ["", "tracebacks and errors in the services' logs:"]
        for name, found in result["logs"].items():
            for line, n in Counter(found).most_common():
                lines.append(f"  {name}: {n} x {line}")
    return "\n".join(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs (default 30)")
    parser.add_argument("--robots", type=int, default=6, help="robots (default 6)")
    parser.add_argument("--speed", type=float, default=20.0, help="simulated seconds per wall second (default 20)")
    parser.add_argument("--orders-per-min", type=float, default=8.0, help="orders per simulated minute (default 8)")
    parser.add_argument("--rng-seed", type=int, default=1, help="the kills' random.Random seed (default 1)")
    parser.add_argument("--settle-timeout", type=float, default=300.0,
                        help="wall seconds a kill may go without a new settlement (default 300)")
    parser.add_argument("--restart-timeout", type=float, default=120.0,
                        help="wall seconds for the replacement process to be running (default 120)")
    parser.add_argument("--gap", type=float, default=0.0, help="wall seconds between a settlement and the next kill")
    parser.add_argument("--keep", metavar="DIR", help="the run's directory (default: a new temporary one, left "
                                                      "for the logs)")
    parser.add_argument("--out", metavar="FILE", help="also write the raw figures here (JSON)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM (timeout, kill) stops the fleet too, and still reports
    where = Path(args.keep or tempfile.mkdtemp(prefix="depai-service-chaos-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; run directory {where}", flush=True)
    result = run(args, where)
    verdicts = checks(result, args)
    print()
    print(report(result, verdicts))
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "checks": verdicts}, indent=1, default=str))
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
