"""The fleet broker's TLS material: a CA and a server certificate made once with the ``openssl`` command, or yours.

``fleet_tls(state, hosts)`` returns the server's certificate, key and the CA file
for the broker's TLS listener. Unless you give your own (``cert``, ``key`` and
``ca``, PEM files), it makes them once into ``STATE/tls/``:

- ``ca.crt`` (public: the file a robot copies to check the broker) and ``ca.key``
  (mode 0600: it can sign a server or a robot, keep it on the fleet's machine);
- ``server.crt`` and ``server.key`` (0600), an EC P-256 key, valid for 825 days,
  whose subjectAltNames cover ``hosts`` and always localhost, 127.0.0.1 and ::1.

A later start reuses them, and issues a new server certificate from the same CA
(robots keep their CA file) when the broker's address is no longer covered or the
certificate is within 30 days of its end. ``client_cert(state, name, cn)`` issues a
robot's client certificate from the fleet's own CA (``STATE/tls/clients/``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from identity.errors import DepaiError
from launch.descriptor import public_broker

TLS_DIR = "tls"
CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers and most TLS clients accept for a server certificate at most
RENEW_S = 30 * 86_400  # a server certificate this close to its end is made again at start
OPENSSL_HINT = "install the openssl command (apt-get install openssl), or give --tls-cert, --tls-key and --tls-ca"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")


class TlsError(DepaiError):
    """TLS material that cannot be made or used."""

    code = "bad_tls"


@dataclass(frozen=True)
class TlsFiles:
    """What the broker's TLS listener serves (``certfile``, ``keyfile``) and what a robot trusts (``cafile``)."""

    certfile: Path
    keyfile: Path
    cafile: Path
    generated: bool  # made by the fleet (its CA can issue robots' client certificates)


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a listener there cannot be reached from another host)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_names(host: str) -> list[str]:
    """The names and addresses a server certificate for a listener on ``host`` must cover: ``host``, or for a
    wildcard (0.0.0.0, ::) this machine's names and addresses, among them the one the fleet descriptor names
    (``launch.descriptor.public_broker``); and always loopback."""
    if host in _WILDCARDS:
        shown = urllib.parse.urlsplit(public_broker(f"mqtt://{host if ':' not in host else f'[{host}]'}")).hostname
        names = [socket.gethostname(), socket.getfqdn(), shown or ""]
    else:
        names = [host]
    if host in _WILDCARDS:
        try:
            names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            pass
    return list(dict.fromkeys(n for n in [*names, *_LOOPBACK] if n))


def _san(names: list[str]) -> str:
    entries = []
    for name in names:
        try:
            entries.append(f"IP:{ipaddress.ip_address(name.split('%')[0])}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(dict.fromkeys(entries))


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise TlsError("the openssl command is not installed: it makes the fleet's TLS certificates",
                       code="openssl_missing", hint=OPENSSL_HINT)
    return found


def _run(args: list[str], config: str) -> None:
    """Run openssl with ``config`` as its configuration; files it makes are readable by their owner only."""
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as cnf:
        cnf.write(config)
    try:
        done = subprocess.run([_openssl(), *args, "-config" if args[0] == "req" else "-extfile", cnf.name],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                              preexec_fn=lambda: os.umask(0o077))
    finally:
        os.unlink(cnf.name)
    if done.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {done.stderr.strip()[-400:]}", code="openssl_failed",
                       hint=OPENSSL_HINT)


def _config(cn: str, extensions: str = "") -> str:
    return (f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n"
            "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
            f"subjectKeyIdentifier = hash\n[leaf]\n{extensions}")


