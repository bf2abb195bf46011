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
from collections.abc import Callable, Mapping
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
        free = _cells("observation_free", observation_free)
        hit = _cells("observation_hit", observation_hit)
        reputation = self._reputations.setdefault(did, _Reputation())
        around_hits = (hit[:, None, :] + _NEIGHBOURHOOD[None, :, :]).reshape(-1, 2)
        free = free[~np.isin(_keys(free), _keys(around_hits))]
        if len(free) + len(hit) == 0:
            return (0, 0)
        states = np.asarray(consensus_of(np.concatenate([free, around_hits])))
        if states.shape != (len(free) + len(around_hits),):
            raise ValueError(f"consensus_of returned shape {states.shape} for {len(free) + len(around_hits)} cells")
        near_hit = states[len(free):].reshape(len(hit), len(_NEIGHBOURHOOD))
        surface = (near_hit == OCCUPIED).any(axis=1)
        agreements = int(np.count_nonzero(surface))
        conflicts = int(np.count_nonzero((near_hit[:, 0] == FREE) & ~surface)
                        + np.count_nonzero(states[:len(free)] == OCCUPIED))
        if agreements + conflicts:
            scale = 1.0 / max(agreements + conflicts, self.full_scan_cells)
            reputation.agreements = self.forgetting * reputation.agreements + scale * agreements
            reputation.conflicts = self.forgetting * reputation.conflicts + scale * conflicts
            reputation.agreed_cells += agreements
            reputation.conflicting_cells += conflicts
        return (agreements, conflicts)

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


def _keys(cells: np.ndarray) -> np.ndarray:
    """One int64 per (ix, iy) cell, distinct for distinct cells within +-2**31, for set operations."""
    return cells[:, 0] * (1 << 32) + cells[:, 1]
