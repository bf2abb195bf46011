"""Envelope sign and verify per second, beside raw PyNaCl sign and verify of the same bytes.

Run:  python benchmarks/envelope.py [--messages N] [--rounds R]

Each round measures all four operations back to back on the same messages, so
machine noise hits them alike; the figures are the medians over rounds, and the
ratios compare each envelope operation with its raw baseline from the same run.
Goal (issue #2): envelope verify >= 80% of the raw verify rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

from identity.envelope import EnvelopeSigner, EnvelopeVerifier, Sequencer
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry


def telemetry(n: int) -> dict[str, object]:
    """A realistic telemetry body: pose, velocity, battery, a short lidar summary."""
    return {
        "pose": {"x": 100.0 + n * 0.013, "y": -42.5 + n * 0.007, "theta": 1.5707},
        "twist": {"v": 1.2, "w": -0.05},
        "battery": 0.87,
        "odometer_m": 1234.5 + n,
        "lidar_min_m": 2.75,
    }


def rate(operation: Callable[[int], object], count: int) -> float:
    """Operations per second for ``operation(i)`` over i in range(count)."""
    start = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - start)


def run(messages: int, rounds: int, directory: Path) -> dict[str, float]:
    """Median rates of the four operations over ``rounds`` rounds of ``messages`` messages."""
    key = Signer.generate()
    raw_key = SigningKey(key.seed)
    raw_verify_key = raw_key.verify_key
    rates: dict[str, list[float]] = {"raw_sign": [], "envelope_sign": [], "raw_verify": [], "envelope_verify": []}
    with DidRegistry(directory / "bench-registry.sqlite3") as registry:
        did = create_identity(registry, key).did
        for round_number in range(rounds):
            signer = EnvelopeSigner(key, did, sequencer=Sequencer(round_number * messages * 10 + 1))
            bodies = [telemetry(i) for i in range(messages)]
            wires: list[bytes] = []
            rates["envelope_sign"].append(rate(lambda i: wires.append(signer.seal("telemetry", bodies[i])), messages))
            raw_bytes = [w[: w.rindex(b',"sig":')] + b"}" for w in wires]  # the same canonical bytes, unsigned
            raw_signed = []
            rates["raw_sign"].append(rate(lambda i: raw_signed.append(raw_key.sign(raw_bytes[i])), messages))
            verifier = EnvelopeVerifier(registry)
            accepted = {"telemetry"}  # as an ingest subscriber passes the kinds it takes
            rates["envelope_verify"].append(rate(lambda i: verifier.verify(wires[i], kinds=accepted), messages))
            rates["raw_verify"].append(rate(lambda i: raw_verify_key.verify(raw_signed[i]), messages))
            print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


def report(medians: dict[str, float], messages: int, rounds: int) -> str:
    """The figures as a Markdown table with ratios to the raw baselines."""
    sign_ratio = medians["envelope_sign"] / medians["raw_sign"]
    verify_ratio = medians["envelope_verify"] / medians["raw_verify"]
    return "\n".join(
        [
            f"messages per round: {messages}, rounds: {rounds} (medians)",
            "",
            "| operation | per second | vs raw PyNaCl |",
            "|---|---:|---:|",
            f"| raw PyNaCl sign (same bytes) | {medians['raw_sign']:,.0f} | 1.00 |",
            f"| envelope seal | {medians['envelope_sign']:,.0f} | {sign_ratio:.2f} |",
            f"| raw PyNaCl verify (same bytes) | {medians['raw_verify']:,.0f} | 1.00 |",
            f"| envelope verify (full checks) | {medians['envelope_verify']:,.0f} | {verify_ratio:.2f} |",
            "",
            f"verify goal >= 0.80 of raw: {'met' if verify_ratio >= 0.80 else 'NOT met'} ({verify_ratio:.2f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="depai-bench-") as tmp:
        medians = run(args.messages, args.rounds, Path(tmp))
    print(report(medians, args.messages, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
