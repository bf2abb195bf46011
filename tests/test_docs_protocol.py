"""docs/protocol.md and docs/hardware.md against the code, where a robot's author would otherwise guess (issue #18).

Every number and list these documents state about the code is read here from the code itself (its constants,
its defaults, what it writes or signs, or how it behaves), so changing the code without the documents fails.
tests/bus/test_protocol_docs.py does the same for docs/asyncapi.json, the message bodies and the worked example.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import math
import re
from pathlib import Path

import pytest

from bus.broker import BrokerConfig, _amqtt_conf, _mosquitto_conf
from bus.ingest import Ingest
from bus.schemas import BY_KIND, CATALOGUE
from bus.session import MachineSession
from bus.topics import ROBOT_CHANNELS, topic_root
from identity.canonical import canonicalize
from identity.document import MachineProfile
from identity.envelope import EnvelopeSigner, EnvelopeVerifier, Refusal, Sequencer
from identity.keys import Signer
from identity.lifecycle import create_identity
from identity.registry import DidRegistry
from launch.bridge_command import ROADS, fleet_info
from launch.cli import main
from launch.home import registry_target
from ledger.journal import Ledger
from marketplace.auction import EVALUATORS, REPUTATION_FLOOR, Offer
from marketplace.market import MarketError, Marketplace
from marketplace.policy import MarketPolicy
from marketplace.service import MarketService
from robots.agent import MAX_OPEN_OFFERS, REBID_S
from sim.city import PLACE_KINDS, generate_city, street_id
from tests.bus.test_protocol_docs import EXAMPLES, ingest_reasons, json_blocks, section

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
HARDWARE = (ROOT / "docs" / "hardware.md").read_text(encoding="utf-8")
ASYNCAPI = json.loads((ROOT / "docs" / "asyncapi.json").read_text(encoding="utf-8"))
CHECKS = "## What the fleet checks, in order"
MARKET = "#### Taking part in the marketplace, step by step"
ABSENCE = "### Coming back after an absence"
AWAY_S = 120  # the absence the protocol's example counts: two minutes


def flat(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) as one space: what a reader reads."""
    return " ".join(text.split())


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def ticked(cell: str) -> list[str]:
    """The `code` spans of a table cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def assert_says(heading: str, phrases: list[str]) -> None:
    """docs/protocol.md says each of ``phrases`` under ``heading`` (line breaks read as spaces)."""
    text = flat(section(PROTOCOL, heading))
    missing = [phrase for phrase in phrases if phrase not in text]
    assert not missing, f"docs/protocol.md ({heading}) should say: {missing}"


def default(function, name: str):
    return inspect.signature(function).parameters[name].default


# -- refusals ----------------------------------------------------------------------------------------

def test_the_refusal_table_lists_exactly_the_reasons_ingest_can_give() -> None:
    """Not one more (a reason the code lost) and not one fewer: the envelope's refusals and ingest's own,
    read from identity.envelope.Refusal and the IngestRefused calls of bus/ingest.py."""
    refusals = section(PROTOCOL, CHECKS).partition("Not a refusal")[0]
    documented = [cells[0].strip("`") for cells in table_rows(refusals, "| code | check |")]
    assert len(documented) == len(set(documented)), "a reason is listed twice"
    assert set(documented) == {refusal.value for refusal in Refusal} | ingest_reasons()


@pytest.fixture
def fleet_ingest(registry: DidRegistry, clock):
    """An ingest with two born robots: (ingest, the first robot's signer and topic root, the second's root)."""
    robots = []
    for _ in range(2):
        key = Signer.generate()
        did = create_identity(registry, key, machine=MachineProfile("test", [], 2.0, 10.0)).did
        signer = EnvelopeSigner(key, did, clock=clock, sequencer=Sequencer(1000))
        robots.append((signer, MachineSession(signer, topic_root(did), registry.resolve(did).document)))
    ingest = Ingest(registry, lambda topic, envelope: None, clock=clock, rate=1e6, burst=1e6)
    for _, session in robots:
        birth = session.birth()
        assert ingest.handle(birth.topic, birth.payload) is not None
    (signer, mine), (_, other) = robots
    return ingest, signer, mine.topic_root, other.topic_root


def refusal(ingest: Ingest, topic: str, payload: bytes) -> str | None:
    """The reason ``ingest`` refuses ``payload`` on ``topic`` for, or None when it does not refuse it."""
    before = len(ingest.quarantine)
    ingest.handle(topic, payload)
    entries = ingest.quarantine.entries()
    return entries[-1].reason if len(ingest.quarantine) > before else None


def test_wrong_kind_or_wrong_topic_is_what_the_table_says(fleet_ingest) -> None:
    """Every kind of the catalogue on every channel of a robot's root (and its cmd), then the kinds a topic takes
    under another robot's root and in another partition: the documented table predicts which refusal."""
    ingest, signer, mine, other = fleet_ingest
    takes: dict[str, set[str]] = {}
    for where, kinds in table_rows(section(PROTOCOL, CHECKS), "| arriving on |"):
        channels = [span.rsplit("/", 1)[-1] for span in ticked(where)] or ["*"]
        for channel in channels:
            takes[channel] = set(ticked(kinds))
    assert set(takes) == {"birth", "death", "*"}, "rows: the birth and death topics, and any other topic"
    for channel in [*ROBOT_CHANNELS.values(), "cmd"]:
        for spec in CATALOGUE:
            reason = refusal(ingest, f"{mine}/{channel}", signer.seal(spec.kind, EXAMPLES[spec.kind][0][0]))
            if spec.kind not in takes.get(channel, takes["*"]):
                assert reason == "wrong_kind", f"a {spec.kind} on .../{channel}: {reason}"
            elif spec.channel != channel:
                assert reason == "wrong_topic", f"a {spec.kind} on .../{channel}: {reason}"
            else:
                assert reason not in ("wrong_kind", "wrong_topic"), f"a {spec.kind} on its own channel: {reason}"
    partition, rest = mine.removeprefix("depai/v1/robots/").split("/", 1)
    elsewhere = f"depai/v1/robots/{'0' if partition != '0' else '1'}/{rest}"
    for kind, channel in ROBOT_CHANNELS.items():
        payload = signer.seal(kind, EXAMPLES[kind][0][0])
        assert refusal(ingest, f"{other}/{channel}", payload) == "wrong_topic", f"{kind} under another's root"
        assert refusal(ingest, f"{elsewhere}/{channel}", payload) == "wrong_topic", f"{kind} in another partition"


