"""The dashboard's ``/metrics``: the running fleet's numbers in the Prometheus text format (version 0.0.4).

Built at each scrape from what the dashboard already reads (``FleetView.status``, the fleet's counters and the
robots' rows), so it is the same in one process (``depai up --broker none``) and as a service of its own, where
the counters come from the services' signed statuses (dashboard/live.py). Counters are totals since the process
that counts them started (an ingest worker, or the fleet's one process): Prometheus's ``rate()`` and
``increase()`` turn them into rates and take a restart (a reset) in their stride.

A series per DID exists only for robots of this fleet: refusals only for DIDs registered in the fleet's registry
(bus/ingest.py), accepted messages only for verified issuers, witnessed locations only for robots on the
marketplace, so a forger cannot add series.
"""

from __future__ import annotations

from typing import Any

from bus.metrics import CONTENT_TYPE, Metrics
from spatial.presence import KINDS

__all__ = ["CONTENT_TYPE", "exposition"]
PRESENCES = ("online", "offline", "unheard")
TASK_STATES = ("open", "awarded", "settled", "refunded")

_SERIES = {
    "depai_ingest_refused_total": ("counter", "Messages ingest refused, by reason (every issuer, forged ones too)."),
    "depai_ingest_refused_by_robot_total": (
        "counter", "Messages ingest refused, by DID and reason, for DIDs registered in the fleet only."),
    "depai_ingest_accepted_total": ("counter", "Messages ingest verified and handed on, by kind."),
    "depai_ingest_stale_total": (
        "counter", "Births and deaths not newer than the session held (retained copies, old wills), by kind; "
                   "not refusals."),
    "depai_robot_messages_total": (
        "counter", "Messages ingest verified, by issuer DID and kind (robots, and a simulator shard's gateway for "
                   "its births and deaths); rate() gives each robot's message rate."),
    "depai_ingest_lag_seconds": (
        "gauge", "99th percentile of a message's age when ingest verified it (fleet clock minus its iat), over "
                 "the recent messages; the worst ingest worker's."),
    "depai_ingest_lag_median_seconds": ("gauge", "Median of the same ages; the worst ingest worker's."),
    "depai_ingest_robots_left_out": (
        "gauge", "Robots the ingest workers' statuses left out of the per-robot series (each reports at most "
                 "200); add ingest workers to see them all."),
    "depai_market_refused_total": ("counter", "Marketplace messages refused, by reason."),
    "depai_robots": (
        "gauge", "Robots on the marketplace, by origin (simulated, or real: bridged or speaking the protocol "
                 "itself) and presence (online, offline after a verified death or 10 s of fleet time "
                 "without a word, unheard)."),
    "depai_robot_witnessed_confidence": (
        "gauge", "How well peers' lidar bears out where a robot says it is (the map's witnessed confidence, 0 to 1, "
                 "0.5 unwitnessed), by DID, for robots on the marketplace with a verdict."),
    "depai_robot_location_verdicts_total": (
        "counter", "The map's verdicts on a robot's claimed poses (at most one per kind a second), by DID and "
                   "verdict (seen, unseen, impossible), for robots on the marketplace with a verdict."),
    "depai_tasks": ("gauge", "Tasks on the marketplace, by state."),
    "depai_fleet_sim_seconds": ("gauge", "Simulated seconds the slowest simulator shard has run."),
    "depai_ledger_entries": ("gauge", "Entries in the ledger."),
    "depai_dao_earned_minor_units_total": (
        "counter", "What the DAO's robots have earned, in the currency's minor units (cents)."),
}


def exposition(status: dict[str, Any], counters: dict[str, Any], robots: list[dict[str, Any]]) -> str:
    """The text a scraper reads: ``status`` is ``FleetView.status()``, ``counters`` the fleet's counters (see
    ``dashboard.view.Live``), ``robots`` the rows of ``FleetView.robots()``."""
    metrics = Metrics()
    for name, (kind, help_text) in _SERIES.items():
        metrics.describe(name, kind, help_text)
    for label, name, key in (("reason", "depai_ingest_refused_total", "refused"),
                             ("kind", "depai_ingest_accepted_total", "accepted"),
                             ("kind", "depai_ingest_stale_total", "stale"),
                             ("reason", "depai_market_refused_total", "market_refused")):
        for value, n in (counters.get(key) or {}).items():
            metrics.set(name, n, **{label: value})
    for label, name, key in (("reason", "depai_ingest_refused_by_robot_total", "refused_by_robot"),
                             ("kind", "depai_robot_messages_total", "messages_by_robot")):
        for did, row in (counters.get(key) or {}).items():
            for value, n in row.items():
                metrics.set(name, n, did=did, **{label: value})
    for name, key in (("depai_ingest_lag_seconds", "lag_p99_s"), ("depai_ingest_lag_median_seconds", "lag_p50_s")):
        if counters.get(key) is not None:
            metrics.set(name, float(counters[key]))
    metrics.set("depai_ingest_robots_left_out", int(counters.get("robots_left_out") or 0))
    for origin in ("simulated", "real"):
        for here in PRESENCES:
            metrics.set("depai_robots", sum(1 for row in robots if row["simulated"] == (origin == "simulated")
                                            and _presence(row) == here), origin=origin, presence=here)
    for row in robots:
        witness = row.get("witness")
        if witness:
            metrics.set("depai_robot_witnessed_confidence", float(witness["confidence"]), did=row["did"])
            for verdict in KINDS:
                metrics.set("depai_robot_location_verdicts_total", int(witness[verdict]), did=row["did"],
                            verdict=verdict)
    for state in TASK_STATES:
        metrics.set("depai_tasks", int(status.get("tasks", {}).get(state, 0)), state=state)
    if isinstance(status.get("sim_s"), (int, float)):
        metrics.set("depai_fleet_sim_seconds", float(status["sim_s"]))
    metrics.set("depai_ledger_entries", int(status.get("ledger", {}).get("size", 0)))
    revenue = status.get("revenue", {})
    metrics.set("depai_dao_earned_minor_units_total", int(revenue.get("earned", 0)),
                currency=str(revenue.get("currency", "")))
    return metrics.render()


def _presence(row: dict[str, Any]) -> str:
    return "online" if row["online"] else row["state"] if row["state"] in PRESENCES else "offline"
