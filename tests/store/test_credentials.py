"""Credentials for the catalog and the bucket never enter the document, the lake's rows, the
logs, error messages (also when the catalog or the bucket is unreachable), reprs, or messages
sent to views."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from loro import ExportMode

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import StorageError
from sqlrooms_nb.store import FlushPolicy
from sqlrooms_nb.store.config import parse_lake

from ..fakes import FakeView
from .servers import HOST, S3_KEY_ID, S3_SECRET, Postgres, S3Server, free_port

TABLES = ["updates", "changes", "snapshots", "runs", "branches", "tags", "lake_meta"]


def secrets(postgres: Postgres) -> list[str]:
    return [postgres.password, S3_SECRET, S3_KEY_ID]


def leaks(found: Any, postgres: Postgres) -> list[str]:
    """Which secrets occur in ``found`` (text, bytes, or nested lists/dicts/tuples of them)."""
    hits = set()
    stack = [found]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            data = bytes(item)
            hits |= {s for s in secrets(postgres) if s.encode() in data}
        elif item is not None:
            text = str(item)
            hits |= {s for s in secrets(postgres) if s in text}
    return sorted(hits)


def lake_cells(room: snb.SqlRoom) -> list[Any]:
    """Every value of every column of every table of the room's lake (text and blobs)."""
    out: list[Any] = []
    cur = room._lake.cursor()
    try:
        for name in TABLES:
            table: pa.Table = cur.execute(
                f"SELECT * FROM {room._lake.table(name)}"
            ).to_arrow_table()
            assert table.num_rows > 0 or name in ("tags", "branches", "runs"), name
            for column in table.columns:
                out.extend(column.to_pylist())
    finally:
        cur.close()
    return out


def test_no_credential_reaches_document_rows_logs_reprs_or_views(
    shared: str, postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    with snb.SqlRoom("cred-room", lake=shared, author="ana") as room:
        room.connect(lambda content, buffers: sent.append((content, buffers)))
        a, b = FakeView(room, "a"), FakeView(room, "b")
        for v in (a, b):
            v.hello()
            v.pump()
        cid = room.add_cell("select 42 as answer", name="answer")
        a.pump()
        a.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(0, "-- a\n"))
        a.set_presence({"name": "ana"})
        room.run(cid)
        room.tag("v1")
        room.branch("what-if")
        a.send({"kind": "history", "id": "h"})
        a.wait_for("history", "h")
        a.send({"kind": "page", "id": "p", "cell": cid, "offset": 0, "limit": 10})
        a.wait_for("page", "p")
        a.send({"kind": "preview", "id": "bad", "version": "nope"})  # an error reply
        a.wait_for("error", "bad")
        a.send({"kind": "teleport"})
        room.flush()
        for v in (a, b):
            v.pump()
        texts = [repr(room), str(room), repr(room._lake), str(room._lake.location)]
        config = parse_lake(shared)
        texts += [repr(config), str(config), config.describe(), config.identity]
        doc = room.doc.export(ExportMode.Snapshot())
        rows = lake_cells(room)
    assert leaks(doc, postgres) == []
    assert leaks(rows, postgres) == []
    assert leaks(texts, postgres) == [], texts
    assert leaks(sent, postgres) == []  # every message to views, JSON and buffers
    assert leaks(caplog.text, postgres) == []
    assert len(rows) > 20 and len(sent) > 10  # the scans saw real data


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_an_unreachable_catalog_error_holds_no_credential(
    postgres: Postgres, credentials: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    lake = f"postgresql://{postgres.user}@{HOST}:{port}/x?data={tmp_path}/data"
    with pytest.raises(StorageError) as info:
        snb.SqlRoom("cred-room", lake=lake)
    assert str(port) in str(info.value)  # the message says where, not with what
    assert leaks(_error_text(info.value), postgres) == []
    assert leaks(caplog.text, postgres) == []


def test_an_unreachable_bucket_error_holds_no_credential(
    postgres: Postgres,
    s3_server: S3Server,
    prefix: str,
    credentials: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The catalog answers, the bucket's endpoint does not: writes fail with an error that
    reaches the views and the logs, and none of them holds a key or a password."""
    caplog.set_level(logging.DEBUG)
    dbname = prefix.replace("-", "_")
    postgres.psql(f"CREATE DATABASE {dbname}", dbname="postgres")
    dead = f"{HOST}:{free_port()}"
    lake = (
        f"postgresql://{postgres.user}@{HOST}:{postgres.port}/{dbname}"
        f"?data=s3://{s3_server.bucket}/{prefix}&s3_endpoint={dead}"
        "&s3_url_style=path&s3_use_ssl=false&s3_region=us-east-1"
    )
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    errors: list[BaseException] = []
    try:
        room = snb.SqlRoom("cred-room", lake=lake, flush_policy=FlushPolicy(max_delay_s=0.05))
    except StorageError as exc:  # refused at open: the error itself must be clean
        errors.append(exc)
    else:
        room.connect(lambda content, buffers: sent.append((content, buffers)))
        room.add_cell("select 1 as x", name="one")
        try:  # small batches are inlined in the catalog: the first write to the bucket is the
            room.flush(timeout=30)  # snapshot on close
            room.close(timeout=20)
        except StorageError as exc:
            errors.append(exc)
    storage_errors = [c for c, _ in sent if c["kind"] == "error" and c["code"] == "storage"]
    assert errors and storage_errors  # the failure did surface, to Python and to the views
    assert "Could not connect" in caplog.text
    assert leaks([_error_text(e) for e in errors], postgres) == []
    assert leaks(sent, postgres) == []
    assert leaks(caplog.text, postgres) == []
