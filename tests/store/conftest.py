"""Fixtures for the store tests: one lake per test session, a fresh room id per test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlrooms_nb.store import Lake

from .servers import HOST, S3_KEY_ID, S3_SECRET, Postgres, S3Server


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A lake shared by the session's tests (creating one costs ~1 s); tests use own rooms."""
    opened = Lake.open(tmp_path_factory.mktemp("lake"))
    yield opened
    opened.release()


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room id unique to the test (its name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:128]


@pytest.fixture
def fresh_lake_dir(tmp_path: Path) -> Path:
    """A folder for a lake of the test's own (not opened)."""
    return tmp_path / "own-lake"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of the session's own (Debian's binaries, 127.0.0.1, ~1 s)."""
    server = Postgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server with one bucket, on 127.0.0.1 (~0.2 s)."""
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def credentials(postgres: Postgres, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers' credentials in the environment only, where libpq and the lake look."""
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def prefix() -> str:
    """A data path prefix of the test's own inside the bucket."""
    return f"lake-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def shared(postgres: Postgres, s3_server: S3Server, prefix: str, credentials: None) -> str:
    """The lake URI: the session's PostgreSQL catalog, data under ``prefix`` in the bucket.

    Each test gets its own database (a DuckLake catalog has one data path)."""
    dbname = prefix.replace("-", "_")
    postgres.psql(f"CREATE DATABASE {dbname}", dbname="postgres")
    return (
        f"postgresql://{postgres.user}@{HOST}:{postgres.port}/{dbname}"
        f"?data=s3://{s3_server.bucket}/{prefix}&s3_endpoint={s3_server.endpoint}"
        "&s3_url_style=path&s3_use_ssl=false&s3_region=us-east-1"
    )
