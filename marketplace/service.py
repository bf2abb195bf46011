"""The marketplace as a fleet service: customers post signed tasks, robots bid, the batch auction awards.

A customer's task arrives signed (``post``): the service verifies it, posts it
(its reward locked in escrow) and announces it on ``market/tasks``; robots'
signed bids, receipts and task events reach it through ingest (already
verified); every ``bid_window_s`` the open tasks with bids are assigned to
robots all at once (one task per robot, least total cost) and the signed awards
go out on ``market/awards``; a task nobody took is announced again. Receipts
that arrived since the last turn are settled together (one commit for all). A
robot's receipt settles its task; a reported failure or a rejected award
refunds it; expired tasks are refunded each turn. With a ``WitnessRule`` the
marketplace also asks whether peers saw the robot deliver: the map service's
signed ``map.presence`` verdicts (``presence``, verified against the map
services this one trusts) are kept, and a receipt no peer has witnessed yet is
held and judged again each second (docs/marketplace.md#proof-of-delivery). How it runs (evaluator, bid
window, a task's life, prices) is its ``MarketPolicy``.

The service sees only signed messages: who the customers are (simulated ones
live in ``sim.customers``) is none of its business, and it never imports ``sim``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection
from typing import ClassVar

from bus.schemas import BY_KIND, SchemaError, validate_body
from bus.session import Outgoing
from bus.topics import MAP_PRESENCE, MARKET_AWARDS, MARKET_TASKS
from bus.trusted import Refused, ServiceGate
from identity.envelope import Envelope, EnvelopeRefused, EnvelopeVerifier
from marketplace.auction import EVALUATORS, assign_offers
from marketplace.market import AWARDED, OPEN, MarketError, Marketplace, Task
from marketplace.policy import MarketPolicy

FAILURE_EVENTS = ("task.failed", "command.rejected")
DECLARED_KINDS = ("birth", "death", "telemetry", "bid", "receipt", "event")  # the robot messages observe() consumes


class MarketService:
    """Runs the marketplace's side of a fleet: signed tasks in from customers, bids and proofs in from robots."""

    declared_kinds: ClassVar[tuple[str, ...]] = DECLARED_KINDS

    def __init__(self, market: Marketplace, verifier: EnvelopeVerifier, *, clock: Callable[[], float],
                 policy: MarketPolicy = MarketPolicy(), currency: str = "EUR",
                 map_services: Collection[str] = ()) -> None:
        """``verifier`` checks customers' signed tasks; tasks in another ``currency`` than the service's are refused;
        ``map_services`` are the DIDs whose map.presence verdicts are believed (the fleet descriptor's map)."""
        self.market, self.verifier, self.clock, self.policy, self.currency = market, verifier, clock, policy, currency
        self._presence_gate = ServiceGate(verifier.keys, map_services, clock=clock)
        self.sightings = 0  # map.presence verdicts kept
        self.presence_refused: Counter[str] = Counter()
        self.held: list[str] = []  # tasks whose receipt was held for a witness when it arrived
        self.evaluator = EVALUATORS[policy.evaluator]
        self.delivered: list[str] = []
        self.failed: list[str] = []
        self.refused: Counter[str] = Counter()
        self.posted = self.awarded = 0
        self._announce: list[Outgoing] = []
        self._posted: dict[str, float] = {}  # open task -> when it was announced
        self._receipts: list[Envelope] = []
        self._reborn: dict[str, tuple[float, set[str]]] = {}  # robot born again -> (when, awarded tasks not named)
        self.released: list[str] = []
        # Robots heard (in messages issued) since this service started: one that has not spoken since (it may be down
        # with the fleet it belongs to) is not slashed when a task it holds passes its deadline.
        self._heard: set[str] = set()
        self._started_ms = int(clock() * 1000)  # tasks whose robot restarted and forgot them: open again, nobody slashed
        self._next_expiry = -math.inf

    def post(self, wire: bytes) -> Task | None:
        """A customer's signed task: verified, posted (its reward locked in escrow) and announced at the next step.

        A task that does not verify, does not match the task schema, is in another currency, or that the
        marketplace refuses (not signed by its customer, no funds, a past deadline, ...) is counted in
        ``refused`` by its code and changes nothing; None then.
        """
        try:
            envelope = self.verifier.verify(wire, kinds=("task",))
            validate_body("task", envelope.body)
            if envelope.body["currency"] != self.currency:
                raise MarketError("wrong_currency", f"task {envelope.body['id']} is in {envelope.body['currency']}; "
                                                    f"this marketplace trades in {self.currency}")
            task = self.market.post(envelope)
        except (EnvelopeRefused, SchemaError, MarketError) as err:
            self.refused[err.code] += 1
            return None
        self.posted += 1
        spec = BY_KIND["task"]
        self._announce.append(Outgoing(MARKET_TASKS, self.market.announcement(task.id), spec.qos, spec.retain))
        self._posted[task.id] = self.clock()
        return task

    def resume(self) -> None:
        """Take over the open tasks of an earlier run: announced again at the next step."""
        for task in self.market.tasks(OPEN):
            self._posted[task.id] = -math.inf

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: telemetry (trails for proofs), bids, receipts and task failures."""
        kind, body = envelope.kind, envelope.body
        try:
            if envelope.issued_at_ms >= self._started_ms:  # not a copy queued from before the service started
                self._heard.add(envelope.issuer)
            if kind == "birth":
                self._born(envelope.issuer)
            elif kind == "death":  # a robot that signed off bids no more: it must not win a task it cannot do
                self.market.withdraw_bids(envelope.issuer)
            elif kind == "telemetry":
                self.market.observe(topic, envelope)
                held = self._reborn.get(envelope.issuer)
                if held is not None and body.get("task") in held[1]:  # it kept its work across the new session
                    held[1].discard(body["task"])
            elif kind == "bid":
                self.market.bid(envelope)
            elif kind == "receipt":
                self._receipts.append(envelope)  # settled together on the service's turn
            elif kind == "event" and body["type"] in FAILURE_EVENTS and body.get("task"):
                if self.market.task(body["task"]).state != AWARDED:
                    return
                if _declined_award(body):  # it never started: the task goes back on offer, nobody is slashed
                    self.market.release(body["task"], envelope.issuer)
                    self.released.append(body["task"])
                    self._posted[body["task"]] = -math.inf
                else:
                    self.failed.append(self.market.fail(body["task"], envelope.issuer, body["type"]).id)
        except MarketError as err:
            self.refused[err.code] += 1

    def presence(self, topic: str, payload: bytes) -> None:
        """The map service's signed map.presence: verified (its envelope, a trusted map service, its topic and
        schema), then its verdicts kept for judging receipts; a refused one is counted in presence_refused."""
        try:
            envelope = self._presence_gate.admit(topic, payload, kinds=("map.presence",),
                                                 expected_topic=lambda envelope: MAP_PRESENCE)
        except Refused as refusal:
            self.presence_refused[refusal.code] += 1
            return
        self.sightings += self.market.record_presence(envelope.body["verdicts"])

    def _born(self, robot: str) -> None:
        """A robot's new session: its bids on open tasks are withdrawn (the robot would refuse an award for a bid it
        no longer remembers, and be slashed for it), and the tasks awarded to it must show in its telemetry within
        release_after_s."""
        self.market.withdraw_bids(robot)
        delivered = self.market.held()  # a receipt held for a witness: the task is done, not forgotten
        held = {task.id for task in self.market.tasks(AWARDED) if task.robot == robot and task.id not in delivered}
        if held:
            self._reborn[robot] = (self.clock(), held)

    def _blameless(self, robot: str) -> bool:
        """Not to be slashed for a deadline: silent since this service started, or born again and not yet past its
        release_after_s (it may be down with its fleet, or have lost the task in a crash)."""
        return robot not in self._heard or robot in self._reborn

    def _release_forgotten(self, now: float) -> None:
        """Withdraw, without a slash, the awards of robots born again that never named them since: each task is
        open and announced again (docs/marketplace.md, "A robot that restarts")."""
        for robot, (since, tasks) in list(self._reborn.items()):
            if now - since < self.policy.release_after_s:
                continue
            del self._reborn[robot]
            for task in tasks:
                try:
                    self.market.release(task, robot)
                except MarketError as err:  # delivered, failed or expired meanwhile
                    self.refused[err.code] += 1
                    continue
                self.released.append(task)
                self._posted[task] = -math.inf

    def step(self) -> list[Outgoing]:
        """This turn's announcements, the awards of tasks whose bidding closed, and refunds of expired tasks."""
        now = self.clock()
        self._release_forgotten(now)
        out, self._announce = self._announce, []
        receipts, self._receipts = self._receipts, []
        for outcome in self.market.deliver_many(receipts) if receipts else ():
            if isinstance(outcome, MarketError):
                self.refused[outcome.code] += 1
            elif outcome.state == AWARDED:
                self.held.append(outcome.id)
            else:
                (self.delivered if outcome.state == "settled" else self.failed).append(outcome.id)
        closed = [task for task, at in self._posted.items() if now - at >= self.policy.bid_window_s]
        busy = {task.robot for task in self.market.tasks(AWARDED)} if closed else set()  # stale bids of workers
        deadlines = {task: self.market.task(task).deadline_ms / 1000 for task in closed}
        offers = [offer for task in closed for offer in self.market.offers(task)
                  if offer.robot not in busy and now + offer.eta_s <= deadlines[task]]  # none it cannot keep
        awards, tasks = BY_KIND["award"], BY_KIND["task"]
        for offer in assign_offers(offers, self.evaluator):
            try:
                out.append(Outgoing(MARKET_AWARDS, self.market.award_to(offer.task, offer.robot), awards.qos,
                                    awards.retain))
                self.awarded += 1
                del self._posted[offer.task]
            except MarketError as err:
                self.refused[err.code] += 1
        for task in closed:
            if task not in self._posted:
                continue
            if self.market.task(task).state != OPEN:
                del self._posted[task]
            else:  # no bid, or its bidders won other tasks: announce it again for another window
                self._posted[task] = now
                out.append(Outgoing(MARKET_TASKS, self.market.announcement(task), tasks.qos, tasks.retain))
        if now >= self._next_expiry:  # deadlines are in whole seconds' worth: once a second is enough
            self._next_expiry = now + 1.0
            for task in self.market.judge_held():
                (self.delivered if task.state == "settled" else self.failed).append(task.id)
            self.failed += [task.id for task in self.market.expire(blameless=self._blameless)]
        return out


def _declined_award(body: dict) -> bool:
    """A robot's refusal of an award itself (a bid it no longer holds, or busy meanwhile), not a failed delivery."""
    detail = body.get("detail")
    return body["type"] == "command.rejected" and isinstance(detail, dict) and detail.get("command") == "award"
