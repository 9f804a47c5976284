"""Serverless single-user lakes (``s3://bucket/prefix``) against moto's real S3 server: the
SQLite catalog copy in the bucket, the lease object, crash recovery from the local copy, and
read-only viewers. No mocks: every request goes to the server the session fixture started."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import LeaseError, QueryError, StorageError, ValidationError
from sqlrooms_nb.store import Lake, parse_lake, recover
from sqlrooms_nb.store.config import s3_secret_sql
from sqlrooms_nb.store.extensions import connect
from sqlrooms_nb.store.serverless import (
    CATALOG_OBJECT,
    LEASE_OBJECT,
    Lease,
    acquire_lease,
    read_lease,
    release_lease,
)

from .servers import S3_KEY_ID, S3_SECRET, S3Server

pytestmark = pytest.mark.timeout(120)

SRC = str(Path(snb.__file__).resolve().parent.parent)


@pytest.fixture
def credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's keys in the environment only (where s3fs and the lake look)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def prefix() -> str:
    """A lake prefix of the test's own inside the bucket."""
    return f"serverless-{uuid.uuid4().hex[:8]}"


LakeString = Callable[..., str]


@pytest.fixture
def lake_string(s3_server: S3Server, prefix: str, credentials: None, tmp_path: Path) -> LakeString:
    """``lake_string(cache="a", **params)``: the test's lake, its local cache in
    ``tmp_path/<cache>``."""

    def make(cache: str = "cache", **params: object) -> str:
        query = {
            "s3_endpoint": s3_server.endpoint,
            "s3_url_style": "path",
            "s3_use_ssl": "false",
            "s3_region": "us-east-1",
            "cache": str(tmp_path / cache),
            **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()},
        }
        return f"s3://{s3_server.bucket}/{prefix}?" + "&".join(f"{k}={v}" for k, v in query.items())

    return make


@pytest.fixture(autouse=True)
def _no_lake_left_open() -> Iterator[None]:
    """Every lake a test opened is released by its end (rooms close theirs)."""
    from sqlrooms_nb.store import lake as lake_module

    before = set(lake_module._registry)
    yield
    assert set(lake_module._registry) <= before


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    """``python -c code args...`` with this checkout on the path and this environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def cells_of(lake: str, room: str) -> list[tuple[str, str]]:
    """(name, source) of the room's cells, read with a plain Lake (no SqlRoom)."""
    opened = Lake.open(lake)
    try:
        doc = nb.new_doc()
        recover(opened, room, "main", doc)
        return [(c.name, c.source) for c in nb.read_cells(doc)]
    finally:
        opened.release()


def catalog_head(s3_server: S3Server, prefix: str) -> dict[str, Any]:
    head: dict[str, Any] = s3_server.client().head_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/{CATALOG_OBJECT}"
    )
    return head


def put_foreign_lease(s3_server: S3Server, prefix: str, *, duration_s: float) -> None:
    """A lease of a process on another machine, written now."""
    now = dt.datetime.now(dt.timezone.utc)
    body = {
        "format": 1,
        "holder": "bob@elsewhere pid 77",
        "host": "elsewhere",
        "pid": 77,
        "boot_id": "not-this-boot",
        "token": uuid.uuid4().hex,
        "since": (now - dt.timedelta(hours=1)).isoformat(),
        "renewed": now.isoformat(),
        "expires": (now + dt.timedelta(seconds=duration_s)).isoformat(),
        "duration_s": duration_s,
    }
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/{LEASE_OBJECT}", Body=json.dumps(body).encode()
    )


# --- the lake string ---------------------------------------------------------------------------


