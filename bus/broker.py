"""A real MQTT broker as a child process: Mosquitto when installed, else the embedded amqtt.

``start_broker()`` writes the broker's configuration into a data directory,
spawns the broker in its own process group (so a Ctrl-C meant for the parent is
not delivered twice), sends its output to ``broker.log`` there, and returns once
the port answers a real MQTT CONNECT::

    with start_broker("auto", BrokerConfig(users=[MqttUser(address, secret, "robot")])) as broker:
        print(broker.url)          # mqtt://127.0.0.1:40123

With ``users`` empty anyone may connect and use any topic (a simulation on one
host). With users, connections need a password and each user is confined by an
ACL that mirrors the topic tree (bus/topics.py):

- a ``robot`` (its username is its SS58 address, the ``{address}`` topic level)
  may publish only on its own robot channels ``depai/v1/robots/+/<address>/{birth,death,telemetry,…}``
  (never on its own ``cmd``, which only services write) and subscribe only to
  its own ``.../<address>/cmd``, ``depai/v1/market/#`` and ``depai/v1/map/#``;
- a ``service`` may publish and subscribe anywhere under ``depai/v1/#``;
- an ``admin`` may only use Mosquitto's dynamic-security control topic, through which
  ``admit_login`` and ``remove_login`` give a robot its login, or take it away and end its
  session, while the broker runs.

``BrokerConfig.tls`` (a ``TlsListener``) adds a second listener, MQTT over TLS, with the
same logins and ACL.

Signatures are still checked on ingest: the ACL only stops a machine from
speaking in another's name on the wire. The partition level stays ``+`` because
it derives from the DID, which the broker does not know.

The two brokers differ (Mosquitto is the production choice):

=========================  ==============================  ==============================
                           Mosquitto 2.0                   amqtt 0.12
=========================  ==============================  ==============================
sessions and retained      saved in data_dir every ~1-2 s  in memory only: ``restart()``
messages across restart    and on SIGTERM; a SIGKILL       keeps the port and loses the
                           loses the last ~2 s             rest
password hashes            PBKDF2-SHA512 (Mosquitto's)     Argon2 (pwdlib, amqtt's own)
ACL                        dynamic-security plugin;        TopicAccessControlListPlugin
                           acl_file if it is missing
forbidden SUBSCRIBE        SUBACK 0x80 (acl_file: granted  SUBACK 0x80
                           but delivers nothing)
shared subscriptions       ``$share/group/filter``         none: ingest splits the work
                                                           by partition filters instead
packets over               connection closed before the    connection closed before the
MAX_PACKET_BYTES           body is read (max_packet_size)  body is read (AmqttLimits)
sessions per login         not counted (2.0 has no such    at most SESSIONS_PER_LOGIN
                           setting); a pinned client id    by role (AmqttLimits)
                           (MqttUser.client_id) allows
                           one (dynamic-security only)
pinned client id           dynamic-security ``clientid``   AmqttLimits
logins added or removed    at once, on the control topic   no: at the next start
while running              (``admit_login``; removing one
                           disconnects its sessions)
TLS client certificates    required or off                 optional or off
=========================  ==============================  ==============================

A broker dies with the process that started it (see ``RunningBroker.start``), and
two never share a data directory: a lock while the owner lives, and ``broker.pid``
after it, so a start ends a broker that a killed owner left behind.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import functools
import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Literal

from bus.processes import alive, command_line, die_with_parent, start_time
from bus.frames import MAX_BATCH
from bus.topics import (
    COMMAND_CHANNEL,
    FLEET,
    FLEET_DESCRIPTOR,
    FLEET_SERVICES,
    FLEET_SPAWN,
    GATEWAYS,
    IDENTITIES,
    LEDGER_CHECKPOINT,
    PROTOCOL_ROOT,
    ROBOT_CHANNELS,
    ROBOTS,
    VERIFIED,
)
from identity.errors import DepaiError

MOSQUITTO_HINT = "install Debian's mosquitto (apt-get install mosquitto)"
_SBIN_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
# Mosquitto 2.0's own `mosquitto_passwd` default. MQTT passwords here are machine secrets (random
# tokens), not words people choose, so more stretching would add little while every CONNECT pays for it.
PBKDF2_ROUNDS = 101
_LOG = "broker.log"
_PID = "broker.pid"

# The largest PUBLISH payload either broker takes. One signed envelope is at most 64 KiB (identity/envelope.py
# refuses a larger one; the largest measured are a scan, ~600 B, and telemetry, ~400 B). The largest payloads
# are batches (bus/frames.py): a gateway's, one per partition per simulator tick, and the verified channel's,
# never larger than the message they were checked from (ingest forwards after every message). 1 MiB holds a
# tick of about a thousand robots of one partition, far more than one simulator shard runs.
MAX_MESSAGE_BYTES = MAX_BATCH  # gateways and ingest split their batches to fit it (bus.frames.pack_within)
# The same limit on a whole MQTT packet: the payload plus room for a topic (at most 64 KiB) and the headers. A
# client that sends a larger packet is disconnected before the broker reads the rest of it.
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + (64 << 10)
# At most this many open connections per login, by role, where the broker can count them (amqtt; Mosquitto 2.0
# cannot without a plugin of its own: there, pin a robot's client id, see MqttUser). A robot is one machine;
# the shared logins of gateways, services and ingest workers serve several processes each.
SESSIONS_PER_LOGIN = {"robot": 1, "gateway": 256, "service": 256, "ingest": 256, "admin": 8}
# How long a connection amqtt let in counts before amqtt says it is connected (see AmqttLimits).
_PENDING_S = 300.0
# Descriptors Mosquitto keeps for itself (its database, log and listeners) below the limit it inherits.
_SPARE_FDS = 64


class BrokerError(DepaiError):
    """A broker that cannot be chosen or started."""

    code = "broker_error"


class BrokerKind(StrEnum):
    MOSQUITTO = "mosquitto"
    AMQTT = "amqtt"


ROLES = ("robot", "gateway", "service", "ingest", "admin")
# Where Mosquitto's dynamic-security plugin takes commands (JSON) and answers them (on .../response).
DYNSEC_CONTROL = "$CONTROL/dynamic-security/v1"
CLIENT_CERTS = ("off", "optional", "required")


@dataclass(frozen=True)
class MqttUser:
    """An MQTT login: a robot (username = its SS58 address), a gateway that speaks for many machines
    on one connection (a simulator, a site bridge), a fleet service, an ingest worker (the only one
    that may write the verified channel), or the admin that changes the other logins while the broker runs
    (Mosquitto's dynamic-security control topic only, see ``dynsec_command``).

    ``client_id``, when given, is the only client id the login may connect with (Mosquitto's
    dynamic-security plugin and amqtt refuse any other). On Mosquitto, which cannot count a login's
    connections, that gives the login one session: a second CONNECT with that id takes the session over
    and closes the first connection. Give a robot its address, the client id docs/protocol.md asks robots
    to use. ``max_sessions`` caps the connections the login holds at once (default SESSIONS_PER_LOGIN for
    its role); only amqtt counts them.
    """

    username: str
    password: str
    role: Literal["robot", "gateway", "service", "ingest", "admin"]
    client_id: str | None = None
    max_sessions: int | None = None

    @property
    def session_limit(self) -> int:
        return self.max_sessions if self.max_sessions is not None else SESSIONS_PER_LOGIN[self.role]


@dataclass(frozen=True)
class TlsListener:
    """A second listener, MQTT over TLS, on the broker's host: the server's certificate chain and key (PEM), the
    CA that signs the clients' certificates, and whether clients must show one (``client_certs``):

    - ``off``: the server does not ask (Mosquitto) or never demands one (amqtt asks, and checks only what it is
      shown); a client verifies the server and logs in with its password;
    - ``optional``: a certificate shown is checked against ``cafile``, none is fine. amqtt only: Mosquitto 2.0
      either requires a certificate or does not ask for one (``require_certificate``);
    - ``required``: no connection without a certificate signed by ``cafile``; the password is checked too.
      Mosquitto only: amqtt 0.12 has no setting for it.

    ``port`` 0 picks a free one."""

    certfile: Path
    keyfile: Path
    cafile: Path
    port: int = 0
    client_certs: Literal["off", "optional", "required"] = "off"


@dataclass
class BrokerConfig:
    """Where and how to run a broker; ``port`` 0 picks a free port, ``data_dir`` None a temp dir."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    users: list[MqttUser] = field(default_factory=list)  # empty: anonymous access, no ACL
    persistence: bool = True  # Mosquitto only; amqtt never persists
    max_connections: int | None = None  # all logins together; None: what the descriptor limit leaves room for
    tls: TlsListener | None = None  # a second listener, over TLS


def check_tls_mode(kind: BrokerKind, client_certs: str) -> None:
    """Refuse a client certificate mode the broker of ``kind`` cannot run, saying what it can do instead."""
    if client_certs not in CLIENT_CERTS:
        raise BrokerError(f"unknown client certificate mode {client_certs!r}", code="bad_tls",
                          hint=f"use one of {', '.join(CLIENT_CERTS)}")
    if kind == BrokerKind.MOSQUITTO and client_certs == "optional":
        raise BrokerError("Mosquitto 2.0 cannot check a client certificate only when one is shown", code="bad_tls",
                          hint="use client certificates required (every TLS client shows one) or off (passwords "
                               "only), or the amqtt broker")
    if kind == BrokerKind.AMQTT and client_certs == "required":
        raise BrokerError("the amqtt broker cannot require client certificates", code="bad_tls",
                          hint="use Mosquitto (apt-get install mosquitto) to require them, or client certificates "
                               "optional or off")


def check_tls(kind: BrokerKind, tls: TlsListener) -> None:
    """Refuse a TLS listener the broker of ``kind`` cannot run as asked, or whose files are missing."""
    check_tls_mode(kind, tls.client_certs)
    for path in (tls.certfile, tls.keyfile, tls.cafile):
        if not Path(path).is_file():
            raise BrokerError(f"no TLS file at {path}", code="bad_tls",
                              hint="give the PEM files of the server's certificate, its key and the CA")


def max_connections(config: BrokerConfig) -> int:
    """The broker's cap on open connections (-1: none): ``config.max_connections``, else the open-file limit
    the broker inherits less what it needs for itself, so that running out of descriptors refuses a new
    connection rather than failing those already open, or the broker's own saving."""
    if config.max_connections is not None:
        return config.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return -1 if soft == resource.RLIM_INFINITY else max(_SPARE_FDS, soft - _SPARE_FDS)


def mosquitto_binary() -> str | None:
    """The Mosquitto executable: on PATH, else in the sbin directories a normal user's PATH lacks."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in _SBIN_CANDIDATES if os.path.isfile(p) and os.access(p, os.X_OK)), None)


def choose_kind(requested: str = "auto") -> tuple[BrokerKind, str]:
    """The broker to run for ``requested`` ("auto", "mosquitto" or "amqtt"), and a line saying why."""
    requested = str(requested).lower()
    binary = mosquitto_binary()
    if requested == "auto":
        if binary:
            return BrokerKind.MOSQUITTO, f"using Mosquitto ({binary})"
        return BrokerKind.AMQTT, f"using the embedded amqtt broker; {MOSQUITTO_HINT} for a faster one"
    if requested == BrokerKind.MOSQUITTO:
        if not binary:
            raise BrokerError("Mosquitto is not installed", code="mosquitto_missing",
                              hint=f"{MOSQUITTO_HINT}, or use the embedded broker with --kind amqtt")
        return BrokerKind.MOSQUITTO, f"using Mosquitto ({binary}), as asked"
    if requested == BrokerKind.AMQTT:
        return BrokerKind.AMQTT, "using the embedded amqtt broker, as asked"
    raise BrokerError(f"unknown broker kind {requested!r}", code="bad_kind", hint="use auto, mosquitto or amqtt")


# --- configuration files -------------------------------------------------------------------------

def _pbkdf2(password: str, salt: bytes | None, rounds: int) -> tuple[str, str]:
    """(base64 salt, base64 PBKDF2-SHA512 hash): how Mosquitto 2.0 stores a password, in both its formats."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, 64)
    return base64.b64encode(salt).decode(), base64.b64encode(digest).decode()


def mosquitto_password_hash(password: str, *, salt: bytes | None = None, rounds: int = PBKDF2_ROUNDS) -> str:
    """``$7$rounds$salt$hash``: a password_file line's hash, exactly as mosquitto_passwd writes it."""
    salt_b64, hash_b64 = _pbkdf2(password, salt, rounds)
    return f"$7${rounds}${salt_b64}${hash_b64}"


def _acl(user: MqttUser) -> tuple[list[str], list[str]]:
    """(topics the user may publish to, filters it may subscribe to).

    Only the ingest role writes the verified channel, so a service may act on what arrives there
    without verifying it again; services write everything else of the fleet's own.
    """
    if user.role == "admin":  # changes logins through the plugin's control topic, and hears its answers
        return [f"{DYNSEC_CONTROL}/#"], [f"{DYNSEC_CONTROL}/#"]
    if user.role == "ingest":
        return [f"{VERIFIED}/#", f"{FLEET_SERVICES}/#"], [f"{ROBOTS}/#", f"{GATEWAYS}/#", f"{FLEET}/#"]
    if user.role == "service":
        writes = [f"{PROTOCOL_ROOT}/{area}/#" for area in ("market", "map", "fleet", "ledger", "identities")]
        return [*writes, f"{ROBOTS}/+/+/{COMMAND_CHANNEL}"], [f"{PROTOCOL_ROOT}/#"]
    # A gateway may write any machine's channels (each message is still signed by that machine, and
    # ingest checks the signer against the topic) and hear every machine's commands.
    own = f"{ROBOTS}/+/+" if user.role == "gateway" else f"{ROBOTS}/+/{user.username}"
    sent = [f"{own}/{channel}" for channel in ROBOT_CHANNELS.values()]
    heard = [f"{own}/{COMMAND_CHANNEL}", f"{PROTOCOL_ROOT}/market/#", f"{PROTOCOL_ROOT}/map/#", FLEET_DESCRIPTOR,
             f"{IDENTITIES}/#", LEDGER_CHECKPOINT]  # a robot resolves DIDs and may witness the ledger
    if user.role == "gateway":
        return [*sent, f"{GATEWAYS}/#", f"{FLEET_SERVICES}/#"], [*heard, FLEET_SPAWN]
    return sent, heard


def _check_users(users: list[MqttUser]) -> None:
    for user in users:
        bad = not user.username or any(c in user.username for c in ":/+#\n\r\t ")
        bad = bad or (user.client_id is not None and (not user.client_id or any(c in user.client_id for c in "\0\n\r")))
        bad = bad or (user.max_sessions is not None and user.max_sessions < 1)
        if bad or user.role not in ROLES or "\n" in user.password:
            raise BrokerError(f"bad MQTT user {user.username!r} ({user.role})", code="bad_user",
                              hint="usernames are SS58 addresses or plain names without ':/+#' or spaces; "
                                   f"role is one of {', '.join(ROLES)}; a pinned client id is not empty; "
                                   "max_sessions is at least 1")
    names = [u.username for u in users]
    if len(set(names)) != len(names):
        raise BrokerError("an MQTT username appears twice", code="bad_user", hint="give each user once")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (it may hold password hashes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def dynsec_plugin() -> str | None:
    """Mosquitto's dynamic-security plugin (Debian ships it in the mosquitto package), if installed."""
    binary = mosquitto_binary()
    prefixes = {Path(binary).resolve().parent.parent} if binary else set()
    for prefix in sorted(prefixes | {Path("/usr"), Path("/usr/local")}):
        for pattern in ("lib/mosquitto_dynamic_security.so", "lib/*/mosquitto_dynamic_security.so",
                        "lib64/mosquitto_dynamic_security.so"):
            found = sorted(prefix.glob(pattern))
            if found:
                return str(found[0])
    return None


def dynsec_role(user: MqttUser) -> dict[str, Any]:
    """The user's dynamic-security role: its name (``{role}-{username}``, one per login) and its ACL (``_acl``)."""
    writes, reads = _acl(user)
    acls = [{"acltype": "publishClientSend", "topic": topic, "allow": True} for topic in writes]
    acls += [{"acltype": acltype, "topic": topic, "allow": True}
             for topic in reads for acltype in ("subscribePattern", "publishClientReceive")]
    if user.role in ("service", "ingest"):  # Mosquitto 2.0 checks a shared subscription with its $share/group/ prefix
        acls.append({"acltype": "subscribePattern", "topic": f"$share/+/{PROTOCOL_ROOT}/#", "allow": True})
    return {"rolename": f"{user.role}-{user.username}", "acls": acls}


def _write_dynsec(users: list[MqttUser], data_dir: Path) -> Path:
    """The dynamic-security plugin's users and roles. Unlike an acl_file, it refuses a forbidden
    SUBSCRIBE with SUBACK 0x80, so a robot learns at once that it may not listen there. The plugin saves
    what the control topic changes to the same file; every start writes it afresh from ``users``."""
    clients, roles = [], []
    for user in users:
        salt_b64, hash_b64 = _pbkdf2(user.password, None, PBKDF2_ROUNDS)
        role = dynsec_role(user)
        client = {"username": user.username, "password": hash_b64, "salt": salt_b64,
                  "iterations": PBKDF2_ROUNDS, "roles": [{"rolename": role["rolename"]}]}
        if user.client_id is not None:  # the only client id this login may connect with
            client["clientid"] = user.client_id
        clients.append(client)
        roles.append(role)
    path = data_dir / "dynamic-security.json"
    _write_private(path, json.dumps({
        "clients": clients, "roles": roles, "groups": [],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }, indent=1))
    return path


def _write_acl_file(users: list[MqttUser], data_dir: Path) -> list[str]:
    """The classic password_file + acl_file, when the plugin is missing: as safe for delivery, but a
    forbidden SUBSCRIBE is granted and then receives nothing."""
    _write_private(data_dir / "passwords", "".join(f"{u.username}:{mosquitto_password_hash(u.password)}\n"
                                                   for u in users))
    blocks = []
    for user in users:
        writes, reads = _acl(user)
        rules = [f"topic readwrite {t}" for t in writes if t in reads]
        rules += [f"topic write {t}" for t in writes if t not in reads]
        rules += [f"topic read {t}" for t in reads if t not in writes]
        blocks.append("\n".join([f"# {user.role}", f"user {user.username}", *rules]))
    _write_private(data_dir / "acl", "\n\n".join(blocks) + "\n")
    return [f"password_file {data_dir / 'passwords'}", f"acl_file {data_dir / 'acl'}"]


def _mosquitto_tls(config: BrokerConfig, tls: TlsListener, tls_port: int) -> list[str]:
    """The TLS listener: its own port on the same host, the same logins and ACL (they are global settings)."""
    return [f"listener {tls_port} {config.host}", f"certfile {tls.certfile}", f"keyfile {tls.keyfile}",
            f"cafile {tls.cafile}", f"require_certificate {'true' if tls.client_certs == 'required' else 'false'}",
            f"max_connections {max_connections(config)}"]


def _mosquitto_conf(config: BrokerConfig, data_dir: Path, port: int, tls_port: int = 0) -> str:
    lines = [
        "# Written by depai (bus/broker.py) on every start: change BrokerConfig, not this file.",
        f"listener {port} {config.host}",
        f"log_dest file {data_dir / _LOG}",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        # A slow subscriber (an ingest worker catching up) gets a deep queue before QoS>0 messages
        # are dropped: 100k envelopes of ~1 kB is ~100 MB at worst, seconds of a whole fleet's traffic.
        "max_queued_messages 100000",
        # Unacknowledged QoS>0 messages in flight per client: wide enough to keep a LAN link busy
        # (the default 20 caps a 50 ms link at 400 msg/s), narrow enough that a reconnecting
        # client is not flooded with retransmissions. 0 would mean unlimited.
        "max_inflight_messages 100",
        # Telemetry is small and latency matters more than packet count.
        "set_tcp_nodelay true",
        # Limits (see MAX_PACKET_BYTES and max_connections()): a larger packet closes its connection before
        # its body is read; connections past the cap are refused.
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"max_connections {max_connections(config)}",
        *(_mosquitto_tls(config, config.tls, tls_port) if config.tls else []),
    ]
    if os.geteuid() == 0:
        # Started as root, Mosquitto would switch to the `mosquitto` user, who cannot write our data dir.
        lines.append("user root")
    if config.persistence:
        lines += [
            "persistence true",
            f"persistence_location {data_dir}/",
            # Save the in-memory state every second (Mosquitto's integer clock makes it 1-2 s)
            # instead of every 30 minutes, so a crash or `kill -9` loses at most the last ~2 s
            # of retained messages, subscriptions and queues; SIGTERM always saves everything.
            # Saving on every change (`autosave_on_changes true`) would lose nothing, but each
            # save rewrites the whole mosquitto.db: measured here on loopback with 500 retained
            # 2 kB tiles, it cut retained QoS1 publishing from ~7000 to ~290 msg/s and QoS1
            # delivery from ~4600 to ~1150 msg/s. A timed save costs the same as no persistence.
            "autosave_interval 1",
            "autosave_on_changes false",
            # Sessions of machines gone for a week are dropped rather than queueing forever.
            "persistent_client_expiration 7d",
        ]
    else:
        lines.append("persistence false")
    if not config.users:
        lines.append("allow_anonymous true")
    elif plugin := dynsec_plugin():
        lines += ["allow_anonymous false", f"plugin {plugin}",
                  f"plugin_opt_config_file {_write_dynsec(config.users, data_dir)}"]
    else:
        lines += ["allow_anonymous false", *_write_acl_file(config.users, data_dir)]
    return "\n".join(lines) + "\n"


def _amqtt_conf(config: BrokerConfig, data_dir: Path, port: int, tls_port: int = 0) -> dict:
    host = f"[{config.host}]" if ":" in config.host else config.host
    conf: dict = {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}",
                                            "max_connections": max_connections(config)}}}
    if config.tls is not None:  # amqtt asks every TLS client for a certificate and checks one it is shown
        conf["listeners"]["tls"] = {"type": "tcp", "bind": f"{host}:{tls_port}", "ssl": True,
                                    "certfile": str(config.tls.certfile), "keyfile": str(config.tls.keyfile),
                                    "cafile": str(config.tls.cafile), "max_connections": max_connections(config)}
    # amqtt 0.12 has no setting for either limit: our plugin (AmqttLimits, below) adds them.
    plugin = f"{__name__}.AmqttLimits"
    if not config.users:
        conf["plugins"] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                           plugin: {"max_packet_bytes": MAX_PACKET_BYTES}}
        return conf
    from pwdlib.hashers.argon2 import Argon2Hasher  # amqtt's own dependency; its FileAuthPlugin reads Argon2

    hasher = Argon2Hasher()
    _write_private(data_dir / "passwords",
                   "".join(f"{u.username}:{hasher.hash(u.password)}\n" for u in config.users))
    acls = {u.username: _acl(u) for u in config.users}
    conf["plugins"] = {
        # amqtt's FileAuthPlugin, and the limits of each login (AmqttLimits)
        plugin: {"password_file": str(data_dir / "passwords"), "max_packet_bytes": MAX_PACKET_BYTES,
                 "logins": {u.username: {"client_id": u.client_id, "max_sessions": u.session_limit}
                            for u in config.users}},
        # amqtt 0.12 calls the subscribe list `acl` (and warns it is deprecated, inside the broker's log);
        # the `subscribe-acl` it suggests is not accepted by its plugin-config loader yet.
        "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
            "publish_acl": {name: writes for name, (writes, _) in acls.items()},
            "acl": {name: reads for name, (_, reads) in acls.items()},
        },
    }
    return conf


