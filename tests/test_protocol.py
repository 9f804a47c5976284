"""The protocol codec: decoding client messages, encoding server messages, agreement with JS."""

import pathlib
import re

import pytest

from sqlrooms_nb import protocol as p
from sqlrooms_nb.errors import ProtocolError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_hello_decodes_with_its_version_buffer_copied_to_bytes():
    msg = p.decode_client({"kind": "hello", "view": "v1"}, [memoryview(b"\x00\x01")])
    assert msg == p.Hello(view=p.ViewId("v1"), version=b"\x00\x01")
    assert type(msg.version) is bytes


def test_update_keeps_every_buffer_in_order():
    msg = p.decode_client({"kind": "update", "view": "v1"}, [b"a", bytearray(b"b")])
    assert isinstance(msg, p.ClientUpdate) and msg.updates == (b"a", b"b")


def test_run_and_ping_carry_request_ids():
    assert p.decode_client({"kind": "run", "view": "v", "id": "r1", "cell": "c-1"}, []) == p.Run(
        view=p.ViewId("v"), id=p.RequestId("r1"), cell="c-1"
    )
    assert p.decode_client({"kind": "ping", "view": "v", "id": "r2"}, None) == p.Ping(
        view=p.ViewId("v"), id=p.RequestId("r2")
    )


@pytest.mark.parametrize(
    ("content", "buffers", "fragment"),
    [
        ("hello", [], "JSON object"),
        ({"kind": "explode", "view": "v"}, [], "unknown message kind"),
        ({"kind": "hello"}, [b"x"], "'view'"),
        ({"kind": "hello", "view": "../../etc"}, [b"x"], "'view'"),
        ({"kind": "hello", "view": "v"}, [], "exactly one buffer"),
        ({"kind": "update", "view": "v"}, [], "non-empty"),
        ({"kind": "update", "view": "v"}, [b""], "non-empty"),
        ({"kind": "run", "view": "v", "cell": "c"}, [], "'id'"),
        ({"kind": "run", "view": "v", "id": "r", "cell": "x'; drop"}, [], "'cell'"),
        ({"kind": "awareness", "view": "v"}, [], "exactly one non-empty buffer"),
        ({"kind": "awareness", "view": "v"}, [b"a", b"b"], "exactly one non-empty buffer"),
        ({"kind": "awareness", "view": "v"}, [b""], "exactly one non-empty buffer"),
        ({"kind": "history", "view": "v"}, [], "'id'"),
        ({"kind": "history", "view": "v", "id": "r", "offset": -1}, [], "'offset'"),
        ({"kind": "history", "view": "v", "id": "r", "offset": "3"}, [], "'offset'"),
        ({"kind": "history", "view": "v", "id": "r", "limit": 0}, [], "'limit'"),
        ({"kind": "history", "view": "v", "id": "r", "limit": 201}, [], "'limit'"),
        ({"kind": "history", "view": "v", "id": "r", "limit": True}, [], "'limit'"),
        ({"kind": "history", "view": "v", "id": "r", "limit": 2.5}, [], "'limit'"),
        ({"kind": "preview", "view": "v", "id": "r"}, [], "'version'"),
        ({"kind": "preview", "view": "v", "id": "r", "version": "a b"}, [], "'version'"),
        ({"kind": "restore", "view": "v", "id": "r", "version": 7}, [], "'version'"),
        ({"kind": "restore", "view": "v", "id": "r", "version": "x", "author": 3}, [], "'author'"),
        (
            {"kind": "restore", "view": "v", "id": "r", "version": "x", "author": "a\nb"},
            [],
            "'author'",
        ),
    ],
)
def test_malformed_client_messages_raise_protocol_errors(content, buffers, fragment):
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        p.decode_client(content, buffers)


def test_history_preview_and_restore_requests_decode_with_defaults():
    assert p.decode_client({"kind": "history", "view": "v", "id": "r"}, []) == p.HistoryRequest(
        view=p.ViewId("v"), id=p.RequestId("r"), offset=0, limit=p.HISTORY_PAGE
    )
    paged = p.decode_client(
        {"kind": "history", "view": "v", "id": "r", "offset": 50, "limit": 200}, []
    )
    assert paged == p.HistoryRequest(view=p.ViewId("v"), id=p.RequestId("r"), offset=50, limit=200)
    assert p.decode_client(
        {"kind": "preview", "view": "v", "id": "r", "version": "AQI-_x"}, []
    ) == p.PreviewRequest(view=p.ViewId("v"), id=p.RequestId("r"), version="AQI-_x")
    assert p.decode_client(
        {"kind": "restore", "view": "v", "id": "r", "version": "AQI", "author": "Ana"}, []
    ) == p.RestoreRequest(view=p.ViewId("v"), id=p.RequestId("r"), version="AQI", author="Ana")
    bare = p.decode_client({"kind": "restore", "view": "v", "id": "r", "version": "AQI"}, [])
    assert isinstance(bare, p.RestoreRequest) and bare.author == ""


