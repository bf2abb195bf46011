"""Physical plausibility of what a machine says about its own motion.

A signature proves who said something, not that it is true. Telemetry and scans
are checked against the machine's declared limits (maximum speed from its DID
document, an acceleration bound) and against what it said before: pose
continuity, and timestamps that advance and stay near the envelope's issue time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ACCEL = 3.0  # m/s^2, a bound for wheeled delivery robots until the profile declares one


@dataclass(frozen=True, slots=True)
class MotionLimits:
    """What a machine can physically do, with the slack its sensors need."""

    max_speed_mps: float
    max_accel_mps2: float = DEFAULT_MAX_ACCEL
    tolerance: float = 0.25
    position_slack_m: float = 2.0  # a GNSS correction may move a robot's own estimate this much at once
    clock_slack_ms: int = 5000


@dataclass(frozen=True, slots=True)
class _Sample:
    t_ms: int
    x: float
    y: float
    v: float


class MotionTracker:
    """The last accepted motion sample of each machine, and the checks a new one must pass."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], _Sample] = {}

    def reset(self, did: str) -> None:
        """Forget a machine's motion (at a new birth it may have been moved while offline)."""
        for key in [k for k in self._last if k[0] == did]:
            del self._last[key]

    def evaluate(
        self, did: str, kind: str, limits: MotionLimits, body: dict[str, Any], issued_at_ms: int
    ) -> str | None:
        """Why ``body`` (telemetry or scan, each its own stream) is implausible for ``did``, or None; changes nothing."""
        t = body["t"]
        if abs(t - issued_at_ms) > limits.clock_slack_ms:
            return f"sample time {t} is {t - issued_at_ms} ms from the envelope's issue time"
        pose = body["pose"]
        speed_cap = limits.max_speed_mps * (1 + limits.tolerance)
        twist = body.get("twist")
        v = float(twist["v"]) if twist else None
        if v is not None and abs(v) > speed_cap:
            return f"speed {v:.2f} m/s exceeds the declared maximum {limits.max_speed_mps} m/s"
        last = self._last.get((did, kind))
        if last is None:
            return None
        dt = (t - last.t_ms) / 1000
        if dt <= 0:
            return f"sample time {t} does not advance past {last.t_ms}"
        jump = math.hypot(pose["x"] - last.x, pose["y"] - last.y)
        if jump > speed_cap * dt + limits.position_slack_m:
            return f"moved {jump:.2f} m in {dt:.3f} s; at most {speed_cap * dt + limits.position_slack_m:.2f} m possible"
        if v is not None and abs(v - last.v) > limits.max_accel_mps2 * (1 + limits.tolerance) * dt + 0.5:
            return f"speed changed by {abs(v - last.v):.2f} m/s in {dt:.3f} s, beyond {limits.max_accel_mps2} m/s^2"
        return None

    def record(self, did: str, kind: str, body: dict[str, Any]) -> None:
        """Remember an accepted sample as the machine's latest of its kind."""
        last = self._last.get((did, kind))
        twist = body.get("twist")
        v = float(twist["v"]) if twist else (last.v if last else 0.0)
        if last is None or body["t"] > last.t_ms:
            self._last[(did, kind)] = _Sample(body["t"], float(body["pose"]["x"]), float(body["pose"]["y"]), v)


def scan_problem(body: dict[str, Any]) -> str | None:
    """Why a lidar scan is impossible as sent (a range beyond its own maximum), or None."""
    limit = body["range_max"]
    for index, value in enumerate(body["ranges"]):
        if value is not None and value > limit:
            return f"range {index} is {value} m, beyond the scan's own maximum {limit} m"
    return None