def test_a_serverless_lake_string(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    config = parse_lake(
        "s3://bucket/team/lake?s3_endpoint=127.0.0.1:9000&s3_url_style=path&s3_use_ssl=false"
        "&upload_every=5&upload_s=2.5&lease_s=30",
        env=env,
    )
    settings = config.serverless
    assert settings is not None
    assert config.catalog == "sqlite" and config.on_s3 and not config.read_only
    assert config.data_path == "s3://bucket/team/lake/data/"
    assert settings.catalog_url == "s3://bucket/team/lake/catalog.sqlite"
    assert settings.lease_url == "s3://bucket/team/lake/lease.json"
    assert (settings.upload_every, settings.upload_s, settings.lease_s) == (5, 2.5, 30.0)
    assert config.identity == "s3://bucket/team/lake?s3_endpoint=127.0.0.1:9000"
    assert config.catalog_path is not None
    assert config.catalog_path.parent.parent == (tmp_path / "xdg/sqlrooms_nb/serverless").resolve()
    assert config.extensions == ("ducklake", "sqlite_scanner", "httpfs")
    assert "READ_ONLY" not in config.attach_sql("lake")
    # The S3 secret covers the catalog copy too, not only the data path.
    secret = s3_secret_sql(
        config, "s", env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    )
    assert secret is not None and "SCOPE 's3://bucket/team/lake/'" in secret

    viewer = parse_lake(f"s3://bucket/team/lake?readonly=true&cache={tmp_path}/c")
    assert viewer.read_only and viewer.identity == "s3://bucket/team/lake?readonly=true"
    assert viewer.attach_sql("lake").count("READ_ONLY") == 1
    assert viewer.catalog_path == tmp_path / "c" / "catalog.sqlite"
    assert parse_lake("s3://bucket").data_path == "s3://bucket/data/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://AKIAXXXX:hunter2-secret@bucket/p", "never holds S3 keys"),
        ("s3://bucket/p?aws_secret_access_key=hunter2-secret", "unknown lake parameter"),
        ("s3://bucket/p?upload_every=0", "upload_every must be at least 1"),
        ("s3://bucket/p?lease_s=soon", "lease_s must be a number"),
        ("s3://bucket/p?readonly=maybe", "readonly must be true or false"),
        ("s3:///p", "s3://bucket/prefix"),
        ("s3://bucket/../p", "s3://bucket/prefix"),
    ],
)
def test_bad_serverless_lake_strings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        parse_lake(text)
    assert "hunter2-secret" not in str(info.value)


# --- writing, closing, reopening ---------------------------------------------------------------


def test_a_room_round_trips_through_the_bucket(
    lake_string: LakeString, s3_server: S3Server, prefix: str
) -> None:
    lake = lake_string()
    with snb.SqlRoom("r", lake=lake, author="ana") as room:
        first = room.add_cell("select 1 as x", name="one")
        room.add_cell("select x + 1 as y from one", name="two")
        room.update_cell(first, source="select 41 as x")
        assert f"{prefix}/{LEASE_OBJECT}" in s3_server.keys(prefix + "/")
        lease = read_lease(lake)
        assert lease is not None and lease.holder.endswith(f"pid {os.getpid()}")
        assert not lease.expired and lease.since <= dt.datetime.now(dt.timezone.utc)

    keys = s3_server.keys(prefix + "/")
    assert f"{prefix}/{CATALOG_OBJECT}" in keys
    assert f"{prefix}/{LEASE_OBJECT}" not in keys  # given back on close
    assert any(k.startswith(f"{prefix}/data/sqlrooms_nb/snapshots/") for k in keys), keys
    assert read_lease(lake) is None

    # Another machine: a fresh cache folder downloads the bucket's copy.
    with snb.SqlRoom("r", lake=lake_string(cache="elsewhere")) as again:
        assert [(c.name, c.source) for c in again.cells] == [
            ("one", "select 41 as x"),
            ("two", "select x + 1 as y from one"),
        ]
    # And the first cache folder, now behind the bucket, is brought up to date.
    assert cells_of(lake_string(), "r") == [
        ("one", "select 41 as x"),
        ("two", "select x + 1 as y from one"),
    ]


