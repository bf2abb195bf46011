"""Joining a fleet from another machine: everything a bridge needs, from what the fleet serves over HTTP.

``fetch_fleet(url, resolver, operator)`` reads ``GET {url}/api/fleet`` (the fleet
descriptor, its operator-signed envelope, the operator's DID) and the road graph
(``/api/fleet/roads``, or the descriptor's ``roads_url``). The envelope is
verified under the operator's keys, resolved over HTTP like every other DID
(identity/http_resolver.py), and the descriptor is taken from its signed body:
the served plain copy must agree with it wherever both say something, and whom
the robot obeys (marketplace, dispatcher, map) comes from the signed body only.
A descriptor that names a loopback broker (``127.0.0.1``, ``localhost``,
``0.0.0.0``) means the fleet's own host: the host of ``url`` is used instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import networkx as nx

from identity.canonical import canonicalize
from identity.envelope import EnvelopeRefused, EnvelopeVerifier
from identity.http_resolver import HttpResolver
from robots.bridge.bridge import BridgeError

FLEET_PATH = "/api/fleet"
ROADS_PATH = "/api/fleet/roads"
MAX_BYTES = 16 * 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::", "::1", ""})


@dataclass(frozen=True)
class RemoteFleet:
    """A fleet as a robot on another machine knows it: checked against the operator's signature."""

    url: str
    operator: str
    descriptor: dict[str, Any]  # the signed body, with what only the plain copy says
    broker: str  # the URL to connect to: the TLS listener when the fleet has one
    tls: bool
    commanders: list[str]
    map_services: list[str]
    chargers: list[tuple[float, float]]
    roads: nx.Graph


def fetch_fleet(url: str, resolver: HttpResolver, operator: str | None, *, timeout_s: float = 10.0) -> RemoteFleet:
    """The fleet at ``url`` (its dashboard), its descriptor verified as signed by ``operator``.

    ``operator`` None takes the DID the fleet names (trust on first use: the caller pins it); BridgeError
    (``fleet_unreachable``, ``fleet_malformed``, ``operator_mismatch``, ``descriptor_refused``,
    ``descriptor_mismatch``, ``roads_malformed``) otherwise.
    """
    base = url.rstrip("/")
    served = _get_json(base + FLEET_PATH, timeout_s)
    if not isinstance(served, dict) or not isinstance(served.get("envelope"), str) \
            or not isinstance(served.get("descriptor", {}), dict):
        raise BridgeError("fleet_malformed", f"{base}{FLEET_PATH} is not {{descriptor, envelope, operator}}",
                          "is this a DePAI fleet's dashboard address?")
    named = served.get("operator")
    if operator is None:
        if not isinstance(named, str):
            raise BridgeError("fleet_malformed", f"{base}{FLEET_PATH} names no operator",
                              "pass the operator's DID with --operator")
        operator = named
    elif named is not None and named != operator:
        raise BridgeError("operator_mismatch", f"the fleet at {base} says its operator is {named}, not {operator}",
                          "check the address, or the operator DID you were given")
    signed = _verified_body(served["envelope"], resolver, operator)
    plain = served.get("descriptor") or {}
    differ = sorted(k for k in set(signed) & set(plain) if signed[k] != plain[k])
    if differ:
        raise BridgeError("descriptor_mismatch", f"the fleet's descriptor differs from what its operator signed in "
                                                 f"{', '.join(differ)}", "the fleet (or the network) is not honest")
    descriptor = {**plain, **signed}
    for name in ("market", "map", "dispatcher"):
        if not isinstance(signed.get(name), str):
            raise BridgeError("fleet_malformed", f"the operator's descriptor names no {name} DID",
                              "the fleet is older than this bridge, or misconfigured")
    commanders = signed.get("commanders") or [signed["dispatcher"], signed["market"]]
    broker, tls = _broker(descriptor, base)
    roads = _roads(base, descriptor, timeout_s)
    chargers = [_point(c) for c in descriptor.get("chargers") or []]
    return RemoteFleet(base, operator, descriptor, broker, tls, list(commanders), [signed["map"]], chargers, roads)


