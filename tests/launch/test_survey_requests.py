"""SurveyRequests on a real map service and dispatcher: a road held closed is looked at again, slowly, until seen open,
by a robot that can get there; a restarted map service keeps it closed."""

import networkx as nx
import numpy as np
import pytest

from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from launch.fleet import SurveyRequests
from launch.serve import MapRole
from marketplace.dispatch import Dispatcher
from spatial.roads import graph_message
from spatial.service import MapService

ALICE, BOB = "did:key:zAlice", "did:key:zBob"
WALL_X = 20.5  # roadworks across the road from junction a (0, 0) to junction b (40, 0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _signer(clock: Clock) -> EnvelopeSigner:
    key = Signer.generate()
    return EnvelopeSigner(key, did_peaq(key.public_key), clock=clock)


def _look(service: MapService, did: str, wall: bool) -> None:
    """``did`` drives up the road toward x = 19, facing +x, four scans: the wall ahead, or open road."""
    angles = np.linspace(-1.2, 1.2, 121)
    for step in range(4):
        x = 17.5 + 0.5 * step
        ranges = np.full(len(angles), np.inf)
        if wall:
            across = np.abs((WALL_X - x) * np.tan(angles)) <= 4.0
            ranges = np.where(across, (WALL_X - x) / np.cos(angles), np.inf)
        service.grid.integrate(did, (x, 0.0, 0.0), -1.2, 2.4 / 120, 6.0, ranges, service.clock() + 0.5 * step)


def _road() -> nx.Graph:
    graph = nx.Graph()
    graph.add_node("a", pos=(0.0, 0.0), kind="junction")
    graph.add_node("b", pos=(40.0, 0.0), kind="junction")
    graph.add_edge("a", "b", length=40.0, street="a|b")
    return graph


def _map(clock: Clock) -> MapService:
    return MapService(_signer(clock), _road(), bounds=(-10, -10, 50, 10), clock=clock, publish_every_s=1.0)


def test_a_closed_road_is_rechecked_every_recheck_s_and_no_longer_once_seen_open() -> None:
    clock = Clock()
    service = _map(clock)
    dispatcher = Dispatcher(_signer(clock), clock=clock)
    surveys = SurveyRequests(service, dispatcher, recheck_s=60.0)
    for did in (ALICE, BOB):
        _look(service, did, wall=True)
    clock.t += 2
    service.step()
    closure = service.closures()[("a", "b")]
    assert service.blocked_roads().keys() == {("a", "b")} and abs(closure.at[0] - WALL_X) <= 0.4
    assert closure.vantage_points == ((closure.at[0] - 4.0, 0.0), (closure.at[0] + 4.0, 0.0))
    surveys.step()
    assert (surveys.requested, dispatcher.open_surveys) == (0, 0)  # just closed: nothing to look at yet
    beyond = (closure.at[0] + 2.0, 0.0)  # past the closure: no way there from a's side, straight on from b's
    assert surveys.route_cost(beyond, [(10.0, 0.0), (30.0, 0.0)]) == [None, pytest.approx(30.0 - beyond[0])]
    clock.t += 600  # ten minutes: the evidence has faded to unknown, the road is still held closed
    service.step()
    surveys.step()
    assert service.blocked_roads().keys() == {("a", "b")}
    assert (surveys.requested, dispatcher.open_surveys) == (1, 1)
    for did in (ALICE, BOB):  # two robots find the roadworks gone
        _look(service, did, wall=False)
    clock.t += 2
    service.step()
    surveys.step()
    assert service.blocked_roads() == {} and service.closures() == {}
    assert (surveys.requested, dispatcher.open_surveys) == (1, 0)  # called off


def test_a_restarted_map_service_keeps_the_closures_its_last_road_graph_published_until_seen_open() -> None:
    clock = Clock()
    before = _map(clock)
    for did in (ALICE, BOB):
        _look(before, did, wall=True)
    clock.t += 2
    before.step()
    published = graph_message(before.report, before.graph_version)
    after = _map(clock)  # a new process: an empty grid, nothing latched
    assert MapRole.resume_closures(after, published) == 1 and MapRole.resume_closures(_map(clock), {"edges": [
        {"u": "a", "v": "z", "state": "blocked", "at": {"x": 1.0, "y": 0.0}}]}) == 0  # another city's road
    after.step()
    assert after.blocked_roads().keys() == {("a", "b")}
    assert after.closures()[("a", "b")].at == before.closures()[("a", "b")].at
    for did in (ALICE, BOB):
        _look(after, did, wall=False)
    clock.t += 2
    after.step()
    assert after.blocked_roads() == {}
