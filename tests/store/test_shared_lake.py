"""A shared lake on real servers: PostgreSQL catalog (Debian's postgresql) + S3 data (moto's
server), both started by the session fixtures on 127.0.0.1. No mocks of either."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb.errors import StorageError
from sqlrooms_nb.store import Lake
from sqlrooms_nb.store.config import LakeConfig, S3Settings, parse_lake

from .servers import HOST, S3_SECRET, Postgres, S3Server, free_port

pytestmark = pytest.mark.timeout(60)


def test_a_room_round_trips_through_postgres_and_s3(
    shared: str, postgres: Postgres, s3_server: S3Server, prefix: str
) -> None:
    config = parse_lake(shared)
    con = duckdb.connect()
    with snb.SqlRoom("shared-room", lake=config, connection=con, author="ana") as room:
        first = room.add_cell("select 1 as x", name="one")
        room.add_cell("select x + 1 as y from one", name="two")
        room.update_cell(first, source="select 41 as x")
        assert repr(room).endswith(f"lake={config.identity!r})")
        room.flush()
        # History as data works in the user's connection: the lake attached read-only there.
        changes = con.execute("SELECT count(*) FROM sqlrooms_history.changes").fetchone()
        assert changes is not None and changes[0] >= 1
    con.close()

    with snb.SqlRoom("shared-room", lake=shared) as again:  # the string: the same lake
        assert [(c.name, c.source) for c in again.cells] == [
            ("one", "select 41 as x"),
            ("two", "select x + 1 as y from one"),
        ]

    keys = s3_server.keys(prefix + "/")
    assert any(key.startswith(f"{prefix}/sqlrooms_nb/snapshots/") for key in keys), keys
    assert all(key.endswith(".parquet") for key in keys)
    dbname = prefix.replace("-", "_")
    tables = postgres.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'ducklake_%'",
        dbname=dbname,
    ).split()
    assert "ducklake_snapshot" in tables and "ducklake_metadata" in tables
    names = postgres.psql(
        "SELECT t.table_name FROM ducklake_table t JOIN ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = 'sqlrooms_nb' AND t.end_snapshot IS NULL ORDER BY 1",
        dbname=dbname,
    ).split()
    assert names == ["branches", "changes", "lake_meta", "runs", "snapshots", "tags", "updates"]


def test_no_secret_reaches_the_catalog_or_the_logs(
    shared: str, postgres: Postgres, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with snb.SqlRoom("secret-room", lake=shared, author="ana") as room:
        room.add_cell("select 1")
    dbname = prefix.replace("-", "_")
    tables = postgres.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        dbname=dbname,
    ).split()
    union = " UNION ALL ".join(f"SELECT t::text AS row FROM {name} t" for name in tables)
    found = postgres.psql(
        f"SELECT count(*) FROM ({union}) r WHERE row LIKE '%{postgres.password}%' "
        f"OR row LIKE '%{S3_SECRET}%'",
        dbname=dbname,
    )
    assert found.strip() == "0"
    assert postgres.password not in caplog.text and S3_SECRET not in caplog.text


def test_the_lake_registry_shares_one_lake_per_identity(shared: str) -> None:
    first = Lake.open(shared)
    try:
        config = parse_lake(shared)
        same = LakeConfig(
            catalog="postgres",
            dsn=config.dsn,
            data_path=config.data_path.rstrip("/"),
            s3=S3Settings(endpoint=config.s3.endpoint if config.s3 else None),
        )
        second = Lake.open(same)
        assert second is first
        second.release()
        assert first.catalog_path is None and first.data_path == config.data_path
        assert first.location == config.identity
    finally:
        first.release()


def test_a_wrong_password_is_a_storage_error_naming_the_host_not_the_password(
    postgres: Postgres, s3_server: S3Server, credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "not-the-password-5d1e")
    lake = (
        f"postgresql://{postgres.user}@{HOST}:{postgres.port}/postgres"
        f"?data=s3://{s3_server.bucket}/never&s3_endpoint={s3_server.endpoint}"
    )
    with pytest.raises(StorageError) as info:
        Lake.open(lake)
    message = str(info.value)
    assert HOST in message and "password authentication failed" in message
    assert "PGPASSWORD" in message
    assert "not-the-password-5d1e" not in message and S3_SECRET not in message


def test_an_unreachable_catalog_is_a_storage_error_naming_the_host(
    credentials: None, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StorageError, match=rf"{HOST}.*{port}") as info:
        Lake.open(f"postgres:host={HOST} port={port} dbname=x user=y?data={tmp_path}/data")
    assert "could not attach the lake catalog" in str(info.value)
    assert not (tmp_path / "data").exists()  # nothing made for a lake that never opened


def test_a_lake_on_postgres_with_a_local_data_folder(
    postgres: Postgres, credentials: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    postgres.psql("CREATE DATABASE local_data", dbname="postgres")
    data = tmp_path_factory.mktemp("pg-data")
    lake = f"postgres:{postgres.dsn.replace('dbname=lake', 'dbname=local_data')}?data={data}"
    with snb.SqlRoom("local-data", lake=lake) as room:
        room.add_cell("select 1 as x", name="one")
    with snb.SqlRoom("local-data", lake=lake) as room:
        assert [c.source for c in room.cells] == ["select 1 as x"]
    assert list(data.rglob("*.parquet"))


@pytest.fixture(autouse=True)
def _no_lake_left_open() -> Iterator[None]:
    """Every lake a test opened is released by its end (rooms close theirs)."""
    from sqlrooms_nb.store import lake as lake_module

    before = set(lake_module._registry)
    yield
    assert set(lake_module._registry) <= before