# -- commands ----------------------------------------------------------------------------------------

def agent_command_types() -> set[str]:
    """The command types robots/agent.py acts on: the strings its ``_act_on`` compares ``kind`` with."""
    tree = ast.parse((ROOT / "robots" / "agent.py").read_text(encoding="utf-8"))
    act_on = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "_act_on")
    return {comparator.value for node in ast.walk(act_on) if isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name) and node.left.id == "kind"
            for comparator in node.comparators if isinstance(comparator, ast.Constant)}


def dispatched_command_types() -> set[str]:
    """The command types marketplace/dispatch.py sends: the type argument of its ``self._command`` calls."""
    tree = ast.parse((ROOT / "marketplace" / "dispatch.py").read_text(encoding="utf-8"))
    return {node.args[1].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "_command"
            and isinstance(node.args[1], ast.Constant)}


def test_every_command_type_is_documented_and_no_other() -> None:
    text = section(PROTOCOL, "### `command`")
    documented = {ticked(cells[0])[0] for cells in table_rows(text, "| `type` | `task` |")}
    types = agent_command_types()
    assert {"deliver", "goto"} <= types, "cannot read the agent's command types"
    assert documented == types, "the command-type table is not what robots/agent.py acts on"
    sent = dispatched_command_types()
    assert sent and sent <= types
    named = " and ".join(f"`{kind}`" for kind in sorted(sent))
    assert f"(`marketplace/dispatch.py`) sends {named};" in flat(text)


