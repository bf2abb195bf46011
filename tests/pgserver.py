"""A real, throw-away PostgreSQL server for the tests.

``start_postgres(base_dir)`` runs ``initdb`` into a fresh data directory and starts
``postgres`` on 127.0.0.1 (a free TCP port) and on a unix socket directory, with
trust authentication for the superuser ``depai``, ``fsync`` on (crash tests rely on
it) and small resource settings. It returns a running ``PostgresServer``:

- ``.url``: ``postgresql://depai@127.0.0.1:<port>/postgres``, for ``psycopg.connect``;
- ``.create_database(name=None)``: a fresh, empty database; returns its URL;
  ``.drop_database(name)`` removes one again;
- ``.stop()``: fast shutdown (what ``pg_ctl stop -m fast`` does: SIGINT), SIGKILL after
  a timeout; ``.kill()``: SIGKILL the postmaster and its children (a crash);
  ``.start()``: start again on the same data directory and port (crash recovery);
- ``.close()`` (also on leaving ``with``): stop and delete the data directory; the
  server log, ``base_dir/postgres.log``, stays.

Nothing is printed on success; failures raise ``RuntimeError`` with the log tail.

PostgreSQL refuses to run as root. As root (CI), ``initdb`` and ``postgres`` run as the
``postgres`` system user that Debian's package creates, and the data directory belongs
to it. If that user cannot reach ``base_dir`` (pytest's temp dirs are private to root)
or the socket path would be too long, the data and socket directories go into a
private directory under the system temp dir instead (owned by ``postgres``, linked
from ``base_dir/pgdata``, deleted by ``close()``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "depai"
SERVICE_USER = "postgres"
INSTALL_HINT = ("install them with: apt-get install postgresql (Debian/Ubuntu; as root, or with sudo; "
                ".ci/run does this in CI)")
_SERVER_BINARIES = ("initdb", "postgres")
_SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; leave room for "/.s.PGSQL.65535"
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "16MB",
    "max_connections": "50",
    "max_wal_size": "96MB",
    "min_wal_size": "32MB",
    "max_wal_senders": "0",
    "max_parallel_workers_per_gather": "0",
    "max_worker_processes": "4",
    "logging_collector": "off",
    "log_checkpoints": "off",
}


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def default_bin_dirs() -> list[Path]:
    """Where the server binaries may be: /usr/lib/postgresql/<version>/bin, newest first, then PATH."""
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    return dirs


def find_bin_dir(bin_dirs: Sequence[Path | str] | None = None) -> Path:
    """The first directory of ``bin_dirs`` (default: ``default_bin_dirs()``) holding initdb and postgres."""
    candidates = [Path(d) for d in bin_dirs] if bin_dirs is not None else default_bin_dirs()
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) for name in _SERVER_BINARIES):
            return bin_dir
    where = ", ".join(map(str, candidates)) if bin_dirs is not None else "/usr/lib/postgresql/*/bin or on PATH"
    raise RuntimeError(f"PostgreSQL server binaries ({', '.join(_SERVER_BINARIES)}) not found in {where}; "
                       f"{INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Account:
    """Who runs initdb and postgres: ourselves, or (as root) the postgres system user."""

    def __init__(self) -> None:
        self.uid: int | None = None
        self.gid: int | None = None
        self.groups: set[int] = set()
        if os.geteuid() != 0:
            return
        import pwd

        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, and PostgreSQL refuses to run as root; there is no '{SERVICE_USER}' system "
                f"user to run it as: apt-get install postgresql creates it (or run the tests as a normal user)"
            ) from None
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.groups = set(os.getgrouplist(SERVICE_USER, entry.pw_gid))

    @property
    def switching(self) -> bool:
        return self.uid is not None

    def popen_args(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.switching else {}

    def give(self, path: Path) -> None:
        if self.switching:
            os.chown(path, self.uid, self.gid)

    def can_reach(self, directory: Path) -> bool:
        """Whether this account may pass through ``directory`` and all its parents (by mode bits)."""
        if not self.switching:
            return True
        directory = directory.resolve()
        for path in [directory, *directory.parents]:
            info = path.stat()
            bit = stat.S_IXUSR if info.st_uid == self.uid else stat.S_IXGRP if info.st_gid in self.groups \
                else stat.S_IXOTH
            if not info.st_mode & bit:
                return False
        return True


class PostgresServer:
    """A PostgreSQL server on its own data directory; see the module docstring."""

    def __init__(self, base_dir: Path, *, bin_dirs: Sequence[Path | str] | None = None,
                 user: str = SUPERUSER, ready_timeout: float = 30.0) -> None:
        self.bin_dir = find_bin_dir(bin_dirs)
        self.account = _Account()
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.ready_timeout = ready_timeout
        self.log_path = self.base_dir / "postgres.log"
        self.port = free_port()
        self._private_dir: Path | None = None
        runtime = self.base_dir
        if (not self.account.can_reach(self.base_dir)
                or len(str(self.base_dir / "socket")) > _SOCKET_PATH_MAX):
            runtime = self._private_dir = Path(tempfile.mkdtemp(prefix="depai-pg-"))
            self.account.give(runtime)
        self.data_dir = runtime / "pgdata"
        self.socket_dir = runtime / "socket"
        if self._private_dir is not None:
            (self.base_dir / "pgdata").symlink_to(self.data_dir)
        self._proc: subprocess.Popen | None = None

    # -- life cycle -----------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        if self.account.switching:
            env.update(HOME=str(self.data_dir.parent), USER=SERVICE_USER, LOGNAME=SERVICE_USER)
        return env

    def _run(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.data_dir.parent, env=self._env(), **self.account.popen_args())
        if result.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed (exit {result.returncode}); "
                               f"log {self.log_path}:\n{self.log_tail()}")

    def initdb(self) -> None:
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700)
            self.account.give(directory)
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                   "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions", "--no-sync"])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._proc.pid if self.running else None

    def start(self) -> PostgresServer:
        """Start the server on the existing data directory (again, after stop() or kill())."""
        if self.running:
            return self
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir)]
        for name, value in _SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.data_dir.parent, env=self._env(), start_new_session=True,
                                          **self.account.popen_args())
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self._proc.returncode} while starting; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError as err:
                last_error = str(err).strip()
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"postgres did not accept connections on 127.0.0.1:{self.port} within "
                           f"{self.ready_timeout:.0f} s ({last_error}); log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT, as ``pg_ctl stop -m fast``); kill() if it takes longer than ``timeout``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and every process it started; no shutdown checkpoint."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGSTOP)  # so it forks nothing while we look for its children
        children = _children(proc.pid)
        for pid in children:
            _signal(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        # The next postmaster refuses to start while an old backend still holds the shared memory.
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Stop the server and delete its data (the log in base_dir stays)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            (self.base_dir / "pgdata").unlink(missing_ok=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- databases ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """Create a database (a fresh random name when None), empty or a copy of ``template``; its URL."""
        name = name or f"test_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} ENCODING 'UTF8'")
                         .format(sql.Identifier(name), sql.Identifier(template)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"(no log: {err})"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<PostgresServer {self.url} {state} data={self.data_dir}>"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_postgres(base_dir: Path, *, bin_dirs: Sequence[Path | str] | None = None,
                   user: str = SUPERUSER, ready_timeout: float = 30.0) -> PostgresServer:
    """initdb a fresh data directory under ``base_dir`` and start a server on it; see the module docstring."""
    server = PostgresServer(base_dir, bin_dirs=bin_dirs, user=user, ready_timeout=ready_timeout)
    try:
        server.initdb()
        for attempt in range(3):
            try:
                return server.start()
            except RuntimeError:
                # Someone else may have taken the free port between our check and the bind.
                if attempt == 2 or "could not bind" not in server.log_tail():
                    raise
                server.port = free_port()
    except BaseException:
        server.close()
        raise
    raise AssertionError("unreachable")
