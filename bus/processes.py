"""Child processes that end with their parent, and a look at processes we did not start.

``die_with_parent`` is a ``preexec_fn`` for ``subprocess.Popen``: on Linux it asks
the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when its
parent dies, however it dies (a SIGKILL of ``depai up`` included). Elsewhere it
does nothing and the parent's own stop has to end the child. The signal comes
when the *thread* that started the child ends, so start long-lived children from
a thread that lives as long as they should (the main thread, in practice).

``command_line`` and ``alive`` look at any process by pid (``/proc`` on Linux,
``ps`` elsewhere), so a process can recognise one that an earlier, killed run of
it left behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PROC = Path("/proc")


def die_with_parent(parent: int | None = None) -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the child: get SIGTERM when the parent dies. ``parent`` is the parent's pid as it was before the fork
    (bind it with functools.partial); if the parent is already gone by the time the signal is asked for, which
    the kernel would never report, the child exits at once instead of running on as an orphan."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the parent's stop() still ends the child
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie (an exited process nobody has reaped yet)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    stat = _PROC / str(pid) / "stat"
    if _PROC.is_dir():
        try:
            # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses)
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False
    return True


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), to tell it from a later process that got
    the same pid; None where that cannot be read."""
    try:
        return int((_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> list[str] | None:
    """The argv process ``pid`` runs, or None if there is no such process (or it is a zombie)."""
    if not alive(pid):
        return None
    if _PROC.is_dir():
        try:
            raw = (_PROC / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] or None
    try:  # pragma: no cover - not Linux: ps joins argv with spaces
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split() or None
