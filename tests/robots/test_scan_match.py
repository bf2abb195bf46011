"""The likelihood-field scan matcher on synthetic maps with known answers: a room, a corridor, a blank map."""

import math

import numpy as np
import pytest

from robots.scan_match import LikelihoodField, Match, NoMatch, field_for, match, scan_points
from spatial.tiles import encode_tile
from spatial.view import MapView

RES, SIZE = 0.2, 64  # the shared map's cells and tiles
Segment = tuple[float, float, float, float]
# Walls run through cell centres (x.1 m), so a wall's cells are centred on it and the answers are exact.
ROOM: list[Segment] = [(-5.9, -2.9, 8.1, -2.9), (8.1, -2.9, 8.1, 4.1), (8.1, 4.1, -5.9, 4.1), (-5.9, 4.1, -5.9, -2.9)]
CORRIDOR: list[Segment] = [(-30.0, -1.9, 30.0, -1.9), (-30.0, 2.1, 30.0, 2.1)]  # longer than the lidar reaches


def raster(walls: list[Segment]) -> dict[tuple[int, int], np.ndarray]:
    """Belief tiles ([ix, iy], 2 = occupied) with every cell a wall passes through occupied."""
    tiles: dict[tuple[int, int], np.ndarray] = {}
    for x0, y0, x1, y1 in walls:
        steps = int(math.hypot(x1 - x0, y1 - y0) / (RES / 4)) + 1
        for t in np.linspace(0.0, 1.0, steps):
            ix, iy = math.floor((x0 + t * (x1 - x0)) / RES), math.floor((y0 + t * (y1 - y0)) / RES)
            key = (ix // SIZE, iy // SIZE)
            tiles.setdefault(key, np.ones((SIZE, SIZE), dtype=np.uint8))[ix % SIZE, iy % SIZE] = 2
    return tiles


def field_of(walls: list[Segment]) -> LikelihoodField:
    field = LikelihoodField(RES, SIZE)
    for key, cells in raster(walls).items():
        field.update(key, 1, cells)
    return field


def scan(walls: list[Segment], pose: tuple[float, float, float], rays: int = 64, reach: float = 12.0,
         noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """Ranges from ``pose`` to the nearest wall along each beam (inf beyond ``reach``), with gaussian noise."""
    rng = np.random.default_rng(seed)
    x, y, theta = pose
    ranges = np.full(rays, np.inf)
    for k in range(rays):
        a = theta - math.pi + k * 2 * math.pi / rays
        dx, dy = math.cos(a), math.sin(a)
        for x0, y0, x1, y1 in walls:
            ex, ey = x1 - x0, y1 - y0
            den = dx * ey - dy * ex
            if abs(den) < 1e-12:
                continue
            t = ((x0 - x) * ey - (y0 - y) * ex) / den
            u = ((x0 - x) * dy - (y0 - y) * dx) / den
            if 0.0 <= u <= 1.0 and 0.0 < t < min(ranges[k], reach):
                ranges[k] = t
    return np.where(np.isfinite(ranges), ranges + rng.normal(0.0, noise, rays), np.inf)


def points(ranges: np.ndarray) -> np.ndarray:
    return scan_points(ranges, -math.pi, 2 * math.pi / len(ranges))


@pytest.mark.parametrize("offset", [(0.6, -0.5, 0.05), (-0.8, 0.7, -0.08), (0.3, 0.3, 0.1)])
def test_a_room_gives_the_pose_back_from_an_offset_guess(offset: tuple[float, float, float]) -> None:
    truth = (1.3, 0.4, 0.3)
    field = field_of(ROOM)
    guess = (truth[0] + offset[0], truth[1] + offset[1], truth[2] + offset[2])
    found = match(field, points(scan(ROOM, truth)), guess)
    assert isinstance(found, Match), found
    x, y, theta = found.pose
    assert math.hypot(x - truth[0], y - truth[1]) < 0.06 and abs(theta - truth[2]) < 0.01
    sigma = np.sqrt(np.diag(found.covariance))
    assert np.all(sigma[:2] < 0.1) and found.hits >= 50  # every wall constrains it: known well both ways


def test_a_corridor_constrains_across_it_and_says_it_does_not_know_along_it() -> None:
    truth = (0.0, 0.3, 0.05)
    field = field_of(CORRIDOR)
    found = match(field, points(scan(CORRIDOR, truth)), (0.7, -0.2, 0.0))
    assert isinstance(found, Match), found
    x, y, theta = found.pose
    assert abs(y - truth[1]) < 0.05 and abs(theta - truth[2]) < 0.01  # across and heading: right
    assert x == pytest.approx(0.7, abs=0.1)  # along: the guess stays, and the covariance says so
    sigma_along, sigma_across = math.sqrt(found.covariance[0, 0]), math.sqrt(found.covariance[1, 1])
    assert sigma_across < 0.1 and sigma_along > 10.0


def test_a_scan_of_walls_the_map_lacks_is_refused() -> None:
    field = field_of(ROOM)
    found = match(field, points(scan(ROOM, (0.0, 0.0, 0.0))), (40.0, 40.0, 0.0))  # guess far from any mapped wall
    assert isinstance(found, NoMatch) and found.reason == "too_few_hits"
    assert match(field, points(np.full(64, np.inf)), (0.0, 0.0, 0.0)) == NoMatch("too_few_returns")


def test_a_scan_mostly_of_things_the_map_lacks_is_refused_as_poor() -> None:
    field = field_of(ROOM)
    ranges = scan(ROOM, (1.3, 0.4, 0.0))
    ranges[:48] = 1.0  # a crowd around the robot hides three quarters of the room
    found = match(field, points(ranges), (1.3, 0.4, 0.0))
    assert isinstance(found, NoMatch) and found.reason == "poor_fit"


def test_the_field_is_one_on_a_thin_wall_and_falls_off_as_a_gaussian() -> None:
    field = field_of([(0.1, -20.0, 0.1, 20.0)])  # a wall along x = 0.1, in the cells [0, 0.2) wide
    xs = np.array([0.1, 0.3, 0.5, 3.0])
    value, gx, gy = field.sample(1, xs, np.zeros(4))
    expected = np.exp(-((xs - 0.1) ** 2) / (2 * 0.25**2))
    assert value == pytest.approx(expected, abs=0.02)
    assert gx[1] < 0.0 and gy[1] == pytest.approx(0.0, abs=1e-6) and value[3] == 0.0  # uphill towards the wall
    coarse, _, _ = field.sample(0, xs, np.zeros(4))
    assert coarse[2] > value[2]  # the coarse level reaches farther


def test_one_field_per_map_view_is_built_once_per_tile_version() -> None:
    view = MapView({}, [])
    assert field_for(view, 0.0) is None
    for key, cells in raster(ROOM).items():
        view.tiles[("belief", *key)] = encode_tile("belief", key, 1, RES, cells)
        view.tiles[("probability", *key)] = encode_tile("probability", key, 1, RES, cells)  # not used
    field = field_for(view, 1.0)
    assert field is not None and field.occupied_cells > 200
    assert field_for(view, 1.1) is field  # every robot of the view gets the same one
    key = next(iter(raster(ROOM)))
    view.tiles[("belief", *key)] = encode_tile("belief", key, 2, RES, np.ones((SIZE, SIZE), dtype=np.uint8))
    assert field_for(view, 1.2).versions[key] == 1  # looked at again only after a moment
    assert field_for(view, 2.0).versions[key] == 2 and field.occupied_cells < 200
