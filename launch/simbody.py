"""The simulated body: one robot of the PyBullet world behind the agent's Body interface.

This adapter is the only place that knows both sides: ``sim`` (the world and its
ground truth) and ``robots`` (the agent), which must not know each other. It
passes on only what a real robot's sensors would report.
"""

from __future__ import annotations

from robots.body import BodyProfile, GnssFix, LidarScan, Odometry, Sensors
from sim.world import RobotSpec, World


def profile_of(spec: RobotSpec) -> BodyProfile:
    """The datasheet a simulated robot model presents to its agent."""
    return BodyProfile(
        model=spec.model, max_speed_mps=spec.max_speed_mps, max_turn_rps=spec.max_turn_rps,
        radius_m=spec.radius_m, payload_kg=spec.payload_kg, mass_kg=spec.mass_kg,
        battery_wh=spec.battery_wh, wh_per_m=spec.wh_per_m, idle_w=spec.idle_w,
    )


class SimBody:
    """Robot ``index`` of ``world``, as a Body."""

    def __init__(self, world: World, index: int, spec: RobotSpec) -> None:
        self.world = world
        self.index = index
        self.profile = profile_of(spec)
        lidar = world.lidar_spec
        self._angle_min = -lidar.fov_rad / 2
        self._increment = lidar.fov_rad / lidar.rays
        self._range_max = lidar.range_max_m
        self._fix: GnssFix | None = None
        self._scan: LidarScan | None = None

    def now_s(self) -> float:
        """Simulation time."""
        return self.world.time_s

    def drive(self, v: float, w: float) -> None:
        """Command the wheels (the world clips to the robot's limits)."""
        self.world.command(self.index, v, w)

    def sense(self) -> Sensors:
        """Odometry, the latest GNSS fix and lidar scan, battery and payload, as the robot reads them."""
        world, i = self.world, self.index
        t, x, y, theta, v, w, distance = world.odometry(i)
        fix = world.gnss(i)
        if fix is not None and (self._fix is None or self._fix.t_s != fix[0]):
            self._fix = GnssFix(*fix)
        scan = world.scan(i)
        if scan is not None and (self._scan is None or self._scan.t_s != scan[0]):
            self._scan = LidarScan(scan[0], self._angle_min, self._increment, self._range_max, scan[1],
                                   world.nearest(i))
        parcel, kg = world.payload(i)
        return Sensors(t, Odometry(t, x, y, theta, v, w, distance), self._fix, self._scan,
                       world.battery(i), world.charging(i), parcel, kg)

    def load(self, parcel: str, kg: float) -> None:
        """Take a parcel aboard (ValueError if the slot is full or it is too heavy)."""
        self.world.load(self.index, parcel, kg)

    def unload(self) -> str | None:
        """Hand the parcel over."""
        return self.world.unload(self.index)
