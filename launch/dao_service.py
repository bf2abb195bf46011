"""The DAO as a fleet service: it splits revenue, queues and executes passed proposals, and signs checkpoints.

Queueing and executing a succeeded proposal is open to anyone under the
Governor rules (the vote decided; the timelock protects); this keeper does it
for the fleet each simulated second, so a "buy a robot" proposal really adds a
robot a timelock after it passes. Revenue is split every ``split_every_s``
(members then see claimable balances), and the ledger's operator signs a
checkpoint every ``checkpoint_every_s`` for the dashboard's integrity page.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from bus.session import Outgoing
from dao.dao import Dao, DaoError, Proposal
from dao.lifecycle import State
from ledger.journal import Ledger

log = logging.getLogger("depai.dao.keeper")
T = TypeVar("T")


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
        """Once a simulated second: queue and execute what passed; split and checkpoint when due. Never raises:
        each chore's failure is logged and counted by reason, and the next chore and the next turn go on."""
        now = self.clock()
        if now < self._next_turn:
            return []
        self._next_turn = now + 1.0
        for proposal in self._chore("proposals", self.dao.proposals) or []:
            self._chore("proposal", self._advance, proposal, now)
        if now >= self._next_split:
            self._next_split = now + self.split_every_s
            self._chore("distribute", self.dao.distribute, f"t{int(now)}")
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_every_s
            self._chore("checkpoint", self.ledger.checkpoint)
        return []

    def _advance(self, proposal: Proposal, now: float) -> None:
        """Queue a succeeded proposal; execute a queued one whose timelock has passed."""
        if proposal.state == State.SUCCEEDED:
            self.dao.queue(proposal.id)
        elif proposal.state == State.QUEUED and proposal.eta_s is not None and now >= proposal.eta_s:
            self.dao.execute(proposal.id)
            self.executed.append(proposal.id)

    def _chore(self, what: str, call: Callable[..., T], *args: Any) -> T | None:
        """``call(*args)``; a refusal (e.g. a spend the treasury cannot cover: the proposal stays queued, its
        reason recorded) or any failure is counted by its code and logged, never raised."""
        try:
            return call(*args)
        except DaoError as err:
            self.refused[err.code] += 1
        except Exception as err:  # noqa: BLE001 - the keeper must outlive any one chore; the next turn retries
            self.refused[f"{what}_failed"] += 1
            log.exception("dao keeper: %s failed: %s", what, err)
        return None
