"""What a service pays per robot message: verifying it itself, or reading it back from ingest's verified channel.

Run:  python -m benchmarks.relay [--messages N] [--rounds R]   (from the repository root)

Services in other processes could each verify every robot message they act on
(an Ed25519 verify and a key lookup per message per service), or take it from
an ingest worker on the verified channel, which only the ingest role may write
(bus/relay.py): one verify per message for the whole fleet, and per service a
batch (bus/frames.py) unpacked and each envelope re-read without the
signature (``identity.envelope.reread``). This measures both per envelope, in
the same run, as ratios to the full verify. (The MQTT receive itself, about
10,900 QoS 1 messages/s for a plain paho subscriber on this machine, is in the
data layer's section of RESULTS.md: batching pays it once per batch, not once
per envelope.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.envelope import telemetry
from bus.frames import pack, unpack
from identity.envelope import EnvelopeSigner, EnvelopeVerifier, Sequencer, reread
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry

TOPIC = "depai/v1/robots/0/5Grobot/telemetry"


def per_second(work: Callable[[], object], count: int) -> float:
    """Envelopes per second for one call of ``work`` over ``count`` envelopes."""
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def run(messages: int, rounds: int, directory: Path) -> dict[str, float]:
    """Median envelopes per second of: full verify, reread one by one, unpack a batch and reread its envelopes."""
    key = Signer.generate()
    rates: dict[str, list[float]] = {"verify": [], "reread": [], "batch": []}
    with DidRegistry(directory / "registry.sqlite3") as registry:
        did = create_identity(registry, key).did
        for round_number in range(rounds):
            signer = EnvelopeSigner(key, did, sequencer=Sequencer(round_number * messages * 10 + 1))
            wires = [signer.seal("telemetry", telemetry(i)) for i in range(messages)]
            batch = pack([(TOPIC, wire) for wire in wires])
            verifier = EnvelopeVerifier(registry)
            rates["verify"].append(per_second(lambda: [verifier.verify(wire) for wire in wires], messages))
            rates["reread"].append(per_second(lambda: [reread(wire) for wire in wires], messages))
            rates["batch"].append(per_second(lambda: [reread(wire) for _, wire in unpack(batch)], messages))
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        rates = run(args.messages, args.rounds, Path(directory))
    base = rates["verify"]
    print(f"{'per envelope':<52} {'per second':>12} {'vs verify':>10}")
    for name, label in (("verify", "full verify (signature, key, time, replay)"),
                        ("reread", "reread from the verified channel"),
                        ("batch", "unpack a batch and reread its envelopes")):
        print(f"{label:<52} {rates[name]:>12,.0f} {rates[name] / base:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
