"""The dashboard as a process of its own: its map, telemetry and counters come over a real MQTT broker.

A map service's signed tiles and road graph are retained on the broker before
the dashboard connects (as after a restart of the dashboard); the services'
statuses and a batch of verified telemetry arrive beside them. The dashboard's
``/api/map`` and tiles then show what the map service shows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bus.broker import BrokerConfig, start_broker
from bus.client import BusClient
from bus.frames import pack
from bus.topics import service_topic, verified_topic
from dao.dao import Dao
from dashboard.live import bus_live
from dashboard.prometheus import exposition
from dashboard.server import DashboardServer
from dashboard.view import FleetView
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from launch.statuses import STATUS_KIND, StatusBoard
from ledger.journal import Ledger
from marketplace.market import Marketplace
from spatial.roads import BLOCKED
from tests.spatial.test_mirror import Published

RUN = 3


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.05)


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker")) as running:
        yield running.url


def test_a_dashboard_fed_by_the_bus_shows_the_map_services_map(tmp_path: Path, registry, clock,
                                                                broker_url: str) -> None:
    published = Published(registry, clock)
    map_status = EnvelopeSigner(published.map_key, published.map_did, clock=clock)
    robot = published.sessions[0].signer.did
    telemetry = published.sessions[0].message("telemetry", {
        "t": int(clock() * 1000), "pose": {"x": 2.5, "y": 0.0, "theta": 0.0}, "twist": {"v": 0.4, "w": 0.0},
        "battery": 0.9, "state": "idle"})

    def status(role: str, index: int, counters: dict) -> tuple[str, bytes, int, bool]:
        body = {"role": role, "index": index, "pid": 1, "host": "test", "run": RUN, "t": clock(), "final": False,
                "counters": counters}
        return service_topic(role, index), map_status.seal(STATUS_KIND, body), 1, True

    with contextlib.ExitStack() as stack:
        fleet_side = stack.enter_context(BusClient(broker_url, client_id="the-fleet",
                                                        outbox_path=tmp_path / "outbox.sqlite3"))
        assert fleet_side.wait_connected(10)
        fleet_side.publish_many([m.astuple() for m in published.messages] + [
            status("map", 0, {"trust": published.service.trust_weights()}),
            status("sim", 0, {"robots": 2, "sim_s": 61.04, "dids": [robot]}),
            status("sim", 1, {"robots": 3, "sim_s": 60.0, "dids": []}),
            status("ingest", 0, {"refused": {"bad_signature": 2}, "refused_by_robot": {robot: {"bad_signature": 2}},
                                 "messages_by_robot": {robot: {"telemetry": 7}}, "accepted": {"telemetry": 7},
                                 "lag_p50_s": 0.05, "lag_p99_s": 0.2}),
            status("ingest", 1, {"refused": {"replayed": 1}, "refused_by_robot": {robot: {"replayed": 1}},
                                 "accepted": {"scan": 2}, "lag_p50_s": 0.1, "lag_p99_s": 0.4, "robots_left_out": 3}),
            status("market", 0, {"refused": {"over_budget": 4}})])
        assert fleet_side.wait_drained(10)

        dashboard_side = stack.enter_context(BusClient(broker_url, client_id="the-dashboard"))
        assert dashboard_side.wait_connected(10)
        statuses = StatusBoard(registry, run=RUN).subscribe(dashboard_side)
        roads = [{"u": "a", "v": "b", "a": [-20.0, 0.0], "b": [20.0, 0.0], "street": "a|b"}]
        live = bus_live(dashboard_side, registry, statuses, map_did=published.map_did, clock=clock,
                        map_layout={"bounds": [-50, -50, 50, 50], "roads": roads, "places": []})
        assert dashboard_side.wait_subscribed(10)
        fleet_side.publish(verified_topic("telemetry"), pack([(telemetry.topic, telemetry.payload)]))

        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        Ledger.open(url, Signer(bytes(32)), clock=clock).close()  # the fleet made its ledger
        ledger = Ledger.open(url, None)
        stack.callback(ledger.close)
        view = FleetView(ledger, Dao(ledger, "did:peaq:dao", clock=clock), Marketplace(ledger, None), live)
        server = DashboardServer(view, port=0).start()
        stack.callback(server.stop)
        api = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))

        service = published.service
        _eventually(lambda: len(api.get("/api/map").json()["tiles"]) == len(service.tile_versions()))
        shared = api.get("/api/map").json()
        assert shared["graph_version"] == service.graph_version == 1
        assert shared["tile_size_m"] == pytest.approx(service.tile_side_m)
        assert [road["state"] for road in shared["roads"]] == [BLOCKED]
        assert {(t["ix"], t["iy"]): t["version"] for t in shared["tiles"]} == service.tile_versions()
        for tile in shared["tiles"]:
            png = api.get(tile["url"])
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.content == service.tile_png((tile["ix"], tile["iy"]))
        missing = api.get("/api/map/tiles/9999/9999.png")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_tile"

        _eventually(lambda: published.sessions[0].signer.did in live.telemetry.latest())
        assert live.telemetry.latest()[published.sessions[0].signer.did].body["battery"] == 0.9
        _eventually(lambda: len(statuses.services()) == 6)
        assert live.counters() == {"sim_s": 60.0, "clock_s": clock(), "robots": 5, "simulated": [robot],
                                   "refused": {"bad_signature": 2, "replayed": 1},
                                   "accepted": {"scan": 2, "telemetry": 7}, "stale": {},
                                   "messages_by_robot": {robot: {"telemetry": 7}},
                                   "refused_by_robot": {robot: {"bad_signature": 2, "replayed": 1}},
                                   "robots_left_out": 3, "lag_p50_s": 0.1, "lag_p99_s": 0.4,
                                   "market_refused": {"over_budget": 4}}
        scraped = exposition({}, live.counters(), [])  # what /metrics makes of the services' statuses
        for line in (f'depai_ingest_refused_by_robot_total{{did="{robot}",reason="replayed"}} 1',
                     f'depai_robot_messages_total{{did="{robot}",kind="telemetry"}} 7',
                     'depai_ingest_refused_total{reason="bad_signature"} 2', "depai_ingest_lag_seconds 0.4",
                     'depai_market_refused_total{reason="over_budget"} 4', "depai_ingest_robots_left_out 3"):
            assert line in scraped.splitlines(), line
        assert live.map is not None and live.map.trust_weights() == service.trust_weights() != {}
        assert live.map.refused == {}
