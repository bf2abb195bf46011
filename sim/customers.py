"""Simulated customers: each of the simulator's orders becomes a delivery task a customer signs.

The customers take turns; each signs its task with its own key, naming itself as the customer, a
deadline ``task_life_s`` from now and, as its most, the price the marketplace's terms ``quote`` for
the trip. What comes out is wire bytes, exactly what a real customer would send: the marketplace
verifies them like any other signed task and never needs to know the orders came from a simulator.

``CustomerOrders`` is the glue for the in-process fleet loop (``launch.fleet.run``): it takes the
orders, has them signed and posts them on a task board (the market service, or anything with
``post(wire)`` and the ``delivered`` and ``failed`` lists).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from identity.envelope import EnvelopeSigner
from sim.demand import Order

Point = tuple[float, float]


class Customers:
    """Customers who sign the simulator's orders as tasks, each in turn."""

    def __init__(self, signers: Sequence[EnvelopeSigner], quote: Callable[[Point, Point], int], *,
                 clock: Callable[[], float], currency: str = "EUR", task_life_s: float = 900.0) -> None:
        """``quote(pickup, dropoff)`` is the task's max_price in ``currency``'s minor units."""
        if not signers:
            raise ValueError("simulated customers need at least one signer")
        self.signers, self.quote, self.clock = list(signers), quote, clock
        self.currency, self.task_life_s = currency, task_life_s
        self._turn = 0

    @property
    def dids(self) -> list[str]:
        """The customers' DIDs, in the order they take turns."""
        return [signer.did for signer in self.signers]

    def order(self, order: Order) -> bytes:
        """The next customer's signed task for ``order``."""
        customer = self.signers[self._turn % len(self.signers)]
        self._turn += 1
        body = {"id": order.id, "customer": customer.did,
                "pickup": {"x": order.pickup[0], "y": order.pickup[1]},
                "dropoff": {"x": order.dropoff[0], "y": order.dropoff[1]},
                "deadline": int((self.clock() + self.task_life_s) * 1000),
                "max_price": self.quote(order.pickup, order.dropoff),
                "currency": self.currency, "payload_kg": order.payload_kg}
        return customer.seal("task", body)


class TaskBoard(Protocol):
    """Where signed tasks are posted, and how the tasks ended."""

    delivered: list[str]
    failed: list[str]

    def post(self, wire: bytes) -> Any:
        """Take a signed task."""


class CustomerOrders:
    """An order sink for the fleet loop: every order signed by the next customer and posted on ``board``."""

    def __init__(self, customers: Customers, board: TaskBoard) -> None:
        self.customers, self.board = customers, board

    def offer(self, order: Order) -> None:
        """Take a new order: signed as a task and posted."""
        self.board.post(self.customers.order(order))

    @property
    def delivered(self) -> list[str]:
        """The board's tasks settled so far."""
        return self.board.delivered

    @property
    def failed(self) -> list[str]:
        """The board's tasks refunded so far."""
        return self.board.failed
