"""The fleet benchmark still runs end to end and reports every figure (its speed is measured, never asserted)."""

import math
import re

import pytest

from benchmarks import fleet as bench

COLUMNS = [
    "robots", "simulated s x rounds", "ours RTF", "bare RTF", "overhead (ours/bare wall)",
    "bare RTF, no robot bodies", "overhead vs no robot bodies", "pybullet-fleet RTF", "ours / pybullet-fleet",
    "messages signed per wall s", "arrivals ours", "arrivals pybullet-fleet",
]
POSITIVE = ["ours RTF", "bare RTF", "overhead (ours/bare wall)", "bare RTF, no robot bodies",
            "overhead vs no robot bodies", "messages signed per wall s"]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def table(out: str) -> list[dict[str, str]]:
    """The Markdown table in ``out``, one dict (column -> cell) per row."""
    [block] = re.findall(r"(?:^\|.*\|\n?)+", out, re.M)
    header, _rule, *rows = block.strip().splitlines()
    names = [cell.strip() for cell in header.strip("|").split("|")]
    return [dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")), strict=True)) for row in rows]


def logged_arrivals(err: str) -> dict[str, list[str]]:
    """The arrivals each measured round reported on stderr, by robot count."""
    rounds: dict[str, list[str]] = {}
    for robots, arrivals in re.findall(r"^  (\d+) robots, round \d+/\d+, .*, ([\d,]+) arrivals\)$", err, re.M):
        rounds.setdefault(robots, []).append(arrivals)
    return rounds


def test_quick_run_reports_every_column_for_every_robot_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--no-compare", "--rays", "8"]) == 0
    captured = capsys.readouterr()
    out, logged = captured.out, logged_arrivals(captured.err)
    assert out.startswith("rays per robot: 8 ")
    rows = table(out)
    assert list(rows[0]) == COLUMNS
    assert [row["robots"] for row in rows] == ["3", "10"]
    for row in rows:
        assert row["simulated s x rounds"] == "3 x 1"
        for name in POSITIVE:
            value = number(row[name])
            assert value > 0 and math.isfinite(value), (row["robots"], name, row[name])
        assert [row["arrivals ours"]] == logged[row["robots"]]  # the table reports what its one round counted
        assert row["pybullet-fleet RTF"] == row["ours / pybullet-fleet"] == row["arrivals pybullet-fleet"] == "—"
    assert "1000 robots >= 1x real time: not measured (no 1000-robot run)" in out
    assert "100 robots >= 10x real time: not measured (no 100-robot run)" in out
    assert re.search(r"\(0 refused, \d+ re-sent", out)
    assert "pybullet-fleet: not run (--no-compare)" in out


def test_robots_sent_to_drop_offs_arrive_and_every_arrival_is_counted(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--robots", "3", "--seconds", "150", "--warmup", "0", "--rounds", "2", "--no-compare",
                       "--rays", "8"]) == 0
    captured = capsys.readouterr()
    [row] = table(captured.out)
    rounds = [int(n) for n in logged_arrivals(captured.err)["3"]]
    assert len(rounds) == 2 and sum(rounds) > 0, rounds  # 5 minutes of driving: the patrol's robots get somewhere
    assert int(row["arrivals ours"]) == sum(rounds)  # the table adds up its rounds


def test_a_goal_is_judged_when_its_robot_count_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--robots", "100", "--seconds", "0.5", "--warmup", "0", "--rounds", "2", "--no-compare"]) == 0
    out = capsys.readouterr().out
    [row] = table(out)
    assert row["simulated s x rounds"] == "0.5 x 2"
    assert re.search(r"^100 robots >= 10x real time: (met|NOT met) \(\d+\.\d\dx; by round \d+\.\d\d \d+\.\d\d; "
                     r"bare PyBullet \d+\.\d\dx, without robot bodies \d+\.\d\dx\)$", out, re.M)


def test_a_comparison_venv_that_cannot_be_built_is_reported_and_skipped(
        capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert bench.main(["--quick", "--robots", "2", "--seconds", "0.5", "--pbf-venv", str(blocker / "venv")]) == 0
    captured = capsys.readouterr()
    assert "pybullet-fleet comparison skipped: could not create the venv" in captured.err
    assert "pybullet-fleet: not run: could not create the venv" in captured.out
    [row] = table(captured.out)
    assert row["pybullet-fleet RTF"] == "—"
