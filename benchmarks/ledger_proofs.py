"""Ledger proof latency at 1,000,000 entries: ledger.tree.MerkleTree against ledger.merkle, in process and over HTTP.

    .venv/bin/python benchmarks/ledger_proofs.py                       # 1,000,000 entries
    .venv/bin/python benchmarks/ledger_proofs.py --keep /tmp/proofs.sqlite3   # the same, its ledger kept for next time
    .venv/bin/python benchmarks/ledger_proofs.py --entries 5000 --requests 200 --baseline-requests 5   # a short run

The ledger is benchmarks/ledger_fill.py's month of a 200-robot fleet, built
once into its cache under the temp directory and copied from there (to
``--keep PATH``, reused on later runs, or to a temporary file), so the cache is
never written to. If the newest checkpoint does not cover every entry, one is
signed with the fill's operator key. In process: the leaf hashes are read in
order, a ``MerkleTree`` is built over them, and random inclusion proofs,
consistency proofs (old size random, new size the whole ledger) and roots of
random sizes are timed against ``ledger.merkle``, which rehashes every leaf per
call; each baseline answer is checked equal to the tree's. Over HTTP: the
dashboard's own app over a read-only ``LedgerView`` runs as a uvicorn process
of its own, and sequential requests with random entries go to
``/api/ledger/inclusion/{seq}`` and ``/api/ledger/consistency?old=M&new=N``
(skipped with a note where the app has no such route); the baseline, in the
same server, answers the same questions with ``ledger.merkle`` over the leaves
held in memory (routes added only here). Answers are checked equal first.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ in ("__main__", "__mp_main__"):
    # Run as ``python benchmarks/ledger_proofs.py``: put the repository root first on sys.path.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from benchmarks.dashboard_api import latencies, percentile  # noqa: E402
from benchmarks.ledger_fill import DAO_DID, OPERATOR, Shape, cached  # noqa: E402
from dashboard.app import create_app  # noqa: E402
from dashboard.view import LedgerView  # noqa: E402
from ledger import merkle  # noqa: E402
from ledger.journal import Ledger  # noqa: E402
from ledger.tree import MerkleTree  # noqa: E402
from tests.pgserver import free_port  # noqa: E402

GOAL_P99_MS = 5.0
ROOT = Path(__file__).resolve().parent.parent
LEDGER_URL_VARIABLE = "DEPAI_LEDGER_PROOFS_URL"  # how the server process learns which ledger to serve


# --- the ledger --------------------------------------------------------------------------------------

def ledger_file(entries: int, keep: Path | None, scratch: Path) -> Path:
    """The ledger to time: ``keep`` if it exists, else a copy of ledger_fill's cached one at ``keep`` (or in
    ``scratch``). The cache itself is never written to: it stays as ledger_fill built it."""
    if keep is not None and keep.exists():
        print(f"ledger: reusing {keep} ({keep.stat().st_size / 2**20:,.0f} MiB)")
        return keep
    started = time.perf_counter()
    source, built = cached(Shape(entries), progress=_progress("building the ledger"))
    path = keep if keep is not None else scratch / source.name
    shutil.copyfile(source, path)
    print(f"ledger: {entries:,} entries, {'built' if built else 'found'} in ledger_fill's cache and copied to {path} "
          f"in {time.perf_counter() - started:.1f} s ({path.stat().st_size / 2**20:,.0f} MiB)")
    return path


def sign_checkpoint(path: Path) -> int:
    """Sign a checkpoint of the whole ledger with the fill's operator key, unless the newest covers it; its size."""
    ledger = Ledger.open(f"sqlite:///{path}", OPERATOR)
    try:
        latest = ledger.latest_checkpoint()
        if latest is None or latest[0].size != ledger.size():
            started = time.perf_counter()
            ledger.checkpoint()
            print(f"checkpoint: signed in {time.perf_counter() - started:.1f} s (Ledger.checkpoint, the code under "
                  "test)")
        return ledger.size()
    finally:
        ledger.close()


def read_leaves(ledger: Ledger) -> list[bytes]:
    """Every entry's leaf hash, in order."""
    return [bytes(leaf) for (leaf,) in ledger.db.read("SELECT leaf FROM entries ORDER BY seq")]


# --- the server process --------------------------------------------------------------------------------

