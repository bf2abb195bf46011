"""The fleet's DID resolver: W3C DID Resolution results over a real registry, then over HTTP on a running fleet.

The first half calls dashboard/resolver.py on a registry whose clock the test sets, so versions have known
times: a registered DID, a rotated one (its versions, an older version by versionId and by versionTime, its
history), a deactivated one, an unknown one and invalid ones, with the status code the HTTP(S) binding gives
each. The second half reads the dashboard of a fleet started the way ``depai up`` starts it
(tests/dashboard/test_app.py's fixture): the same resolution over HTTP, a rotation followed by the HTTP client
(identity/http_resolver.py) so a signature made before it still verifies, and the signed fleet descriptor.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import fastjsonschema
import httpx
import pytest

from dashboard import resolver
from identity.envelope import EnvelopeRefused, EnvelopeSigner, EnvelopeVerifier
from identity.http_resolver import HttpResolver
from identity.keys import Signer
from identity.lifecycle import create_identity, deactivate_identity, rotate_key
from identity.registry import DidRegistry
from launch.descriptor import FleetDescriptor
from launch.identities import IdentityStore
from launch.up import RunningFleet
from tests.dashboard.test_app import api, fleet  # noqa: F401 - the running fleet and its dashboard, reused

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(tmp_path, clock: Clock) -> Iterator[DidRegistry]:
    with DidRegistry(tmp_path / "registry.sqlite3", clock=clock) as held:
        yield held


def rotated(registry: DidRegistry, clock: Clock) -> tuple[str, Signer, Signer]:
    """A DID registered at T0 + 0.25 s and rotated to key-2 at T0 + 10.5 s."""
    first, second = Signer.generate(), Signer.generate()
    clock.now = T0 + 0.25
    did = create_identity(registry, first).did
    clock.now = T0 + 10.5
    rotate_key(registry, did, second.public_key, first, f"{did}#key-1")
    return did, first, second


def test_a_registered_did_resolves_to_its_document_and_metadata(registry: DidRegistry, clock: Clock) -> None:
    did = create_identity(registry, Signer.generate()).did
    answer = resolver.resolve(registry, did)
    assert answer.status == 200 and answer.content_type == "application/did-resolution"
    assert answer.body == {
        "@context": "https://w3id.org/did-resolution/v1", "didDocument": registry.active(did).document,
        "didResolutionMetadata": {"contentType": "application/did+ld+json"},
        "didDocumentMetadata": {"created": "2026-05-28T20:26:40Z", "versionId": "1",
                                "versionTime": "2026-05-28T20:26:40Z", "deactivated": False}}  # never updated


def test_a_rotated_did_has_versions_an_old_one_resolves_and_the_history_keeps_both(registry: DidRegistry,
                                                                                  clock: Clock) -> None:
    did, first, second = rotated(registry, clock)
    now = resolver.resolve(registry, did).body
    assert now["didDocument"]["verificationMethod"][0]["id"] == f"{did}#key-2"
    assert now["didDocumentMetadata"] == {"created": "2026-05-28T20:26:40Z", "versionId": "2",
                                          "versionTime": "2026-05-28T20:26:50Z", "updated": "2026-05-28T20:26:50Z",
                                          "deactivated": False}
    old = resolver.resolve(registry, did, [("versionId", "1")])
    assert old.status == 200 and old.body["didDocument"]["verificationMethod"][0]["id"] == f"{did}#key-1"
    assert old.body["didDocumentMetadata"] == {"created": "2026-05-28T20:26:40Z", "versionId": "1",
                                               "versionTime": "2026-05-28T20:26:40Z", "deactivated": False,
                                               "nextVersionId": "2", "nextUpdate": "2026-05-28T20:26:50Z"}
    # versionTime: the newest version not after it, at its precision; a versionTime from an answer gives its version
    for when, version in (("2026-05-28T20:26:40Z", "1"), ("2026-05-28T20:26:50.499Z", "1"),
                          ("2026-05-28T20:26:50Z", "2"), ("2026-05-28T22:26:50+02:00", "2"),
                          ("2030-01-01T00:00:00Z", "2")):
        metadata = resolver.resolve(registry, did, [("versionTime", when)]).body["didDocumentMetadata"]
        assert metadata["versionId"] == version, when
    early = resolver.resolve(registry, did, [("versionTime", "2026-05-28T20:26:39Z")])
    assert early.status == 404 and early.body["didResolutionMetadata"]["error"]["type"].endswith("#NOT_FOUND")
    assert resolver.resolve(registry, did, [("versionId", "3")]).status == 404

    history = resolver.history(registry, did)
    assert history.status == 200
    assert [(v["versionId"], v["versionTime"], v["deactivated"]) for v in history.body["versions"]] == [
        ("1", "2026-05-28T20:26:40.250Z", False), ("2", "2026-05-28T20:26:50.500Z", False)]  # to the millisecond
    assert history.body["did"] == did and [v["didDocument"] for v in history.body["versions"]] == [
        v.document for v in registry.history(did)]


def test_a_deactivated_did_answers_410_without_a_document_and_its_history_keeps_the_statement(
        registry: DidRegistry, clock: Clock) -> None:
    did, _, second = rotated(registry, clock)
    clock.now = T0 + 20
    deactivate_identity(registry, did, second, f"{did}#key-2")
    gone = resolver.resolve(registry, did)
    assert gone.status == 410 and gone.body["didDocument"] is None
    assert gone.body["didDocumentMetadata"]["deactivated"] is True
    assert gone.body["didDocumentMetadata"]["versionId"] == "3"
    before = resolver.resolve(registry, did, [("versionId", "2")])  # what it was before: verifiable, and not the end
    assert before.status == 200 and before.body["didDocumentMetadata"]["nextVersionId"] == "3"
    last = resolver.history(registry, did).body["versions"][-1]
    assert last["deactivated"] is True and last["didDocument"]["deactivated"] is True and "proof" in last["didDocument"]


@pytest.mark.parametrize(("did", "status", "error"), [
    ("did:peaq:5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", 404, "NOT_FOUND"),  # well formed, never registered
    ("did:peaq:not-an-address", 400, "INVALID_DID"),
    ("robot-7", 400, "INVALID_DID"),
    ("did:web:example.com", 501, "METHOD_NOT_SUPPORTED"),
])
def test_what_cannot_be_resolved_says_why_with_the_bindings_status(registry: DidRegistry, did: str, status: int,
                                                                   error: str) -> None:
    answer = resolver.resolve(registry, did)
    assert answer.status == status
    assert answer.body["didDocument"] is None and answer.body["didDocumentMetadata"] == {}
    assert answer.body["didResolutionMetadata"]["error"]["type"] == f"https://www.w3.org/ns/did#{error}"
    assert resolver.history(registry, did).status == status


def test_options_and_representations(registry: DidRegistry) -> None:
    did = create_identity(registry, Signer.generate()).did
    for options, status in (([("versionId", "1"), ("versionTime", "2026-05-28T20:26:40Z")], 400),
                            ([("versionTime", "yesterday")], 400), ([("versionId", "1"), ("versionId", "1")], 400),
                            ([("service", "files")], 501), ([("expandRelativeUrls", "true")], 200)):
        assert resolver.resolve(registry, did, options).status == status, options
    document = resolver.resolve(registry, did, accept="application/did+ld+json")
    assert document.content_type == "application/did+ld+json" and document.body == registry.active(did).document
    legacy = resolver.resolve(registry, did, accept='application/ld+json;profile="https://w3id.org/did-resolution"')
    assert legacy.content_type.startswith("application/ld+json") and "didDocumentMetadata" in legacy.body
    assert resolver.resolve(registry, did, accept="text/html").status == 406
    assert resolver.resolve(registry, did, accept="text/html, application/did-resolution;q=0.5").status == 200


# --- over HTTP, on a running fleet --------------------------------------------------------------------------------

def test_the_fleet_resolves_its_dids_over_http_and_a_client_follows_a_rotation(fleet: RunningFleet,
                                                                              api: httpx.Client) -> None:
    market = api.get("/api/fleet").json()["descriptor"]["market"]
    answer = api.get(f"/1.0/identifiers/{market}", headers={"Accept": "application/did-resolution"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/did-resolution"
    assert answer.json()["didDocument"]["id"] == market
    assert api.get("/1.0/identifiers/did:peaq:nobody").status_code == 400
    assert api.get("/1.0/identifiers/did%3Apeaq%3A5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").status_code == 404

    first, second = Signer.generate(), Signer.generate()
    with DidRegistry(fleet.state / "registry.sqlite3") as registry:  # another process's connection, as in the fleet
        did = create_identity(registry, first).did
        signed_before = EnvelopeSigner(first, did, "key-1").seal("telemetry.note", {"n": 1})
        time.sleep(0.01)
        rotate_key(registry, did, second.public_key, first, f"{did}#key-1")
    time.sleep(0.01)
    signed_after_by_old = EnvelopeSigner(first, did, "key-1").seal("telemetry.note", {"n": 2})
    old = api.get(f"/1.0/identifiers/{did}", params={"versionId": "1"}).json()
    assert old["didDocumentMetadata"]["nextVersionId"] == "2"
    assert len(api.get(f"/1.0/identifiers/{did}/history").json()["versions"]) == 2

    keys = HttpResolver(str(api.base_url))  # a verifier on another machine: only the resolver's answers
    verifier = EnvelopeVerifier(keys)
    assert verifier.verify_archived(signed_before).issuer == did  # made before the rotation: still good
    with pytest.raises(EnvelopeRefused):
        verifier.verify_archived(signed_after_by_old)  # the retired key after its window: refused
    assert keys.active(did).key_id == "key-2"


def test_the_fleet_descriptor_is_signed_by_the_operator_and_names_every_role(fleet: RunningFleet,
                                                                             api: httpx.Client) -> None:
    served = api.get("/api/fleet").json()
    with DidRegistry(fleet.state / "registry.sqlite3") as registry:
        store = IdentityStore(fleet.state / "identities.json", registry)
        names = {role: store.enroll(role).did for role in ("operator", "market", "map", "dispatcher", "dao")}
        envelope = EnvelopeVerifier(registry).verify_archived(base64.b64decode(served["envelope"]),
                                                              kinds=("fleet.descriptor",))
    assert served["operator"] == envelope.issuer == names["operator"]  # signed by the operator's key
    assert envelope.body == served["descriptor"]  # what is served is what was signed
    d = served["descriptor"]
    FleetDescriptor.from_body(d)  # exactly the descriptor's fields, of the right types
    assert {role: d[role] for role in names} == names
    assert d["commanders"] == [names["dispatcher"], names["market"]]
    assert d["ledger"] == api.get("/api/ledger/checkpoint").json()["ledger_did"]
    assert d["broker"] is None and d["broker_tls"] is None  # this fleet runs in one process, without a broker
    assert d["chargers"] == [[x, y] for x, y in fleet.fleet.chargers] and d["chargers"]
    assert (d["run"], d["city"], d["seed"]) == (fleet.run_no, 2, 3)
    roads = api.get(d["roads_url"])
    assert roads.headers["content-type"] == "application/json"
    assert hashlib.sha256(roads.content).hexdigest() == d["roads_sha256"]
    graph = roads.json()
    fastjsonschema.compile(d["roads_schema"])(graph)
    assert {node["id"] for node in graph["nodes"]} == set(fleet.fleet.city.road_graph().nodes)
