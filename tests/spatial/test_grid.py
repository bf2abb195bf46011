"""The shared occupancy grid: OctoMap's clamped update per robot, fading, tiling, provenance and corroborated belief."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial import reference
from spatial.grid import FREE, OCCUPIED, UNKNOWN, GridSpec, OccupancyGrid, Scan

SPEC = GridSpec()
BEAMS = 64
INCREMENT = 2 * math.pi / BEAMS
ANGLES = -math.pi + INCREMENT * np.arange(BEAMS)
WALL_X = 6.1  # a wall along x = 6.1 m (cell column 30), from y = -5 m to y = 5 m ...
WALL_CELL = (30, 0)  # ... which the beam at angle 0 of a robot in cell row 0 hits here
ALICE, BOB, CAROL, MALLORY = "did:key:alice", "did:key:bob", "did:key:carol", "did:key:mallory"


def wall_scan(x: float, y: float) -> np.ndarray:
    """Ranges a 360-degree, 64-beam, 12 m lidar at (x, y), heading 0, reads off the wall."""
    with np.errstate(divide="ignore"):
        r = (WALL_X - x) / np.cos(ANGLES)
    at = y + r * np.sin(ANGLES)
    return np.where((r > 0) & (np.abs(at) <= 5.0) & (r < 12.0), r, np.inf)


def see_wall(grid: OccupancyGrid, did: str, x: float, y: float, t_s: float, times: int = 4) -> None:
    for _ in range(times):
        grid.integrate(did, (x, y, 0.0), -math.pi, INCREMENT, 12.0, wall_scan(x, y), t_s)


def deny_wall(grid: OccupancyGrid, did: str, x: float, y: float, t_s: float, times: int = 8) -> None:
    """Claim the wall is not there: every beam that would hit it reports no return instead."""
    for _ in range(times):
        grid.integrate(did, (x, y, 0.0), -math.pi, INCREMENT, 12.0, np.full(BEAMS, np.inf), t_s)


def state(grid: OccupancyGrid, cell: tuple[int, int], trust: dict[str, float], t_s: float = 0.0) -> int:
    return int(grid.consensus_at(np.array([cell]), trust, t_s)[0])


def own(grid: OccupancyGrid, did: str, cell: tuple[int, int], t_s: float) -> float:
    """did's own log-odds of one cell: its layer fused alone at weight 1."""
    key = (cell[0] // SPEC.tile_cells, cell[1] // SPEC.tile_cells)
    fused = grid.belief(key, {other: float(other == did) for other in grid.contributions(key)}, t_s)
    return float(fused.log_odds[cell[0] % SPEC.tile_cells, cell[1] % SPEC.tile_cells])


def test_two_honest_robots_make_an_obstacle_believed() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0)
    assert state(grid, WALL_CELL, {}) == UNKNOWN  # one robot of default weight 0.5 is not enough
    see_wall(grid, BOB, 0.3, 0.15, 0.0)
    assert state(grid, WALL_CELL, {}) == OCCUPIED
    assert state(grid, (10, 0), {}) == FREE  # both saw through the space in front of the wall


def test_one_robot_is_believed_alone_only_when_highly_trusted() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=10)
    assert state(grid, WALL_CELL, {ALICE: 0.5}) == UNKNOWN
    assert state(grid, WALL_CELL, {ALICE: 0.94}) == UNKNOWN
    assert state(grid, WALL_CELL, {ALICE: SPEC.trusted_weight}) == OCCUPIED
    assert state(grid, (10, 0), {ALICE: SPEC.trusted_weight}) == FREE
    loose = OccupancyGrid(GridSpec(corroboration_k=1))
    see_wall(loose, ALICE, 0.0, 0.1, 0.0)
    assert state(loose, WALL_CELL, {}) == OCCUPIED


def test_a_liar_erasing_a_real_obstacle_is_outvoted_by_two_honest_robots() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0)
    see_wall(grid, BOB, 0.3, 0.15, 0.0)
    deny_wall(grid, MALLORY, 0.1, 0.05, 0.0, times=20)
    assert own(grid, MALLORY, WALL_CELL, 0.0) == pytest.approx(SPEC.l_min, abs=1e-3)
    assert state(grid, WALL_CELL, {}) == OCCUPIED
    assert state(grid, WALL_CELL, {ALICE: 0.5, BOB: 0.5, MALLORY: 0.9}) == OCCUPIED


