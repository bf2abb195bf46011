"""The versioned MQTT topic tree (protocol v1): where each kind of message lives.

Everything a machine sends stays under its own topic root, so a broker ACL can
confine a robot's MQTT user to it before any signature is checked::

    depai/v1/robots/{partition}/{address}/birth      retained   birth     who I am (signed DID document, capabilities, boot epoch)
    depai/v1/robots/{partition}/{address}/death      retained   death     I am gone (the MQTT will, or an explicit signed death)
    depai/v1/robots/{partition}/{address}/telemetry             telemetry pose, velocity, battery, sensor summary
    depai/v1/robots/{partition}/{address}/scan                  scan      a 2D lidar scan with the pose it was taken at
    depai/v1/robots/{partition}/{address}/event                 event     task progress and other discrete happenings
    depai/v1/robots/{partition}/{address}/bid                   bid       an offer for a marketplace task
    depai/v1/robots/{partition}/{address}/receipt               receipt   proof of delivery
    depai/v1/robots/{partition}/{address}/cmd                   command   to the robot, from fleet services

Fleet services publish the shared channels::

    depai/v1/market/tasks                               task      a delivery task on offer
    depai/v1/market/awards                              award     a task awarded to a robot
    depai/v1/map/tiles/{layer}/{x}/{y}       retained   map.tile  a compressed occupancy tile
    depai/v1/map/graph                       retained   map.graph road-graph edge states
    depai/v1/map/presence                               map.presence  where peers' lidar saw (or did not see) robots
    depai/v1/market/orders                              task      a customer's signed task, for the marketplace

Between the fleet's own processes (docs/deploy.md)::

    depai/v1/gateways/{partition}/{gateway}             batch     a gateway's robots' envelopes (bus/frames.py)
    depai/v1/verified/{kind}                            batch     envelopes ingest verified (only ingest writes)
    depai/v1/fleet/descriptor                retained   fleet.descriptor  the run: clock, city, services
    depai/v1/fleet/services/{role}/{index}   retained   service.status    each service's counters
    depai/v1/fleet/spawn                                fleet.spawn       a robot the DAO bought joins a shard

``{address}`` is the method-specific id of the machine's DID (the SS58 address of
a did:peaq). ``{partition}`` is its partition, one hex digit from SHA-256 of the DID, so
ingest can be split across workers with every robot's state on one worker. Both
are fixed when the identity is created and published in its DID document as the
service endpoint's ``topicRoot``, so a robot never computes them itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PROTOCOL_ROOT = "depai/v1"
ROBOTS = f"{PROTOCOL_ROOT}/robots"
PARTITIONS = 16

# Robot-originated channels under a robot's topic root, by message kind.
ROBOT_CHANNELS = {
    "birth": "birth",
    "death": "death",
    "telemetry": "telemetry",
    "scan": "scan",
    "event": "event",
    "bid": "bid",
    "receipt": "receipt",
}
COMMAND_CHANNEL = "cmd"
MARKET_TASKS = f"{PROTOCOL_ROOT}/market/tasks"
MARKET_AWARDS = f"{PROTOCOL_ROOT}/market/awards"
MAP_GRAPH = f"{PROTOCOL_ROOT}/map/graph"
MAP_TILES = f"{PROTOCOL_ROOT}/map/tiles"
MAP_PRESENCE = f"{PROTOCOL_ROOT}/map/presence"  # the map service's verdicts on robots' claimed poses
MARKET_ORDERS = f"{PROTOCOL_ROOT}/market/orders"
GATEWAYS = f"{PROTOCOL_ROOT}/gateways"
VERIFIED = f"{PROTOCOL_ROOT}/verified"
FLEET = f"{PROTOCOL_ROOT}/fleet"
FLEET_DESCRIPTOR = f"{FLEET}/descriptor"
FLEET_SERVICES = f"{FLEET}/services"
FLEET_SPAWN = f"{FLEET}/spawn"
IDENTITIES = f"{PROTOCOL_ROOT}/identities"  # every DID's newest signed version, retained: IDENTITIES/{method-specific id}
LEDGER_CHECKPOINT = f"{PROTOCOL_ROOT}/ledger/checkpoint"  # the ledger's newest signed checkpoint note, retained


def partition_of(did: str) -> int:
    """The ingest partition (0-15) of a DID: the first hex digit of SHA-256 of the DID text."""
    return hashlib.sha256(did.encode()).digest()[0] >> 4


def topic_root(did: str) -> str:
    """A machine's topic root, ``depai/v1/robots/{partition}/{address}``, as its DID document publishes it."""
    address = did.rsplit(":", 1)[1]
    return f"{ROBOTS}/{partition_of(did):x}/{address}"


@dataclass(frozen=True, slots=True)
class RobotTopic:
    """A parsed robot topic: partition, address and channel."""

    partition: int
    address: str
    channel: str


def parse_robot_topic(topic: str) -> RobotTopic | None:
    """The parts of ``depai/v1/robots/{partition}/{address}/{channel}``, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}/{parts[2]}" != ROBOTS:
        return None
    p, address, channel = parts[3], parts[4], parts[5]
    if len(p) != 1 or p not in "0123456789abcdef" or not address:
        return None
    return RobotTopic(int(p, 16), address, channel)


def robot_filter(channel: str = "+", partitions: list[int] | None = None) -> list[str]:
    """Subscription filters for ``channel`` of every robot, or only those in ``partitions``."""
    if partitions is None:
        return [f"{ROBOTS}/+/+/{channel}"]
    return [f"{ROBOTS}/{p:x}/+/{channel}" for p in partitions]


def map_tile_topic(layer: str, x: int, y: int) -> str:
    """The retained topic of one map tile."""
    return f"{MAP_TILES}/{layer}/{x}/{y}"


def map_tiles_filter(layer: str) -> str:
    """The subscription filter for every tile of one map layer (robots localize on the "belief" layer)."""
    return f"{MAP_TILES}/{layer}/#"


def gateway_topic(partition: int, gateway: str) -> str:
    """Where gateway ``gateway`` publishes its batches of robots in ``partition``."""
    return f"{GATEWAYS}/{partition:x}/{gateway}"


def gateway_filter(partitions: list[int] | None = None) -> list[str]:
    """Subscription filters for every gateway's batches, or only those of ``partitions``."""
    if partitions is None:
        return [f"{GATEWAYS}/+/+"]
    return [f"{GATEWAYS}/{p:x}/+" for p in partitions]


def verified_topic(kind: str) -> str:
    """The channel on which ingest forwards the verified envelopes of ``kind``."""
    return f"{VERIFIED}/{kind}"


def service_topic(role: str, index: int) -> str:
    """The retained status topic of one service process."""
    return f"{FLEET_SERVICES}/{role}/{index}"
