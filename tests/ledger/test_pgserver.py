"""The test PostgreSQL server: it runs, each test gets its own empty database, commits survive a crash."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import PostgresServer, start_postgres


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return [name for (name,) in rows]


def test_the_server_runs_a_real_postgresql_with_fsync_on(postgres_server: PostgresServer) -> None:
    assert postgres_server.running and postgres_server.url.startswith("postgresql://depai@127.0.0.1:")
    with psycopg.connect(postgres_server.url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('fsync', 'synchronous_commit', 'full_page_writes', 'max_connections')"))
        is_superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    assert int(version) >= 130000
    assert settings == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
                        "max_connections": "50"}
    assert is_superuser
    if os.geteuid() == 0:  # PostgreSQL refuses root; the helper runs it as the postgres user
        assert postgres_server.data_dir.stat().st_uid != 0


@pytest.mark.parametrize("table", ["first", "second"])
def test_each_test_gets_a_fresh_empty_database(postgres_url: str, table: str) -> None:
    assert _tables(postgres_url) == []
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f"CREATE TABLE {table} (x int)")
    assert _tables(postgres_url) == [table]


def test_databases_are_isolated(postgres_server: PostgresServer, postgres_url: str) -> None:
    other = postgres_server.create_database()
    try:
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE mine (x int)")
        assert other != postgres_url and _tables(other) == []
    finally:
        postgres_server.drop_database(other.rsplit("/", 1)[1])


def test_the_database_url_fixture_gives_each_backend(database_url: str, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.id
    assert kind in {"sqlite", "postgresql"} and database_url.startswith(f"{kind}://")


def test_a_committed_row_survives_a_crash(tmp_path: Path) -> None:
    with start_postgres(tmp_path / "pg") as server:
        url = server.create_database("durable")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
            pid = server.pid
        with psycopg.connect(url) as conn:  # left open and uncommitted when the server dies
            conn.execute("INSERT INTO t VALUES (-1)")
            server.kill()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        assert not server.running
        server.start()
        assert server.pid != pid
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
        assert "database system was interrupted" in server.log_tail(100)
    assert not server.running and not server.data_dir.exists()
    assert (tmp_path / "pg" / "postgres.log").is_file()


def test_missing_binaries_say_how_to_install_them(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(RuntimeError, match=r"not found in .*bin.*apt-get install postgresql"):
        start_postgres(tmp_path / "pg", bin_dirs=[empty])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs a system user to run PostgreSQL as")
def test_as_root_without_the_postgres_user_the_error_says_what_to_do(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.pgserver.SERVICE_USER", "depai-no-such-user")
    with pytest.raises(RuntimeError, match=r"refuses to run as root.*apt-get install postgresql"):
        start_postgres(tmp_path / "pg")
