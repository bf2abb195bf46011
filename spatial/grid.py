"""The shared occupancy grid: every robot's own log-odds layer per tile, fused by trust into corroborated beliefs.

Each contributor (DID) keeps its own clamped log-odds layer in every tile it has seen, so provenance
and trust stay per robot; a belief fuses the layers of a tile weighted by trust, and a cell is believed
occupied or free only when independent robots, or one highly trusted robot, agree (issue #5).

Storage: layers are int16 rows of ``tile_cells**2`` in one pool. Evidence fades toward unknown by
exp(-dt / fade_s); the fade is kept lazily as one factor per contributor (its stored values are exact
at its reference time), so a scan writes only the cells it saw, and a contributor's rows are
rescaled only when its factor falls below one half. ``integrate_many`` traverses and writes up to
16 scans of distinct DIDs in one set of numpy calls; a single ``integrate`` pays numpy's per-call
cost alone, so a service with a backlog should hand it over in one ``integrate_many``.

Trust scoring asks, for many scans at once, what everyone but each scan's own robot believes at the
cells it saw: ``consensus_without`` answers at those cells only, and skips the ones no layer was ever
hit in (a bitmap per tile), since only there can a belief be OCCUPIED.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from spatial.raycast import ScanGeometry, traverse

UNKNOWN, FREE, OCCUPIED = 0, -1, 1  # the int8 states of a believed cell
DEFAULT_WEIGHT = 0.5  # trust weight of a DID the trust mapping does not list
CORROBORATING_WEIGHT = 0.2  # a contributor counts toward the k independent ones only above this weight
_RENORMALIZE_BELOW = 0.5  # a contributor's rows are rescaled once its lazy fade factor falls below this
_QUANTA = 32000  # int16 units for the largest stored magnitude, max(|l_min|, l_max) / _RENORMALIZE_BELOW
_FIRST_ROWS = 64
_TRUSTED = (1 << 16) - 1  # a corroboration level (uint16) above any k: one trusted contributor says so
_BATCH = 16  # scans traversed together: enough to spread numpy's per-call cost, few enough to stay in cache

TileKey = tuple[int, int]


@dataclass(frozen=True)
class GridSpec:
    """Resolution, tiling, OctoMap's clamped log-odds update, fading, and how much agreement makes a belief."""

    resolution_m: float = 0.2
    tile_cells: int = 64
    l_hit: float = 0.85  # OctoMap defaults: hit probability 0.7, miss 0.4, clamped to [0.12, 0.97]
    l_miss: float = -0.4
    l_min: float = -2.0
    l_max: float = 3.5
    occupied_l: float = 0.85  # fused, and a contributor's own, log-odds at which a cell counts as occupied
    free_l: float = -0.4  # ... and as free
    fade_s: float = 120.0  # evidence decays toward unknown with this time constant unless refreshed
    corroboration_k: int = 2  # independent contributors needed for a belief ...
    trusted_weight: float = 0.95  # ... or one contributor at least this trusted
    near_cells: int = 2  # a contributor corroborates an occupied cell with its own hit this many cells away

    def __post_init__(self) -> None:
        if not (self.resolution_m > 0 and self.fade_s > 0 and self.corroboration_k >= 1):
            raise ValueError("resolution_m and fade_s must be positive and corroboration_k at least 1")
        if self.tile_cells < 1 or self.tile_cells & (self.tile_cells - 1):
            raise ValueError(f"tile_cells must be a power of two, not {self.tile_cells}")
        if not self.l_min < self.free_l < 0 < self.occupied_l < self.l_max:
            raise ValueError("need l_min < free_l < 0 < occupied_l < l_max")
        if not self.l_miss < 0 < self.l_hit:
            raise ValueError("need l_miss < 0 < l_hit")


@dataclass(frozen=True, eq=False)
class Scan:
    """One verified lidar scan of one robot, as the map takes it: ranges (m) at angle_min + k * angle_increment."""

    did: str
    pose: tuple[float, float, float]  # x (m), y (m), theta (rad) of the sensor in the world
    angle_min: float
    angle_increment: float
    range_max: float
    ranges: np.ndarray
    t_s: float


