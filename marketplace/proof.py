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

A consistent liar passes all of that: its own trail says what it likes. So a
receipt can also be judged by what peers' lidar saw (``judge_presence``, on the
map service's ``map.presence`` verdicts): paid at once when the robot was seen
leaving the pickup and reaching the dropoff, refused when peers saw through
where it claimed to be, else held until it is seen later or the hold runs out
(``WitnessRule``; docs/marketplace.md#proof-of-delivery).
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

    The verdicts judged are those on the robot's claimed poses from the award to ``after_s`` past the receipt;
    their seen share is seen / (seen + unseen). Refused ``contradicted``: more than ``impossible_allowance``
    ``impossible`` verdicts, or more than ``unseen_allowance`` ``unseen`` ones with a seen share below
    ``contradict_share`` (the allowances absorb honest robots' false unseens: a peer's beam through a pose
    claimed with GNSS-sized error; benchmarks/delivery_fraud.py measures them). Paid at once: a ``seen`` within
    ``near_m`` of the pickup before the receipt ("left the pickup"), one within ``near_m`` of the dropoff from
    ``dropoff_window_s`` before the receipt on ("reached the dropoff"), and a seen share of at least
    ``pay_share``. Otherwise held for ``hold_s`` after the receipt arrived: paid once it was seen ``later_seen``
    times since the receipt's time, with a seen share of at least ``pay_share`` both during the task and since
    (peers saw it on its way, only not at the ends), else refused ``unwitnessed``.
    """

    near_m: float = 50.0
    dropoff_window_s: float = 60.0
    after_s: float = 10.0
    pay_share: float = 0.4
    contradict_share: float = 0.1
    unseen_allowance: int = 12
    impossible_allowance: int = 0
    later_seen: int = 3
    hold_s: float = 300.0


def judge_presence(sightings: Sequence[Sighting], *, pickup: tuple[float, float], dropoff: tuple[float, float],
                   awarded_ms: int, receipt_ms: int, arrived_ms: int, now_ms: int,
                   rule: WitnessRule = WitnessRule()) -> Verdict:
    """The witnessed verdict on a receipt whose own checks passed: paid, refused, or ``held`` (judged again later)."""
    since = [s for s in sightings if s.t_ms >= awarded_ms]
    during = [s for s in since if s.t_ms <= receipt_ms + rule.after_s * 1000]
    impossible = sum(s.verdict == IMPOSSIBLE for s in during)
    if impossible > rule.impossible_allowance:
        return Verdict(False, f"contradicted: {impossible} of its claimed poses were inside a corroborated obstacle")
    seen, unseen = _counts(during)
    if unseen > rule.unseen_allowance and seen < rule.contradict_share * (seen + unseen):
        return Verdict(False, f"contradicted: peers' lidar passed through {unseen} of its claimed poses "
                              f"and saw it at {seen}")
    witnessed = [s for s in during if s.verdict == SEEN]
    left_pickup = any(s.t_ms <= receipt_ms and math.dist((s.x, s.y), pickup) <= rule.near_m for s in witnessed)
    reached = any(s.t_ms >= receipt_ms - rule.dropoff_window_s * 1000
                  and math.dist((s.x, s.y), dropoff) <= rule.near_m for s in witnessed)
    if left_pickup and reached and seen >= rule.pay_share * (seen + unseen):
        return Verdict(True, "witnessed: seen leaving the pickup and reaching the dropoff")
    seen_later, unseen_later = _counts([s for s in since if s.t_ms >= receipt_ms])
    if seen and seen >= rule.pay_share * (seen + unseen) and seen_later >= rule.later_seen \
            and seen_later >= rule.pay_share * (seen_later + unseen_later):
        return Verdict(True, f"witnessed_later: seen {seen_later} times where it said it was since the delivery")
    if now_ms - arrived_ms >= rule.hold_s * 1000:
        return Verdict(False, f"unwitnessed: peers did not see the robot deliver, nor often enough within "
                              f"{rule.hold_s:.0f} s after")
    return Verdict(False, "held: not yet witnessed by peers; judged again as their verdicts arrive", held=True)


def _counts(sightings: Sequence[Sighting]) -> tuple[int, int]:
    """(seen, unseen) among ``sightings``."""
    return sum(s.verdict == SEEN for s in sightings), sum(s.verdict == UNSEEN for s in sightings)
