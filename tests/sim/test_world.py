"""The world against its ground truth: motion, limits, contacts, obstacles, determinism, payload; both physics modes."""

import math

import numpy as np
import pytest

from sim.geometry import Box
from sim.world import GroundTruth, RobotSpec, World

PHYSICS = ["kinematic", "dynamic"]
RAMP_M = 1.0**2 / (2 * 1.5)  # distance lost reaching 1 m/s at 1.5 m/s^2
FORWARD = 16


def wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class LateBox:
    """An obstacle source with one box that stands at ``box`` from ``start_s`` until ``stop_s``."""

    def __init__(self, box: Box, start_s: float, stop_s: float = math.inf) -> None:
        self.box, self.start_s, self.stop_s = box, start_s, stop_s
        self.asked: list[float] = []

    def active(self, t_s: float) -> dict[str, Box]:
        self.asked.append(t_s)
        return {"cone-1": self.box} if self.start_s <= t_s < self.stop_s else {}


@pytest.mark.parametrize("physics", PHYSICS)
def test_driving_straight_covers_the_distance_minus_the_ramp(physics: str) -> None:
    with World([], seed=1, physics=physics) as world:
        world.add_robot(2.0, -1.0, 0.0)
        world.command(0, 1.0, 0.0)
        world.step(100)
        truth = world.truth
    x, y, theta = truth.poses[0]
    tolerance = 0.01 if physics == "kinematic" else 0.2 * 10.0
    assert abs((x - 2.0) - (10.0 - RAMP_M)) < tolerance
    assert abs(y + 1.0) < 0.05 and abs(theta) < 0.02
    assert truth.speeds[0] == pytest.approx(1.0, abs=0.05)
    assert truth.odometer_m[0] == pytest.approx(x - 2.0, abs=0.05)
    assert truth.steps == 100


@pytest.mark.parametrize("physics", PHYSICS)
def test_turning_in_place_turns_by_w_times_t(physics: str) -> None:
    with World([], seed=1, physics=physics) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.command(0, 0.0, 0.5)
        world.step(round(math.pi / 0.5 / 0.1))
        pose = world.truth.poses[0]
    tolerance = 0.07 if physics == "kinematic" else 0.2 * math.pi
    assert abs(wrap(pose[2] - math.pi)) < tolerance
    assert math.hypot(pose[0], pose[1]) < 0.05


@pytest.mark.parametrize("physics", PHYSICS)
def test_commands_are_clipped_to_the_spec(physics: str) -> None:
    spec = RobotSpec(max_speed_mps=1.2, max_turn_rps=1.0)
    with World([], seed=1, physics=physics) as world:
        world.add_robot(0.0, 0.0, 0.0, spec)
        world.add_robot(0.0, 5.0, 0.0, spec)
        world.command(0, 5.0, 0.0)
        world.command(1, 0.0, -9.0)
        world.step(30)
        truth = world.truth
        odometry_w = world.odometry(1)[5]
    assert truth.speeds[0] == pytest.approx(1.2, rel=0.05)
    assert odometry_w == pytest.approx(-1.0, rel=0.1)


def test_command_all_clips_every_robot() -> None:
    with World([], seed=1) as world:
        for k in range(3):
            world.add_robot(0.0, 5.0 * k, 0.0)
        world.command_all(np.array([9.0, -9.0, 0.5]), np.array([0.0, 0.0, 9.0]))
        world.step(30)
        truth = world.truth
    assert truth.speeds.tolist() == pytest.approx([1.5, -1.5, 0.5])
    ramp = 2.0**2 / (2 * 6.0)  # reaching 2 rad/s at 2 * 1.5 / 0.5 rad/s^2
    assert abs(wrap(truth.poses[2, 2] - (3.0 * 2.0 - ramp))) < 0.05  # turned at the 2 rad/s limit


@pytest.mark.parametrize("physics", PHYSICS)
def test_a_robot_stops_at_a_building_face_and_counts_one_collision(physics: str) -> None:
    building = Box(x=6.0, y=0.0, half_x=1.0, half_y=3.0, height=3.0)  # face at x = 5
    with World([building], seed=1, physics=physics) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.command(0, 1.0, 0.0)
        world.step(100)  # reaches the face after ~5 s and keeps pushing
        truth = world.truth
        assert 5.0 - truth.poses[0, 0] == pytest.approx(0.35, abs=0.03 if physics == "kinematic" else 0.1)
        assert abs(truth.speeds[0]) < 0.05
        assert truth.collisions.tolist() == [1]
        world.command(0, -1.0, 0.0)
        world.step(20)
        world.command(0, 1.0, 0.0)
        world.step(40)
        assert world.truth.collisions.tolist() == [2]


