"""The batched lidar against scenes whose true ranges are known."""

import math

import numpy as np
import pytest

from sim.bodies import Shapes, add_boxes, add_robot_looks
from sim.city import generate_city
from sim.geometry import Box
from sim.lidar import MAX_BATCH, Lidar, LidarSpec
from sim.quiet import import_pybullet, silenced
from sim.sensors import NoiseSpec
from sim.world import RobotSpec, World

p = import_pybullet()

SIGMA = 0.02
FORWARD = 16  # beam index at angle 0 with 32 beams over 2 pi starting at -pi
WALL = Box(x=5.5, y=0.0, half_x=0.5, half_y=3.0, height=2.0)  # its near face is the plane x = 5


def wall_face(theta: float) -> tuple[np.ndarray, np.ndarray]:
    """For a robot at the origin facing ``theta``: which of its 32 beams meet WALL's near face, and at what range."""
    angles = theta - math.pi + 2 * math.pi / 32 * np.arange(32)  # world-frame beam angles
    with np.errstate(divide="ignore"):
        along = 5.0 / np.cos(angles)
    on_face = (np.cos(angles) > 0) & (np.abs(along * np.sin(angles)) < 3.0) & (along < 12.0)
    return on_face, along


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
    on_face, along = wall_face(0.0)  # the beams that reach the wall's face read (5 / cos angle), the rest nothing
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
    with World([WALL], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.3)
        world.step()
        ranges = scan_of(world, 0)
    # it reads the wall (a dead lidar, all inf, would not) and nothing else: no beam returns from its own body
    on_face, along = wall_face(0.3)
    assert on_face.sum() >= 5 and np.all(np.abs(ranges[on_face] - along[on_face]) < 3 * SIGMA)
    assert np.all(np.isinf(ranges[~on_face]))


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


@pytest.mark.parametrize("physics", ["kinematic", "dynamic"])
def test_robots_facing_each_other_read_the_gap_between_them(physics: str) -> None:
    with World([], seed=1, physics=physics) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.add_robot(3.0, 0.0, math.pi)
        world.step()
        first, second = scan_of(world, 0), scan_of(world, 1)
    assert abs(first[FORWARD] - (3.0 - 0.35)) < 3 * SIGMA
    assert abs(second[FORWARD] - (3.0 - 0.35)) < 3 * SIGMA
    assert np.isinf(first[0]) and np.isinf(second[0])


@pytest.mark.parametrize("physics", ["kinematic", "dynamic"])
def test_a_robot_never_sees_itself(physics: str) -> None:
    with World([WALL], seed=1, physics=physics) as world:
        world.add_robot(0.0, 0.0, 0.3, RobotSpec(radius_m=1.5))
        world.add_robot(30.0, 0.0, 0.0)  # out of range: besides the wall, the first robot's scan could show itself
        world.step()
        ranges = scan_of(world, 0)
    on_face, along = wall_face(0.3)  # the wall, where it is (not all inf: the lidar works) ...
    assert on_face.sum() >= 5 and np.all(np.abs(ranges[on_face] - along[on_face]) < 3 * SIGMA)
    assert np.all(np.isinf(ranges[~on_face]))  # ... and never its own 1.5 m body


def test_kinematic_and_dynamic_robots_read_the_same_wall_and_robot() -> None:
    def scans(physics: str) -> np.ndarray:
        with World([WALL], seed=3, physics=physics, noise=NoiseSpec(lidar_sigma_m=0.0)) as world:
            world.add_robot(0.0, 0.0, 0.0)
            world.add_robot(0.0, -3.0, math.pi / 2)  # sees the wall at an angle and the first robot ahead
            world.step()
            return np.stack([scan_of(world, 0), scan_of(world, 1)])

    kinematic, dynamic = scans("kinematic"), scans("dynamic")
    assert np.isfinite(kinematic).sum() > 10
    assert kinematic[1, FORWARD] == pytest.approx(3.0 - 0.35, abs=1e-5)
    np.testing.assert_allclose(kinematic, dynamic, rtol=0, atol=1e-4)


def brute_force_discs(poses: np.ndarray, radii: np.ndarray, spec: LidarSpec) -> np.ndarray:
    """Robot by robot, beam by beam, disc by disc: where each beam from a centre first enters another disc."""
    lidar = Lidar(spec)
    ranges = np.full((len(poses), spec.rays), np.inf)
    for i, (x, y, theta) in enumerate(poses):
        for k, angle in enumerate(lidar.angles):
            ux, uy = math.cos(theta + angle), math.sin(theta + angle)
            for j, (xj, yj, _) in enumerate(poses):
                ox, oy = xj - x, yj - y
                c = ox * ox + oy * oy - radii[j] ** 2
                b = ox * ux + oy * uy
                if j != i and c > 0 and b > 0 and b * b >= c:
                    t = b - math.sqrt(b * b - c)
                    if t < spec.range_max_m:
                        ranges[i, k] = min(ranges[i, k], t)
    return ranges.astype(np.float32)