def _issue(folder: Path, stem: str, cn: str, ca: Path, ca_key: Path, extensions: str, days: int) -> None:
    """A new EC P-256 key and a certificate for it signed by the CA: ``folder/stem.key`` (0600), ``.crt``."""
    key, csr, crt = folder / f"{stem}.key", folder / f"{stem}.csr", folder / f"{stem}.crt"
    config = _config(cn, "basicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\n"
                         f"authorityKeyIdentifier = keyid\n{extensions}")
    _run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
          str(key), "-out", str(csr)], config)
    try:
        _run(["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-set_serial",
              f"0x{secrets.token_hex(16)}", "-days", str(days), "-extensions", "leaf", "-out", str(crt)], config)
    finally:
        csr.unlink(missing_ok=True)
    os.chmod(key, 0o600)
    os.chmod(crt, 0o644)


def _expires_soon(crt: Path) -> bool:
    done = subprocess.run([_openssl(), "x509", "-checkend", str(RENEW_S), "-noout", "-in", str(crt)],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    return done.returncode != 0


def fleet_tls(state: Path, hosts: list[str], *, cert: Path | None = None, key: Path | None = None,
              ca: Path | None = None) -> TlsFiles:
    """The broker's TLS files: yours (``cert``, ``key`` and ``ca`` together), else the fleet's own in
    ``STATE/tls/``, made now if missing, the server certificate made again if it does not cover every name in
    ``hosts`` (see ``server_names``) or ends within 30 days."""
    given = [p for p in (cert, key, ca) if p is not None]
    if given:
        if len(given) != 3:
            raise TlsError("give --tls-cert, --tls-key and --tls-ca together", code="bad_tls",
                           hint="the server's certificate chain, its key, and the CA robots check it against "
                                "(PEM files); or none of them, and the fleet makes its own")
        for path in given:
            if not Path(path).expanduser().is_file():
                raise TlsError(f"no file at {path}", code="bad_tls", hint="give PEM files that exist")
        mine = [Path(p).expanduser().resolve() for p in given]
        return TlsFiles(mine[0], mine[1], mine[2], generated=False)
    folder = state / TLS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_crt, ca_key = folder / "ca.crt", folder / "ca.key"
    if not (ca_crt.exists() and ca_key.exists()):
        _run(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", str(ca_key), "-out", str(ca_crt), "-days", str(CA_DAYS), "-extensions", "ca",
              "-set_serial", f"0x{secrets.token_hex(16)}"],
             _config(f"depai fleet CA {secrets.token_hex(4)}"))
        os.chmod(ca_key, 0o600)
        os.chmod(ca_crt, 0o644)
        for stale in ("server.crt", "server.key", "server.json"):  # signed by another CA
            (folder / stale).unlink(missing_ok=True)
    names = list(dict.fromkeys([*hosts, *_LOOPBACK]))
    record = folder / "server.json"
    try:
        covered = json.loads(record.read_text())["names"]
    except (OSError, ValueError, KeyError):
        covered = []
    crt = folder / "server.crt"
    if not crt.exists() or not set(names) <= set(covered) or _expires_soon(crt):
        names = list(dict.fromkeys([*covered, *names]))  # a name covered before stays covered
        _issue(folder, "server", names[0], ca_crt, ca_key,
               f"keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
               f"subjectAltName = {_san(names)}\n", SERVER_DAYS)
        record.write_text(json.dumps({"names": names}))
    return TlsFiles(crt, folder / "server.key", ca_crt, generated=True)


def client_cert(state: Path, name: str, common_name: str) -> tuple[Path, Path] | None:
    """A client certificate (CN ``common_name``) for robot ``name`` from the fleet's own CA, made once into
    ``STATE/tls/clients/NAME.crt`` and ``.key`` (0600); None when the fleet has no CA of its own (yours signs
    your robots' certificates)."""
    folder = state / TLS_DIR
    ca_crt, ca_key = folder / "ca.crt", folder / "ca.key"
    if not (ca_crt.exists() and ca_key.exists()):
        return None
    clients = folder / "clients"
    clients.mkdir(mode=0o700, exist_ok=True)
    crt, key = clients / f"{name}.crt", clients / f"{name}.key"
    if not (crt.exists() and key.exists()):
        _issue(clients, name, common_name, ca_crt, ca_key,
               "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n", SERVER_DAYS)
    return crt, key
