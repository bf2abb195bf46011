"""Who to believe: a weight per robot, from its beta reputation and the verification level of its data.

Each robot's reputation is a beta reputation (Jøsang & Ismail 2002): alpha =
agreements + prior, beta = conflicts + prior, expected value alpha / (alpha + beta).
Evidence comes from comparing each scan with the corroborated consensus of the
map, on the claims where occupancy is at stake:

- a hit agrees when the consensus says OCCUPIED at its cell or one of its 8
  neighbours (the same surface seen from elsewhere), and conflicts when the cell
  is believed FREE with no OCCUPIED neighbour (a fake obstacle);
- a free cell conflicts when the consensus says OCCUPIED there (an erased
  obstacle), unless it lies beside one of the scan's own hits, where a beam
  grazes a corner cell just before its return;
- free cells the consensus also calls FREE are not counted: they are the bulk of
  every scan and would drown the claims that matter; UNKNOWN cells count for nothing.

A scan adds at most one unit of evidence, split in its agreement/conflict
proportion, and less when it scores fewer than ``full_scan_cells`` cells, so no
single scan swings a reputation. Old evidence is discounted by ``forgetting``
each time new evidence arrives, so a robot's past fades and a reformed robot
slowly recovers. Its weight is the reputation's expected value times the weight
of its verification level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spatial.grid import FREE, OCCUPIED

DEFAULT_LEVELS: Mapping[str, float] = {"fleet": 1.0, "self": 0.6, "unverified": 0.0}
DEFAULT_LEVEL = "self"
_NEIGHBOURHOOD = np.array([(0, 0)] + [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy],
                          dtype=np.int64)  # a cell first, then its 8 neighbours


@dataclass(slots=True)
class _Reputation:
    """One robot's discounted evidence (agreements, conflicts) and its lifetime scored cells, for provenance."""

    agreements: float = 0.0
    conflicts: float = 0.0
    agreed_cells: int = 0
    conflicting_cells: int = 0

    def expected(self, prior: tuple[float, float]) -> float:
        """The beta reputation's expected value alpha / (alpha + beta), in (0, 1)."""
        alpha = self.agreements + prior[0]
        beta = self.conflicts + prior[1]
        return alpha / (alpha + beta)


