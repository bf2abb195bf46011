"""What a robot's own instruments report: drifting wheel odometry, noisy GNSS fixes, the battery gauge.

Pure numpy, one array slot per robot, updated for the whole fleet in one call per tick. All noise is
drawn from the ``numpy.random.Generator`` the world owns, so a seed replays a run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class NoiseSpec:
    """How wrong the instruments are; the defaults drift wheel odometry by roughly 1-3 % of distance."""

    odom_scale_sigma: float = 0.01  # wheel-radius scale error both wheels share (tyre size), drawn once per robot
    odom_mismatch_sigma: float = 0.0005  # left/right wheel-radius mismatch left after calibration, drawn once
    odom_noise_sigma: float = 0.002  # per-wheel slip noise, std per sqrt(metre) of that wheel's travel
    gnss_sigma_m: float = 1.5
    gnss_rate_hz: float = 1.0
    lidar_sigma_m: float = 0.02


def _grow(a: np.ndarray, value: float | Sequence[float]) -> np.ndarray:
    """``a`` with one more row holding ``value``."""
    return np.concatenate([a, np.asarray(value, dtype=a.dtype).reshape((1, *a.shape[1:]))])


class Odometer:
    """Dead reckoning from the wheel encoders of every robot: a pose in each robot's odometry frame that drifts.

    Each robot's frame starts at its true spawn pose. Every step the true wheel travel is scaled by that
    robot's fixed wheel errors, jittered by slip noise, and integrated as a differential drive.
    """

    def __init__(self, spec: NoiseSpec, rng: np.random.Generator, dt: float) -> None:
        self._spec = spec
        self._rng = rng
        self._dt = dt
        self.pose = np.zeros((0, 3))  # x, y, theta in the odometry frame
        self.v = np.zeros(0)  # measured linear speed, m/s
        self.w = np.zeros(0)  # measured turn rate, rad/s
        self.distance = np.zeros(0)  # odometer: path length the wheels measured, m
        self._scale = np.zeros((0, 2))  # left, right
        self._base = np.zeros(0)

    def add(self, x: float, y: float, theta: float, wheel_base_m: float) -> None:
        """Start one more robot's odometry at its true pose, drawing its wheel errors."""
        common = self._rng.normal(0.0, self._spec.odom_scale_sigma)
        mismatch = self._rng.normal(0.0, self._spec.odom_mismatch_sigma)
        self._scale = _grow(self._scale, (1.0 + common - mismatch / 2, 1.0 + common + mismatch / 2))
        self._base = _grow(self._base, wheel_base_m)
        self.pose = _grow(self.pose, (x, y, theta))
        self.v = _grow(self.v, 0.0)
        self.w = _grow(self.w, 0.0)
        self.distance = _grow(self.distance, 0.0)

    def update(self, true_dl: np.ndarray, true_dr: np.ndarray) -> None:
        """Integrate one step given each robot's true left and right wheel travel (m, signed)."""
        travel = np.stack([true_dl, true_dr], axis=1)
        slip = self._rng.standard_normal(travel.shape) * (self._spec.odom_noise_sigma * np.sqrt(np.abs(travel)))
        measured = travel * self._scale + slip
        ds = measured.mean(axis=1)
        dth = (measured[:, 1] - measured[:, 0]) / self._base
        heading = self.pose[:, 2] + dth / 2
        self.pose[:, 0] += ds * np.cos(heading)
        self.pose[:, 1] += ds * np.sin(heading)
        self.pose[:, 2] = (self.pose[:, 2] + dth + np.pi) % (2 * np.pi) - np.pi
        self.v = ds / self._dt
        self.w = dth / self._dt
        self.distance += np.abs(ds)


