"""SqlRoom: the public API, the comm message handling, fan-out to views, and persistence."""

import gzip
import json
import pathlib
import signal
import subprocess
import sys
import time

import duckdb
import pyarrow as pa
import pytest
from loro import EphemeralStore

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import CellNotFoundError, ClosedError, QueryError, ValidationError

from .fakes import FakeView

TRACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "editing-traces"


@pytest.fixture
def lake(tmp_path):
    return str(tmp_path / "lake")


@pytest.fixture
def room(lake):
    with snb.SqlRoom("room-test", lake=lake, author="ana") as r:
        yield r


def joined(room, *names):
    """Views attached to ``room`` that have sent their hello (replies not yet pumped)."""
    views = [FakeView(room, name) for name in names]
    for view in views:
        view.hello()
    return views


def pump(*views):
    for _ in range(4):
        for v in views:
            v.pump()


def test_views_receive_each_others_typing(room):
    a, b = FakeView(room, "a"), FakeView(room, "b")
    cid = room.add_cell("select 1", name="one")
    a.hello()
    b.hello()
    pump(a, b)
    assert a.cells() == b.cells() == [("one", "select 1")]
    a.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(8, " + 1"))
    pump(a, b)
    assert b.cells() == [("one", "select 1 + 1")]
    assert [c.source for c in room.cells] == ["select 1 + 1"]


def test_python_edits_and_direct_doc_edits_reach_every_view(room):
    a, b = joined(room, "a", "b")
    pump(a, b)
    cid = room.add_cell("select 2", name="two")
    room.update_cell(cid, source="select 3")
    pump(a, b)  # API edits are relayed at once
    assert a.cells() == b.cells() == [("two", "select 3")]
    nb.cell_text(nb.find_cell(room.doc, cid)[1]).insert(0, "-- hi\n")
    room.doc.commit()  # direct edits: at the relay's next tick (20 ms)
    deadline = time.monotonic() + 2
    while a.cells() != [("two", "-- hi\nselect 3")] and time.monotonic() < deadline:
        time.sleep(0.005)
        pump(a, b)
    assert a.cells() == b.cells() == [("two", "-- hi\nselect 3")]



def test_a_burst_of_direct_commits_is_relayed_in_a_few_updates_not_one_per_commit(room, lake):
    """Direct ``room.doc`` commits are not subscribed to one by one (that cost 4.5x the
    editing): the relay's tick sends what the kernel's peer committed since the last tick."""
    (a,) = joined(room, "a")
    cid = room.add_cell("", name="burst")
    a.pump()
    text = nb.cell_text(nb.find_cell(room.doc, cid)[1])
    for i in range(2000):
        text.insert(i, "x")
        room.doc.commit()
    room.flush()  # relays what is left, then waits for the lake
    a.pump()
    updates = [m for m in a.received if m["kind"] == "update" and m["origin"] is None]
    assert a.cells()[-1] == ("burst", "x" * 2000)
    assert 1 <= len(updates) - 1 < 200, len(updates)  # (the first is add_cell's)
    reopened = snb.SqlRoom(room.room_id, lake=lake)
    try:
        assert [c.source for c in reopened.cells if c.id == cid] == ["x" * 2000]
    finally:
        reopened.close()

def test_a_reconnecting_view_gets_no_duplicates(room):
    a = FakeView(room, "a")
    room.add_cell("select 1", name="one")
    a.hello()
    pump(a)
    a.hello()
    a.hello()
    pump(a)
    assert a.cells() == [("one", "select 1")]
    fresh = FakeView(room, "reloaded")  # a reloaded page is a new peer with an empty doc
    fresh.hello()
    pump(fresh)
    assert fresh.cells() == [("one", "select 1")]


def test_edits_made_before_the_handshake_are_sent_after_it(room):
    a = FakeView(room, "a")
    a.doc.get_movable_list("cells")  # the view typed while offline: it has its own cell
    nb.add_cell(a.doc, "select 'offline'", name="off")
    a.doc.commit()
    a.hello()
    pump(a)
    assert [c.name for c in room.cells] == ["off"]