@dataclass(frozen=True, eq=False)
class Observation:
    """What one scan said, as integrated: the DID, its time, and its free and hit (ix, iy) cells (int64, (n, 2))."""

    did: str
    t_s: float
    free: np.ndarray
    hit: np.ndarray


@dataclass(frozen=True, eq=False)
class FusedTile:
    """A tile's fused belief: log-odds (float32) and states (int8), both indexed [ix_local, iy_local].

    ``contributors`` is the tile's provenance, as ``OccupancyGrid.contributions``; ``version`` the tile
    version it was fused from. The arrays are read-only (they are cached).
    """

    key: TileKey
    log_odds: np.ndarray
    state: np.ndarray
    contributors: dict[str, float]
    version: int


@dataclass
class _Contributor:
    """One DID's layers (pool row per tile) and the times its lazy fade is measured from."""

    t_ref: float  # its stored values are exact at this time and fade by exp(-(t - t_ref) / fade_s) ...
    t_last: float  # ... for t from its last write on: fading never runs back
    rows: dict[TileKey, int] = field(default_factory=dict)


class _Pool:
    """Int16 rows, one per (DID, tile) layer, handed out and taken back; grows by doubling."""

    def __init__(self, width: int, dtype: type = np.int16) -> None:
        self.values = np.zeros((_FIRST_ROWS, width), dtype=dtype)
        self.contributed = np.zeros(_FIRST_ROWS)  # per row: total |log-odds change| written into it
        self._spare: list[int] = []
        self._used = 0

    def take(self) -> int:
        """A zeroed row."""
        if self._spare:
            row = self._spare.pop()
            self.values[row] = 0
            self.contributed[row] = 0.0
            return row
        if self._used == len(self.values):
            self.values = np.concatenate((self.values, np.zeros_like(self.values)))
            self.contributed = np.concatenate((self.contributed, np.zeros_like(self.contributed)))
        self._used += 1
        return self._used - 1

    def give_back(self, rows: Iterable[int]) -> None:
        """Rows no longer in use."""
        self._spare.extend(rows)