def test_a_blocked_robot_can_still_turn_and_drive_away() -> None:
    with World([Box(x=6.0, y=0.0, half_x=1.0, half_y=3.0, height=3.0)], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.command(0, 1.0, 0.0)
        world.step(80)
        world.command(0, 0.0, 1.0)
        world.step(round(math.pi / 0.1))
        world.command(0, 1.0, 0.0)
        world.step(30)
        truth = world.truth
    assert truth.poses[0, 0] < 3.0
    assert truth.collisions.tolist() == [1]


def test_kinematic_robots_pass_through_each_other_but_the_contact_is_counted() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.add_robot(6.0, 0.1, math.pi)
        world.add_robot(0.0, 20.0, 0.0)
        world.command_all(np.array([1.0, 1.0, 1.0]), np.zeros(3))
        world.step(80)
        truth = world.truth
    assert truth.poses[0, 0] > 6.0 and truth.poses[1, 0] < 0.0
    assert truth.robot_contacts.tolist() == [1, 1, 0]
    assert truth.collisions.tolist() == [0, 0, 0]


def test_dynamic_robots_push_against_each_other() -> None:
    with World([], seed=1, physics="dynamic") as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.add_robot(3.0, 0.0, math.pi)
        world.command_all(np.ones(2), np.zeros(2))
        world.step(40)
        truth = world.truth
    gap = truth.poses[1, 0] - truth.poses[0, 0]
    assert gap > 0.5  # they met and did not pass through
    assert truth.robot_contacts.tolist() == [1, 1]


def test_an_obstacle_appears_to_the_lidar_when_it_becomes_active_and_leaves_when_done() -> None:
    source = LateBox(Box(x=4.0, y=0.0, half_x=0.5, half_y=0.5, height=1.8), start_s=1.0, stop_s=2.0)
    with World([], seed=1, obstacles=source) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.step(9)
        t, before = world.scan(0)
        world.step(1)
        t_on, during = world.scan(0)
        world.step(10)
        _, after = world.scan(0)
    assert t == pytest.approx(0.9) and t_on == pytest.approx(1.0)
    assert np.isinf(before[FORWARD])
    assert abs(during[FORWARD] - 3.5) < 0.06
    assert np.isinf(after[FORWARD])
    assert source.asked[:3] == pytest.approx([0.1, 0.2, 0.3])


def test_an_active_obstacle_blocks_a_kinematic_robot() -> None:
    source = LateBox(Box(x=4.0, y=0.0, half_x=0.5, half_y=0.5, height=1.8), start_s=1.0)
    with World([], seed=1, obstacles=source) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.command(0, 1.0, 0.0)
        world.step(80)
        truth = world.truth
    assert 3.5 - truth.poses[0, 0] == pytest.approx(0.35, abs=0.03)
    assert truth.collisions.tolist() == [1]


def test_an_obstacle_that_walks_onto_a_robot_lets_it_drive_out() -> None:
    source = LateBox(Box(x=0.2, y=0.0, half_x=0.3, half_y=0.3, height=1.8), start_s=0.5)
    with World([], seed=1, obstacles=source) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.step(10)
        world.command(0, -1.0, 0.0)
        world.step(30)
        truth = world.truth
    assert truth.poses[0, 0] < -1.0
    assert truth.collisions.tolist() == [1]


@pytest.mark.parametrize("physics", PHYSICS)
def test_same_seed_same_run_and_another_seed_other_noise(physics: str) -> None:
    def run(seed: int) -> tuple[GroundTruth, list, list, np.ndarray]:
        with World([Box(x=8.0, y=2.0, half_x=1.0, half_y=4.0, height=3.0)], seed=seed, physics=physics) as world:
            world.add_robot(0.0, 0.0, 0.0)
            world.add_robot(0.0, 3.0, 0.3)
            for k in range(30):
                world.command_all(np.array([1.0, 0.8]), np.array([0.1 * math.sin(k), -0.2]))
                world.step()
            odometry = [world.odometry(i) for i in range(2)]
            fixes = [world.gnss(i) for i in range(2)]
            scans = np.stack([world.scan(i)[1] for i in range(2)])
            return world.truth, odometry, fixes, scans

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a[0].poses, b[0].poses)
    assert a[1] == b[1] and a[2] == b[2]
    np.testing.assert_array_equal(a[3], b[3])
    np.testing.assert_array_equal(a[0].poses, c[0].poses)  # noise never moves the true robot
    assert a[1] != c[1] and a[2] != c[2]
    assert not np.array_equal(a[3], c[3])