def test_the_asyncapi_summary_names_no_command_the_protocol_does_not_explain() -> None:
    """The summary of ``command`` (from bus/schemas.py) lists command types in words: each is a documented type,
    or protocol.md says plainly that there is no such command (today: ``resend``)."""
    summary = ASYNCAPI["components"]["messages"]["command"]["summary"]
    assert summary == BY_KIND["command"].summary
    listed = {word.replace(" ", "") for word in re.search(r"\(([^)]*)\)", summary).group(1).split(", ")}
    text = flat(section(PROTOCOL, "### `command`"))
    denied = set(re.findall(r"There is no `([a-z_.-]+)` command", text))
    assert listed - agent_command_types() == denied
    if denied:
        assert "the summary of `command` in [asyncapi.json](asyncapi.json) names one" in text


# -- the marketplace ---------------------------------------------------------------------------------

class Party:
    """A registered DID that signs envelopes."""

    def __init__(self, registry: DidRegistry, clock) -> None:
        self.key = Signer.generate()
        self.did = create_identity(registry, self.key).did
        self.signer = EnvelopeSigner(self.key, self.did, clock=clock)


@pytest.fixture
def market(registry: DidRegistry, clock, tmp_path: Path):
    """A marketplace service on the default policy, a funded customer and a registered robot with a bond."""
    customer, owner, robot, marketplace = (Party(registry, clock) for _ in range(4))
    clock.advance(1)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", Signer.generate(), clock=clock)
    market = Marketplace(ledger, marketplace.signer, clock=clock)
    market.fund(customer.did, 100_000, "EUR", key="c1")
    market.fund(owner.did, 2_000, "EUR", key="o1", role="owner")
    market.register_robot(robot.did, owner.did, 500, "EUR")
    verifier = EnvelopeVerifier(registry, clock=clock)
    service = MarketService(market, verifier, clock=clock, currency="EUR")
    body = {"id": "task-42", "customer": customer.did, "pickup": {"x": 0.0, "y": 0.0},
            "dropoff": {"x": 10.0, "y": 5.0}, "deadline": int((clock() + 600) * 1000), "max_price": 2000,
            "currency": "EUR", "payload_kg": 2.5}
    yield service, verifier, customer, robot, body
    ledger.close()


def test_the_award_table_is_what_the_marketplace_signs(market, clock) -> None:
    """Its fields, and task_hash and bid_hash hashing what the table says; the known gaps do not deny it."""
    service, verifier, customer, robot, body = market
    assert service.post(customer.signer.seal("task", body)) is not None
    (announcement,) = service.step()
    service.market.bid(verifier.verify(robot.signer.seal("bid", {"task": "task-42", "price": 1300,
                                                                  "currency": "EUR", "eta_ms": 60_000})))
    bid = robot.signer.seal("bid", {"task": "task-42", "price": 1250, "currency": "EUR", "eta_ms": 90_000})
    service.market.bid(verifier.verify(bid))  # the latest bid counts
    award = verifier.verify(service.market.award_to("task-42", robot.did)).body
    fields = [cells[0].strip("`") for cells in table_rows(section(PROTOCOL, "### `award`"), "| field |")]
    assert sorted(fields) == sorted(award)
    wire = announcement.payload
    body_bytes = wire[wire.index(b'"body":') + len(b'"body":'):wire.index(b',"exp":')]
    assert award["task_hash"] == hashlib.sha256(canonicalize(verifier.verify(wire).body)).hexdigest() \
        == hashlib.sha256(body_bytes).hexdigest()
    assert award["bid_hash"] == hashlib.sha256(bid).hexdigest()
    assert award["price"] == 1250, "the winner is paid its own price"
    table = flat(section(PROTOCOL, "### `award`"))
    assert "SHA-256 of the task announcement's body in RFC 8785 canonical form" in table
    assert "SHA-256 of your bid envelope's exact bytes" in table and "your latest one for this task" in table
    gaps = section(PROTOCOL, "## Known gaps in v1")
    assert "task_hash" not in gaps and "bid_hash" not in gaps


