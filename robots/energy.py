"""The robot's own sense of energy, from its datasheet: what a trip costs, and when it must go and charge."""

from __future__ import annotations

from robots.body import BodyProfile


def drive_wh(profile: BodyProfile, distance_m: float, load_kg: float = 0.0, *, speed_mps: float | None = None) -> float:
    """Energy in Wh to drive ``distance_m`` carrying ``load_kg``: traction scaled by total mass, plus idle draw.

    The trip takes ``distance_m / speed_mps`` seconds (speed defaults to 80 % of the top speed).
    """
    speed = 0.8 * profile.max_speed_mps if speed_mps is None else speed_mps
    if speed <= 0.0:
        raise ValueError(f"speed must be positive, got {speed}")
    traction = profile.wh_per_m * distance_m * (profile.mass_kg + load_kg) / profile.mass_kg
    return traction + profile.idle_w * (distance_m / speed) / 3600.0


def must_charge(profile: BodyProfile, soc: float, *, to_goal_m: float, goal_to_charger_m: float,
                load_kg: float = 0.0, reserve: float = 0.15) -> bool:
    """True when driving to the goal and on to the nearest charger would leave less than ``reserve`` of the battery.

    Both legs are costed with ``load_kg`` aboard, erring on the safe side; ``soc`` is the charge fraction, 0..1.
    """
    need = drive_wh(profile, to_goal_m + goal_to_charger_m, load_kg)
    return soc * profile.battery_wh - need < reserve * profile.battery_wh


def charge_time_s(profile: BodyProfile, soc: float, target_soc: float, charge_w: float) -> float:
    """Seconds to charge from ``soc`` to ``target_soc`` at ``charge_w`` watts (0 if already there)."""
    if charge_w <= 0.0:
        raise ValueError(f"charge power must be positive, got {charge_w}")
    return max(0.0, target_soc - soc) * profile.battery_wh / charge_w * 3600.0
