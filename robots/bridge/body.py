"""A Body over callbacks: how the bridge drives a real robot whatever wire the robot speaks.

The robot supplies a drive callback and a sensor read; the bridge adds what a
robot must not be trusted with: commands are clamped to the datasheet, and the
payload slot (which parcel is aboard, and its weight) is kept and checked here,
since a robot's own readings do not carry it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from robots.body import BodyProfile, Sensors


class CallbackBody:
    """A ``Body`` whose motors and sensors are callbacks; ``load``/``unload`` are the robot's optional
    payload actuators, called once the bridge has accepted the parcel (or before it empties the slot)."""

    def __init__(self, profile: BodyProfile, *, drive: Callable[[float, float], None], read: Callable[[], Sensors],
                 load: Callable[[str, float], None] | None = None, unload: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.profile = profile
        self._drive, self._read, self._load, self._unload, self._clock = drive, read, load, unload, clock
        self._parcel: str | None = None
        self._load_kg = 0.0

    def now_s(self) -> float:
        """The robot's clock, in seconds."""
        return self._clock()

    def drive(self, v: float, w: float) -> None:
        """Command (v, w) clamped to the profile's max speed and turn rate; a non-finite command stops."""
        if not (math.isfinite(v) and math.isfinite(w)):
            v = w = 0.0
        speed, turn = self.profile.max_speed_mps, self.profile.max_turn_rps
        self._drive(min(speed, max(-speed, v)), min(turn, max(-turn, w)))

    def sense(self) -> Sensors:
        """The robot's latest reading, with the payload slot as the bridge keeps it."""
        return self._read()._replace(payload=self._parcel, load_kg=self._load_kg)

    def load(self, parcel: str, kg: float) -> None:
        """Take ``parcel`` aboard; ValueError if the slot is full, the weight is not 0..payload_kg, or the
        robot's load actuator refuses."""
        if self._parcel is not None:
            raise ValueError(f"the payload slot already holds {self._parcel!r}")
        if not 0.0 <= kg <= self.profile.payload_kg:  # also refuses NaN
            raise ValueError(f"a {self.profile.model} carries 0..{self.profile.payload_kg} kg, not {kg}")
        if self._load is not None:
            self._load(parcel, kg)
        self._parcel, self._load_kg = parcel, float(kg)

    def unload(self) -> str | None:
        """Hand over whatever is aboard; its id, or None if the slot was empty."""
        if self._unload is not None:
            self._unload()
        parcel, self._parcel, self._load_kg = self._parcel, None, 0.0
        return parcel
