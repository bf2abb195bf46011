"""The data-layer benchmark still runs end to end and reports every figure (its speed is measured, never asserted)."""

import re

import pytest

from benchmarks import bus as bench
from bus.broker import mosquitto_binary

MEASUREMENTS = [
    "raw PyNaCl verify (same bytes, this process)",
    "Ingest.handle in this process (no MQTT)",
    "raw broker: QoS 1 to a plain paho subscriber, counting only",
    "broker to a BusClient with one worker's subscriptions, counting only",
    "end to end, 1 worker process",
    "end to end, 2 worker processes",
]
DRAINS = MEASUREMENTS[2:]


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def tables(out: str) -> dict[str, list[list[str]]]:
    """Each Markdown table in ``out``: its header line -> its rows, as lists of cells."""
    found: dict[str, list[list[str]]] = {}
    for block in re.findall(r"(?:^\|.*\|\n?)+", out, re.M):
        header, _rule, *rows = block.strip().splitlines()
        found[header] = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return found


def test_benchmark_reports_every_figure_for_every_broker(capsys: pytest.CaptureFixture[str]) -> None:
    brokers = ["mosquitto", "amqtt"] if mosquitto_binary() else ["amqtt"]
    argv = ["--messages", "60", "--robots", "6", "--rounds", "1", "--brokers", ",".join(brokers),
            "--rate", "100", "--latency-seconds", "0.3"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    found = tables(out)

    rates = found["| broker | measurement | messages/s | vs raw verify | vs raw broker | vs 1 worker |"]
    assert [row[:2] for row in rates] == [[kind, name] for kind in brokers for name in MEASUREMENTS]
    for kind, name, rate, vs_verify, vs_broker, vs_one in rates:
        assert number(rate) > 0 and number(vs_verify) > 0, (kind, name)
        assert (vs_broker != "—") == (name in DRAINS), (kind, name)
        assert (vs_one != "—") == name.startswith("end to end"), (kind, name)
        assert all(number(cell) > 0 for cell in (vs_broker, vs_one) if cell != "—"), (kind, name)

    cpu = found["| broker | measurement | broker process | subscriber processes |"]
    assert [row[:2] for row in cpu] == [[kind, name] for kind in brokers for name in DRAINS]
    assert all(re.fullmatch(r"\d+%|—", cell) for row in cpu for cell in row[2:])  # — without /proc

    latency = found["| broker | offered load | messages per round | p50 ms | p99 ms | p99 ms by round | max ms |"]
    assert [row[0] for row in latency] == brokers
    for kind, offered, count, p50, p99, p99_by_round, worst in latency:
        assert re.fullmatch(r"[\d,]+/s for 0.3 s", offered) and int(count) == 30, kind
        assert 0 < number(p50) <= number(p99) <= number(worst), kind
        assert re.fullmatch(r"\d+\.\d", p99_by_round), kind  # one round

    ratio = r"\(\d+\.\d{3}; by round \d+\.\d\d\)"  # one round: one ratio
    verdicts = re.findall(rf"^(\w+): 1 worker >= 0.70 of raw verify: (?:met|NOT met) {ratio}; "
                          rf"2 workers >= 1.6x 1 worker: (?:met|NOT met) {ratio}$", out, re.M)
    assert verdicts == brokers


def test_the_rate_limit_bounds_the_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--messages", "1001", "--robots", "10"])
    assert "burst of 100 messages" in capsys.readouterr().err
