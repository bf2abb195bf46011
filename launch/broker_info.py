"""The broker ``depai up`` starts for a fleet: how it is started, what ``STATE/broker.json`` says about it, and
how another command finds it while the fleet runs.

``start_fleet_broker()`` starts it with a login per role, an admin login for live
admission (Mosquitto with its dynamic-security plugin only), the enrolled robots'
logins, and optionally a TLS listener; it writes ``STATE/broker.json`` (mode 0600):

- ``url``: the plain listener, as the broker binds it (services use it with their login);
- ``logins``: role -> [username, password] (``ingest``, ``service``, ``gateway``);
- ``admin``: [username, password] of the login allowed on ``$CONTROL/dynamic-security/#``
  only, or null when the broker cannot change logins while it runs (amqtt);
- ``kind``, ``broker`` and ``broker_tls`` (the addresses other machines use), ``ca_file``
  and ``client_certs``.

``broker_addresses(state)`` is what a robot needs to know of it (for the fleet
descriptor); ``live_broker(state)`` finds the broker of a fleet that is running now
(``depai bridge enroll`` and ``revoke`` admit and remove robots through it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.broker import BrokerConfig, BrokerKind, MqttUser, TlsListener, broker_answers, start_broker
from launch.broker_tls import TlsFiles
from launch.descriptor import public_broker
from launch.serve import BROKER_FILE
FLEET_LOCK = "fleet.lock"  # held by the depai up that runs the fleet (launch.up.lock_state)
DEFAULT_BROKER_PORT = 18830  # not 1883: a system Mosquitto may have that one
ADMIN = "depai-admin"


def start_fleet_broker(stack: contextlib.ExitStack, state: Path, kind: BrokerKind, *, host: str, port: int,
                       robots: Sequence[MqttUser] = (), tls: TlsFiles | None = None, tls_port: int = 0,
                       client_certs: str = "off") -> tuple[Any, dict[str, MqttUser]]:
    """Start the fleet's broker (``stack`` stops it) with a login per role, the admin login when it can admit
    robots live, ``robots``' logins and, given ``tls``, a TLS listener on ``tls_port``; write STATE/broker.json.
    Returns the RunningBroker and the role logins."""
    logins = {role: MqttUser(name, secrets.token_urlsafe(18), role)
              for role, name in (("ingest", "ingest"), ("service", "services"), ("gateway", "simulator"))}
    admin = MqttUser(ADMIN, secrets.token_urlsafe(24), "admin") if kind == BrokerKind.MOSQUITTO else None
    listener = (TlsListener(tls.certfile, tls.keyfile, tls.cafile, port=tls_port, client_certs=client_certs)
                if tls is not None else None)
    users = [*logins.values(), *([admin] if admin else []), *robots]
    broker = stack.enter_context(start_broker(kind, BrokerConfig(host=host, port=port, data_dir=state / "broker",
                                                                 users=users, tls=listener)))
    record = {"url": broker.url, "kind": str(broker.kind),
              "logins": {role: [u.username, u.password] for role, u in logins.items()},
              "admin": [admin.username, admin.password] if admin and broker.live_admission else None,
              "broker": public_broker(broker.url),  # as the fleet descriptor names it
              "broker_tls": public_broker(broker.tls_url) if broker.tls_url else None,
              "ca_file": str(tls.cafile) if tls is not None else None,
              "client_certs": client_certs if tls is not None else None}
    path = state / BROKER_FILE
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(path.with_suffix(".tmp"), path)
    return broker, logins


def read_broker_file(state: Path) -> dict[str, Any] | None:
    """STATE/broker.json, or None when there is none (or it cannot be read)."""
    try:
        return json.loads((state / BROKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def broker_addresses(state: Path) -> dict[str, str | None]:
    """Where robots reach the broker ``depai up`` started for the fleet in ``state``: ``broker``
    (``mqtt://host:port``), ``broker_tls`` (``mqtts://host:port``, or None without a TLS listener) and
    ``ca_file`` (the CA certificate a robot checks the TLS listener against, a path on this machine, or None).
    The host is the one the broker listens on, or for a wildcard (0.0.0.0) this machine's network address.
    All None when this state's fleet has no broker of its own (``--broker URL`` or ``none``), or never ran."""
    held = read_broker_file(state) or {}
    return {"broker": held.get("broker", held.get("url")), "broker_tls": held.get("broker_tls"),
            "ca_file": held.get("ca_file")}


def fleet_running(state: Path) -> bool:
    """Whether a ``depai up`` holds the fleet in ``state`` now (it locks STATE/fleet.lock while it runs)."""
    path = state / FLEET_LOCK
    if not path.exists():
        return False
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@dataclass(frozen=True)
class LiveBroker:
    """The broker of a fleet running now: its plain listener, its kind, and the admin login (None: the broker
    cannot change logins while it runs)."""

    url: str
    kind: str
    admin: tuple[str, str] | None


def live_broker(state: Path) -> LiveBroker | str:
    """The running fleet's broker, or why there is none to talk to: ``not_running`` (no depai up holds the
    state), ``no_broker`` (it runs without a broker of its own: ``--broker none`` or a URL, or has not started
    its broker yet), or ``unreachable`` (broker.json names a broker that does not answer)."""
    if not fleet_running(state):
        return "not_running"
    held = read_broker_file(state)
    if held is None or "url" not in held:
        return "no_broker"
    if not broker_answers(held["url"]):
        return "unreachable"
    admin = held.get("admin")
    return LiveBroker(held["url"], held.get("kind", ""), (admin[0], admin[1]) if admin else None)
