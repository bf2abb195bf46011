"""Pieces of ``depai serve``'s roles that decide something on their own."""

from __future__ import annotations

import pytest

from launch.serve import MAX_BEHIND_WALL_S, skip_ahead


@pytest.mark.parametrize(("behind_s", "speed", "skip"), [
    (0.0, 5.0, 0.0), (9.9, 5.0, 0.0), (10.0, 5.0, 0.0),  # up to 2 wall seconds at x5: keep stepping
    (10.1, 5.0, 10.1), (130.0, 20.0, 130.0),  # further behind: jump to the clock, all of it
    (1.9, 1.0, 0.0), (2.5, 1.0, 2.5), (-0.5, 5.0, 0.0),  # real time; a shard ahead never jumps
])
def test_a_shard_skips_to_the_clock_only_when_it_is_more_than_two_wall_seconds_behind(
        behind_s: float, speed: float, skip: float) -> None:
    assert MAX_BEHIND_WALL_S == 2.0
    assert skip_ahead(behind_s, speed) == skip
