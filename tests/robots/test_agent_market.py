"""A robot alone verifies the marketplace's messages itself; behind a gateway it takes them verified, once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bus.session import MachineSession
from bus.topics import MARKET_AWARDS, MARKET_TASKS, topic_root
from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from robots.agent import RobotAgent
from robots.body import BodyProfile
from robots.commands import CommandGate, MarketGate
from robots.planner import RoadPlanner
from robots.tasks import DeliveryTask
from sim.city import generate_city

PROFILE = BodyProfile("test", 1.5, 1.5, 0.35, 10.0, 30.0, 500.0, 0.05, 5.0)


@pytest.fixture
def setup(registry, clock):
    robot_key, market_key, stranger_key = Signer.generate(), Signer.generate(), Signer.generate()
    robot = create_identity(registry, robot_key, topic_root=topic_root(did_peaq(robot_key.public_key))).did
    market = create_identity(registry, market_key).did
    stranger = create_identity(registry, stranger_key).did
    clock.advance(1)
    agent = RobotAgent(SimpleNamespace(profile=PROFILE),
                       MachineSession(EnvelopeSigner(robot_key, robot, clock=clock), topic_root(robot),
                                      registry.active(robot).document),
                       RoadPlanner(generate_city(7, 2).road_graph()), send=lambda message: None, clock=clock,
                       gate=CommandGate(robot, topic_root(robot), registry, [market], clock=clock))
    return SimpleNamespace(agent=agent, market=EnvelopeSigner(market_key, market, clock=clock),
                           stranger=EnvelopeSigner(stranger_key, stranger, clock=clock),
                           gate=MarketGate(registry, [market], clock=clock))


def _task(task_id: str = "t1") -> dict:
    return {"id": task_id, "customer": "did:key:z6MkCustomer", "pickup": {"x": 0, "y": 0},
            "dropoff": {"x": 10, "y": 0}, "deadline": 9_999_999_999_999, "max_price": 1_000, "currency": "EUR",
            "payload_kg": 1.0}


def _award(robot: str) -> dict:
    return {"task": "t1", "robot": robot, "price": 500, "currency": "EUR", "bid_hash": "0" * 64,
            "task_hash": "0" * 64}


def test_a_robot_alone_verifies_market_messages_itself(setup) -> None:
    agent = setup.agent
    agent.receive(MARKET_TASKS, setup.stranger.seal("task", _task()))
    agent.receive(MARKET_AWARDS, setup.market.seal("award", _award("did:peaq:5SomeoneElse")))
    task = setup.market.seal("task", _task())
    agent.receive(MARKET_TASKS, task)
    agent.receive(MARKET_TASKS, task)
    assert agent.refused == {"untrusted_sender": 1, "replayed": 1}
    assert [(e.kind, e.body.get("id")) for e in agent._inbox] == [("task", "t1")]


def test_a_verified_envelope_handed_over_is_taken_as_is_and_awards_for_others_are_ignored(setup) -> None:
    agent, gate = setup.agent, setup.gate
    agent.receive_market(gate.admit(MARKET_TASKS, setup.market.seal("task", _task())))
    agent.receive_market(gate.admit(MARKET_AWARDS, setup.market.seal("award", _award("did:peaq:5SomeoneElse"))))
    agent.receive_market(gate.admit(MARKET_AWARDS, setup.market.seal("award", _award(agent.did))))
    assert [e.kind for e in agent._inbox] == ["task", "award"] and agent.refused.total() == 0


def test_a_robot_wants_tasks_only_when_free_or_a_command_may_free_it(setup) -> None:
    agent = setup.agent
    assert agent.wants_tasks()  # idle
    agent.mode = "charging"
    assert agent.wants_tasks()  # charging with no task: it bids, with the charge in its ETA
    agent.mode = "goto"
    assert not agent.wants_tasks()
    agent.mode = "idle"
    agent.tasks.assign(DeliveryTask("t0", (0.0, 0.0), (10.0, 0.0), 1.0, "parcel-t0"))
    assert not agent.wants_tasks()  # busy with a task
    agent.receive(agent.gate.topic, setup.market.seal("command", {"to": agent.did, "type": "abort", "task": "t0"}))
    assert agent.wants_tasks()  # the abort waiting in its inbox may free it before it reads the announcement
