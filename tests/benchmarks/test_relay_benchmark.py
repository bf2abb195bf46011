"""The relay benchmark still runs and reports its three rates (speed is measured there, never asserted here)."""

import re

import pytest

from benchmarks import relay


def test_benchmark_reports_verify_reread_and_batch(capsys: pytest.CaptureFixture[str]) -> None:
    assert relay.main(["--messages", "50", "--rounds", "1"]) == 0
    rows = re.findall(r"^(.+?)\s{2,}([\d,]+)\s+([\d.]+)$", capsys.readouterr().out, flags=re.M)
    assert [name.strip() for name, _, _ in rows] == ["full verify (signature, key, time, replay)",
                                                     "reread from the verified channel",
                                                     "unpack a batch and reread its envelopes"]
    assert all(int(rate.replace(",", "")) > 0 for _, rate, _ in rows)
