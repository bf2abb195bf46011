"""Proof of delivery: a robot's signed receipt, checked against the dropoff and its own verified telemetry trail.

A receipt says "I was at the dropoff at time t". It is believed when the robot
that signed it is the one awarded the task, its pose lies within
``radius_m`` of the dropoff, and the robot's verified telemetry (what ingest let
through, in order) put it within ``radius_m`` of the dropoff within ``window_s``
of t: a robot cannot claim a place its own trail never reached. With no verified
telemetry around t at all (the marketplace restarted, or telemetry is late) the
receipt is not judged: ``no_evidence``, and the robot sends it again. A recipient's
countersignature (optional) is an Ed25519 signature by the customer's key over
the canonical ``{"robot", "t", "task"}``.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from identity.canonical import canonicalize
from identity.keys import verify

TRAIL_LENGTH = 600  # telemetry points kept per robot (5 minutes at 2 Hz)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a receipt proves the delivery, and why not when it does not."""

    accepted: bool
    reason: str = ""
    held: bool = False  # not judged yet: kept by the marketplace and judged again (witnessed presence)


class Trails:
    """Each robot's recent verified positions (t in ms, x, y), fed from verified telemetry."""

    def __init__(self, length: int = TRAIL_LENGTH) -> None:
        self._trails: dict[str, deque[tuple[int, float, float]]] = {}
        self._length = length

    def add(self, robot: str, t_ms: int, x: float, y: float) -> None:
        """Record a verified position of ``robot``."""
        self._trails.setdefault(robot, deque(maxlen=self._length)).append((t_ms, x, y))

    def covers(self, robot: str, t_ms: int, window_s: float) -> bool:
        """Whether the trail holds any point within window_s of t_ms (else it cannot judge that moment)."""
        return any(abs(t - t_ms) <= window_s * 1000 for t, _, _ in self._trails.get(robot, ()))

    def near(self, robot: str, t_ms: int, x: float, y: float, radius_m: float, window_s: float) -> bool:
        """Whether the robot's trail has a point within radius_m of (x, y) within window_s of t_ms."""
        window_ms = window_s * 1000
        return any(abs(t - t_ms) <= window_ms and math.hypot(px - x, py - y) <= radius_m
                   for t, px, py in self._trails.get(robot, ()))


def countersignature_message(task: str, robot: str, t_ms: int) -> bytes:
    """The bytes a recipient signs to countersign a delivery."""
    return canonicalize({"robot": robot, "t": t_ms, "task": task})


def check_receipt(
    *,
    robot: str,
    awarded_to: str,
    receipt: dict,
    dropoff: tuple[float, float],
    trails: Trails,
    recipient_key: Callable[[], bytes | None],
    radius_m: float = 3.0,
    window_s: float = 15.0,
) -> Verdict:
    """The verdict on a verified receipt body signed by ``robot`` for a task awarded to ``awarded_to``."""
    if robot != awarded_to:
        return Verdict(False, "not_awarded: the receipt is not from the robot the task was awarded to")
    pose = receipt["pose"]
    gap = math.hypot(pose["x"] - dropoff[0], pose["y"] - dropoff[1])
    if gap > radius_m:
        return Verdict(False, f"far_from_dropoff: the receipt's pose is {gap:.1f} m from the dropoff")
    if not trails.covers(robot, receipt["t"], window_s):
        return Verdict(False, "no_evidence: no verified telemetry of the robot around that time (yet)")
    if not trails.near(robot, receipt["t"], dropoff[0], dropoff[1], radius_m, window_s):
        return Verdict(False, "no_trail: the robot's verified telemetry never came near the dropoff then")
    signature = receipt.get("recipient")
    if signature is not None:
        key = recipient_key()
        try:
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except ValueError:
            raw = b""
        if key is None or not verify(key, countersignature_message(receipt["task"], robot, receipt["t"]), raw):
            return Verdict(False, "bad_countersignature: the recipient's signature does not verify")
    return Verdict(True)


# --- witnessed presence (issue #20) ----------------------------------------------------------------------

SEEN, UNSEEN, IMPOSSIBLE = "seen", "unseen", "impossible"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One of the map service's verdicts on a pose the robot claimed: seen, unseen or impossible (map.presence)."""

    t_ms: int
    x: float
    y: float
    verdict: str


@dataclass(frozen=True, slots=True)
class WitnessRule:
    """When peers' lidar (the map service's ``map.presence`` verdicts) makes a receipt payable, refused or held.

    ``near_m``: a ``seen`` within this of the pickup (between the award and the receipt) is "left the pickup";
    one within it of the dropoff from ``dropoff_window_s`` before the receipt to ``after_s`` after is "reached
    the dropoff". Both: paid at once. Contradicted: more than ``impossible_allowance`` ``impossible`` verdicts,
    or more than ``unseen_allowance`` ``unseen`` ones that are also more than ``unseen_ratio`` times the ``seen``
    ones, from the award to ``after_s`` past the receipt (the allowances absorb honest robots' false unseens,
    measured in benchmarks/delivery_fraud.py). Neither: held for ``hold_s`` after the receipt arrived, paid by a
    ``seen`` of the robot at or after the receipt's time, else refused ``unwitnessed``.
    """

    near_m: float = 15.0
    dropoff_window_s: float = 60.0
    after_s: float = 10.0
    unseen_allowance: int = 2
    unseen_ratio: float = 1.0
    impossible_allowance: int = 0
    hold_s: float = 300.0


def judge_presence(sightings: Sequence[Sighting], *, pickup: tuple[float, float], dropoff: tuple[float, float],
                   awarded_ms: int, receipt_ms: int, arrived_ms: int, now_ms: int,
                   rule: WitnessRule = WitnessRule()) -> Verdict:
    """The witnessed verdict on a receipt whose own checks passed: paid, refused, or ``held`` (judged again later)."""
    end_ms = receipt_ms + int(rule.after_s * 1000)
    during = [s for s in sightings if awarded_ms <= s.t_ms <= end_ms]
    seen = [s for s in during if s.verdict == SEEN]
    unseen = sum(s.verdict == UNSEEN for s in during)
    impossible = sum(s.verdict == IMPOSSIBLE for s in during)
    if impossible > rule.impossible_allowance:
        return Verdict(False, f"contradicted: {impossible} of its claimed poses were inside a corroborated obstacle")
    if unseen > rule.unseen_allowance and unseen > rule.unseen_ratio * len(seen):
        return Verdict(False, f"contradicted: peers' lidar passed through {unseen} of its claimed poses "
                              f"and saw it at {len(seen)}")
    near = rule.near_m
    left_pickup = any(s.t_ms <= receipt_ms and math.dist((s.x, s.y), pickup) <= near for s in seen)
    reached = any(s.t_ms >= receipt_ms - rule.dropoff_window_s * 1000 and math.dist((s.x, s.y), dropoff) <= near
                  for s in seen)
    if left_pickup and reached:
        return Verdict(True, "witnessed: seen leaving the pickup and reaching the dropoff")
    if any(s.verdict == SEEN and receipt_ms <= s.t_ms for s in sightings):
        return Verdict(True, "witnessed_later: seen where it said it was after the delivery")
    if now_ms - arrived_ms >= rule.hold_s * 1000:
        return Verdict(False, f"unwitnessed: no peer saw the robot at the pickup, the dropoff or within "
                              f"{rule.hold_s:.0f} s after")
    return Verdict(False, "held: not yet witnessed by a peer; judged again as verdicts arrive", held=True)