class TrustLedger:
    """Reputations and verification levels of every robot that feeds the map; weights() is what the grid takes."""

    def __init__(
        self,
        prior: tuple[float, float] = (2.0, 2.0),
        forgetting: float = 0.99,
        levels: Mapping[str, float] = DEFAULT_LEVELS,
        *,
        full_scan_cells: int = 20,
    ) -> None:
        if len(prior) != 2 or not all(math.isfinite(p) and p > 0 for p in prior):
            raise ValueError(f"prior must be two positive numbers (alpha, beta), got {prior!r}")
        if not 0.0 < forgetting <= 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        if not all(math.isfinite(w) and w >= 0 for w in levels.values()):
            raise ValueError(f"level weights must be finite and not negative, got {dict(levels)!r}")
        if DEFAULT_LEVEL not in levels:
            raise ValueError(f"levels must define {DEFAULT_LEVEL!r}, the level of a DID nobody vouched for")
        if full_scan_cells < 1:
            raise ValueError(f"full_scan_cells must be at least 1, got {full_scan_cells}")
        self.prior = (float(prior[0]), float(prior[1]))
        self.forgetting = forgetting
        self.levels = dict(levels)
        self.full_scan_cells = full_scan_cells
        self._reputations: dict[str, _Reputation] = {}
        self._levels: dict[str, str] = {}

    def level_of(self, did: str) -> str:
        """The verification level of ``did``'s data; "self" for a DID whose level was never set."""
        return self._levels.get(did, DEFAULT_LEVEL)

    def set_level(self, did: str, level: str) -> None:
        """Record how well ``did``'s data is vouched for (e.g. "fleet" when the fleet operator controls its DID)."""
        if level not in self.levels:
            raise ValueError(f"unknown verification level {level!r}; expected one of {sorted(self.levels)}")
        self._levels[did] = level
        self._reputations.setdefault(did, _Reputation())

    def score(
        self,
        did: str,
        observation_free: np.ndarray,
        observation_hit: np.ndarray,
        consensus_of: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[int, int]:
        """Score one scan's free and hit cells against the consensus and update ``did``'s reputation.

        ``consensus_of`` maps (n, 2) int64 cells to their corroborated int8 states; it
        must leave out this robot's own evidence, or the robot would vouch for itself:
        e.g. ``lambda c: grid.consensus_at(c, {**ledger.weights(), did: 0.0}, t_s)``.
        Returns the scored (agreements, conflicts), counted as the module docstring says.
        """
        return self.score_many([(did, observation_free, observation_hit)],
                               lambda scan, cells, occupied_only: consensus_of(cells))[0]

    def score_many(
        self,
        scans: Sequence[tuple[str, np.ndarray, np.ndarray]],
        consensus_of: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    ) -> list[tuple[int, int]]:
        """``score`` each (did, free cells, hit cells) scan, in order, against one consensus asked once for all.

        ``consensus_of(scan, cells, occupied_only)`` maps (n, 2) int64 cells, cell i asked for the scan
        at index ``scan[i]`` of ``scans``, to their corroborated int8 states, leaving out that scan's
        robot's own evidence (e.g. ``OccupancyGrid.consensus_without``). Where ``occupied_only`` is
        set only OCCUPIED counts, so it may answer UNKNOWN for FREE there. A robot's reputation moves
        as if its scans were scored one by one against that consensus. Returns (agreements, conflicts)
        per scan.
        """
        free_cells = [_cells("observation_free", free) for _, free, _ in scans]
        hit_cells = [_cells("observation_hit", hit) for _, _, hit in scans]
        reputations = [self._reputations.setdefault(did, _Reputation()) for did, _, _ in scans]
        numbers = np.arange(len(scans))
        free = np.concatenate([np.empty((0, 2), np.int64), *free_cells])
        hit = np.concatenate([np.empty((0, 2), np.int64), *hit_cells])
        free_scan = np.repeat(numbers, [len(cells) for cells in free_cells])
        hit_scan = np.repeat(numbers, [len(cells) for cells in hit_cells])
        around_hits = (hit[:, None, :] + _NEIGHBOURHOOD[None, :, :]).reshape(-1, 2)
        around_scan = np.repeat(hit_scan, len(_NEIGHBOURHOOD))
        asked = len(free) + len(around_hits)
        if not asked:
            return [(0, 0)] * len(scans)
        occupied_only = np.ones(asked, dtype=np.bool_)  # free cells and a hit's neighbours: only OCCUPIED counts
        occupied_only[len(free)::len(_NEIGHBOURHOOD)] = False  # a hit's own cell: FREE there is a conflict
        states = np.asarray(consensus_of(np.concatenate([free_scan, around_scan]),
                                         np.concatenate([free, around_hits]), occupied_only))
        if states.shape != (asked,):
            raise ValueError(f"consensus_of returned shape {states.shape} for {asked} cells")
        near_hit = states[len(free):].reshape(len(hit), len(_NEIGHBOURHOOD))
        surface = (near_hit == OCCUPIED).any(axis=1)
        agreed = np.bincount(hit_scan[surface], minlength=len(scans)).tolist()
        # An erased obstacle: a free cell the consensus holds OCCUPIED, unless it lies beside one of its own
        # scan's hits (few free cells are OCCUPIED, so only those are looked up among the hits' neighbours).
        erased = np.flatnonzero(states[:len(free)] == OCCUPIED)
        if len(erased) and len(hit):
            erased = erased[~_beside(free_scan[erased], free[erased], around_scan, around_hits, len(scans))]
        conflicting = (np.bincount(hit_scan[(near_hit[:, 0] == FREE) & ~surface], minlength=len(scans))
                       + np.bincount(free_scan[erased], minlength=len(scans))).tolist()
        for reputation, agreements, conflicts in zip(reputations, agreed, conflicting, strict=True):
            if agreements + conflicts:
                scale = 1.0 / max(agreements + conflicts, self.full_scan_cells)
                reputation.agreements = self.forgetting * reputation.agreements + scale * agreements
                reputation.conflicts = self.forgetting * reputation.conflicts + scale * conflicts
                reputation.agreed_cells += agreements
                reputation.conflicting_cells += conflicts
        return list(zip(agreed, conflicting, strict=True))

    def reputation(self, did: str) -> float:
        """``did``'s beta reputation expected value; the prior's mean for a robot never scored."""
        return self._reputations.get(did, _Reputation()).expected(self.prior)

    def weight(self, did: str) -> float:
        """How much ``did``'s observations count in the map: reputation times its verification level's weight."""
        return self.reputation(did) * self.levels[self.level_of(did)]

    def weights(self) -> dict[str, float]:
        """A snapshot of weight() for every DID scored or given a level: the ``trust`` mapping the grid takes."""
        return {did: self.weight(did) for did in sorted(self._reputations)}

    def report(self) -> list[dict[str, Any]]:
        """Per DID, in DID order: level, lifetime agreeing and conflicting scored cells, reputation and weight."""
        return [
            {
                "did": did,
                "level": self.level_of(did),
                "agreements": rep.agreed_cells,
                "conflicts": rep.conflicting_cells,
                "reputation": rep.expected(self.prior),
                "weight": self.weight(did),
            }
            for did, rep in sorted(self._reputations.items())
        ]


def _cells(name: str, cells: np.ndarray) -> np.ndarray:
    """``cells`` as an (n, 2) int64 array; an empty array of any shape is accepted as no cells."""
    array = np.asarray(cells)
    if array.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be an (n, 2) array of cells, got shape {array.shape}")
    return array.astype(np.int64, copy=False)


def _beside(free_scan: np.ndarray, free: np.ndarray, around_scan: np.ndarray, around: np.ndarray,
            scans: int) -> np.ndarray:
    """Which free cells equal a cell around a hit of their own scan (``around_scan`` ascending), without sorting:
    each scan's cells around its hits are marked in a bitmap of their bounding box."""
    with_hits = np.flatnonzero(np.bincount(around_scan, minlength=scans))
    starts = np.searchsorted(around_scan, with_hits)
    low_x, low_y = np.minimum.reduceat(around[:, 0], starts), np.minimum.reduceat(around[:, 1], starts)
    side_x = np.maximum.reduceat(around[:, 0], starts) - low_x + 1
    side_y = np.maximum.reduceat(around[:, 1], starts) - low_y + 1
    sizes = side_x * side_y
    if int(sizes.sum()) > 1 << 26:  # cells spread absurdly far: compare scan by scan
        beside = np.zeros(len(free), dtype=np.bool_)
        for scan in with_hits.tolist():
            mine = free_scan == scan
            beside[mine] = np.isin(_keys(free[mine]), _keys(around[around_scan == scan]))
        return beside
    box = np.full(scans, -1)
    box[with_hits] = np.arange(len(with_hits))
    offset = np.cumsum(sizes) - sizes
    marked = np.zeros(int(sizes.sum()), dtype=np.bool_)
    b = box[around_scan]
    marked[offset[b] + (around[:, 0] - low_x[b]) * side_y[b] + (around[:, 1] - low_y[b])] = True
    b = box[free_scan]
    x, y = free[:, 0] - low_x[b], free[:, 1] - low_y[b]
    inside = (b >= 0) & (x >= 0) & (x < side_x[b]) & (y >= 0) & (y < side_y[b])
    beside = np.zeros(len(free), dtype=np.bool_)
    beside[inside] = marked[(offset[b] + x * side_y[b] + y)[inside]]
    return beside


def _keys(cells: np.ndarray) -> np.ndarray:
    """One int64 per (ix, iy) cell, distinct for distinct cells within +-2**31, for set operations."""
    return cells[:, 0] * (1 << 32) + cells[:, 1]
