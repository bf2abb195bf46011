"""The command gate: only a verified command, from a trusted service, to this robot, on its topic, gets in."""

import pytest

from bus.topics import topic_root
from bus.trusted import Refused
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from robots.commands import CommandGate


@pytest.fixture
def parties(registry, clock):
    service_key, stranger_key, robot_key = Signer.generate(), Signer.generate(), Signer.generate()
    service = create_identity(registry, service_key).did
    stranger = create_identity(registry, stranger_key).did
    robot = create_identity(registry, robot_key, topic_root=topic_root(did_peaq(robot_key.public_key))).did
    clock.advance(1)
    gate = CommandGate(robot, topic_root(robot), registry, [service], clock=clock)
    signer = EnvelopeSigner(service_key, service, clock=clock)
    return gate, signer, EnvelopeSigner(stranger_key, stranger, clock=clock), robot


def _go(robot: str) -> dict:
    return {"to": robot, "type": "goto", "args": {"x": 1, "y": 2}}


def test_a_trusted_addressed_command_is_admitted_once(parties) -> None:
    gate, service, _, robot = parties
    wire = service.seal("command", _go(robot))
    assert gate.admit(gate.topic, wire).body["type"] == "goto"
    with pytest.raises(Refused) as refused:
        gate.admit(gate.topic, wire)
    assert refused.value.code == "replayed"


@pytest.mark.parametrize("case, code", [
    ("stranger", "untrusted_sender"), ("other_robot", "wrong_robot"), ("other_topic", "wrong_topic"),
    ("bad_body", "schema_invalid"), ("tampered", "bad_signature"), ("not_json", "malformed_json"),
])
def test_refused_commands_name_why_and_burn_nothing(parties, case: str, code: str) -> None:
    gate, service, stranger, robot = parties
    topic, body = gate.topic, _go(robot)
    wire = service.seal("command", body)
    if case == "stranger":
        wire = stranger.seal("command", body)
    elif case == "other_robot":
        wire = service.seal("command", _go(did_peaq(Signer.generate().public_key)))
    elif case == "other_topic":
        topic = topic.replace("/cmd", "/event")
    elif case == "bad_body":
        wire = service.seal("command", {"to": robot, "type": "goto", "colour": "red"})
    elif case == "tampered":
        wire = wire.replace(b'"x":1', b'"x":9')
    elif case == "not_json":
        wire = b"{not json"
    with pytest.raises(Refused) as refused:
        gate.admit(topic, wire)
    assert refused.value.code == code
    fresh = service.seal("command", _go(robot))
    assert gate.admit(gate.topic, fresh).issuer == service.did


def test_a_command_refused_for_its_topic_is_still_good_on_the_right_one(parties) -> None:
    gate, service, _, robot = parties
    wire = service.seal("command", _go(robot))
    with pytest.raises(Refused):
        gate.admit(gate.topic.replace("/cmd", "/event"), wire)
    assert gate.admit(gate.topic, wire).body["to"] == robot
