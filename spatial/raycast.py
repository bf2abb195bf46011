"""Which grid cells planar lidar scans pass through (free) and end in (hit), for many beams and scans at once.

The traversal is Amanatides & Woo's exact grid traversal ("A Fast Voxel Traversal Algorithm for Ray
Tracing", Eurographics 1987), written as a set so it vectorizes. A beam is walked along its major axis
(the one it moves more along, so it crosses at most one minor grid line between two major ones); each
crossing of a major grid line leaves one cell and enters the next, both in the minor row where the
crossing happens, and those cells plus the start and end cells are the cells the segment visits.

Definition, in cell units (u, v) = world / resolution, relative to the start cell (col0, row0): with
``f`` the start's fraction ``min(u0 - col0, BELOW_ONE)`` (or with v0, row0) along an axis, ``s`` the step (+1 or -1)
along the major axis, ``n`` the major cells stepped (|floor(major end) - major start cell|) and
``slope`` = minor / major displacement (|slope| <= 1; ties go to x), crossing j = 1 .. n is at major
offset ``j * s`` and minor offset ``(j * STEP + BASE) >> 32``, in 32.32 fixed point:
``STEP = floor(s * slope * 2**32)``, ``BASE = floor((((s < 0) - f_major) * slope + f_minor) * 2**32)``.
Fixed point makes the walk exact integer arithmetic, so ``spatial.reference`` (a plain Python loop
over beams and crossings) agrees with it bit for bit on any machine; it strays from the exact
traversal only for beams within (n + 1) * 2**-32 cells of a grid corner or line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FIXED_POINT_BITS = 32
_SCALE = float(2**FIXED_POINT_BITS)
BELOW_ONE = math.nextafter(1.0, 0.0)  # u - floor(u) rounds up to 1.0 for tiny negative u: such fractions are this
_MAX_CELLS_PER_BEAM = 20_000  # keeps the fixed-point walk inside int64


@dataclass(frozen=True)
class ScanGeometry:
    """One planar scan in the world: the sensor pose (m, rad), the beam layout and the ranges (m)."""

    x: float
    y: float
    theta: float
    angle_min: float
    angle_increment: float
    range_max: float
    ranges: np.ndarray


@dataclass(frozen=True, eq=False)
class Traversal:
    """The cells a batch of scans saw, as sorted keys into one square box (side a power of two) per scan.

    Key = scan * side**2 + (ix - corners[0, scan]) * side + (iy - corners[1, scan]). Within a scan each
    cell is listed once, and a cell some beam ends in is a hit, never free (OctoMap's rule: hits win).
    """

    side: int
    corners: np.ndarray  # (2, scans) int64: the cell (ix row, iy row) at each box's [0, 0]
    free: np.ndarray
    hit: np.ndarray

    def cells(self, keys: np.ndarray) -> np.ndarray:
        """Keys (sorted, as ``free`` and ``hit`` are) as an int64 (2, n) array of cells: ix row, iy row."""
        shift = self.side.bit_length() - 1
        cells = np.empty((2, len(keys)), dtype=np.int64)
        np.right_shift(keys, shift, out=cells[0])
        cells[0] &= self.side - 1
        np.bitwise_and(keys, self.side - 1, out=cells[1])
        cells += np.repeat(self.corners, np.diff(self.bounds(keys)), axis=1)
        return cells

    def bounds(self, keys: np.ndarray) -> list[int]:
        """Where each scan's keys start in sorted ``keys``, and where the last one ends (scans + 1 offsets)."""
        starts = np.arange(self.corners.shape[1] + 1) * (self.side * self.side)
        return np.searchsorted(keys, starts).tolist()


@functools.lru_cache(maxsize=16)
def _indices(count: int) -> np.ndarray:
    """0.0, 1.0, ... count - 1 as a read-only float64 array (beam numbers)."""
    indices = np.arange(float(count))
    indices.flags.writeable = False
    return indices


def beam_ends(scans: Sequence[ScanGeometry]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The usable beams of all scans: world end points (float64 (2, beams)), is-a-return, and scan number.

    Beam ``k`` of a scan points at world angle ``theta + angle_min + k * angle_increment``. A finite range
    in [0, range_max) is a return; inf, NaN or >= range_max is no return and reaches range_max; a
    negative range says nothing and its beam is dropped.
    """
    arrays = [np.asarray(scan.ranges, dtype=np.float64).reshape(-1) for scan in scans]
    counts = [len(array) for array in arrays]
    ranges = np.concatenate(arrays)
    scan_of = np.repeat(np.arange(len(scans)), counts)
    per_scan = np.repeat(np.array([(scan.angle_increment, scan.theta + scan.angle_min, scan.range_max, scan.x,
                                    scan.y) for scan in scans]).T, counts, axis=1)
    angles = np.concatenate([_indices(count) for count in counts]) * per_scan[0]
    angles += per_scan[1]
    reach = np.fmin(ranges, per_scan[2])  # NaN and inf reach range_max
    returns = ranges < per_scan[2]
    if len(reach) and reach.min() < 0.0:
        usable = reach >= 0.0
        reach, angles, returns, scan_of, per_scan = (
            reach[usable], angles[usable], returns[usable], scan_of[usable], per_scan[:, usable])
    ends = np.empty((2, len(reach)))
    np.cos(angles, out=ends[0])
    np.sin(angles, out=ends[1])
    ends *= reach
    ends += per_scan[3:]
    return ends, returns, scan_of


def traverse(scans: Sequence[ScanGeometry], resolution: float) -> Traversal:
    """The free and hit cells of every scan, vectorized over all beams of all scans (see the module docstring)."""
    if max(scan.range_max for scan in scans) / resolution > _MAX_CELLS_PER_BEAM:
        raise ValueError(f"range_max / resolution is over {_MAX_CELLS_PER_BEAM} cells")
    end, returns, scan_of = beam_ends(scans)
    start = np.array([(scan.x, scan.y) for scan in scans]).T / resolution  # (2, scans), cell units
    start_cell = np.floor(start)
    end /= resolution
    delta = end - np.take(start, scan_of, axis=1)
    size_of = np.abs(delta)
    half = int(size_of.max(initial=0.0)) + 2  # the box reaches this many cells either side of the start cell
    side = 1 << (2 * half + 1).bit_length()  # a power of two >= 2 * half + 2
    area = side * side
    center = (side // 2) * (side + 1)  # the start cell's index in its box
    corners = start_cell.astype(np.int64) - side // 2
    moved = np.floor(end)  # end cell - start cell
    moved -= np.take(start_cell, scan_of, axis=1)
    moved = moved.astype(np.int64)
    # Per beam, rows (major axis, minor axis): y-major beams swap x and y.
    y_major = size_of[1] > size_of[0]
    major, minor = np.where(y_major, delta[::-1], delta)
    fraction = np.minimum(start - start_cell, BELOW_ONE)
    fraction = np.take(fraction, scan_of, axis=1)
    fraction = np.where(y_major, fraction[::-1], fraction)
    steps = np.where(y_major, moved[1], moved[0])
    count = np.abs(steps)
    sign = np.sign(steps)
    crossing = count > 0
    slope = np.divide(minor, major, out=np.zeros(len(steps)), where=crossing)
    fixed = np.empty((2, len(steps)))  # STEP, BASE (see the module docstring)
    np.multiply(sign, slope, out=fixed[0])
    np.subtract(sign < 0, fraction[0], out=fixed[1])
    fixed[1] *= slope
    fixed[1] += fraction[1]
    fixed[1] *= crossing  # a beam that crosses no major line walks nowhere: its j = 0 stays on the start cell
    fixed *= _SCALE
    step, base = np.floor(fixed, out=fixed).astype(np.int64)
    # Box index = j * along + origin + minor offset, folded into the fixed point. x-major beams mark the
    # scans' boxes A (x rows, y columns), y-major ones the transposed boxes B, all B boxes after all A.
    boxes = len(scans) * area
    along = sign * side
    origin = scan_of * area
    origin += center
    step += along << FIXED_POINT_BITS
    base += (y_major * boxes + origin) << FIXED_POINT_BITS
    walk = np.minimum.outer(count, np.arange(1, int(count.max(initial=0)) + 1))  # repeats pad short beams
    walk *= step[:, None]
    walk += base[:, None]
    walk >>= FIXED_POINT_BITS
    marks = np.zeros(2 * boxes, dtype=np.bool_)
    marks[walk] = True  # the cell each crossing enters ...
    walk -= along[:, None]
    marks[walk] = True  # ... and the one it leaves
    seen = marks[:boxes]
    seen.reshape(-1, side, side)[...] |= marks[boxes:].reshape(-1, side, side).transpose(0, 2, 1)
    seen[origin] = True
    origin += moved[0] * side
    origin += moved[1]
    seen[origin] = True  # a beam without a return frees its end cell too
    hit = np.unique(origin[returns])
    seen[hit] = False
    return Traversal(side, corners, seen.nonzero()[0], hit)


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
    """One scan's free and hit cells: two int64 (n, 2) arrays of (ix, iy) = floor(world / resolution), sorted.

    Each cell is listed once; a return frees the cells up to its end cell and hits that cell; no
    return frees everything up to range_max; a hit of any beam is never also free.
    """
    seen = traverse([ScanGeometry(x, y, theta, angle_min, angle_increment, range_max, ranges)], resolution)
    return seen.cells(seen.free).T, seen.cells(seen.hit).T
