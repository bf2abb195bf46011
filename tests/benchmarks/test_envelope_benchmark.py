"""The envelope benchmark still runs and reports every figure (its speed is measured, never asserted)."""

import re

import pytest

from benchmarks import envelope


def test_benchmark_reports_all_four_rates_and_the_goal(capsys: pytest.CaptureFixture[str]) -> None:
    assert envelope.main(["--messages", "40", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d.]+) \|$", out, flags=re.M)
    assert [name for name, _, _ in rows] == [
        "raw PyNaCl sign (same bytes)",
        "envelope seal",
        "raw PyNaCl verify (same bytes)",
        "envelope verify (full checks)",
    ]
    assert all(int(rate.replace(",", "")) > 0 for _, rate, _ in rows)
    assert re.search(r"verify goal >= 0.80 of raw: (met|NOT met) \(\d\.\d\d\)", out)