def test_a_liar_with_two_accomplices_of_no_weight_changes_nothing() -> None:
    honest = OccupancyGrid()
    see_wall(honest, ALICE, 0.0, 0.1, 0.0)
    see_wall(honest, BOB, 0.3, 0.15, 0.0)
    lied_to = OccupancyGrid()
    see_wall(lied_to, ALICE, 0.0, 0.1, 0.0)
    see_wall(lied_to, BOB, 0.3, 0.15, 0.0)
    for liar in (MALLORY, CAROL, "did:key:trent"):
        deny_wall(lied_to, liar, 0.1, 0.05, 0.0)
    zero = {MALLORY: 0.0, CAROL: 0.0, "did:key:trent": 0.0}
    for key in honest.tiles():
        assert np.array_equal(lied_to.belief(key, zero, 0.0).state, honest.belief(key, {}, 0.0).state)
        assert np.allclose(lied_to.belief(key, zero, 0.0).log_odds, honest.belief(key, {}, 0.0).log_odds)
    assert state(lied_to, WALL_CELL, {}) == UNKNOWN  # at full weight three colluders can cancel it, not erase it


def test_own_log_odds_clamp_at_octomaps_bounds() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=1)
    assert own(grid, ALICE, WALL_CELL, 0.0) == pytest.approx(SPEC.l_hit, abs=1e-3)
    assert own(grid, ALICE, (10, 0), 0.0) == pytest.approx(SPEC.l_miss, abs=1e-3)
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=20)
    assert own(grid, ALICE, WALL_CELL, 0.0) == pytest.approx(SPEC.l_max, abs=1e-3)
    assert own(grid, ALICE, (10, 0), 0.0) == pytest.approx(SPEC.l_min, abs=1e-3)


def test_evidence_halves_after_fade_s_ln2_and_a_fresh_scan_adds_to_what_is_left() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=20)
    half_life = SPEC.fade_s * math.log(2)
    assert own(grid, ALICE, WALL_CELL, half_life) == pytest.approx(SPEC.l_max / 2, abs=1e-3)
    assert own(grid, ALICE, WALL_CELL, 3 * half_life) == pytest.approx(SPEC.l_max / 8, abs=1e-3)
    see_wall(grid, ALICE, 0.0, 0.1, 3 * half_life, times=1)  # rescales Alice's rows: her fade fell below 1/2
    assert own(grid, ALICE, WALL_CELL, 3 * half_life) == pytest.approx(SPEC.l_max / 8 + SPEC.l_hit, abs=1e-3)
    assert own(grid, ALICE, (10, 0), 3 * half_life) == pytest.approx(SPEC.l_min / 8 + SPEC.l_miss, abs=1e-3)


def test_a_parked_van_nobody_sees_again_fades_out_of_the_belief() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=20)
    see_wall(grid, BOB, 0.3, 0.15, 0.0, times=20)
    assert state(grid, WALL_CELL, {}, t_s=60.0) == OCCUPIED
    assert state(grid, WALL_CELL, {}, t_s=SPEC.fade_s * math.log(SPEC.l_max / SPEC.occupied_l) + 1) == UNKNOWN


def test_cells_and_tiles_below_zero_and_across_tile_borders() -> None:
    grid = OccupancyGrid()
    assert grid.cell_of(-0.1, -0.1) == (-1, -1)
    assert grid.cell_of(12.8, -12.8) == (64, -64)
    assert grid.tile_origin((-1, -1)) == pytest.approx((-12.8, -12.8))
    # From (-0.1, -0.1) a beam east to x = 12.9 m hits cell 64 (tile 1); one west to x = -13.0 m, cell -65 (tile -2).
    grid.integrate(ALICE, (-0.1, -0.1, 0.0), 0.0, math.pi, 14.0, np.array([13.0, 12.9]), 0.0)
    assert grid.tiles() == [(-2, -1), (-1, -1), (0, -1), (1, -1)]
    trusted = {ALICE: 1.0}
    east, west = grid.belief((1, -1), trusted, 0.0), grid.belief((-2, -1), trusted, 0.0)
    assert east.log_odds[0, 63] == pytest.approx(SPEC.l_hit, abs=1e-3)  # cell (64, -1)
    assert west.log_odds[63, 63] == pytest.approx(SPEC.l_hit, abs=1e-3)  # cell (-65, -1)
    assert grid.belief((-1, -1), trusted, 0.0).log_odds[0, 63] == pytest.approx(SPEC.l_miss, abs=1e-3)  # (-64, -1)
    assert grid.belief((0, -1), trusted, 0.0).log_odds[63, 63] == pytest.approx(SPEC.l_miss, abs=1e-3)  # (63, -1)
    points = np.array([12.85, -12.95, 5.0, 5.0]), np.array([-0.1, -0.1, -0.1, 5.0])
    assert grid.state_at(*points, {ALICE: 1.0}, 0.0).tolist() == [OCCUPIED, OCCUPIED, FREE, UNKNOWN]


