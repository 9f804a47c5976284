"""History: edit sessions, versions, reading old versions, diffs and restore."""

import gzip
import itertools
import json
import pathlib
import random
import time
from datetime import datetime

import duckdb
import pytest
from loro import ExportMode

import sqlrooms_nb as snb
from sqlrooms_nb import history
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import ValidationError

TRACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "editing-traces"


@pytest.fixture
def lake(tmp_path):
    return str(tmp_path / "lake")


def _seconds(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


@pytest.fixture(scope="module")
def rustcode():
    return json.load(gzip.open(TRACES / "rustcode.json.gz"))


def replay(room, cid, txns, *, every=None, author="ana"):
    """Type trace txns into a cell, one commit per txn at the txn's recorded time.

    Returns {txn index: (version id, text after it)} for the indexes in ``every``.
    """
    text = nb.cell_text(nb.find_cell(room.doc, cid)[1])
    # The trace is from 2020: shift it to start now, so its commits come after the cell's
    # creation (Loro merges a commit into the previous change when its time is not later).
    shift = int(time.time()) + 5 - _seconds(txns[0]["time"])
    seen = {}
    for i, txn in enumerate(txns):
        for pos, deleted, inserted in txn["patches"]:
            if deleted:
                text.delete(pos, deleted)
            if inserted:
                text.insert(pos, inserted)
        room.doc.set_next_commit_timestamp(_seconds(txn["time"]) + shift)
        room.doc.set_next_commit_message(author)
        room.doc.commit()
        if every and i in every:
            seen[i] = (room.version, text.to_string())
    return seen


@pytest.mark.timeout(300)
def test_the_rustcode_trace_groups_into_sessions_and_every_sampled_version_reads_back(
    lake, rustcode
):
    txns = rustcode["txns"][:6000]
    sample = set(random.Random(7).sample(range(len(txns)), 20))
    with snb.SqlRoom("rust", lake=lake, author="ana") as room:
        cid = room.add_cell("", name="skiplist")
        seen = replay(room, cid, txns, every=sample)
        sessions = room.history()
        # the idle rule, recomputed from the trace's own timestamps
        times = [_seconds(t["time"]) for t in txns]
        gaps = sum(1 for a, b in itertools.pairwise(times) if b - a > history.IDLE_GAP_S)
        ana = [s for s in sessions if s.author == "ana"]
        assert len(ana) == gaps + 1
        assert all(s.time >= s.start for s in sessions)
        assert [s.time for s in sessions] == sorted((s.time for s in sessions), reverse=True)
        assert sum(s.added for s in ana) >= len(txns[0]["patches"][0][2])
        assert all(s.cells == (cid,) for s in ana)
        for i in sorted(sample):
            version, expected = seen[i]
            assert [c.source for c in room.at(version)] == [expected], f"txn {i}"
        # a longer pause splits sessions: fewer sessions with a bigger idle gap
        assert len(room.history(idle_gap_s=3600)) < len(sessions)
        assert len(room.history(limit=3)) == 3


def test_restore_is_a_new_change_that_history_shows_and_a_restart_keeps(lake):
    with snb.SqlRoom("restore", lake=lake, author="ana") as room:
        cid = room.add_cell("select 1 as x", name="one")
        old = room.version
        room.update_cell(cid, source="select 2 as x")
        room.add_cell("select 3", name="three")
        before = len(room.history(idle_gap_s=0))
        new = room.restore(old)
        assert new != old
        assert [(c.name, c.source) for c in room.cells] == [("one", "select 1 as x")]
        sessions = room.history(idle_gap_s=0)
        assert len(sessions) == before + 1 and sessions[0].id == new
        # the restore can itself be undone by restoring the version before it
        room.restore(sessions[1])
        assert [c.name for c in room.cells] == ["one", "three"]
        kept = [(c.name, c.source) for c in room.cells]
    with snb.SqlRoom("restore", lake=lake) as again:
        assert [(c.name, c.source) for c in again.cells] == kept
        assert [c.source for c in again.at(old)] == ["select 1 as x"]
        assert again.history(idle_gap_s=0)[0].id == again.version


def test_diff_names_added_removed_moved_and_changed_cells(lake):
    with snb.SqlRoom("diff", lake=lake) as room:
        a = room.add_cell("select 1", name="a")
        b = room.add_cell("select 2", name="b")
        c = room.add_cell("select 3", name="c")
        v1 = room.version
        room.update_cell(a, source="select 10")
        room.delete_cell(b)
        room.move_cell(c, 0)
        d = room.add_cell("select 4", name="d")
        changes = {x.id: x for x in room.diff(v1)}
        assert changes[a].status == "changed" and "-select 1\n" in changes[a].diff + "\n"
        assert "+select 10" in changes[a].diff
        assert changes[b].status == "removed" and changes[b].index_b is None
        assert changes[c].status == "moved" and (changes[c].index_a, changes[c].index_b) == (2, 0)
        assert changes[d].status == "added"
        assert room.diff(v1, v1) == []


def test_previews_do_not_touch_the_live_document(lake):
    with snb.SqlRoom("preview", lake=lake) as room:
        cid = room.add_cell("select 1", name="a")
        v = room.version
        room.update_cell(cid, source="select 2")
        live = room.doc.oplog_vv
        assert [c.source for c in room.at(v)] == ["select 1"]
        assert room.doc.oplog_vv == live and not room.doc.is_detached()
        assert [c.source for c in room.cells] == ["select 2"]


@pytest.mark.parametrize("bad", ["", "not base64 !", "AAAA", "x" * 5000, 42])
def test_bad_version_ids_are_refused_clearly(lake, bad):
    with snb.SqlRoom("bad", lake=lake) as room:
        room.add_cell("select 1", name="a")
        with pytest.raises(ValidationError, match="version"):
            room.at(bad)


def test_a_version_of_another_room_is_refused(lake):
    with snb.SqlRoom("one", lake=lake) as one, snb.SqlRoom("two", lake=lake) as two:
        one.add_cell("select 1", name="a")
        two.add_cell("select 2", name="b")
        with pytest.raises(ValidationError, match="not in this notebook"):
            two.at(one.version)


def test_sessions_split_by_author_and_pause():
    doc = nb.new_doc()
    t0 = 1_700_000_000
    for author, at, text in [
        ("ana", 0, "a"),
        ("ana", 30, "b"),
        ("bo", 40, "c"),
        ("ana", 50, "d"),
        ("ana", 500, "e"),
    ]:
        doc.get_text("t").insert(0, text)
        doc.set_next_commit_timestamp(t0 + at)
        doc.set_next_commit_message(author)
        doc.commit()
    got = history.sessions(doc, lambda c: history.ChangeStats((), 1, 0))
    assert [(s.author, s.changes) for s in got] == [("ana", 1), ("ana", 1), ("bo", 1), ("ana", 2)]
    assert got[-1].added == 2 and "ana" in got[-1].summary


def test_tags_name_versions_persist_and_never_move(lake):
    with snb.SqlRoom("tags", lake=lake, author="ana") as room:
        room.add_cell("select 1", name="a")
        v1 = room.tag("draft")
        room.add_cell("select 2", name="b")
        room.tag("final")
        with pytest.raises(ValidationError, match="never move"):
            room.tag("draft")
        with pytest.raises(ValidationError):
            room.tag("../x")
        with pytest.raises(ValidationError):
            room.tag("other", version="not-a-version")
    with snb.SqlRoom("tags", lake=lake) as again:
        tags = again.tags()
        assert [t.name for t in tags] == ["final", "draft"]
        assert tags[1].version == v1 and tags[1].author == "ana"
        assert [c.name for c in again.at(tags[1].version)] == ["a"]
    with snb.SqlRoom("other-room", lake=lake) as other:
        assert other.tags() == []


def test_sql_cells_can_query_the_rooms_own_history(lake):
    con = duckdb.connect()
    with snb.SqlRoom("data", lake=lake, connection=con, author="ana") as room:
        a = room.add_cell("select 1", name="a")
        room.update_cell(a, source="select 11")
        room.tag("v1")
        room.flush()
        cid = room.add_cell(
            "select author, count(*) as changes from sqlrooms_history.changes group by author",
            name="who",
        )
        [row] = room.run(cid).to_pylist()
        assert row["author"] == "ana" and row["changes"] >= 1
        per_cell = room.add_cell(
            "select cell, count(*) as n from "
            "(select unnest(cells) as cell from sqlrooms_history.changes) "
            "group by cell order by n desc",
            name="busiest",
        )
        room.flush()
        assert a in room.run(per_cell).column("cell").to_pylist()
        sessions = con.sql("select author, changes from sqlrooms_history.sessions").fetchall()
        assert sessions and all(author == "ana" for author, _ in sessions)
        assert con.sql("select name from sqlrooms_history.tags").fetchall() == [("v1",)]
        with pytest.raises(duckdb.Error):  # read-only: the history cannot be rewritten here
            con.execute("delete from sqlrooms_lake.sqlrooms_nb.changes")
    with snb.SqlRoom("elsewhere", lake=lake, connection=con) as other:
        other.flush()
        # the views now follow the room opened last: the other room's history is not in them
        assert con.sql("select count(*) from sqlrooms_history.changes").fetchone() == (1,)


def test_history_views_are_made_off_the_open_path_and_cells_wait_for_them(lake, monkeypatch):
    import threading

    from sqlrooms_nb import history_views

    release = threading.Event()
    real = history_views._create

    def slow(*args):
        release.wait(30)  # as a slow extension load / attach would
        return real(*args)

    monkeypatch.setattr(history_views, "_create", slow)
    con = duckdb.connect()
    with snb.SqlRoom("lazy", lake=lake, connection=con, author="ana") as room:
        # open returned while the views are still being made
        assert not room._history_views.done()
        plain = room.add_cell("select 41 + 1 as x", name="plain")
        assert room.run(plain).column("x").to_pylist() == [42]  # does not wait for them
        who = room.add_cell("select count(*) as n from sqlrooms_history.changes", name="who")
        threading.Timer(0.3, release.set).start()
        assert room.run(who).column("n").to_pylist()[0] >= 0  # waited, then found them
        assert room._history_views.result(0) is True


def test_ducklakes_own_timeline_lists_saves_and_travels_back(lake):
    with snb.SqlRoom("timeline", lake=lake) as room:
        a = room.add_cell("select 1", name="a")
        room.flush()
        first = room.saved_versions()
        room.update_cell(a, source="select 2")
        room.add_cell("select 3", name="b")
        room.flush()
        saved = room.saved_versions()
        assert len(saved) > len(first) >= 1
        assert [s.snapshot_id for s in saved] == sorted(
            (s.snapshot_id for s in saved), reverse=True
        )
        assert {s.kind for s in saved} == {"updates"}
        assert [(c.name, c.source) for c in room.at_saved(first[0].snapshot_id)] == [
            ("a", "select 1")
        ]
        assert [c.name for c in room.at_saved(saved[0].snapshot_id)] == ["a", "b"]
        assert [c.source for c in room.cells] == ["select 2", "select 3"]  # untouched
        with pytest.raises(snb.errors.StorageError):
            room.at_saved(10**9)
    with snb.SqlRoom("timeline", lake=lake) as again:  # close wrote a snapshot row
        assert again.saved_versions()[0].kind == "snapshot"


def test_the_change_index_matches_a_full_walk_as_the_document_grows():
    doc = nb.new_doc()
    nb.ensure_schema(doc, "t")
    doc.commit()
    cid = nb.add_cell(doc, "", name="c")
    doc.commit()
    other = nb.new_doc()
    other.import_(doc.export(ExportMode.Snapshot()))
    index = history.ChangeIndex(doc)
    text = nb.cell_text(nb.find_cell(doc, cid)[1])
    rng = random.Random(7)
    for step in range(60):
        # Commits 3 s apart merge into one Loro change (10 s interval) until a jump: the
        # index must list a grown change once, whole, like a fresh walk does.
        doc.set_next_commit_timestamp(1_700_000_000 + step * (3 if step % 7 else 30))
        text.insert(rng.randint(0, len(text.to_string())), "x")
        doc.commit()
        if step % 5 == 0:  # and changes imported from another peer
            theirs = nb.cell_text(nb.find_cell(other, cid)[1])
            other.import_(doc.export(ExportMode.Updates(other.oplog_vv)))
            theirs.insert(0, "y")
            other.commit()
            doc.import_(other.export(ExportMode.Updates(doc.oplog_vv)))
        if step % 3 == 0:
            assert index.changes() == history.changes(doc), step
    assert index.changes() == history.changes(doc)


def test_previews_from_kept_forks_match_fork_at_and_follow_the_live_doc():
    doc = nb.configure(nb.new_doc())
    nb.ensure_schema(doc)
    cid = nb.add_cell(doc, "", name="a")
    doc.commit()
    text = nb.cell_text(nb.find_cell(doc, cid)[1])
    versions = []
    for i in range(60):
        text.insert(len(text.to_string()), f"{i},")
        doc.commit()
        versions.append(doc.oplog_frontiers)
    previews = history.Previews(doc, forks=2, spread=0.2)
    for i in [5, 55, 30, 6, 59, 0, 31]:
        assert previews.cells_at(versions[i]) == history.cells_at(doc, versions[i]), i
    assert len(previews._forks) == 2  # kept, not one per preview
    assert doc.is_detached() is False  # the live document never moves
    text.insert(0, "new ")  # the live doc moves on: the kept forks import it
    doc.commit()
    assert previews.cells_at(doc.oplog_frontiers)[0].source.startswith("new 0,")
    assert previews.cells_at(versions[3])[0].source == "0,1,2,3,"
