"""How many robots ``depai up`` (the supervisor of service processes) holds in real time on this machine.

Run:  python benchmarks/up_scale.py [--robots 50,100,200,400] [--speeds 1,5] [--for 120,300]
                                    [--timeout S] [--keep DIR] [--out FILE.json] [--quick]

Each point of the sweep (every --speeds x every --robots, the speeds in the order given, the robots
in increasing order) is one real, fresh fleet:

    depai up --robots N --speed S --for T --port 0 --json --state <fresh dir> --home <fresh dir>

run as a subprocess of this script, in its own state directory (kept: --keep DIR, else a temporary
directory that this script prints and leaves for the service logs). T is simulated seconds
(--for, one per speed; default 120 at x1 and 300 at x5, so every point runs at most 2 minutes of
wall time once its services are up). While it runs, once a second:

  CPU          utime + stime of depai up and every process below it, read from /proc/<pid>/stat
               (no psutil); a process's role is read from its argv (``serve ROLE ... --index I``:
               ingest, sim, map, market, dao, dashboard, customers; the broker is ``broker``; depai up
               itself is ``up``). The last reading of a process that exits is kept; a restarted service
               is a new process of the same role, so its CPU adds up. Readings are 1 s apart: a process
               loses at most its last second.
  statuses     the services' signed, retained statuses (launch/statuses.py), read from the fleet's own
               broker with the ``service`` login depai up wrote in <state>/broker.json, as ``depai
               serve`` does: each ingest worker's lag p50/p99 over its last second (``lag_pNN_s``: the
               fleet's clock when ingest forwards a message minus the time the robot signed it), each
               shard's simulated time and how far behind the fleet's clock it is. ``depai up --json``
               prints no status line (it is quiet), so the bus is where the lag is read; the status
               lines on stderr (``... ingest lag X s  unverified N ...``) are parsed as well, and used
               for the lag when the bus gave none.

From depai up's JSON summary: the requested and achieved speed, the messages published, verified,
refused and not verified at the end, refusals by reason, tasks posted and delivered, restarts.

Per point the table gives: the achieved speed (the summary's, and the slowest shard's over the
steady run from its own statuses: speed x d(sim time)/d(fleet clock), which does not count the
time a shard ran before the last service came up), the ingest lag (worst p99 of any second, median
of the per-second p50s), the messages not verified at the end, refusals, tasks delivered per robot
per simulated hour (summary tasks.delivered / N / (sim_s / 3600)) and its ratio to the N=50 point
of the same speed measured in this same run (the project's benchmarks compare with a baseline of
the same run: this 2-core machine is noisy), and CPU seconds by role, with the cores this fleet
kept busy beside the cores the whole machine was busy (/proc/stat), so that other work on the
machine during a point shows.

A point holds when the achieved speed is >= 0.95 x asked (both figures), the worst lag <= 2 s,
nothing is left unverified, and tasks per robot-hour are within 20 % of the N=50 point.

Goal (issue): 1,000 robots on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/up_scale.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

ROOT = Path(__file__).resolve().parent.parent
DEPAI = [sys.executable, "-m", "launch.cli"]
DEFAULT_FOR = {1.0: 120.0, 5.0: 300.0}
BASELINE_ROBOTS = 50
GOAL_ROBOTS = 1_000
HELD_SPEED, HELD_LAG_S, HELD_TASKS = 0.95, 2.0, 0.20
SETUP_TIMEOUT_S = 600.0  # founding, starting the services one by one, stopping them: beyond the run itself
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROLE_ORDER = ("up", "broker", "ingest", "sim", "market", "map", "dao", "dashboard", "customers")


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- /proc: CPU per process and its role -----------------------------------------------------------------

def parse_stat(text: str) -> tuple[int, float]:
    """(parent pid, CPU seconds: utime + stime) from the text of /proc/<pid>/stat."""
    rest = text[text.rindex(")") + 2:].split()  # the command name (in parentheses) may hold spaces
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def role_of(argv: list[str], *, root: bool = False) -> str:
    """A process's role from its argv: ``serve ROLE``'s role, ``broker`` for the broker, ``up`` for depai up."""
    if root:
        return "up"
    if "serve" in argv:
        i = argv.index("serve")
        if i + 1 < len(argv):
            return argv[i + 1]
    if any("mosquitto" in Path(a).name or "amqtt" in Path(a).name for a in argv[:2]):
        return "broker"
    return Path(argv[0]).name if argv else "?"


def machine_busy_s(text: str | None = None) -> float:
    """CPU seconds the whole machine has been busy (all cores, every process: ours and anyone else's), /proc/stat."""
    fields = [int(x) for x in (text if text is not None else _read("/proc/stat") or "cpu 0 0 0 0").split("\n")[0]
              .split()[1:9]]
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / CLK_TCK  # all but idle and iowait


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def descendants(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and every process below it, by pid (one pass over /proc)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = _read(f"/proc/{name}/stat")
        if text is None:
            continue
        try:
            parents[int(name)], cpu[int(name)] = parse_stat(text)
        except (ValueError, IndexError):
            continue
    keep, frontier = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in keep:
                keep.add(child)
                frontier.append(child)
    return {pid: cpu[pid] for pid in keep if pid in cpu}


class CpuMeter:
    """CPU seconds by role of a process tree, from readings a second apart (a process's last reading is kept)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.last: dict[int, float] = {}
        self.roles: dict[int, str] = {}

    def sample(self) -> None:
        for pid, seconds in descendants(self.root).items():
            if pid not in self.roles:
                argv = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
                self.roles[pid] = role_of([a for a in argv if a], root=pid == self.root)
            if self.roles[pid] in ("python", "python3", "python3.11") and pid != self.root:
                argv = (_read(f"/proc/{pid}/cmdline") or "").split("\0")  # forked, not yet exec'd: read again
                self.roles[pid] = role_of([a for a in argv if a])
            self.last[pid] = max(seconds, self.last.get(pid, 0.0))

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, seconds in self.last.items():
            out[self.roles[pid]] = out.get(self.roles[pid], 0.0) + seconds
        return {role: round(s, 1) for role, s in sorted(out.items(), key=lambda kv: _role_key(kv[0]))}

    def processes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for role in self.roles.values():
            out[role] = out.get(role, 0) + 1
        return out


def _role_key(role: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), role)


# --- depai up's stderr ------------------------------------------------------------------------------------

STATUS_RE = re.compile(r"^sim\s+(?P<sim>[\d.]+) s .*?\(asked x(?P<asked>[\d.]+), shards x(?P<shards>[\d.]+)\)"
                       r".*?ingest lag (?P<lag>[\d.]+) s\s+unverified (?P<unverified>\d+)")
EXIT_RE = re.compile(r"^depai up: (?P<service>\S+) exited \((?P<how>[^)]*)\); restarting")
KILLED_RE = re.compile(r"^depai up: (?P<service>\S+) did not stop within")


def parse_status_line(line: str) -> dict[str, float] | None:
    """One non-tty status line of depai up: simulated s, asked and shards' speed, ingest lag, unverified."""
    m = STATUS_RE.search(line.strip().split("\r")[-1])
    if m is None:
        return None
    return {"sim_s": float(m["sim"]), "asked": float(m["asked"]), "shards": float(m["shards"]),
            "lag_s": float(m["lag"]), "unverified": int(m["unverified"])}


def parse_stderr(text: str) -> dict[str, Any]:
    """What depai up said on stderr: its status lines (max lag, last unverified) and the services that exited."""
    statuses = [s for s in map(parse_status_line, text.splitlines()) if s is not None]
    exits = [{"service": m["service"], "how": m["how"]} for m in map(EXIT_RE.match, text.splitlines()) if m]
    killed = [m["service"] for m in map(KILLED_RE.match, text.splitlines()) if m]
    return {"status_lines": len(statuses),
            "max_lag_s": max((s["lag_s"] for s in statuses), default=None),
            "last_unverified": statuses[-1]["unverified"] if statuses else None,
            "exits": exits, "killed": killed}


# --- the services' logs -----------------------------------------------------------------------------------

def log_trouble(logs: Path) -> dict[str, list[str]]:
    """Per service log: its tracebacks' last lines (the exception) and ERROR/CRITICAL lines, in order."""
    out: dict[str, list[str]] = {}
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        lines = path.read_text(errors="replace").splitlines()
        found: list[str] = []
        in_tb = False
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                in_tb = True
            elif in_tb and line and not line.startswith((" ", "\t")) and not line.startswith("During handling"):
                where = next((lines[j].strip() for j in range(i - 1, -1, -1)
                              if lines[j].lstrip().startswith("File ")), "")
                found.append(f"{line.strip()}  [{where}]")
                in_tb = False
            elif re.search(r"\b(ERROR|CRITICAL)\b", line):
                found.append(line.strip())
        if found:
            out[path.name] = found
    return out


# --- the services' statuses, from the bus -----------------------------------------------------------------

@dataclass
class Observed:
    """What the services' statuses said, second by second."""

    lag_p99: list[float] = field(default_factory=list)  # every ingest status's p99 (its last second's messages)
    lag_p50: list[float] = field(default_factory=list)
    behind: list[float] = field(default_factory=list)  # the worst shard's lag behind the fleet's clock
    shard_points: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # shard -> (t, sim_s)
    connected: bool = False
    error: str = ""

    def steady_speed(self, asked: float) -> float | None:
        """The slowest shard's speed over the run: asked x d(simulated s) / d(fleet clock s), from its statuses."""
        speeds = []
        for points in self.shard_points.values():
            if len(points) >= 2 and points[-1][0] > points[0][0]:
                (t0, s0), (t1, s1) = points[0], points[-1]
                speeds.append(asked * (s1 - s0) / (t1 - t0))
        return round(min(speeds), 2) if speeds else None


class StatusWatch:
    """Follows the run's service statuses on the fleet's broker (started once depai up wrote broker.json)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.observed = Observed()
        self.board: Any = None
        self._client: Any = None
        self._registry: Any = None
        self._seen: dict[tuple[str, int], float] = {}
        self._customers_up = False
        self._lock = threading.Lock()

    def connect(self) -> bool:
        """Connect once broker.json and the registry exist; False while they do not yet."""
        if self._client is not None:
            return True
        path = self.state / "broker.json"
        if not path.exists() or not (self.state / "registry.sqlite3").exists():
            return False
        try:
            from bus.client import BusClient
            from identity.registry import DidRegistry
            from launch.statuses import StatusBoard

            # The broker goes away with the fleet; its going is no news here (``connected`` says if it never came).
            logging.getLogger("depai.bus").setLevel(logging.ERROR)
            held = json.loads(path.read_text())
            user, password = held["logins"]["service"]
            url = held["url"].replace("://", f"://{user}:{password}@", 1)
            self._registry = DidRegistry(str(self.state / "registry.sqlite3"))
            self._client = BusClient(url, client_id=f"up-scale-bench-{os.getpid()}")
            self._client.start()
            from bus.topics import FLEET_SERVICES

            self.board = StatusBoard(self._registry, run=1)
            self._client.subscribe(f"{FLEET_SERVICES}/#", self._take)
            self.observed.connected = self._client.wait_connected(10)
        except Exception as err:  # noqa: BLE001 - the benchmark goes on without the bus, and says so
            self.observed.error = f"{type(err).__name__}: {err}"
            self._client = self._client or False
        return True

    def _take(self, topic: str, payload: bytes) -> None:
        """Every status as it comes (not just the newest at each sample): each ingest status is one second's lag."""
        self.board.take(topic, payload)
        if "/ingest/" not in topic:
            return
        with self._lock:
            for status in self.board.services("ingest"):
                key = ("ingest", int(status["index"]))
                if self._seen.get(key) != status["t"]:
                    self._seen[key] = status["t"]
                    counters = status["counters"]
                    if counters.get("lag_p99_s") is not None:
                        self.observed.lag_p99.append(float(counters["lag_p99_s"]))
                        self.observed.lag_p50.append(float(counters["lag_p50_s"]))

    def sample(self) -> None:
        if not self.board:
            return
        o = self.observed
        self._customers_up = self._customers_up or bool(self.board.services("customers"))
        sims = self.board.services("sim")
        behind = [s["counters"].get("behind_s") for s in sims if not s.get("final")]
        if behind and all(v is not None for v in behind):
            o.behind.append(max(behind))
        if self._customers_up:  # every service is up: the steady run
            for s in sims:
                if s.get("final") or s["counters"].get("sim_s") is None:
                    continue
                points = o.shard_points.setdefault(int(s["index"]), [])
                if not points or points[-1][0] != s["t"]:
                    points.append((float(s["t"]), float(s["counters"]["sim_s"])))

    def close(self) -> None:
        if self._client:
            self._client.close()
        if self._registry is not None:
            self._registry.close()


# --- one point ----------------------------------------------------------------------------------------------

def run_point(robots: int, speed: float, sim_for: float, where: Path, timeout_s: float) -> dict[str, Any]:
    """One ``depai up`` run, sampled every second; what it printed, what it cost, what it said."""
    state, home = where / "state", where / "home"
    home.mkdir(parents=True, exist_ok=True)
    argv = [*DEPAI, "up", "--robots", str(robots), "--speed", f"{speed:g}", "--for", f"{sim_for:g}", "--port", "0",
            "--json", "--state", str(state), "--home", str(home)]
    out_path, err_path = where / "summary.json", where / "stderr.txt"
    started, machine_before = time.monotonic(), machine_busy_s()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   start_new_session=True)
        meter, watch = CpuMeter(process.pid), StatusWatch(state)
        timed_out = False
        try:
            while process.poll() is None:
                meter.sample()
                if watch.connect():
                    watch.sample()
                if time.monotonic() - started > timeout_s:
                    timed_out = True
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                    break
                try:
                    process.wait(1.0)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            watch.close()
    wall = time.monotonic() - started
    machine = machine_busy_s() - machine_before
    text = out_path.read_text(errors="replace")
    try:
        summary = json.loads(text)
    except ValueError:
        summary = None
    said = parse_stderr(err_path.read_text(errors="replace"))
    return {"robots": robots, "speed": speed, "for": sim_for, "command": argv[2:], "dir": str(where),
            "exit": process.returncode, "timed_out": timed_out, "wall_total_s": round(wall, 1),
            "machine_busy_s": round(machine, 1),
            "summary": summary, "stdout_tail": "" if summary else text[-2000:], "stderr": said,
            "observed": watch.observed, "cpu": meter.by_role(), "processes": meter.processes(),
            "logs": log_trouble(state / "logs")}


def figures(point: dict[str, Any]) -> dict[str, Any]:
    """The table's figures of one point (None where the run did not say)."""
    s, o = point["summary"] or {}, point["observed"]
    speed = point["speed"]
    robots = s.get("robots") or point["robots"]
    sim_s = s.get("sim_s") or 0.0
    delivered = (s.get("tasks") or {}).get("delivered")
    lag_max = max(o.lag_p99) if o.lag_p99 else point["stderr"]["max_lag_s"]
    return {
        "achieved": (s.get("speed") or {}).get("achieved"), "steady": o.steady_speed(speed),
        "lag_max": lag_max, "lag_p50": round(statistics.median(o.lag_p50), 3) if o.lag_p50 else None,
        "lag_from": "bus" if o.lag_p99 else ("stderr" if point["stderr"]["max_lag_s"] is not None else "none"),
        "behind_max": max(o.behind) if o.behind else None,
        "messages": s.get("messages") or {}, "refused": s.get("refused") or {},
        "market_refused": s.get("market_refused") or {},
        "posted": (s.get("tasks") or {}).get("posted"), "delivered": delivered,
        "per_robot_h": delivered / robots / (sim_s / 3600) if delivered is not None and sim_s > 0 else None,
        "restarts": sum(((s.get("services") or {}).get("restarts") or {}).values()),
        "exits": (s.get("services") or {}).get("exits") or point["stderr"]["exits"],
        "cpu_total": round(sum(point["cpu"].values()), 1),
    }


def held(f: dict[str, Any], speed: float, baseline: float | None) -> tuple[bool, list[str]]:
    """Whether a point held real time, and why not."""
    why = []
    for name in ("achieved", "steady"):
        if f[name] is None or f[name] < HELD_SPEED * speed:
            why.append(f"{name} x{f[name]} < x{HELD_SPEED * speed:g}")
    if f["lag_max"] is None or f["lag_max"] > HELD_LAG_S:
        why.append(f"ingest lag {f['lag_max']} s > {HELD_LAG_S:g} s")
    unverified = f["messages"].get("unverified")
    if unverified != 0:
        why.append(f"{unverified} unverified")
    if f["per_robot_h"] is None or not baseline or abs(f["per_robot_h"] / baseline - 1) > HELD_TASKS:
        ratio = f"{f['per_robot_h'] / baseline:.2f}" if f["per_robot_h"] is not None and baseline else "n/a"
        why.append(f"tasks/robot-h {ratio} of N={BASELINE_ROBOTS}")
    return not why, why


# --- the report ---------------------------------------------------------------------------------------------

def _n(value: Any, fmt: str = "{:g}") -> str:
    return "—" if value is None else fmt.format(value)


def report(points: list[dict[str, Any]]) -> str:
    lines = []
    baselines: dict[float, float | None] = {}
    for p in points:
        if p["robots"] == BASELINE_ROBOTS:
            baselines[p["speed"]] = figures(p)["per_robot_h"]
    lines.append("| speed asked | robots | processes | achieved (summary) | achieved (slowest shard, steady) "
                 "| ingest lag p99 worst / p50 median (s) | shards behind, worst (s) | published | unverified at end "
                 "| refused (by reason) | tasks posted / delivered | tasks / robot / sim h | vs N=50 | restarts "
                 "| held |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
    verdicts: dict[float, list[tuple[int, bool, list[str]]]] = {}
    for p in points:
        f = figures(p)
        base = baselines.get(p["speed"])
        ok, why = held(f, p["speed"], base)
        verdicts.setdefault(p["speed"], []).append((p["robots"], ok, why))
        refused = ", ".join(f"{n:,} {r}" for r, n in sorted(f["refused"].items())) or "0"
        if f["market_refused"]:
            refused += "; market: " + ", ".join(f"{n:,} {r}" for r, n in sorted(f["market_refused"].items()))
        ratio = f["per_robot_h"] / base if f["per_robot_h"] is not None and base else None
        failed = "" if p["summary"] else f" (no summary: exit {p['exit']}{', timed out' if p['timed_out'] else ''})"
        lag = f"{_n(f['lag_max'], '{:.2f}')} / {_n(f['lag_p50'], '{:.2f}')}"
        if f["lag_from"] == "stderr":
            lag += " (stderr)"
        lines.append(
            f"| x{p['speed']:g} | {p['robots']:,}{failed} | {sum(p['processes'].values())} "
            f"| {_n(f['achieved'], 'x{:.2f}')} | {_n(f['steady'], 'x{:.2f}')} | {lag} "
            f"| {_n(f['behind_max'], '{:.1f}')} | {_n(f['messages'].get('published'), '{:,}')} "
            f"| {_n(f['messages'].get('unverified'), '{:,}')} | {refused} "
            f"| {_n(f['posted'], '{:,}')} / {_n(f['delivered'], '{:,}')} | {_n(f['per_robot_h'], '{:.2f}')} "
            f"| {_n(ratio, '{:.2f}')} | {f['restarts']} | {'yes' if ok else 'no: ' + '; '.join(why)} |")
    roles = sorted({r for p in points for r in p["cpu"]}, key=_role_key)
    lines += ["", "CPU seconds by role over the whole run (founding, services starting, the run, stopping); cores "
              "busy = CPU / wall, this fleet's and the whole machine's (/proc/stat: anything else running counts "
              "there too):", ""]
    lines.append("| speed | robots | wall s | " + " | ".join(roles) + " | all | cores busy | machine cores busy |")
    lines.append("|---:|---:|---:|" + "---:|" * len(roles) + "---:|---:|---:|")
    for p in points:
        total = sum(p["cpu"].values())
        machine = p.get("machine_busy_s")
        lines.append(f"| x{p['speed']:g} | {p['robots']:,} | {p['wall_total_s']:.0f} | "
                     + " | ".join(f"{p['cpu'].get(r, 0):.1f}" for r in roles)
                     + f" | {total:.1f} | {total / p['wall_total_s']:.2f} "
                     f"| {_n(machine / p['wall_total_s'] if machine is not None else None, '{:.2f}')} |")
    lines.append("")
    for speed, rows in verdicts.items():
        good = [n for n, ok, _ in rows if ok]
        largest = max(good) if good else None
        lines.append(f"x{speed:g}: largest N that held (achieved >= {HELD_SPEED:g} x asked, lag <= {HELD_LAG_S:g} s, "
                     f"0 unverified, tasks/robot-h within {HELD_TASKS:.0%} of N={BASELINE_ROBOTS}): "
                     f"{largest if largest is not None else 'none'}")
    goal = [(p, ok) for p in points for (n, ok, _) in verdicts[p["speed"]] if n == p["robots"] == GOAL_ROBOTS]
    if any(ok for _, ok in goal):
        lines.append(f"goal, {GOAL_ROBOTS:,} robots on this {os.cpu_count()}-core machine: met")
    else:
        lines.append(f"goal, {GOAL_ROBOTS:,} robots on this {os.cpu_count()}-core machine: NOT met "
                     f"({'measured and failed' if goal else f'no {GOAL_ROBOTS:,}-robot point held or ran'}; "
                     f"see the rows above for what gave way)")
    trouble = [(p, name, found) for p in points for name, found in p["logs"].items()]
    exits = [(p, e) for p in points for e in figures(p)["exits"]]
    if trouble or exits:
        lines += ["", "Service exits and errors in <state>/logs:"]
        for p, e in exits:
            lines.append(f"  x{p['speed']:g} N={p['robots']}: {e}")
        for p, name, found in trouble:
            for line in found[:5]:
                lines.append(f"  x{p['speed']:g} N={p['robots']} {name}: {line}")
            if len(found) > 5:
                lines.append(f"  x{p['speed']:g} N={p['robots']} {name}: ... {len(found) - 5} more")
    for p in points:
        o = p["observed"]
        if not o.connected:
            lines.append(f"x{p['speed']:g} N={p['robots']}: statuses not read from the bus "
                         f"({o.error or 'no connection'})")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", default="50,100,200,400", help="robot counts (default 50,100,200,400)")
    parser.add_argument("--speeds", default="1,5", help="speeds asked (default 1,5)")
    parser.add_argument("--for", dest="sim_for", help="simulated seconds per point, one per speed "
                                                      "(default 120 at x1, 300 at x5, else 120 x speed)")
    parser.add_argument("--timeout", type=float, default=SETUP_TIMEOUT_S,
                        help=f"wall seconds per point beyond --for / speed before it is stopped (default "
                             f"{SETUP_TIMEOUT_S:g})")
    parser.add_argument("--keep", metavar="DIR", help="put the points' state directories here (default: a new "
                                                      "temporary directory, left for the logs)")
    parser.add_argument("--out", metavar="FILE", help="also write every point's raw figures here (JSON)")
    parser.add_argument("--quick", action="store_true", help="a short run: 5 and 10 robots at x1 for 15 s")
    args = parser.parse_args(argv)
    robots = [int(n) for n in _floats("5,10" if args.quick else args.robots)]
    speeds = _floats("1" if args.quick else args.speeds)
    if args.quick:
        fors = [15.0]
    elif args.sim_for:
        fors = _floats(args.sim_for)
        if len(fors) != len(speeds):
            parser.error("--for needs one figure per --speeds")
    else:
        fors = [DEFAULT_FOR.get(s, 120.0 * s) for s in speeds]
    root = Path(args.keep or tempfile.mkdtemp(prefix="depai-up-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; points' state in {root}; "
          f"baseline: N={BASELINE_ROBOTS} of the same speed, this run", flush=True)
    points = []
    for speed, sim_for in zip(speeds, fors, strict=True):
        for n in sorted(robots):
            where = root / f"x{speed:g}-n{n}"
            progress(f"depai up --robots {n} --speed {speed:g} --for {sim_for:g} ...")
            point = run_point(n, speed, sim_for, where, timeout_s=sim_for / speed + args.timeout)
            f = figures(point)
            progress(f"  exit {point['exit']}, {point['wall_total_s']:.0f} s wall, achieved x{f['achieved']}, "
                     f"steady x{f['steady']}, lag {f['lag_max']} s, unverified "
                     f"{f['messages'].get('unverified')}, delivered {f['delivered']}, CPU {point['cpu']}")
            points.append(point)
    print()
    print(report(points))
    if args.out:
        Path(args.out).write_text(json.dumps(
            [{**{k: v for k, v in p.items() if k != "observed"}, "figures": figures(p),
              "observed": {"lag_p99": p["observed"].lag_p99, "lag_p50": p["observed"].lag_p50,
                           "behind": p["observed"].behind, "connected": p["observed"].connected,
                           "error": p["observed"].error}} for p in points], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
