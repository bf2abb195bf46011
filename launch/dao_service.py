"""The DAO as a fleet service: it splits revenue, queues and executes passed proposals, and signs checkpoints.

Queueing and executing a succeeded proposal is open to anyone under the
Governor rules (the vote decided; the timelock protects); this keeper does it
for the fleet each simulated second, so a "buy a robot" proposal really adds a
robot a timelock after it passes. Revenue is split every ``split_every_s``
(members then see claimable balances), and the ledger's operator signs a
checkpoint every ``checkpoint_every_s`` for the dashboard's integrity page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from bus.session import Outgoing
from dao.dao import Dao, DaoError
from dao.lifecycle import State
from ledger.journal import Ledger


class DaoService:
    """Keeps one fleet's DAO moving."""

    def __init__(self, dao: Dao, ledger: Ledger, *, clock: Callable[[], float], split_every_s: float = 60.0,
                 checkpoint_every_s: float = 5.0) -> None:
        self.dao, self.ledger, self.clock = dao, ledger, clock
        self.split_every_s, self.checkpoint_every_s = split_every_s, checkpoint_every_s
        self.executed: list[str] = []
        self.refused: Counter[str] = Counter()
        self._next_turn = self._next_split = self._next_checkpoint = clock()

    def step(self) -> list[Outgoing]:
        """Once a simulated second: queue and execute what passed; split and checkpoint when due."""
        now = self.clock()
        if now < self._next_turn:
            return []
        self._next_turn = now + 1.0
        for proposal in self.dao.proposals():
            try:
                if proposal.state == State.SUCCEEDED:
                    self.dao.queue(proposal.id)
                elif proposal.state == State.QUEUED and proposal.eta_s is not None and now >= proposal.eta_s:
                    self.dao.execute(proposal.id)
                    self.executed.append(proposal.id)
            except DaoError as err:  # e.g. a spend the treasury cannot cover: the proposal stays queued
                self.refused[err.code] += 1
        if now >= self._next_split:
            self._next_split = now + self.split_every_s
            self.dao.distribute(f"t{int(now)}")
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_every_s
            self.ledger.checkpoint()
        return []
