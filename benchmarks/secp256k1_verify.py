"""Verify speed of secp256k1 (ES256K) beside Ed25519, raw and as envelopes, on the same messages (issue #18).

Run:  .venv/bin/python benchmarks/secp256k1_verify.py [--messages N] [--rounds R]

Each round signs the same telemetry bodies as one Ed25519 robot (did:peaq SS58)
and one secp256k1 robot (did:peaq:0x...), then measures back to back:

- raw verify of the 32-byte envelope digests: ``identity.keys.verify`` (PyNaCl)
  and ``identity.secp256k1.verify`` (coincurve: low-s check, compact to DER, verify),
- the library floor for secp256k1: coincurve's ``PublicKey.verify`` on a parsed
  key and ready DER signatures,
- whole envelope verification (``EnvelopeVerifier.verify``: parse, shape, time,
  registry key, signature, replay) for each robot.

Figures are medians over rounds; each ratio is the median of the rounds' own ratios (secp256k1 over
Ed25519 measured in the same round), so machine load hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from identity import keys, secp256k1
from identity.envelope import EnvelopeSigner, EnvelopeVerifier, Sequencer, digest
from identity.lifecycle import create_identity
from identity.registry import DidRegistry


def telemetry(n: int) -> dict[str, object]:
    """The body benchmarks/envelope.py uses: pose, velocity, battery, a short lidar summary."""
    return {"pose": {"x": 100.0 + n * 0.013, "y": -42.5 + n * 0.007, "theta": 1.5707}, "twist": {"v": 1.2, "w": -0.05},
            "battery": 0.87, "odometer_m": 1234.5 + n, "lidar_min_m": 2.75}


def rate(operation: Callable[[int], object], count: int) -> float:
    """Operations per second for ``operation(i)`` over i in range(count); each must return True."""
    start = time.perf_counter()
    for i in range(count):
        assert operation(i)
    return count / (time.perf_counter() - start)


def unsigned(wire: bytes) -> bytes:
    obj = json.loads(wire)
    return wire.replace(b',"sig":"' + obj["sig"].encode() + b'"', b"")


def run(messages: int, rounds: int, directory: Path) -> dict[str, float]:
    """Median operations per second of each measurement over ``rounds`` rounds."""
    ed, k1 = keys.Signer.generate(), secp256k1.Signer.generate()
    point = PublicKey(k1.public_key)
    names = ["ed25519_raw", "secp256k1_raw", "secp256k1_coincurve_floor", "ed25519_envelope", "secp256k1_envelope",
             "ed25519_sign", "secp256k1_sign"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    with DidRegistry(directory / "bench-registry.sqlite3") as registry:
        ed_did, k1_did = create_identity(registry, ed).did, create_identity(registry, k1).did
        for round_number in range(rounds):
            bodies = [telemetry(i) for i in range(messages)]
            start = round_number * messages * 10 + 1
            ed_sealer = EnvelopeSigner(ed, ed_did, sequencer=Sequencer(start))
            k1_sealer = EnvelopeSigner(k1, k1_did, sequencer=Sequencer(start))
            ed_wires: list[bytes] = []
            k1_wires: list[bytes] = []
            rates["ed25519_sign"].append(rate(lambda i: ed_wires.append(ed_sealer.seal("telemetry", bodies[i])) or 1,
                                              messages))
            rates["secp256k1_sign"].append(rate(lambda i: k1_wires.append(k1_sealer.seal("telemetry", bodies[i])) or 1,
                                                messages))
            ed_sigs = [EnvelopeVerifier._shape(json.loads(w), w).signature for w in ed_wires]
            k1_sigs = [EnvelopeVerifier._shape(json.loads(w), w).signature for w in k1_wires]
            ed_digests = [digest("telemetry", unsigned(w)) for w in ed_wires]
            k1_digests = [digest("telemetry", unsigned(w)) for w in k1_wires]
            k1_der = [cdata_to_der(deserialize_compact(s)) for s in k1_sigs]
            rates["ed25519_raw"].append(rate(lambda i: keys.verify(ed.public_key, ed_digests[i], ed_sigs[i]), messages))
            rates["secp256k1_raw"].append(
                rate(lambda i: secp256k1.verify(k1.public_key, k1_digests[i], k1_sigs[i]), messages))
            rates["secp256k1_coincurve_floor"].append(rate(lambda i: point.verify(k1_der[i], k1_digests[i]), messages))
            ed_verifier, k1_verifier = EnvelopeVerifier(registry), EnvelopeVerifier(registry)
            pair = [("ed25519_envelope", lambda i: ed_verifier.verify(ed_wires[i])),
                    ("secp256k1_envelope", lambda i: k1_verifier.verify(k1_wires[i]))]
            for name, operation in pair if round_number % 2 else reversed(pair):  # alternate who goes first
                rates[name].append(rate(operation, messages))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for what, numerator, denominator in RATIOS:  # each round's own ratio, then the median: load hits both alike
        medians[what] = statistics.median(k / e for k, e in zip(rates[numerator], rates[denominator], strict=True))
    return medians


RATIOS = [("ratio_raw_verify", "secp256k1_raw", "ed25519_raw"),
          ("ratio_envelope_verify", "secp256k1_envelope", "ed25519_envelope"),
          ("ratio_envelope_sign", "secp256k1_sign", "ed25519_sign"),
          ("ratio_ours_to_coincurve_floor", "secp256k1_raw", "secp256k1_coincurve_floor")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        medians = run(args.messages, args.rounds, Path(directory))
    print(f"{args.messages} messages x {args.rounds} rounds; medians, operations per second (microseconds each)")
    for name, value in medians.items():
        if name.startswith("ratio_"):
            print(f"  {name:32s} {value:6.2f}  (secp256k1 rate / the other's, median of the rounds' ratios)")
        else:
            print(f"  {name:32s} {value:10,.0f}/s  {1e6 / value:7.1f} us")


if __name__ == "__main__":
    main()