def test_provenance_adds_up() -> None:
    grid = OccupancyGrid()
    first = grid.integrate(ALICE, (0.0, 0.5, 0.0), -math.pi, INCREMENT, 12.0, wall_scan(0.0, 0.5), 0.0)
    total = sum(grid.contributions(key)[ALICE] for key in grid.tiles())
    expected = len(first.free) * -SPEC.l_miss + len(first.hit) * SPEC.l_hit  # nothing clamped yet
    assert total == pytest.approx(expected, rel=1e-3)  # to the storage unit, about 2e-4
    see_wall(grid, BOB, 0.3, 0.15, 0.0, times=1)
    assert set(grid.contributions((0, 0))) == {ALICE, BOB}
    assert grid.belief((0, 0), {}, 0.0).contributors == grid.contributions((0, 0))
    xs = (first.hit[:, 0] + 0.5) * SPEC.resolution_m
    ys = (first.hit[:, 1] + 0.5) * SPEC.resolution_m
    alice_alone = grid.contributors_at(xs, ys)[ALICE]
    assert alice_alone == pytest.approx(len(first.hit) * SPEC.l_hit, rel=1e-3)
    assert grid.contributors_at(xs, ys, SPEC.fade_s * math.log(2))[ALICE] == pytest.approx(alice_alone / 2, rel=1e-3)
    assert grid.contributors_at(np.array([500.0]), np.array([500.0])) == {}


def test_saturated_cells_add_no_provenance() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=20)
    before = grid.contributions((0, 0))[ALICE]
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=1)
    assert grid.contributions((0, 0))[ALICE] == pytest.approx(before, abs=1e-6)


def test_forget_drops_a_did_everywhere() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0)
    see_wall(grid, BOB, 0.3, 0.15, 0.0)
    grid.integrate(MALLORY, (40.0, 40.0, 0.0), 0.0, 1.0, 5.0, np.array([1.0]), 0.0)
    versions = {key: grid.version(key) for key in grid.tiles()}
    bobs = [key for key in grid.tiles() if BOB in grid.contributions(key)]
    grid.forget(MALLORY)
    grid.forget(BOB)
    grid.forget("did:key:nobody")
    assert all(set(grid.contributions(key)) == {ALICE} for key in grid.tiles())
    assert (3, 3) not in grid.tiles() and grid.version((3, 3)) > versions[(3, 3)]
    assert bobs and all(grid.version(key) > versions[key] for key in bobs)
    assert state(grid, WALL_CELL, {}) == UNKNOWN


def test_belief_is_cached_until_a_layer_the_trust_or_the_time_changes() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0)
    first = grid.belief((0, 0), {}, 1.0)
    assert grid.belief((0, 0), {}, 1.0) is first and not first.state.flags.writeable
    assert grid.belief((0, 0), {ALICE: 0.9}, 1.0) is not first
    assert grid.belief((0, 0), {}, 2.0) is not first
    see_wall(grid, BOB, 0.3, 0.15, 0.0, times=1)
    assert grid.version((0, 0)) > first.version
    assert grid.belief((0, 0), {}, 1.0).version == grid.version((0, 0))
    empty = grid.belief((9, 9), {}, 1.0)
    assert (empty.version, empty.contributors, empty.state.any()) == (0, {}, False)


def test_prune_drops_what_has_faded_to_nothing() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 0.0)
    see_wall(grid, BOB, 60.0, 60.0, 0.0)
    assert grid.prune(5 * SPEC.fade_s) == 0
    later = 12 * SPEC.fade_s
    see_wall(grid, BOB, 60.0, 60.0, later)
    bob_tiles = [key for key in grid.tiles() if BOB in grid.contributions(key)]
    assert grid.prune(later) > 0
    assert [key for key in grid.tiles() if ALICE in grid.contributions(key)] == []
    assert [key for key in grid.tiles() if BOB in grid.contributions(key)] == bob_tiles


def test_a_late_scan_counts_as_of_the_latest() -> None:
    grid = OccupancyGrid()
    see_wall(grid, ALICE, 0.0, 0.1, 100.0, times=1)
    see_wall(grid, ALICE, 0.0, 0.1, 0.0, times=1)  # out of order: applied at t = 100, not faded back
    assert own(grid, ALICE, WALL_CELL, 100.0) == pytest.approx(2 * SPEC.l_hit, abs=1e-3)


def test_tiles_must_be_a_power_of_two_and_log_odds_ordered() -> None:
    with pytest.raises(ValueError, match="power of two"):
        GridSpec(tile_cells=48)
    with pytest.raises(ValueError, match="l_min < free_l"):
        GridSpec(occupied_l=4.0)


scan = st.tuples(
    st.sampled_from([ALICE, BOB, CAROL]),
    st.tuples(st.floats(-15.0, 15.0), st.floats(-15.0, 15.0), st.floats(-math.pi, math.pi)),
    st.lists(st.one_of(st.floats(0.0, 9.0), st.just(math.inf)), min_size=1, max_size=24),
    st.floats(0.0, 60.0),
)