def test_history_preview_and_restored_replies_are_plain_json():
    history = p.encode_server(
        p.History(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            offset=0,
            versions=(
                p.VersionInfo(
                    "AQI",
                    "2024-01-01T00:00:00+00:00",
                    "2024-01-01T00:00:00+00:00",
                    "ana",
                    "ana edited 1 cell (+3 -0 chars)",
                    ("c1",),
                    3,
                    0,
                    2,
                ),
            ),
            more=True,
            tags=(p.TagInfo("v1", "AQI"),),
            current="AQM",
        )
    )
    assert history.buffers == []
    assert history.content["versions"][0]["cells"] == ["c1"]
    assert history.content["tags"] == [{"name": "v1", "version": "AQI"}]
    assert (history.content["more"], history.content["current"]) == (True, "AQM")
    preview = p.encode_server(
        p.Preview(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            version="AQI",
            cells=(p.PreviewCell("c1", "sql", "q1", "select 1"),),
            diff=(p.PreviewDiff("c1", "q1", "changed", 0, 0, "-select 1\n+select 2"),),
        )
    )
    assert preview.content["cells"] == [
        {"id": "c1", "kind": "sql", "name": "q1", "source": "select 1"}
    ]
    assert preview.content["diff"][0]["status"] == "changed"
    restored = p.encode_server(
        p.Restored(to=p.ViewId("v"), id=p.RequestId("r"), version="AQI", current="AQQ")
    )
    assert restored.content == {
        "kind": "restored",
        "to": "v",
        "id": "r",
        "version": "AQI",
        "current": "AQQ",
    }


def test_oversized_updates_are_refused(monkeypatch):
    monkeypatch.setattr(p, "MAX_UPDATE_BYTES", 10)
    with pytest.raises(ProtocolError, match="exceed"):
        p.decode_client({"kind": "update", "view": "v"}, [b"x" * 11])


def test_awareness_decodes_its_one_buffer_and_encodes_with_its_origin():
    msg = p.decode_client({"kind": "awareness", "view": "v1"}, [memoryview(b"\x01x")])
    assert msg == p.ClientAwareness(view=p.ViewId("v1"), update=b"\x01x")
    assert type(msg.update) is bytes
    out = p.encode_server(p.ServerAwareness(origin=p.ViewId("v1"), update=b"\x01x"))
    assert out.content == {"kind": "awareness", "origin": "v1"}
    assert out.buffers == [b"\x01x"]
    snapshot = p.encode_server(p.ServerAwareness(origin=None, update=b"s"))
    assert snapshot.content == {"kind": "awareness", "origin": None}


def test_view_of_reads_the_sender_even_from_a_bad_message():
    assert p.view_of({"kind": "nope", "view": "abc"}) == "abc"
    assert p.view_of({"view": 3}) is None
    assert p.view_of([1, 2]) is None


def test_server_messages_put_binary_in_buffers_not_json():
    out = p.encode_server(
        p.Welcome(to=p.ViewId("v"), room="r", branch="main", missing=b"m", version=b"v", saved=b"s")
    )
    assert out.content == {
        "kind": "welcome",
        "to": "v",
        "room": "r",
        "branch": "main",
        "protocol": p.PROTOCOL_VERSION,
    }
    assert out.buffers == [b"m", b"v", b"s"]
    result = p.encode_server(
        p.Result(
            id=None,
            cell="c",
            name="n",
            rows=5,
            columns=(p.Column("x", "INTEGER"),),
            shown=5,
            elapsed_ms=1.5,
            arrow=b"ipc",
        )
    )
    assert result.content["columns"] == [{"name": "x", "type": "INTEGER"}]
    assert result.buffers == [b"ipc"]


def test_errors_omit_unset_fields():
    out = p.encode_server(p.Error(code="query", message="boom", cell="c", line=0, column=3))
    assert out.content == {
        "kind": "error",
        "code": "query",
        "message": "boom",
        "cell": "c",
        "line": 0,
        "column": 3,
    }


