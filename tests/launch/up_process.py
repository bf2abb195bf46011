"""``depai up`` as a child process, for end-to-end tests of the long-running command.

``UpProcess(args, home)`` starts ``python -m launch.cli up *args`` (``command=[...]`` replaces the part
before ``args``; ``env={...}`` adds variables) with ``DEPAI_HOME=home``, in the repository root, stdin from
/dev/null, in a session of its own. Two reader threads drain stdout and stderr into ``stdout_lines`` and
``stderr_lines`` (lines as read, with their newlines) as they come, so neither pipe ever fills; each closes
its pipe when the last writer is gone.

- ``wait_for_line(pattern, timeout=30)``: the ``re.Match`` of the first stderr line (from the start) that
  ``re.search`` matches; raises AssertionError with the stderr tail when the timeout passes first, or when
  the process closes stderr (exits) first, saying how it ended.
- ``dashboard_url``: the URL of the stderr line ``dashboard at http://...`` (waits for it, up to
  ``startup_timeout`` seconds, 60 unless told).
- ``stop(timeout=30)``: SIGINT (what Ctrl-C does), wait, return the exit code; SIGKILL on timeout (the code
  is then -9). Processes left in its session (children it did not stop) are killed, and
  ``stray_processes`` becomes True. Always reaps the process and waits (up to 10 s) for the readers to
  finish and close the pipes. Calling it again returns the same code.
- ``stdout_text``, ``stderr_text``: everything read so far; ``returncode``: None until stopped; ``pid``.

Leaving ``with`` calls ``stop()``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
UP_COMMAND = [sys.executable, "-m", "launch.cli", "up"]
DASHBOARD_LINE = r"dashboard at (http://\S+)"
# A child inherits an ignored SIGINT (e.g. pytest started in the background by a script), and Python then
# installs no KeyboardInterrupt handler: run the command through this, which restores the default first.
_SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execvp(sys.argv[1], sys.argv[1:])")


class UpProcess:
    def __init__(self, args: list[str], home: Path, *, command: list[str] | None = None,
                 env: dict[str, str] | None = None, startup_timeout: float = 60.0) -> None:
        self.argv = [*(command or UP_COMMAND), *args]
        self.home = Path(home)
        self.startup_timeout = startup_timeout
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.stray_processes = False
        self._changed = threading.Condition()
        self._stderr_done = False
        self._reaped = False
        argv = self.argv
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            argv = [sys.executable, "-c", _SIGINT_DEFAULT, *argv]
        self._process = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {}), "DEPAI_HOME": str(self.home)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, start_new_session=True,
        )
        self._readers = [
            threading.Thread(target=self._drain, args=(self._process.stdout, self.stdout_lines, False),
                             name="up-stdout", daemon=True),
            threading.Thread(target=self._drain, args=(self._process.stderr, self.stderr_lines, True),
                             name="up-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> UpProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._reaped else None

    @property
    def stdout_text(self) -> str:
        with self._changed:
            return "".join(self.stdout_lines)

    @property
    def stderr_text(self) -> str:
        with self._changed:
            return "".join(self.stderr_lines)

    @property
    def dashboard_url(self) -> str:
        return self.wait_for_line(DASHBOARD_LINE, self.startup_timeout).group(1)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first stderr line that matches ``pattern`` (re.search), waiting up to ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                for line in self.stderr_lines[checked:]:
                    if match := regex.search(line):
                        return match
                checked = len(self.stderr_lines)
                left = deadline - time.monotonic()
                if self._stderr_done or left <= 0:
                    break
                self._changed.wait(left)
        if self._stderr_done:  # it closes stderr when it exits
            status = self._exit_status(5.0)
            why = f"{status} before it printed a line" if status else "closed its stderr without a line"
        else:
            why = f"printed no line in {timeout:g} s"
        raise AssertionError(f"{self._name()} {why} matching {pattern!r}; its stderr ends:\n{self._tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, then wait up to ``timeout`` seconds (SIGKILL after); returns the exit code. Always reaps."""
        process = self._process
        try:
            if not self._reaped:
                # os.kill, not Popen.send_signal: that reaps an exited process, and its pid must stay
                # taken until the stray processes of its session are gone.
                if self._exit_status() is None:
                    os.kill(process.pid, signal.SIGINT)
                if self._exit_status(timeout) is None:
                    os.kill(process.pid, signal.SIGKILL)
                    self._exit_status(None)
                strays = _session_members(process.pid)
                for pid in strays:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.stray_processes = self.stray_processes or bool(strays)
        finally:
            process.wait()
            self._reaped = True
            for reader in self._readers:  # each closes its pipe at the end (when the last writer is gone)
                reader.join(timeout=10)
        return process.returncode

    def _exit_status(self, timeout: float | None = 0.0) -> str | None:
        """How the process ended ("exited with code 3", "was killed by SIGKILL"), or None while it runs,
        waiting up to ``timeout`` seconds (None: for ever). Never reaps it."""
        if self._reaped:
            return f"exited with code {self._process.returncode}"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None and info.si_pid:
                if info.si_code == os.CLD_EXITED:
                    return f"exited with code {info.si_status}"
                return f"was killed by {signal.Signals(info.si_status).name}"
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def _drain(self, pipe: IO[str], lines: list[str], is_stderr: bool) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    lines.append(line)
                    self._changed.notify_all()
        if is_stderr:
            with self._changed:
                self._stderr_done = True
                self._changed.notify_all()

    def _name(self) -> str:
        return " ".join(self.argv[:6]) + (" ..." if len(self.argv) > 6 else "")

    def _tail(self, lines: int = 30) -> str:
        with self._changed:
            return "".join(self.stderr_lines[-lines:]) or "(nothing)\n"


def _session_members(session_id: int) -> list[int]:
    """The live processes of a session other than its leader (Linux: from /proc; zombies do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, session
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        if int(fields[3]) == session_id and pid != session_id and fields[0] != "Z":
            members.append(pid)
    return members
