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
from collections.abc import Callable
from dataclasses import dataclass

from identity.canonical import canonicalize
from identity.keys import verify

TRAIL_LENGTH = 600  # telemetry points kept per robot (5 minutes at 2 Hz)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a receipt proves the delivery, and why not when it does not."""

    accepted: bool
    reason: str = ""


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