def _amqtt_limits_plugin() -> type:
    """The amqtt plugin that gives amqtt 0.12 the limits Mosquitto has settings for.

    - Packets: amqtt reads every packet whole, however long its header says it is. The plugin bounds the
      one place amqtt reads a packet's fixed header (``MQTTFixedHeader.from_stream``, for CONNECT and for
      every later packet alike): a larger remaining length raises before the body is read, and amqtt closes
      the connection (its reader loop stops on an unexpected error; a CONNECT that large is dropped).
    - Logins: it checks the password (it is amqtt's FileAuthPlugin), then refuses a CONNECT (CONNACK 5,
      "not authorized") whose client id is not the login's pinned one, or that would give the login more
      open connections than its limit, one with a client id it already has open included (amqtt does not
      reliably close the connection a new one takes over).
    """
    from amqtt.errors import AMQTTError
    from amqtt.mqtt.packet import MQTTFixedHeader
    from amqtt.plugins.authentication import FileAuthPlugin

    class PacketTooLarge(AMQTTError):
        """Raised in amqtt's packet reader, which then closes the connection."""

    def bound_packets(limit: int) -> None:
        read = MQTTFixedHeader.from_stream.__func__  # type: ignore[attr-defined]
        if hasattr(read, "depai_limit"):  # bounded already (one broker process, one plugin instance)
            read.depai_limit = limit
            return

        async def from_stream(cls: Any, reader: Any) -> Any:
            header = await read(cls, reader)
            if header is not None and header.remaining_length > from_stream.depai_limit:
                raise PacketTooLarge(f"a packet of {header.remaining_length} bytes; the limit is "
                                     f"{from_stream.depai_limit}: closing the connection")
            return header

        from_stream.depai_limit = limit  # type: ignore[attr-defined]
        MQTTFixedHeader.from_stream = classmethod(from_stream)  # type: ignore[method-assign,assignment]

    class AmqttLimits(FileAuthPlugin):
        """amqtt's password file check (when there are logins), then the limits of the login."""

        @dataclass
        class Config:
            password_file: str | None = None  # None: anonymous access (AnonymousAuthPlugin decides)
            max_packet_bytes: int = MAX_PACKET_BYTES
            logins: dict[str, Any] = field(default_factory=dict)  # username -> {client_id, max_sessions}

        def __init__(self, context: Any) -> None:
            bound_packets(context.config.max_packet_bytes)
            if context.config.password_file is None:
                super(FileAuthPlugin, self).__init__(context)  # no password file to read
            else:
                super().__init__(context)
            # Each login's open connections, by client id, counted from amqtt's connected and disconnected
            # events. amqtt's session states cannot be counted: it leaves a refused CONNECT's session
            # "connected", and a taken-over one "disconnected" while its new connection runs.
            self._open: dict[str, Counter[str]] = {}
            # Connections let in whose connected event has not come yet, by login: (client id, when). CONNECTs
            # arriving together would otherwise all see room. The event comes once the CONNACK is sent, which
            # can be many seconds later under a flood of CONNECTs (each password check holds amqtt's one
            # thread for ~0.3 s); one that never comes (the CONNACK failed) stops counting after _PENDING_S.
            self._pending: dict[str, list[tuple[str, float]]] = {}

        async def authenticate(self, *, session: Any) -> bool | None:
            if self.config.password_file is None:
                return None  # anonymous access: nobody to count
            if not await super().authenticate(session=session):
                return False  # a wrong password takes no place
            login = self.config.logins.get(session.username or "")
            if login is None:
                return False
            client_id, name, log = session.client_id, session.username, self.context.logger
            if login.get("client_id") is not None and client_id != login["client_id"]:
                log.warning(f"{name} may connect only as client id {login['client_id']!r}, not {client_id!r}")
                return False
            # Every open connection counts, one with the same client id too: amqtt does not reliably close
            # the connection a new one takes over (a clean session's never), so a login at its limit waits
            # until its old connection has gone (at most 1.5 keep-alives after its client went quiet).
            now = time.monotonic()
            pending = [(cid, t) for cid, t in self._pending.get(name, []) if now - t < _PENDING_S]
            held = sum(self._open.get(name, Counter()).values()) + len(pending)
            if held >= login.get("max_sessions", 1):
                log.warning(f"{name} already holds {held} connections, its limit: refusing {client_id!r}")
                return False
            self._pending[name] = [*pending, (client_id, now)]
            return True

        def _closed(self, name: str, client_id: str) -> None:
            opened = self._open.get(name)
            if opened is not None and opened[client_id] > 0:
                opened[client_id] -= 1

        async def on_broker_client_connected(self, *, client_id: str, client_session: Any) -> None:
            name = client_session.username or ""
            if name in self.config.logins:
                pending = self._pending.get(name, [])
                mine = next((entry for entry in pending if entry[0] == client_id), None)
                if mine is not None:
                    pending.remove(mine)
                self._open.setdefault(name, Counter())[client_id] += 1

        async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
            self._closed(client_session.username or "", client_id)

        async def on_broker_message_received(self, *, client_id: str, message: Any) -> None:
            # amqtt stops serving a client that publishes to a topic MQTT forbids, without a disconnected event
            topic = getattr(message, "topic", None)
            if message is not None and (not topic or "#" in topic or "+" in topic or topic.startswith("$")):
                session = self.context.get_session(client_id)
                self._closed(getattr(session, "username", None) or "", client_id)

    return AmqttLimits


