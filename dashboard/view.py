"""What the dashboard reads, as plain JSON-ready dicts: the ledger's database, and the running fleet beside it.

``LedgerView`` needs only the ledger's database (revenue, tasks, robots' records,
the DAO, checkpoints and proofs), so it serves a fleet that is not running, or
a benchmark. ``FleetView`` adds what lives in the fleet's process: verified
telemetry, births and deaths (whether each robot is online), the shared map,
DID documents and the ingest's counters (also as Prometheus text, ``metrics``).
The only writes are ``vote`` and ``propose``: each takes a signed envelope,
verifies it like every other receiver does, and hands it to the DAO.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dao.dao import VOTE_KIND, Dao, DaoError, Proposal
from dashboard.prometheus import exposition
from dashboard.rating import RatingBook
from dashboard.revenue import RevenueBook, members_csv
from dashboard.telemetry import OFFLINE_AFTER_S, TelemetryBoard, presence
from identity.envelope import EnvelopeRefused, EnvelopeVerifier, Refusal
from identity.errors import DepaiError, DidError
from ledger.checkpoint import Checkpoint
from ledger.journal import Ledger, LedgerError
from marketplace.market import AWARDED, OPEN, REFUNDED, SETTLED, Marketplace, Task
from spatial.mirror import SharedMap

PROPOSE_KIND = "dao.propose"
TASK_STATES = (OPEN, AWARDED, SETTLED, REFUNDED)


class ViewError(DepaiError, ValueError):
    """A request the dashboard answers with an error: ``status`` is the HTTP status, ``code`` the reason."""

    code = "view_refused"

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint)
        self.status = status

    def __str__(self) -> str:  # the message alone: the hint is a field of its own in the JSON answer
        return Exception.__str__(self)


class LedgerView:
    """The dashboard's reading of one ledger database: the DAO's revenue, tasks, governance and integrity."""

    def __init__(self, ledger: Ledger, dao: Dao, market: Marketplace, *,
                 names: Callable[[], Mapping[str, str]] = dict) -> None:
        """``names()`` maps DIDs to the short names the fleet gave them (robot-0, member-1, ...)."""
        self.ledger, self.dao, self.market, self.names = ledger, dao, market, names
        self.book = RevenueBook(ledger, dao.did, currency=dao.currency)
        self.ratings = RatingBook(ledger)

    @classmethod
    def open(cls, ledger_url: str, dao_did: str, *, currency: str = "EUR") -> LedgerView:
        """A read-only view of the ledger at ``ledger_url`` (its own connection) for the DAO ``dao_did``."""
        ledger = Ledger.open(ledger_url, None)
        return cls(ledger, Dao(ledger, dao_did, currency=currency), Marketplace(ledger, None))

    def close(self) -> None:
        """Close the view's database connection."""
        self.ledger.close()

    # --- money -----------------------------------------------------------------------------------------

    def revenue(self) -> dict[str, Any]:
        """The DAO's revenue by fleet hour and day, by robot (every robot the DAO has on the marketplace, those
        that earned nothing too) and by member, as of the newest entry; robots and members carry their names and
        come most-earning first (then by name), the order the revenue page's charts and tables both use."""
        self.book.refresh()
        _, rules, _ = self.dao.params()
        summary = self.book.summary(self.dao.members(), rules.as_dict())
        names = self.names()
        listed = {row["robot"] for row in summary["by_robot"]}
        summary["by_robot"] += [{"robot": did, "earned": 0, "tasks": 0} for did, record in self.market.records().items()
                                if record["owner"] == self.dao.did and did not in listed]
        for key, amount in (("robot", "earned"), ("member", "distributed")):
            rows = summary[f"by_{key}"]
            for row in rows:
                row["name"] = names.get(row[key] or "", "")
            rows.sort(key=lambda row, amount=amount, key=key: (-row[amount], _natural(row["name"] or row[key] or "")))
        return summary

    def revenue_tasks(self, limit: int = 1000) -> dict[str, Any]:
        """The newest settlements that paid the DAO (``limit`` of them, at most 10,000), newest first, with
        each robot's name; ``total`` counts them all."""
        self.book.refresh()
        rows = self.book.tasks(max(1, min(limit, 10_000)), self.names())
        return {"currency": self.dao.currency, "as_of": self.book.as_of, "total": self.book.settlements,
                "tasks": rows}

    def revenue_csv(self) -> str:
        """One CSV row per task that paid the DAO, naming its robot."""
        self.book.refresh()
        return self.book.csv(self.names())

    def revenue_members_csv(self) -> str:
        """One CSV row per member: name, DID, shares and what the split paid it, in the revenue page's order."""
        summary = self.revenue()
        return members_csv(summary["by_member"], summary["currency"])

    def tasks(self, state: str | None = None, limit: int = 200, robot: str | None = None) -> list[dict[str, Any]]:
        """The newest tasks, in one state when given; ``robot_name`` and ``customer_name`` are the names the fleet
        gave them (``""``: none)."""
        if state is not None and state not in TASK_STATES:
            raise ViewError(400, "bad_state", f"unknown task state {state!r}", f"use one of {', '.join(TASK_STATES)}")
        names = self.names()
        return [{**_task(task), "robot_name": names.get(task.robot or "", ""),
                 "customer_name": names.get(task.customer, "")}
                for task in self.market.recent(state, robot=robot, limit=max(1, min(limit, 1000)))]

    def robots(self) -> list[dict[str, Any]]:
        """Every robot on the marketplace, with its record and earnings."""
        earned = {row["robot"]: row for row in self.revenue()["by_robot"]}
        names = self.names()
        return [{"did": did, "name": names.get(did, ""), "owner": record["owner"],
                 "reputation": round(self.market.reputation(did), 4), "delivered": record["delivered"],
                 "failed": record["failed"] + record["faked"], "earned": earned.get(did, {}).get("earned", 0)}
                for did, record in self.market.records().items()]

    def robot(self, did: str) -> dict[str, Any]:
        """One robot: its record, earnings and tasks; ViewError 404 if the marketplace does not know it."""
        record = next((row for row in self.robots() if row["did"] == did), None)
        if record is None:
            raise ViewError(404, "unknown_robot", f"no robot {did} on this fleet's marketplace")
        earned = next((row for row in self.book.summary()["by_robot"] if row["robot"] == did),
                      {"earned": 0, "tasks": 0})
        return {**record, "earnings": {"currency": self.dao.currency, "total": earned["earned"],
                                       "tasks": earned["tasks"]},
                "tasks": self.tasks(robot=did, limit=100)}

    def rating(self, did: str, battery: float | None = None) -> dict[str, Any]:
        """The robot's credit rating and profit and loss (dashboard/rating.py), from the ledger's entries alone but
        for the energy line (from ``battery``, its last verified charge); ViewError 404 if no entry names it."""
        rated = self.ratings.rating(did, battery)
        if rated is None:
            raise ViewError(404, "unknown_robot", f"no ledger entry names a robot {did}")
        return rated

    def status(self) -> dict[str, Any]:
        """Counts of robots and tasks, and the money earned, as the ledger has them."""
        counts = self.market.counts()
        revenue = self.revenue()
        return {"robots": len(self.market.records()),
                "tasks": {"posted": sum(counts.values()), **counts},
                "revenue": {"currency": revenue["currency"], "earned": revenue["earned"],
                            "treasury": revenue["accounts"].get("treasury", 0)},
                "ledger": {"size": revenue["as_of"]}}

    # --- the DAO ---------------------------------------------------------------------------------------

    def dao_summary(self) -> dict[str, Any]:
        """Members, shares, claimable balances and nonces; the rules in force; the treasury."""
        params, rules, fee_bps = self.dao.params()
        balances = self.ledger.balances()
        names = self.names()
        members = [{"member": member, "name": names.get(member, ""), "shares": shares,
                    "claimable": balances.get(f"claimable:{self.dao.did}:{member}", 0),
                    "next_nonce": self.dao.next_nonce(member)}
                   for member, shares in sorted(self.dao.members().items())]
        return {"did": self.dao.did, "currency": self.dao.currency, "members": members,
                "params": _public(params), "split": rules.as_dict(), "fee_bps": fee_bps,
                "treasury": balances.get(f"treasury:{self.dao.did}", 0), "robot_bond": self.dao.robot_bond()}

    def proposals(self) -> list[dict[str, Any]]:
        """Every proposal, newest first, with its state, tally and votes."""
        return [self._proposal(p) for p in reversed(self.dao.proposals())]

    def _proposal(self, p: Proposal) -> dict[str, Any]:
        supply = self.dao.shares.total_at(p.timeline.snapshot_s)
        return {"id": p.id, "proposer": p.proposer, "description": p.description,
                "actions": [action.to_json() for action in p.actions], "state": str(p.state),
                "tally": {"for": p.tally.for_votes, "against": p.tally.against, "abstain": p.tally.abstain},
                "quorum": -(-supply * p.params.quorum_bps // 10_000),
                "timeline": {"created_s": p.timeline.created_s, "snapshot_s": p.timeline.snapshot_s,
                             "vote_start_s": p.timeline.snapshot_s, "vote_end_s": p.timeline.deadline_s},
                "eta_s": p.eta_s,
                "votes": [{"member": m, "support": s, "weight": w} for m, s, w in self.dao.votes(p.id)],
                "cost": self.dao.cost(p.actions).to_json(),  # price + bond per action, against the treasury now
                "execution_error": p.execution_error and p.execution_error.to_json()}

    # --- integrity -------------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The newest signed checkpoint; ViewError 404 before the first.

        ``public_key`` is the key the database says the ledger signs with: a verifier trusts nothing inside the
        database, so it checks the note against the ledger DID's key from the registry instead.
        """
        checkpoint, note = self._newest_checkpoint()
        return {"origin": checkpoint.origin, "size": checkpoint.size, "root": checkpoint.root.hex(), "note": note,
                "public_key": self.ledger.public_key.hex(), "ledger_did": None}

    def entry(self, seq: int) -> dict[str, Any]:
        """One journal entry: its fields, the exact content its leaf hash covers, the leaf hash and its signature."""
        try:
            entry = self.ledger.entry(seq)
        except LedgerError:
            raise ViewError(404, "unknown_entry", f"no ledger entry {seq}",
                            f"entries are numbered from 1; the ledger holds {self.ledger.size()}") from None
        return {"seq": entry.seq, "key": entry.key, "kind": entry.kind, "memo": entry.memo, "at_ms": entry.at_ms,
                "reverses": entry.reverses, "postings": [list(p) for p in entry.postings],
                "leaf_index": entry.seq - 1, "content": entry.content(), "leaf": entry.leaf.hex(),
                "sig": entry.sig.hex()}

    def inclusion(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """Entry ``seq``'s RFC 9162 audit path in the tree of ``size`` entries (the newest checkpoint's by default),
        with the size and root it answers against."""
        checkpoint, _ = self._newest_checkpoint()
        size = checkpoint.size if size is None else size
        if not 1 <= seq <= size <= self.ledger.size():
            raise ViewError(404, "not_in_tree", f"entry {seq} is not in a tree of {size} entries",
                            f"the newest checkpoint covers entries 1..{checkpoint.size}")
        # The newest checkpoint's tree answers with its signed root; any other size with the root recomputed.
        root = checkpoint.root if size == checkpoint.size else self.ledger.root(size)
        return {"seq": seq, "leaf_index": seq - 1, "size": size, "leaf": self.ledger.entry(seq).leaf.hex(),
                "proof": [node.hex() for node in self.ledger.inclusion_proof(seq, size)], "root": root.hex()}

    def consistency(self, old: int | None, new: int | None = None) -> dict[str, Any]:
        """The RFC 9162 proof that the tree of ``new`` entries (the newest checkpoint's by default) extends the
        tree of its first ``old``; ViewError 400 for sizes no proof joins, 404 before the first checkpoint."""
        checkpoint, _ = self._newest_checkpoint()
        new = checkpoint.size if new is None else new
        held = self.ledger.size()
        if old is None or old < 1:
            raise ViewError(400, "bad_old_size", f"old size {old} is not a tree to prove from: it is at least 1",
                            "ask from the size of the checkpoint you kept: ?old=SIZE")
        if old > new:
            raise ViewError(400, "old_beyond_new", f"old size {old} is beyond new size {new}: a ledger only grows",
                            "a checkpoint you kept that is larger than the newest one means the ledger was "
                            "rolled back")
        if new > held:
            raise ViewError(400, "beyond_ledger", f"new size {new} is beyond the ledger's {held} entries",
                            f"leave new out for the newest checkpoint's size ({checkpoint.size})")
        return {"old_size": old, "new_size": new,
                "proof": [node.hex() for node in self.ledger.consistency_proof(old, new)]}

    def _newest_checkpoint(self) -> tuple[Checkpoint, str]:
        latest = self.ledger.latest_checkpoint()
        if latest is None:
            raise ViewError(404, "no_checkpoint", "the ledger has not signed a checkpoint yet",
                            "the fleet signs one every few seconds while it runs")
        return latest


@dataclass
class Live:
    """The running fleet's parts the dashboard reads: in the fleet's process (the simulation thread writes them;
    the dashboard only takes copies, a dict copy being atomic in CPython), or fed from the bus in a process of
    its own (dashboard/live.py). ``map`` is the in-process MapService or a MapMirror of what it publishes."""

    telemetry: TelemetryBoard
    verifier: EnvelopeVerifier
    documents: Callable[[str], dict[str, Any]]
    # The fleet's counters: ``sim_s``, ``clock_s`` (the fleet's clock), ``robots`` (simulated robots running),
    # ``simulated`` (their DIDs), ``refused`` and ``market_refused`` (by reason), and the ingest's counters
    # (bus.ingest.Ingest.counters: ``accepted``, ``stale``, ``messages_by_robot``, ``refused_by_robot``,
    # ``robots_left_out``, ``lag_p50_s``, ``lag_p99_s``); any of the ingest's may be missing.
    counters: Callable[[], dict[str, Any]]
    map: SharedMap | None = None
    map_layout: dict[str, Any] = field(default_factory=dict)  # bounds, roads and places: fixed for a city
    ledger_did: str | None = None  # whose keys sign the ledger (the fleet descriptor's ``ledger``)


class FleetView(LedgerView):
    """A ``LedgerView`` of a running fleet: robots where they are now, the shared map, and signed writes."""

    def __init__(self, ledger: Ledger, dao: Dao, market: Marketplace, live: Live, *,
                 names: Callable[[], Mapping[str, str]] = dict) -> None:
        super().__init__(ledger, dao, market, names=names)
        self.live = live
        self._tiles: dict[tuple[int, int], tuple[int, bytes]] = {}  # tile -> (version, PNG)

    def checkpoint(self) -> dict[str, Any]:
        """The newest checkpoint, and the DID whose keys sign it (resolve it in the DID registry to verify)."""
        return {**super().checkpoint(), "ledger_did": self.live.ledger_did}

    def status(self) -> dict[str, Any]:
        """The ledger's counts and revenue, the fleet's clock and refusals, and its robots: simulated (run by the
        simulator) plus real (every other robot on the marketplace: bridged or speaking the protocol itself), and
        how many of them are online."""
        counters = self.live.counters()
        dids = list(self.market.records())
        seen, sessions = self.live.telemetry.latest(), self.live.telemetry.sessions()
        now = float(counters.get("clock_s") or 0.0)
        simulated = len(set(dids) & set(counters.get("simulated", ())))
        return {"name": "depai fleet", **super().status(),
                **{key: counters[key] for key in _STATUS_COUNTERS if key in counters},
                "robots": len(dids), "robots_simulated": simulated, "robots_real": len(dids) - simulated,
                "robots_online": sum(presence(seen.get(did), sessions.get(did), now) == "online" for did in dids)}

    def robots(self) -> list[dict[str, Any]]:
        """Every robot with where it is and what it is doing (its last verified telemetry), its trust, and whether
        it is online (dashboard/telemetry.py: ``state`` is ``offline`` after a verified death or
        ``OFFLINE_AFTER_S`` fleet seconds of silence), and how well peers' lidar bears out where it says it is
        (``witness``: the map's witnessed confidence and verdicts, None before the first verdict)."""
        return self._rows(self.live.counters())

    def _rows(self, counters: dict[str, Any]) -> list[dict[str, Any]]:
        trust = self.live.map.trust_weights() if self.live.map is not None else {}
        witnessed = {row["did"]: row for row in self.live.map.presence_report()} if self.live.map is not None else {}
        seen, sessions = self.live.telemetry.latest(), self.live.telemetry.sessions()
        simulated = set(counters.get("simulated", ()))
        now = float(counters.get("clock_s") or 0.0)
        rows = []
        for row in super().robots():
            did = row["did"]
            heard, session = seen.get(did), sessions.get(did)
            body = heard.body if heard is not None else {}
            pose = body.get("pose", {})
            here = presence(heard, session, now)
            fresh = heard is not None and (session is None or session.reported)  # telemetry of this session
            state = here if here != "online" else (body.get("state") or "unknown") if fresh else "online"
            last = max((t for t in (heard.at_s if heard else None, session.born_s if session else None)
                        if t is not None), default=None)
            rows.append({**row, "x": pose.get("x"), "y": pose.get("y"), "heading": pose.get("theta"),
                         "battery": body.get("battery"), "speed": body.get("twist", {}).get("v"),
                         "state": state, "online": here == "online", "simulated": did in simulated,
                         "task": body.get("task") if here == "online" else None,
                         "trust": round(trust[did], 4) if did in trust else None,
                         "seen_s": heard.at_s if heard is not None else None,
                         "witness": _witness(witnessed.get(did)),
                         "heard_ago_s": round(max(0.0, now - last), 1) if last is not None else None})
        return rows

    def robot(self, did: str) -> dict[str, Any]:
        """One robot: its DID document, trust, last telemetry, earnings and tasks, and what ingest counted for
        it: its accepted messages by kind and its refused ones by reason."""
        page = super().robot(did)  # its row of robots(): already with trust, state and when last heard
        heard = self.live.telemetry.latest().get(did)
        counters = self.live.counters()
        try:
            document = self.live.documents(did)
        except DidError:
            document = {}
        return {**page, "document": document, "telemetry": heard.body if heard is not None else None,
                "offline_after_s": OFFLINE_AFTER_S,
                "messages": counters.get("messages_by_robot", {}).get(did, {}),
                "refusals": counters.get("refused_by_robot", {}).get(did, {})}

    def rating(self, did: str, battery: float | None = None) -> dict[str, Any]:
        """The robot's rating, its energy priced from its last verified telemetry's battery."""
        heard = self.live.telemetry.latest().get(did)
        if battery is None and heard is not None and isinstance(heard.body.get("battery"), (int, float)):
            battery = heard.body["battery"]
        return super().rating(did, battery)

    def metrics(self) -> str:
        """The fleet's numbers in the Prometheus text format 0.0.4 (see docs/dashboard.md for each series)."""
        return exposition(self.status(), self.live.counters(), self.robots())

    def map(self) -> dict[str, Any]:
        """Tiles, road states and places of the shared map."""
        shared = self.live.map
        layout = self.live.map_layout
        if shared is None:
            return {**layout, "tiles": [], "graph_version": 0}
        side = shared.tile_side_m
        versions = shared.tile_versions()
        states = shared.road_states()
        roads = [{**road, "state": states.get(tuple(sorted((road["u"], road["v"]))), "free")}
                 for road in layout.get("roads", [])]
        return {**layout, "roads": roads, "tile_size_m": side, "graph_version": shared.graph_version,
                "tiles": [{"ix": ix, "iy": iy, "x": ix * side, "y": iy * side, "version": version,
                           "url": f"/api/map/tiles/{ix}/{iy}.png?v={version}"}
                          for (ix, iy), version in sorted(versions.items())]}

    def tile(self, ix: int, iy: int) -> bytes:
        """One tile of the shared map as a PNG; ViewError 404 for a tile nobody has seen."""
        shared = self.live.map
        version = shared.tile_versions().get((ix, iy)) if shared is not None else None
        if shared is None or version is None:
            raise ViewError(404, "unknown_tile", f"no map tile ({ix}, {iy}) yet")
        held = self._tiles.get((ix, iy))
        if held is None or held[0] != version:  # fuse and encode a tile once per version, not per viewer
            held = self._tiles[(ix, iy)] = (version, shared.tile_png((ix, iy)))
        return held[1]

    # --- signed writes ---------------------------------------------------------------------------------

    def vote(self, wire: bytes) -> dict[str, Any]:
        """Count a member's signed vote (a ``dao.vote`` envelope); the proposal as it stands after."""
        envelope = self._verified(wire, VOTE_KIND)
        return self._proposal(self._dao_call(lambda: self.dao.vote(envelope)))

    def propose(self, wire: bytes) -> dict[str, Any]:
        """Open a member's signed proposal (a ``dao.propose`` envelope); the new proposal."""
        envelope = self._verified(wire, PROPOSE_KIND)
        body = envelope.body
        if not isinstance(body, dict) or body.get("dao") != self.dao.did or not isinstance(body.get("id"), str) \
                or not isinstance(body.get("actions"), list) or not isinstance(body.get("description", ""), str):
            raise ViewError(400, "bad_proposal", f"a proposal body is {{dao: {self.dao.did}, id, actions: [...], "
                                                 "description}")
        return self._proposal(self._dao_call(lambda: self.dao.propose(envelope.issuer, body["id"], body["actions"],
                                                                      body.get("description", ""))))

    def _verified(self, wire: bytes, kind: str) -> Any:
        try:
            return self.live.verifier.verify(wire, kinds=(kind,))
        except EnvelopeRefused as err:
            status = 400 if err.reason in _MALFORMED else 401 if err.reason in _UNAUTHENTIC else 409
            raise ViewError(status, err.reason.value, str(err), err.hint) from None

    @staticmethod
    def _dao_call(call: Callable[[], Proposal]) -> Proposal:
        try:
            return call()
        except DaoError as err:
            status = {"not_a_member": 403, "unknown_proposal": 404}.get(err.code, 409)
            status = 400 if err.code in ("bad_vote", "bad_action", "wrong_kind") else status
            raise ViewError(status, err.code, str(err)) from None


_STATUS_COUNTERS = ("sim_s", "clock_s", "refused", "market_refused")  # the counters /api/status shows as they are

_MALFORMED = {Refusal.OVERSIZED, Refusal.MALFORMED_JSON, Refusal.NON_CANONICAL, Refusal.MALFORMED,
              Refusal.UNSUPPORTED_VERSION, Refusal.WRONG_KIND, Refusal.MALFORMED_DID, Refusal.TTL_TOO_LONG}
_UNAUTHENTIC = {Refusal.UNKNOWN_ISSUER, Refusal.UNKNOWN_KEY, Refusal.DEACTIVATED, Refusal.KEY_ROTATED,
                Refusal.KEY_NOT_YET_VALID, Refusal.BAD_SIGNATURE}


def _witness(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A robot's witnessed location for its row: the map's confidence (4 places), its verdict counts, the last
    verdict and when (``last_t``, ms) and when a peer last saw it (``seen_t``, ms); None before any verdict."""
    if report is None:
        return None
    return {"confidence": round(report["confidence"], 4),
            **{key: report[key] for key in ("seen", "unseen", "impossible", "last", "last_t", "seen_t")}}


def _task(task: Task) -> dict[str, Any]:
    return {"id": task.id, "state": task.state, "customer": task.customer, "robot": task.robot, "price": task.price,
            "max_price": task.max_price, "currency": task.currency, "deadline_ms": task.deadline_ms,
            "dropoff": list(task.dropoff), "outcome": task.outcome}


@functools.lru_cache(maxsize=8192)  # the same few hundred names on every /api/revenue
def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that puts robot-2 before robot-10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def _public(params: Any) -> dict[str, Any]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}