def test_a_malformed_update_gets_an_error_to_that_view_and_changes_nothing(room):
    a, b = FakeView(room, "a"), FakeView(room, "b")
    room.add_cell("select 1", name="one")
    a.hello()
    b.hello()
    pump(a, b)
    before = room.doc.oplog_vv
    a.send({"kind": "update"}, [b"\x00not loro"])
    pump(a, b)
    errors = [m for m in a.received if m["kind"] == "error"]
    assert errors and errors[-1]["to"] == "a" and errors[-1]["code"] == "protocol"
    assert room.doc.oplog_vv == before
    assert [m for m in b.received if m["kind"] == "update" and m.get("origin") == "a"] == []


@pytest.mark.parametrize(
    "content",
    [{"kind": "teleport", "view": "a", "id": "r9"}, {"kind": "run", "view": "a"}, ["x"], None],
)
def test_unknown_or_broken_messages_always_get_an_error_reply(room, content):
    a = FakeView(room, "a")
    room.receive(content, [])
    a.pump()
    assert a.kinds() == ["error"]
    if isinstance(content, dict) and content.get("id"):
        assert a.received[0]["id"] == "r9"


def test_presence_from_one_view_reaches_the_others_and_is_not_persisted(room):
    a, b = joined(room, "a", "b")
    pump(a, b)
    before = room.doc.oplog_vv
    a.set_presence({"name": "Ana", "color": "#4e79a7", "cell": "c1", "anchor": b"\x01\x02"})
    pump(a, b)
    assert b.presence.get_all_states() == {
        "a": {"name": "Ana", "color": "#4e79a7", "cell": "c1", "anchor": b"\x01\x02"}
    }
    relayed = [m for m in b.received if m["kind"] == "awareness"]
    assert relayed == [{"kind": "awareness", "origin": "a"}]
    assert room.doc.oplog_vv == before  # presence never enters the document (nor the lake)


def test_a_newcomers_welcome_is_followed_by_the_current_presence(room):
    a = FakeView(room, "a")
    a.hello()
    pump(a)
    a.set_presence({"name": "Ana"})
    late = FakeView(room, "late")
    late.hello()
    pump(a, late)
    kinds = late.kinds()
    assert kinds.index("awareness") == kinds.index("welcome") + 1
    assert late.received[kinds.index("awareness")]["origin"] is None
    assert late.presence.get_all_states() == {"a": {"name": "Ana"}}


def test_no_presence_follows_a_welcome_when_nobody_is_here(room):
    a = FakeView(room, "a")
    a.hello()
    pump(a)
    assert "awareness" not in a.kinds()


def test_garbage_presence_gets_an_error_and_changes_nothing(room):
    a, b = joined(room, "a", "b")
    pump(a, b)
    a.set_presence({"name": "Ana"})
    pump(a, b)
    b.send({"kind": "awareness"}, [b"\xff\xffgarbage"])
    spoof = EphemeralStore(30_000)
    time.sleep(0.002)  # newer than a's own entry (Loro stamps in ms)
    spoof.set("a", {"name": "not Ana"})
    b.send({"kind": "awareness"}, [spoof.encode("a")])  # b may not speak for a
    pump(a, b)
    errors = [m for m in b.received if m["kind"] == "error"]
    assert [(e["to"], e["code"]) for e in errors] == [("b", "protocol"), ("b", "protocol")]
    assert [m.get("origin") for m in a.received if m["kind"] == "awareness"] == ["a"]
    assert room._presence.views() == ["a"]


def test_ping_is_answered(room):
    a = FakeView(room, "a")
    a.send({"kind": "ping", "id": "p1"})
    a.pump()
    assert a.received == [{"kind": "pong", "to": "a", "id": "p1"}]


