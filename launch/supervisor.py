"""Starts a fleet's service processes, watches them, restarts one that dies, and stops them all.

``depai up`` hands it one ``ServiceSpec`` per process (``depai serve ROLE ...``).
They start in the order given, each once the one before has said it is up (its
first status on the bus, see launch/statuses.py). A process that exits while
the fleet runs is restarted after a backoff that doubles from 1 s to 30 s (and
resets once it has stayed up a minute); every restart is counted by role and
said on stderr. Children get SIGTERM if the supervisor itself dies (Linux's
parent-death signal), so a killed ``depai up`` leaves no service behind. A stop
sends SIGTERM in reverse order and SIGKILL to what has not exited in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bus.processes import die_with_parent as _die_with_parent

MIN_BACKOFF_S, MAX_BACKOFF_S, STEADY_S = 1.0, 30.0, 60.0


@dataclass
class ServiceSpec:
    """One service process: its name (role-index), its command, and where its output goes."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff_s: float = MIN_BACKOFF_S
    restart_at: float | None = None


class Supervisor:
    """The service processes of one fleet run."""

    def __init__(self, *, say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> None:
        self.services: list[ServiceSpec] = []
        self.restarts: Counter[str] = Counter()
        self.exits: list[tuple[str, int]] = []  # (service, exit code) of every unexpected exit
        self.say = say
        self.stopping = False

    def start(self, spec: ServiceSpec, ready: Callable[[ServiceSpec], bool] = lambda spec: True,
              timeout: float = 60.0) -> None:
        """Start ``spec`` and wait until ``ready(spec)``; RuntimeError (with its log's tail) if it exits first."""
        self.services.append(spec)
        self._spawn(spec)
        deadline = time.monotonic() + timeout
        while not ready(spec):
            if spec.process is not None and spec.process.poll() is not None:
                raise RuntimeError(f"{spec.name} exited with {spec.process.returncode} while starting:\n"
                                   f"{tail(spec.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{spec.name} did not come up within {timeout:g} s:\n{tail(spec.log)}")
            time.sleep(0.1)

    def _spawn(self, spec: ServiceSpec) -> None:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            spec.process = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            env={**os.environ, **spec.env}, preexec_fn=_die_with_parent)
        spec.started_at, spec.restart_at = time.monotonic(), None

    def watch(self) -> None:
        """Restart what died (after its backoff); call it every fraction of a second while the fleet runs."""
        if self.stopping:
            return
        now = time.monotonic()
        for spec in self.services:
            process = spec.process
            if spec.restart_at is not None:
                if now >= spec.restart_at:
                    self.restarts[spec.name.rsplit("-", 1)[0]] += 1
                    self._spawn(spec)
                continue
            if process is None or process.poll() is None:
                if now - spec.started_at > STEADY_S:
                    spec.backoff_s = MIN_BACKOFF_S
                continue
            self.exits.append((spec.name, process.returncode))
            spec.restart_at = now + spec.backoff_s
            self.say(f"depai up: {spec.name} exited ({_how(process.returncode)}); restarting it in "
                     f"{spec.backoff_s:g} s (log: {spec.log})")
            spec.backoff_s = min(MAX_BACKOFF_S, spec.backoff_s * 2)

    def stop(self, names: list[str] | None = None, timeout: float = 20.0) -> None:
        """SIGTERM the services (those named, or all, in reverse order of start), then SIGKILL the late ones."""
        chosen = [s for s in reversed(self.services) if names is None or s.name in names]
        if names is None:
            self.stopping = True
        for spec in chosen:
            spec.restart_at = None
            if spec.process is not None and spec.process.poll() is None:
                spec.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for spec in chosen:
            if spec.process is None:
                continue
            try:
                spec.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                spec.process.kill()
                spec.process.wait()
                self.say(f"depai up: {spec.name} did not stop within {timeout:g} s and was killed")

    def pids(self) -> dict[str, int]:
        """The running services' process ids, by name."""
        return {s.name: s.process.pid for s in self.services if s.process is not None and s.process.poll() is None}


def _how(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a service's log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
