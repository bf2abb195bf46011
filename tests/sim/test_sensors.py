"""The instrument models on their own and inside the world: drift, fix statistics and rate, battery energy."""

import math

import numpy as np
import pytest

from sim.sensors import Battery, Gnss, NoiseSpec, Odometer
from sim.world import RobotSpec, World

DT = 0.1


def drive_square(world: World, side_s: float = 12.0) -> None:
    """Every robot: four sides of ``side_s`` seconds at 1 m/s, each followed by a 90 degree turn in place."""
    n = world.n_robots
    for _ in range(4):
        world.command_all(np.ones(n), np.zeros(n))
        world.step(round(side_s / DT))
        world.command_all(np.zeros(n), np.zeros(n))
        world.step(10)
        world.command_all(np.zeros(n), np.full(n, 0.5))
        world.step(round(math.pi / 2 / 0.5 / DT))
        world.command_all(np.zeros(n), np.zeros(n))
        world.step(5)


def test_odometry_drifts_but_stays_within_a_few_percent_over_a_50_m_square() -> None:
    with World([], seed=11) as world:
        for k in range(20):
            world.add_robot(0.0, 10.0 * k, 0.0)
        drive_square(world)
        truth = world.truth
        odom = np.array([world.odometry(i)[1:3] for i in range(20)])
    distance = truth.odometer_m
    assert np.all(distance > 45.0)
    relative = np.hypot(*(odom - truth.poses[:, :2]).T) / distance
    assert np.all(relative > 0.0)
    assert relative.mean() > 0.005  # the drift is real...
    assert relative.max() < 0.05  # ...and bounded


def test_each_robot_keeps_its_own_fixed_wheel_scale_error() -> None:
    spec = NoiseSpec()
    odometer = Odometer(spec, np.random.default_rng(5), DT)
    n = 500
    for _ in range(n):
        odometer.add(0.0, 0.0, 0.0, 0.5)
    straight = np.full(n, 0.1)
    for _ in range(200):
        odometer.update(straight, straight)
    first = odometer.distance / 20.0 - 1.0
    for _ in range(200):
        odometer.update(straight, straight)
    second = odometer.distance / 40.0 - 1.0
    assert 0.8 * spec.odom_scale_sigma < first.std() < 1.2 * spec.odom_scale_sigma
    assert np.corrcoef(first, second)[0, 1] > 0.95  # drawn once per robot, not per step
    v = odometer.v
    assert np.all(np.abs(v - 1.0) < 0.1)


def test_gnss_fixes_are_unbiased_with_the_configured_sigma() -> None:
    spec = NoiseSpec()
    gnss = Gnss(spec, np.random.default_rng(6))
    n = 200
    for _ in range(n):
        gnss.add(0.0)
    true_xy = np.column_stack([np.arange(n, dtype=float), -np.arange(n, dtype=float)])
    errors = []
    for tick in range(1, 201):
        gnss.update(tick * DT, true_xy)
        fresh = gnss.t == tick * DT
        errors.append(gnss.xy[fresh] - true_xy[fresh])
    err = np.concatenate(errors)
    assert len(err) >= 19 * n
    assert np.all(np.abs(err.mean(axis=0)) < 0.1)
    assert np.all(np.abs(err.std(axis=0) - spec.gnss_sigma_m) < 0.1 * spec.gnss_sigma_m)


def test_gnss_keeps_its_rate_with_staggered_phases() -> None:
    gnss = Gnss(NoiseSpec(gnss_rate_hz=2.0), np.random.default_rng(8))
    n = 50
    for _ in range(n):
        gnss.add(0.0)
    times: list[list[float]] = [[] for _ in range(n)]
    for tick in range(1, 101):
        gnss.update(tick * DT, np.zeros((n, 2)))
        for i in np.flatnonzero(gnss.t == tick * DT):
            times[i].append(tick * DT)
    for fixes in times:
        assert len(fixes) == 20  # 10 s at 2 Hz
        assert np.allclose(np.diff(fixes), 0.5)
    assert len({round(fixes[0], 3) for fixes in times}) >= 4  # not every robot on the same tick


def test_world_gnss_has_no_fix_before_the_first_and_then_the_true_area() -> None:
    with World([], seed=2) as world:
        world.add_robot(3.0, 4.0, 0.0)
        assert world.gnss(0) is None
        world.step(10)
        fix = world.gnss(0)
    assert fix is not None
    t, x, y, sigma = fix
    assert 0.0 < t <= 1.0 and sigma == 1.5
    assert math.hypot(x - 3.0, y - 4.0) < 5 * sigma


def test_battery_drains_with_distance_and_more_under_load() -> None:
    battery = Battery((), dt=DT)
    for _ in range(2):
        battery.add(400.0, 1.0, wh_per_m=0.02, mass_kg=25.0, idle_w=15.0)
    for _ in range(1000):
        battery.update(np.full(2, 0.1), np.array([0.0, 10.0]), np.zeros((2, 2)), np.ones(2))
    idle = 15.0 * 100.0 / 3600.0
    used = 400.0 - battery.wh
    assert used[0] == pytest.approx(0.02 * 100.0 + idle)
    assert used[1] == pytest.approx(0.02 * 100.0 * 35.0 / 25.0 + idle)
    assert not battery.charging.any()


def test_battery_charges_only_when_stopped_at_a_charger_and_clamps() -> None:
    battery = Battery([(0.0, 0.0)], charge_w=400.0, charge_radius_m=2.0, dt=DT)
    for _ in range(3):
        battery.add(10.0, 0.5, wh_per_m=0.02, mass_kg=25.0, idle_w=15.0)
    xy = np.array([[1.5, 0.0], [1.0, 0.0], [5.0, 0.0]])
    speed = np.array([0.0, 1.0, 0.0])  # at the charger and stopped / at the charger but driving / away
    battery.update(np.zeros(3), np.zeros(3), xy, speed)
    assert battery.charging.tolist() == [True, False, False]
    assert battery.wh[0] == pytest.approx(5.0 + (400.0 - 15.0) * DT / 3600.0)
    assert battery.wh[1] < 5.0 and battery.wh[2] < 5.0
    for _ in range(20000):
        battery.update(np.zeros(3), np.zeros(3), xy, speed)
    assert battery.soc[0] == 1.0
    assert battery.soc[2] == 0.0 and battery.empty[2]


def test_world_battery_drains_with_load_and_charges_at_a_charger() -> None:
    with World([], seed=1, chargers=[(100.0, 0.0)]) as world:
        world.add_robot(0.0, 0.0, 0.0)
        world.add_robot(0.0, 10.0, 0.0)
        world.add_robot(100.0, 0.5, 0.0, battery=0.5)
        world.load(1, "parcel-1", 10.0)
        world.command(0, 1.0, 0.0)
        world.command(1, 1.0, 0.0)
        world.step(100)
        assert 1.0 > world.battery(0) > world.battery(1)
        assert not world.charging(0)
        assert world.charging(2)
        assert world.battery(2) > 0.5


def test_an_empty_battery_stops_the_robot() -> None:
    with World([], seed=1) as world:
        world.add_robot(0.0, 0.0, 0.0, battery=0.0)
        world.add_robot(0.0, 5.0, 0.0, RobotSpec(battery_wh=0.05), battery=1.0)
        world.command_all(np.ones(2), np.zeros(2))
        world.step(200)
        truth = world.truth
    assert truth.poses[0, 0] == 0.0
    assert world.battery(1) == 0.0
    assert 0.5 < truth.poses[1, 0] < 5.0  # drove until the little battery ran dry, then stopped
    assert truth.speeds[1] == 0.0