def test_a_run_from_one_view_shows_in_every_view(lake):
    con = duckdb.connect()
    con.execute("create table flights as select range % 12 + 1 as month from range(1200)")
    with snb.SqlRoom("runs", lake=lake, connection=con) as room:
        cid = room.add_cell(
            "select month, count(*) as n from flights group by 1 order by 1", name="per_month"
        )
        a, b = FakeView(room, "a"), FakeView(room, "b")
        a.send({"kind": "run", "id": "r1", "cell": cid})
        assert room._runner.wait_idle()
        pump(a, b)
        for view in (a, b):
            runs = [k for k in view.kinds() if k in ("run_started", "result")]
            assert runs[-2:] == ["run_started", "result"]
            result = next(m for m in reversed(view.received) if m["kind"] == "result")
            assert result["rows"] == 12 and result["id"] == "r1" and result["name"] == "per_month"
            assert result["columns"] == [
                {"name": "month", "type": "BIGINT"},
                {"name": "n", "type": "BIGINT"},
            ]
        # results reach views that join later
        late = FakeView(room, "late")
        late.hello()
        late.pump()
        assert "result" in late.kinds()
        assert con.sql("select sum(n) from per_month").fetchone() == (1200,)


def test_a_failing_cell_reports_its_error_to_every_view(room):
    cid = room.add_cell("select 1,\n nope from nowhere", name="bad")
    a = FakeView(room, "a")
    a.send({"kind": "run", "id": "r2", "cell": cid})
    assert room._runner.wait_idle()
    a.pump()
    error = next(m for m in reversed(a.received) if m["kind"] == "error")
    assert error["kind"] == "error" and error["cell"] == cid and error["code"] == "query"
    assert "nowhere" in error["message"] and error["line"] == 1
    with pytest.raises(QueryError):
        room.run(cid)


def test_run_returns_the_full_arrow_table(room):
    cid = room.add_cell("select range as i from range(5000)", name="many")
    table = room.run(cid)
    assert isinstance(table, pa.Table) and table.num_rows == 5000


def test_markdown_cells_do_not_run(room):
    cid = room.add_cell("# title", kind="markdown")
    with pytest.raises(ValidationError):
        room.run(cid)


def test_saved_acks_follow_flushes(room):
    a = FakeView(room, "a")
    a.hello()
    a.pump()
    a.edit(lambda d: nb.add_cell(d, "select 42", name="answer"))
    a.pump()
    room.flush()
    a.pump()
    assert "saved" in a.kinds() and a.is_saved()


def test_api_errors_are_typed(room):
    with pytest.raises(CellNotFoundError):
        room.update_cell("missing", source="x")
    with pytest.raises(ValidationError):
        room.add_cell("select 1", name="bad name")


def test_a_closed_room_refuses_work(lake):
    room = snb.SqlRoom("closing", lake=lake)
    a = FakeView(room, "a")
    room.close()
    room.close()  # idempotent
    with pytest.raises(ClosedError):
        room.add_cell("select 1")
    a.hello()
    a.pump()
    assert a.received[-1]["code"] == "closed"


def test_edits_from_views_survive_a_restart(lake):
    with snb.SqlRoom("restart", lake=lake) as room:
        a = FakeView(room, "a")
        a.hello()
        a.pump()
        a.edit(lambda d: nb.add_cell(d, "select 'from the browser'", name="b1"))
    with snb.SqlRoom("restart", lake=lake) as again:
        assert [(c.name, c.source) for c in again.cells] == [("b1", "select 'from the browser'")]
        v = FakeView(again, "v")
        v.hello()
        v.pump()
        assert v.cells() == [("b1", "select 'from the browser'")]


def test_the_svelte_trace_typed_through_room_doc_survives_reopening(lake):
    trace = json.load(gzip.open(TRACES / "sveltecomponent.json.gz"))
    with snb.SqlRoom("svelte", lake=lake) as room:
        cid = room.add_cell("", name="svelte")
        text = nb.cell_text(nb.find_cell(room.doc, cid)[1])
        for txn in trace["txns"]:
            for pos, deleted, inserted in txn["patches"]:
                if deleted:
                    text.delete(pos, deleted)
                if inserted:
                    text.insert(pos, inserted)
            room.doc.commit()
    with snb.SqlRoom("svelte", lake=lake) as again:
        assert [c.source for c in again.cells] == [trace["endContent"]]