def test_every_server_message_type_encodes_to_its_kind():
    samples = [
        p.Welcome(to=p.ViewId("v"), room="r", branch="b", missing=b"", version=b"", saved=b""),
        p.ServerUpdate(origin=None, updates=(b"u",)),
        p.Saved(version=b"v"),
        p.RunStarted(id=None, cell="c", view=None),
        p.Result(id=None, cell="c", name="n", rows=0, columns=(), shown=0, elapsed_ms=0, arrow=b""),
        p.Error(code="x", message="y"),
        p.Pong(to=p.ViewId("v"), id=p.RequestId("r")),
        p.ServerAwareness(origin=None, update=b"a"),
        p.History(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            offset=0,
            versions=(),
            more=False,
            tags=(),
            current="",
        ),
        p.Preview(to=p.ViewId("v"), id=p.RequestId("r"), version="AQI", cells=(), diff=()),
        p.Restored(to=p.ViewId("v"), id=p.RequestId("r"), version="AQI", current="AQM"),
        p.Branches(branches=(), current="main"),
        p.BranchCreated(to=p.ViewId("v"), id=p.RequestId("r"), name="b"),
        p.MergePreview(
            to=p.ViewId("v"), id=p.RequestId("r"), source="b", into="main", cells=(), diff=()
        ),
        p.Merged(to=p.ViewId("v"), id=p.RequestId("r"), source="b", into="main", current="AQM"),
        p.ChartData(
            to=p.ViewId("v"), id=p.RequestId("r"), cell="c", branch="main", rows=0, arrow=b""
        ),
        p.Page(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            cell="c",
            branch="main",
            offset=0,
            rows=0,
            sort=(),
            arrow=b"",
        ),
        p.Export(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            cell="c",
            format="csv",
            filename="c.csv",
            data=b"",
        ),
        p.RunProgress(cell="c", branch="main", elapsed_ms=1.0, percent=None),
        p.Cancelled(id=None, cell="c", branch="main", elapsed_ms=1.0),
        p.Stale(branch="main", cells=("c",)),
        p.Queued(id=None, cell="c", branch="main"),
        p.Catalog(branch="main", tables=()),
        p.InputOptions(cell="c", branch="main", options=("JFK", "O'Hare")),
    ]
    assert sorted(p.encode_server(m).content["kind"] for m in samples) == sorted(p.SERVER_KINDS)


def test_run_cancel_and_run_all_requests_decode_with_defaults():
    run = p.decode_client({"kind": "run", "view": "v", "id": "r", "cell": "c"}, [])
    assert isinstance(run, p.Run) and run.cascade is True
    once = p.decode_client(
        {"kind": "run", "view": "v", "id": "r", "cell": "c", "cascade": False}, []
    )
    assert isinstance(once, p.Run) and once.cascade is False
    with pytest.raises(ProtocolError):
        p.decode_client({"kind": "run", "view": "v", "id": "r", "cell": "c", "cascade": 1}, [])
    cancel = p.decode_client(
        {"kind": "cancel", "view": "v", "id": "r", "cell": "c", "branch": "b"}, []
    )
    assert cancel == p.Cancel(view=p.ViewId("v"), id=p.RequestId("r"), cell="c", branch="b")
    assert p.decode_client({"kind": "run_all", "view": "v", "id": "r"}, []) == p.RunAll(
        view=p.ViewId("v"), id=p.RequestId("r")
    )


def test_run_status_messages_encode_as_plain_json():
    progress = p.encode_server(p.RunProgress(cell="c", branch="b", elapsed_ms=250.0, percent=12.5))
    assert progress.content == {
        "kind": "run_progress",
        "cell": "c",
        "branch": "b",
        "elapsed_ms": 250.0,
        "percent": 12.5,
    }
    stale = p.encode_server(p.Stale(branch="b", cells=("x", "y")))
    assert stale.content == {"kind": "stale", "branch": "b", "cells": ["x", "y"]}
    assert stale.buffers == []


def test_document_messages_name_their_branch_and_default_to_none():
    hello = p.decode_client({"kind": "hello", "view": "v", "branch": "what-if"}, [b""])
    assert isinstance(hello, p.Hello) and hello.branch == "what-if"
    update = p.decode_client({"kind": "update", "view": "v"}, [b"u"])
    assert isinstance(update, p.ClientUpdate) and update.branch is None
    run = p.decode_client({"kind": "run", "view": "v", "id": "r", "cell": "c", "branch": "b"}, [])
    assert isinstance(run, p.Run) and run.branch == "b"
    out = p.encode_server(p.ServerUpdate(origin=None, updates=(b"u",), branch="b"))
    assert out.content == {"kind": "update", "origin": None, "branch": "b"}
    assert p.encode_server(p.Saved(version=b"v", branch="b")).content["branch"] == "b"


