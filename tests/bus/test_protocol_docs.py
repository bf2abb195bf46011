"""The protocol's documents against the code: docs/asyncapi.json, docs/protocol.md and the worked example."""

import ast
import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from bus.asyncapi import action, ident, operation_id, render
from bus.schemas import BY_KIND, CATALOGUE, SchemaError, validate_body
from bus.topics import topic_root
from identity.canonical import canonicalize
from identity.did import did_key, did_peaq
from identity.document import MachineProfile
from identity.envelope import DOMAIN, EnvelopeSigner, Refusal, Sequencer, digest
from identity.keys import Signer
from identity.lifecycle import create_identity

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
PROTOCOL = ROOT / "docs" / "protocol.md"
REGENERATE = "python -m bus.asyncapi > docs/asyncapi.json"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

# The worked example of docs/identity.md, extended with the topic in docs/protocol.md.
SEED = bytes(range(32))
CLOCK_S = 1_790_000_000.0
EXAMPLE_SEQ = 100
EXAMPLE_BODY = {"battery": 0.93, "x": 1.5}

DID = "did:peaq:5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuRSf"
T = 1_790_000_000_000
POSE = {"x": 12.5, "y": -3.25, "theta": 1.5708}
# Per kind: bodies the catalogue accepts, and bodies it refuses (each for one reason).
EXAMPLES: dict[str, tuple[list[Any], list[Any]]] = {
    "birth": (
        [{"document": {"id": DID, "verificationMethod": []}, "epoch": 100, "software": "fw 1.2"}],
        [{"document": {"id": DID}, "epoch": 100}, {"document": {"id": DID, "verificationMethod": []}, "epoch": -1},
         {"document": {"id": DID, "verificationMethod": []}, "epoch": 100, "via": "gateway-1"}, []],
    ),
    "death": ([{"epoch": 100}, {"epoch": 100, "reason": "will"}], [{}, {"epoch": 100, "reason": "bored"}]),
    "telemetry": (
        [{"t": T, "pose": POSE, "twist": {"v": 0.8, "w": 0.0}, "battery": 0.93, "state": "idle", "load_kg": 0}],
        [{"t": T, "pose": POSE, "twist": {"v": 0.8, "w": 0.0}, "battery": 1.5},
         {"t": T, "pose": {**POSE, "theta": 8}, "twist": {"v": 0.8, "w": 0.0}, "battery": 0.5},
         {"t": T, "pose": POSE, "battery": 0.5},
         {"t": T, "pose": POSE, "twist": {"v": 0.8, "w": 0.0}, "battery": 0.5, "speed": 0.8},
         {"t": 1.5, "pose": POSE, "twist": {"v": 0.8, "w": 0.0}, "battery": 0.5}],
    ),
    "scan": (
        [{"t": T, "pose": POSE, "angle_min": -3.14, "angle_increment": 0.0175, "range_max": 12.0,
          "ranges": [1.0, None, 2.5]}],
        [{"t": T, "pose": POSE, "angle_min": -3.14, "angle_increment": 0, "range_max": 12.0, "ranges": []},
         {"t": T, "pose": POSE, "angle_min": -3.14, "angle_increment": 0.1, "range_max": 12.0, "ranges": ["far"]},
         {"t": T, "pose": POSE, "angle_min": -3.14, "angle_increment": 0.1, "range_max": 12.0, "ranges": [-1]},
         {"t": T, "pose": POSE, "angle_min": -3.14, "angle_increment": 0.1, "range_max": 12.0,
          "ranges": [1.0] * 2049}],
    ),
    "event": (
        [{"t": T, "type": "task.picked_up", "task": "task-42", "detail": {"shelf": 3}}],
        [{"t": T, "type": "Picked"}, {"t": T, "type": "fault", "detail": "overheated"}],
    ),
    "bid": (
        [{"task": "task-42", "price": 1250, "currency": "EUR", "eta_ms": 600000}],
        [{"task": "task-42", "price": 0, "currency": "EUR", "eta_ms": 1},
         {"task": "task-42", "price": 12.5, "currency": "EUR", "eta_ms": 1},
         {"task": "task-42", "price": 1250, "currency": "eur", "eta_ms": 1},
         {"task": "task 42", "price": 1250, "currency": "EUR", "eta_ms": 1}],
    ),
    "receipt": (
        [{"task": "task-42", "t": T, "pose": POSE}, {"task": "task-42", "t": T, "pose": POSE, "recipient": "ok"}],
        [{"task": "task-42", "t": T}, {"task": "task-42", "t": T, "pose": POSE, "recipient": "x" * 4097}],
    ),
    "command": (
        [{"to": DID, "type": "goto", "args": {"x": 1, "y": 2}}],
        [{"to": "robot-1", "type": "goto"}, {"to": DID}, {"to": DID, "type": "goto", "args": []}],
    ),
    "task": (
        [{"id": "task-42", "customer": DID, "pickup": {"x": 0, "y": 0}, "dropoff": {"x": 10, "y": 5},
          "deadline": T, "max_price": 2000, "currency": "EUR", "payload_kg": 2.5}],
        [{"id": "task-42", "customer": DID, "pickup": {"x": 0, "y": 0, "z": 0}, "dropoff": {"x": 10, "y": 5},
          "deadline": T, "max_price": 2000, "currency": "EUR", "payload_kg": 2.5},
         {"id": "task-42", "customer": DID, "pickup": {"x": 0, "y": 0}, "dropoff": {"x": 10, "y": 5},
          "deadline": T, "max_price": 2**53, "currency": "EUR", "payload_kg": 2.5}],
    ),
    "award": (
        [{"task": "task-42", "robot": DID, "task_hash": "a" * 64, "bid_hash": "b" * 64, "price": 1250,
          "currency": "EUR"}],
        [{"task": "task-42", "robot": DID, "task_hash": "A" * 64, "bid_hash": "b" * 64, "price": 1250,
          "currency": "EUR"},
         {"task": "task-42", "robot": DID, "task_hash": "a" * 64, "bid_hash": "b" * 64, "currency": "EUR"}],
    ),
    "map.tile": (
        [{"layer": "occupancy", "x": 3, "y": -2, "version": 7, "resolution": 0.1, "size": 64,
          "encoding": "zlib+base64", "data": "eJwDAAAAAAE="}],
        [{"layer": "occupancy", "x": 3, "y": -2, "version": 7, "resolution": 0.1, "size": 64,
          "encoding": "gzip", "data": ""},
         {"layer": "occupancy", "x": 3.5, "y": -2, "version": 7, "resolution": 0.1, "size": 64,
          "encoding": "zlib+base64", "data": ""}],
    ),
    "map.graph": (
        [{"version": 3, "edges": [{"u": "n1", "v": "n2", "state": "blocked"}]}, {"version": 0, "edges": []}],
        [{"version": 3, "edges": [{"u": "n1", "v": "n2", "state": "closed"}]},
         {"version": 3, "edges": [{"u": "n1", "v": "n2", "state": "free", "w": 1}]}],
    ),
    "map.presence": (
        [{"version": 4, "verdicts": [{"robot": DID, "t": 1_700_000_000_000, "x": 12.5, "y": -3.0,
                                      "verdict": "seen", "by": [DID]}]},
         {"version": 0, "verdicts": []}],
        [{"version": 4, "verdicts": [{"robot": DID, "t": 1_700_000_000_000, "x": 12.5, "y": -3.0,
                                      "verdict": "maybe", "by": []}]},
         {"version": -1, "verdicts": []}],
    ),
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(ASYNCAPI.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def protocol() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` (a JSON Pointer, RFC 6901) points to; fails the test if there is none."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = doc
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"$ref {ref} does not resolve (no {token!r})"
        node = node[token]
    return node


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` in a document, depth first."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def inline(doc: dict[str, Any], node: Any) -> Any:
    """``node`` with every ``$ref`` replaced by what it points to, recursively."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inline(doc, resolve(doc, node["$ref"]))
        return {key: inline(doc, value) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(doc, value) for value in node]
    return node


def accepts(validator: Any, value: Any) -> bool:
    try:
        validator(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def code_accepts(kind: str, body: Any) -> bool:
    try:
        validate_body(kind, body)
    except SchemaError:
        return False
    return True


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    match = re.search(rf"^{re.escape(heading)}[ \t]*$(.*?)(?=^#{{1,{level}}} |\Z)", text, re.M | re.S)
    assert match, f"docs/protocol.md has no section {heading!r}"
    return match.group(1)


def json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)]


# -- (a) the committed document is the generated one ---------------------------------------------

def test_committed_asyncapi_is_what_the_code_generates() -> None:
    assert ASYNCAPI.read_text(encoding="utf-8") == render(), (
        f"docs/asyncapi.json differs from bus/schemas.py; regenerate it with `{REGENERATE}` and commit it"
    )


# -- (b) every catalogue kind is a channel, an operation and a message ---------------------------

@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.kind)
def test_every_kind_has_its_channel_operation_and_message(doc: dict[str, Any], spec) -> None:
    name = ident(spec.kind)
    channel = doc["channels"][name]
    assert channel["address"] == spec.address
    operation = doc["operations"][operation_id(spec)]
    assert operation["action"] == {"robot": "send", "service": "receive"}[spec.sender] == action(spec)
    assert resolve(doc, operation["channel"]["$ref"]) is channel
    assert operation["bindings"]["mqtt"]["qos"] == spec.qos
    assert operation["bindings"]["mqtt"]["retain"] is spec.retain
    message = resolve(doc, channel["messages"][name]["$ref"])
    assert message is doc["components"]["messages"][name]
    assert message["name"] == spec.kind
    payload = inline(doc, message["payload"])
    assert payload["allOf"][1]["properties"]["kind"] == {"const": spec.kind}
    assert payload["allOf"][1]["properties"]["body"] == spec.schema, "the body schema is the catalogue's, unchanged"


def test_the_document_holds_exactly_the_catalogue(doc: dict[str, Any]) -> None:
    names = {ident(spec.kind) for spec in CATALOGUE}
    assert len(names) == len(CATALOGUE), "two kinds map to one id"
    assert set(doc["channels"]) == names == set(doc["components"]["messages"])
    assert set(doc["operations"]) == {operation_id(spec) for spec in CATALOGUE}
    assert set(doc["components"]["schemas"]) == {"envelope"} | {f"{name}Body" for name in names}


# -- (c) structurally valid AsyncAPI 3.0 ---------------------------------------------------------

def test_document_is_structurally_valid_asyncapi_3(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert isinstance(doc["info"]["title"], str) and doc["info"]["title"]
    assert isinstance(doc["info"]["version"], str) and doc["info"]["version"]
    assert "docs/protocol.md" in doc["info"]["description"]
    for server in doc["servers"].values():
        assert server["host"] and server["protocol"] == "mqtt" and server["protocolVersion"] == "3.1.1"
        assert set(server["bindings"]["mqtt"]) <= {"clientId", "cleanSession", "lastWill", "keepAlive",
                                                   "sessionExpiryInterval", "maximumPacketSize", "bindingVersion"}
        for requirement in server["security"]:
            assert resolve(doc, requirement["$ref"])["type"] == "userPassword"
    for name, channel in doc["channels"].items():
        assert isinstance(channel["address"], str) and not channel["address"].endswith("/")
        placeholders = re.findall(r"{(\w+)}", channel["address"])
        assert sorted(channel.get("parameters", {})) == sorted(placeholders), f"{name}: parameters = placeholders"
        for parameter in channel.get("parameters", {}).values():
            assert resolve(doc, parameter["$ref"])["description"]
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/")
            assert "payload" in resolve(doc, message["$ref"])
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        resolve(doc, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), "an operation's messages are its channel's"
            resolve(doc, message["$ref"])
        assert set(operation["bindings"]["mqtt"]) <= {"qos", "retain", "messageExpiryInterval", "bindingVersion"}
        assert operation["bindings"]["mqtt"]["qos"] in (0, 1, 2)
    for group, members in doc["components"].items():
        for key in members:
            assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", key), f"components.{group} key {key!r}"


def test_every_ref_resolves_and_every_component_is_used(doc: dict[str, Any]) -> None:
    used = set(refs(doc))
    assert used
    for ref in used:
        resolve(doc, ref)
    for group, members in doc["components"].items():
        for key in members:
            assert f"#/components/{group}/{key}" in used, f"components.{group}.{key} is never referenced"


# -- (d) the document's schemas judge bodies exactly as the code does ----------------------------

@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.kind)
def test_body_schemas_accept_and_refuse_like_the_code(doc: dict[str, Any], protocol: str, spec) -> None:
    schema = inline(doc, {"$ref": f"#/components/schemas/{ident(spec.kind)}Body"})
    validator = fastjsonschema.compile({"$schema": DRAFT_07, **schema})
    good, bad = EXAMPLES[spec.kind]
    good = good + json_blocks(section(protocol, f"### `{spec.kind}`"))
    for body in good:
        assert code_accepts(spec.kind, body) and accepts(validator, body), f"{spec.kind} should accept {body}"
    for body in bad:
        assert not code_accepts(spec.kind, body) and not accepts(validator, body), f"{spec.kind} should refuse {body}"


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.kind)
def test_sealed_messages_match_the_documented_payload(doc: dict[str, Any], spec) -> None:
    payload = inline(doc, doc["components"]["messages"][ident(spec.kind)]["payload"])
    validator = fastjsonschema.compile({"$schema": DRAFT_07, **payload})
    signer = EnvelopeSigner(Signer(SEED), DID, clock=lambda: CLOCK_S)
    good, bad = EXAMPLES[spec.kind]
    assert accepts(validator, json.loads(signer.seal(spec.kind, good[0])))
    assert not accepts(validator, json.loads(signer.seal(spec.kind, bad[0]))), "a bad body fails the payload"
    other = next(kind for kind in BY_KIND if kind != spec.kind)
    assert not accepts(validator, json.loads(signer.seal(other, good[0]))), "the payload fixes its kind"
    assert not accepts(validator, {**json.loads(signer.seal(spec.kind, good[0])), "extra": 1})


# -- (e) docs/protocol.md covers every channel and reason code, and the worked example is right ---

def ingest_reasons() -> set[str]:
    """Every reason bus/ingest.py passes to IngestRefused, literally or through a local variable."""
    tree = ast.parse((ROOT / "bus" / "ingest.py").read_text(encoding="utf-8"))
    reasons: set[str] = set()
    for function in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
        assigned = {target.id: node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
        for call in ast.walk(function):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "IngestRefused":
                argument = call.args[0]
                if isinstance(argument, ast.Name):
                    argument = assigned[argument.id]
                found = {node.value for node in ast.walk(argument)
                         if isinstance(node, ast.Constant) and isinstance(node.value, str)}
                assert found, f"cannot read the reason of IngestRefused at line {call.lineno}"
                reasons |= found
    return reasons


def test_protocol_mentions_every_channel(protocol: str) -> None:
    for spec in CATALOGUE:
        assert f"`{spec.address}`" in protocol, f"docs/protocol.md does not list {spec.address}"
        assert f"### `{spec.kind}`" in protocol, f"docs/protocol.md has no section for {spec.kind}"
    assert REGENERATE in protocol and "docs/asyncapi.json" in protocol


def test_protocol_explains_every_refusal_reason(protocol: str) -> None:
    reasons = {refusal.value for refusal in Refusal} | ingest_reasons()
    assert {"wrong_topic", "schema_invalid", "no_birth", "stale_epoch", "implausible", "rate_limited"} <= reasons
    explained = section(protocol, "## What the fleet checks, in order")
    missing = sorted(reason for reason in reasons if f"| `{reason}` |" not in explained)
    assert not missing, f"docs/protocol.md does not explain {missing}"


def test_protocol_explains_stale_session_messages_apart_from_refusals(protocol: str) -> None:
    """A retained birth or death that is not newer is counted as stale, not refused (issue 15)."""
    source = (ROOT / "bus" / "ingest.py").read_text(encoding="utf-8")
    assert '"depai_ingest_stale_total"' in source and "stale" not in ingest_reasons()
    explained = section(protocol, "## What the fleet checks, in order")
    refusals, _, apart = explained.partition("Not a refusal")
    assert "| `stale` |" in apart and "| `stale` |" not in refusals and "depai_ingest_stale_total" in apart
    assert "a birth repeats the live epoch" not in explained


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.kind)
def test_protocol_documents_every_body_field(protocol: str, spec) -> None:
    text = section(protocol, f"### `{spec.kind}`")
    assert json_blocks(text), f"no JSON example for {spec.kind}"
    for field in spec.schema["properties"]:
        assert f"| `{field}` |" in text, f"the {spec.kind} table lacks {field}"


def test_every_json_block_in_protocol_parses(protocol: str) -> None:
    assert len(json_blocks(protocol)) >= len(CATALOGUE)


def test_birth_example_carries_the_real_document_of_the_example_key(protocol: str, registry, clock) -> None:
    key = Signer(SEED)
    did = did_peaq(key.public_key)
    profile = MachineProfile("courier-s", ["delivery", "lidar"], 1.8, 12.0)
    document = create_identity(registry, key, topic_root=topic_root(did), machine=profile).document
    (birth,) = json_blocks(section(protocol, "### `birth`"))
    assert birth["document"] == document


def test_worked_example_is_what_the_code_produces(protocol: str) -> None:
    key = Signer(SEED)
    did = did_peaq(key.public_key)
    wire = EnvelopeSigner(key, did, clock=lambda: CLOCK_S, sequencer=Sequencer(EXAMPLE_SEQ)).seal(
        "telemetry", EXAMPLE_BODY)
    unsigned = canonicalize({k: v for k, v in json.loads(wire).items() if k != "sig"})
    prefix = DOMAIN + b"\x00telemetry\x00"
    signature = key.sign(digest("telemetry", unsigned))
    values = {
        "seed": SEED.hex(),
        "public key": key.public_key.hex(),
        "did:peaq": did,
        "did:key": did_key(key.public_key),
        "SHA-256 of the DID": hashlib.sha256(did.encode()).hexdigest(),
        "topic": topic_root(did) + "/telemetry",
        "unsigned": unsigned.decode(),
        "prefix": prefix.hex(),
        "digest": hashlib.sha256(prefix + unsigned).hexdigest(),
        "sig (hex)": signature.hex(),
        "sig": base64.urlsafe_b64encode(signature).rstrip(b"=").decode(),
        "wire": wire.decode(),
    }
    assert values["digest"] == digest("telemetry", unsigned).hex()
    example = section(protocol, "## Worked example")
    for name, value in values.items():
        assert value in example, f"the worked example's {name} is not {value}"
    sizes = f"the {len(prefix)} prefix bytes, then the\n  {len(unsigned)} bytes of the unsigned line"
    assert sizes in example and f"payload ({len(wire)} bytes)" in example
    identity_md = (ROOT / "docs" / "identity.md").read_text(encoding="utf-8")
    for name in ("seed", "public key", "did:peaq", "did:key", "unsigned", "prefix", "digest", "sig (hex)", "sig",
                 "wire"):
        assert values[name] in identity_md, f"docs/identity.md and docs/protocol.md disagree on the {name}"
