"""Ground-plane contact tests: robot discs against boxes, and robot discs against each other.

Both bucket shapes in a uniform grid so each robot tests only its neighbourhood, vectorized over the fleet.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sim.geometry import Box

_MAX_CELLS = 65536  # keeps the bucket table small for wide worlds of tiny boxes
_MIN_CELL_M = 0.5


class BoxGrid:
    """Axis-aligned boxes bucketed so that any disc of radius up to ``reach`` finds every box it could touch."""

    def __init__(self, boxes: Iterable[Box], reach: float) -> None:
        table = np.array([(b.x, b.y, b.half_x, b.half_y) for b in boxes], dtype=float).reshape(-1, 4)
        self.reach = reach
        self._cx, self._cy, self._hx, self._hy = table.T.copy()
        if len(table) == 0:
            self._cells = np.full((1, 1), -1)
            self._origin, self._cell, self._nx, self._ny = np.zeros(2), 1.0, 1, 1
            return
        lo = np.stack([self._cx - self._hx, self._cy - self._hy], axis=1) - reach
        hi = np.stack([self._cx + self._hx, self._cy + self._hy], axis=1) + reach
        span = hi.max(axis=0) - lo.min(axis=0)
        extent = np.median((hi - lo).max(axis=1))
        area = float(span.prod())
        cell = max(float(extent) / 2, (area / len(table)) ** 0.5, (area / _MAX_CELLS) ** 0.5, _MIN_CELL_M)
        self._origin, self._cell = lo.min(axis=0), cell
        self._nx, self._ny = (np.floor(span / cell).astype(int) + 1).tolist()
        first = np.floor((lo - self._origin) / cell).astype(int)
        last = np.floor((hi - self._origin) / cell).astype(int)
        width = last[:, 0] - first[:, 0] + 1
        count = width * (last[:, 1] - first[:, 1] + 1)
        box = np.repeat(np.arange(len(table)), count)
        k = np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)
        ix = first[box, 0] + k % width[box]
        iy = first[box, 1] + k // width[box]
        cell_of = iy * self._nx + ix
        order = np.argsort(cell_of, kind="stable")
        cell_of, box = cell_of[order], box[order]
        per_cell = np.bincount(cell_of, minlength=self._nx * self._ny)
        slot = np.arange(len(box)) - (np.cumsum(per_cell) - per_cell)[cell_of]
        self._cells = np.full((self._nx * self._ny, int(per_cell.max())), -1)
        self._cells[cell_of, slot] = box

    def __len__(self) -> int:
        return len(self._cx)

    def gap(self, x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """Signed distance from each disc's edge to the nearest box: negative by the overlap, inf when none is near."""
        if len(self._cx) == 0:
            return np.full(len(x), np.inf)
        ix = np.clip(((x - self._origin[0]) // self._cell).astype(int), 0, self._nx - 1)
        iy = np.clip(((y - self._origin[1]) // self._cell).astype(int), 0, self._ny - 1)
        candidates = self._cells[iy * self._nx + ix]  # (N, K), -1 pads
        qx = np.abs(x[:, None] - self._cx[candidates]) - self._hx[candidates]
        qy = np.abs(y[:, None] - self._cy[candidates]) - self._hy[candidates]
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        signed = outside + np.minimum(np.maximum(qx, qy), 0.0)  # negative inside: depth to the nearest face
        return np.where(candidates >= 0, signed, np.inf).min(axis=1) - radius


_ROW = 1 << 31  # hash key of grid cell (ix, iy): ix * _ROW + iy
_NEIGHBOURS = np.array([dx * _ROW + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)], dtype=np.int64)


def near_pairs(x: np.ndarray, y: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, of points in the same or neighbouring ``cell``-wide squares of a uniform grid.

    A superset of the pairs closer than ``cell``, found through a spatial hash instead of all pairs.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key = (x // cell).astype(np.int64) * _ROW + (y // cell).astype(np.int64)
    order = np.argsort(key, kind="stable")
    cells, first, count = np.unique(key[order], return_index=True, return_counts=True)
    probe = (key[:, None] + _NEIGHBOURS).ravel()  # the nine cells around each point
    slot = np.minimum(np.searchsorted(cells, probe), len(cells) - 1)
    found = np.where(cells[slot] == probe, count[slot], 0)
    offset = np.arange(int(found.sum())) - np.repeat(np.cumsum(found) - found, found)
    i = np.repeat(np.repeat(np.arange(n), len(_NEIGHBOURS)), found)
    j = order[np.repeat(first[slot], found) + offset]
    other = i != j
    return i[other], j[other]


def disc_gaps(x: np.ndarray, y: np.ndarray, radius: np.ndarray, reach: float) -> np.ndarray:
    """Distance from each disc's edge to the nearest other disc's edge (negative when they overlap).

    Neighbours come from a spatial hash instead of all pairs; inf when no other disc is within ``reach``.
    """
    gaps = np.full(len(x), np.inf)
    if len(x) < 2:
        return gaps
    i, j = near_pairs(x, y, 2.0 * float(radius.max()) + reach)
    np.minimum.at(gaps, i, np.hypot(x[i] - x[j], y[i] - y[j]) - radius[i] - radius[j])
    return gaps
