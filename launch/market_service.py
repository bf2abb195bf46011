"""The marketplace as a fleet service: customers post signed tasks, robots bid, the batch auction awards.

Each customer's order becomes a task the customer signs (its reward locked in
escrow on posting); the marketplace announces it on ``market/tasks``; robots'
signed bids, receipts and task events reach it through ingest (already
verified); every ``bid_window_s`` the open tasks with bids are assigned to
robots all at once (one task per robot, least total cost) and the signed awards
go out on ``market/awards``; a task nobody took is announced again. Receipts
that arrived since the last turn are settled together (one commit for all). A robot's receipt settles its task; a reported
failure or a rejected award refunds it; expired tasks are refunded each turn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from bus.schemas import BY_KIND
from bus.session import Outgoing
from bus.topics import MARKET_AWARDS, MARKET_TASKS
from identity.envelope import Envelope, EnvelopeSigner, EnvelopeVerifier
from marketplace.auction import EVALUATORS, assign_offers
from marketplace.market import AWARDED, OPEN, MarketError, Marketplace
from sim.demand import Order

FAILURE_EVENTS = ("task.failed", "command.rejected")


class MarketService:
    """Runs the marketplace's side of a fleet: tasks in from customers, bids and proofs in from robots."""

    def __init__(self, market: Marketplace, customers: Sequence[EnvelopeSigner], verifier: EnvelopeVerifier, *,
                 clock: Callable[[], float], currency: str = "EUR", bid_window_s: float = 2.0,
                 task_life_s: float = 900.0, evaluator: str = "quickest", base_price: int = 600,
                 price_per_km: int = 900) -> None:
        self.market, self.customers, self.verifier, self.clock = market, list(customers), verifier, clock
        self.currency, self.bid_window_s, self.task_life_s = currency, bid_window_s, task_life_s
        self.evaluator = EVALUATORS[evaluator]
        self.base_price, self.price_per_km = base_price, price_per_km
        self.delivered: list[str] = []
        self.failed: list[str] = []
        self.refused: Counter[str] = Counter()
        self.posted = self.awarded = 0
        self._announce: list[Outgoing] = []
        self._posted: dict[str, float] = {}  # open task -> when it was announced
        self._receipts: list[Envelope] = []
        self._next_expiry = -math.inf
        self._turn = 0

    def offer(self, order: Order) -> None:
        """A customer's order: the customer signs it as a task; the marketplace posts and announces it."""
        customer = self.customers[self._turn % len(self.customers)]
        self._turn += 1
        distance_km = (abs(order.pickup[0] - order.dropoff[0]) + abs(order.pickup[1] - order.dropoff[1])) / 1000
        body = {"id": order.id, "customer": customer.did,
                "pickup": {"x": order.pickup[0], "y": order.pickup[1]},
                "dropoff": {"x": order.dropoff[0], "y": order.dropoff[1]},
                "deadline": int((self.clock() + self.task_life_s) * 1000),
                "max_price": self.base_price + math.ceil(self.price_per_km * distance_km),
                "currency": self.currency, "payload_kg": order.payload_kg}
        try:
            self.market.post(self.verifier.verify(customer.seal("task", body), kinds=("task",)))
        except MarketError as err:
            self.refused[err.code] += 1
            return
        self.posted += 1
        spec = BY_KIND["task"]
        self._announce.append(Outgoing(MARKET_TASKS, self.market.announcement(order.id), spec.qos, spec.retain))
        self._posted[order.id] = self.clock()

    def resume(self) -> None:
        """Take over the open tasks of an earlier run: announced again at the next step."""
        for task in self.market.tasks(OPEN):
            self._posted[task.id] = -math.inf

    def observe(self, topic: str, envelope: Envelope) -> None:
        """An ingest consumer: telemetry (trails for proofs), bids, receipts and task failures."""
        kind, body = envelope.kind, envelope.body
        try:
            if kind == "telemetry":
                self.market.observe(topic, envelope)
            elif kind == "bid":
                self.market.bid(envelope)
            elif kind == "receipt":
                self._receipts.append(envelope)  # settled together on the service's turn
            elif kind == "event" and body["type"] in FAILURE_EVENTS and body.get("task"):
                if self.market.task(body["task"]).state == AWARDED:
                    self.failed.append(self.market.fail(body["task"], envelope.issuer, body["type"]).id)
        except MarketError as err:
            self.refused[err.code] += 1

    def step(self) -> list[Outgoing]:
        """This turn's announcements, the awards of tasks whose bidding closed, and refunds of expired tasks."""
        now = self.clock()
        out, self._announce = self._announce, []
        receipts, self._receipts = self._receipts, []
        for outcome in self.market.deliver_many(receipts) if receipts else ():
            if isinstance(outcome, MarketError):
                self.refused[outcome.code] += 1
            else:
                (self.delivered if outcome.state == "settled" else self.failed).append(outcome.id)
        closed = [task for task, at in self._posted.items() if now - at >= self.bid_window_s]
        busy = {task.robot for task in self.market.tasks(AWARDED)} if closed else set()  # stale bids of workers
        offers = [offer for task in closed for offer in self.market.offers(task) if offer.robot not in busy]
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
            self.failed += [task.id for task in self.market.expire()]
        return out
