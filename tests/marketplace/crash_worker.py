"""A marketplace at work, to be killed: ``python crash_worker.py DB_URL TASKS SEED``.

Runs a fixed, seeded script of deposits, registrations, tasks, bids, awards,
deliveries (witnessed by peers, held and witnessed later, or held and never
witnessed), failures and expiries against the marketplace at DB_URL, step by
step, skipping what an earlier (killed) run already did: every step is either
idempotent or guarded by the task's state. It prints one line per finished task
so the test can kill it at random moments. The envelopes are built as already
verified (signature checks are tested elsewhere; here the subject is crashes).
"""

from __future__ import annotations

import random
import sys

from identity.keys import Signer
from ledger.journal import Ledger
from marketplace.market import AWARDED, OPEN, MarketError, Marketplace
from marketplace.proof import WitnessRule
from tests.marketplace.stand_ins import Sealer, envelope

CUSTOMER, OWNER = "did:key:zCustomer", "did:key:zOwner"
ROBOTS = [f"did:key:zRobot{i}" for i in range(4)]
START = 1_790_000_000.0


def plan(task: int, seed: int) -> str:
    """What happens to task ``task``: delivered, faked, failed or left to expire."""
    return random.Random(seed * 1_000_003 + task).choice(["deliver", "deliver", "late", "unwitnessed", "fake", "fail",
                                                          "expire"])


def seen(robot: str, t_s: float, x: float, y: float) -> dict:
    """The map service's verdict that peers saw ``robot`` at (x, y) at ``t_s``."""
    return {"robot": robot, "t": int(t_s * 1000), "x": x, "y": y, "verdict": "seen", "by": []}


def main(url: str, tasks: int, seed: int) -> None:
    clock_base = [START]
    ledger = Ledger.open(url, Signer(bytes(32)), clock=lambda: clock_base[0])
    market = Marketplace(ledger, Sealer(), fee_bps=500, clock=lambda: clock_base[0],  # type: ignore[arg-type]
                         witness=WitnessRule(hold_s=30.0))
    market.fund(CUSTOMER, 10_000_000, "EUR", key="customer")
    market.fund(OWNER, 100_000, "EUR", key="owner", role="owner")
    for robot in ROBOTS:
        market.register_robot(robot, OWNER, 1_000, "EUR")
    for n in range(tasks):
        task_id, robot = f"task-{n}", ROBOTS[n % len(ROBOTS)]
        clock_base[0] = START + n * 10.0
        fate = plan(n, seed)
        body = {"id": task_id, "customer": CUSTOMER, "pickup": {"x": 0.0, "y": 0.0},
                "dropoff": {"x": 10.0, "y": 5.0}, "deadline": int((clock_base[0] + 5.0) * 1000),
                "max_price": 500 + n % 7, "currency": "EUR", "payload_kg": 1.0}
        try:
            market.post(envelope("task", CUSTOMER, body))
        except MarketError as err:
            if err.code != "past_deadline":
                raise
        state = market.task(task_id).state
        if state == OPEN and fate != "expire":
            try:
                market.bid(envelope("bid", robot, {"task": task_id, "price": 300 + n % 11, "currency": "EUR",
                                                   "eta_ms": 60_000}))
                market.award_to(task_id, robot)
                state = AWARDED
            except MarketError as err:
                if err.code != "no_bond":  # a robot slashed to nothing may no longer bid: the task expires
                    raise
        if state == AWARDED and fate in ("deliver", "late", "unwitnessed", "fake"):
            here = (90.0, 90.0) if fate == "fake" else (10.0, 5.0)
            clock_base[0] += 2.0  # the trip
            t_ms = int(clock_base[0] * 1000)
            if fate == "deliver":  # seen leaving the pickup and reaching the dropoff: paid at once
                market.record_presence([seen(robot, clock_base[0] - 1.5, 0.0, 0.0), seen(robot, clock_base[0], *here)])
            elif fate == "late":  # seen only on its way, far from both ends: held
                market.record_presence([seen(robot, clock_base[0] - 0.5, 300.0, 0.0)])
            market.observe("t", envelope("telemetry", robot, {"t": t_ms, "pose": {"x": here[0], "y": here[1]}}))
            market.deliver(envelope("receipt", robot, {"task": task_id, "t": t_ms,
                                                       "pose": {"x": 10.0, "y": 5.0, "theta": 0.0}}))
            if fate == "late":  # ... and seen three times since: paid at the next judging
                market.record_presence([seen(robot, clock_base[0] + k, 300.0, 10.0 * k) for k in (1, 2, 3)])
        elif state == AWARDED and fate == "fail":
            market.fail(task_id, robot, "no_route")
        clock_base[0] += 6.0
        market.judge_held()  # "unwitnessed" receipts are refunded three tasks later, past the 30 s hold
        market.expire()
        print(task_id, flush=True)
    clock_base[0] = START + tasks * 10.0 + 60.0  # past the last hold: every held receipt is judged
    market.judge_held()
    market.expire()
    ledger.checkpoint()
    print("done", flush=True)
    ledger.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