def __getattr__(name: str) -> Any:
    """``AmqttLimits`` is built on first use (by the amqtt broker process), so importing this module does not
    import amqtt."""
    if name == "AmqttLimits":
        plugin = _amqtt_limits_plugin()
        globals()[name] = plugin
        return plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- changing logins while the broker runs ---------------------------------------------------------

def dynsec_command(url: str, admin: tuple[str, str], commands: list[dict[str, Any]], *,
                   timeout: float = 10.0) -> list[dict[str, Any]]:
    """Send ``commands`` to Mosquitto's dynamic-security plugin on its control topic as the ``admin`` login
    (username, password) and wait for its answers; they come back in order, each with ``error`` when it failed.

    ``url`` is the broker's plain listener (``mqtt://host:port``; the admin login lives on the fleet's own
    machine). The plugin applies each command at once and saves its configuration file; a deleted or disabled
    client is disconnected. A BrokerError says when the broker cannot be reached, refuses the login, or does
    not answer within ``timeout`` seconds."""
    import paho.mqtt.client as mqtt  # only the commands that change logins need paho here
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = _host_port(url)
    token = secrets.token_hex(6)
    tagged = [{**command, "correlationData": f"{token}-{i}"} for i, command in enumerate(commands)]
    answers: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}
    changed = threading.Condition()

    def note(key: str, value: Any) -> None:
        with changed:
            state[key] = value
            changed.notify_all()

    def received(_client: Any, _userdata: Any, message: Any) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with changed:
            for response in responses:
                if str(response.get("correlationData", "")).startswith(f"{token}-"):
                    answers[response["correlationData"]] = response
            changed.notify_all()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"depai-admin-{token}")
    client.username_pw_set(*admin)
    client.on_connect = lambda _c, _u, _f, reason, _p: note("connack", reason)
    client.on_subscribe = lambda _c, _u, _mid, reasons, _p: note("suback", reasons[0])
    client.on_message = received
    deadline = time.monotonic() + timeout

    def wait(key: str, what: str) -> Any:
        with changed:
            if not changed.wait_for(lambda: key in state, max(0.0, deadline - time.monotonic())):
                raise BrokerError(f"the broker at {url} did not {what} within {timeout:g} s", code="broker_timeout",
                                  hint=f"check that the fleet's broker runs; its log is broker.log in its data dir")
            return state[key]

    try:
        client.connect(host, port, keepalive=30)
    except OSError as err:
        raise BrokerError(f"cannot reach the broker at {url}: {err.strerror or err}", code="broker_unreachable",
                          hint="start the fleet (depai up), or check its address in STATE/broker.json") from None
    client.loop_start()
    try:
        reason = wait("connack", "answer the admin login")
        if reason.is_failure:
            raise BrokerError(f"the broker at {url} refused the admin login: {reason}", code="admin_refused",
                              hint="the admin login in STATE/broker.json is the running fleet's only: restart "
                                   "depai up if the file was changed")
        client.subscribe(f"{DYNSEC_CONTROL}/response", qos=1)
        if wait("suback", "grant the admin its answers").is_failure:
            raise BrokerError(f"the broker at {url} does not let the admin hear the dynamic-security answers",
                              code="admin_refused", hint="the broker needs Mosquitto's dynamic-security plugin")
        client.publish(DYNSEC_CONTROL, json.dumps({"commands": tagged}), qos=1)
        with changed:
            if not changed.wait_for(lambda: len(answers) == len(tagged), max(0.0, deadline - time.monotonic())):
                raise BrokerError(f"the broker at {url} did not answer {len(tagged) - len(answers)} of "
                                  f"{len(tagged)} dynamic-security commands within {timeout:g} s",
                                  code="broker_timeout", hint="is its dynamic-security plugin loaded? see broker.log")
        return [answers[command["correlationData"]] for command in tagged]
    finally:
        client.disconnect()
        client.loop_stop()


