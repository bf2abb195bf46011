"""The RFC 4303-style sliding replay window, on its own."""

from identity.replay import ReplayGuard, ReplayVerdict


def test_first_message_from_anyone_is_new() -> None:
    guard = ReplayGuard(window=8)
    assert guard.accept("a", 5) is None
    assert guard.accept("b", 5) is None
    assert guard.highest("a") == 5


def test_duplicates_inside_the_window_are_replays() -> None:
    guard = ReplayGuard(window=8)
    for seq in (10, 7, 9):
        assert guard.accept("a", seq) is None
    for seq in (10, 7, 9):
        assert guard.accept("a", seq) is ReplayVerdict.REPLAYED
    assert guard.accept("a", 8) is None


def test_below_the_window_is_stale_at_the_edge() -> None:
    guard = ReplayGuard(window=8)
    guard.accept("a", 20)
    assert guard.check("a", 13) is None  # 7 behind: the window's last slot
    assert guard.check("a", 12) is ReplayVerdict.STALE  # 8 behind: outside


def test_check_changes_nothing() -> None:
    guard = ReplayGuard(window=8)
    guard.accept("a", 3)
    assert guard.check("a", 4) is None
    assert guard.check("a", 4) is None
    assert guard.highest("a") == 3


def test_huge_jumps_reset_the_window_without_huge_bitmaps() -> None:
    guard = ReplayGuard(window=1024)
    guard.accept("a", 100)
    assert guard.accept("a", 1_790_000_000_000_000) is None
    assert guard.accept("a", 1_790_000_000_000_000) is ReplayVerdict.REPLAYED
    assert guard.accept("a", 100) is ReplayVerdict.STALE
    assert guard.accept("a", 1_789_999_999_999_999) is None


def test_window_slides_exactly() -> None:
    guard = ReplayGuard(window=4)
    guard.accept("a", 1)
    guard.accept("a", 3)
    guard.accept("a", 5)  # window now covers 2..5 with 3 and 5 seen
    assert guard.check("a", 1) is ReplayVerdict.STALE
    assert guard.check("a", 2) is None
    assert guard.check("a", 3) is ReplayVerdict.REPLAYED
    assert guard.check("a", 4) is None
