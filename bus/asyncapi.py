"""The protocol's AsyncAPI 3.0 document, built from the message catalogue (docs/asyncapi.json).

The document describes one application, "a machine in the fleet": the kinds a
robot publishes under its own topic root are ``send`` operations, the kinds
fleet services publish to it are ``receive`` operations. Every payload is the
signed envelope of docs/identity.md, and its ``body`` is the catalogue's schema
for that kind, unchanged. Regenerate the committed copy with::

    python -m bus.asyncapi > docs/asyncapi.json

tests/bus/test_protocol_docs.py fails when the two differ.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bus.schemas import CATALOGUE, MessageSpec
from bus.topics import PARTITIONS
from identity.envelope import ENVELOPE_VERSION, MAX_SAFE_INTEGER

MQTT_BINDING_VERSION = "0.2.0"
_UINT53 = {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}

PARAMETERS: dict[str, dict[str, Any]] = {
    "partition": {
        "description": "The machine's ingest partition: the first hex digit of SHA-256 of its DID text. "
        "Read it from the topicRoot of the machine's DID document; never compute it on the robot.",
        "enum": [f"{p:x}" for p in range(PARTITIONS)],
    },
    "address": {
        "description": "The method-specific id of the machine's DID (the SS58 address of a did:peaq), "
        "which is also its MQTT username.",
    },
    "layer": {"description": "The map layer of the tile; the same as the body's layer."},
    "x": {"description": "The tile column, a decimal integer (may be negative); the same as the body's x."},
    "y": {"description": "The tile row, a decimal integer (may be negative); the same as the body's y."},
}

ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "The signed envelope (docs/identity.md): RFC 8785 canonical JSON of exactly these members, "
    "at most 64 KiB, exp after iat and at most 1 h after it; sig is Ed25519 over "
    "SHA-256(\"depai/envelope/v1\" 0x00 kind 0x00 canonical-envelope-without-sig).",
    "required": ["body", "exp", "iat", "iss", "kid", "kind", "seq", "sig", "v"],
    "additionalProperties": False,
    "properties": {
        "body": {"description": "The message itself; its schema depends on kind."},
        "exp": {**_UINT53, "description": "Expiry, ms since the Unix epoch."},
        "iat": {**_UINT53, "description": "Issued at, ms since the Unix epoch; at most 5 s ahead of the receiver."},
        "iss": {"type": "string", "pattern": "^did:(peaq|key):[A-Za-z0-9]+$", "maxLength": 128,
                "description": "The issuer's DID."},
        "kid": {"type": "string", "pattern": "^key-[1-9][0-9]*$",
                "description": "The signing key within the issuer's DID document."},
        "kind": {"type": "string", "pattern": "^[a-z][a-z0-9._-]{0,63}$", "description": "The message kind."},
        "seq": {**_UINT53,
                "description": "Per-issuer sequence number: starts at wall-clock microseconds, +1 per message."},
        "sig": {"type": "string", "minLength": 86, "maxLength": 86, "pattern": "^[A-Za-z0-9_-]{85}[AQgw]$",
                "description": "The Ed25519 signature, canonical unpadded base64url."},
        "v": {"type": "integer", "const": ENVELOPE_VERSION, "description": "The envelope version."},
    },
}


def ident(kind: str) -> str:
    """The document's id for a kind: ``map.tile`` becomes ``mapTile``."""
    head, *rest = kind.split(".")
    return head + "".join(part.title() for part in rest)


def action(spec: MessageSpec) -> str:
    """``send`` for what a machine publishes, ``receive`` for what fleet services publish to it."""
    return "send" if spec.sender == "robot" else "receive"


def operation_id(spec: MessageSpec) -> str:
    """The document's id for the operation on a kind: ``sendTelemetry``, ``receiveMapTile``."""
    name = ident(spec.kind)
    return action(spec) + name[0].upper() + name[1:]