def admit_login(url: str, admin: tuple[str, str], user: MqttUser, *, timeout: float = 10.0) -> None:
    """Give ``user`` its login and role (``dynsec_role``) on the running broker at ``url``, at once."""
    _check_users([user])
    role = dynsec_role(user)
    client: dict[str, Any] = {"command": "createClient", "username": user.username, "password": user.password,
                              "roles": [{"rolename": role["rolename"]}]}
    if user.client_id is not None:
        client["clientid"] = user.client_id
    made_role, made_client = dynsec_command(url, admin, [{"command": "createRole", **role}, client], timeout=timeout)
    if made_role.get("error") and "exists" not in made_role["error"]:  # a role left behind is the same role
        raise BrokerError(f"the broker refused {user.username}'s role: {made_role['error']}", code="admit_failed",
                          hint="read the broker's log (broker.log in its data dir)")
    if made_client.get("error"):
        raise BrokerError(f"the broker refused the login {user.username}: {made_client['error']}",
                          code="login_exists" if "exists" in made_client["error"] else "admit_failed",
                          hint="a login of that name is on the broker already" if "exists" in made_client["error"]
                          else "read the broker's log (broker.log in its data dir)")


def remove_login(url: str, admin: tuple[str, str], user: MqttUser, *, timeout: float = 10.0) -> bool:
    """Delete ``user``'s login and role on the running broker at ``url``; the broker disconnects every session
    of that username at once, and refuses its next CONNECT. False when the broker had no such login."""
    deleted, _ = dynsec_command(url, admin, [{"command": "deleteClient", "username": user.username},
                                             {"command": "deleteRole", "rolename": dynsec_role(user)["rolename"]}],
                                timeout=timeout)
    error = deleted.get("error")
    if error and "not found" not in error.lower():
        raise BrokerError(f"the broker did not remove the login {user.username}: {error}", code="revoke_failed",
                          hint="read the broker's log (broker.log in its data dir)")
    return not error