def test_rooms_in_one_lake_are_separate(lake):
    with snb.SqlRoom("one", lake=lake) as one, snb.SqlRoom("two", lake=lake) as two:
        one.add_cell("select 1", name="a")
        two.add_cell("select 2", name="b")
    with snb.SqlRoom("one", lake=lake) as one:
        assert [c.name for c in one.cells] == ["a"]


def test_sigterm_flushes_and_snapshots_before_the_process_ends(lake):
    """Hosts stop kernels with SIGTERM, which skips atexit; the room must still save."""
    code = (
        "import os, signal, sys, sqlrooms_nb as s\n"
        f"r = s.SqlRoom('term', lake={lake!r})\n"
        "r.add_cell('select 1 as typed_just_before_sigterm', name='last')\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "sys.exit(3)  # not reached: SIGTERM ends the process\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGTERM, proc.stderr.decode()[-2000:]
    with snb.SqlRoom("term", lake=lake) as again:
        assert [c.name for c in again.cells] == ["last"]
        cur = again._lake.cursor()
        snapshots = cur.execute(
            f"SELECT count(*) FROM {again._lake.table('snapshots')} WHERE room = 'term'"
        ).fetchone()
        assert snapshots == (1,)


# --- history over the wire ----------------------------------------------------------------


def _alternating_sessions(room, a, cid, n):
    """``n`` edits alternating between the room's author and view ``a`` (one session each)."""
    for i in range(n):
        if i % 2 == 0:
            room.update_cell(cid, source=f"select {i}")
        else:
            a.edit(lambda d, i=i: nb.update_cell(d, cid, source=f"select {i}"))
        pump(a)


def _replies(view, kind):
    view.pump()
    return [m for m in view.received if m["kind"] == kind and m.get("to") == view.view]


def test_history_request_lists_sessions_newest_first_in_pages(room):
    a = FakeView(room, "a")
    a.hello()
    pump(a)
    cid = room.add_cell("select 0", name="q")
    pump(a)
    _alternating_sessions(room, a, cid, 5)
    everything = room.history()
    assert len(everything) >= 5
    a.send({"kind": "history", "id": "h1", "limit": 2})
    first = a.wait_for("history", "h1")
    assert first["id"] == "h1" and first["offset"] == 0 and first["more"] is True
    assert [v["id"] for v in first["versions"]] == [v.id for v in everything[:2]]
    assert first["current"] == room.version
    newest = first["versions"][0]
    assert newest["summary"] == everything[0].summary
    assert newest["time"].endswith("+00:00") and newest["cells"] == [cid]
    a.send({"kind": "history", "id": "h2", "offset": 2, "limit": 200})
    rest = a.wait_for("history", "h2")
    assert rest["offset"] == 2 and rest["more"] is False
    assert [v["id"] for v in rest["versions"]] == [v.id for v in everything[2:]]


def test_history_reply_carries_the_tags(room):
    a = FakeView(room, "a")
    a.hello()
    cid = room.add_cell("select 1", name="q")
    tagged = room.tag("first")
    room.update_cell(cid, source="select 2")
    a.send({"kind": "history", "id": "h"})
    reply = a.wait_for("history", "h")
    assert reply["tags"] == [{"name": "first", "version": tagged}]


def test_preview_of_an_old_version_returns_its_cells_and_the_diff_to_now(room):
    a, b = joined(room, "a", "b")
    cid = room.add_cell("select 1", name="one")
    old = room.version
    room.update_cell(cid, source="select 2")
    room.add_cell("select 3", name="three")
    before = room.cells
    pump(a, b)
    a.send({"kind": "preview", "id": "p1", "version": old})
    reply = a.wait_for("preview", "p1")
    assert reply["id"] == "p1" and reply["version"] == old
    assert reply["cells"] == [{"id": cid, "kind": "sql", "name": "one", "source": "select 1"}]
    statuses = {d["name"]: d["status"] for d in reply["diff"]}
    assert statuses == {"one": "changed", "three": "added"}
    changed = next(d for d in reply["diff"] if d["name"] == "one")
    assert "-select 1" in changed["diff"] and "+select 2" in changed["diff"]
    assert room.cells == before  # the live document is untouched
    assert not _replies(b, "preview")  # addressed to the asking view only


def test_restore_from_a_view_changes_the_doc_for_every_view_and_notes_it(room):
    a, b = joined(room, "a", "b")
    cid = room.add_cell("select 1", name="one")
    old = room.version
    pump(a, b)
    b.edit(lambda d: nb.update_cell(d, cid, source="select 'changed by b'"))
    pump(a, b)
    assert a.cells() == [("one", "select 'changed by b'")]
    a.send({"kind": "restore", "id": "r1", "version": old, "author": "Bea"})
    pump(a, b)
    assert a.cells() == b.cells() == [("one", "select 1")]
    assert [c.source for c in room.cells] == ["select 1"]
    restored = _replies(a, "restored")[-1]
    assert restored == {
        "kind": "restored",
        "to": "a",
        "id": "r1",
        "version": old,
        "current": room.version,
    }
    newest = room.history()[0]
    assert "restored" in newest.summary and old in newest.summary
    assert newest.author == "Bea"
    room.flush()


def test_a_bad_version_gets_an_error_to_that_view_only(room):
    a, b = joined(room, "a", "b")
    room.add_cell("select 1", name="one")
    before = room.version
    pump(a, b)
    a.received.clear()
    b.received.clear()
    for kind in ("preview", "restore"):
        a.send({"kind": kind, "id": f"bad-{kind}", "version": "AAAAAAAA"})
    a.wait_for("error", "bad-preview")  # previews are answered from the reader thread
    pump(a, b)
    errors = [m for m in a.received if m["kind"] == "error"]
    assert sorted((m["to"], m["id"], m["code"]) for m in errors) == [
        ("a", "bad-preview", "invalid"),
        ("a", "bad-restore", "invalid"),
    ]
    assert all(m.get("to") == "a" for m in b.received if m["kind"] == "error")
    assert not [m for m in b.received if m["kind"] in ("preview", "restored")]
    assert room.version == before


_BUSY_WRITER = """
import sys
import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import FlushPolicy

policy = FlushPolicy(max_delay_s=0.001, max_changes=1)  # the writer reads the doc constantly
with snb.SqlRoom("busy", lake=sys.argv[1], author="ana", flush_policy=policy) as room:
    cid = room.add_cell("", name="typing")
    text = nb.cell_text(nb.find_cell(room.doc, cid)[1])
    for i in range(60_000):
        text.insert(0, "x")
        if i % 2:  # alternate messages: every commit is a change of its own
            room.doc.set_next_commit_message("bo")
        room.doc.commit()
"""


def test_direct_doc_commits_never_deadlock_with_the_writer(lake):
    """A Python pre-commit hook deadlocked here: Loro runs it holding its transaction lock with
    the GIL released while the writer thread holds the GIL waiting for that lock. A deadlocked
    process cannot even run a timeout handler, so the scenario runs in a child process that
    is killed if it hangs."""
    try:
        subprocess.run([sys.executable, "-c", _BUSY_WRITER, lake], timeout=90, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("direct commits on room.doc deadlocked with the writer thread")
    with snb.SqlRoom("busy", lake=lake) as again:
        assert len(again.cells[0].source) == 60_000
        cur = again._lake.cursor()
        authors = cur.execute(
            f"SELECT DISTINCT author FROM {again._lake.table('changes')} WHERE room = 'busy'"
        ).fetchall()
    # direct edits on room.doc without a message are stamped with the room's author
    assert sorted(authors) == [("ana",), ("bo",)]