def test_a_task_id_names_one_body(market) -> None:
    service, _, customer, _, body = market
    service.market.post(service.verifier.verify(customer.signer.seal("task", body)))
    with pytest.raises(MarketError) as refused:
        service.market.post(service.verifier.verify(customer.signer.seal("task", {**body, "max_price": 1999})))
    assert refused.value.code == "duplicate_task"
    assert "the marketplace refuses a different body under an `id` it has" in flat(section(PROTOCOL, MARKET))


def test_an_untaken_task_is_announced_again_each_default_bid_window(market, clock) -> None:
    service, verifier, customer, _, body = market
    window = MarketPolicy().bid_window_s
    service.post(customer.signer.seal("task", body))
    (first,) = service.step()
    clock.advance(window - 0.01)
    assert service.step() == []
    clock.advance(0.01)
    (again,) = service.step()
    old, new = verifier.verify(first.payload), verifier.verify(again.payload)
    assert (again.topic, new.body) == (first.topic, old.body) and new.seq != old.seq and new.issued_at_ms > \
        old.issued_at_ms, "a re-announcement is a new envelope with the same body"


def test_the_documented_timing_and_judging_are_the_code_defaults() -> None:
    policy = MarketPolicy()
    assert_says(MARKET, [
        f"collects bids for {policy.bid_window_s:g} s (`bid_window_s`)",
        f"gets a new {policy.bid_window_s:g} s window: every {policy.bid_window_s:g} s until",
        f"{policy.task_life_s:g} s after posting: `task_life_s`",
        f"within {policy.release_after_s:g} s (`release_after_s`)",
        f"no second bid for an `id` within {REBID_S:g} s (`REBID_S`)",
        f"at most {MAX_OPEN_OFFERS} tasks it bid for (`MAX_OPEN_OFFERS`)",
        f"(evaluator `{policy.evaluator}`, the default)",
        f"`price / max(reputation, {REPUTATION_FLOOR:g})`",
    ])
    assert set(re.findall(r"evaluator `(\w+)`", flat(section(PROTOCOL, MARKET)))) == set(EVALUATORS)
    offer = Offer("task-42", "robot", price=1250, eta_s=90.0, reputation=0.01)
    costs = {"quickest": offer.eta_s, "cheapest": offer.price,
             "reputation_weighted": offer.price / max(offer.reputation, REPUTATION_FLOOR)}
    assert {name: evaluate(offer) for name, evaluate in EVALUATORS.items()} == costs, "as documented"


# -- a persistent session after an absence -----------------------------------------------------------

def mosquitto_setting(tmp_path: Path, name: str) -> str:
    """The value of one setting in the Mosquitto configuration bus/broker.py writes for a persistent fleet."""
    conf = _mosquitto_conf(BrokerConfig(persistence=True), tmp_path, 1883)
    (value,) = [line.split(" ", 1)[1] for line in conf.splitlines() if line.startswith(f"{name} ")]
    return value


def test_what_a_session_gets_after_an_absence_is_what_the_code_does(tmp_path: Path) -> None:
    text = flat(section(PROTOCOL, ABSENCE))
    expiry, queued = (mosquitto_setting(tmp_path, name)
                      for name in ("persistent_client_expiration", "max_queued_messages"))
    assert expiry == "7d" and "for 7 days" in text, "the days in words follow the setting"
    assert f"`persistent_client_expiration {expiry}`" in text
    assert f"at most {queued} messages for it (`max_queued_messages {queued}`)" in text
    assert "session_expiry_interval" not in json.dumps(_amqtt_conf(BrokerConfig(), tmp_path, 1883)), \
        "amqtt's sessions are said to last until it restarts"
    ttl = default(EnvelopeSigner, "ttl_s")
    skew = default(EnvelopeVerifier, "max_skew_s")
    window, release = MarketPolicy().bid_window_s, MarketPolicy().release_after_s
    stale = AWAY_S - (ttl + skew)
    assert_says(ABSENCE, [
        f"a lifetime of {ttl:g} s (`exp = iat + {int(ttl * 1000)}`)",
        f"refuses an envelope {skew:g} s or more after its `exp`",
        f"issued more than {ttl + skew:g} s before it reaches you is expired",
        f"every message of the first {stale:g} s of the absence",
        f"about {math.floor(stale / window)} announcements for each task that stayed open",
        f"announced again every {window:g} s",
        f"within {release:g} s of that birth",
    ])
    assert f"we use {int(ttl * 1000)} |" in PROTOCOL
    assert f"usual {ttl:g} s lifetime is `expired` {ttl + skew:g} s after it was signed" in flat(HARDWARE)