def test_branch_and_merge_requests_decode_and_bad_names_are_refused():
    made = p.decode_client(
        {"kind": "branch", "view": "v", "id": "r", "name": "what-if", "at": "AQI", "author": "ana"},
        [],
    )
    assert made == p.BranchRequest(
        view=p.ViewId("v"), id=p.RequestId("r"), name="what-if", at="AQI", author="ana"
    )
    merge = p.decode_client(
        {"kind": "merge", "view": "v", "id": "r", "source": "b", "into": "main", "preview": True},
        [],
    )
    assert merge == p.MergeRequest(
        view=p.ViewId("v"), id=p.RequestId("r"), source="b", into="main", preview=True
    )
    for bad in ("../x", "a/b", "..", "x" * 129, "quote'd", ""):
        with pytest.raises(ProtocolError, match="name"):
            p.decode_client({"kind": "branch", "view": "v", "id": "r", "name": bad}, [])
        with pytest.raises(ProtocolError, match="branch"):
            p.decode_client({"kind": "hello", "view": "v", "branch": bad}, [b""])
    with pytest.raises(ProtocolError, match="preview"):
        p.decode_client(
            {"kind": "merge", "view": "v", "id": "r", "source": "b", "into": "main"}, []
        )


def _ts_kinds(name: str) -> tuple[str, ...]:
    source = (ROOT / "js" / "protocol.ts").read_text()
    match = re.search(rf"export const {name} = \[([^\]]*)\] as const;", source)
    assert match, f"js/protocol.ts must declare `export const {name} = [...] as const;`"
    return tuple(re.findall(r"[\"']([a-z_]+)[\"']", match.group(1)))


def test_js_and_python_protocols_name_the_same_kinds():
    assert _ts_kinds("CLIENT_KINDS") == p.CLIENT_KINDS
    assert _ts_kinds("SERVER_KINDS") == p.SERVER_KINDS


def test_page_requests_decode_with_sort_keys_and_bounds():
    msg = p.decode_client(
        {
            "kind": "page",
            "view": "v",
            "id": "r",
            "cell": "c1",
            "offset": 1000,
            "limit": 500,
            "sort": [{"column": 'odd "name"', "desc": True}, {"column": "x", "desc": False}],
        },
        None,
    )
    assert msg == p.PageRequest(
        view=p.ViewId("v"),
        id=p.RequestId("r"),
        cell="c1",
        offset=1000,
        limit=500,
        sort=(p.SortKey('odd "name"', True), p.SortKey("x", False)),
    )
    plain = p.decode_client({"kind": "page", "view": "v", "id": "r", "cell": "c1"}, None)
    assert isinstance(plain, p.PageRequest) and (plain.offset, plain.limit, plain.sort) == (
        0,
        500,
        (),
    )
    base = {"kind": "page", "view": "v", "id": "r", "cell": "c1"}
    for bad in (
        {"limit": 0},
        {"limit": p.MAX_PAGE_ROWS + 1},
        {"offset": -1},
        {"sort": [{"column": "x", "desc": "yes"}]},
        {"sort": [{"column": ""}]},
        {"sort": "x"},
    ):
        with pytest.raises(ProtocolError):
            p.decode_client({**base, **bad}, None)


def test_export_requests_take_csv_or_parquet_and_replies_carry_the_file_in_a_buffer():
    msg = p.decode_client(
        {"kind": "export", "view": "v", "id": "r", "cell": "c1", "format": "parquet"}, None
    )
    assert isinstance(msg, p.ExportRequest) and msg.format == "parquet" and msg.sort == ()
    with pytest.raises(ProtocolError, match="format"):
        p.decode_client(
            {"kind": "export", "view": "v", "id": "r", "cell": "c1", "format": "x"}, None
        )
    out = p.encode_server(
        p.Export(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            cell="c",
            format="csv",
            filename="n.csv",
            data=b"a,b",
        )
    )
    assert out.content["filename"] == "n.csv" and out.buffers == [b"a,b"]
    page = p.encode_server(
        p.Page(
            to=p.ViewId("v"),
            id=p.RequestId("r"),
            cell="c",
            branch="main",
            offset=500,
            rows=336776,
            sort=(p.SortKey("dep_delay", True),),
            arrow=b"ipc",
        )
    )
    assert page.content["sort"] == [{"column": "dep_delay", "desc": True}]
    assert page.content["rows"] == 336776 and page.buffers == [b"ipc"]


def test_catalog_encodes_tables_with_their_columns_as_plain_json():
    table = p.CatalogTable(schema="main", name="flights", columns=("dep_delay",), kind="table")
    out = p.encode_server(p.Catalog(branch="main", tables=(table,)))
    assert out.content == {
        "kind": "catalog",
        "branch": "main",
        "tables": [
            {
                "database": "",
                "schema": "main",
                "name": "flights",
                "columns": ["dep_delay"],
                "kind": "table",
            }
        ],
    }
    assert out.buffers == []
