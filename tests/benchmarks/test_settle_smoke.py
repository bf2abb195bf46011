"""The settlement benchmark runs end to end on a short SQLite run and prints its table."""

from benchmarks.settle import main


def test_the_settlement_benchmark_prints_its_table(capsys) -> None:
    assert main(["--quick", "--no-pg"]) == 0
    out = capsys.readouterr().out
    assert "| SQLite (WAL, synchronous=FULL) |" in out and ">= 2,000 settlements/s on SQLite:" in out
