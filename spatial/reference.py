"""The straightforward per-ray, per-cell map update: the yardstick the fast code is tested and benchmarked against.

Nothing in the running fleet uses this module. It follows the definitions of ``spatial.raycast`` and
``spatial.grid`` one beam and one cell at a time in plain Python, so tests can check the fast code for
exact agreement and the map benchmark can measure the fast code against it in the same run.
"""

from __future__ import annotations

import math

import numpy as np

from spatial.grid import GridSpec
from spatial.raycast import BELOW_ONE, FIXED_POINT_BITS, ScanGeometry, beam_ends

_SCALE = float(2**FIXED_POINT_BITS)

Cell = tuple[int, int]
CellLayers = dict[tuple[str, int, int], tuple[float, float]]  # (did, ix, iy) -> (own log-odds, time last written)


def scan_cells(
    x: float,
    y: float,
    theta: float,
    angle_min: float,
    angle_increment: float,
    range_max: float,
    ranges: np.ndarray,
    resolution: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``spatial.raycast.scan_cells`` beam by beam: the same (free, hit) cells, sorted, from a plain Python loop.

    Beam end points come from ``raycast.beam_ends`` so both use the very same trigonometry; the
    traversal, the part under test, is walked here one grid crossing at a time.
    """
    ends, returns, _ = beam_ends([ScanGeometry(x, y, theta, angle_min, angle_increment, range_max, ranges)])
    u0, v0 = x / resolution, y / resolution
    col0, row0 = math.floor(u0), math.floor(v0)
    free: set[Cell] = {(col0, row0)} if len(returns) else set()
    hit: set[Cell] = set()
    for ex, ey, is_return in zip(*ends.tolist(), returns.tolist(), strict=True):
        u1, v1 = ex / resolution, ey / resolution
        col1, row1 = math.floor(u1), math.floor(v1)
        fu, fv = min(u0 - col0, BELOW_ONE), min(v0 - row0, BELOW_ONE)
        for dcol, drow in _crossed(fu, fv, col1 - col0, row1 - row0, u1 - u0, v1 - v0):
            free.add((col0 + dcol, row0 + drow))
        (hit if is_return else free).add((col1, row1))
    free -= hit
    return _array(free), _array(hit)


def _crossed(fu: float, fv: float, dcol: int, drow: int, du: float, dv: float) -> list[Cell]:
    """The cells on both sides of each major-axis grid line one beam crosses, relative to its start cell."""
    x_major = abs(du) >= abs(dv)
    d_major, d_minor, steps, f_major, f_minor = (du, dv, dcol, fu, fv) if x_major else (dv, du, drow, fv, fu)
    sign = (steps > 0) - (steps < 0)
    cells = []
    if steps:
        slope = d_minor / d_major
        step = math.floor(sign * slope * _SCALE)
        base = math.floor((((sign < 0) - f_major) * slope + f_minor) * _SCALE)
        for j in range(1, abs(steps) + 1):
            offset = (j * step + base) >> FIXED_POINT_BITS
            for major in (j * sign, (j - 1) * sign):  # the cell the crossing enters, and the one it leaves
                cells.append((major, offset) if x_major else (offset, major))
    return cells


def _array(cells: set[Cell]) -> np.ndarray:
    """Cells as a sorted int64 (n, 2) array."""
    return np.array(sorted(cells), dtype=np.int64).reshape(-1, 2)


def integrate(
    layers: CellLayers,
    spec: GridSpec,
    did: str,
    pose: tuple[float, float, float],
    angle_min: float,
    angle_increment: float,
    range_max: float,
    ranges: np.ndarray,
    t_s: float,
) -> None:
    """``OccupancyGrid.integrate`` one cell at a time into a dict: fade the cell's own log-odds to t_s, add, clamp."""
    free, hit = scan_cells(*pose, angle_min, angle_increment, range_max, ranges, spec.resolution_m)
    for cells, change in ((free, spec.l_miss), (hit, spec.l_hit)):
        for ix, iy in cells.tolist():
            value = log_odds(layers, spec, did, ix, iy, t_s)
            layers[did, ix, iy] = (min(max(value + change, spec.l_min), spec.l_max), t_s)


def log_odds(layers: CellLayers, spec: GridSpec, did: str, ix: int, iy: int, t_s: float) -> float:
    """The contributor's own log-odds of cell (ix, iy) at t_s, faded since it was last written (0 = unknown)."""
    value, written = layers.get((did, ix, iy), (0.0, t_s))
    return value * math.exp(-(t_s - written) / spec.fade_s)
