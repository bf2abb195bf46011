"""PyBullet's C-level chatter never reaches the terminal, checked in fresh interpreters where the banner would print."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )


def test_importing_pybullet_prints_nothing() -> None:
    out = run("from sim.quiet import import_pybullet; import_pybullet()")
    assert (out.stdout, out.stderr) == ("", "")


def test_plain_import_does_print_so_the_check_above_can_fail() -> None:
    out = run("import pybullet")
    assert "pybullet build time" in out.stdout + out.stderr


def test_building_and_running_worlds_prints_nothing() -> None:
    code = (
        "from sim.geometry import Box\n"
        "from sim.world import World\n"
        "for physics in ('kinematic', 'dynamic'):\n"
        "    with World([Box(5, 0, 1, 1, 2)], seed=1, physics=physics) as w:\n"
        "        w.add_robot(0, 0, 0)\n"
        "        w.command(0, 1.0, 0.2)\n"
        "        w.step(5)\n"
    )
    out = run(code)
    assert (out.stdout, out.stderr) == ("", "")


def test_silenced_swallows_c_level_writes_and_restores_the_streams() -> None:
    code = (
        "import ctypes, os, sys\n"
        "from sim.quiet import silenced\n"
        "libc = ctypes.CDLL(None)\n"
        "with silenced():\n"
        "    os.write(1, b'fd1 ')\n"
        "    os.write(2, b'fd2 ')\n"
        "    libc.printf(b'buffered printf ')\n"
        "    print('python print')\n"
        "print('after', flush=True)\n"
        "sys.stderr.write('err after')\n"
    )
    out = run(code)
    assert out.stdout == "after\n"
    assert out.stderr == "err after"
