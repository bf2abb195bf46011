"""The fleet descriptor's fields: what the operator signs is what every process reads back, and nothing else."""

from __future__ import annotations

import pytest

from identity.envelope import EnvelopeSigner, EnvelopeVerifier
from identity.registry import DidRegistry
from launch.descriptor import ROADS_SCHEMA, DescriptorError, FleetDescriptor, public_broker
from launch.fleet import register


def descriptor(**changes: object) -> FleetDescriptor:
    fields = dict(run=3, origin_fleet_s=1.78e9, origin_wall_s=1.78e9, speed=5.0, city=2, seed=3, robots=4, shards=1,
                  scan_hz=0.5, orders_per_min=1.0, currency="EUR", bond=5000, operator="did:peaq:op",
                  dao="did:peaq:dao", market="did:peaq:market", map="did:peaq:map", dispatcher="did:peaq:dispatcher",
                  ledger="did:peaq:ledger", broker="mqtt://10.0.0.5:1883", broker_tls=None,
                  chargers=((48.0, 12.5),), roads_sha256="ab" * 32)
    return FleetDescriptor(**{**fields, **changes})


def test_the_signed_body_reads_back_as_the_same_descriptor(tmp_path) -> None:
    with DidRegistry(tmp_path / "registry.sqlite3") as registry:
        operator = register(registry)
        sent = descriptor(operator=operator.did)
        envelope = EnvelopeVerifier(registry).verify_archived(sent.seal(EnvelopeSigner(operator.signer, operator.did,
                                                                                       "key-1")))
    body = envelope.body
    assert body["commanders"] == ["did:peaq:dispatcher", "did:peaq:market"]  # derived, and signed with the rest
    assert body["chargers"] == [[48, 12.5]] and body["roads_url"] == "/api/fleet/roads"
    assert body["roads_schema"] == ROADS_SCHEMA
    assert FleetDescriptor.from_body(body) == sent


@pytest.mark.parametrize("change", [
    lambda b: b.pop("broker"),  # a field missing
    lambda b: b.update(extra=1),  # a field too many
    lambda b: b.update(commanders=["did:peaq:somebody"]),  # commanders are not the dispatcher's and market's
    lambda b: b.update(chargers=[[1.0]]),
    lambda b: b.update(broker=7),
    lambda b: b.update(roads_schema="nodes and edges"),
])
def test_a_body_with_other_fields_is_refused(change) -> None:
    body = descriptor().to_body()
    change(body)
    with pytest.raises(DescriptorError):
        FleetDescriptor.from_body(body)


def test_the_broker_is_named_as_other_hosts_reach_it() -> None:
    assert public_broker("mqtt://services:secret@10.0.0.5:1883") == "mqtt://10.0.0.5:1883"  # never the login
    assert public_broker("mqtt://broker.example:1883") == "mqtt://broker.example:1883"
    for wildcard in ("mqtt://0.0.0.0:1883", "mqtt://[::]:1883"):  # a listening address is not an address to dial
        named = public_broker(wildcard)
        assert named.endswith(":1883") and "0.0.0.0" not in named and "[::]" not in named