def test_uploads_every_n_flushes_and_after_upload_s(
    lake_string: LakeString, s3_server: S3Server, prefix: str
) -> None:
    with snb.SqlRoom("r", lake=lake_string(upload_every=2, upload_s=3600)) as room:
        cell = room.add_cell("select 1", name="c")
        room.flush()
        before = int(catalog_head(s3_server, prefix)["Metadata"]["snapshot"])
        seen = [before]
        for i in range(4):
            room.update_cell(cell, source=f"select {i}")
            room.flush()
            seen.append(int(catalog_head(s3_server, prefix)["Metadata"]["snapshot"]))
        # Every second flush uploads: the bucket's snapshot id moves on every other flush.
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen

    with snb.SqlRoom("r", lake=lake_string(upload_every=1000, upload_s=0.3)) as room:
        before = catalog_head(s3_server, prefix)["ETag"]
        room.add_cell("select 2", name="d")
        room.flush()
        deadline = time.monotonic() + 10
        while catalog_head(s3_server, prefix)["ETag"] == before:
            assert time.monotonic() < deadline, "no upload within 10 s of a change"
            time.sleep(0.1)


def test_partial_state_is_uploaded_when_a_run_fails(
    lake_string: LakeString, s3_server: S3Server, prefix: str
) -> None:
    lake = lake_string(upload_every=1000, upload_s=3600)
    room = snb.SqlRoom("r", lake=lake)
    try:
        room.add_cell("select 1 as ok", name="good")
        bad = room.add_cell("select * from no_such_table", name="bad")
        with pytest.raises(QueryError):
            room.run(bad)
    finally:
        room.close()
    viewer = Lake.open(lake_string(cache="viewer", readonly=True))
    try:
        cur = viewer.cursor()
        runs = cur.execute(f"SELECT status FROM {viewer.table('runs')} WHERE room = 'r'").fetchall()
        cur.close()
    finally:
        viewer.release()
    assert runs == [("error",)]
    assert [name for name, _ in cells_of(lake_string(cache="fresh"), "r")] == ["good", "bad"]


# --- the lease ---------------------------------------------------------------------------------

SECOND_WRITER = r"""
import sys
import sqlrooms_nb as snb
from sqlrooms_nb.errors import LeaseError
try:
    room = snb.SqlRoom("r", lake=sys.argv[1])
except LeaseError as exc:
    print("LeaseError:", exc, flush=True)
    sys.exit(3)
room.close()
print("opened", flush=True)
"""


def test_a_second_writer_is_refused_with_the_lease_error(lake_string: LakeString) -> None:
    lake = lake_string()
    with snb.SqlRoom("r", lake=lake) as room:
        room.add_cell("select 1")
        other = run_python(SECOND_WRITER, lake_string(cache="second"))
        out, err = other.communicate(timeout=90)
        assert other.returncode == 3, (out, err)
        holder = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
        assert "open elsewhere since " in out and f" by {holder};" in out, out
        assert "readonly=true" in out and "expires at" in out
        assert S3_SECRET not in out + err and S3_KEY_ID not in out + err
    # Once the first writer closed, the second opens.
    again = run_python(SECOND_WRITER, lake_string(cache="second"))
    out, err = again.communicate(timeout=90)
    assert again.returncode == 0 and out.strip().endswith("opened"), (out, err)


