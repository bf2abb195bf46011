"""The batched lidar against scenes whose true ranges are known."""

import math

import numpy as np
import pytest

from sim.bodies import Shapes, add_boxes, add_kinematic_robots
from sim.geometry import Box
from sim.lidar import MAX_BATCH, Lidar, LidarSpec
from sim.quiet import import_pybullet, silenced
from sim.world import World

p = import_pybullet()

SIGMA = 0.02
FORWARD = 16  # beam index at angle 0 with 32 beams over 2 pi starting at -pi
WALL = Box(x=5.5, y=0.0, half_x=0.5, half_y=3.0, height=2.0)  # its near face is the plane x = 5


def scan_of(world: World, i: int) -> np.ndarray:
    reading = world.scan(i)
    assert reading is not None
    return reading[1]


def test_beam_angles_follow_the_spec() -> None:
    lidar = Lidar(LidarSpec())
    assert lidar.angles[0] == pytest.approx(-math.pi)
    assert lidar.angle_increment == pytest.approx(2 * math.pi / 32)
    assert lidar.angles[FORWARD] == pytest.approx(0.0)
    narrow = Lidar(LidarSpec(rays=4, fov_rad=math.pi))
    assert narrow.angles == pytest.approx([-math.pi / 2, -math.pi / 4, 0.0, math.pi / 4])


def test_range_to_a_known_wall_and_open_space() -> None:
    with World([WALL], seed=3) as world:
        world.add_robot(0.0, 0.0, 0.0)
        assert world.scan(0) is None
        world.step()
        t, ranges = world.scan(0)
    assert t == pytest.approx(0.1)
    assert ranges.dtype == np.float32 and ranges.shape == (32,)
    assert abs(ranges[FORWARD] - 5.0) < 3 * SIGMA
    assert np.isinf(ranges[0])  # straight back
    assert np.isinf(ranges[8]) and np.isinf(ranges[24])  # sideways, past the wall's ends
    # the beams that reach the wall's face read (5 / cos angle), the rest nothing
    angles = -math.pi + 2 * math.pi / 32 * np.arange(32)
    along = 5.0 / np.cos(angles)
    on_face = (np.cos(angles) > 0) & (np.abs(along * np.sin(angles)) < 3.0) & (along < 12.0)
    assert np.all(np.abs(ranges[on_face] - along[on_face]) < 3 * SIGMA)
    assert np.all(np.isinf(ranges[~on_face]))


def test_the_scan_is_rotated_with_the_robot() -> None:
    with World([WALL], seed=3) as world:
        world.add_robot(0.0, 0.0, math.pi / 2)  # facing +y: the wall is on its right, beam angle -pi/2
        world.step()
        ranges = scan_of(world, 0)
    assert abs(ranges[8] - 5.0) < 3 * SIGMA
    assert np.isinf(ranges[FORWARD])


def test_range_noise_is_unbiased_with_the_configured_sigma() -> None:
    wall = Box(x=5.5, y=0.0, half_x=0.5, half_y=200.0, height=2.0)
    with World([wall], seed=4) as world:
        for k in range(300):
            world.add_robot(0.0, -150.0 + k, 0.0)
        world.step()
        forward = np.array([scan_of(world, i)[FORWARD] for i in range(300)], dtype=float)
    assert abs(forward.mean() - 5.0) < 0.005
    assert 0.8 * SIGMA < forward.std() < 1.2 * SIGMA


def test_a_robot_does_not_see_itself() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.3)
        world.step()
        assert np.all(np.isinf(scan_of(world, 0)))


def test_robots_see_each_other() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.add_robot(3.0, 0.0, 0.0)
        world.step()
        first, second = scan_of(world, 0), scan_of(world, 1)
    assert abs(first[FORWARD] - (3.0 - 0.35)) < 3 * SIGMA
    assert abs(second[0] - (3.0 - 0.35)) < 3 * SIGMA  # beam 0 points straight back
    assert np.isinf(first[0]) and np.isinf(second[FORWARD])


def test_batches_beyond_the_pybullet_limit_match_small_groups() -> None:
    spec = LidarSpec()
    with silenced():
        client = p.connect(p.DIRECT)
    try:
        shapes = Shapes(client, gui=False)
        rng = np.random.default_rng(7)
        boxes = [Box(float(x), float(y), 1.0, 1.5, 3.0) for x, y in rng.uniform(-40, 40, (40, 2))]
        add_boxes(shapes, boxes)
        n = 600
        assert n * spec.rays > MAX_BATCH
        poses = np.column_stack([rng.uniform(-50, 50, (n, 2)), rng.uniform(-math.pi, math.pi, n)])
        add_kinematic_robots(shapes, 0.35, 0.5, spec.height_m, [tuple(xy) for xy in poses[:, :2]])
        radii = np.full(n, 0.35)
        lidar = Lidar(spec, 16)  # no noise: equal inputs must give equal ranges
        whole = lidar.scan(client, poses, radii, rng)
        groups = [lidar.scan(client, poses[k : k + 50], radii[k : k + 50], rng) for k in range(0, n, 50)]
        pieces = np.concatenate(groups)
    finally:
        p.disconnect(physicsClientId=client)
    assert whole.shape == (n, spec.rays)
    assert np.isfinite(whole).sum() > 1000  # the scene is busy enough for the comparison to mean something
    np.testing.assert_array_equal(whole, pieces)