def _verified_body(text: str, resolver: HttpResolver, operator: str) -> dict[str, Any]:
    try:
        wire = base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        try:
            wire = base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise BridgeError("fleet_malformed", "the fleet's envelope is not base64", "is this a DePAI fleet?") \
                from None
    try:
        envelope = EnvelopeVerifier(resolver).verify_archived(wire)
    except EnvelopeRefused as refusal:
        raise BridgeError("descriptor_refused", f"the fleet's descriptor does not verify: {refusal}",
                          "the fleet (or the network) is not honest, or the operator's keys cannot be resolved") \
            from None
    if envelope.issuer != operator:
        raise BridgeError("operator_mismatch", f"the fleet's descriptor is signed by {envelope.issuer}, not the "
                                               f"operator {operator}", "check the operator DID you were given")
    if not isinstance(envelope.body, dict):
        raise BridgeError("fleet_malformed", "the operator's descriptor is not a JSON object", "is this a DePAI fleet?")
    return envelope.body


def _broker(descriptor: dict[str, Any], base: str) -> tuple[str, bool]:
    """The broker URL to use (TLS when there is a listener for it), its host made the fleet's when loopback."""
    url = descriptor.get("broker_tls") or descriptor.get("broker")
    if not isinstance(url, str) or "://" not in url:
        raise BridgeError("fleet_malformed", "the fleet's descriptor names no broker", "is the fleet's broker up?")
    parts = urllib.parse.urlsplit(url)
    fleet_host = urllib.parse.urlsplit(base).hostname or ""
    if (parts.hostname or "") in LOOPBACK and fleet_host not in LOOPBACK:
        netloc = f"[{fleet_host}]" if ":" in fleet_host else fleet_host
        url = parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port else netloc).geturl()
    return url, parts.scheme == "mqtts"


def _roads(base: str, descriptor: dict[str, Any], timeout_s: float) -> nx.Graph:
    where = urllib.parse.urljoin(base + "/", descriptor.get("roads_url") or ROADS_PATH.lstrip("/"))
    raw = _get(where, timeout_s)
    try:
        data = json.loads(raw)
    except ValueError:
        raise BridgeError("roads_malformed", f"{where} is not JSON", "is the fleet up?") from None
    wanted = descriptor.get("roads_sha256")
    if isinstance(wanted, str) and wanted not in (hashlib.sha256(raw).hexdigest(),
                                                  hashlib.sha256(canonicalize(data)).hexdigest()):
        raise BridgeError("roads_malformed", f"the road graph at {where} is not the one the operator signed",
                          "the fleet (or the network) is not honest")
    try:
        graph = nx.node_link_graph(data, edges="edges")
    except (KeyError, TypeError, ValueError, nx.NetworkXError) as err:
        raise BridgeError("roads_malformed", f"the road graph at {where} does not read: {err}",
                          "it is networkx node_link_data with edges='edges'") from None
    if graph.number_of_nodes() == 0 or any("pos" not in d for _, d in graph.nodes(data=True)):
        raise BridgeError("roads_malformed", f"the road graph at {where} has no nodes with a pos",
                          "is the fleet up?")
    return graph


def _point(value: Any) -> tuple[float, float]:
    if isinstance(value, dict):
        return float(value["x"]), float(value["y"])
    x, y = value
    return float(x), float(y)


def _get(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as err:
        err.close()
        raise BridgeError("fleet_unreachable", f"{url} answered {err.code}",
                          "is the fleet running, and is this its dashboard address?") from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise BridgeError("fleet_unreachable", f"cannot reach {url}: {getattr(err, 'reason', err)}",
                          "check --fleet (the address `depai up` prints as 'dashboard at') and the network") from None
    if len(body) > MAX_BYTES:
        raise BridgeError("fleet_malformed", f"{url} answered more than {MAX_BYTES} bytes", "is this a DePAI fleet?")
    return body


def _get_json(url: str, timeout_s: float) -> Any:
    raw = _get(url, timeout_s)  # its BridgeError is a ValueError too: not to be taken for bad JSON
    try:
        return json.loads(raw)
    except ValueError:
        raise BridgeError("fleet_malformed", f"{url} did not answer JSON", "is this a DePAI fleet's dashboard?") \
            from None