# -- docs/hardware.md ----------------------------------------------------------------------------------

def test_roads_json_is_what_hardware_md_says(tmp_path: Path) -> None:
    """What ``depai up`` writes for a bridge (launch.bridge_command.fleet_info) for a real generated city."""
    city = generate_city(7, 3)
    fleet_info(tmp_path, broker="mqtt://localhost:1883", commanders=[], map_services=[], chargers=[],
               roads=city.road_graph())
    written = json.loads((tmp_path / ROADS).read_text())
    text = section(HARDWARE, "### What `roads.json` holds")
    (example,) = json_blocks(text)
    rows = {cells[0]: cells[1] for cells in table_rows(text, "| member | holds |")}
    assert set(written) == set(example) == {name for key in rows for name in ticked(key)}
    assert written["directed"] is written["multigraph"] is False and written["graph"] == {}

    def fields(member: str) -> set[str]:
        return set(re.search(r"`\{([^}]*)\}`", rows[f"`{member}`"]).group(1).split(", "))

    kinds = set(ticked(re.search(r"`kind` one of (.*?), `pos`", rows["`nodes`"]).group(1)))
    assert kinds == {"junction", *PLACE_KINDS} == {node["kind"] for node in written["nodes"]}
    for graph in (written, example):  # the real file, and the example on its own
        pos = {}
        for node in graph["nodes"]:
            assert set(node) == fields("nodes")
            assert isinstance(node["id"], str) and len(node["pos"]) == 2
            pos[node["id"]] = node["pos"]
        junctions = {node["id"] for node in graph["nodes"] if node["kind"] == "junction"}
        for edge in graph["edges"]:
            assert set(edge) == fields("edges")
            assert edge["length"] == pytest.approx(math.dist(pos[edge["source"]], pos[edge["target"]]))
            a, b = edge["street"].split("|")
            assert {a, b} <= junctions and edge["street"] == street_id(a, b)
    assert "networkx.node_link_data(graph, edges=\"edges\")" in text


def test_envelope_verify_reads_the_registry_of_its_home(tmp_path: Path, capsys) -> None:
    """Pointed at a fleet's state directory, ``depai envelope verify`` knows the fleet's robots; elsewhere not."""
    state = tmp_path / "fleet"
    key = Signer.generate()
    with DidRegistry(registry_target(state, None)) as registry:  # where depai up and bridge enroll register
        did = create_identity(registry, key).did
    message = tmp_path / "msg.json"
    message.write_bytes(EnvelopeSigner(key, did).seal("telemetry", {"battery": 0.9}))
    assert main(["envelope", "verify", "--home", str(state), str(message)]) == 0
    assert main(["envelope", "verify", "--home", str(tmp_path / "operator"), str(message)]) == 1
    assert "refused (unknown_issuer)" in capsys.readouterr().err
    text = flat(section(HARDWARE, "### Checking what your robot sends"))
    assert "depai envelope verify --home ~/.depai/fleet msg.json" in text
    assert "refuses your robot's message as `unknown_issuer`" in text
    assert "`depai envelope verify --home ~/.depai/fleet FILE`" in PROTOCOL