class Gnss:
    """A GNSS receiver per robot: unbiased gaussian fixes of the true position at a fixed rate.

    Each robot's fix times are offset by a seeded phase so a fleet's fixes do not all land on one tick.
    """

    def __init__(self, spec: NoiseSpec, rng: np.random.Generator) -> None:
        self._sigma = spec.gnss_sigma_m
        self._period = 1.0 / spec.gnss_rate_hz
        self._rng = rng
        self._next = np.zeros(0)
        self.t = np.full(0, np.nan)  # time of the latest fix, nan until the first
        self.xy = np.zeros((0, 2))

    def add(self, now_s: float) -> None:
        """Give one more robot a receiver; its first fix comes within one period of ``now_s``."""
        self._next = _grow(self._next, now_s + self._rng.uniform(0.0, self._period))
        self.t = _grow(self.t, np.nan)
        self.xy = _grow(self.xy, (np.nan, np.nan))

    def update(self, now_s: float, true_xy: np.ndarray) -> None:
        """Take a fix for every robot whose next fix is due at ``now_s``, from its true position (N, 2)."""
        due = np.flatnonzero(self._next <= now_s + 1e-9)
        if due.size == 0:
            return
        self.xy[due] = true_xy[due] + self._rng.normal(0.0, self._sigma, (due.size, 2))
        self.t[due] = now_s
        self._next[due] += self._period * (np.floor(np.maximum(now_s - self._next[due], 0.0) / self._period) + 1.0)

    def fix(self, i: int) -> tuple[float, float, float, float] | None:
        """Robot ``i``'s latest fix as (t, x, y, sigma), or None before its first."""
        if np.isnan(self.t[i]):
            return None
        return float(self.t[i]), float(self.xy[i, 0]), float(self.xy[i, 1]), self._sigma


class Battery:
    """Every robot's battery: drains with distance (more under load) and idle draw, charges when parked at a charger."""

    def __init__(
        self,
        chargers: Sequence[tuple[float, float]],
        *,
        charge_w: float = 400.0,
        charge_radius_m: float = 2.0,
        dt: float,
    ) -> None:
        self._chargers = np.asarray(chargers, dtype=float).reshape(-1, 2)
        self._charge_w = charge_w
        self._radius_sq = charge_radius_m**2
        self._dt = dt
        self.wh = np.zeros(0)
        self.capacity_wh = np.zeros(0)
        self._wh_per_m = np.zeros(0)
        self._mass = np.zeros(0)
        self._idle_w = np.zeros(0)
        self.charging = np.zeros(0, dtype=bool)

    def add(self, capacity_wh: float, soc: float, *, wh_per_m: float, mass_kg: float, idle_w: float) -> None:
        """Fit one more robot with a battery of ``capacity_wh`` at state of charge ``soc`` (0..1)."""
        self.capacity_wh = _grow(self.capacity_wh, capacity_wh)
        self.wh = _grow(self.wh, capacity_wh * min(max(soc, 0.0), 1.0))
        self._wh_per_m = _grow(self._wh_per_m, wh_per_m)
        self._mass = _grow(self._mass, mass_kg)
        self._idle_w = _grow(self._idle_w, idle_w)
        self.charging = _grow(self.charging, False)

    @property
    def soc(self) -> np.ndarray:
        """State of charge of every robot, 0..1."""
        return self.wh / self.capacity_wh

    @property
    def empty(self) -> np.ndarray:
        """Which robots have nothing left to drive on."""
        return self.wh <= 0.0

    def update(self, distance_m: np.ndarray, load_kg: np.ndarray, xy: np.ndarray, speed: np.ndarray) -> None:
        """One step: drain by the true distance driven and the load carried, charge robots stopped at a charger."""
        drain = self._wh_per_m * distance_m * (self._mass + load_kg) / self._mass + self._idle_w * self._dt / 3600.0
        if len(self._chargers):
            d_sq = ((xy[:, None, :] - self._chargers[None, :, :]) ** 2).sum(axis=2)
            self.charging = (d_sq.min(axis=1) <= self._radius_sq) & (np.abs(speed) < 0.05)
        else:
            self.charging = np.zeros(len(self.wh), dtype=bool)
        gain = np.where(self.charging, self._charge_w * self._dt / 3600.0, 0.0)
        self.wh = np.clip(self.wh - drain + gain, 0.0, self.capacity_wh)
