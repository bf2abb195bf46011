"""Trip energy, the charge-now decision and charging time, checked against numbers worked by hand."""

import pytest

from robots.body import BodyProfile
from robots.energy import charge_time_s, drive_wh, must_charge

ROBOT = BodyProfile(model="test-rover", max_speed_mps=1.25, max_turn_rps=2.0, radius_m=0.35, payload_kg=20.0,
                    mass_kg=40.0, battery_wh=500.0, wh_per_m=0.02, idle_w=36.0)


def test_drive_energy_by_hand() -> None:
    # 1000 m unloaded at the default 1.0 m/s (80 % of 1.25): 20 Wh traction + 36 W for 1000 s = 10 Wh
    assert drive_wh(ROBOT, 1000.0) == pytest.approx(30.0)
    # with 20 kg aboard traction is 1.5x: 30 Wh; at 2 m/s the idle draw runs 500 s: 5 Wh
    assert drive_wh(ROBOT, 1000.0, 20.0, speed_mps=2.0) == pytest.approx(35.0)
    assert drive_wh(ROBOT, 0.0) == 0.0
    with pytest.raises(ValueError):
        drive_wh(ROBOT, 10.0, speed_mps=0.0)


def test_must_charge_flips_where_the_reserve_would_be_touched() -> None:
    # 1000 m + 500 m unloaded costs 45 Wh; the reserve is 15 % of 500 Wh = 75 Wh; break-even at 120 Wh = 24 %
    legs = {"to_goal_m": 1000.0, "goal_to_charger_m": 500.0}
    assert must_charge(ROBOT, 0.239, **legs)
    assert not must_charge(ROBOT, 0.241, **legs)
    assert not must_charge(ROBOT, 0.24, **legs)  # exactly at the reserve is still enough
    # 10 kg aboard: traction 1.25x -> 37.5 + 15 = 52.5 Wh, break-even at 127.5 Wh = 25.5 %
    assert must_charge(ROBOT, 0.254, **legs, load_kg=10.0)
    assert not must_charge(ROBOT, 0.256, **legs, load_kg=10.0)
    # a bigger reserve: 30 % = 150 Wh, break-even at 195 Wh = 39 %
    assert must_charge(ROBOT, 0.389, **legs, reserve=0.3)
    assert not must_charge(ROBOT, 0.391, **legs, reserve=0.3)


def test_charge_time_by_hand() -> None:
    # 20 % -> 90 % of 500 Wh is 350 Wh; at 250 W that is 1.4 h
    assert charge_time_s(ROBOT, 0.2, 0.9, 250.0) == pytest.approx(1.4 * 3600.0)
    assert charge_time_s(ROBOT, 0.95, 0.9, 250.0) == 0.0
    with pytest.raises(ValueError):
        charge_time_s(ROBOT, 0.2, 0.9, 0.0)