def served_app() -> FastAPI:
    """The dashboard's app over a read-only view of the ledger, plus the baseline: ledger.merkle over held leaves.

    The factory ``python -m uvicorn --factory`` calls in the server process (the ledger's URL in the environment).
    """
    view = LedgerView.open(os.environ[LEDGER_URL_VARIABLE], DAO_DID)
    app = create_app(view)
    held: list[bytes] = []

    def leaves() -> list[bytes]:
        if not held:
            held.extend(read_leaves(view.ledger))
        return held

    def inclusion_merkle(seq: int, size: int) -> dict[str, Any]:
        some = leaves()[:size]
        return {"seq": seq, "size": size, "leaf": some[seq - 1].hex(), "root": merkle.root(some).hex(),
                "proof": [node.hex() for node in merkle.inclusion_proof(seq - 1, some)]}

    def consistency_merkle(old: int, new: int) -> dict[str, Any]:
        return {"old_size": old, "new_size": new,
                "proof": [node.hex() for node in merkle.consistency_proof(old, leaves()[:new])]}

    app.add_api_route("/bench/merkle/inclusion/{seq}", inclusion_merkle, methods=["GET"])
    app.add_api_route("/bench/merkle/consistency", consistency_merkle, methods=["GET"])
    return app


class ServerProcess:
    """``python -m uvicorn --factory benchmarks.ledger_proofs:served_app`` on a free port of 127.0.0.1."""

    def __init__(self, path: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._command = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.ledger_proofs:served_app",
                         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                         "--lifespan", "off"]
        self._env = {**os.environ, LEDGER_URL_VARIABLE: f"sqlite:///{path}",
                     "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(self._command, cwd=ROOT, env=self._env)
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self._process.returncode}")
            try:
                httpx.get(self.url + "/api/ledger/checkpoint", timeout=5).raise_for_status()
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not answer within 60 s") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# --- timing ----------------------------------------------------------------------------------------------

Row = tuple[str, str, list[float]]  # question, approach, seconds per call (the baseline row of a question first)


def in_process(leaves: list[bytes], read_s: float, requests: int, baseline_requests: int,
               rng: random.Random) -> list[Row]:
    """Build the tree over ``leaves``, then time random proofs and roots from it and from ledger.merkle (each
    baseline answer checked equal to the tree's)."""
    started = time.perf_counter()
    tree = MerkleTree(leaves)
    build_s = time.perf_counter() - started
    tracemalloc.start()  # a second build, traced: what the tree holds beyond the leaves it shares with the list
    traced = MerkleTree(leaves)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del traced
    print(f"tree: read {len(leaves):,} leaf hashes in {read_s:.2f} s, built the tree over them in {build_s:.2f} s; "
          f"it holds {held / 2**20:,.0f} MiB beyond the leaves")
    n = len(leaves)
    questions: list[tuple[str, Callable[[int], Any], Callable[[int], Any], Callable[[], int]]] = [
        ("inclusion proof", lambda i: merkle.inclusion_proof(i, leaves), tree.inclusion_proof,
         lambda: rng.randrange(n)),
        (f"consistency proof (new size {n:,})", lambda m: merkle.consistency_proof(m, leaves),
         tree.consistency_proof, lambda: rng.randrange(1, n)),
        ("root of a random size", lambda m: merkle.root(leaves[:m]), tree.root, lambda: rng.randrange(1, n + 1)),
    ]
    rows: list[Row] = []
    for question, old, new, draw in questions:
        def baseline() -> None:
            argument = draw()
            if old(argument) != new(argument):
                raise AssertionError(f"{question}: the tree and ledger.merkle disagree at {argument}")

        rows.append((question, "ledger.merkle, every leaf rehashed (baseline)",
                     latencies(baseline, baseline_requests, 1, f"{question}, ledger.merkle")))
        rows.append((question, "MerkleTree", latencies(lambda: new(draw()), requests, 100, f"{question}, tree")))
    return rows


