"""Fixtures for the store tests: one lake per test session, a fresh room id per test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlrooms_nb.store import Lake

from .servers import Postgres, S3Server


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
