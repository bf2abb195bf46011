"""Obstacle hiding with the real simulator: a liar claiming to stand on roadworks is caught in every seeded trial,
the face it would hide stays in the map and the road stays blocked; honest robots near peers are seen, not missed."""

from __future__ import annotations

from benchmarks.obstacle_hiding import run_trial

SEEDS = range(1, 5)  # about 5 s each; the benchmark runs 20 (benchmarks/RESULTS.md)


def test_a_liar_standing_on_roadworks_is_caught_in_every_trial_and_honest_robots_are_seen() -> None:
    trials = [run_trial(seed) for seed in SEEDS]
    for trial in trials:
        assert trial.arrived == 3, f"seed {trial.seed}: the scenario failed: not every looker reached the roadworks"
        assert trial.caught, f"seed {trial.seed}: liar verdicts {trial.liar_verdicts}, {trial.liar_confidence:.2f}"
        assert trial.face_held, f"seed {trial.seed}: face {trial.face_believed}/{trial.face_cells} believed"
        assert trial.road_blocked, f"seed {trial.seed}: the closed road is not believed blocked"
    near = sum(t.honest_near_s for t in trials)
    seen = sum(t.honest_seen_near_s for t in trials)
    verdicts = sum(sum(t.honest_verdicts.values()) for t in trials)
    doubts = sum(t.honest_verdicts["unseen"] + t.honest_verdicts["impossible"] for t in trials)
    assert near > 200 and seen / near >= 0.9  # 0.976 over the benchmark's 20 trials
    assert verdicts > 500 and doubts / verdicts <= 0.02  # 0 of 5,959 over the benchmark's 20 trials
