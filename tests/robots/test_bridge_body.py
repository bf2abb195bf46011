"""The bridge's Body over callbacks: commands never exceed the datasheet, and the payload slot obeys its rules."""

import math

import numpy as np
import pytest

from robots.body import BodyProfile, GnssFix, LidarScan, Odometry, Sensors
from robots.bridge.body import CallbackBody

PROFILE = BodyProfile("courier", max_speed_mps=1.5, max_turn_rps=2.0, radius_m=0.4, payload_kg=10.0, mass_kg=40.0,
                      battery_wh=500.0, wh_per_m=0.05, idle_w=20.0)
READING = Sensors(3.0, Odometry(3.0, 1.0, 2.0, 0.5, 0.8, 0.1, 12.0), GnssFix(3.0, 1.1, 2.1, 0.3),
                  LidarScan(3.0, -2.0, 0.1, 12.0, np.full(40, math.inf), math.inf), 0.8, False, None, 0.0)


class Robot:
    """What a robot's callbacks saw."""

    def __init__(self) -> None:
        self.drives: list[tuple[float, float]] = []
        self.actions: list[tuple] = []

    def body(self, *, hooks: bool = False, **extra) -> CallbackBody:
        if hooks:
            extra.setdefault("load", lambda parcel, kg: self.actions.append(("load", parcel, kg)))
            extra.setdefault("unload", lambda: self.actions.append(("unload",)))
        return CallbackBody(PROFILE, drive=lambda v, w: self.drives.append((v, w)), read=lambda: READING, **extra)


@pytest.mark.parametrize("command, sent", [
    ((1.0, 0.5), (1.0, 0.5)),
    ((9.0, 5.0), (1.5, 2.0)),
    ((-9.0, -5.0), (-1.5, -2.0)),
    ((math.inf, 0.0), (0.0, 0.0)),
    ((0.5, math.nan), (0.0, 0.0)),
])
def test_drive_is_clamped_to_the_datasheet_and_a_non_finite_command_stops(command, sent) -> None:
    robot = Robot()
    robot.body().drive(*command)
    assert robot.drives == [sent]


@pytest.mark.parametrize("hooks", [False, True], ids=["slot-only", "with-hooks"])
def test_the_payload_slot_is_reported_over_the_reading_and_emptied_by_unload(hooks: bool) -> None:
    robot = Robot()
    body = robot.body(hooks=hooks)
    assert body.sense() == READING
    body.load("parcel-1", 2.5)
    sensed = body.sense()
    assert (sensed.payload, sensed.load_kg) == ("parcel-1", 2.5)
    assert sensed._replace(payload=None, load_kg=0.0) == READING  # the rest is the robot's reading
    assert body.unload() == "parcel-1"
    assert (body.sense().payload, body.sense().load_kg) == (None, 0.0)
    assert body.unload() is None
    assert robot.actions == ([("load", "parcel-1", 2.5), ("unload",), ("unload",)] if hooks else [])


@pytest.mark.parametrize("hooks", [False, True], ids=["slot-only", "with-hooks"])
@pytest.mark.parametrize("kg, why", [(10.5, "0..10.0 kg"), (-1.0, "0..10.0 kg"), (math.nan, "0..10.0 kg")])
def test_a_parcel_too_heavy_or_not_a_weight_is_refused_before_the_robot_hears_of_it(hooks, kg, why) -> None:
    robot = Robot()
    body = robot.body(hooks=hooks)
    with pytest.raises(ValueError, match=why):
        body.load("parcel-1", kg)
    assert body.sense().payload is None and robot.actions == []


def test_a_full_slot_refuses_a_second_parcel() -> None:
    robot = Robot()
    body = robot.body(hooks=True)
    body.load("parcel-1", 10.0)  # the limit itself is allowed
    with pytest.raises(ValueError, match="already holds 'parcel-1'"):
        body.load("parcel-2", 1.0)
    assert (body.sense().payload, body.sense().load_kg) == ("parcel-1", 10.0)
    assert robot.actions == [("load", "parcel-1", 10.0)]


def test_a_robot_refusing_the_load_leaves_the_slot_empty() -> None:
    def jammed(parcel: str, kg: float) -> None:
        raise ValueError("the hatch is jammed")

    body = Robot().body(load=jammed)
    with pytest.raises(ValueError, match="jammed"):
        body.load("parcel-1", 1.0)
    assert body.sense().payload is None


def test_now_is_the_given_clock() -> None:
    assert Robot().body(clock=lambda: 42.5).now_s() == 42.5