class OccupancyGrid:
    """The fleet's shared map: per-DID log-odds layers in square tiles, fused on read by trust and corroboration.

    Cells are (ix, iy) = floor(world / resolution_m); tile keys are floor(cell / tile_cells), so
    negative coordinates work as positive ones do (cell -1 is local 63 of tile -1 with 64-cell tiles).
    Not thread-safe: one owner (the map service) calls it.
    """

    def __init__(self, spec: GridSpec = GridSpec()) -> None:
        self.spec = spec
        self._area = spec.tile_cells * spec.tile_cells
        self._shift = spec.tile_cells.bit_length() - 1  # cell >> shift = tile, cell & (tile_cells - 1) = local
        self._step = max(-spec.l_min, spec.l_max) / _RENORMALIZE_BELOW / _QUANTA  # log-odds per stored unit
        self._pool = _Pool(self._area)
        self._contributors: dict[str, _Contributor] = {}
        self._tiles: dict[TileKey, dict[str, int]] = {}  # tile -> DID -> pool row
        self._versions: dict[TileKey, int] = {}
        self._cache: dict[tuple[TileKey, int], tuple[tuple[object, ...], FusedTile]] = {}
        self._tallies: dict[TileKey, tuple[tuple[object, ...], np.ndarray, np.ndarray, np.ndarray]] = {}
        # Per tile, the cells some layer was ever hit in: only there can a belief be OCCUPIED (a cheap filter).
        self._marks = _Pool(self._area, np.bool_)
        self._mark_rows: dict[TileKey, int] = {}

    def integrate(
        self,
        did: str,
        pose: tuple[float, float, float],
        angle_min: float,
        angle_increment: float,
        range_max: float,
        ranges: np.ndarray,
        t_s: float,
    ) -> Observation:
        """Add one verified scan to ``did``'s own layers (faded to t_s, then clamped) and return what it saw.

        A scan older than the DID's last one is applied as of that one: fading never runs back.
        """
        return self.integrate_many([Scan(did, pose, angle_min, angle_increment, range_max, ranges, t_s)])[0]

    def integrate_many(self, scans: Sequence[Scan]) -> list[Observation]:
        """``integrate`` each scan, in order, vectorized over many scans at once: the fast way to fuse a backlog."""
        observations: list[Observation] = []
        start = 0
        while start < len(scans):
            dids = set()
            stop = start
            while stop < len(scans) and stop - start < _BATCH and scans[stop].did not in dids:
                dids.add(scans[stop].did)  # a DID's scans apply one after the other
                stop += 1
            observations += self._integrate_batch(scans[start:stop])
            start = stop
        return observations

    def _integrate_batch(self, scans: Sequence[Scan]) -> list[Observation]:
        """Integrate scans of distinct DIDs together; their layers never overlap, so one scatter writes all."""
        seen = traverse([ScanGeometry(*scan.pose, scan.angle_min, scan.angle_increment, scan.range_max,
                                      scan.ranges) for scan in scans], self.spec.resolution_m)
        free_at, hit_at = seen.bounds(seen.free), seen.bounds(seen.hit)
        first_hit = len(seen.free)
        counts = np.diff(free_at + [hit + first_hit for hit in hit_at])  # free per scan, 0, hit per scan
        keys = np.concatenate((seen.free, seen.hit))  # every scan's free keys, then every scan's hit keys
        # Per scan: its box corner (cells) and the number of its box's first tile, spread over its cells.
        size = self.spec.tile_cells
        span = (seen.side - 2) // size + 2  # tiles a box can span along an axis
        corner_tiles = seen.corners >> self._shift
        first_tile = np.arange(len(scans)) * (span * span) - corner_tiles[0] * span - corner_tiles[1]
        per_scan = np.concatenate((seen.corners, first_tile[None]))
        per_cell = np.repeat(np.concatenate((per_scan, np.zeros((3, 1), np.int64), per_scan), axis=1), counts, axis=1)
        cells = per_cell[:2]
        shift = seen.side.bit_length() - 1
        cells[0] += (keys >> shift) & (seen.side - 1)
        cells[1] += keys & (seen.side - 1)
        observations = [
            Observation(scan.did, scan.t_s, cells[:, free_at[index]:free_at[index + 1]].T,
                        cells[:, first_hit + hit_at[index]:first_hit + hit_at[index + 1]].T)
            for index, scan in enumerate(scans)]
        if len(keys):
            tile_of = (cells[0] >> self._shift) * span
            tile_of += cells[1] >> self._shift
            tile_of += per_cell[2]
            local = cells & (size - 1)
            flat = local[0] << self._shift
            flat |= local[1]
            fades = [self._writable(scan.did, scan.t_s) for scan in scans]
            scale = np.repeat(np.array(fades + [0.0] + fades, dtype=np.float32) * np.float32(self._step), counts)
            rows, base, present, marks = self._rows(scans, corner_tiles.T.tolist(), span, tile_of)
            self._marks.values.reshape(-1)[marks[tile_of[first_hit:]] + flat[first_hit:]] = True
            flat += base[tile_of]
            self._add(flat, scale, first_hit, tile_of, rows, present)
        return observations

    def _rows(self, scans: Sequence[Scan], corners: list[list[int]], span: int, tile_of: np.ndarray
              ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """The pool rows of the (scan, tile) pairs that have cells, made where new, and their versions bumped.

        Returns the rows, the first pool index of each (scan, tile) number, the numbers present, and the
        first index of each number's tile in the hit marks.
        """
        count = len(scans) * span * span
        present = np.zeros(count, dtype=np.bool_)
        present[tile_of] = True
        present = present.nonzero()[0]
        base = np.zeros(count, dtype=np.int64)
        marks = np.zeros(count, dtype=np.int64)
        rows = []
        for index in present.tolist():
            scan, place = divmod(index, span * span)
            corner = corners[scan]
            key = (corner[0] + place // span, corner[1] + place % span)
            did = scans[scan].did
            layers = self._contributors[did].rows
            row = layers.get(key)
            if row is None:
                row = layers[key] = self._pool.take()
                self._tiles.setdefault(key, {})[did] = row
            mark = self._mark_rows.get(key)
            if mark is None:
                mark = self._mark_rows[key] = self._marks.take()
            self._versions[key] = self._versions.get(key, 0) + 1
            base[index] = row * self._area
            marks[index] = mark * self._area
            rows.append(row)
        return rows, base, present, marks

    def _add(self, flat: np.ndarray, scale: np.ndarray, first_hit: int, tile_of: np.ndarray, rows: list[int],
             present: np.ndarray) -> None:
        """OctoMap's clamped update at pool indices ``flat`` (misses before ``first_hit``, hits from it on).

        ``scale`` is each cell's log-odds per stored unit now; the |change| is added to its row's provenance.
        """
        values = self._pool.values.reshape(-1)
        stored = values[flat]
        new = stored * scale  # log-odds now ...
        new[:first_hit] += self.spec.l_miss
        new[first_hit:] += self.spec.l_hit
        np.maximum(new, self.spec.l_min, out=new)
        np.minimum(new, self.spec.l_max, out=new)
        new /= scale
        np.rint(new, out=new)  # ... and back in stored units
        values[flat] = new.astype(np.int16)
        new -= stored
        np.abs(new, out=new)
        new *= scale  # |log-odds change| as stored
        self._pool.contributed[rows] += np.bincount(tile_of, weights=new)[present]

    def _writable(self, did: str, t_s: float) -> float:
        """did's fade factor as of this write (made a contributor if new; its rows rescaled if the fade got large)."""
        contributor = self._contributors.get(did)
        if contributor is None:
            contributor = self._contributors[did] = _Contributor(t_s, t_s)
        t_s = max(t_s, contributor.t_last)
        fade = math.exp(-(t_s - contributor.t_ref) / self.spec.fade_s)
        if fade < _RENORMALIZE_BELOW:
            rows = list(contributor.rows.values())
            self._pool.values[rows] = np.rint(self._pool.values[rows] * fade)
            contributor.t_ref, fade = t_s, 1.0
        contributor.t_last = t_s
        return fade

    def _fade(self, did: str, t_s: float) -> float:
        """The factor did's stored values are worth at t_s (at its last write if t_s is earlier)."""
        contributor = self._contributors[did]
        return math.exp(-(max(t_s, contributor.t_last) - contributor.t_ref) / self.spec.fade_s)

    def belief(self, key: TileKey, trust: Mapping[str, float], t_s: float, k: int | None = None) -> FusedTile:
        """The tile's fused log-odds and believed states at t_s, every layer faded and weighted by trust.

        L = clamp(sum of weight * own log-odds). A cell is OCCUPIED when L >= occupied_l and either
        corroboration_k contributors of weight > 0.2 each hold own log-odds >= occupied_l there or in a
        cell within near_cells, or one of
        weight >= trusted_weight does; FREE likewise with free_l; else UNKNOWN. Thresholds are compared
        within one storage unit (about 2e-4). Cached per (tile version, t_s, trust weights, k). ``k``
        overrides corroboration_k: k=1 is what any one credible robot says (a suspicion, not a belief);
        every k of one (version, t_s, trust) shares one pass over the layers.
        """
        spec = self.spec
        k = spec.corroboration_k if k is None else k
        layers = self._tiles.get(key)
        version = self._versions.get(key, 0)
        if layers is None:
            return self._frozen(key, np.zeros(self._area, np.float32), np.zeros(self._area, np.int8), {}, version)
        weights = tuple(float(trust.get(did, DEFAULT_WEIGHT)) for did in layers)
        stamp = (version, t_s, weights)
        cached = self._cache.get((key, k))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        tally = self._tallies.get(key)
        if tally is None or tally[0] != stamp:
            tally = self._tallies[key] = (stamp, *self._tally(layers, weights, t_s))
        _, fused, occupied_level, free_level = tally
        tolerance = self._step
        occupied = (fused >= spec.occupied_l - tolerance) & (occupied_level >= k)
        free = (fused <= spec.free_l + tolerance) & (free_level >= k)
        state = np.full(self._area, UNKNOWN, dtype=np.int8)
        state[occupied] = OCCUPIED
        state[free] = FREE
        fused_tile = self._frozen(key, fused, state, self.contributions(key), version)
        self._cache[(key, k)] = (stamp, fused_tile)
        return fused_tile

    def _tally(self, layers: Mapping[str, int], weights: tuple[float, ...], t_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A tile's fused log-odds, and per cell how many independent layers say occupied (near) and free.

        A level is the count of contributors of weight > 0.2 that say so, or _TRUSTED where one of
        weight >= trusted_weight does, so ``level >= k`` is the corroboration test for any k.
        """
        spec = self.spec
        rows = np.fromiter(layers.values(), dtype=np.int64, count=len(layers))
        scale = np.array([self._step * self._fade(did, t_s) for did in layers], dtype=np.float32)
        own = self._pool.values[rows] * scale[:, None]
        weight = np.array(weights, dtype=np.float32)
        fused = np.clip(np.einsum("r,rc->c", weight, own), spec.l_min, spec.l_max)
        tolerance = self._step
        # A surface is one cell thick and sparse beams rarely hit the same cell twice: a robot corroborates
        # an occupied cell when its own evidence says occupied there or within near_cells of it.
        occupied = self._level(self._near(own >= spec.occupied_l - tolerance), weight)
        return fused, occupied, self._level(own <= spec.free_l + tolerance, weight)

    def _near(self, says: np.ndarray) -> np.ndarray:
        """Each layer's cells dilated by near_cells (a square neighbourhood, within the tile): (layers, cells)."""
        n, r = self.spec.tile_cells, self.spec.near_cells
        grid = np.zeros((says.shape[0], n + 2 * r, n + 2 * r), dtype=bool)
        grid[:, r:r + n, r:r + n] = says.reshape(-1, n, n)
        rows = np.zeros((says.shape[0], n + 2 * r, n), dtype=bool)
        for dy in range(2 * r + 1):  # separable: dilate along y, then along x
            rows |= grid[:, :, dy:dy + n]
        near = np.zeros((says.shape[0], n, n), dtype=bool)
        for dx in range(2 * r + 1):
            near |= rows[:, dx:dx + n, :]
        return near.reshape(says.shape)

    def _level(self, says: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Per cell, the independent contributors (weight > 0.2) that say so, or _TRUSTED where a trusted one does."""
        level = np.count_nonzero(says[weight > CORROBORATING_WEIGHT], axis=0)
        level = np.minimum(level, _TRUSTED - 1).astype(np.uint16)
        level[says[weight >= self.spec.trusted_weight].any(axis=0)] = _TRUSTED
        return level

    def _frozen(
        self, key: TileKey, log_odds: np.ndarray, state: np.ndarray, contributors: dict[str, float], version: int
    ) -> FusedTile:
        """A FusedTile with read-only (tile_cells, tile_cells) arrays."""
        size = self.spec.tile_cells
        log_odds = log_odds.astype(np.float32, copy=False).reshape(size, size)
        state = state.reshape(size, size)
        log_odds.flags.writeable = state.flags.writeable = False
        return FusedTile(key, log_odds, state, contributors, version)

    def state_at(self, xs: np.ndarray, ys: np.ndarray, trust: Mapping[str, float], t_s: float,
                 k: int | None = None) -> np.ndarray:
        """Believed states (int8, shaped like xs) at world points; UNKNOWN outside every known tile."""
        return self.consensus_at(self._cells_at(xs, ys), trust, t_s, k).reshape(np.shape(xs))

    def consensus_at(self, cells: np.ndarray, trust: Mapping[str, float], t_s: float,
                     k: int | None = None) -> np.ndarray:
        """Believed states (int8) at (ix, iy) cells, an (n, 2) array; what a scan is scored against for trust."""
        keys, tile_of, local = self._by_tile(np.asarray(cells, dtype=np.int64).reshape(-1, 2))
        states = np.zeros((len(keys), self._area), dtype=np.int8)
        for index, key in enumerate(keys):
            if key in self._tiles:
                states[index] = self.belief(key, trust, t_s, k).state.reshape(-1)
        return states.reshape(-1).take(tile_of * self._area + local)

    def consensus_without(self, cells: np.ndarray, without: Sequence[str], of: np.ndarray,
                          trust: Mapping[str, float], t_s: float, k: int | None = None, *,
                          occupied_only: np.ndarray | None = None) -> np.ndarray:
        """Believed states (int8) at (ix, iy) cells, each with one contributor's own evidence left out.

        Cell i gets what ``consensus_at(cells[i:i + 1], {**trust, without[of[i]]: 0.0}, t_s, k)`` gives (up to
        float rounding of the weighted sum), for many scans of many contributors in one call: what trust
        scoring needs, since a robot must not vouch for itself. It is worked out at the asked cells only,
        from every layer of their tiles, so its cost grows with the cells asked, not with whole tiles.
        Cells flagged in ``occupied_only`` are told OCCUPIED or UNKNOWN only (FREE reads as UNKNOWN there),
        which is cheap: a cell nobody ever hit cannot be OCCUPIED.
        """
        spec = self.spec
        k = spec.corroboration_k if k is None else k
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        of = np.asarray(of, dtype=np.int64).reshape(-1)
        if len(of) != len(cells):
            raise ValueError(f"of must name one contributor per cell: {len(of)} for {len(cells)} cells")
        states = np.zeros(len(cells), dtype=np.int8)
        keys, tile_of, local = self._by_tile(cells)
        marks = np.array([self._mark_rows.get(key, -1) for key in keys], dtype=np.int64)[tile_of]
        hit_ever = (marks >= 0) & self._marks.values.reshape(-1).take(np.maximum(marks, 0) * self._area + local)
        whole = np.ones(len(cells), dtype=np.bool_) if occupied_only is None else ~np.asarray(occupied_only, bool)
        asked = np.flatnonzero(hit_ever | whole)
        if not len(asked):
            return states
        # One table of every layer of the tiles with asked cells, each tile's layers contiguous: pool row,
        # weight, fade scale, and a small id of its DID (the left-out DIDs first, so cell i leaves out of[i]).
        present = np.zeros(len(keys), dtype=np.bool_)
        present[tile_of[asked]] = True
        ids = {did: index for index, did in enumerate(without)}
        starts = np.zeros(len(keys), dtype=np.int64)
        counts = np.zeros(len(keys), dtype=np.int64)
        rows: list[int] = []
        dids: list[str] = []
        for index in np.flatnonzero(present).tolist():
            layers = self._tiles.get(keys[index])
            starts[index] = len(rows)
            if layers:
                counts[index] = len(layers)
                rows += layers.values()
                dids += layers.keys()
        if not rows:
            return states
        fades: dict[str, float] = {}
        scale = np.array([fades[did] if did in fades else fades.setdefault(did, self._step * self._fade(did, t_s))
                          for did in dids], dtype=np.float32)
        weight = np.array([float(trust.get(did, DEFAULT_WEIGHT)) for did in dids], dtype=np.float32)
        owner = np.array([ids.setdefault(did, len(ids)) for did in dids], dtype=np.int64)
        base = np.array(rows, dtype=np.int64) * self._area
        # Every (asked cell, layer of its tile) pair, less the cell's own contributor's layer.
        cell_tile = tile_of[asked]
        per_cell = counts[cell_tile]
        pair_cell = np.repeat(np.arange(len(asked)), per_cell)
        ends = np.cumsum(per_cell)
        pair_layer = np.arange(len(pair_cell)) + np.repeat(starts[cell_tile] - (ends - per_cell), per_cell)
        kept = owner[pair_layer] != of[asked][pair_cell]
        pair_cell, pair_layer = pair_cell[kept], pair_layer[kept]
        at = local[asked]
        values = self._pool.values.reshape(-1)
        own = values.take(base[pair_layer] + at[pair_cell]) * scale[pair_layer]  # float32, as belief() has it
        pair_weight = weight[pair_layer]
        corroborating = pair_weight > CORROBORATING_WEIGHT
        trusted = pair_weight >= spec.trusted_weight
        fused = np.clip(np.bincount(pair_cell, weights=pair_weight * own, minlength=len(asked)),
                        spec.l_min, spec.l_max)
        tolerance = self._step
        free = (fused <= spec.free_l + tolerance) & whole[asked] & self._agreed_pairs(
            pair_cell, own <= spec.free_l + tolerance, corroborating, trusted, len(asked), k)
        maybe = (fused >= spec.occupied_l - tolerance) & hit_ever[asked]
        occupied = np.zeros(len(asked), dtype=np.bool_)
        if maybe.any():
            # Occupied needs each layer's own hit within near_cells (inside the tile), so only here.
            chosen = maybe[pair_cell]
            near_cell, near_layer = pair_cell[chosen], pair_layer[chosen]
            size, reach = spec.tile_cells, spec.near_cells
            offsets = np.arange(-reach, reach + 1)
            xs = (at[near_cell] >> self._shift)[:, None, None] + offsets[None, :, None]
            ys = (at[near_cell] & (size - 1))[:, None, None] + offsets[None, None, :]
            inside = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
            flat = base[near_layer][:, None, None] + np.clip(xs, 0, size - 1) * size + np.clip(ys, 0, size - 1)
            hit = values.take(flat) * scale[near_layer][:, None, None] >= spec.occupied_l - tolerance
            near = (hit & inside).reshape(len(near_cell), -1).any(axis=1)
            occupied = maybe & self._agreed_pairs(near_cell, near, corroborating[chosen], trusted[chosen],
                                                  len(asked), k)
        states[asked[occupied]] = OCCUPIED
        states[asked[free]] = FREE
        return states

    @staticmethod
    def _agreed_pairs(pair_cell: np.ndarray, says: np.ndarray, corroborating: np.ndarray, trusted: np.ndarray,
                      cells: int, k: int) -> np.ndarray:
        """Per cell, from (cell, layer) pairs: k independent layers, or one trusted one, say so."""
        independent = np.bincount(pair_cell[says & corroborating], minlength=cells) >= k
        return independent | (np.bincount(pair_cell[says & trusted], minlength=cells) > 0)

    def contributions(self, key: TileKey) -> dict[str, float]:
        """Provenance of a tile: per DID, the total |log-odds change| it has written into the tile."""
        layers = self._tiles.get(key, {})
        return {did: float(self._pool.contributed[row]) for did, row in layers.items()}

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray, t_s: float | None = None) -> dict[str, float]:
        """Provenance of a decision about these world points: per DID, its summed |own log-odds| over them.

        Values are faded to t_s, or taken as of each DID's last write when t_s is None.
        """
        keys, tile_of, local = self._by_tile(self._cells_at(xs, ys))
        totals: dict[str, float] = {}
        for index, key in enumerate(keys):
            here = local[tile_of == index]
            for did, row in self._tiles.get(key, {}).items():
                stored = int(np.abs(self._pool.values[row].take(here).astype(np.int64)).sum())
                fade = self._fade(did, self._contributors[did].t_last if t_s is None else t_s)
                totals[did] = totals.get(did, 0.0) + stored * self._step * fade
        return totals

    def _cells_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The (ix, iy) cells (int64 (n, 2)) holding world points."""
        res = self.spec.resolution_m
        return np.stack((np.floor(np.asarray(xs, np.float64).reshape(-1) / res),
                         np.floor(np.asarray(ys, np.float64).reshape(-1) / res)), axis=1).astype(np.int64)

    def _by_tile(self, cells: np.ndarray) -> tuple[list[TileKey], np.ndarray, np.ndarray]:
        """Group (n, 2) cells by tile: the distinct tile keys, each cell's index into them, its flat local index."""
        tx, ty = cells[:, 0] >> self._shift, cells[:, 1] >> self._shift
        local = cells & (self.spec.tile_cells - 1)
        local = (local[:, 0] << self._shift) | local[:, 1]
        if not len(cells):
            return [], np.zeros(0, dtype=np.int64), local
        low_x, low_y = int(tx.min()), int(ty.min())
        span_x, span_y = int(tx.max()) - low_x + 1, int(ty.max()) - low_y + 1
        if span_x * span_y <= max(4 * len(cells), 1 << 16):  # the tiles' bounding box is small: mark, no sort
            code = (tx - low_x) * span_y + (ty - low_y)
            present = np.zeros(span_x * span_y, dtype=np.bool_)
            present[code] = True
            codes = np.flatnonzero(present)
            tile_of = (np.cumsum(present) - 1)[code]
            keys = [(low_x + c // span_y, low_y + c % span_y) for c in codes.tolist()]
            return keys, tile_of, local
        code = (tx << 32) + (ty + (1 << 31))  # one int64 per tile, ordered like the keys
        codes, tile_of = np.unique(code, return_inverse=True)
        keys = [(code >> 32, (code & 0xFFFFFFFF) - (1 << 31)) for code in codes.tolist()]
        return keys, tile_of.reshape(-1), local

    def tiles(self) -> list[TileKey]:
        """Keys of the tiles some contributor has evidence in, sorted."""
        return sorted(self._tiles)

    def tile_origin(self, key: TileKey) -> tuple[float, float]:
        """World coordinates of the tile's corner with the smallest x and y (its cell [0, 0]'s corner)."""
        side = self.spec.tile_cells * self.spec.resolution_m
        return key[0] * side, key[1] * side

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """The (ix, iy) cell holding a world point."""
        return math.floor(x / self.spec.resolution_m), math.floor(y / self.spec.resolution_m)

    def version(self, key: TileKey) -> int:
        """A counter that grows whenever any layer of the tile changes (0 for a tile never written)."""
        return self._versions.get(key, 0)

    def forget(self, did: str) -> None:
        """Drop every layer of a contributor, e.g. a robot whose DID was deactivated."""
        contributor = self._contributors.pop(did, None)
        if contributor is not None:
            self._drop(did, contributor.rows)

    def prune(self, t_s: float) -> int:
        """Drop layers that have faded to nothing by t_s, to bound memory; returns how many were dropped.

        A contributor unseen for about 10 fade_s goes entirely; an active one loses the layers its
        rescaling has rounded to all zeros (tiles it left long ago).
        """
        dropped = 0
        for did, contributor in list(self._contributors.items()):
            if self._fade(did, t_s) * _QUANTA < 0.5:
                del self._contributors[did]
                faded = contributor.rows
            else:
                rows = list(contributor.rows.values())
                empty = ~self._pool.values[rows].any(axis=1)
                faded = {key: row for (key, row), gone in zip(contributor.rows.items(), empty, strict=True) if gone}
                for key in faded:
                    del contributor.rows[key]
            self._drop(did, faded)
            dropped += len(faded)
        return dropped

    def _drop(self, did: str, rows: Mapping[TileKey, int]) -> None:
        """Remove did's layers in these tiles, give their rows back, and drop tiles left with no layer."""
        for key in rows:
            layers = self._tiles[key]
            del layers[did]
            self._versions[key] += 1
            if not layers:
                del self._tiles[key]
                self._marks.give_back([self._mark_rows.pop(key)])
                for cached in [cached for cached in self._cache if cached[0] == key]:
                    del self._cache[cached]
                self._tallies.pop(key, None)
        self._pool.give_back(rows.values())
