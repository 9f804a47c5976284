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
    ],
)
def test_malformed_client_messages_raise_protocol_errors(content, buffers, fragment):
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        p.decode_client(content, buffers)


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
    ]
    assert sorted(p.encode_server(m).content["kind"] for m in samples) == sorted(p.SERVER_KINDS)


def _ts_kinds(name: str) -> tuple[str, ...]:
    source = (ROOT / "js" / "protocol.ts").read_text()
    match = re.search(rf"export const {name} = \[([^\]]*)\] as const;", source)
    assert match, f"js/protocol.ts must declare `export const {name} = [...] as const;`"
    return tuple(re.findall(r"[\"']([a-z_]+)[\"']", match.group(1)))


def test_js_and_python_protocols_name_the_same_kinds():
    assert _ts_kinds("CLIENT_KINDS") == p.CLIENT_KINDS
    assert _ts_kinds("SERVER_KINDS") == p.SERVER_KINDS
