"""The task marketplace: escrow on posting, signed bids, awards, proof of delivery, settlement exactly once.

Money moves only through the ledger, in integer minor units:

    post      customer -> escrow:<task>                  (the task's max_price, locked)
    settle    escrow:<task> -> owner of the robot         (price - fee)
              escrow:<task> -> fees:<currency>            (fee = price * fee_bps // 10000)
              escrow:<task> -> customer                   (max_price - price, the unspent rest)
    refund    escrow:<task> -> customer                   (everything: expired, failed or faked)
    slash     bond:<robot> -> customer                    (a share of the bond, for a failed or faked delivery)

A task moves open -> awarded -> settled, or open/awarded -> refunded. Every
move is a compare-and-set on the task's state in the same database
transaction as its ledger entry, and every entry carries an idempotency key
derived from the task: a process killed at any point and run again finds each
task either before or after a move, never half-way, and a repeated request
finds the move already made. The marketplace signs awards and announcements;
customers, robots and recipients sign what they send (verified before it
arrives here).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from identity.canonical import canonicalize
from identity.envelope import Envelope, EnvelopeSigner
from identity.errors import DepaiError
from ledger.db import Cursor, IntegrityError
from ledger.journal import MAX_AMOUNT, InsufficientFunds, Ledger, LedgerError
from marketplace.auction import EVALUATORS, Offer, award
from marketplace.proof import Sighting, Trails, Verdict, WitnessRule, check_receipt, judge_presence

OPEN, AWARDED, SETTLED, REFUNDED = "open", "awarded", "settled", "refunded"
# the record entries of what moves no money but decides where it goes (marketplace/audit.py reads them back)
TASK_AWARD, TASK_RELEASE, ROBOT_REGISTER, ROBOT_RETIRE = "task.award", "task.release", "robot.register", "robot.retire"
FAIL_SLASH_BPS = 1_000  # a failed delivery costs a tenth of the bond ...
FAKE_SLASH_BPS = 10_000  # ... a faked one all of it
MIN_BOND = -(-10_000 // FAIL_SLASH_BPS)  # the least bond that bids: a failure's slash of it is at least one unit

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS market_robots (
        robot TEXT PRIMARY KEY, owner TEXT NOT NULL, currency TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, faked INTEGER NOT NULL DEFAULT 0,
        retired INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS market_tasks (
        id TEXT PRIMARY KEY, customer TEXT NOT NULL, body TEXT NOT NULL, task_hash TEXT NOT NULL,
        currency TEXT NOT NULL, max_price BIGINT NOT NULL, deadline_ms BIGINT NOT NULL,
        dropoff_x DOUBLE PRECISION NOT NULL, dropoff_y DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL, robot TEXT, price BIGINT, bid_hash TEXT, award_hash TEXT, outcome TEXT)""",
    """CREATE TABLE IF NOT EXISTS market_bids (
        task TEXT NOT NULL, robot TEXT NOT NULL, price BIGINT NOT NULL, eta_ms BIGINT NOT NULL,
        bid_hash TEXT NOT NULL, PRIMARY KEY (task, robot))""",
    # receipts that passed their own checks but that no peer has witnessed yet (docs/marketplace.md#proof-of-delivery)
    """CREATE TABLE IF NOT EXISTS market_held (
        task TEXT PRIMARY KEY, robot TEXT NOT NULL, receipt_ms BIGINT NOT NULL, arrived_ms BIGINT NOT NULL)""",
    # the map service's verified verdicts on robots' claimed poses (map.presence), kept for PRESENCE_KEEP_S
    """CREATE TABLE IF NOT EXISTS market_presence (
        robot TEXT NOT NULL, t BIGINT NOT NULL, x DOUBLE PRECISION NOT NULL, y DOUBLE PRECISION NOT NULL,
        verdict TEXT NOT NULL, PRIMARY KEY (robot, t, verdict, x, y))""",
]
PRESENCE_KEEP_S = 3_600.0  # longer than any task's life: verdicts since a task's award are what judge it


_TASK_COLUMNS = ("id, customer, currency, max_price, deadline_ms, dropoff_x, dropoff_y, state, robot, price, "
                 "task_hash, outcome")


def _task_of(r: Sequence[Any]) -> Task:
    return Task(r[0], r[1], r[2], int(r[3]), int(r[4]), (float(r[5]), float(r[6])), r[7], r[8],
                None if r[9] is None else int(r[9]), r[10], r[11])


class MarketError(DepaiError, ValueError):
    """A request the marketplace refuses; ``code`` names the reason (for counting) and nothing changed."""

    code = "market_refused"

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint)


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the marketplace holds it."""

    id: str
    customer: str
    currency: str
    max_price: int
    deadline_ms: int
    dropoff: tuple[float, float]
    state: str
    robot: str | None
    price: int | None
    task_hash: str
    outcome: str | None


def envelope_hash(envelope: Envelope) -> str:
    """The hex SHA-256 of a signed envelope's exact bytes: what an award binds."""
    return hashlib.sha256(envelope.wire).hexdigest()


