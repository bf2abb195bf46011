"""The command gate: only a verified command, from a trusted service, to this robot, on its topic, gets in."""

import pytest

from bus.topics import MARKET_AWARDS, MARKET_TASKS, topic_root
from bus.trusted import Refused
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from robots.commands import CommandGate, MarketGate


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


def _task(customer: str) -> dict:
    return {"id": "t1", "customer": customer, "pickup": {"x": 0, "y": 0}, "dropoff": {"x": 10, "y": 0},
            "deadline": 9_999_999_999_999, "max_price": 1_000, "currency": "EUR", "payload_kg": 1.0}


def _award(robot: str) -> dict:
    return {"task": "t1", "robot": robot, "price": 500, "currency": "EUR", "bid_hash": "0" * 64,
            "task_hash": "0" * 64}


def test_a_market_gate_admits_trusted_announcements_and_awards_once_for_every_robot(parties, registry, clock) -> None:
    _, service, _, robot = parties
    gate = MarketGate(registry, [service.did], clock=clock)
    task, award = service.seal("task", _task(robot)), service.seal("award", _award(robot))
    assert gate.admit(MARKET_TASKS, task).body["id"] == "t1"
    assert gate.admit(MARKET_AWARDS, award).body["robot"] == robot  # any robot's award: it gates for all of them
    assert gate.admitted == 2
    with pytest.raises(Refused) as refused:
        gate.admit(MARKET_TASKS, task)
    assert refused.value.code == "replayed" and gate.admitted == 2


@pytest.mark.parametrize("case, code", [
    ("stranger", "untrusted_sender"), ("award_on_tasks", "wrong_topic"), ("command", "wrong_kind"),
    ("bad_body", "schema_invalid"), ("tampered", "bad_signature"),
])
def test_a_market_gate_refuses_what_a_robot_would(parties, registry, clock, case: str, code: str) -> None:
    command_gate, service, stranger, robot = parties
    gate = MarketGate(registry, [service.did], clock=clock)
    topic, wire = MARKET_TASKS, service.seal("task", _task(robot))
    if case == "stranger":
        wire = stranger.seal("task", _task(robot))
    elif case == "award_on_tasks":
        wire = service.seal("award", _award(robot))
    elif case == "command":
        wire = service.seal("command", _go(robot))
    elif case == "bad_body":
        wire = service.seal("task", {**_task(robot), "colour": "red"})
    elif case == "tampered":
        wire = wire.replace(b'"max_price":1000', b'"max_price":9000')
    for admit in (gate.admit, command_gate.admit_market):  # the shared gate and one robot's own agree
        with pytest.raises(Refused) as refused:
            admit(topic, wire)
        assert refused.value.code == code
    assert gate.admitted == 0
