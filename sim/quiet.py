"""Keep PyBullet's C-level chatter (build banner, connect logs) off the user's terminal.

Everything in ``sim`` imports pybullet through :func:`import_pybullet`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_LIBC = ctypes.CDLL(None)


@contextmanager
def silenced() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for the block, C stdio buffers included."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _LIBC.fflush(None)  # what C printf buffered must land in /dev/null, not after the restore
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def import_pybullet() -> ModuleType:
    """The pybullet module, imported without its build-time banner."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    with silenced():
        import pybullet
    return pybullet