class Marketplace:
    """Tasks, bids, awards and settlement over one ledger (and the same database)."""

    def __init__(self, ledger: Ledger, signer: EnvelopeSigner | None, *, fee_bps: int = 500, min_bond: int = 1,
                 recipient_keys: Callable[[str], bytes | None] = lambda did: None,
                 clock: Callable[[], float] = time.time, witness: WitnessRule | None = None) -> None:
        """``witness``: judge receipts also by peers' sightings (map.presence; see ``record_presence``); None: by
        the robot's own trail and the dropoff alone."""
        if not 0 <= fee_bps <= 10_000:
            raise ValueError(f"fee_bps must be within 0..10000, got {fee_bps}")
        self.ledger, self.signer, self.fee_bps = ledger, signer, fee_bps
        self.min_bond = max(_amount("min_bond", min_bond), MIN_BOND)  # so no slash of a bond that bids rounds to 0
        self.recipient_keys, self.clock = recipient_keys, clock
        self.witness = witness
        self.trails = Trails()
        self.db = ledger.db
        self.db.script(_SCHEMA)
        if "awarded_ms" not in self.db.columns("market_tasks"):  # a database from before witnessed presence
            self.db.script(["ALTER TABLE market_tasks ADD COLUMN awarded_ms BIGINT"])
        self._next_prune = -math.inf

    @property
    def did(self) -> str:
        """The marketplace's DID: robots trust its awards."""
        return self._signer().did

    # --- money in ------------------------------------------------------------------------------------

    def fund(self, did: str, amount: int, currency: str, *, key: str, role: str = "customer") -> None:
        """Credit a customer's (or a robot owner's) account from outside the system, once per ``key``."""
        if role not in ("customer", "owner"):
            raise ValueError(f"role must be customer or owner, got {role!r}")
        _amount("a deposit", amount)  # a negative deposit would be a withdrawal to the world
        world = self._open(f"world:{currency}", currency, "world", may_go_negative=True)
        wallet = self._open(f"{role}:{did}", currency, role, owner=did)
        self.ledger.post(f"fund:{key}", {world: -amount, wallet: amount}, kind="deposit", memo=f"deposit {key}",
                         refs={role: did})

    def register_robot(self, robot: str, owner: str, bond: int, currency: str) -> None:
        """Admit a robot to bid: its owner posts a bond (from the owner's account) that failures are slashed from.

        Once per robot: registering it again (a fleet resuming) changes nothing; ``post_bond`` tops a bond up.
        ``bond`` is 0 (admitted, but it may not bid until a bond is posted) or at least ``min_bond``.
        """
        if bond != 0 and _amount("bond", bond) < self.min_bond:
            raise MarketError("bad_bond", f"a bond is 0 or at least {self.min_bond} minor units (a failure's slash "
                                          f"must never round to nothing), got {bond}")
        owner_account = self._open(f"owner:{owner}", currency, "owner", owner=owner)
        bond_account = self._open(f"bond:{robot}", currency, "bond", owner=robot)

        def work(c: Cursor) -> None:
            held = c.execute("SELECT owner, currency, retired FROM market_robots WHERE robot = ?", (robot,)).fetchone()
            if held is not None and tuple(held[:2]) != (owner, currency):
                raise MarketError("robot_taken", f"robot {robot} is registered to {held[0]} in {held[1]}")
            if held is not None and held[2]:
                raise MarketError("retired", f"robot {robot} was retired: nothing is posted for it",
                                  hint="a retired robot's remaining bond goes back with release_bond")
            if held is not None:
                return
            c.execute("INSERT INTO market_robots (robot, owner, currency) VALUES (?, ?, ?)", (robot, owner, currency))
            self.ledger.record(f"robot:{robot}:register", ROBOT_REGISTER,
                               {"robot": robot, "owner": owner, "currency": currency}, cursor=c)
            if bond:
                self.ledger.post(f"bond:{robot}:{bond}", {owner_account: -bond, bond_account: bond}, kind="bond",
                                 memo=f"bond of {robot}", refs={"robot": robot, "owner": owner}, cursor=c)

        self._run(work)

    def post_bond(self, robot: str, amount: int, *, key: str) -> None:
        """The owner tops up an active robot's bond by ``amount``, once per ``key`` (its own idempotency key: a
        second top-up of the same amount is a new ``key``, not a repeat of the first bond)."""
        _amount("bond", amount)
        if type(key) is not str or not key:
            raise MarketError("bad_key", "a bond top-up needs its own non-empty idempotency key")

        def work(c: Cursor) -> None:
            held = c.execute("SELECT owner, retired FROM market_robots WHERE robot = ?", (robot,)).fetchone()
            if held is None or held[1]:
                raise MarketError("unknown_robot", f"{robot} is not an active robot of this marketplace")
            self.ledger.post(f"bond:{robot}:topup:{key}", {f"owner:{held[0]}": -amount, f"bond:{robot}": amount},
                             kind="bond", memo=f"bond top-up of {robot}", refs={"robot": robot, "owner": held[0]},
                             cursor=c)

        try:
            self._run(work)
        except InsufficientFunds as err:
            raise MarketError("insufficient_funds", str(err)) from None

    def retire_robot(self, robot: str) -> int:
        """Take a robot off the market: its bids are withdrawn, it bids no more, and what is left of its bond goes
        back to its owner."""

        def work(c: Cursor) -> int:
            held = c.execute("SELECT owner, currency FROM market_robots WHERE robot = ? AND retired = 0",
                             (robot,)).fetchone()
            if held is None:
                raise MarketError("unknown_robot", f"{robot} is not an active robot of this marketplace")
            c.execute("UPDATE market_robots SET retired = 1 WHERE robot = ? AND retired = 0", (robot,))
            c.execute("DELETE FROM market_bids WHERE robot = ?", (robot,))  # its standing bids go with it
            self.ledger.record(f"robot:{robot}:retire", ROBOT_RETIRE, {"robot": robot, "owner": held[0]}, cursor=c)
            return self._return_bond(c, robot, held[0], "retired")

        return self.db.run(work)

    def release_bond(self, robot: str) -> int:
        """Give a retired robot's remaining bond back to its owner (a task it still held when retired may have been
        slashed, or settled, since); how much moved. Refused while the robot is active or still holds a task."""

        def work(c: Cursor) -> int:
            held = c.execute("SELECT owner, retired FROM market_robots WHERE robot = ?", (robot,)).fetchone()
            if held is None or not held[1]:
                raise MarketError("not_retired", f"{robot} is not a retired robot: its bond backs its bids",
                                  hint="retire it first (retire_robot returns its bond)")
            if c.execute("SELECT 1 FROM market_tasks WHERE robot = ? AND state = ?", (robot, AWARDED)).fetchone():
                raise MarketError("still_awarded", f"{robot} still holds an awarded task; its bond answers for it")
            return self._return_bond(c, robot, held[0], "released")

        return self.db.run(work)

    def _return_bond(self, c: Cursor, robot: str, owner: str, why: str) -> int:
        """Move what is left of ``robot``'s bond to its owner (keyed by the bond's postings so far); how much."""
        bond = self.ledger.balance(f"bond:{robot}", cursor=c)
        if bond > 0:
            key = "return" if why == "retired" else f"release:{self.ledger.postings_count(f'bond:{robot}', cursor=c)}"
            self.ledger.post(f"bond:{robot}:{key}", {f"bond:{robot}": -bond, f"owner:{owner}": bond},
                             kind="bond.return", memo=f"{robot} {why}", refs={"robot": robot, "owner": owner},
                             cursor=c)
        return max(bond, 0)

    # --- tasks ---------------------------------------------------------------------------------------

    def post(self, envelope: Envelope) -> Task:
        """Take a customer's verified, signed task: lock its max_price in escrow and open it (once per id)."""
        if envelope.kind != "task":
            raise MarketError("wrong_kind", f"expected a task, got {envelope.kind}")
        body = envelope.body
        if body["customer"] != envelope.issuer:
            raise MarketError("not_the_customer", f"{envelope.issuer} signed a task for customer {body['customer']}")
        if body["deadline"] <= self._now_ms():
            raise MarketError("past_deadline", f"task {body['id']} has a deadline in the past")
        currency, price = body["currency"], body["max_price"]
        if type(price) is not int or not 1 <= price <= MAX_AMOUNT:
            raise MarketError("bad_price", f"max_price must be a whole number of minor units from 1 to {MAX_AMOUNT}, "
                                           f"got {price!r}")
        task_hash = hashlib.sha256(canonicalize(body)).hexdigest()
        wallet, escrow = f"customer:{envelope.issuer}", f"escrow:{body['id']}"

        def work(c: Cursor) -> None:
            held = c.execute("SELECT task_hash FROM market_tasks WHERE id = ?", (body["id"],)).fetchone()
            if held is not None:
                if held[0] != task_hash:
                    raise MarketError("duplicate_task", f"task id {body['id']} is taken by a different task")
                return  # the same task again: already posted
            self._open(wallet, currency, "customer", owner=envelope.issuer, cursor=c)
            self._open(escrow, currency, "escrow", owner=body["id"], cursor=c)
            self.ledger.post(f"task:{body['id']}:escrow", {wallet: -price, escrow: price}, kind="escrow.lock",
                             memo=f"escrow for {body['id']}", cursor=c,
                             refs={"task": body["id"], "customer": envelope.issuer, "task_hash": task_hash,
                                   "deadline_ms": body["deadline"], "state": OPEN})
            c.execute("INSERT INTO market_tasks (id, customer, body, task_hash, currency, max_price, deadline_ms, "
                      "dropoff_x, dropoff_y, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (body["id"], envelope.issuer, canonicalize(body).decode(), task_hash, currency, price,
                       body["deadline"], float(body["dropoff"]["x"]), float(body["dropoff"]["y"]), OPEN))

        try:
            self._run(work)
        except InsufficientFunds as err:
            raise MarketError("insufficient_funds", str(err)) from None
        return self.task(body["id"])

    def announcement(self, task_id: str) -> bytes:
        """The task as the marketplace announces it on the bus: its body, signed by the marketplace."""
        rows = self.db.read("SELECT body FROM market_tasks WHERE id = ?", (task_id,))
        if not rows:
            raise MarketError("unknown_task", f"no task {task_id}")
        return self._signer().seal("task", orjson.loads(rows[0][0]))

    def task(self, task_id: str) -> Task:
        """The task's current state."""
        rows = self.db.read(f"SELECT {_TASK_COLUMNS} FROM market_tasks WHERE id = ?", (task_id,))
        if not rows:
            raise MarketError("unknown_task", f"no task {task_id}")
        return _task_of(rows[0])

    def tasks(self, state: str | None = None) -> list[Task]:
        """Every task (in one state), by id."""
        where, params = (" WHERE state = ?", (state,)) if state else ("", ())
        return [_task_of(r) for r in self.db.read(f"SELECT {_TASK_COLUMNS} FROM market_tasks{where} ORDER BY id",
                                                   params)]

    def recent(self, state: str | None = None, *, robot: str | None = None, limit: int = 200) -> list[Task]:
        """The newest tasks (latest deadline first), in one state and of one robot when given: what a page shows."""
        terms = [(column, value) for column, value in (("state", state), ("robot", robot)) if value is not None]
        where = " WHERE " + " AND ".join(f"{column} = ?" for column, _ in terms) if terms else ""
        rows = self.db.read(f"SELECT {_TASK_COLUMNS} FROM market_tasks{where} ORDER BY deadline_ms DESC, id DESC "
                            "LIMIT ?", (*(value for _, value in terms), limit))
        return [_task_of(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state (states without tasks at 0)."""
        held = {state: int(n) for state, n in self.db.read("SELECT state, COUNT(*) FROM market_tasks GROUP BY state")}
        return {state: held.get(state, 0) for state in (OPEN, AWARDED, SETTLED, REFUNDED)}

    def records(self) -> dict[str, dict[str, Any]]:
        """Every registered robot's owner and its delivered, failed and faked task counts."""
        return {robot: {"owner": owner, "delivered": int(d), "failed": int(f), "faked": int(k)}
                for robot, owner, d, f, k in self.db.read(
                    "SELECT robot, owner, delivered, failed, faked FROM market_robots ORDER BY robot")}

    # --- bids and awards -----------------------------------------------------------------------------

    def bid(self, envelope: Envelope) -> None:
        """Record a robot's verified bid on an open task (its latest bid counts)."""
        body, robot = envelope.body, envelope.issuer
        if envelope.kind != "bid":
            raise MarketError("wrong_kind", f"expected a bid, got {envelope.kind}")

        def work(c: Cursor) -> None:
            task = c.execute("SELECT state, currency, max_price FROM market_tasks WHERE id = ?",
                             (body["task"],)).fetchone()
            if task is None:
                raise MarketError("unknown_task", f"no task {body['task']}")
            if task[0] != OPEN:
                raise MarketError("not_open", f"task {body['task']} is {task[0]}")
            member = c.execute("SELECT currency, retired FROM market_robots WHERE robot = ?", (robot,)).fetchone()
            if member is None or member[1]:
                raise MarketError("unknown_robot", f"{robot} is not a registered robot of this marketplace"
                                  + (" (it was retired)" if member is not None else ""))
            price, eta = body.get("price"), body.get("eta_ms")
            if body.get("currency") != task[1] or type(price) is not int or not 1 <= price <= int(task[2]):
                raise MarketError("bad_price", f"the bid must be a whole number of minor units of {task[1]} from 1 "
                                               f"to the task's {task[2]}, got {price!r}")
            if type(eta) is not int or not 0 <= eta <= MAX_AMOUNT:
                raise MarketError("bad_eta", f"eta_ms must be a whole number of ms from 0, got {eta!r}")
            if self.ledger.balance(f"bond:{robot}", cursor=c) < self.min_bond:
                raise MarketError("no_bond", f"{robot}'s bond is below {self.min_bond}")
            c.execute("DELETE FROM market_bids WHERE task = ? AND robot = ?", (body["task"], robot))
            c.execute("INSERT INTO market_bids (task, robot, price, eta_ms, bid_hash) VALUES (?, ?, ?, ?, ?)",
                      (body["task"], robot, body["price"], body["eta_ms"], envelope_hash(envelope)))

        self._run(work)

    def offers(self, task_id: str) -> list[Offer]:
        """The task's bids as auction offers, with each robot's reputation."""
        rows = self.db.read("SELECT robot, price, eta_ms FROM market_bids WHERE task = ? ORDER BY robot", (task_id,))
        return [Offer(task_id, robot, int(price), int(eta) / 1000.0, self.reputation(robot))
                for robot, price, eta in rows]

    def award(self, task_id: str, evaluator: str = "cheapest") -> bytes | None:
        """Award an open task to its best bid (by ``evaluator``); the signed award, or None with no bids."""
        best = award(self.offers(task_id), EVALUATORS[evaluator])
        return None if best is None else self.award_to(task_id, best.robot)

    def award_to(self, task_id: str, robot: str) -> bytes:
        """Award an open task to ``robot``'s bid: a compare-and-set open -> awarded; the award is single-use."""
        task = self.task(task_id)
        rows = self.db.read("SELECT price, bid_hash FROM market_bids WHERE task = ? AND robot = ?", (task_id, robot))
        if not rows:
            raise MarketError("no_bid", f"{robot} has no bid on {task_id}")
        price, bid_hash = int(rows[0][0]), rows[0][1]
        body = {"task": task_id, "robot": robot, "task_hash": task.task_hash, "bid_hash": bid_hash, "price": price,
                "currency": task.currency}
        sealed = self._signer().seal("award", body)
        award_hash = hashlib.sha256(sealed).hexdigest()

        def work(c: Cursor) -> None:
            if self.ledger.balance(f"bond:{robot}", cursor=c) < self.min_bond:  # slashed below it since it bid
                raise MarketError("no_bond", f"{robot}'s bond is below {self.min_bond}: it may not be awarded")
            c.execute("UPDATE market_tasks SET state = ?, robot = ?, price = ?, bid_hash = ?, award_hash = ?, "
                      "awarded_ms = ? WHERE id = ? AND state = ?",
                      (AWARDED, robot, price, bid_hash, award_hash, self._now_ms(), task_id, OPEN))
            if c.rowcount != 1:
                raise MarketError("not_open", f"task {task_id} is no longer open")
            self.ledger.record(f"task:{task_id}:award:{award_hash[:32]}", TASK_AWARD,
                               {"task": task_id, "robot": robot, "price": price, "bid_hash": bid_hash,
                                "award_hash": award_hash, "state": AWARDED}, cursor=c)

        self._run(work)
        return sealed

    # --- outcomes ------------------------------------------------------------------------------------

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: verified telemetry builds each robot's trail for proofs of delivery."""
        if envelope.kind == "telemetry":
            pose = envelope.body["pose"]
            self.trails.add(envelope.issuer, envelope.body["t"], float(pose["x"]), float(pose["y"]))

    def deliver(self, envelope: Envelope) -> Task:
        """Judge a robot's verified receipt: settle on a valid proof; refund and slash a faked one."""
        outcome = self.deliver_many([envelope])[0]
        if isinstance(outcome, MarketError):
            raise outcome
        return outcome

    def deliver_many(self, envelopes: Sequence[Envelope]) -> list[Task | MarketError]:
        """Judge many receipts and commit their settlements and refunds together (a group commit: one flush to
        disk for all); each is its own savepoint, so one refused receipt leaves the others' outcome as it is."""
        judged: list[tuple[Task, Callable[[Cursor], None]] | MarketError] = []
        for envelope in envelopes:
            try:
                judged.append(self._judge(envelope))
            except MarketError as err:
                judged.append(err)

        def work(c: Cursor) -> list[str | MarketError]:
            done: list[str | MarketError] = []
            for item in judged:
                if isinstance(item, MarketError):
                    done.append(item)
                    continue
                task, move = item
                c.execute("SAVEPOINT receipt")
                try:
                    move(c)
                except (MarketError, LedgerError, IntegrityError) as err:
                    c.execute("ROLLBACK TO SAVEPOINT receipt")
                    done.append(err if isinstance(err, MarketError) else MarketError("ledger_refused", str(err)))
                else:
                    done.append(task.id)
                c.execute("RELEASE SAVEPOINT receipt")
            return done

        return [item if isinstance(item, MarketError) else self.task(item) for item in self.db.run(work)]

    def _judge(self, envelope: Envelope) -> tuple[Task, Callable[[Cursor], None]]:
        """The task a receipt is for and the move it calls for (settle, or refund and slash a fake)."""
        if envelope.kind != "receipt":
            raise MarketError("wrong_kind", f"expected a receipt, got {envelope.kind}")
        task = self.task(envelope.body["task"])
        if task.state != AWARDED:
            raise MarketError("not_awarded", f"task {task.id} is {task.state}; nothing to settle")
        verdict = check_receipt(robot=envelope.issuer, awarded_to=task.robot or "", receipt=envelope.body,
                                dropoff=task.dropoff, trails=self.trails,
                                recipient_key=lambda: self.recipient_keys(task.customer))
        if envelope.issuer != task.robot or verdict.reason.startswith("no_evidence"):
            raise MarketError(verdict.reason.split(":")[0], verdict.reason)
        if verdict.accepted and self.witness is not None and envelope.body.get("recipient") is None:
            receipt_ms, now = int(envelope.body["t"]), self._now_ms()
            verdict = self._witnessed(task, receipt_ms, now)
            if verdict.held:
                return task, lambda c: self._hold_in(c, task, receipt_ms, now)
        return task, self._outcome(task, verdict)

    def _outcome(self, task: Task, verdict: Verdict) -> Callable[[Cursor], None]:
        """The move a final verdict calls for: settle; refund unwitnessed without blame; refund and slash a fake.
        Either way a held receipt of the task is done with, in the same transaction."""
        def move(c: Cursor) -> None:
            c.execute("DELETE FROM market_held WHERE task = ?", (task.id,))
            if verdict.accepted:
                self._settle_in(c, task)
            elif verdict.reason.startswith("unwitnessed"):
                self._refund_in(c, task, AWARDED, verdict.reason, slash_bps=0, count=None)
            else:
                self._refund_in(c, task, AWARDED, f"faked: {verdict.reason}", slash_bps=FAKE_SLASH_BPS,
                                count="faked")
        return move

    # --- witnessed presence --------------------------------------------------------------------------

    def record_presence(self, verdicts: Sequence[dict[str, Any]]) -> int:
        """Keep the map service's verified verdicts (a map.presence body's ``verdicts``); how many were new."""
        now = self._now_ms()
        prune = now >= self._next_prune  # once a minute, verdicts older than PRESENCE_KEEP_S go

        def work(c: Cursor) -> int:
            added = 0
            for v in verdicts:
                c.execute("INSERT INTO market_presence (robot, t, x, y, verdict) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT DO NOTHING", (v["robot"], int(v["t"]), float(v["x"]), float(v["y"]),
                                                     v["verdict"]))
                added += c.rowcount
            if prune:
                c.execute("DELETE FROM market_presence WHERE t < ?", (now - int(PRESENCE_KEEP_S * 1000),))
            return added

        added = self.db.run(work) if verdicts or prune else 0
        if prune:
            self._next_prune = now + 60_000
        return added

    def sightings(self, robot: str, since_ms: int) -> list[Sighting]:
        """The map service's verdicts on ``robot``'s claimed poses from ``since_ms`` on, oldest first."""
        return [Sighting(int(t), float(x), float(y), verdict) for t, x, y, verdict in self.db.read(
            "SELECT t, x, y, verdict FROM market_presence WHERE robot = ? AND t >= ? ORDER BY t", (robot, since_ms))]

    def held(self) -> dict[str, tuple[int, int]]:
        """Receipts held for a witness: task -> (the receipt's time, when it arrived), in ms."""
        return {task: (int(t), int(arrived)) for task, t, arrived in
                self.db.read("SELECT task, receipt_ms, arrived_ms FROM market_held ORDER BY task")}

    def judge_held(self) -> list[Task]:
        """Judge every held receipt again on the verdicts kept since: the tasks settled or refunded now."""
        done = []
        for task_id, (receipt_ms, arrived_ms) in self.held().items():
            task = self.task(task_id)
            if self.witness is None:  # a marketplace that no longer asks for witnesses pays what passed its checks
                verdict = Verdict(True)
            else:
                verdict = self._witnessed(task, receipt_ms, arrived_ms) if task.state == AWARDED else Verdict(False)
            if verdict.held:
                continue
            if task.state != AWARDED:  # settled by a countersigned receipt, or refunded, meanwhile
                self._run(lambda c, task_id=task_id: c.execute("DELETE FROM market_held WHERE task = ?", (task_id,)))
                continue
            try:
                self._run(self._outcome(task, verdict))
            except MarketError:
                continue  # moved meanwhile: the next turn finds it done
            done.append(self.task(task_id))
        return done

    def _witnessed(self, task: Task, receipt_ms: int, arrived_ms: int) -> Verdict:
        """The verdict of peers' sightings on ``task``'s receipt (paid, refused or held)."""
        assert self.witness is not None and task.robot is not None
        body, awarded = self.db.read("SELECT body, awarded_ms FROM market_tasks WHERE id = ?", (task.id,))[0]
        pickup = orjson.loads(body)["pickup"]
        # a task awarded before awarded_ms was kept is judged over the hold period before its receipt
        since = int(awarded) if awarded is not None else receipt_ms - int(self.witness.hold_s * 1000)
        return judge_presence(self.sightings(task.robot, since), pickup=(float(pickup["x"]), float(pickup["y"])),
                              dropoff=task.dropoff, awarded_ms=since, receipt_ms=receipt_ms, arrived_ms=arrived_ms,
                              now_ms=self._now_ms(), rule=self.witness)

    @staticmethod
    def _hold_in(c: Cursor, task: Task, receipt_ms: int, arrived_ms: int) -> None:
        """Within transaction ``c``: keep a receipt for judging again (its first arrival counts; no money moves)."""
        c.execute("INSERT INTO market_held (task, robot, receipt_ms, arrived_ms) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT DO NOTHING", (task.id, task.robot, receipt_ms, arrived_ms))

    def withdraw_bids(self, robot: str) -> int:
        """Withdraw ``robot``'s bids on open tasks (it restarted: what its earlier session offered it no longer
        knows, and would refuse if awarded); how many were withdrawn."""
        on_open = "robot = ? AND task IN (SELECT id FROM market_tasks WHERE state = ?)"
        if not self.db.read(f"SELECT task FROM market_bids WHERE {on_open}", (robot, OPEN)):
            return 0

        def work(c: Cursor) -> int:
            c.execute(f"DELETE FROM market_bids WHERE {on_open}", (robot, OPEN))
            return c.rowcount

        return self._run(work)

    def release(self, task_id: str, robot: str) -> Task:
        """Withdraw ``robot``'s award without blame (it restarted and forgot its work): the task is open again, the
        bid it won is gone, its escrow stays locked for the next award, and nobody is slashed."""

        def work(c: Cursor) -> None:
            held = c.execute("SELECT award_hash FROM market_tasks WHERE id = ? AND state = ? AND robot = ?",
                             (task_id, AWARDED, robot)).fetchone()
            c.execute("UPDATE market_tasks SET state = ?, robot = NULL, price = NULL, bid_hash = NULL, "
                      "award_hash = NULL WHERE id = ? AND state = ? AND robot = ?", (OPEN, task_id, AWARDED, robot))
            if held is None or c.rowcount != 1:
                raise MarketError("not_awarded", f"task {task_id} is not awarded to {robot}")
            c.execute("DELETE FROM market_bids WHERE task = ? AND robot = ?", (task_id, robot))
            self.ledger.record(f"task:{task_id}:release:{held[0][:32]}", TASK_RELEASE,
                               {"task": task_id, "robot": robot, "state": OPEN}, cursor=c)

        self._run(work)
        return self.task(task_id)

    def fail(self, task_id: str, robot: str, why: str) -> Task:
        """The awarded robot reports it failed: the customer is refunded and the robot's bond slashed a little."""
        task = self.task(task_id)
        if task.state != AWARDED or task.robot != robot:
            raise MarketError("not_awarded", f"task {task_id} is not awarded to {robot}")
        return self._refund(task, AWARDED, f"failed: {why}", slash_bps=FAIL_SLASH_BPS, count="failed")

    def expire(self, blameless: Callable[[str], bool] = lambda robot: False) -> list[Task]:
        """Refund every open or awarded task past its deadline; an awarded one also slashes its robot, unless
        ``blameless(robot)`` (say, a robot not heard from since the fleet came back from a crash)."""
        now = self._now_ms()
        done = []
        held = self.held()  # delivered in time, waiting for a witness: judged by judge_held, not by the deadline
        for task in self.tasks(OPEN) + self.tasks(AWARDED):
            if task.deadline_ms <= now and task.id not in held:
                blamed = task.state == AWARDED and task.robot is not None and not blameless(task.robot)
                try:
                    done.append(self._refund(task, task.state, "expired", slash_bps=FAIL_SLASH_BPS if blamed else 0,
                                             count="failed" if blamed else None))
                except MarketError:
                    continue  # it moved meanwhile (settled just in time): nothing to expire
        return done

    def _settle_in(self, c: Cursor, task: Task) -> None:
        """Within transaction ``c``: awarded -> settled, escrow to the owner, the fee and the customer's change."""
        assert task.robot is not None and task.price is not None
        owner = c.execute("SELECT owner FROM market_robots WHERE robot = ?", (task.robot,)).fetchone()[0]
        fee = task.price * self.fee_bps // 10_000
        lines = {f"owner:{owner}": task.price - fee, f"fees:{task.currency}": fee,
                 f"customer:{task.customer}": task.max_price - task.price}
        self._move(c, task.id, AWARDED, SETTLED, "delivered")
        self._open(f"fees:{task.currency}", task.currency, "fees", cursor=c)
        self._open(f"owner:{owner}", task.currency, "owner", owner=owner, cursor=c)
        self.ledger.post(f"task:{task.id}:settle",
                         {f"escrow:{task.id}": -task.max_price, **{a: n for a, n in lines.items() if n}},
                         kind="escrow.release", memo=f"delivered by {task.robot}", cursor=c,
                         refs={"task": task.id, "robot": task.robot, "owner": owner, "customer": task.customer,
                               "price": task.price, "state": SETTLED, "outcome": "delivered"})
        c.execute("UPDATE market_robots SET delivered = delivered + 1 WHERE robot = ?", (task.robot,))

    def _refund(self, task: Task, expected: str, outcome: str, *, slash_bps: int, count: str | None) -> Task:
        self._run(lambda c: self._refund_in(c, task, expected, outcome, slash_bps=slash_bps, count=count))
        return self.task(task.id)

    def _refund_in(self, c: Cursor, task: Task, expected: str, outcome: str, *, slash_bps: int,
                   count: str | None) -> None:
        """Within transaction ``c``: refund the escrow; count the robot's failure and slash its bond."""
        robot = task.robot
        self._move(c, task.id, expected, REFUNDED, outcome)
        blamed = robot is not None and count is not None
        self.ledger.post(f"task:{task.id}:refund", {f"escrow:{task.id}": -task.max_price,
                                                    f"customer:{task.customer}": task.max_price},
                         kind="escrow.refund", memo=outcome, cursor=c,
                         refs={"task": task.id, "robot": robot, "customer": task.customer, "state": REFUNDED,
                               "outcome": outcome, "blame": count if blamed else None})
        if blamed:
            c.execute(f"UPDATE market_robots SET {count} = {count} + 1 WHERE robot = ?", (robot,))
            bond = self.ledger.balance(f"bond:{robot}", cursor=c)
            slash = min(bond, max(1, bond * slash_bps // 10_000)) if slash_bps and bond > 0 else 0  # never rounds to 0
            if slash > 0:
                self.ledger.post(f"task:{task.id}:slash", {f"bond:{robot}": -slash,
                                                           f"customer:{task.customer}": slash},
                                 kind="bond.slash", memo=f"{outcome} by {robot}", cursor=c,
                                 refs={"task": task.id, "robot": robot, "customer": task.customer})

    @staticmethod
    def _move(c: Cursor, task_id: str, expected: str, state: str, outcome: str) -> None:
        """Compare-and-set the task's state: only from ``expected``; anything else was already done."""
        c.execute("UPDATE market_tasks SET state = ?, outcome = ? WHERE id = ? AND state = ?",
                  (state, outcome, task_id, expected))
        if c.rowcount != 1:
            raise MarketError("already_done", f"task {task_id} is no longer {expected}")

    # --- reputation ----------------------------------------------------------------------------------

    def reputation(self, robot: str) -> float:
        """A beta reputation from the robot's delivered, failed and faked tasks (faked count three times)."""
        rows = self.db.read("SELECT delivered, failed, faked FROM market_robots WHERE robot = ?", (robot,))
        if not rows:
            return 0.0
        delivered, failed, faked = (int(n) for n in rows[0])
        return (delivered + 1) / (delivered + failed + 3 * faked + 2)

    def robots(self) -> list[str]:
        """The registered robots."""
        return [robot for (robot,) in self.db.read("SELECT robot FROM market_robots ORDER BY robot")]

    # --- plumbing ------------------------------------------------------------------------------------

    def _signer(self) -> EnvelopeSigner:
        if self.signer is None:
            raise MarketError("read_only", "this marketplace was opened read-only (no signing key)")
        return self.signer

    def _open(self, account: str, currency: str, kind: str, *, owner: str | None = None,
              may_go_negative: bool = False, cursor: Cursor | None = None) -> str:
        """Open ``account`` if new (inside the caller's transaction when given one: no extra commit)."""
        self.ledger.open_account(account, currency, kind, owner=owner, may_go_negative=may_go_negative,
                                 cursor=cursor)
        return account

    def _run(self, work: Callable[[Cursor], None]) -> None:
        try:
            self.db.run(work)
        except MarketError:
            raise
        except LedgerError as err:
            if isinstance(err, InsufficientFunds):
                raise
            raise MarketError("ledger_refused", str(err)) from None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _amount(what: str, value: object) -> int:
    """``value`` if it is a whole, positive number of minor units the ledger holds; MarketError otherwise."""
    if type(value) is not int or not 1 <= value <= MAX_AMOUNT:
        raise MarketError("bad_amount", f"{what} must be a whole number of minor units from 1 to {MAX_AMOUNT}, "
                                        f"got {value!r}")
    return value