@settings(max_examples=25, deadline=None)
@given(scans=st.lists(scan, min_size=1, max_size=12))
def test_the_grid_equals_the_per_cell_reference(scans: list) -> None:
    grid, layers, now = OccupancyGrid(), {}, 0.0
    batched = OccupancyGrid()
    queue = []
    for did, pose, ranges, step in scans:
        now += step
        ranges = np.array(ranges)
        grid.integrate(did, pose, -math.pi, 0.3, 8.0, ranges, now)
        reference.integrate(layers, SPEC, did, pose, -math.pi, 0.3, 8.0, ranges, now)
        queue.append(Scan(did, pose, -math.pi, 0.3, 8.0, ranges, now))
    batched.integrate_many(queue)
    read_at = now + 30.0
    for did in {did for did, *_ in scans}:
        expected = {(ix, iy): reference.log_odds(layers, SPEC, did, ix, iy, read_at)
                    for (who, ix, iy) in layers if who == did}
        for one in (grid, batched):
            got = {}
            for key in one.tiles():
                fused = one.belief(key, {other: float(other == did) for other in (ALICE, BOB, CAROL)}, read_at)
                for lx, ly in zip(*np.nonzero(fused.log_odds), strict=True):
                    got[key[0] * 64 + int(lx), key[1] * 64 + int(ly)] = float(fused.log_odds[lx, ly])
            assert set(got) <= set(expected)
            assert all(abs(got.get(cell, 0.0) - value) < 2e-3 for cell, value in expected.items()), did


def test_consensus_without_a_contributor_equals_the_consensus_with_its_weight_zero() -> None:
    """The batched leave-one-out consensus trust scoring uses, cell for cell, against consensus_at."""
    rng = np.random.default_rng(11)
    grid = OccupancyGrid(SPEC)
    dids = [f"did:key:robot-{index}" for index in range(6)]
    boxes = [(4.0, -3.0, 6.0, 3.0), (-9.0, 5.0, -7.5, 9.0), (10.0, 11.0, 14.0, 12.5)]  # across tile borders
    for step in range(30):
        for index, did in enumerate(dids):
            x, y = rng.uniform(-8.0, 12.0), rng.uniform(-6.0, 12.0)
            angles = ANGLES + rng.uniform(-0.05, 0.05)
            ranges = np.full(BEAMS, np.inf)
            for x0, y0, x1, y1 in boxes:  # slab method: the nearest entry into each box
                with np.errstate(divide="ignore", invalid="ignore"):
                    tx = np.sort(np.stack(((x0 - x) / np.cos(angles), (x1 - x) / np.cos(angles))), axis=0)
                    ty = np.sort(np.stack(((y0 - y) / np.sin(angles), (y1 - y) / np.sin(angles))), axis=0)
                enter, leave = np.maximum(tx[0], ty[0]), np.minimum(tx[1], ty[1])
                ranges = np.where((enter <= leave) & (enter > 0) & (enter < ranges), enter, ranges)
            if index == 5:  # a liar erasing everything
                ranges = np.full(BEAMS, np.inf)
            grid.integrate(did, (x, y, 0.0), -math.pi, INCREMENT, 8.0, np.where(ranges < 8.0, ranges, np.inf),
                           step * 0.5 + index * 0.01)
    t_s = 16.0
    for trust in ({did: 0.75 for did in dids}, {dids[0]: 0.97, dids[1]: 0.15, dids[2]: 0.5, dids[5]: 0.9},
                  {dids[0]: 0.96, dids[1]: 0.96}):
        cells = np.stack(np.meshgrid(np.arange(-50, 75), np.arange(-35, 70), indexing="ij"), axis=-1).reshape(-1, 2)
        of = rng.integers(0, len(dids) + 1, len(cells))  # index len(dids): a DID with no layer at all
        without = [*dids, "did:key:nobody"]
        got = grid.consensus_without(cells, without, of, trust, t_s)
        for index, did in enumerate(without):
            mine = of == index
            expected = grid.consensus_at(cells[mine], {**trust, did: 0.0}, t_s)
            assert (got[mine] == expected).all(), did
        assert {OCCUPIED, FREE, UNKNOWN} <= set(got.tolist())
        occupied_only = rng.random(len(cells)) < 0.5  # what scoring asks of free cells and a hit's neighbours
        partly = grid.consensus_without(cells, without, of, trust, t_s, occupied_only=occupied_only)
        assert (partly == np.where(occupied_only & (got == FREE), UNKNOWN, got)).all()
    assert grid.consensus_without(np.empty((0, 2), np.int64), [], np.empty(0, np.int64), {}, t_s).shape == (0,)