def test_a_robot_added_mid_run_joins_the_next_tick() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.step(5)
        late = world.add_robot(4.0, 0.0, math.pi)
        assert late == 1 and world.n_robots == 2
        assert world.scan(late) is None
        world.command(late, 1.0, 0.0)
        world.step(10)
        t, ranges = world.scan(late)
        odometry = world.odometry(late)
        truth = world.truth
    assert t == pytest.approx(1.5)
    assert np.isfinite(ranges[FORWARD])  # robot 0 sits ahead of it
    assert truth.poses[1, 0] == pytest.approx(4.0 - (1.0 - RAMP_M), abs=0.02)
    assert odometry[1] == pytest.approx(truth.poses[1, 0], abs=0.2)


def test_a_scan_row_does_not_change_under_the_caller() -> None:
    with World([Box(x=5.5, y=0.0, half_x=0.5, half_y=3.0, height=2.0)], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.step()
        _, first = world.scan(0)
        kept = first.copy()
        world.command(0, 1.0, 0.0)
        world.step(5)
        _, later = world.scan(0)
    np.testing.assert_array_equal(first, kept)
    assert later[FORWARD] < first[FORWARD]


def test_payload_slot_rules() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0, RobotSpec(payload_kg=10.0))
        assert world.payload(0) == (None, 0.0)
        with pytest.raises(ValueError):
            world.load(0, "heavy", 10.5)
        with pytest.raises(ValueError):
            world.load(0, "negative", -1.0)
        world.load(0, "p-1", 4.0)
        assert world.payload(0) == ("p-1", 4.0)
        with pytest.raises(ValueError):
            world.load(0, "p-2", 1.0)
        assert world.unload(0) == "p-1"
        assert world.unload(0) is None
        assert world.payload(0) == (None, 0.0)


def test_the_world_reports_its_lidar_and_physics() -> None:
    with World([], seed=1, dt=0.05, physics="dynamic") as world:
        assert world.physics == "dynamic" and world.dt == 0.05
        assert world.lidar_spec.rays == 32
        assert world.lidar_angle_min == pytest.approx(-math.pi)
        assert world.lidar_angle_increment == pytest.approx(2 * math.pi / 32)
        world.add_robot(0.0, 0.0, 0.0)
        world.step(3)  # 10 Hz lidar with dt = 0.05: every second tick
        assert world.scan(0)[0] == pytest.approx(0.1)
        assert world.time_s == pytest.approx(0.15)
    with pytest.raises(ValueError):
        World([], seed=1, physics="magic")


def test_readings_are_plain_python_values_of_the_latest_tick() -> None:
    with World([], seed=2, chargers=[(0.0, 5.0)]) as world:
        world.add_robot(0.0, 0.0, 0.0, battery=0.5)
        start = world.odometry(0)
        assert start == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        assert world.gnss(0) is None and world.battery(0) == 0.5 and world.charging(0) is False
        world.add_robot(0.0, 5.0, 0.0)  # a robot added after a read is readable at once
        assert world.odometry(1)[1:4] == (0.0, 5.0, 0.0) and world.battery(1) == 1.0
        world.command(0, 1.0, 0.0)
        world.step(12)
        odometry, fix, soc, charging = world.odometry(0), world.gnss(0), world.battery(0), world.charging(1)
        assert odometry[0] == pytest.approx(1.2) and odometry[1] > 0.5 and odometry[6] > 0.5
        assert fix is not None and fix[0] <= world.time_s and fix[3] == 1.5
        assert soc < 0.5 and charging is True
        assert all(type(v) is float for v in (*odometry, *fix, soc))
        world.step()
        assert world.odometry(0)[1] > odometry[1] and world.battery(0) < soc
