"""Vectorized scan traversal: exactly the per-ray reference, geometrically the exact grid traversal, hits win."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial import reference
from spatial.raycast import ScanGeometry, traverse, scan_cells

RES = 0.2


def cells(array: np.ndarray) -> set[tuple[int, int]]:
    return {(int(ix), int(iy)) for ix, iy in array}


def one_beam(x: float, y: float, angle: float, r: float, range_max: float = 12.0) -> tuple[set, set]:
    free, hit = scan_cells(x, y, 0.0, angle, 0.1, range_max, np.array([r]), RES)
    return cells(free), cells(hit)


coordinate = st.one_of(st.floats(-60.0, 60.0), st.integers(-300, 300).map(lambda i: i * RES))  # on grid lines too
angle = st.one_of(st.floats(-7.0, 7.0), st.sampled_from([0.0, math.pi / 2, math.pi, -math.pi / 2, math.pi / 4]))
a_range = st.one_of(st.floats(0.0, 14.0), st.sampled_from([0.0, math.inf, math.nan, -1.0, 12.0]))


@st.composite
def scans(draw: st.DrawFn) -> ScanGeometry:
    count = draw(st.integers(1, 40))
    return ScanGeometry(draw(coordinate), draw(coordinate), draw(angle), draw(angle), draw(st.floats(0.0, 0.4)),
                        draw(st.floats(0.3, 12.0)), np.array(draw(st.lists(a_range, min_size=count, max_size=count))))


@settings(max_examples=300, deadline=None)
@given(scan=scans(), resolution=st.sampled_from([0.05, 0.2, 0.5, 1.0]))
def test_vectorized_cells_equal_the_per_ray_reference_exactly(scan: ScanGeometry, resolution: float) -> None:
    fast = scan_cells(scan.x, scan.y, scan.theta, scan.angle_min, scan.angle_increment, scan.range_max,
                      scan.ranges, resolution)
    slow = reference.scan_cells(scan.x, scan.y, scan.theta, scan.angle_min, scan.angle_increment, scan.range_max,
                                scan.ranges, resolution)
    for mine, theirs in zip(fast, slow, strict=True):
        assert mine.dtype == np.int64 and mine.shape == theirs.shape
        assert np.array_equal(mine, theirs)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(scans(), min_size=1, max_size=6))
def test_a_batch_of_scans_gives_each_scan_its_own_cells(batch: list[ScanGeometry]) -> None:
    seen = traverse(batch, RES)
    free_at, hit_at = seen.bounds(seen.free), seen.bounds(seen.hit)
    for index, scan in enumerate(batch):
        free, hit = reference.scan_cells(scan.x, scan.y, scan.theta, scan.angle_min, scan.angle_increment,
                                         scan.range_max, scan.ranges, RES)
        assert np.array_equal(seen.cells(seen.free[free_at[index]:free_at[index + 1]]).T, free)
        assert np.array_equal(seen.cells(seen.hit[hit_at[index]:hit_at[index + 1]]).T, hit)


HAIR = 1e-6 * RES  # the fixed-point walk is within (cells walked + 1) * 2**-32 cells of exact


def crosses(x0: float, y0: float, x1: float, y1: float, cell: tuple[int, int]) -> bool:
    """Whether the segment meets the cell's square, grown by a hair (Liang-Barsky clipping)."""
    low, high = 0.0, 1.0
    for start, step, lo, hi in ((x0, x1 - x0, cell[0] * RES, (cell[0] + 1) * RES),
                                (y0, y1 - y0, cell[1] * RES, (cell[1] + 1) * RES)):
        lo, hi = lo - HAIR, hi + HAIR
        if step == 0.0:
            if not lo <= start <= hi:
                return False
            continue
        t0, t1 = sorted(((lo - start) / step, (hi - start) / step))
        low, high = max(low, t0), min(high, t1)
    return low <= high


@settings(max_examples=150, deadline=None)
@given(x=st.floats(-20.0, 20.0), y=st.floats(-20.0, 20.0), heading=st.floats(-math.pi, math.pi),
       r=st.floats(0.0, 11.9))
def test_a_beam_covers_exactly_the_cells_its_segment_passes(x: float, y: float, heading: float, r: float) -> None:
    free, hit = one_beam(x, y, heading, r)
    x1, y1 = x + r * math.cos(heading), y + r * math.sin(heading)
    assert hit == {(math.floor(x1 / RES), math.floor(y1 / RES))}
    assert all(crosses(x, y, x1, y1, cell) for cell in free | hit)  # nothing off the segment ...
    seen = free | hit
    for t in np.linspace(0.0, 1.0, 4001).tolist():  # ... and nothing on it missed
        px, py = x + t * (x1 - x), y + t * (y1 - y)
        assert any((math.floor((px + dx) / RES), math.floor((py + dy) / RES)) in seen
                   for dx in (-HAIR, 0.0, HAIR) for dy in (-HAIR, 0.0, HAIR)), (px, py)


def test_a_wall_ahead_is_hit_in_its_cell_and_the_cells_before_it_are_free() -> None:
    free, hit = one_beam(0.1, 0.1, 0.0, 2.05)  # the wall at x = 2.15 m, in cell 10
    assert hit == {(10, 0)}
    assert free == {(ix, 0) for ix in range(10)}


def test_a_beam_without_a_return_frees_everything_up_to_range_max() -> None:
    for no_return in (math.inf, math.nan, 1.0, 5.0):
        free, hit = one_beam(0.1, 0.1, 0.0, no_return, range_max=1.0)  # reaches x = 1.1 m, cell 5
        assert (free, hit) == ({(ix, 0) for ix in range(6)}, set()), no_return


def test_a_negative_range_says_nothing() -> None:
    assert one_beam(0.1, 0.1, 0.0, -1.0) == (set(), set())


def test_a_hit_is_never_also_free_in_the_same_scan() -> None:
    # Beam 0 (east) ends in cell (10, 0); beam 1, nearly east too, passes through (10, 0) to a wall further on.
    ranges = np.array([2.05, 4.0])
    free, hit = scan_cells(0.1, 0.1, 0.0, 0.0, 0.001, 12.0, ranges, RES)
    assert (10, 0) in cells(hit) and (10, 0) not in cells(free)
    assert (11, 0) in cells(free)  # beam 1 still frees what lies beyond


def test_cells_are_floors_of_world_coordinates_below_zero() -> None:
    free, hit = one_beam(-0.1, -0.1, math.pi, 1.0)  # west from cell (-1, -1) to x = -1.1 m, cell -6
    assert hit == {(-6, -1)}
    assert free == {(ix, -1) for ix in range(-5, 0)}


def test_a_range_too_fine_for_the_walk_is_refused() -> None:
    with pytest.raises(ValueError, match="range_max / resolution"):
        scan_cells(0.0, 0.0, 0.0, 0.0, 0.1, 500.0, np.array([1.0]), 0.01)