@pytest.mark.parametrize(
    "spec", [LidarSpec(), LidarSpec(rays=7, fov_rad=2.0, range_max_m=8.0), LidarSpec(rays=90)], ids=str
)
def test_a_fleet_sees_the_same_discs_as_robot_by_robot_brute_force(spec: LidarSpec) -> None:
    rng = np.random.default_rng(11)
    with World([], seed=1, lidar=spec, noise=NoiseSpec(lidar_sigma_m=0.0)) as world:
        radii = rng.uniform(0.2, 0.6, 60)
        for (x, y), theta, radius in zip(rng.uniform(0, 20, (60, 2)), rng.uniform(-math.pi, math.pi, 60), radii):
            world.add_robot(float(x), float(y), float(theta), RobotSpec(radius_m=float(radius)))
        world.step()
        scans = np.stack([scan_of(world, i) for i in range(60)])
        poses = world.truth.poses
    expected = brute_force_discs(poses, radii, spec)
    assert np.isfinite(expected).mean() > 0.3  # a busy scene, overlapping robots included
    np.testing.assert_allclose(scans, expected, rtol=0, atol=1e-5)


def test_discs_read_what_pybullet_reads_off_spheres() -> None:
    rng = np.random.default_rng(5)
    poses, radii = np.empty((0, 3)), np.empty(0)
    while len(poses) < 60:  # a fleet whose bodies keep apart, so rays that start outside a sphere miss nothing
        x, y, radius = *rng.uniform(0, 20, 2), rng.uniform(0.2, 0.6)
        if np.all(np.hypot(poses[:, 0] - x, poses[:, 1] - y) > radii + radius + 0.1):
            poses = np.vstack([poses, [x, y, rng.uniform(-math.pi, math.pi)]])
            radii = np.append(radii, radius)
    spec = LidarSpec()
    lidar = Lidar(spec)
    with silenced():
        client = p.connect(p.DIRECT)
    try:
        bodiless = lidar.scan(client, poses, radii, rng, discs=True)
        for (x, y, _), radius in zip(poses, radii):
            sphere = p.createCollisionShape(p.GEOM_SPHERE, radius=float(radius), physicsClientId=client)
            p.createMultiBody(0, sphere, basePosition=[x, y, spec.height_m], physicsClientId=client)
        bodies = lidar.scan(client, poses, radii, rng)
    finally:
        p.disconnect(physicsClientId=client)
    assert np.isfinite(bodiless).mean() > 0.3
    assert np.array_equal(np.isinf(bodiless), np.isinf(bodies))
    np.testing.assert_allclose(bodiless, bodies, rtol=0, atol=SIGMA)  # Bullet casts at spheres to within ~1 cm


def test_gui_robot_and_building_looks_are_invisible_to_the_beams() -> None:
    rng = np.random.default_rng(3)
    boxes = [Box(float(x), float(y), 1.0, 1.5, 3.0) for x, y in rng.uniform(-20, 20, (20, 2))]
    poses = np.column_stack([rng.uniform(-25, 25, (100, 2)), rng.uniform(-math.pi, math.pi, 100)])
    radii = np.full(100, 0.35)
    lidar = Lidar(LidarSpec())
    with silenced():
        plain, looks = p.connect(p.DIRECT), p.connect(p.DIRECT)
    try:
        add_boxes(Shapes(plain, gui=False), boxes)
        shown = Shapes(looks, gui=True)  # visual shapes, as the GUI makes them
        add_boxes(shown, boxes)
        add_robot_looks(shown, 0.35, 0.5, [tuple(xy) for xy in poses[:, :2]])
        expected = lidar.scan(plain, poses, radii, rng, discs=True)
        seen = lidar.scan(looks, poses, radii, rng, discs=True)
    finally:
        p.disconnect(physicsClientId=plain)
        p.disconnect(physicsClientId=looks)
    assert np.isfinite(expected).sum() > 100
    np.testing.assert_array_equal(seen, expected)


def test_every_building_of_a_city_is_in_the_few_static_meshes() -> None:
    buildings = generate_city(7, 6).buildings
    with silenced():
        client = p.connect(p.DIRECT)
    try:
        bodies = add_boxes(Shapes(client, gui=False), buildings)
        west = [[b.x - b.half_x - 1.0, b.y, 0.3] for b in buildings]  # 1 m west of each west face, at lidar height
        east = [[b.x, b.y, 0.3] for b in buildings]
        above = [[b.x, b.y, 100.0] for b in buildings]
        ground = [[b.x, b.y, 0.0] for b in buildings]
        sideways = p.rayTestBatch(west, east, physicsClientId=client)
        down = p.rayTestBatch(above, ground, physicsClientId=client)
    finally:
        p.disconnect(physicsClientId=client)
    assert len(bodies) < len(buildings) / 4
    reach = np.array([1.0 + b.half_x for b in buildings])
    np.testing.assert_allclose([hit[2] for hit in sideways], 1.0 / reach, rtol=1e-6)
    np.testing.assert_allclose([hit[3][2] for hit in down], [b.height for b in buildings], atol=1e-6)


def test_a_kinematic_robot_pressed_against_a_wall_reads_it_at_its_radius() -> None:
    with World([WALL], seed=3) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.command(0, 1.0, 0.0)
        world.step(80)  # stopped at the face and still pushing: beams start at the centre, outside the wall
        ranges = scan_of(world, 0)
        gap = 5.0 - world.truth.poses[0, 0]
    assert gap == pytest.approx(0.35, abs=0.01)
    assert abs(ranges[FORWARD] - gap) < 3 * SIGMA
