"""Probes of a running fleet's state directory for the chaos runs: its brokers, and its ledger's size."""

from __future__ import annotations

import os
from pathlib import Path

from ledger.journal import Ledger


def brokers(state: Path) -> list[int]:
    """Broker processes still running on the fleet's data directory."""
    found = []
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            alive = Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            continue
        if alive and "mosquitto" in line and str(state) in line:
            found.append(pid)
    return found


def entries(url: str) -> int:
    ledger = Ledger.open(url, None)
    try:
        return ledger.size()
    finally:
        ledger.close()
