"""SurveyRequests on a real map service and dispatcher: a road held closed is looked at again, slowly, until seen open."""

import networkx as nx
import numpy as np

from identity.did import did_peaq
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from launch.fleet import SurveyRequests
from marketplace.dispatch import Dispatcher
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


def test_a_closed_road_is_rechecked_every_recheck_s_and_no_longer_once_seen_open() -> None:
    clock = Clock()
    graph = nx.Graph()
    graph.add_node("a", pos=(0.0, 0.0), kind="junction")
    graph.add_node("b", pos=(40.0, 0.0), kind="junction")
    graph.add_edge("a", "b", length=40.0, street="a|b")
    service = MapService(_signer(clock), graph, bounds=(-10, -10, 50, 10), clock=clock, publish_every_s=1.0)
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
