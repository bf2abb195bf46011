"""Issue #18: is each robot online, how many are real, what was refused from it, and /metrics for Prometheus.

A small fleet started the way ``depai up --broker none`` starts it, with one real robot enrolled the way
``depai bridge enroll`` does it. The real robot's messages are signed with its enrolled key on the fleet's clock
and handed to the fleet's own ingest (in process there is no broker for ``depai bridge run`` to reach; the
bridge's MQTT path is tests/launch/test_bridge.py's). The dashboard then shows it unheard, online, offline after
its verified death and after 10 s of fleet time without a word, online again after a birth; counts it as real
beside the simulated ones; lists its refusals by reason (a forgery in its name), never a forged did:key's; and
``/metrics`` parses as strict Prometheus text with those series. ``depai bridge status`` prints the same.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus.session import MachineSession, Outgoing
from bus.topics import topic_root
from dashboard.telemetry import OFFLINE_AFTER_S, Heard, Session, TelemetryBoard, presence
from identity.did import did_key
from identity.envelope import Envelope, EnvelopeSigner
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.cli import main
from launch.identities import IdentityStore
from launch.up import RunningFleet, UpConfig, start
from marketplace.market import MIN_BOND

NAME = "courier-7"


# --- a strict reader of the Prometheus text format 0.0.4 ---------------------------------------------------------

METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(rf"({METRIC})(?:\{{(.*)\}})? (\S+)")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[Series, dict[str, str]]:
    """Every sample and every metric's TYPE; AssertionError at the first line the format does not allow: HELP and
    TYPE at most once per metric and before its samples, a metric's samples together, label values escaped, no
    series twice, counters named ``*_total`` and never negative."""
    assert text.endswith("\n"), "the last line ends with a newline"
    samples: Series = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    done: set[str] = set()  # metrics whose block of samples has ended
    current = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(METRIC, name) and name not in helps and name not in done, line
            assert not re.search(r"\\[^\\n]", doc), f"HELP escapes only backslash and newline: {line}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert re.fullmatch(METRIC, name) and kind in TYPES and name not in types and name not in done, line
            types[name] = kind
        else:
            assert line and not line.startswith("#"), f"a comment other than HELP or TYPE, or an empty line: {line!r}"
            match = SAMPLE.fullmatch(line)
            assert match, f"not a sample: {line!r}"
            name, labels, value = match.groups()
            if name != current:
                assert name not in done, f"{name}'s samples are not together"
                if current is not None:
                    done.add(current)
                current = name
            pairs = LABEL.findall(labels or "")
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), f"bad labels: {line!r}"
            unescaped = frozenset((k, v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\"))
                                  for k, v in pairs)
            assert len(unescaped) == len(pairs), f"a label twice: {line!r}"
            number = float(value)  # Python reads +Inf, -Inf and NaN as the format writes them
            assert (name, unescaped) not in samples, f"a series twice: {line!r}"
            if types.get(name) == "counter":
                assert name.endswith("_total") and (number >= 0 or math.isnan(number)), line
            samples[(name, unescaped)] = number
    return samples, types


def sample(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


def test_the_strict_reader_refuses_what_the_format_does_not_allow() -> None:
    good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\nb 2.5\n'
    series, types = parse_exposition(good)
    assert sample(series, "a_total", x='q"\\\n') == 1 and sample(series, "b") == 2.5 and types == {"a_total": "counter"}
    for bad in ("a 1", 'a{x="y} 1\n', "a 1\nb 1\na 2\n", "a 1\na 1\n", "# TYPE a counter\na -1\n",
                '# TYPE a_total counter\na_total{x="1"} 1\n# TYPE a_total counter\n', "a{x=\"\\t\"} 1\n", "\n"):
        with pytest.raises((AssertionError, ValueError)):
            parse_exposition(bad)


# --- births, deaths and silence -------------------------------------------------------------------------------

def envelope(kind: str, issuer: str, at_s: float, body: dict[str, Any]) -> Envelope:
    return Envelope(kind, issuer, "key-1", 1, int(at_s * 1000), int(at_s * 1000) + 60_000, body, b"", b"")


def test_a_robot_is_offline_after_its_death_or_silence_and_back_after_a_birth() -> None:
    board, robot, gateway = TelemetryBoard(), "did:peaq:robot", "did:peaq:gateway"

    def here(now: float) -> str:
        return presence(board.latest().get(robot), board.sessions().get(robot), now)

    assert here(100.0) == "unheard"
    board.observe("t", envelope("birth", robot, 100.0, {"epoch": 5, "via": gateway}))
    board.observe("t", envelope("telemetry", robot, 101.0, {"state": "idle"}))
    assert here(101.0 + OFFLINE_AFTER_S) == "online" and here(101.1 + OFFLINE_AFTER_S) == "offline"
    board.observe("t", envelope("death", robot, 90.0, {"epoch": 4}))  # an older session's will: changes nothing
    assert here(102.0) == "online"
    board.observe("t", envelope("death", gateway, 102.0, {"epoch": 1}))  # the gateway it was born through died
    assert here(102.0) == "offline"
    board.observe("t", envelope("birth", robot, 103.0, {"epoch": 6}))
    assert here(103.0) == "online" and board.sessions()[robot] == Session(6, False, 103.0, None)
    board.observe("t", envelope("death", robot, 99.0, {"epoch": 6}))  # a will signed before it fired
    assert here(103.0) == "offline"
    board.observe("t", envelope("birth", robot, 98.0, {"epoch": 6}))  # a retained copy of the ended birth
    assert here(103.0) == "offline"
    assert presence(Heard({}, 50.0), None, 55.0) == "online"


# --- the fleet --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    state = tmp_path_factory.mktemp("fleet")
    with DidRegistry(state / "registry.sqlite3") as registry:
        IdentityStore(state / "identities.json", registry).enroll("dao")  # the controller enroll names
    assert main(["bridge", "enroll", NAME, "--state", str(state), "--json"]) == 0
    config = UpConfig(robots=2, city=2, seed=3, broker="none", port=0, orders_per_min=1.0, scan_hz=0.5, bond=MIN_BOND)
    with contextlib.ExitStack() as stack:
        up = start(config, state, stack, lambda _: None)
        up.drive(5.0)
        yield up


class RealRobot:
    """The enrolled robot, speaking for itself with its own key on the fleet's clock, into the fleet's ingest (one
    for the module: its sequence numbers go on from test to test)."""

    def __init__(self, up: RunningFleet) -> None:
        record = json.loads((up.state / "bridges" / f"{NAME}.json").read_text())
        self.up, self.did = up, record["did"]
        signer = EnvelopeSigner(Signer(bytes.fromhex(Path(record["key_file"]).read_text().strip())), self.did,
                                clock=up.fleet.clock)
        document = json.loads((up.state / "bridges" / f"{NAME}.document.json").read_text())  # what its birth carries
        self.session = MachineSession(signer, topic_root(self.did), document)

    def send(self, message: Outgoing) -> Envelope | None:
        return self.up.ingest.handle(message.topic, message.payload)

    def telemetry(self) -> Envelope | None:
        now = self.up.fleet.clock()
        return self.send(self.session.message("telemetry", {
            "t": int(now * 1000), "pose": {"x": 0.0, "y": 0.0, "theta": 0.0}, "twist": {"v": 0.0, "w": 0.0},
            "battery": 0.75, "state": "idle"}))


@pytest.fixture(scope="module")
def robot(fleet: RunningFleet) -> RealRobot:
    return RealRobot(fleet)


def test_real_robots_are_counted_beside_simulated_ones_online_offline_and_back(fleet: RunningFleet,
                                                                               robot: RealRobot) -> None:
    with httpx.Client(base_url=fleet.dashboard.url, timeout=10) as api:
        def state() -> str:
            row = next(r for r in api.get("/api/robots").json() if r["did"] == robot.did)
            page = api.get(f"/api/robots/{robot.did}").json()
            assert page["state"] == row["state"] and page["online"] == row["online"]
            return row["state"]

        status = api.get("/api/status").json()
        assert (status["robots"], status["robots_simulated"], status["robots_real"], status["robots_online"]) \
            == (3, 2, 1, 2), status
        assert state() == "unheard"
        assert robot.send(robot.session.birth()) is not None
        assert state() == "online"  # born, nothing else said yet
        assert robot.telemetry() is not None
        assert state() == "idle" and api.get("/api/status").json()["robots_online"] == 3
        rows = {r["did"]: r for r in api.get("/api/robots").json()}
        assert [r["simulated"] for r in rows.values()].count(False) == 1 and not rows[robot.did]["simulated"]

        assert robot.send(robot.session.death()) is not None  # a clean shutdown: its signed death, verified
        assert state() == "offline" and api.get("/api/status").json()["robots_online"] == 2
        assert robot.send(robot.session.birth()) is not None
        assert state() == "online"
        assert robot.telemetry() is not None and state() == "idle"

        fleet.drive(OFFLINE_AFTER_S + 1.0)  # the simulated robots go on talking; the real one says nothing
        assert state() == "offline"
        assert all(r["state"] != "offline" for r in api.get("/api/robots").json() if r["did"] != robot.did)
        assert robot.telemetry() is not None and state() == "idle"


def test_refusals_per_robot_on_its_page_in_metrics_and_in_bridge_status(fleet: RunningFleet, robot: RealRobot,
                                                                         capsys) -> None:
    fleet.drive(1.0)  # the fleet's clock moves on: the robot's next telemetry is a new measurement
    if robot.did not in fleet.ingest.online():
        assert robot.send(robot.session.birth()) is not None
    forger = EnvelopeSigner(Signer.generate(), robot.did, clock=fleet.fleet.clock)
    for _ in range(3):  # a forgery in the robot's name: refused, and counted under its DID
        assert fleet.ingest.handle(topic_root(robot.did) + "/telemetry", forger.seal("telemetry", {})) is None
    for _ in range(20):  # forgeries from fresh did:keys: counted under their reason, never under a DID
        key = Signer.generate()
        stranger = EnvelopeSigner(key, did_key(key.public_key), clock=fleet.fleet.clock)
        assert fleet.ingest.handle(topic_root(stranger.did) + "/telemetry", stranger.seal("telemetry", {})) is None
    assert robot.telemetry() is not None, fleet.ingest.quarantine.entries()[-1]

    with httpx.Client(base_url=fleet.dashboard.url, timeout=10) as api:
        page = api.get(f"/api/robots/{robot.did}").json()
        assert page["refusals"] == {"bad_signature": 3}
        assert page["messages"]["telemetry"] >= 1 and page["messages"]["birth"] >= 1
        scraped = api.get("/metrics")
        simulated = next(r["did"] for r in api.get("/api/robots").json() if r["simulated"])
        status = api.get("/api/status").json()
    assert scraped.status_code == 200 and scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    series, types = parse_exposition(scraped.text)
    assert sample(series, "depai_ingest_refused_by_robot_total", did=robot.did, reason="bad_signature") == 3
    assert sample(series, "depai_ingest_refused_total", reason="unknown_issuer") == 20
    assert sample(series, "depai_ingest_refused_total", reason="bad_signature") == 3
    assert not any("did:key" in value for _, labels in series for _, value in labels)
    assert sample(series, "depai_robot_messages_total", did=simulated, kind="telemetry") > 0
    assert sample(series, "depai_robot_messages_total", did=robot.did, kind="telemetry") >= 1
    assert sample(series, "depai_ingest_accepted_total", kind="telemetry") > 0
    assert sample(series, "depai_ingest_lag_seconds") is not None
    assert sample(series, "depai_robots", origin="simulated", presence="online") == 2
    assert sample(series, "depai_robots", origin="real", presence="online") == 1
    assert sum(sample(series, "depai_tasks", state=s) for s in ("open", "awarded", "settled", "refunded")) \
        == status["tasks"]["posted"]
    assert sample(series, "depai_ledger_entries") == status["ledger"]["size"]
    assert types["depai_ingest_refused_by_robot_total"] == "counter" and types["depai_robots"] == "gauge"
    assert {name for name, _ in series} >= {"depai_ingest_refused_total", "depai_ingest_refused_by_robot_total",
                                           "depai_robot_messages_total", "depai_ingest_lag_seconds", "depai_robots",
                                           "depai_tasks"}

    capsys.readouterr()
    assert main(["bridge", "status", NAME, "--state", str(fleet.state)]) == 0
    text = capsys.readouterr().out
    assert f"{NAME} ({robot.did}): idle; last heard 0 s ago" in text, text
    assert "refused 3 x bad_signature: the signature does not verify" in text, text
    assert main(["bridge", "status", NAME, "--state", str(fleet.state), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["refusals"] == {"bad_signature": 3} and answer["online"] is True
    assert main(["bridge", "status", NAME, "--state", str(fleet.state), "--dashboard", "http://127.0.0.1:9",
                 "--json"]) == 3  # no dashboard there
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "not_running"


def test_the_robot_page_shows_its_state_and_refusals(fleet: RunningFleet, robot: RealRobot, page) -> None:
    page.goto(f"{fleet.dashboard.url.rstrip('/')}/robots/{robot.did}")
    page.wait_for_selector("#robot-refusals tr[data-reason='bad_signature']", timeout=15_000)
    assert page.locator("#robot-refusals tr[data-reason='bad_signature'] td").nth(1).text_content() == "3"
    assert page.locator("#robot-state").text_content() in ("idle", "online", "offline")
    assert [p for p in page.problems if "net::ERR_ABORTED" not in p] == []
