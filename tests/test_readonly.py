"""Read-only rooms and views: decided in the kernel per widget, never trusted from the browser."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import pytest
from loro import ExportMode

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import ReadOnlyError
from sqlrooms_nb.store import Lake

from .fakes import FakeView


class WidgetView(FakeView):
    """A view whose messages go through a widget's comm handler (as anywidget delivers them),
    so the kernel, not the message, decides whether it may edit."""

    def __init__(self, room: Any, name: str, widget: Any):
        super().__init__(room, name)
        self.widget = widget

    def send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        branch = {"branch": self.branch} if self.branch else {}
        self.widget._receive(self.widget, {"view": self.view, **branch, **content}, buffers or [])
        assert self.room.settle(10)  # the widget queues: handled on the room's inbox thread


def settle(*views: FakeView) -> None:
    for _ in range(4):
        for v in views:
            v.pump()


def errors_to(view: FakeView) -> list[dict[str, Any]]:
    return [m for m in view.received if m["kind"] == "error" and m.get("to") == view.view]


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("readonly") / "lake")


@pytest.fixture(scope="module")
def room(lake_dir):
    with snb.SqlRoom("ro", lake=lake_dir, author="ana") as r:
        r.add_cell("select 1 as x", name="one")
        r.run(r.cells[0].id)
        yield r


def test_a_read_only_view_gets_live_edits_but_its_forged_update_is_refused(room):
    reader = WidgetView(room, "reader", room.view(readonly=True))
    writer = WidgetView(room, "writer", room.widget)
    for v in (reader, writer):
        v.hello()
    settle(reader, writer)
    assert room.view(readonly=True) is reader.widget and room.widget is writer.widget
    assert reader.widget.readonly is True and writer.widget.readonly is False
    cid = room.cells[0].id
    writer.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(0, "-- w\n"))
    settle(reader, writer)
    assert reader.cells() == writer.cells() == [(c.name, c.source) for c in room.cells]
    assert room.cells[0].source.startswith("-- w\n")
    room.doc.commit()
    before = (room.doc.oplog_vv.encode(), room.cells)
    # The browser is not trusted: a forged update, even with the trait flipped by the client.
    reader.widget.readonly = False
    reader.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(0, "-- forged\n"))
    settle(reader, writer)
    room.doc.commit()
    assert (room.doc.oplog_vv.encode(), room.cells) == before
    assert [e["code"] for e in errors_to(reader)] == ["read_only"]
    assert not [m for m in writer.received if m["kind"] == "update" and m["origin"] == "reader"]
    assert errors_to(writer) == []
    reader.widget.readonly = True


@pytest.mark.parametrize(
    ("content", "allowed"),
    [
        ({"kind": "ping", "id": "p"}, True),
        ({"kind": "history", "id": "h"}, True),
        ({"kind": "page", "id": "g", "cell": "CELL", "offset": 0, "limit": 5}, True),
        ({"kind": "export", "id": "e", "cell": "CELL", "format": "csv"}, True),
        ({"kind": "preview", "id": "v", "version": "VERSION"}, True),
        ({"kind": "merge", "id": "m", "source": "main", "into": "main", "preview": True}, True),
        ({"kind": "run", "id": "r", "cell": "CELL"}, False),
        ({"kind": "run_all", "id": "a"}, False),
        ({"kind": "cancel", "id": "c", "cell": "CELL"}, False),
        ({"kind": "restore", "id": "s", "version": "VERSION"}, False),
        ({"kind": "branch", "id": "b", "name": "sneaky"}, False),
        ({"kind": "merge", "id": "m2", "source": "main", "into": "main", "preview": False}, False),
    ],
    ids=lambda v: (
        v.get("kind") + ("" if v.get("preview") is not False else "-commit")
        if isinstance(v, dict)
        else str(v)
    ),
)
def test_read_only_views_may_read_but_not_change_or_run(room, content, allowed):
    reader = WidgetView(room, "reader2", room.view(readonly=True))
    reader.hello()
    settle(reader)
    room.doc.commit()
    fill = {"CELL": room.cells[0].id, "VERSION": room.version}
    message = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in content.items()}
    before = (room.doc.oplog_vv.encode(), room.cells, [b.name for b in room.branches()])
    reader.received.clear()
    reader.send(message)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # reads are answered from reader threads
        reader.pump()
        if any(m.get("to") == "reader2" and m.get("id") == message["id"] for m in reader.received):
            break
        time.sleep(0.01)
    replies = [
        m for m in reader.received if m.get("to") == "reader2" and m.get("id") == message["id"]
    ]
    codes = [m.get("code") for m in replies if m["kind"] == "error"]
    if allowed:
        assert "read_only" not in codes and replies, replies
    else:
        assert codes == ["read_only"]
        assert not [m for m in reader.received if m["kind"] == "run_started"]
    room.doc.commit()
    assert (room.doc.oplog_vv.encode(), room.cells, [b.name for b in room.branches()]) == before


def _rows(lake_dir: str) -> dict[str, int]:
    lake = Lake.open(lake_dir)
    try:
        cur = lake.cursor()
        names = ["updates", "changes", "snapshots", "runs", "branches", "tags"]
        return {
            n: cur.execute(f"SELECT count(*) FROM {lake.table(n)}").fetchone()[0] for n in names
        }
    finally:
        lake.release()


def test_a_read_only_room_refuses_edits_and_writes_nothing_to_the_lake(tmp_path):
    lake_dir = str(tmp_path / "lake")
    with snb.SqlRoom("ro-room", lake=lake_dir, author="ana") as writer:
        cid = writer.add_cell("select 42 as answer", name="answer")
        writer.tag("v1")
    rows = _rows(lake_dir)
    con = duckdb.connect()
    with snb.SqlRoom("ro-room", lake=lake_dir, readonly=True, connection=con) as viewer:
        assert "readonly" in repr(viewer)
        assert [c.source for c in viewer.cells] == ["select 42 as answer"]
        version = viewer.version
        for attempt in (
            lambda: viewer.add_cell("select 1"),
            lambda: viewer.update_cell(cid, source="x"),
            lambda: viewer.move_cell(cid, 0),
            lambda: viewer.delete_cell(cid),
            lambda: viewer.restore(version),
            lambda: viewer.branch("b"),
            lambda: viewer.merge("main", "main"),
            lambda: viewer.tag("v2"),
        ):
            with pytest.raises(ReadOnlyError) as info:
                attempt()
            assert info.value.code == "read_only" and isinstance(info.value, PermissionError)
        copy = viewer.doc  # a fork: editing it goes nowhere
        nb.add_cell(copy, "select 'not here'")
        copy.commit()
        assert viewer.run(cid).to_pylist() == [{"answer": 42}]  # SQL still runs in its kernel
        assert viewer.widget.readonly is True
        view = WidgetView(viewer, "v", viewer.widget)
        view.hello()
        settle(view)
        view.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(0, "-- no\n"))
        settle(view)
        assert [e["code"] for e in errors_to(view)] == ["read_only"]
        assert [c.source for c in viewer.cells] == ["select 42 as answer"]
        viewer.flush()
    assert _rows(lake_dir) == rows  # nothing written, not even a snapshot on close


def test_a_read_only_room_follows_what_a_writer_saves(tmp_path):
    lake_dir = str(tmp_path / "lake")
    with snb.SqlRoom("follow", lake=lake_dir, author="ana") as writer:
        writer.add_cell("select 1", name="first")
        writer.flush()
        with snb.SqlRoom("follow", lake=lake_dir, readonly=True) as viewer:
            assert not writer._closed  # a read-only room does not close the kernel's writer
            view = FakeView(viewer, "watcher")
            view.hello()
            settle(view)
            writer.add_cell("select 2", name="second")
            writer.flush()
            deadline = time.monotonic() + 20
            while len(viewer.cells) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [c.name for c in viewer.cells] == ["first", "second"]
            settle(view)
            assert [name for name, _ in view.cells()] == ["first", "second"]


def test_the_read_only_badge_trait_and_the_editable_widget_are_separate_comms(room):
    ro, rw = room.view(readonly=True), room.view()
    assert ro is not rw and rw is room.widget
    assert ro.comm is not None and rw.comm is not None and ro.comm.comm_id != rw.comm.comm_id
    # Exported updates from a read-only widget's view never reach the document, whatever it says.
    update = FakeView(room, "x").doc.export(ExportMode.Snapshot())
    before = room.doc.oplog_vv.encode()
    ro._receive(ro, {"kind": "update", "view": "x", "readonly": False}, [update])
    assert room.settle(10)
    assert room.doc.oplog_vv.encode() == before
