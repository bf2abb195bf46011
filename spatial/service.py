"""The map service: verified scans in; a shared, trust-weighted map and the road states out.

It is an ingest consumer, so every scan it sees has passed the verify-on-ingest
pipeline (signature, replay, rate, physics, a range beyond the scan's own
maximum). ``observe`` runs on the ingest (MQTT network) thread and only does
bookkeeping: it adds its own checks (a pose outside the world, scans faster than
a robot's lidar turns) and queues what passes, without taking the map's lock.
``fuse_pending`` (the start of every ``step``, or a thread of its own) fuses the
whole queue in one batch as each robot's own evidence, drops returns on other
robots through a spatial index of their reported poses, and scores every robot
of the batch against one corroborated consensus of everyone else. On its turn
``step`` publishes changed tiles (retained, signed) and, when a road's state
changes, the road graph. Queries (thread-safe, and they see every scan observed
before them): occupancy at a point, the cost of a path, a tile as a PNG, and who
contributed to a tile or a road decision.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree

from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import MAP_GRAPH, MAP_PRESENCE, map_tile_topic
from identity.envelope import Envelope, EnvelopeSigner
from spatial.grid import (CORROBORATING_WEIGHT, DEFAULT_WEIGHT, OCCUPIED, UNKNOWN, FusedTile, GridSpec, Observation,
                          OccupancyGrid, Scan, TileKey)
from spatial.presence import UNWITNESSED, Presence
from spatial.roads import BLOCKED, SUSPECT, EdgeKey, RoadReport, RoadStates, graph_message, vantage_points
from spatial.tiles import belief_cells, encode_tile, probability_cells, tile_png
from spatial.trust import TrustLedger
from spatial.witness import SEEN, UNSEEN, Beams, Shapes, WitnessSpec, judge, shapes

log = logging.getLogger("depai.spatial.map")

UNKNOWN_COST_FACTOR = 1.5  # a metre of path through ground nobody has seen costs this much
FUSE_CHUNK = 128  # scans fused, cleared of teammates and scored together: bounds the memory of one batch
TIME_SLICE_S = 0.25  # scans this close in time share one spatial index of where the other robots were
NEAREST_ROBOTS = 8  # robots looked at around each return (more cannot stand within a teammate radius)
WITNESSED_ROBOTS = 16  # claims judged around each scan, nearest first
MAX_VERDICTS = 4096  # per map.presence message (the schema's limit)
MAX_WITNESSES = 64  # peers named per verdict (the schema's limit)
VERDICT_NAMES = {SEEN: "seen", UNSEEN: "unseen"}
WITNESS_CONFIDENCE = 0.3  # a robot witnesses others only while its own witnessed confidence is at least this


class _Pending(NamedTuple):
    """A scan that passed the service's own checks, waiting to be fused."""

    did: str
    x: float
    y: float
    theta: float
    t_s: float
    body: dict[str, Any]


