"""The Body interface: everything the robot agent may know of, and do to, the machine it runs on.

Sensor readings are named tuples: a fleet of a thousand agents reads them ten
times a simulated second, and a tuple is the cheapest immutable record to build.

The same agent drives a simulated body (PyBullet, wired in ``launch``) and a
real one (the MQTT hardware bridge). A body reports only what real sensors
would: wheel odometry that drifts, a noisy GNSS fix, a lidar scan, the battery
gauge. Ground truth never crosses this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class BodyProfile:
    """What the machine is, from its datasheet: limits, capacity and energy use."""

    model: str
    max_speed_mps: float
    max_turn_rps: float
    radius_m: float
    payload_kg: float
    mass_kg: float
    battery_wh: float
    wh_per_m: float  # energy to drive one metre unloaded; scales with (mass + load) / mass
    idle_w: float  # draw while standing still (computers, sensors)
    capabilities: tuple[str, ...] = ("delivery", "lidar-2d", "gnss")


class Odometry(NamedTuple):
    """Dead reckoning from the wheel encoders: pose in the odometry frame (it drifts) and measured twist."""

    t_s: float
    x: float
    y: float
    theta: float
    v: float
    w: float
    distance_m: float  # odometer: total path length the wheels measured


class GnssFix(NamedTuple):
    """One position fix in the world frame, with its 1-sigma horizontal error."""

    t_s: float
    x: float
    y: float
    sigma_m: float


class LidarScan(NamedTuple):
    """A planar scan in the robot frame; ``ranges[i]`` is at angle_min + i * angle_increment, inf = no return."""

    t_s: float
    angle_min: float
    angle_increment: float
    range_max: float
    ranges: np.ndarray
    nearest: float  # the shortest range in the scan (inf: none), so a clear scan is known at a glance


class Sensors(NamedTuple):
    """One reading of everything: the latest of each sensor as of ``t_s`` (a fix or scan may be older)."""

    t_s: float
    odometry: Odometry
    gnss: GnssFix | None
    scan: LidarScan | None
    battery: float  # state of charge, 0..1
    charging: bool
    payload: str | None
    load_kg: float


class Body(Protocol):
    """A machine the agent can drive: a simulated body or a real robot behind the hardware bridge."""

    profile: BodyProfile

    def now_s(self) -> float:
        """The body's clock in seconds (simulation time, or the robot's monotonic clock)."""
        ...

    def drive(self, v: float, w: float) -> None:
        """Command linear (m/s) and angular (rad/s) velocity until the next command."""
        ...

    def sense(self) -> Sensors:
        """The latest reading of every sensor."""
        ...

    def load(self, parcel: str, kg: float) -> None:
        """Take ``parcel`` into the payload slot; ValueError if the slot is full or it is too heavy."""
        ...

    def unload(self) -> str | None:
        """Hand over whatever is in the payload slot; returns its id, or None if it was empty."""
        ...