def _host_port(url: str) -> tuple[str, int]:
    """Where to connect for a broker ``url`` (a wildcard bind address is this host's loopback)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(parts.hostname or "", parts.hostname or "")
    return host, parts.port or 1883


def broker_answers(url: str, timeout: float = 1.0) -> bool:
    """True when the broker at ``url`` (``mqtt://host:port``) answers an MQTT CONNECT (accepted or refused)."""
    return _mqtt_answers(*_host_port(url), timeout=timeout)


# --- readiness -----------------------------------------------------------------------------------

def _mqtt_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers an MQTT 3.1.1 CONNECT with a CONNACK (accepted or refused)."""
    client_id = f"depai-probe-{secrets.token_hex(4)}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id  # clean session
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            if reply[0] == 0x20 and reply[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean goodbye
            return reply[0] == 0x20
    except OSError:
        return False


def _listens(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` takes a TCP connection (a TLS listener: its handshake is not tried)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _reap(processes: list[subprocess.Popen], temp_dir: str | None) -> None:
    """Last-resort cleanup when a RunningBroker is collected or the interpreter exits."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)


def leftover_broker(data_dir: Path) -> int | None:
    """The pid of a broker running on ``data_dir`` as its ``broker.pid`` says, or None. It counts only if the
    process is alive, started when the pid file says (not a later process that got the same pid), and runs the
    same command line, whose configuration file is in this data dir. A start ends such a broker (an earlier,
    killed owner's) before it claims its ports."""
    data_dir = Path(data_dir).expanduser().resolve()
    try:
        record = json.loads((data_dir / _PID).read_text())
        pid, argv, started = int(record["pid"]), [str(a) for a in record["argv"]], record.get("started")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: stale
    if pid == os.getpid() or not argv or Path(argv[-1]).parent != data_dir:
        return None
    running = command_line(pid)
    if running is None or " ".join(running) != " ".join(argv):
        return None
    if started is not None and start_time(pid) != started:
        return None
    return pid


class RunningBroker:
    """A broker child process. ``restart()`` reuses its port and data dir; see the module docstring
    for what survives a restart (everything saved, for Mosquitto; nothing but the port, for amqtt)."""

    def __init__(self, kind: BrokerKind, config: BrokerConfig, *, ready_timeout: float = 15) -> None:
        _check_users(config.users)
        if config.tls is not None:
            check_tls(kind, config.tls)
        self.kind, self.host, self.ready_timeout = kind, config.host, ready_timeout
        self._config = config
        temp_dir = None
        if config.data_dir is None:
            temp_dir = tempfile.mkdtemp(prefix=f"depai-{kind}-")
            self.data_dir = Path(temp_dir)
        else:
            self.data_dir = Path(config.data_dir).expanduser().resolve()
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = config.port  # 0 until the first start picks one; kept by every restart
        self.tls_port = config.tls.port if config.tls is not None else None  # likewise, for the TLS listener
        self._procs: list[subprocess.Popen] = []
        self._lock: IO[bytes] | None = None
        self._finalizer = weakref.finalize(self, _reap, self._procs, temp_dir)

    @property
    def pid(self) -> int:
        """The process id of the current (or last) broker process."""
        return self._procs[-1].pid

    @property
    def url(self) -> str:
        return f"mqtt://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    @property
    def tls_url(self) -> str | None:
        """``mqtts://host:port`` of the TLS listener, or None without one."""
        if self.tls_port is None:
            return None
        return f"mqtts://{f'[{self.host}]' if ':' in self.host else self.host}:{self.tls_port}"

    @property
    def live_admission(self) -> bool:
        """Whether logins can be added and removed while the broker runs (``dynsec_command``): Mosquitto with its
        dynamic-security plugin, and logins (an anonymous broker has nothing to admit)."""
        return self.kind == BrokerKind.MOSQUITTO and bool(self._config.users) and dynsec_plugin() is not None

    @property
    def running(self) -> bool:
        return bool(self._procs) and self._procs[-1].poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG

    def _argv(self) -> list[str]:
        if self.kind == BrokerKind.MOSQUITTO:
            binary = mosquitto_binary()
            if binary is None:
                raise BrokerError("Mosquitto is not installed", code="mosquitto_missing", hint=MOSQUITTO_HINT)
            path = self.data_dir / "mosquitto.conf"
            _write_private(path, _mosquitto_conf(self._config, self.data_dir, self.port, self.tls_port or 0))
            return [binary, "-c", str(path)]
        path = self.data_dir / "amqtt.yaml"  # JSON is YAML, and needs no YAML writer
        _write_private(path, json.dumps(_amqtt_conf(self._config, self.data_dir, self.port, self.tls_port or 0),
                                        indent=2))
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(path)]

    def _take_lock(self) -> None:
        """One broker per data dir: two Mosquittos saving to one mosquitto.db would corrupt it."""
        lock = open(self.data_dir / "broker.lock", "wb")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise BrokerError(f"another broker is using {self.data_dir}", code="data_dir_in_use",
                              hint="stop that broker, or give this one another data dir") from None
        self._lock = lock

    @property
    def pid_path(self) -> Path:
        return self.data_dir / _PID

    def start(self) -> RunningBroker:
        """Spawn the broker and wait until it answers MQTT; raises BrokerError with its log tail if not.

        The broker runs in its own session (a Ctrl-C meant for the parent reaches it once, through stop()),
        and gets SIGTERM when the thread that started it dies, however it dies (Linux's parent-death signal;
        start it from a thread that lives as long as it should). Its pid is written to ``broker.pid`` in the
        data dir: a start first ends a broker that an earlier, killed owner left running there."""
        if self.running:
            return self
        self._take_lock()
        try:
            self._end_orphan()
            self._claim_port()
            argv = self._argv()
            with open(self.log_path, "ab") as log:
                self._procs[:] = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, cwd=self.data_dir,
                                                    start_new_session=True,
                                                    preexec_fn=functools.partial(die_with_parent, os.getpid()))]
            self._write_pid(self._procs[-1].pid, argv)
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _write_pid(self, pid: int, argv: list[str]) -> None:
        record = {"pid": pid, "argv": argv, "started": start_time(pid)}
        temp = self.pid_path.with_suffix(".tmp")
        _write_private(temp, json.dumps(record) + "\n")
        os.replace(temp, self.pid_path)

    def _forget_pid(self, *, only_ours: bool = False) -> None:
        """Remove the pid file (``only_ours``: only if it names our own, ended, broker process)."""
        if only_ours:
            try:
                if not self._procs or json.loads(self.pid_path.read_text()).get("pid") != self._procs[-1].pid:
                    return
            except (OSError, ValueError, AttributeError):
                return
        self.pid_path.unlink(missing_ok=True)

    def _orphan(self) -> int | None:
        """The pid of a broker still running on this data dir from an earlier owner (who held the lock, so it
        cannot be running now), or None: see ``leftover_broker``."""
        return leftover_broker(self.data_dir)

    def _end_orphan(self, timeout: float = 10) -> None:
        """End a broker an earlier owner left running on this data dir (SIGTERM: Mosquitto saves its state;
        SIGKILL after ``timeout`` s), wait until it has gone, and remove a stale pid file."""
        pid = self._orphan()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    deadline = time.monotonic() + timeout
                    while alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.02)
            except ProcessLookupError:
                pass
            if alive(pid):
                raise BrokerError(f"a broker left running on {self.data_dir} (pid {pid}) does not exit",
                                  code="data_dir_in_use", hint=f"end process {pid}, then start again")
        self._forget_pid()

    def _claim_port(self) -> None:
        """Pick a free port if none was given (another process may take it before the broker does,
        rarely); fail fast and clearly if ours is taken (amqtt would keep running without a listener).
        Likewise for the TLS listener's port."""
        self.port = self._claim(self.port)
        if self.tls_port is not None:
            self.tls_port = self._claim(self.tls_port, avoid=self.port)

    def _claim(self, port: int, avoid: int | None = None) -> int:
        """``port`` if this host can listen there (0: a free port, never ``avoid``), else a BrokerError."""
        for _ in range(8):
            with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    if port and port == avoid:
                        raise OSError(errno.EADDRINUSE, "the broker's other listener has it")
                    sock.bind((self.host, port))
                except OSError as err:
                    message = f"cannot listen on {self.host}:{port}: {err.strerror}"
                    if err.errno == errno.EADDRINUSE:
                        raise BrokerError(message, code="port_in_use", hint=f"stop whatever uses port {port}, "
                                          "choose another port, or 0 for a free one") from None
                    raise BrokerError(message, code="bad_address", hint="listen on an address of this host: "
                                      "127.0.0.1, or 0.0.0.0 for all") from None
                if sock.getsockname()[1] != avoid:
                    return sock.getsockname()[1]
        raise BrokerError("no free port for the TLS listener", code="port_in_use", hint="give its port")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        while True:
            status = self._procs[-1].poll()
            if status is None and _mqtt_answers(probe_host, self.port) and (
                    self.tls_port is None or _listens(probe_host, self.tls_port)):
                return
            if status is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.kill()
        tail = self.log_tail(15)
        why = f"exited with status {status}" if status is not None else \
            f"did not answer MQTT within {self.ready_timeout:g} s"
        in_use = "address already in use" in tail.lower()
        raise BrokerError(
            f"the {self.kind} broker on {self.host}:{self.port} {why}; its log ends:\n{tail}",
            code="port_in_use" if in_use else "broker_start_failed",
            hint=(f"port {self.port} is taken: choose another, or 0 for a free one" if in_use
                  else f"read the whole log in {self.log_path}"),
        )

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (Mosquitto saves its state), wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        if self.running:
            proc = self._procs[-1]
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release_lock()

    def kill(self) -> None:
        """SIGKILL, as a crash would (Mosquitto keeps what it last saved). Idempotent."""
        if self.running:
            self._procs[-1].kill()
            self._procs[-1].wait()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            if not self.running:
                self._forget_pid(only_ours=True)
            self._lock.close()
            self._lock = None

    def restart(self) -> None:
        """Stop if running, then start again on the same port with the same data dir."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the broker wrote (its log and its stdout/stderr)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 200 * lines))
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RunningBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<RunningBroker {self.kind} {self.url} {state}>"


def start_broker(kind: str | BrokerKind = "auto", config: BrokerConfig | None = None, *,
                 ready_timeout: float = 15) -> RunningBroker:
    """Start a broker of ``kind`` ("auto": Mosquitto if installed, else amqtt) and wait until it answers."""
    chosen, _ = choose_kind(kind)
    return RunningBroker(chosen, config or BrokerConfig(), ready_timeout=ready_timeout).start()

