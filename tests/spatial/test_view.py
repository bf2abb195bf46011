"""A robot's view of the shared map: only the map service's newest graph and tiles count."""

import pytest

from bus.topics import MAP_GRAPH, map_tile_topic
from identity.envelope import EnvelopeSigner
from identity.keys import Signer
from identity.lifecycle import create_identity
from spatial.view import SLOW_FACTOR, MapView


@pytest.fixture
def parties(registry, clock):
    service_key, stranger_key = Signer.generate(), Signer.generate()
    service = create_identity(registry, service_key).did
    stranger = create_identity(registry, stranger_key).did
    clock.advance(1)
    view = MapView(registry, [service], clock=clock)
    return view, EnvelopeSigner(service_key, service, clock=clock), EnvelopeSigner(stranger_key, stranger, clock=clock)


def _graph(version: int, state: str = "blocked") -> dict:
    return {"version": version, "edges": [{"u": "n1_0", "v": "n0_0", "state": state},
                                          {"u": "n0_0", "v": "n0_1", "state": "free"}]}


def _tile(version: int) -> dict:
    return {"layer": "belief", "x": -1, "y": 2, "version": version, "resolution": 0.2, "size": 2,
            "encoding": "zlib+base64", "data": "eJxjYGBgAAAABAAB"}


def test_the_map_services_graph_sets_edge_costs(parties) -> None:
    view, service, _ = parties
    assert view.edge_cost("n0_0", "n1_0", {"length": 48.0}) == 48.0
    assert view.receive(MAP_GRAPH, service.seal("map.graph", _graph(1)))
    assert view.version == 1
    assert view.edge_cost("n0_0", "n1_0", {"length": 48.0}) is None  # either direction
    assert view.edge_cost("n0_0", "n0_1", {"length": 48.0}) == 48.0
    assert view.receive(MAP_GRAPH, service.seal("map.graph", _graph(2, "slow")))
    assert view.edge_cost("n1_0", "n0_0", {"length": 48.0}) == 48.0 * SLOW_FACTOR


def test_an_older_graph_cannot_undo_a_newer_one(parties) -> None:
    view, service, _ = parties
    view.receive(MAP_GRAPH, service.seal("map.graph", _graph(5)))
    assert not view.receive(MAP_GRAPH, service.seal("map.graph", _graph(4, "free")))
    assert view.version == 5 and view.edge_cost("n0_0", "n1_0", {"length": 1.0}) is None


@pytest.mark.parametrize("case, code", [("stranger", "untrusted_sender"), ("wrong_topic", "wrong_topic"),
                                        ("bad_body", "schema_invalid"), ("replayed", "replayed")])
def test_map_messages_from_anyone_else_or_out_of_place_are_refused_and_counted(parties, case, code) -> None:
    view, service, stranger = parties
    wire, topic = service.seal("map.graph", _graph(1)), MAP_GRAPH
    if case == "stranger":
        wire = stranger.seal("map.graph", _graph(9))
    elif case == "wrong_topic":
        topic = map_tile_topic("belief", 0, 0)
    elif case == "bad_body":
        wire = service.seal("map.graph", {"version": 1, "edges": [{"u": "a", "v": "b", "state": "gone"}]})
    elif case == "replayed":
        view.receive(topic, wire)
    assert not view.receive(topic, wire)
    assert view.refused[code] == 1
    assert view.version == (1 if case == "replayed" else -1)


def test_tiles_are_kept_per_key_newest_first(parties) -> None:
    view, service, stranger = parties
    topic = map_tile_topic("belief", -1, 2)
    assert view.receive(topic, service.seal("map.tile", _tile(3)))
    assert not view.receive(topic, service.seal("map.tile", _tile(2)))
    assert not view.receive(topic, stranger.seal("map.tile", _tile(7)))
    assert view.tiles[("belief", -1, 2)]["version"] == 3 and view.refused["untrusted_sender"] == 1