class _BoundBelief:
    """The grid's believed states with one trust snapshot, time and corroboration bound in: what RoadStates reads."""

    def __init__(self, grid: OccupancyGrid, trust: Mapping[str, float], t_s: float, k: int | None = None) -> None:
        self.grid, self.trust, self.t_s, self.k = grid, trust, t_s, k

    def state_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.grid.state_at(xs, ys, self.trust, self.t_s, self.k)

    def contributors_at(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        return self.grid.contributors_at(xs, ys, self.t_s)


class MapService:
    """Fuses verified scans into the shared grid, weighs who said what, and publishes tiles and road states."""

    declared_kinds = ("birth", "telemetry", "scan")  # the message kinds observe() consumes

    def __init__(
        self,
        signer: EnvelopeSigner,
        graph: nx.Graph,
        *,
        bounds: tuple[float, float, float, float],
        clock: Callable[[], float],
        spec: GridSpec = GridSpec(),
        trust: TrustLedger | None = None,
        level_of: Callable[[str], str] = lambda did: "self",
        max_scan_hz: float = 5.0,
        publish_every_s: float = 2.0,
        trust_refresh_s: float = 1.0,
        road_m: float = 8.0,
        max_range_m: float = 6.0,
        teammate_radius_m: float = 0.9,
        teammate_window_s: float = 1.5,
        witness_weight: float = 0.8,
        max_pending: int = 10_000,
        witness: WitnessSpec | None = WitnessSpec(),
        claim_window_s: float = 0.75,
        contradicted_hold_s: float = 2.0,
        presence_fade_s: float = 60.0,
        presence_every_s: float = 1.0,
    ) -> None:
        self.signer = signer
        self.bounds = bounds
        self.clock = clock
        self.grid = OccupancyGrid(spec)
        self.trust = trust or TrustLedger(prior=(3.0, 1.0))  # a robot new to the map starts at 0.75
        self.level_of = level_of
        self.graph = graph
        self.roads = RoadStates(graph, road_m=road_m, resolution_m=spec.resolution_m)
        self.min_scan_gap_s = 1.0 / max_scan_hz
        self.publish_every_s = publish_every_s
        self.trust_refresh_s = trust_refresh_s
        self.max_range_m = max_range_m
        self.teammate_radius_m = teammate_radius_m
        self.teammate_window_s = teammate_window_s
        self.witness_weight = witness_weight
        self.max_pending = max_pending
        self.witness = witness  # None: claims are not judged and every return near a claim is dropped (the old rule)
        self.claim_window_s = claim_window_s
        self.contradicted_hold_s = contradicted_hold_s
        self.presence_fade_s = presence_fade_s
        self.presence_every_s = presence_every_s
        self.presence_version = 0
        self.refused: Counter[str] = Counter()
        self.scans = 0
        self.report: RoadReport | None = None
        self.graph_version = 0
        self._published: dict[TileKey, int] = {}
        self._last_scan: dict[str, float] = {}
        self._poses: dict[str, tuple[float, float, float, float, float]] = {}  # did -> t, x, y, theta, v
        self._weights: dict[str, float] = {}
        self._weights_at = -math.inf
        self._next_publish = -math.inf
        self._presence: dict[str, Presence] = {}
        self._verdicts: dict[tuple[str, str, int], dict[str, Any]] = {}  # (robot, verdict, second) -> verdict
        self._contradicted: dict[str, float] = {}  # robot -> until when its claims drop nobody's returns
        # Where the map last published OCCUPIED, a slot per tile (the map checks of witnessing read it).
        self._believed = np.zeros((1, spec.tile_cells, spec.tile_cells), dtype=bool)
        self._believed_slot: dict[TileKey, int] = {}
        self._slot_raster = np.full((0, 0), -1, dtype=np.int64)  # per tile (x, y) from _slot_origin: its slot or -1
        self._slot_origin = np.zeros(2, dtype=np.int64)
        self._claimed: deque[str] = deque()  # robots with a claim not yet checked against the map (observe adds)
        self._next_presence = -math.inf
        # Filled by observe() without a lock (deque appends and pops are atomic), drained by fuse_pending().
        self._pending: deque[_Pending] = deque()
        self._births: deque[str] = deque()
        self._lock = threading.Lock()  # the grid, trust and published state: fusion, publishing and queries

    @property
    def did(self) -> str:
        """The DID robots must trust for map tiles and the road graph."""
        return self.signer.did

    # --- in ------------------------------------------------------------------------------------------

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: births set a robot's verification level; telemetry says where robots are;
        scans are checked and queued for ``fuse_pending``. Cheap, and never waits for the map's lock."""
        kind = envelope.kind
        if kind == "scan":
            self._queue(envelope.issuer, envelope.body)
        elif kind == "telemetry":
            body = envelope.body
            self._place(envelope.issuer, body["t"] / 1000.0, body["pose"], float(body["twist"]["v"]))
        elif kind == "birth":
            self._births.append(envelope.issuer)  # applied before the next batch: before this robot's scans

    @property
    def pending(self) -> int:
        """Scans observed and not yet fused."""
        return len(self._pending)

    def _refuse(self, reason: str) -> None:
        self.refused[reason] += 1

    def _queue(self, did: str, body: dict[str, Any]) -> None:
        pose = body["pose"]
        x, y, theta = float(pose["x"]), float(pose["y"]), float(pose["theta"])
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmin <= x <= xmax and ymin <= y <= ymax):
            self._refuse("outside_world")
            return
        t_s = body["t"] / 1000.0
        last = self._last_scan.get(did)
        if last is not None and t_s - last < self.min_scan_gap_s - 1e-6:
            self._refuse("too_frequent")
            return
        self._last_scan[did] = t_s
        known = self._poses.get(did)
        self._place(did, t_s, pose, known[4] if known is not None else 0.0)
        if len(self._pending) >= self.max_pending:
            self._refuse("backlog")  # fusion has fallen this far behind: drop rather than grow without bound
            return
        self._pending.append(_Pending(did, x, y, theta, t_s, body))

    def _place(self, did: str, t_s: float, pose: Mapping[str, float], speed: float) -> None:
        """Remember where a robot said it was (the newest report wins), to tell teammates from obstacles."""
        known = self._poses.get(did)
        if known is None or t_s >= known[0]:
            self._poses[did] = (t_s, float(pose["x"]), float(pose["y"]), float(pose["theta"]), speed)
            if self.witness is not None:
                self._claimed.append(did)

    def fuse_pending(self) -> int:
        """Fuse every scan observed so far, in batches; returns how many. Thread-safe: the start of every
        ``step``, and what a fusion thread of the map process may call in a loop."""
        with self._lock:
            return self._fuse(self.clock())

    def _fuse(self, now: float) -> int:
        while self._births:
            did = self._births.popleft()
            try:
                self.trust.set_level(did, self.level_of(did))
            except Exception:  # as when observe() ran it on the ingest thread: that message is lost, nothing else
                log.exception("map: no verification level for %s", did)
        count = len(self._pending)  # scans observed after this are left for the next batch
        if not count:
            if self._claimed:
                self._possible([], now)  # telemetry's claims are judged against the map without scans too
            return 0
        batch = [self._pending.popleft() for _ in range(count)]
        for start in range(0, count, FUSE_CHUNK):
            chunk = self._possible(batch[start:start + FUSE_CHUNK], now)
            try:
                observations = self.grid.integrate_many(self._scans(chunk, now))
            except Exception:  # one scan the checks let through must not cost the others, nor stop the turn
                observations = []
                for item in chunk:
                    try:
                        observations += self.grid.integrate_many(self._scans([item], now))
                    except Exception:
                        log.exception("map: a scan from %s could not be fused", item.did)
                        self._refuse("unfusable")
            self.scans += len(observations)
            self._score(observations, now)
        return count

    def _scans(self, batch: Sequence[_Pending], now: float) -> list[Scan]:
        """The batch as the grid takes it: ranges capped (like OctoMap's maxrange: far returns are where a small
        heading error moves a wall most), robots' claimed poses judged by the scans that see them, and the
        returns that land on another robot dropped (with witnessing, only robot-shaped ones near a claim
        nobody contradicted)."""
        lengths = [len(item.body["ranges"]) for item in batch]
        caps = [min(float(item.body["range_max"]), self.max_range_m) for item in batch]
        ranges = np.array(list(itertools.chain.from_iterable(item.body["ranges"] for item in batch)),
                          dtype=np.float64)  # None (no return) reads as nan
        ranges[~(ranges < np.repeat(caps, lengths))] = math.inf
        poses = self._poses.copy()  # one atomic copy: telemetry adds lock-free
        dids = list(poses)
        number = dict(zip(dids, range(len(dids))))
        heard = np.fromiter(itertools.chain.from_iterable(poses.values()), np.float64,
                            5 * len(dids)).reshape(-1, 5)  # t, x, y, theta, v per robot
        droppable = beams = None
        if self.witness is not None and batch:
            beams = Beams.of(np.array([(item.x, item.y) for item in batch]),
                             np.array([item.theta + float(item.body["angle_min"]) for item in batch]),
                             np.array([float(item.body["angle_increment"]) for item in batch]),
                             np.array(lengths), ranges)
            shape = shapes(beams, self.witness)
            droppable = shape.robot
            self._witness(batch, beams, shape, dids, number, heard, now)
        self._drop_teammates(batch, lengths, ranges, droppable, beams, number, heard, now)
        return [Scan(item.did, (item.x, item.y, item.theta), float(item.body["angle_min"]),
                     float(item.body["angle_increment"]), cap, row, item.t_s)
                for item, cap, row in zip(batch, caps, np.split(ranges, np.cumsum(lengths)[:-1]), strict=True)]

    def _drop_teammates(self, batch: Sequence[_Pending], lengths: list[int], ranges: np.ndarray,
                        droppable: np.ndarray | None, beams: Beams | None, number: Mapping[str, int],
                        heard: np.ndarray, now: float) -> None:
        """Drop (in place: a negative range) the returns that land on another robot: a teammate is not part of the map.

        Each robot's last reported pose, heard within teammate_window_s of a scan, is carried forward
        along its heading at its reported speed to the scan's time; a return within
        teammate_radius_m of it says nothing about the world and would only count as a
        conflict against whoever sees that ground free a moment later. For the whole batch at once:
        the scans are cut into slices of TIME_SLICE_S, and each slice's returns look only at the
        robots a k-d tree of their poses (carried to the slice's middle) finds near them. With witnessing,
        only returns on robot-shaped segments (``droppable``) may go, a robot whose claim was lately
        contradicted by peers or the map drops nothing, and the return ends are the witnessing ``beams``' own.
        """
        usable = np.isfinite(ranges) if droppable is None else np.isfinite(ranges) & droppable
        returns = np.flatnonzero(usable)
        if len(number) < 2 or not len(returns):
            return
        if self._contradicted:  # a contradicted claim is no teammate: carried to where nobody's returns are
            silenced = [number[did] for did, until in self._contradicted.items() if until >= now and did in number]
            heard = heard.copy()
            heard[silenced, 0] = -math.inf
        scan_of = np.repeat(np.arange(len(batch)), lengths)[returns]
        t_s = np.array([item.t_s for item in batch])[scan_of]
        owner = np.array([number.get(item.did, -1) for item in batch], dtype=np.float64)[scan_of]
        if beams is not None:
            ends = np.stack((beams.end_x[returns], beams.end_y[returns]), axis=1)
        else:
            beam = returns - np.repeat(np.cumsum(lengths) - lengths, lengths)[returns]
            params = np.array([(item.x, item.y, item.theta + float(item.body["angle_min"]),
                                float(item.body["angle_increment"])) for item in batch])
            x, y, start, step = params[scan_of].T
            angle = start + beam * step
            ends = np.stack((x + ranges[returns] * np.cos(angle), y + ranges[returns] * np.sin(angle)), axis=1)
        dropped = np.zeros(len(returns), dtype=bool)
        order = np.argsort(t_s, kind="stable")
        times = t_s[order]
        first = 0
        while first < len(order):
            last = int(np.searchsorted(times, times[first] + TIME_SLICE_S, side="right"))
            chosen = order[first:last]
            dropped[chosen] = self._near_teammates(ends[chosen], t_s[chosen], owner[chosen], heard,
                                                   times[first], times[last - 1])
            first = last
        ranges[returns[dropped]] = -1.0  # a negative range: the beam is dropped

    def _near_teammates(self, ends: np.ndarray, t_s: np.ndarray, owner: np.ndarray, heard: np.ndarray,
                        earliest: float, latest: float) -> np.ndarray:
        """Which return ends (heard by robot ``owner`` at ``t_s``, within [earliest, latest]) lie on another robot."""
        middle, half = (earliest + latest) / 2, (latest - earliest) / 2
        alive = np.flatnonzero(np.abs(heard[:, 0] - middle) <= self.teammate_window_s + half)
        near = np.zeros(len(ends), dtype=bool)
        if not len(alive):
            return near
        t, x, y, theta, v = heard[alive].T
        slack = np.abs(v) * half  # how far a robot moves between the slice's middle and either end
        narrow = slack <= self.teammate_radius_m  # robots reported faster are few: each is checked against all
        pairs = []
        if narrow.any():
            lead = v[narrow] * (middle - t[narrow])
            at = np.stack((x[narrow] + lead * np.cos(theta[narrow]), y[narrow] + lead * np.sin(theta[narrow])), axis=1)
            count = int(narrow.sum())
            reach = self.teammate_radius_m + float(slack[narrow].max())
            _, found = cKDTree(at).query(ends, k=min(NEAREST_ROBOTS, count), distance_upper_bound=reach)
            found = np.asarray(found).reshape(len(ends), -1)
            ret, slot = np.nonzero(found < count)
            pairs.append((ret, np.flatnonzero(narrow)[found[ret, slot]]))
        if not narrow.all():
            wide = np.flatnonzero(~narrow)
            pairs.append((np.repeat(np.arange(len(ends)), len(wide)), np.tile(wide, len(ends))))
        ret = np.concatenate([r for r, _ in pairs])
        robot = np.concatenate([j for _, j in pairs])
        lag = t_s[ret] - t[robot]
        lead = v[robot] * lag
        gap = np.hypot(ends[ret, 0] - x[robot] - lead * np.cos(theta[robot]),
                       ends[ret, 1] - y[robot] - lead * np.sin(theta[robot]))
        hit = (alive[robot] != owner[ret]) & (np.abs(lag) <= self.teammate_window_s) & (gap <= self.teammate_radius_m)
        near[ret[hit]] = True
        return near

    # --- witnessed location ----------------------------------------------------------------------------

    def _possible(self, chunk: list[_Pending], now: float) -> list[_Pending]:
        """The chunk less scans taken from an impossible pose (refused), after judging against the map every
        claim made since the last look: a claimed centre in a cell the published corroborated belief holds
        OCCUPIED is IMPOSSIBLE."""
        if self.witness is None:
            return chunk
        scanned = [(item.did, item.t_s, item.x, item.y) for item in chunk]
        claimed = {self._claimed.popleft() for _ in range(len(self._claimed))}
        poses = self._poses
        made = set(scanned)
        claims = scanned + [claim for claim in ((did, *poses[did][:3]) for did in claimed) if claim not in made]
        if not claims:
            return chunk
        impossible = self._occupied(np.fromiter((claim[2] for claim in claims), np.float64, len(claims)),
                                    np.fromiter((claim[3] for claim in claims), np.float64, len(claims)))
        for index in np.flatnonzero(impossible).tolist():
            did, t_s, x, y = claims[index]
            self._record(did, t_s, x, y, "impossible", (), now)
            self._doubt(did, 1.0, 0.0, now)
        kept = [item for item, bad in zip(chunk, impossible[:len(chunk)].tolist(), strict=True) if not bad]
        for _ in range(len(chunk) - len(kept)):
            self._refuse("impossible_pose")
        return kept

    def _witness(self, batch: Sequence[_Pending], beams: Beams, shape: Shapes, dids: list[str],
                 number: Mapping[str, int], heard: np.ndarray, now: float) -> None:
        """Judge every claimed pose (``heard``: t, x, y, theta, v per robot of ``dids``, numbered by ``number``)
        near each scan of the batch from that scan (spatial.witness), and record the verdicts of peers the map
        trusts: presence evidence, contradicted claims, map.presence verdicts."""
        assert self.witness is not None
        if len(dids) < 2:
            return
        weights = self._trust_snapshot(now)
        t_s = np.array([item.t_s for item in batch])
        owner = np.array([number.get(item.did, -1) for item in batch])
        peer_weight = np.array([weights.get(item.did, DEFAULT_WEIGHT) for item in batch])
        # A witness is a robot the map trusts whose own whereabouts nobody doubts (a liar's scans, taken from
        # where it is not, would find everyone missing around its claim).
        contradicted = self._contradicted
        trusted = np.array([weight > CORROBORATING_WEIGHT and contradicted.get(item.did, -math.inf) < now
                            and self._confidence(item.did, now) >= WITNESS_CONFIDENCE
                            for item, weight in zip(batch, peer_weight.tolist(), strict=True)], dtype=bool)
        reach = self.witness.witness_range_m + float(np.abs(heard[:, 4]).max()) * self.claim_window_s
        scan, robot = _nearest(beams.origin[trusted], heard[:, 1:3], WITNESSED_ROBOTS, reach)
        scan = np.flatnonzero(trusted)[scan]
        lag = t_s[scan] - heard[robot, 0]
        keep = (robot != owner[scan]) & (np.abs(lag) <= self.claim_window_s)
        scan, robot, lag = scan[keep], robot[keep], lag[keep]
        if not len(scan):
            return
        lead = heard[robot, 4] * lag
        x = heard[robot, 1] + lead * np.cos(heard[robot, 3])
        y = heard[robot, 2] + lead * np.sin(heard[robot, 3])
        verdict = judge(beams, shape, scan, x, y, robot, self.witness, self._occupied)
        judged = np.flatnonzero(verdict)
        if not len(judged):
            return
        by = peer_weight[scan[judged]]
        seen = np.bincount(robot[judged], weights=by * (verdict[judged] == SEEN), minlength=len(dids))
        unseen = np.bincount(robot[judged], weights=by * (verdict[judged] == UNSEEN), minlength=len(dids))
        robots = np.flatnonzero(seen + unseen)
        for index, against, sighted in zip(robots.tolist(), unseen[robots].tolist(), seen[robots].tolist(),
                                           strict=True):
            self._doubt(dids[index], against, sighted, now)
        # One record per (robot, verdict, second) of the batch, naming every witness behind it.
        second = np.floor(t_s[scan[judged]])
        order = np.lexsort((t_s[scan[judged]], second, verdict[judged], robot[judged]))
        key = np.stack((robot[judged], verdict[judged], second), axis=1)[order]
        starts = np.flatnonzero(np.concatenate(([True], (key[1:] != key[:-1]).any(axis=1))))
        witnesses = [batch[i].did for i in scan[judged][order].tolist()]
        heads = judged[order[starts]]  # each record's first pair
        for first, last, index, at, claim_x, claim_y, kind in zip(
                starts.tolist(), [*starts[1:].tolist(), len(order)], robot[heads].tolist(), t_s[scan[heads]].tolist(),
                x[heads].tolist(), y[heads].tolist(), verdict[heads].tolist(), strict=True):
            self._record(dids[index], at, claim_x, claim_y, VERDICT_NAMES[kind], witnesses[first:last], now)

    def _occupied(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Whether the map's corroborated belief, as last published (at most publish_every_s old), holds these
        points OCCUPIED: a lookup in the published tiles' states, where asking the grid would fuse layers again."""
        size, resolution = self.grid.spec.tile_cells, self.grid.spec.resolution_m
        cx = np.floor(np.asarray(xs) / resolution).astype(np.int64)
        cy = np.floor(np.asarray(ys) / resolution).astype(np.int64)
        tx, ty = cx // size - self._slot_origin[0], cy // size - self._slot_origin[1]
        raster = self._slot_raster
        slot = np.full(len(cx), -1, dtype=np.int64)
        inside = (tx >= 0) & (tx < raster.shape[0]) & (ty >= 0) & (ty < raster.shape[1])
        slot[inside] = raster[tx[inside], ty[inside]]
        known = np.flatnonzero(slot >= 0)
        occupied = np.zeros(len(cx), dtype=bool)
        occupied[known] = self._believed[slot[known], cx[known] % size, cy[known] % size]
        return occupied

    def _believe(self, fused: FusedTile) -> None:
        """Keep a published tile's OCCUPIED cells for ``_occupied`` (one slot per tile, the pool doubling; a raster
        of tile slots, grown to cover every tile published, finds a point's slot without a dict lookup per point)."""
        slot = self._believed_slot.get(fused.key)
        if slot is None:
            slot = self._believed_slot[fused.key] = len(self._believed_slot)
            self._place_slot(fused.key, slot)
        if slot >= len(self._believed):
            self._believed = np.concatenate((self._believed, np.zeros_like(self._believed[:max(1, slot)])))
        self._believed[slot] = fused.state == OCCUPIED

    def _place_slot(self, key: TileKey, slot: int) -> None:
        """Enter a new tile's slot in the raster, growing the raster (and moving its origin) to cover the tile."""
        raster, origin = self._slot_raster, self._slot_origin
        at = np.array(key, dtype=np.int64)
        if not raster.size:
            self._slot_raster, self._slot_origin = raster, origin = np.full((1, 1), -1, dtype=np.int64), at
        low, high = np.minimum(origin, at), np.maximum(origin + raster.shape, at + 1)
        if (low != origin).any() or (high != origin + raster.shape).any():
            grown = np.full(tuple((high - low).tolist()), -1, dtype=np.int64)
            shift = origin - low
            grown[shift[0]:shift[0] + raster.shape[0], shift[1]:shift[1] + raster.shape[1]] = raster
            self._slot_raster, self._slot_origin = raster, origin = grown, low
        raster[tuple((at - origin).tolist())] = slot

    def _doubt(self, did: str, against: float, seen: float, now: float) -> None:
        """Add witnessed evidence about a robot's claims; a claim contradicted and not seen in the same batch
        stops dropping others' returns for contradicted_hold_s, a sighting lifts that at once."""
        presence = self._presence.get(did)
        if presence is None:
            presence = self._presence[did] = Presence(now)
        presence.add(seen, against, now, self.presence_fade_s)
        if seen > 0:
            self._contradicted.pop(did, None)
        elif against > 0:
            self._contradicted[did] = now + self.contradicted_hold_s

    def _confidence(self, did: str, now: float) -> float:
        """A robot's witnessed confidence now: 0.5 before any verdict (spatial.presence)."""
        presence = self._presence.get(did)
        return UNWITNESSED if presence is None else presence.confidence(now, self.presence_fade_s)

    def _record(self, did: str, t_s: float, x: float, y: float, kind: str, by: Sequence[str], now: float) -> None:
        """Keep one verdict of each kind per robot per second for map.presence, naming every peer behind it."""
        key = (did, kind, math.floor(t_s))
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = {"robot": did, "t": round(t_s * 1000), "x": round(x, 2), "y": round(y, 2),
                                             "verdict": kind, "by": []}
            presence = self._presence.get(did)
            if presence is None:
                presence = self._presence[did] = Presence(now)
            presence.record(kind, t_s)
        for peer in by:
            if peer not in verdict["by"] and len(verdict["by"]) < MAX_WITNESSES:
                verdict["by"].append(peer)

    def _presence_message(self, now: float) -> dict[str, Any] | None:
        """The next map.presence body, when one is due and verdicts wait (the oldest first, at most 4,096)."""
        if now < self._next_presence or not self._verdicts:
            return None
        self._next_presence = now + self.presence_every_s
        keys = sorted(self._verdicts, key=lambda key: self._verdicts[key]["t"])[:MAX_VERDICTS]
        self.presence_version += 1
        return {"version": self.presence_version, "verdicts": [self._verdicts.pop(key) for key in keys]}

    def presence_report(self) -> list[dict[str, Any]]:
        """Per robot, in DID order: its witnessed confidence (a beta reputation over peers' sightings against
        unseen and impossible verdicts, faded), verdict counts, and the last verdict with its time."""
        with self._lock:
            now = self.clock()
            return [presence.report(did, now, self.presence_fade_s) for did, presence in sorted(self._presence.items())]

    def _score(self, observations: Sequence[Observation], now: float) -> None:
        """Score every scan of a batch against one consensus of the current trust snapshot, each robot's own
        evidence left out (a robot must not vouch for itself)."""
        if not observations:
            return
        weights = self._trust_snapshot(now)
        number: dict[str, int] = {}
        of = np.array([number.setdefault(o.did, len(number)) for o in observations], dtype=np.int64)
        without = list(number)
        self.trust.score_many([(o.did, o.free, o.hit) for o in observations],
                              lambda scan, cells, occupied_only: self.grid.consensus_without(
                                  cells, without, of[scan], weights, now, occupied_only=occupied_only))

    def _trust_snapshot(self, t_s: float) -> dict[str, float]:
        """The contributors' weights, refreshed at most every trust_refresh_s (the grid caches per snapshot)."""
        if t_s - self._weights_at >= self.trust_refresh_s:
            self._weights = self.trust.weights()
            self._weights_at = t_s
        return self._weights

    # --- out -----------------------------------------------------------------------------------------

    def step(self) -> list[Outgoing]:
        """Every turn: fuse what was observed. On its turn (every publish_every_s): the changed tiles, and the road
        graph when a road changed. Tiles are encoded and signed after the lock is let go."""
        now = self.clock()
        with self._lock:
            self._fuse(now)
            presence = self._presence_message(now)
            if now < self._next_publish:
                tiles, graph = [], None
            else:
                self._next_publish = now + self.publish_every_s
                tiles, graph = self._changed(now)
        resolution = self.grid.spec.resolution_m
        out = []
        if presence is not None:
            spec = BY_KIND["map.presence"]
            out.append(Outgoing(MAP_PRESENCE, self.signer.seal("map.presence", presence), spec.qos, spec.retain))
        for fused in tiles:
            out.append(self._tile(encode_tile("belief", fused.key, fused.version, resolution,
                                              belief_cells(fused.state))))
            out.append(self._tile(encode_tile("probability", fused.key, fused.version, resolution,
                                              probability_cells(fused.log_odds))))
        if graph is not None:
            spec = BY_KIND["map.graph"]
            out.append(Outgoing(MAP_GRAPH, self.signer.seal("map.graph", graph), spec.qos, spec.retain))
        return out

    def _changed(self, now: float) -> tuple[list[FusedTile], dict[str, Any] | None]:
        """The fused tiles changed since last published, and the road graph's message if a road changed."""
        weights = self._trust_snapshot(now)
        tiles = []
        for key in self.grid.tiles():
            version = self.grid.version(key)
            if self._published.get(key) == version:
                continue
            self._published[key] = version
            fused = self.grid.belief(key, weights, now)  # read-only arrays: safe to encode outside the lock
            self._believe(fused)
            tiles.append(fused)
        report = self.roads.evaluate(_BoundBelief(self.grid, weights, now), _BoundBelief(self.grid, weights, now, k=1),
                                     lambda key: self._witnesses(key, weights, now), k=self.grid.spec.corroboration_k)
        graph = None
        if self.report is None or report.changed_since(self.report):
            self.graph_version += 1
            graph = graph_message(report, self.graph_version)
        self.report = report
        return tiles, graph

    def _witnesses(self, key: EdgeKey, weights: Mapping[str, float], now: float) -> dict[str, _BoundBelief]:
        """Per robot with evidence on this road, a belief from its evidence alone: only robots whose weight
        is at least witness_weight, above where a newcomer starts (0.75), so fresh identities cannot collude."""
        xs, ys = self.roads.points(key)
        here = self.grid.contributors_at(xs.ravel(), ys.ravel(), now)
        silent = dict.fromkeys([*weights, *here], 0.0)  # everyone else says nothing in a witness's view
        return {did: _BoundBelief(self.grid, {**silent, did: weights[did]}, now, k=1) for did in sorted(here)
                if weights.get(did, 0.0) >= self.witness_weight}

    def _tile(self, body: dict[str, Any]) -> Outgoing:
        spec = BY_KIND["map.tile"]
        return Outgoing(map_tile_topic(body["layer"], body["x"], body["y"]), self.signer.seal("map.tile", body),
                        spec.qos, spec.retain)

    # --- queries -------------------------------------------------------------------------------------

    def occupancy(self, x: float, y: float) -> int:
        """The believed state at a point: 1 occupied, -1 free, 0 unknown."""
        now = self.clock()
        with self._lock:
            self._fuse(now)
            return int(self.grid.state_at(np.array([x]), np.array([y]), self._trust_snapshot(now), now)[0])

    def path_cost(self, points: Sequence[tuple[float, float]]) -> float | None:
        """Metres along the polyline, unseen ground costing more; None if it crosses a believed obstacle."""
        if len(points) < 2:
            return 0.0
        step = self.grid.spec.resolution_m / 2
        xs, ys, lengths = [], [], []
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            length = math.hypot(x1 - x0, y1 - y0)
            n = max(1, math.ceil(length / step))
            s = np.arange(n) / n
            xs.append(x0 + (x1 - x0) * s)
            ys.append(y0 + (y1 - y0) * s)
            lengths.append(np.full(n, length / n))
        now = self.clock()
        with self._lock:
            self._fuse(now)
            states = self.grid.state_at(np.concatenate(xs), np.concatenate(ys), self._trust_snapshot(now), now)
        if (states == OCCUPIED).any():
            return None
        metres = np.concatenate(lengths)
        return float(metres.sum() + (UNKNOWN_COST_FACTOR - 1.0) * metres[states == UNKNOWN].sum())

    def tile_png(self, key: TileKey, layer: str = "belief") -> bytes:
        """A tile as an 8-bit greyscale PNG, north up (for the dashboard)."""
        now = self.clock()
        with self._lock:
            self._fuse(now)
            fused = self.grid.belief(key, self._trust_snapshot(now), now)
        cells = belief_cells(fused.state) if layer == "belief" else probability_cells(fused.log_odds)
        return tile_png(cells, layer)

    def provenance(self, key: TileKey) -> dict[str, float]:
        """Who contributed to a tile, and how much."""
        with self._lock:
            self._fuse(self.clock())
            return self.grid.contributions(key)

    def blocked_roads(self) -> dict[tuple[str, str], dict[str, float]]:
        """The roads the map believes blocked, each with the DIDs whose evidence closed it."""
        report = self.report
        if report is None:
            return {}
        return {edge: state.contributors for edge, state in report.states.items() if state.state == BLOCKED}

    def suspects(self, vantage_m: float = 4.0) -> dict[EdgeKey, Suspect]:
        """The roads one robot's evidence blocks and nobody has confirmed: where, who said so, and where to look from.

        The vantage points lie on the road ``vantage_m`` short of the blockage, one from each end's side,
        so a second robot sent to either sees it within the map's insertion range.
        """
        report = self.report
        if report is None:
            return {}
        return {key: Suspect(state.at, vantage_points(self.graph, key, state.at, vantage_m), state.contributors)
                for key, state in report.states.items() if state.state == SUSPECT and state.at is not None}

    def closures(self, vantage_m: float = 4.0) -> dict[EdgeKey, Suspect]:
        """The roads latched blocked (spatial.roads): where, who closed them, and where to look from to see
        whether they opened (nobody else will: the fleet plans around them)."""
        return {key: Suspect(state.at, vantage_points(self.graph, key, state.at, vantage_m), state.contributors)
                for key, state in self.roads.latched().items() if state.at is not None}

    # --- what the dashboard reads (spatial.mirror.SharedMap; a MapMirror offers the same from the bus) ------

    @property
    def tile_side_m(self) -> float:
        """The side of one tile, in metres."""
        return self.grid.spec.tile_cells * self.grid.spec.resolution_m

    def tile_versions(self) -> dict[TileKey, int]:
        """Every tile some contributor has evidence in, and its version (no lock: a turn may hold it long)."""
        return {key: self.grid.version(key) for key in self.grid.tiles()}

    def road_states(self) -> dict[EdgeKey, str]:
        """Each road's state at the last evaluation, keyed by sorted (u, v); empty before the first."""
        report = self.report
        return {(min(u, v), max(u, v)): state.state for (u, v), state in report.states.items()} if report else {}

    def trust_weights(self) -> dict[str, float]:
        """How much the map trusts each contributor now."""
        return self.trust.weights()


def _nearest(origins: np.ndarray, points: np.ndarray, k: int, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """(origin, point) index pairs: each origin's ``k`` nearest points closer than ``reach``, by origin, nearest
    first (what a k-d tree query with distance_upper_bound gives; all pairs at once beats building a tree for
    the few scans of a batch against a few hundred robots)."""
    dx = origins[:, 0, None] - points[None, :, 0]
    dy = origins[:, 1, None] - points[None, :, 1]
    squared = dx * dx + dy * dy
    origin, point = np.nonzero(squared < reach * reach)
    order = np.lexsort((point, squared[origin, point], origin))
    origin, point = origin[order], point[order]
    rank = np.arange(len(origin)) - np.searchsorted(origin, origin)
    keep = rank < k
    return origin[keep], point[keep]


@dataclass(frozen=True, slots=True)
class Suspect:
    """A road blockage only one robot has seen: where it is, where to look from, and whose evidence it is."""

    at: tuple[float, float]
    vantage_points: tuple[tuple[float, float], ...]
    contributors: dict[str, float]
