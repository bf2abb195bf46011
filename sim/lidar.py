"""A planar lidar on every robot, cast for the whole fleet in as few PyBullet ray batches as it allows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from sim.quiet import import_pybullet

p = import_pybullet()

MAX_BATCH = 16383  # PyBullet returns nothing for 16384 rays in one rayTestBatch and raises above
_CLEARANCE_M = 0.02  # rays start this far outside the robot's own radius so it never sees itself
_FRACTION = itemgetter(2)


@dataclass(frozen=True, slots=True)
class LidarSpec:
    """The scanner every robot carries: beam count, field of view, reach, scan rate and mounting height."""

    rays: int = 32
    fov_rad: float = 2 * math.pi
    range_max_m: float = 12.0
    rate_hz: float = 10.0
    height_m: float = 0.3


class Lidar:
    """Casts every robot's beams in as few PyBullet batches as its limit allows, and turns hit fractions into ranges.

    Ranges are float32 metres from the robot centre along beam ``k`` at ``angles[k]`` (robot frame);
    inf means no return within ``range_max_m``. Gaussian noise of ``sigma_m`` is added to returns only.
    """

    def __init__(self, spec: LidarSpec, n_robots_capacity: int = 0, *, sigma_m: float = 0.0) -> None:
        self.spec = spec
        self._sigma = sigma_m
        self._increment = spec.fov_rad / spec.rays  # a full circle has no twin beams at -pi and +pi
        self._angles = -spec.fov_rad / 2 + self._increment * np.arange(spec.rays)
        self._cos = np.cos(self._angles)
        self._sin = np.sin(self._angles)
        self._from = np.empty((0, 3))
        self._to = np.empty((0, 3))
        self._reserve(n_robots_capacity)

    @property
    def angles(self) -> np.ndarray:
        """Beam angles in the robot frame (rad), starting at -fov/2."""
        return self._angles

    @property
    def angle_min(self) -> float:
        """Angle of the first beam, robot frame (rad)."""
        return float(self._angles[0])

    @property
    def angle_increment(self) -> float:
        """Angle between neighbouring beams (rad)."""
        return self._increment

    def _reserve(self, n_robots: int) -> None:
        rays = n_robots * self.spec.rays
        if rays > len(self._from):
            self._from = np.empty((rays, 3))
            self._to = np.empty((rays, 3))
            self._from[:, 2] = self._to[:, 2] = self.spec.height_m

    def scan(self, client: int, poses: np.ndarray, radii: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ranges (N, rays) seen from ``poses`` (N, 3: x, y, theta) by robots of ``radii`` (N,) in ``client``."""
        n, rays = len(poses), self.spec.rays
        self._reserve(n)
        total = n * rays
        c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
        dx = c * self._cos - s * self._sin  # (N, rays) world-frame beam directions
        dy = s * self._cos + c * self._sin
        start = (radii + _CLEARANCE_M)[:, None]
        reach = self.spec.range_max_m
        ray_from, ray_to = self._from[:total], self._to[:total]
        ray_from[:, 0] = (poses[:, 0:1] + dx * start).ravel()
        ray_from[:, 1] = (poses[:, 1:2] + dy * start).ravel()
        ray_to[:, 0] = (poses[:, 0:1] + dx * reach).ravel()
        ray_to[:, 1] = (poses[:, 1:2] + dy * reach).ravel()
        fraction = np.empty(total)
        chunk = max(MAX_BATCH // rays, 1) * rays  # whole robots per batch: 511 robots of 32 beams
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            hits = p.rayTestBatch(ray_from[lo:hi], ray_to[lo:hi], numThreads=1, physicsClientId=client)
            fraction[lo:hi] = np.fromiter(map(_FRACTION, hits), np.float64, hi - lo)  # a miss has fraction 1
        ranges = (start + fraction.reshape(n, rays) * (reach - start)).astype(np.float32)
        hit = fraction.reshape(n, rays) < 1.0
        if self._sigma > 0.0:
            ranges[hit] += self._sigma * rng.standard_normal(int(hit.sum()), dtype=np.float32)
        ranges[~hit | (ranges >= reach)] = np.inf
        np.maximum(ranges, 0.0, out=ranges)
        return ranges
