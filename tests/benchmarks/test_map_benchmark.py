"""The map benchmark still runs and reports every figure (its speed is measured, never asserted)."""

import re

import numpy as np
import pytest

from benchmarks import map as bench

ROWS = [
    "per-ray reference (spatial.reference, dict per cell)",
    "OccupancyGrid.integrate, one call per scan",
    "OccupancyGrid.integrate_many, one call per 0.1 s tick",
    "integrate_many + belief() of written tiles at 1 Hz",
]


def test_quick_run_reports_every_rate_ratio_and_goal(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("robots: 10, simulated s: 3, scans: 300 (64 beams, 12 m, 0.2 m cells, ")
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d.]+) \|$", out, flags=re.M)
    assert [name for name, _, _ in rows] == ROWS
    assert all(int(rate.replace(",", "")) > 0 and float(ratio) > 0 for _, rate, ratio in rows)
    assert rows[0][2] == "1.0"
    assert re.search(r"^belief\(\): [\d,]+ tiles/s; \d+\.\d ms per simulated second", out, re.M)
    assert re.search(r"^CPU / wall while integrating: \d\.\d\d", out, re.M)
    agreement = re.search(r"^agreement with the reference: ([\d,]+) cells, max \|own log-odds difference\| (\S+)$",
                          out, re.M)
    assert agreement and int(agreement[1].replace(",", "")) > 0
    assert float(agreement[2]) < 2e-3  # the grid stores log-odds to about 2e-4
    for name in ("integrate", "integrate_many"):
        assert re.search(rf"^goal >= 5,000 scans/s per core, {name}: (met|NOT met) \([\d,]+; by round [\d,]+\)$",
                         out, re.M)


def test_the_world_gives_returns_where_boxes_are() -> None:
    world = bench.World(np.array([[10.0, -1.0, 12.0, 1.0]]))
    pose = np.array([[5.0, 0.0, 0.0]])
    ranges = world.ranges(pose, np.random.default_rng(0))[0]
    east = bench.BEAMS // 2  # the beam at angle 0
    assert ranges[east] == pytest.approx(5.0, abs=0.1)
    assert np.isinf(ranges[0])  # west: nothing
    assert world.inside(np.array([[11.0, 0.0], [5.0, 0.0], [-1.0, 5.0]])).tolist() == [True, False, True]
