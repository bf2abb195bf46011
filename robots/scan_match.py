"""Where does this lidar scan fit on the map: a Gauss-Newton scan matcher that returns a pose and its covariance.

The map is the shared map's "belief" layer: only occupied cells, corroborated by at
least two robots, count. Its occupied cells are blurred by a gaussian at two scales
(scipy.ndimage), scaled so a thin wall reads 1, and the scan is registered to that
field by Gauss-Newton on the bilinearly interpolated values, coarse level first:
the residual of a return is 1 - field (Kohlbrecher et al., "A Flexible and Scalable
SLAM System with Full 3D Motion Estimation", SSRR 2011, "Hector SLAM", with its
multi-resolution maps). The blur, rather than a distance field, puts the best fit on
the middle of a wall the fleet mapped a few cells thick.

A map the fleet built carries its walls deeper than they are (robots whose pose
erred towards a wall put hits behind it, and nobody's ray clears those, while
the others' rays clear the hits in front), so the match fits one range bias
shared by every return besides the pose, and the pose's covariance is the one left
once that bias is marginalized. The covariance is the inverse of the information
(J^T J over the residual variance, with a tenth of the returns counted as
independent: returns on one wall err together), so a corridor's is long along it;
a direction the scan says nothing about gets a huge variance. Refused, with a
reason: too few returns, too few of them on mapped walls, a small share of them
on mapped walls (the scan and the map disagree), or no position direction known
to MAX_SIGMA_M.

Chosen over correlative scan matching (Olson, "Real-Time Correlative Scan
Matching", ICRA 2009) by cost: a correlative search over +-1 m and +-0.1 rad at
0.1 m and 0.02 rad scores ~4,800 poses of 64 returns, each the cost of one of the
7 or so field lookups a Gauss-Newton match makes (a few hundred microseconds), and
a robot's EKF already keeps its estimate within the coarse field's reach.

The field is built once per tile version and shared: ``field_for(view)`` keeps one
LikelihoodField per MapView, so a thousand agents on one view cost one blur per
changed tile, not one per robot per scan.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spatial.tiles import BELIEF, OCCUPIED_CELL, decode_tile
from spatial.view import MapView

SIGMAS_M = (0.6, 0.25)  # the field's blur, coarse then fine: a wide basin first, then a sharp fit
HIT = 0.45  # a return where the fine field is this high lies within ~0.3 m of a mapped wall: a hit on it
MIN_HITS = 6  # fewer hits than this: the scan does not see enough of the map to place the robot
MIN_HIT_SHARE = 0.3  # fewer of the returns than this on mapped walls: the scan and the map disagree
MAX_SIGMA_M = 0.5  # refused unless some direction is known at least this well: nothing would be learned
SIGMA_FLOOR = 0.1  # a return's residual (1 - field) is never believed better than this
EFFECTIVE_SHARE = 0.1  # returns on one wall err together (the map's 0.2 m cells): count a tenth as independent
BIAS_PRIOR_M = 0.5  # the range bias's prior sigma (mean 0): the fleet's pose spread that carved the map's walls
ITERATIONS = (4, 8)  # Gauss-Newton steps on the coarse, then the fine field
_MAX_STEP = np.array((0.3, 0.3, 0.05, 0.3))  # m, m, rad, m: one Gauss-Newton step goes no farther
_REFRESH_S = 0.5  # a view's field looks for newer tiles at most this often (robot clock)
_UNCONSTRAINED_VAR = 1e4  # m^2 (or rad^2): the variance reported along a direction the scan says nothing about


@dataclass(frozen=True, slots=True)
class Match:
    """A scan matched to the map: the robot's pose (x, y, theta), its 3x3 covariance, and how many returns hit."""

    pose: tuple[float, float, float]
    covariance: np.ndarray
    hits: int


@dataclass(frozen=True, slots=True)
class NoMatch:
    """A match refused, and why (for counters and logs)."""

    reason: str


