"""The shared map against the simulator's ground truth, honest and with lying robots (fixed seed and thresholds).

The runs are benchmarks/map_accuracy.py's scenarios, shortened: a small fleet
delivering orders in a city with parked vans and closed streets, every robot
publishing signed scans, one robot in ten lying in the second run (the issue's 10 %).
With RTK-class GNSS (5 cm) the map meets the goals; with consumer GNSS (1.5 m)
the robots match their scans against the shared map for heading and learn their
odometry's scale and drift, which takes the map's IoU to 0.81 here (0.63 with the
3-state EKF), short of issue #20's goals (IoU >= 0.9 and pose error p95 <= 0.3 m;
see docs/map.md, "Localizing against the map").
"""

import pytest

from benchmarks.map_accuracy import CONSUMER_SIGMA_M, RTK_SIGMA_M, run_scenario


@pytest.fixture(scope="module")
def honest():
    return run_scenario(seed=3, robots=10, liar_fraction=0.0, duration_s=300, gnss_sigma_m=RTK_SIGMA_M)


def test_an_honest_fleets_map_matches_the_ground_truth(honest) -> None:
    assert honest.observed_cells > 20_000, "the fleet should have seen a good part of the city"
    assert honest.iou >= 0.9
    assert honest.pose_p95 <= 0.3  # the robots' own pose estimates, against ground truth
    assert honest.false_blockages == 0 and honest.refused == 0


def test_a_closed_road_a_robot_found_is_confirmed_and_believed(honest) -> None:
    """One robot meets the roadworks; the map suspects the road, a second robot is sent, and it is believed."""
    assert honest.blocked_seen >= 1 and honest.surveys >= 1
    # The closure was believed for a while (17 % of the time here: in 300 s only some robots earn the 0.8 weight
    # a witness needs, and in 200 s it was 0 to 50 % by seed; the 20-robot, 400 s benchmark believes them 72 % of
    # the time), and nothing false was.
    assert honest.believed_share > 0.0 and honest.precision == 1.0 and honest.false_blockages == 0


def test_liars_lose_trust_and_do_not_move_the_map(honest) -> None:
    lying = run_scenario(seed=3, robots=10, liar_fraction=0.1, duration_s=300, gnss_sigma_m=RTK_SIGMA_M)
    assert lying.liars == 1
    assert honest.iou - lying.iou <= 0.02
    assert lying.false_blockages == 0 and lying.precision == 1.0
    assert lying.liar_weight < lying.honest_weight / 2


def test_with_consumer_gnss_matching_scans_to_the_map_keeps_it_better_than_gnss_alone() -> None:
    """Measured in this run: IoU 0.81, pose error p50 / p95 0.22 / 0.57 m (the 3-state EKF that did not learn the
    odometry's scale and drift: 0.63, 0.28 / 0.65 m)."""
    consumer = run_scenario(seed=3, robots=10, liar_fraction=0.0, duration_s=200, gnss_sigma_m=CONSUMER_SIGMA_M)
    assert consumer.iou >= 0.72
    assert consumer.pose_p95 <= 0.62 and consumer.pose_p50 <= 0.25
    assert consumer.false_blockages == 0 and consumer.refused == 0
