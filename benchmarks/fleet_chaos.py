"""Chaos for the whole fleet: SIGKILL a running ``depai up`` again and again, resume it, time the next settlement.

Run:  python benchmarks/fleet_chaos.py [--kills 50] [--robots 4] [--city 2] [--seed 3] [--speed 30]
                                       [--orders-per-min 6] [--rng-seed 15] [--max-extra 8]
                                       [--settle-timeout 300] [--grow-timeout 120] [--deadline-s S]
                                       [--final-for 120] [--keep DIR] [--out FILE.json]

the loop of a whole-fleet chaos test, longer and measured. Each cycle resumes the fleet on one state
directory (tests/launch/up_process.py's UpProcess, a session of its own):

    depai up --robots 4 --city 2 --seed 3 --speed 30 --port 0 --orders-per-min 6 --broker mosquitto
             --state <dir>/fleet                                   (DEPAI_HOME=<dir>)

waits (``--settle-timeout``) until a task that was not settled before the resume is settled, lets the ledger
grow by a seeded random number of entries more (1..``--max-extra``, bounded by ``--grow-timeout``) and SIGKILLs
it: either ``depai up`` alone (its services and broker must follow it) or its whole process group (a laptop
that lost power), drawn by the same seeded ``random.Random`` (``--rng-seed``). Then it waits up to 30 s for no
``depai serve`` and no mosquitto of that state directory to be left (what remains is recorded as orphans), and
reaps the session (UpProcess.stop). Recorded per kill: its kind, seconds from the resume's start to the first
new settlement, ledger entries at the kill, orphans. A settlement timeout is a failure: recorded, and the loop
goes on with a fresh resume (no kill made in that cycle). ``--deadline-s``: no new cycle starts after that many
seconds, and a cycle under way when it passes is stopped (SIGINT) without a kill and without counting.

At the end a clean run (``--for <final-for> --json``) waits for a new settlement and is stopped with SIGINT;
then the report: a table (kills by kind, median / max seconds to the next settlement, timeouts, orphans) and
checks (any failing one makes the exit code 1):

  - no resume timed out waiting for a settlement, and the final run settled and exited 0;
  - ``depai ledger verify --db sqlite:///<state>/ledger.sqlite3`` exits 0;
  - every escrow.release key appears once (test_services' ``paid_once``, which verifies the ledger too);
  - the balances sum to zero;
  - no task was refunded as ``expired`` while awarded to a robot (a robot slashed for a task it held when the
    fleet died): counted and listed;
  - the ledger's times (``at_ms``) never decrease: regressions listed;
  - no ``depai serve`` or mosquitto of the state was left 30 s after any kill, nor after the final run;
  - the final run's summary (``--json``) shows no ingest refusal for ``replayed``, ``bad_signature`` or
    ``no_birth`` (its refusal counters are printed as they are, the marketplace's too).

The services' logs (<state>/logs/*.log, appended to by every run; copied to <dir>/logs/cycle-N/ after every
cycle and to <dir>/logs/final/, and what each cycle added) are searched for tracebacks and ERROR lines (benchmarks/up_scale.py's
``log_trouble``), and those are listed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/fleet_chaos.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.up_scale import log_trouble  # noqa: E402
from tests.launch.fleet_probe import brokers, entries  # noqa: E402
from tests.launch.test_services import paid_once, services, settled, wait_until  # noqa: E402
from tests.launch.up_process import ROOT, UpProcess  # noqa: E402

DEPAI = [sys.executable, "-m", "launch.cli"]
KINDS = ("up", "group")  # SIGKILL depai up alone / its whole process group
BAD_REFUSALS = ("replayed", "bad_signature", "no_birth")
ORPHAN_WAIT_S = 30.0


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def fleet_args(args: argparse.Namespace) -> list[str]:
    return ["--robots", str(args.robots), "--city", str(args.city), "--seed", str(args.seed),
            "--speed", f"{args.speed:g}", "--port", "0", "--orders-per-min", f"{args.orders_per_min:g}",
            "--broker", "mosquitto"]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def orphans(state: Path) -> list[str]:
    """``depai serve`` and mosquitto processes of the state directory still running: "pid cmdline"."""
    pids = sorted(set(services(state).values()) | set(brokers(state)))
    return [f"{pid} {cmdline(pid)[:160]}" for pid in pids]


def exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended (without reaping it: UpProcess.stop does)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_pid != 0


def keep_logs(state: Path, where: Path, name: str, seen: dict[str, int]) -> dict[str, list[str]]:
    """Copy the services' logs aside (to <where>/logs/<name>/) and return the trouble in what they gained since
    the last call (``seen``: lines already read per log, updated; the logs are appended to by every run)."""
    logs = state / "logs"
    if not logs.is_dir():
        return {}
    target = where / "logs" / name
    target.mkdir(parents=True, exist_ok=True)
    fresh = where / "logs" / ".fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for path in sorted(logs.glob("*.log")):
        shutil.copyfile(path, target / path.name)
        lines = (target / path.name).read_text(errors="replace").splitlines(keepends=True)
        (fresh / path.name).write_text("".join(lines[seen.get(path.name, 0):]))
        seen[path.name] = len(lines)
    found = log_trouble(fresh)
    shutil.rmtree(fresh, ignore_errors=True)
    return found


class Deadline(Exception):
    pass


def cycle(args: argparse.Namespace, rng: random.Random, state: Path, home: Path, url: str, n: int,
          deadline: float) -> dict[str, Any]:
    """One resume: wait for a new settlement, let the ledger grow, SIGKILL. The record of what happened."""
    past = lambda: time.monotonic() > deadline  # noqa: E731
    record: dict[str, Any] = {"n": n}
    before = settled(url) if (state / "ledger.sqlite3").exists() else set()
    started = time.monotonic()
    up = UpProcess([*fleet_args(args), "--state", str(state)], home, startup_timeout=args.startup_timeout)
    try:
        try:
            up.dashboard_url
            record["startup_s"] = round(time.monotonic() - started, 1)
            wait_until(lambda: settled(url) - before or past(), args.settle_timeout,
                       f"cycle {n}: nothing settled after resuming", up)
            if not settled(url) - before:
                raise Deadline
            record["settle_s"] = round(time.monotonic() - started, 1)
            target = entries(url) + rng.randint(1, args.max_extra)
            kind = rng.choice(KINDS)
            try:
                wait_until(lambda: entries(url) >= target or past(), args.grow_timeout,
                           f"cycle {n}: the ledger stopped growing", up)
            except AssertionError as err:
                record["grow_timeout"] = str(err).splitlines()[0]
            record["entries"] = entries(url)
            record["kind"] = kind
            if kind == "group":
                os.killpg(up.pid, signal.SIGKILL)
            else:
                os.kill(up.pid, signal.SIGKILL)
            record["killed_at_s"] = round(time.monotonic() - started, 1)
        except Deadline:
            record["deadline"] = True
            return record
        except AssertionError as err:
            record["failure"] = str(err).splitlines()[0]
            record["stderr_tail"] = up.stderr_text[-3000:]
            return record
        t0 = time.monotonic()
        while orphans(state) and time.monotonic() - t0 < ORPHAN_WAIT_S:
            time.sleep(0.5)
        record["orphans"] = orphans(state)
        record["orphans_gone_s"] = round(time.monotonic() - t0, 1)
        return record
    finally:
        code = up.stop(timeout=args.stop_timeout)
        record["stop_code"] = code
        record["stray_processes"] = up.stray_processes
        record["cycle_s"] = round(time.monotonic() - started, 1)
        if record.get("failure") or record.get("deadline"):
            record["orphans_after_stop"] = orphans(state)


def final_run(args: argparse.Namespace, state: Path, home: Path, url: str) -> dict[str, Any]:
    before = settled(url) if (state / "ledger.sqlite3").exists() else set()
    started = time.monotonic()
    out: dict[str, Any] = {}
    up = UpProcess([*fleet_args(args), "--state", str(state), "--for", f"{args.final_for:g}", "--json"], home,
                   startup_timeout=args.startup_timeout)
    try:
        # With --json depai up prints no dashboard line; and --for counts simulated seconds, so it may stop
        # by itself before a new settlement: wait for either.
        wait_until(lambda: settled(url) - before or exited(up.pid), args.settle_timeout,
                   "the final run settled nothing", up)
        if settled(url) - before:
            out["settle_s"] = round(time.monotonic() - started, 1)
        else:
            out["failure"] = (f"the final run stopped by itself after {time.monotonic() - started:.0f} s "
                              f"(--for {args.final_for:g} simulated s) before a new settlement")
    except AssertionError as err:
        out["failure"] = str(err).splitlines()[0]
    finally:
        out["exit"] = up.stop(timeout=args.stop_timeout)
        out["stray_processes"] = up.stray_processes
    out["summary"] = parse_summary(up.stdout_text)
    out["stdout_tail"] = up.stdout_text[-2000:]
    out["stderr_tail"] = up.stderr_text[-3000:]
    time.sleep(2)
    out["orphans"] = orphans(state)
    return out


def parse_summary(stdout: str) -> dict[str, Any] | None:
    """The ``--json`` summary printed on stdout at the stop: the whole text, or its last JSON object."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.rfind("\n{")
    while start >= 0:
        try:
            return json.loads(text[start + 1:])
        except ValueError:
            start = text.rfind("\n{", 0, start)
    if text.startswith("{"):
        try:
            return json.JSONDecoder().raw_decode(text)[0]
        except ValueError:
            return None
    return None


# --- the ledger -----------------------------------------------------------------------------------------------

def clock_regressions(times: list[int]) -> list[tuple[int, int, int]]:
    """(entry number, previous at_ms, its at_ms) wherever the ledger's time went back (entries numbered from 1)."""
    return [(i + 1, times[i - 1], times[i]) for i in range(1, len(times)) if times[i] < times[i - 1]]


def ledger_checks(url: str) -> dict[str, Any]:
    from ledger.journal import Ledger
    from marketplace.market import Marketplace

    out: dict[str, Any] = {}
    try:
        paid_once(url)
        out["paid_once"] = ""
    except AssertionError as err:
        out["paid_once"] = f"paid_once failed: {str(err).splitlines()[0] if str(err) else 'assertion'}"
    ledger = Ledger.open(url, None)
    try:
        all_entries = ledger.entries(1, ledger.size() + 1)
        releases = Counter(e.key for e in all_entries if e.kind == "escrow.release")
        out["releases"] = sum(releases.values())
        out["paid_twice"] = sorted(k for k, c in releases.items() if c > 1)
        out["entries"] = len(all_entries)
        out["regressions"] = clock_regressions([e.at_ms for e in all_entries])
        out["balance_sum"] = sum(ledger.balances().values())
        market = Marketplace(ledger, None)
        out["tasks"] = market.counts()
        tasks = market.tasks()
        out["expired_awarded"] = [{"task": t.id, "robot": t.robot, "outcome": t.outcome} for t in tasks
                                  if t.state == "refunded" and (t.outcome or "").startswith("expired")
                                  and t.robot is not None]
        out["refunds"] = dict(Counter((t.outcome or "?").split(":")[0] for t in tasks if t.state == "refunded"))
        out["slashes"] = sum(1 for e in all_entries if "slash" in e.kind)
    finally:
        ledger.close()
    return out


def verify_cli(url: str, home: Path) -> tuple[int, str]:
    done = subprocess.run([*DEPAI, "ledger", "verify", "--db", url], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DEPAI_HOME": str(home)}, timeout=600)
    return done.returncode, (done.stdout + done.stderr).strip()[-600:]


# --- the report -----------------------------------------------------------------------------------------------

def _n(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def kind_table(records: list[dict[str, Any]]) -> list[str]:
    """Kills by kind: count, median / max seconds to the next settlement after the resume that followed such a
    kill (a record's ``after``: the previous cycle's kill kind), timeouts of those resumes, kills with orphans."""
    lines = ["| kill kind | kills | median s to next settlement | max s | settle timeouts | kills with orphans |",
             "|---|---|---|---|---|---|"]
    names = {"up": "depai up alone", "group": "whole process group", "all": "all"}
    for kind in (*KINDS, "all"):
        def mine(r: dict[str, Any], key: str) -> bool:
            return r.get(key) in KINDS if kind == "all" else r.get(key) == kind
        kills = [r for r in records if mine(r, "kind")]
        resumed = [r for r in records if mine(r, "after") and not r.get("deadline")]
        settles = [r["settle_s"] for r in resumed if r.get("settle_s") is not None]
        timeouts = sum(1 for r in resumed if r.get("failure"))
        lines.append(f"| {names[kind]} | {len(kills)} | {_n(statistics.median(settles) if settles else None)} | "
                     f"{_n(max(settles) if settles else None)} | {timeouts} | "
                     f"{sum(1 for r in kills if r.get('orphans'))} |")
    first = [r for r in records if r.get("after") not in KINDS and not r.get("deadline")]
    if first:
        lines.append(f"(resumes not after a kill: the first start or after a timed-out cycle: {len(first)}, "
                     f"settled after {', '.join(_n(r.get('settle_s')) for r in first)} s)")
    return lines


def kill_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| # | resumed after | s to settlement | kill kind | entries at kill | orphans after 30 s | note |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        note = r.get("failure") or ("deadline: stopped without a kill" if r.get("deadline") else "") \
            or r.get("grow_timeout", "")
        lines.append(f"| {r['n']} | {r.get('after', '-')} | {_n(r.get('settle_s'))} | {r.get('kind', '-')} | "
                     f"{r.get('entries', '-')} | "
                     f"{len(r.get('orphans') or [])} | {note} |")
    return lines


def checks(records: list[dict[str, Any]], final: dict[str, Any], ledger: dict[str, Any],
           verify: tuple[int, str]) -> list[tuple[str, bool, str]]:
    timeouts = [r["n"] for r in records if r.get("failure")]
    orphaned = [r["n"] for r in records if r.get("orphans")]
    summary = final.get("summary") or {}
    refused = summary.get("refused") or {}
    bad = {k: v for k, v in refused.items() if k in BAD_REFUSALS}
    return [
        ("every resume settled a new task in time", not timeouts, f"timeouts in cycles {timeouts}" if timeouts else ""),
        ("the final run settled and exited 0", not final.get("failure") and final.get("exit") == 0,
         f"{final.get('failure') or ''} exit {final.get('exit')}"),
        ("depai ledger verify exits 0", verify[0] == 0, f"exit {verify[0]}"),
        ("escrow releases each once (paid_once)", not ledger["paid_once"] and not ledger["paid_twice"],
         f"{ledger['releases']} releases; twice: {ledger['paid_twice'][:10]} {ledger['paid_once']}"),
        ("balances sum to zero", ledger["balance_sum"] == 0, f"sum {ledger['balance_sum']}"),
        ("no task refunded as expired while awarded (no slash for a crash)", not ledger["expired_awarded"],
         f"{len(ledger['expired_awarded'])}: " + "; ".join(f"{t['task']} robot {t['robot']} ({t['outcome']})"
                                                             for t in ledger["expired_awarded"][:20])),
        ("ledger times non-decreasing", not ledger["regressions"],
         f"{len(ledger['regressions'])} regressions {ledger['regressions'][:10]}"),
        ("no orphan depai serve / mosquitto 30 s after a kill", not orphaned,
         f"kills with orphans: {orphaned}" if orphaned else ""),
        ("no orphan after the final run", not final.get("orphans"), "; ".join(final.get("orphans") or [])),
        ("final summary parsed, no replayed / bad_signature / no_birth refusals",
         final.get("summary") is not None and not bad,
         "no --json summary on stdout" if final.get("summary") is None else f"ingest refused {refused}, "
         f"market refused {summary.get('market_refused')}"),
    ]


def all_trouble(records: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, list[str]]:
    """Every cycle's log trouble, by log file name, each line prefixed with its cycle."""
    out: dict[str, list[str]] = {}
    for label, found in [*((f"cycle {r['n']}", r.get("trouble") or {}) for r in records),
                         ("final", final.get("trouble") or {})]:
        for name, lines in found.items():
            out.setdefault(name, []).extend(f"({label}) {line}" for line in lines)
    return out


def report(result: dict[str, Any], verdicts: list[tuple[str, bool, str]]) -> str:
    records = result["records"]
    kills = [r for r in records if r.get("kind")]
    lines = [f"command: {' '.join(result['command'])}",
             f"kills made: {len(kills)} of {result['asked']} ({result['stopped_because']}); "
             f"cycles {len(records)}; wall {result['wall_s']:.0f} s", ""]
    lines += kind_table(records)
    lines += ["", "per cycle:"] + kill_lines(records)
    final = result["final"]
    s = final.get("summary") or {}
    lines += ["", f"final run: settled after {_n(final.get('settle_s'))} s, exit {final.get('exit')}, "
              f"stray processes {final.get('stray_processes')}"]
    if s:
        lines.append(f"summary: tasks {s.get('tasks')}; messages {s.get('messages')}; refused {s.get('refused')}; "
                     f"market_refused {s.get('market_refused')}; services {s.get('services')}; ledger {s.get('ledger')}")
    led = result["ledger"]
    lines.append(f"ledger: {led['entries']} entries, tasks {led['tasks']}, refunds {led['refunds']}, "
                 f"slashes {led['slashes']}")
    lines.append(f"depai ledger verify: exit {result['verify'][0]}: {result['verify'][1][-300:]}")
    lines += ["", "checks:"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail.strip() else ''}"
              for name, ok, detail in verdicts]
    trouble = result.get("trouble") or {}
    if trouble:
        lines += ["", "service logs (tracebacks' last lines, ERROR lines):"]
        for name, found in trouble.items():
            counts = Counter(line.split(") ", 1)[-1] for line in found)
            lines.append(f"  {name}: {len(found)} (in {', '.join(sorted({l.split(')')[0][1:] for l in found}))})")
            lines += [f"    {n}x {line[:300]}" for line, n in counts.most_common(8)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--robots", type=int, default=4)
    parser.add_argument("--city", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--speed", type=float, default=30)
    parser.add_argument("--orders-per-min", type=float, default=6)
    parser.add_argument("--rng-seed", type=int, default=15)
    parser.add_argument("--max-extra", type=int, default=8, help="kill after 1..N new entries past the settlement")
    parser.add_argument("--settle-timeout", type=float, default=300)
    parser.add_argument("--grow-timeout", type=float, default=120)
    parser.add_argument("--startup-timeout", type=float, default=180)
    parser.add_argument("--stop-timeout", type=float, default=240)
    parser.add_argument("--deadline-s", type=float, default=None, help="start no kill cycle after this many s")
    parser.add_argument("--final-for", type=float, default=120)
    parser.add_argument("--keep", default=None, help="work in this directory (kept) instead of a temporary one")
    parser.add_argument("--out", default=None, help="write the records and checks as JSON here")
    args = parser.parse_args(argv)

    where = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fleet-chaos-"))
    where.mkdir(parents=True, exist_ok=True)
    state, home = where / "fleet", where
    url = f"sqlite:///{state / 'ledger.sqlite3'}"
    rng = random.Random(args.rng_seed)
    started = time.monotonic()
    deadline = started + args.deadline_s if args.deadline_s else float("inf")
    command = ["python", "benchmarks/fleet_chaos.py", *(argv if argv is not None else sys.argv[1:])]
    progress(f"working in {where}")
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}  # lines of each service log already searched
    stopped = "all kills made"
    n = 0
    while sum(1 for r in records if r.get("kind")) < args.kills:
        if time.monotonic() > deadline:
            stopped = f"--deadline-s {args.deadline_s:g} passed"
            break
        record = cycle(args, rng, state, home, url, n, deadline)
        record["after"] = records[-1].get("kind", "stop") if records else "start"
        record["trouble"] = keep_logs(state, where, f"cycle-{n}", seen)
        records.append(record)
        progress(f"cycle {n}: kind {record.get('kind', '-')}, settled after {_n(record.get('settle_s'))} s, "
                 f"entries {record.get('entries', '-')}, orphans {len(record.get('orphans') or [])}, "
                 f"cycle {record['cycle_s']} s{'  FAILED: ' + record['failure'] if record.get('failure') else ''}"
                 f"{'  (deadline)' if record.get('deadline') else ''}")
        if record.get("deadline"):
            stopped = f"--deadline-s {args.deadline_s:g} passed during a cycle"
            break
        n += 1
    progress("final run (--for %g --json) ..." % args.final_for)
    final = final_run(args, state, home, url)
    final["trouble"] = keep_logs(state, where, "final", seen)
    progress(f"final run: settled after {_n(final.get('settle_s'))} s, exit {final.get('exit')}")
    ledger = ledger_checks(url)
    verify = verify_cli(url, home)
    result = {"command": command, "dir": str(where), "asked": args.kills, "stopped_because": stopped,
              "wall_s": time.monotonic() - started, "records": records, "final": final, "ledger": ledger,
              "verify": verify, "trouble": all_trouble(records, final)}
    verdicts = checks(records, final, ledger, verify)
    print(report(result, verdicts), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "checks": verdicts}, indent=1, default=str))
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