def _channel(spec: MessageSpec) -> dict[str, Any]:
    """A channel: the catalogue's topic template, its parameters and its one message."""
    name = ident(spec.kind)
    channel: dict[str, Any] = {
        "address": spec.address,
        "title": spec.kind,
        "summary": spec.summary,
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
    }
    parameters = re.findall(r"{(\w+)}", spec.address)
    if parameters:
        channel["parameters"] = {p: {"$ref": f"#/components/parameters/{p}"} for p in parameters}
    return channel


def _operation(spec: MessageSpec) -> dict[str, Any]:
    """What the machine does on a channel, with the catalogue's QoS and retain flag as MQTT bindings."""
    name = ident(spec.kind)
    who = "The machine publishes this under its own topic root." if spec.sender == "robot" else (
        "A fleet service publishes this; the machine subscribes and verifies the envelope before acting on it.")
    if spec.kind == "death":
        who += " Also registered as the MQTT will in CONNECT, signed before the connection is made."
    return {
        "action": action(spec),
        "channel": {"$ref": f"#/channels/{name}"},
        "summary": spec.summary,
        "description": who,
        "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        "bindings": {"mqtt": {"qos": spec.qos, "retain": spec.retain, "bindingVersion": MQTT_BINDING_VERSION}},
    }


def _message(spec: MessageSpec) -> dict[str, Any]:
    """A message: the envelope with ``kind`` fixed and ``body`` the catalogue's schema."""
    name = ident(spec.kind)
    return {
        "name": spec.kind,
        "title": spec.kind,
        "summary": spec.summary,
        "contentType": "application/json",
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/envelope"},
                {"properties": {"kind": {"const": spec.kind}, "body": {"$ref": f"#/components/schemas/{name}Body"}}},
            ]
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of protocol v1, from bus.schemas.CATALOGUE."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "DePAI fleet protocol",
            "version": "1.0.0",
            "description": (
                "Protocol v1 of a DePAI robot fleet, described from the point of view of one machine in the fleet "
                "(a robot): `send` operations are what it publishes under its own topic root, `receive` operations "
                "are what fleet services publish for it. Every payload is a signed envelope (RFC 8785 canonical "
                "JSON, Ed25519) whose body follows the schema of its kind. The rules this document cannot express "
                "(byte-exact signing, sequence numbers and epochs, the will, the order of checks and every refusal "
                "code, a worked example) are in docs/protocol.md. Generated from bus/schemas.py by "
                "`python -m bus.asyncapi > docs/asyncapi.json`; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "The fleet's broker (Mosquitto, or the embedded amqtt for simulations); "
                "use the host and port your fleet operator gives you.",
                "security": [{"$ref": "#/components/securitySchemes/mqttLogin"}],
                "bindings": {"mqtt": {"cleanSession": False, "bindingVersion": MQTT_BINDING_VERSION}},
            }
        },
        "channels": {ident(spec.kind): _channel(spec) for spec in CATALOGUE},
        "operations": {operation_id(spec): _operation(spec) for spec in CATALOGUE},
        "components": {
            "securitySchemes": {
                "mqttLogin": {
                    "type": "userPassword",
                    "description": "MQTT username: the machine's address (the {address} topic level); password: "
                    "the secret the fleet operator issued. The broker's ACL lets a robot publish only under "
                    "depai/v1/robots/+/{address}/# and subscribe only to its own .../cmd, depai/v1/market/# "
                    "and depai/v1/map/#.",
                }
            },
            "parameters": PARAMETERS,
            "messages": {ident(spec.kind): _message(spec) for spec in CATALOGUE},
            "schemas": {"envelope": ENVELOPE} | {f"{ident(spec.kind)}Body": spec.schema for spec in CATALOGUE},
        },
    }


def render() -> str:
    """The document as committed in docs/asyncapi.json: JSON, indent 2, sorted keys, trailing newline."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
