"""The protocol's message catalogue: for every kind, its topic, QoS, retain flag, sender and body schema.

This table is the single source the ingest pipeline validates against, and the
AsyncAPI document (docs/asyncapi.json) is checked against it by a test, so the
spec a hardware maker reads and the code cannot drift. Schemas are JSON Schema
draft-07, compiled once with fastjsonschema (a validator that generates code),
because validation runs on every message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from bus.topics import MAP_GRAPH, MAP_PRESENCE, MAP_TILES, MARKET_AWARDS, MARKET_TASKS, ROBOTS
from identity.errors import DepaiError

_NUMBER = {"type": "number"}
_TIME_MS = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1, "description": "ms since the Unix epoch"}
_DID = {"type": "string", "pattern": "^did:(peaq|key):[A-Za-z0-9]+$", "maxLength": 128}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
_MONEY = {"type": "integer", "minimum": 1, "maximum": 2**53 - 1, "description": "integer minor units"}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
_POINT = {
    "type": "object",
    "required": ["x", "y"],
    "additionalProperties": False,
    "properties": {"x": _NUMBER, "y": _NUMBER},
}
_POSE = {
    "type": "object",
    "required": ["x", "y", "theta"],
    "additionalProperties": False,
    "properties": {"x": _NUMBER, "y": _NUMBER, "theta": {"type": "number", "minimum": -7, "maximum": 7}},
}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A closed JSON object schema: these members, nothing else."""
    return {
        "type": "object",
        "required": sorted(required),
        "additionalProperties": False,
        "properties": {**required, **(optional or {})},
    }


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One kind of message: where it is published, how, by whom, and what its body looks like."""

    kind: str
    address: str
    qos: int
    retain: bool
    sender: str
    summary: str
    schema: dict[str, Any]

    @property
    def channel(self) -> str:
        """The last topic level of the address: the channel under a robot's topic root."""
        return self.address.rsplit("/", 1)[-1]


ROBOT_ROOT = f"{ROBOTS}/{{partition}}/{{address}}"