def over_http(path: Path, entries: int, requests: int, baseline_requests: int, rng: random.Random) -> list[Row]:
    """Random inclusion and consistency requests to a server process: its dashboard routes, then the baseline's."""
    rows: list[Row] = []
    with ServerProcess(path) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        def get(route: Callable[[], str]) -> Callable[[], None]:
            def call() -> None:
                client.get(route()).raise_for_status()
            return call

        started = time.perf_counter()
        checked = client.get(f"/api/ledger/inclusion/{entries}")
        print(f"first inclusion request (the server reads the leaves): {time.perf_counter() - started:.2f} s")
        checked.raise_for_status()
        _agree(checked.json(), client.get(f"/bench/merkle/inclusion/{entries}", params={"size": entries}).json())
        rows.append(("GET inclusion proof", "ledger.merkle route (baseline)", latencies(
            get(lambda: f"/bench/merkle/inclusion/{rng.randint(1, entries)}?size={entries}"), baseline_requests, 1,
            "inclusion, ledger.merkle over HTTP")))
        rows.append(("GET inclusion proof", "/api/ledger/inclusion/{seq}", latencies(
            get(lambda: f"/api/ledger/inclusion/{rng.randint(1, entries)}"), requests, 50, "inclusion over HTTP")))

        old = max(1, entries // 3)
        probe = client.get("/api/ledger/consistency", params={"old": old, "new": entries})
        if probe.status_code == 404:
            print(f"GET /api/ledger/consistency answered 404 ({probe.text[:120]}): skipped; the dashboard has no "
                  "consistency route yet")
            return rows
        probe.raise_for_status()
        _agree(probe.json(), client.get("/bench/merkle/consistency", params={"old": old, "new": entries}).json())
        rows.append(("GET consistency proof", "ledger.merkle route (baseline)", latencies(
            get(lambda: f"/bench/merkle/consistency?old={rng.randrange(1, entries)}&new={entries}"),
            baseline_requests, 1, "consistency, ledger.merkle over HTTP")))
        rows.append(("GET consistency proof", "/api/ledger/consistency?old=M&new=N", latencies(
            get(lambda: f"/api/ledger/consistency?old={rng.randrange(1, entries)}&new={entries}"), requests, 50,
            "consistency over HTTP")))
    return rows


def table(rows: list[Row]) -> None:
    """The rows as a Markdown table, each against the baseline row of its question."""
    print("| question | approach | calls | p50 ms | p99 ms | p50 vs baseline | p99 vs baseline |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base: dict[str, tuple[float, float]] = {}
    for question, approach, times in rows:
        p50, p99 = percentile(times, 50), percentile(times, 99)
        b50, b99 = base.setdefault(question, (p50, p99))
        print(f"| {question} | {approach} | {len(times):,} | {p50:.3f} | {p99:.3f} | {p50 / b50:.5f} | "
              f"{p99 / b99:.5f} |")


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the ledger, time proofs in process and over HTTP, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger size (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=2_000, help="timed calls per question with the tree, in "
                                                                    "process and over HTTP (default 2,000)")
    parser.add_argument("--baseline-requests", type=int, default=20, help="timed calls per question with "
                                                                          "ledger.merkle (default 20)")
    parser.add_argument("--keep", type=Path, default=None, help="a ledger file to keep and reuse: copied there from "
                        "ledger_fill's cache the first time (default: a temporary copy, removed at the end)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="ledger-proofs-") as scratch:
        path = ledger_file(args.entries, args.keep, Path(scratch))
        entries = sign_checkpoint(path)
        print(f"ledger: {entries:,} entries, the newest checkpoint covers them all")
        ledger = Ledger.open(f"sqlite:///{path}", None)
        try:
            started = time.perf_counter()
            leaves = read_leaves(ledger)
            read_s = time.perf_counter() - started
        finally:
            ledger.close()
        local = in_process(leaves, read_s, args.requests, args.baseline_requests, rng)
        remote = over_http(path, entries, args.requests, args.baseline_requests, rng)

    print(f"\nIn process, {entries:,} leaves; sequential calls, random arguments\n")
    table(local)
    print(f"\nOver HTTP: the dashboard's app in a uvicorn process, {entries:,} entries; sequential requests "
          "from one httpx connection, random entries\n")
    table(remote)
    dashboard = [times for _, approach, times in remote if approach.startswith("/api/")]
    worst = max(percentile(times, 99) for times in dashboard)
    print(f"\ngoal p99 < {GOAL_P99_MS:.0f} ms over HTTP: {'met' if worst < GOAL_P99_MS else 'NOT met'} "
          f"(worst dashboard route p99 {worst:.2f} ms)")
    return 0


def _agree(mine: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Refuse to time a dashboard route whose answer differs from the baseline's in any field the baseline has."""
    differ = [key for key in baseline if mine.get(key) != baseline[key]]
    if differ:
        raise AssertionError(f"the dashboard and ledger.merkle answer differently ({', '.join(differ)}): {mine}")


def _progress(label: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        print(f"  {label}: {done:,}/{total:,} entries", file=sys.stderr, flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
