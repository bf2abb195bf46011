"""Peer-witnessed location: do other robots' lidar returns show a robot where a robot says it stands?

Pure functions over one batch of scans at a time (numpy, no per-beam Python loops). A robot's
claimed pose is judged from each peer scan that looks at it:

- SEEN: the peer has a return within ``body_radius_m + pose_margin_m`` of the claimed centre on a
  *robot-shaped* segment: consecutive returns with no depth jump between them, no wider than a
  robot (``2 * body_radius_m + width_slack_m``), standing out in front of what lies on both sides
  of it (the neighbouring beams return further by more than ``depth_jump_m``, or not at all). The
  return must not lie on a corroborated map obstacle (a post is not a robot), and it is credited to
  the claim nearest to it only, so one body cannot vouch for two robots.
- UNSEEN: not seen, the peer was close enough that its beams cannot miss a robot-sized body, and
  every beam that would cross the claimed body passed beyond its centre, returned nothing, or ended
  inside the body on a *surface*: a flat stretch (within ``flat_m`` of the line between its end
  returns) of a segment wider than any robot, such as a wall or barrier through where the robot
  claims to stand. A beam that ends in front of the body, or on a short segment that is no robot
  (a robot half hidden by another), leaves the claim unjudged.
- IMPOSSIBLE (judged in ``spatial.service``): the claimed centre lies in a cell the map believes
  OCCUPIED on corroborated evidence of other robots.

The segment test is also what keeps a liar from hiding an obstacle by claiming to stand on it: only
returns on robot-shaped segments are ever dropped as a teammate, so a surface that continues through
a claimed footprint stays in the map. Segmenting a scan at range discontinuities follows the usual
2D-lidar clustering (Premebida and Nunes, "Segmentation and geometric primitives extraction from 2D
laser range data for mobile robot applications", 2005).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

NONE, SEEN, UNSEEN = 0, 1, 2  # a peer scan's verdict on one claim


@dataclass(frozen=True, slots=True)
class WitnessSpec:
    """The body witnessed and the margins it is judged with (chosen by measurement: docs/map.md#witnessed-location)."""

    body_radius_m: float = 0.35  # the simulated couriers' radius (sim.world.RobotSpec); the bridge declares 0.35 too
    pose_margin_m: float = 0.45  # how far a claimed centre may be from the body the peer saw (both robots' errors)
    depth_jump_m: float = 0.25  # a body stands this much in front of what its neighbouring beams return from
    width_slack_m: float = 0.3  # a segment wider than a body's diameter plus this is a surface, not a robot
    flat_m: float = 0.1  # a return this close to its segment's end-to-end line lies on a surface, not a bulge
    coverage: float = 0.8  # UNSEEN needs beams spaced at most coverage * body diameter across the claim
    witness_range_m: float = 5.0  # claims further than this from a peer's scan are not judged by it


@dataclass(frozen=True, slots=True)
class Beams:
    """A batch of scans' beams, flattened: per beam its scan, range (inf: no return) and end point; per scan
    its origin, first beam and beam count, first beam's angle, increment and whether the beams close a circle."""

    scan: np.ndarray
    ranges: np.ndarray
    end_x: np.ndarray
    end_y: np.ndarray
    origin: np.ndarray  # (scans, 2)
    first: np.ndarray
    count: np.ndarray
    start: np.ndarray  # world angle of each scan's beam 0
    increment: np.ndarray
    cyclic: np.ndarray

    @classmethod
    def of(cls, origin: np.ndarray, start: np.ndarray, increment: np.ndarray, count: np.ndarray,
           ranges: np.ndarray) -> Beams:
        """Beams of scans from (scans, 2) origins, world angles of beam 0, increments and beam counts; ``ranges``
        flat, inf or nan where a beam had no return (nan reads as no return)."""
        count = np.asarray(count, dtype=np.int64)
        first = np.cumsum(count) - count
        scan = np.repeat(np.arange(len(count)), count)
        beam = np.arange(len(scan)) - first[scan]
        ranges = np.where(np.asarray(ranges, dtype=np.float64) >= 0.0, ranges, math.inf)  # nan, dropped: none
        angle = start[scan] + beam * increment[scan]
        with np.errstate(invalid="ignore"):
            end_x = origin[scan, 0] + ranges * np.cos(angle)
            end_y = origin[scan, 1] + ranges * np.sin(angle)
        cyclic = np.abs(count * increment - 2 * math.pi) < increment / 2
        return cls(scan, ranges, end_x, end_y, np.asarray(origin, dtype=np.float64), first, count,
                   np.asarray(start, dtype=np.float64), np.asarray(increment, dtype=np.float64), cyclic)


class Shapes(NamedTuple):
    """Per beam of a batch: its return lies on a robot-shaped segment (``robot``), or on a flat stretch of a
    segment wider than any robot (``surface``: within flat_m of the line between the segment's end returns).
    A short segment that is not robot-shaped (a robot partly hidden by another, a wall seen edge-on in
    separate returns) is neither: it proves nothing either way."""

    robot: np.ndarray
    surface: np.ndarray


def shapes(beams: Beams, spec: WitnessSpec) -> Shapes:
    """Which returns are robot-shaped and which lie on a surface, per beam (see the module docstring)."""
    n = len(beams.ranges)
    if not n:
        return Shapes(np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
    r = beams.ranges
    returned = np.isfinite(r)
    index = np.arange(n)
    last = beams.first + beams.count - 1
    scan = beams.scan
    nxt = index + 1
    at_last = np.zeros(n, dtype=bool)  # set where a scan's last and first beams are (scans without beams have none)
    at_last[last[beams.count > 0]] = True
    at_first = np.zeros(n, dtype=bool)
    at_first[beams.first[beams.count > 0]] = True
    nxt[at_last] = np.where(beams.cyclic[scan[at_last]], beams.first[scan[at_last]], -1)
    prv = index - 1
    prv[at_first] = np.where(beams.cyclic[scan[at_first]], last[scan[at_first]], -1)
    has_next = nxt >= 0
    link = np.zeros(n, dtype=bool)  # beam i and the next one see one surface
    j = nxt[has_next]
    with np.errstate(invalid="ignore"):
        link[has_next] = returned[has_next] & returned[j] & (np.abs(r[has_next] - r[j]) <= spec.depth_jump_m)
    linked_from_prev = np.zeros(n, dtype=bool)
    has_prev = prv >= 0
    linked_from_prev[has_prev] = link[prv[has_prev]]
    begins = returned & ~linked_from_prev  # a segment's first beam
    ends = returned & ~link  # ... and its last
    # Label segments in beam order, a new label at every segment's first beam and at every scan's beam 0; the
    # beams of a closed circle before its first segment begins continue the scan's last segment.
    bump = begins | at_first
    label = np.cumsum(bump) - 1
    opening = label[beams.first]  # each scan's label at beam 0
    closing = label[last]
    carried = beams.cyclic[scan] & ~begins[beams.first][scan] & (label == opening[scan]) & returned
    wraps = carried & (closing[scan] != opening[scan])
    label[wraps] = closing[scan[wraps]]
    labels = int(label.max()) + 1
    # Standing out: the beam before the segment's first and after its last return further, or not at all; and
    # narrow: its first and last returns no further apart than a robot is wide.
    b = np.flatnonzero(begins)
    e = np.flatnonzero(ends)
    clear = np.zeros(labels, dtype=bool)
    before = np.zeros(labels, dtype=bool)
    after = np.zeros(labels, dtype=bool)
    first_x, first_y = np.zeros(labels), np.zeros(labels)
    last_x, last_y = np.zeros(labels), np.zeros(labels)
    before[label[b]] = _stands_out(r, b, prv[b], spec.depth_jump_m)
    after[label[e]] = _stands_out(r, e, nxt[e], spec.depth_jump_m)
    clear[label[b]] = True  # a closed ring with no first beam (all one surface) is no robot
    first_x[label[b]], first_y[label[b]] = beams.end_x[b], beams.end_y[b]
    last_x[label[e]], last_y[label[e]] = beams.end_x[e], beams.end_y[e]
    width = np.hypot(last_x - first_x, last_y - first_y)
    wide = width > 2 * spec.body_radius_m + spec.width_slack_m
    shaped = ~wide & clear & before & after
    robot = np.zeros(n, dtype=bool)
    robot[returned] = shaped[label[returned]]
    # A surface: how far each return lies off its segment's end-to-end line (a robot in front of a wall it
    # merges with bulges out of that line; a wall or barrier does not).
    at = label[returned]
    along_x, along_y = last_x[at] - first_x[at], last_y[at] - first_y[at]
    off = np.abs((beams.end_x[returned] - first_x[at]) * along_y - (beams.end_y[returned] - first_y[at]) * along_x)
    surface = np.zeros(n, dtype=bool)
    surface[returned] = wide[at] & (off <= spec.flat_m * width[at])
    return Shapes(robot, surface)


def _stands_out(r: np.ndarray, edge: np.ndarray, neighbour: np.ndarray, jump: float) -> np.ndarray:
    """Whether each edge return stands in front of its neighbouring beam (none, no return, or further by > jump)."""
    out = neighbour < 0
    there = ~out
    out[there] = ~(r[neighbour[there]] <= r[edge[there]] + jump)  # inf or nan: no return there
    return out


def judge(beams: Beams, shape: Shapes, pair_scan: np.ndarray, claim_x: np.ndarray, claim_y: np.ndarray,
          pair_claim: np.ndarray, spec: WitnessSpec,
          static_at: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Each (peer scan, claimed centre) pair's verdict: SEEN, UNSEEN or NONE (int8), as the module docstring says.

    ``pair_claim`` numbers the claim (robot) of each pair, so a robot-shaped return is credited only to the
    claim nearest it among the pairs of its scan; ``static_at(xs, ys)`` says which return points lie on a
    corroborated map obstacle, which are no robot (asked only about the few robot-shaped returns near claims).
    """
    pairs = len(pair_scan)
    verdict = np.zeros(pairs, dtype=np.int8)
    if not pairs:
        return verdict
    radius, margin = spec.body_radius_m, spec.pose_margin_m
    reach = radius + margin
    ox, oy = beams.origin[pair_scan, 0], beams.origin[pair_scan, 1]
    dx, dy = claim_x - ox, claim_y - oy
    distance = np.hypot(dx, dy)
    increment = beams.increment[pair_scan]
    count = beams.count[pair_scan]
    judged = (distance > reach) & (distance <= spec.witness_range_m)
    # The beams of each pair's scan that pass within ``reach`` of the claimed centre: a window of beam numbers.
    half = np.arcsin(np.clip(reach / np.maximum(distance, 1e-9), 0.0, 1.0))
    bearing = np.mod(np.arctan2(dy, dx) - beams.start[pair_scan], 2 * math.pi)
    low = np.ceil((bearing - half) / increment).astype(np.int64)
    high = np.floor((bearing + half) / increment).astype(np.int64)
    width = np.where(judged, np.minimum(high - low + 1, count), 0)
    pair = np.repeat(np.arange(pairs), width)
    step = np.arange(len(pair)) - np.repeat(np.cumsum(width) - width, width)
    number = low[pair] + step
    inside = beams.cyclic[pair_scan][pair] | ((number >= 0) & (number < count[pair]))
    pair, number = pair[inside], number[inside]
    scan = pair_scan[pair]
    beam = beams.first[scan] + np.mod(number, count[pair])
    angle = beams.start[scan] + number * increment[pair]
    along = dx[pair] * np.cos(angle) + dy[pair] * np.sin(angle)  # how far along the beam the claimed centre is
    across = np.abs(dx[pair] * np.sin(angle) - dy[pair] * np.cos(angle))  # ... and how far beside it
    r = beams.ranges[beam]
    gap = np.hypot(beams.end_x[beam] - claim_x[pair], beams.end_y[beam] - claim_y[pair])
    # SEEN: a robot-shaped return near the claim, not on the map's obstacles, nearer this claim than any other.
    body = shape.robot[beam] & (gap <= reach)
    candidates = np.flatnonzero(body)
    if len(candidates) and static_at is not None:
        candidates = candidates[~static_at(beams.end_x[beam[candidates]], beams.end_y[beam[candidates]])]
    if len(candidates):
        ranked = candidates[np.lexsort((gap[candidates], beam[candidates]))]  # per beam, nearest claim first
        leads = np.ones(len(ranked), dtype=bool)
        leads[1:] = beam[ranked][1:] != beam[ranked][:-1]
        nearest = pair_claim[pair[ranked[leads]]][np.cumsum(leads) - 1]
        credited = ranked[pair_claim[pair[ranked]] == nearest]  # that robot's pairs only
        verdict[pair[credited]] = SEEN
    # UNSEEN: beams close enough together, and every beam through the claimed body saw no robot in it.
    chord = np.sqrt(np.maximum(radius * radius - across * across, 0.0))
    crossing = across < radius
    through = r > along  # passed the claimed centre, or returned nothing
    surface = shape.surface[beam] & (r >= along - chord)  # ended inside the claimed body on a flat surface
    blocked = crossing & ~(through | surface)
    crossings = np.bincount(pair[crossing], minlength=pairs)
    covered = judged & (distance * increment <= spec.coverage * 2 * radius) & (crossings >= 1)
    unseen = covered & (np.bincount(pair[blocked], minlength=pairs) == 0) & (verdict != SEEN)
    verdict[unseen] = UNSEEN
    return verdict