def test_a_foreign_lease_is_refused_until_it_expires_then_taken_over(
    lake_string: LakeString, s3_server: S3Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    lake = lake_string()
    put_foreign_lease(s3_server, prefix, duration_s=600)
    with pytest.raises(LeaseError, match=r"open elsewhere since .* by bob@elsewhere pid 77;") as e:
        Lake.open(lake)
    assert e.value.code == "lease" and e.value.holder == "bob@elsewhere pid 77"
    assert e.value.expires is not None and e.value.expires > dt.datetime.now(dt.timezone.utc)
    assert isinstance(e.value, StorageError)

    put_foreign_lease(s3_server, prefix, duration_s=1)
    time.sleep(2.5)  # 1 s lease + 1 s for Last-Modified's resolution
    caplog.set_level(logging.WARNING, logger="sqlrooms_nb")
    opened = Lake.open(lake)
    try:
        lease = read_lease(lake)
        assert lease is not None and lease.holder.endswith(f"pid {os.getpid()}")
        assert "took over the lease" in caplog.text and "bob@elsewhere pid 77" in caplog.text
    finally:
        opened.release()
    assert read_lease(lake) is None


def test_two_takers_of_an_expired_lease_one_wins(
    lake_string: LakeString, s3_server: S3Server, prefix: str
) -> None:
    config = parse_lake(lake_string())
    put_foreign_lease(s3_server, prefix, duration_s=1)
    time.sleep(2.5)
    barrier = threading.Barrier(4)
    won: list[Lease] = []
    refused: list[LeaseError] = []

    def take() -> None:
        barrier.wait()
        try:
            won.append(acquire_lease(config))
        except LeaseError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(won) == 1 and len(refused) == 3, (won, refused)
    current = read_lease(config)
    assert current is not None and current.token == won[0].token
    assert release_lease(config, won[0]) and read_lease(config) is None


def test_a_writer_that_lost_its_lease_never_overwrites_the_bucket(
    lake_string: LakeString, s3_server: S3Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    lake = lake_string(upload_every=1, upload_s=3600)
    room = snb.SqlRoom("r", lake=lake)
    try:
        room.add_cell("select 1")
        room.flush()
        uploaded = catalog_head(s3_server, prefix)["ETag"]
        put_foreign_lease(s3_server, prefix, duration_s=600)  # someone took it over
        caplog.set_level(logging.WARNING, logger="sqlrooms_nb")
        room.add_cell("select 2")
        room.flush()
    finally:
        room.close()
    assert catalog_head(s3_server, prefix)["ETag"] == uploaded
    assert "lost the lease" in caplog.text
    lease = read_lease(lake)  # not deleted: it is not ours
    assert lease is not None and lease.holder == "bob@elsewhere pid 77"


# --- crashes -----------------------------------------------------------------------------------

CRASHING_WRITER = r"""
import sys, time
import sqlrooms_nb as snb
room = snb.SqlRoom("crashy", lake=sys.argv[1])
room.add_cell("select 42 as answer", name="answer")
room.add_cell("select answer + 1 as more from answer", name="more")
room.flush()
print("flushed", flush=True)
time.sleep(600)
"""


def test_a_crash_before_any_upload_is_recovered_from_the_local_copy(
    lake_string: LakeString, s3_server: S3Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    lake = lake_string(upload_every=100000, upload_s=100000)
    writer = run_python(CRASHING_WRITER, lake)
    assert writer.stdout is not None
    line = writer.stdout.readline()
    assert line.strip() == "flushed", (line, writer.stderr.read() if writer.stderr else "")
    before = catalog_head(s3_server, prefix)  # the new lake's catalog, uploaded on open
    writer.kill()  # SIGKILL: no close, no upload, the lease left behind
    writer.wait(30)
    lease = read_lease(lake)
    assert lease is not None and lease.holder.endswith(f"pid {writer.pid}") and not lease.expired
    # The bucket lacks the edits: another machine would not see them.
    assert cells_of(lake_string(cache="elsewhere", readonly=True), "crashy") == []

    # The same machine: the holder is gone, the local copy is ahead; it is used and uploaded.
    caplog.set_level(logging.WARNING, logger="sqlrooms_nb")
    expected = [
        ("answer", "select 42 as answer"),
        ("more", "select answer + 1 as more from answer"),
    ]
    with snb.SqlRoom("crashy", lake=lake) as room:
        assert [(c.name, c.source) for c in room.cells] == expected
        assert catalog_head(s3_server, prefix)["ETag"] != before["ETag"]
    assert "changes the bucket lacks" in caplog.text and "took over the lease" in caplog.text
    assert cells_of(lake_string(cache="elsewhere-2", readonly=True), "crashy") == expected


def test_local_changes_never_uploaded_are_set_aside_when_the_bucket_moved_on(
    lake_string: LakeString, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with snb.SqlRoom("r", lake=lake_string(cache="a")) as room:
        room.add_cell("select 1", name="first")
    # This machine's copy gets a change the bucket never sees (as after a crash) ...
    local = tmp_path / "a" / "catalog.sqlite"
    con = connect(extensions=("ducklake", "sqlite_scanner", "httpfs"))
    con.execute(s3_secret_sql(parse_lake(lake_string(cache="a")), "s") or "")
    con.execute(f"ATTACH 'ducklake:sqlite:{local}' AS lake")
    con.execute("INSERT INTO lake.sqlrooms_nb.tags VALUES ('r', 'main', 'lost', 'v', 'me', NULL)")
    con.close()
    # ... while another machine writes and uploads.
    with snb.SqlRoom("r", lake=lake_string(cache="b")) as room:
        room.add_cell("select 2", name="second")
    caplog.set_level(logging.WARNING, logger="sqlrooms_nb")
    assert [name for name, _ in cells_of(lake_string(cache="a"), "r")] == ["first", "second"]
    asides = list((tmp_path / "a").glob("catalog.sqlite.conflict-*"))
    assert len(asides) == 1 and "is kept as" in caplog.text


# --- read-only viewers -------------------------------------------------------------------------


def test_a_read_only_viewer_sees_the_uploaded_state_and_cannot_write(
    lake_string: LakeString, s3_server: S3Server, prefix: str, tmp_path: Path
) -> None:
    with pytest.raises(StorageError, match="nothing to view"):
        Lake.open(lake_string(cache="viewer", readonly=True))
    with snb.SqlRoom("r", lake=lake_string(upload_every=1)) as room:
        room.add_cell("select 1 as x", name="one")
        room.flush()  # uploads (upload_every=1)
        viewer_lake = lake_string(cache="viewer", readonly=True)
        viewer = Lake.open(viewer_lake)  # no lease needed while the writer holds it
        try:
            assert viewer.config.read_only and viewer.catalog_path is not None
            assert viewer.catalog_path.parent.parent == tmp_path / "viewer"
            doc = nb.new_doc()
            recover(viewer, "r", "main", doc)
            assert [c.name for c in nb.read_cells(doc)] == ["one"]
            room.add_cell("select 2 as y", name="two")
            room.flush()  # the viewer keeps its consistent copy
            cur = viewer.cursor()
            try:
                with pytest.raises(duckdb.Error, match="read-only"):
                    cur.execute(
                        f"INSERT INTO {viewer.table('tags')} VALUES ('r','main','t','v','me',NULL)"
                    )
            finally:
                cur.close()
            lease = read_lease(viewer_lake)
            assert lease is not None and lease.holder.endswith(f"pid {os.getpid()}")
        finally:
            folder = viewer.catalog_path.parent if viewer.catalog_path else None
            viewer.release()
        assert folder is not None and not folder.exists()  # the download is removed
    assert [n for n, _ in cells_of(lake_string(cache="v2", readonly=True), "r")] == ["one", "two"]


# --- no secrets anywhere -----------------------------------------------------------------------


def test_no_credentials_in_the_lease_the_catalog_or_the_errors(
    lake_string: LakeString, s3_server: S3Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lake = lake_string()
    client = s3_server.client()
    with snb.SqlRoom("r", lake=lake) as room:
        room.add_cell("select 1")
        lease = client.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/{LEASE_OBJECT}")
        lease_bytes = lease["Body"].read()
        with pytest.raises(LeaseError) as info:
            acquire_lease(parse_lake(lake_string(cache="other")))
    catalog = client.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/{CATALOG_OBJECT}")
    catalog_bytes = catalog["Body"].read()
    assert len(catalog_bytes) > 10_000
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name == "sqlrooms_nb")
    for secret in (S3_SECRET, S3_KEY_ID):
        assert secret.encode() not in lease_bytes and secret.encode() not in catalog_bytes
        assert secret not in str(info.value) and secret not in ours
        assert secret not in json.dumps(catalog["Metadata"])
    # (botocore's own DEBUG log shows the key id in request signatures; never the secret.)
    assert S3_SECRET not in caplog.text