CATALOGUE: tuple[MessageSpec, ...] = (
    MessageSpec(
        "birth", f"{ROBOT_ROOT}/birth", 1, True, "robot",
        "A machine comes online: its DID document, what it can do, and its boot epoch.",
        _object(
            {
                "document": {"type": "object", "required": ["id", "verificationMethod"]},
                "epoch": {**_TIME_MS, "description": "boot epoch: the seq of this birth; a death names it"},
            },
            {"via": {**_DID, "description": "the gateway DID when several machines share one connection"},
             "software": {"type": "string", "maxLength": 128}},
        ),
    ),
    MessageSpec(
        "death", f"{ROBOT_ROOT}/death", 1, True, "robot",
        "A machine goes offline: its MQTT will (signed at connect time) or an explicit signed death.",
        _object(
            {"epoch": {**_TIME_MS, "description": "the boot epoch of the birth this death ends"}},
            {"reason": {"type": "string", "enum": ["will", "shutdown", "fault"]}},
        ),
    ),
    MessageSpec(
        "telemetry", f"{ROBOT_ROOT}/telemetry", 1, False, "robot",
        "Where a machine is, how it moves, its battery and what it is doing.",
        _object(
            {
                "t": _TIME_MS,
                "pose": _POSE,
                "twist": _object({"v": _NUMBER, "w": _NUMBER}),
                "battery": {"type": "number", "minimum": 0, "maximum": 1},
            },
            {
                "odometer_m": {"type": "number", "minimum": 0},
                "state": {"type": "string", "maxLength": 32},
                "task": _ID,
                "load_kg": {"type": "number", "minimum": 0},
            },
        ),
    ),
    MessageSpec(
        "scan", f"{ROBOT_ROOT}/scan", 1, False, "robot",
        "A 2D lidar scan and the pose it was taken from, for the shared map.",
        _object(
            {
                "t": _TIME_MS,
                "pose": _POSE,
                "angle_min": {"type": "number", "minimum": -7, "maximum": 7},
                "angle_increment": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "range_max": {"type": "number", "exclusiveMinimum": 0, "maximum": 200},
                "ranges": {
                    "type": "array",
                    "maxItems": 2048,
                    "items": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
                },
            }
        ),
    ),
    MessageSpec(
        "event", f"{ROBOT_ROOT}/event", 1, False, "robot",
        "Something happened: a task state change, an obstacle, a fault.",
        _object(
            {"t": _TIME_MS, "type": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$"}},
            {"task": _ID, "detail": {"type": "object"}},
        ),
    ),
    MessageSpec(
        "bid", f"{ROBOT_ROOT}/bid", 1, False, "robot",
        "An offer to do a marketplace task, priced from the robot's own route, battery and queue.",
        _object({"task": _ID, "price": _MONEY, "currency": _CURRENCY,
                 "eta_ms": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}}),
    ),
    MessageSpec(
        "receipt", f"{ROBOT_ROOT}/receipt", 1, False, "robot",
        "Proof of delivery: the robot's pose at the dropoff, optionally countersigned by the recipient.",
        _object({"task": _ID, "t": _TIME_MS, "pose": _POSE},
                {"recipient": {"type": "string", "maxLength": 4096}}),
    ),
    MessageSpec(
        "command", f"{ROBOT_ROOT}/cmd", 1, False, "service",
        "An instruction to one machine from a fleet service (go to, deliver, charge, abort).",
        _object(
            {"to": _DID, "type": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$"}},
            {"task": _ID, "args": {"type": "object"}},
        ),
    ),
    MessageSpec(
        "task", MARKET_TASKS, 1, False, "service",
        "A delivery task on offer, with its reward locked in escrow.",
        _object({"id": _ID, "customer": _DID, "pickup": _POINT, "dropoff": _POINT, "deadline": _TIME_MS,
                 "max_price": _MONEY, "currency": _CURRENCY,
                 "payload_kg": {"type": "number", "minimum": 0}}),
    ),
    MessageSpec(
        "award", MARKET_AWARDS, 1, False, "service",
        "A task awarded to a robot: a single-use agreement binding the task's and the bid's hashes.",
        _object({"task": _ID, "robot": _DID, "task_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                 "bid_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "price": _MONEY,
                 "currency": _CURRENCY}),
    ),
    MessageSpec(
        "map.tile", f"{MAP_TILES}/{{layer}}/{{x}}/{{y}}", 1, True, "service",
        "One compressed occupancy tile of the shared map.",
        _object({"layer": _ID, "x": {"type": "integer"}, "y": {"type": "integer"},
                 "version": {"type": "integer", "minimum": 0}, "resolution": {"type": "number", "exclusiveMinimum": 0},
                 "size": {"type": "integer", "minimum": 1, "maximum": 1024},
                 "encoding": {"type": "string", "enum": ["zlib+base64"]}, "data": {"type": "string"}}),
    ),
    MessageSpec(
        "map.graph", MAP_GRAPH, 1, True, "service",
        "The road graph's edge states (free, slow, blocked, or suspect: one robot's word, planned as free "
        "until a second robot confirms it) derived from the shared map; a non-free edge says where.",
        _object({"version": {"type": "integer", "minimum": 0},
                 "edges": {"type": "array", "items": _object(
                     {"u": _ID, "v": _ID,
                      "state": {"type": "string", "enum": ["free", "slow", "blocked", "suspect"]}},
                     {"at": _POINT})}}),
    ),
    MessageSpec(
        "map.presence", MAP_PRESENCE, 1, False, "service",
        "The map service's verdicts on where robots said they were, from other robots' lidar and the "
        "corroborated map: seen (a peer's return where the robot claimed to stand), unseen (a peer's beam "
        "passed through that spot) or impossible (the spot is inside a corroborated obstacle).",
        _object({"version": {"type": "integer", "minimum": 0},
                 "verdicts": {"type": "array", "maxItems": 4096, "items": _object(
                     {"robot": _DID, "t": _TIME_MS, "x": _NUMBER, "y": _NUMBER,
                      "verdict": {"type": "string", "enum": ["seen", "unseen", "impossible"]},
                      "by": {"type": "array", "maxItems": 64, "items": _DID}})}}),
    ),
)

BY_KIND: dict[str, MessageSpec] = {spec.kind: spec for spec in CATALOGUE}
_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    spec.kind: fastjsonschema.compile({"$schema": "http://json-schema.org/draft-07/schema#", **spec.schema})
    for spec in CATALOGUE
}


class SchemaError(DepaiError, ValueError):
    """A message body that does not match its kind's schema; the message names the first problem."""

    code = "schema_invalid"


def validate_body(kind: str, body: Any) -> None:
    """Check ``body`` against the schema of ``kind``; SchemaError says what is wrong."""
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise SchemaError(f"no message kind {kind!r} in protocol v1")
    try:
        validator(body)
    except fastjsonschema.JsonSchemaValueException as err:
        raise SchemaError(f"{kind} body: {err.message}") from None