class LikelihoodField:
    """The map's occupied cells blurred at each of SIGMAS_M (1 on a thin wall's line), on one growing grid.

    Updated tile by tile: a tile's new cells change the blur only within a few sigma of it."""

    def __init__(self, resolution_m: float, tile_cells: int, sigmas_m: tuple[float, ...] = SIGMAS_M) -> None:
        self.resolution = resolution_m
        self.tile_cells = tile_cells
        self.sigmas = tuple(s / resolution_m for s in sigmas_m)  # in cells
        self._margin = math.ceil(4.0 * max(self.sigmas)) + 1  # cells a tile's change reaches beyond it
        # a straight one-cell wall blurred by a gaussian of sigma s peaks at 1 / (sqrt(2 pi) s): scale it to 1
        self._gain = [math.sqrt(2.0 * math.pi) * s for s in self.sigmas]
        self._origin = (0, 0)  # the cell index of array element [0, 0]
        self._occupied = np.zeros((0, 0), dtype=np.float32)
        self.levels: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32) for _ in self.sigmas]
        self.versions: dict[tuple[int, int], int] = {}
        self.checked_s = -math.inf

    @property
    def occupied_cells(self) -> int:
        """How many cells the field holds as occupied."""
        return int(self._occupied.sum())

    def update(self, key: tuple[int, int], version: int, cells: np.ndarray) -> None:
        """Take a tile's belief cells ([ix, iy], 2 = occupied) and blur again around it."""
        n, m = self.tile_cells, self._margin
        x0, y0 = key[0] * n, key[1] * n
        self._cover(x0 - 2 * m, y0 - 2 * m, x0 + n + 2 * m, y0 + n + 2 * m)
        ox, oy = self._origin
        ax, ay = x0 - ox, y0 - oy
        self._occupied[ax:ax + n, ay:ay + n] = cells == OCCUPIED_CELL
        window = self._occupied[ax - 2 * m:ax + n + 2 * m, ay - 2 * m:ay + n + 2 * m]
        empty = not window.any()
        for level, sigma, gain in zip(self.levels, self.sigmas, self._gain):
            blurred = 0.0 if empty else ndimage.gaussian_filter(window, sigma, mode="constant", truncate=3.5)
            blurred = blurred if empty else blurred[m:-m, m:-m]
            level[ax - m:ax + n + m, ay - m:ay + n + m] = np.minimum(blurred * gain, 1.0)
        self.versions[key] = version

    def _cover(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Grow the arrays (by whole tiles, with room to spare) so cells [x0, x1) x [y0, y1) are inside."""
        ox, oy = self._origin
        sx, sy = self._occupied.shape
        if sx and x0 >= ox and y0 >= oy and x1 <= ox + sx and y1 <= oy + sy:
            return
        n = self.tile_cells
        lo_x, lo_y = (min(x0, ox), min(y0, oy)) if sx else (x0, y0)
        hi_x, hi_y = (max(x1, ox + sx), max(y1, oy + sy)) if sx else (x1, y1)
        lo_x, lo_y, hi_x, hi_y = lo_x - 2 * n, lo_y - 2 * n, hi_x + 2 * n, hi_y + 2 * n
        grown = []
        for old in [self._occupied, *self.levels]:
            new = np.zeros((hi_x - lo_x, hi_y - lo_y), dtype=np.float32)
            if sx:
                new[ox - lo_x:ox - lo_x + sx, oy - lo_y:oy - lo_y + sy] = old
            grown.append(new)
        self._origin, self._occupied, self.levels = (lo_x, lo_y), grown[0], grown[1:]

    def sample(self, level: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One level of the field at world points, bilinear between cell centres, and its x and y gradients.

        Points off the arrays read their edge, which is two tiles of nothing (the arrays grow with room to spare)."""
        res, field = self.resolution, self.levels[level]
        u = xs * (1.0 / res) - (0.5 + self._origin[0])
        v = ys * (1.0 / res) - (0.5 + self._origin[1])
        i = np.clip(u.astype(np.intp), 0, field.shape[0] - 2)  # truncation is floor for the non-negative ones
        j = np.clip(v.astype(np.intp), 0, field.shape[1] - 2)
        fu, fv = u - i, v - j
        flat, at, row = field.ravel(), i * field.shape[1] + j, field.shape[1]
        m00, m10, m01, m11 = flat.take(at), flat.take(at + row), flat.take(at + 1), flat.take(at + row + 1)
        a, b = m10 - m00, m11 - m01
        value = m00 + a * fu + (m01 - m00 + (b - a) * fu) * fv
        gx = (a + (b - a) * fv) * (1.0 / res)
        gy = (m01 - m00 + (b - a) * fu) * (1.0 / res)
        return value, gx, gy


_FIELDS: weakref.WeakKeyDictionary[MapView, LikelihoodField] = weakref.WeakKeyDictionary()


def field_for(view: MapView, now_s: float) -> LikelihoodField | None:
    """The likelihood field of ``view``'s belief tiles, shared by every robot on that view; None with no tiles yet.

    New tile versions are taken at most every _REFRESH_S of ``now_s``, so a fleet's robots matching in one tick
    look at the view's tiles once between them."""
    field = _FIELDS.get(view)
    if field is not None and now_s - field.checked_s < _REFRESH_S:
        return field
    for (layer, x, y), body in list(view.tiles.items()):
        if layer != BELIEF:
            continue
        held = field.versions.get((x, y)) if field is not None else None
        if held is not None and held >= body["version"]:
            continue
        key, version, resolution, cells = decode_tile(body)
        if field is None:
            field = _FIELDS[view] = LikelihoodField(resolution, len(cells))
        field.update(key, version, cells)
    if field is not None:
        field.checked_s = now_s
    return field


def scan_points(ranges: np.ndarray, angle_min: float, angle_increment: float) -> np.ndarray:
    """The returns of a scan as (n, 2) points in the robot frame (no return, inf, is left out)."""
    ranges = np.asarray(ranges, dtype=np.float64)
    hit = np.isfinite(ranges)
    angles = angle_min + angle_increment * np.flatnonzero(hit)
    r = ranges[hit]
    return np.stack((r * np.cos(angles), r * np.sin(angles)), axis=1)


def match(field: LikelihoodField, points: np.ndarray, guess: tuple[float, float, float]) -> Match | NoMatch:
    """Register robot-frame ``points`` to ``field`` from the pose ``guess``: the best pose and its covariance.

    Besides the pose it fits one range bias shared by every return (the map's walls sit deeper than the scan
    sees them), and the pose's covariance is the one left once that bias is marginalized out."""
    if len(points) < MIN_HITS:
        return NoMatch("too_few_returns")
    state = np.array([*guess, 0.0])  # x, y, theta, range bias
    rays = points / np.linalg.norm(points, axis=1)[:, None]
    prior = np.diag((1e-2, 1e-2, 1e-1, 1.0 / (BIAS_PRIOR_M * BIAS_PRIOR_M)))  # damped: a flat direction stays
    for level, iterations in enumerate(ITERATIONS):
        for _ in range(iterations):
            info, gradient, _ = _linearize(field, level, points, rays, state)
            try:
                step = np.linalg.solve(info + prior, -gradient - prior[3, 3] * np.array((0.0, 0.0, 0.0, state[3])))
            except np.linalg.LinAlgError:
                return NoMatch("singular")
            step = np.clip(step, -_MAX_STEP, _MAX_STEP)
            state += step
            if abs(step[0]) + abs(step[1]) + abs(step[3]) < 1e-3 and abs(step[2]) < 1e-4:
                break
    info, _, value = _linearize(field, len(ITERATIONS) - 1, points, rays, state)
    hits = value >= HIT
    count = int(hits.sum())
    if count < MIN_HITS:
        return NoMatch("too_few_hits")
    if count < MIN_HIT_SHARE * len(points):
        return NoMatch("poor_fit")
    sigma = max(float(np.sqrt(np.mean((1.0 - value[hits]) ** 2))), SIGMA_FLOOR)
    covariance = _covariance(info * (EFFECTIVE_SHARE / (sigma * sigma)) + np.diag((0.0, 0.0, 0.0, prior[3, 3])))
    if covariance is None:
        return NoMatch("degenerate")
    x, y, theta, _ = state
    return Match((float(x), float(y), math.remainder(float(theta), 2 * math.pi)), covariance, count)


def _linearize(field: LikelihoodField, level: int, points: np.ndarray, rays: np.ndarray,
               state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton's information J^T J and gradient J^T r of the residuals 1 - field (Hector SLAM's) at ``state``
    (x, y, theta, range bias), and the field's values at the returns."""
    x, y, theta, bias = state
    c, s = math.cos(theta), math.sin(theta)
    px, py = points[:, 0] + bias * rays[:, 0], points[:, 1] + bias * rays[:, 1]
    value, gx, gy = field.sample(level, x + c * px - s * py, y + s * px + c * py)
    jac = -np.stack((gx, gy, gx * (-s * px - c * py) + gy * (c * px - s * py),
                     gx * (c * rays[:, 0] - s * rays[:, 1]) + gy * (s * rays[:, 0] + c * rays[:, 1])), axis=1)
    return jac.T @ jac, jac.T @ (1.0 - value), value


def _covariance(info: np.ndarray) -> np.ndarray | None:
    """The pose's 3x3 block of the inverse of the 4x4 information (pose and range bias), with directions it does
    not constrain given a huge variance; None when not even the best-known position direction is known to
    MAX_SIGMA_M."""
    values, vectors = np.linalg.eigh(info)
    if values.max() <= 0.0:
        return None
    variances = np.where(values > 1.0 / _UNCONSTRAINED_VAR, 1.0 / np.maximum(values, 1e-300), _UNCONSTRAINED_VAR)
    covariance = ((vectors * variances) @ vectors.T)[:3, :3]
    if np.linalg.eigvalsh(covariance[:2, :2])[0] > MAX_SIGMA_M * MAX_SIGMA_M:
        return None
    return covariance
