"""A planar lidar on every robot, cast for the whole fleet in PyBullet ray batches of about a thousand rays.

Robots without PyBullet bodies (the kinematic world's) are seen as discs, intersected with the beams in numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from sim.collide import near_pairs
from sim.quiet import import_pybullet

p = import_pybullet()

MAX_BATCH = 16383  # PyBullet returns nothing for 16384 rays in one rayTestBatch and raises above
_BATCH_RAYS = 1024  # rays per call: batches this small stay in cache and cast 25-40 % faster than 16383 (measured)
_CLEARANCE_M = 0.02  # rays start this far outside a robot body's radius so it never sees itself
_WINDOW_SLACK = 1e-6  # beams this much (in beam spacings) outside a disc's angular window are still tested exactly
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
    """Casts every robot's beams in PyBullet batches of whole robots, and turns hit fractions into ranges.

    Ranges are float32 metres from the robot centre along beam ``k`` at ``angles[k]`` (robot frame);
    inf means no return within ``range_max_m``. Gaussian noise of ``sigma_m`` is added to returns only.
    """

    def __init__(self, spec: LidarSpec, n_robots_capacity: int = 0, *, sigma_m: float = 0.0) -> None:
        if not 0 < spec.rays <= MAX_BATCH:
            raise ValueError(f"a scan has 1..{MAX_BATCH} beams, the most one PyBullet batch casts, not {spec.rays}")
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

    def scan(
        self, client: int, poses: np.ndarray, radii: np.ndarray, rng: np.random.Generator, *, discs: bool = False
    ) -> np.ndarray:
        """Ranges (N, rays) seen from ``poses`` (N, 3: x, y, theta) by robots of ``radii`` (N,) in ``client``.

        With ``discs`` the robots have no bodies in ``client``: beams start at each centre and see the other robots
        as discs of their radii. Without, beams start just outside each robot's radius so it misses its own body.
        """
        n, rays = len(poses), self.spec.rays
        self._reserve(n)
        total = n * rays
        c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
        dx = c * self._cos - s * self._sin  # (N, rays) world-frame beam directions
        dy = s * self._cos + c * self._sin
        start = np.zeros((n, 1)) if discs else (radii + _CLEARANCE_M)[:, None]
        reach = self.spec.range_max_m
        ray_from, ray_to = self._from[:total], self._to[:total]
        ray_from[:, 0] = (poses[:, 0:1] + dx * start).ravel()
        ray_from[:, 1] = (poses[:, 1:2] + dy * start).ravel()
        ray_to[:, 0] = (poses[:, 0:1] + dx * reach).ravel()
        ray_to[:, 1] = (poses[:, 1:2] + dy * reach).ravel()
        fraction = np.empty(total)
        chunk = max(_BATCH_RAYS // rays, 1) * rays  # whole robots per batch: 32 robots of 32 beams
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            hits = p.rayTestBatch(ray_from[lo:hi], ray_to[lo:hi], numThreads=1, physicsClientId=client)
            fraction[lo:hi] = np.fromiter(map(_FRACTION, hits), np.float64, hi - lo)  # a miss has fraction 1
        fraction = fraction.reshape(n, rays)
        exact = np.where(fraction < 1.0, start + fraction * (reach - start), np.inf)
        if discs:
            np.minimum(exact, self._disc_ranges(poses, radii), out=exact)
        hit = exact < np.inf
        ranges = exact.astype(np.float32)
        if self._sigma > 0.0:
            ranges[hit] += self._sigma * rng.standard_normal(int(hit.sum()), dtype=np.float32)
        ranges[~hit | (ranges >= reach)] = np.inf
        np.maximum(ranges, 0.0, out=ranges)
        return ranges

    def _disc_ranges(self, poses: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """(N, rays) distance from each robot's centre along each beam to where it enters another robot's disc.

        inf where no disc is entered within range; a robot never sees itself, nor a disc its centre stands in.
        Only the beams within a disc's angular window are tested, so the work grows with the hits, not pairs x beams.
        """
        n, rays, reach, fov = len(poses), self.spec.rays, self.spec.range_max_m, self.spec.fov_rad
        ranges = np.full(n * rays, np.inf)
        if n < 2:
            return ranges.reshape(n, rays)
        x, y, theta = poses.T
        i, j = near_pairs(x, y, reach + float(radii.max()))
        ox, oy = x[j] - x[i], y[j] - y[i]
        d_sq, r = ox * ox + oy * oy, radii[j]
        near = (d_sq > r * r) & (d_sq < (reach + r) ** 2)  # robot i's centre is outside disc j, its edge within reach
        i, ox, oy, r, d_sq = i[near], ox[near], oy[near], r[near], d_sq[near]
        # beam k (at -fov/2 + k * increment) can meet disc j only within asin(r / d) of its bearing; in beam units
        # that window is [centre - half, centre + half], taken once more a full turn either side for wrap-around
        bearing = (np.arctan2(oy, ox) - theta[i] + fov / 2) % (2 * np.pi)
        turn = 2 * np.pi / self._increment
        centre = bearing / self._increment + np.array([[-turn], [0.0], [turn]])
        half = np.arcsin(r / np.sqrt(d_sq)) / self._increment + _WINDOW_SLACK
        first = np.maximum(np.ceil(centre - half), 0).astype(np.int64).ravel()
        count = np.maximum(np.minimum(np.floor(centre + half), rays - 1).astype(np.int64).ravel() - first + 1, 0)
        pair = np.repeat(np.tile(np.arange(len(i)), 3), count)
        beam = np.repeat(first, count) + np.arange(len(pair)) - np.repeat(np.cumsum(count) - count, count)
        i, ox, oy, inside_sq = i[pair], ox[pair], oy[pair], d_sq[pair] - r[pair] ** 2
        c, s = np.cos(theta)[i], np.sin(theta)[i]
        along = (c * ox + s * oy) * self._cos[beam] + (c * oy - s * ox) * self._sin[beam]  # to the nearest approach
        meets = along >= np.sqrt(inside_sq)  # the beam meets the disc ahead: the window up to rounding, decided here
        i, beam, along, inside_sq = i[meets], beam[meets], along[meets], inside_sq[meets]
        entry = inside_sq / (along + np.sqrt(along * along - inside_sq))  # along - sqrt(...), the nearer root, stably
        seen = entry < reach
        np.minimum.at(ranges, i[seen] * rays + beam[seen], entry[seen])
        return ranges.reshape(n, rays)
