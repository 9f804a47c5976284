"""Branches: fork, lineage in the lake, per-view branches, merge (a CRDT import) and its preview."""

import pytest
from loro import ExportMode

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import BranchNotFoundError, ValidationError
from sqlrooms_nb.store import Lake

from .fakes import FakeView


@pytest.fixture
def lake(tmp_path):
    return str(tmp_path / "lake")


def pump(*views):
    for _ in range(4):
        for v in views:
            v.pump()


def sources(cells):
    return [(c.name, c.source) for c in cells]


def test_branch_edit_both_sides_merge_equals_the_crdt_merge_and_its_preview(lake):
    with snb.SqlRoom("merge", lake=lake, author="ana") as room:
        a = room.add_cell("select 1 as x", name="one")
        b = room.add_cell("select 2 as y", name="two")
        fork_point = room.version
        made = room.branch("what-if", author="bo")
        assert (made.name, made.parent, made.fork_version, made.created_by) == (
            "what-if",
            "main",
            fork_point,
            "bo",
        )
        # main goes on: edits cell one, adds a cell
        room.update_cell(a, source="select 10 as x")
        room.add_cell("select 3 as z", name="three")
        # the branch: edits cell two, deletes cell one's neighbour order, adds its own cell
        room.checkout_branch("what-if")
        assert room.current_branch == "what-if"
        assert sources(room.cells) == [("one", "select 1 as x"), ("two", "select 2 as y")]
        room.update_cell(b, source="select 20 as y -- branch")
        room.move_cell(b, 0)
        room.add_cell("select 4 as w", name="four")
        branch_cells = sources(room.cells)
        room.checkout_branch("main")
        main_cells = sources(room.cells)
        assert main_cells != branch_cells

        # the expected result: Loro's own merge of both documents' full histories
        expected = nb.new_doc()
        for doc in (room._replica("main").doc, room._replica("what-if").doc):
            expected.import_(doc.export(ExportMode.Snapshot()))
        before_merge = room.version
        preview = room.merge_preview("what-if", into="main")
        assert sources(room.cells) == main_cells and room.version == before_merge  # no change
        version = room.merge("what-if", into="main")

        assert version == room.version == room.history()[0].id  # newest session = now
        merged = sources(room.cells)
        assert merged == sources(nb.read_cells(expected))
        assert {n for n, _ in merged} == {"one", "two", "three", "four"}
        assert ("one", "select 10 as x") in merged and ("two", "select 20 as y -- branch") in merged
        # the preview described exactly this change
        assert preview == room.diff(before_merge)
        assert {d.name: d.status for d in preview}["four"] == "added"
        assert sources(room.at(fork_point)) == [("one", "select 1 as x"), ("two", "select 2 as y")]
        lineage = {br.name: br for br in room.branches()}
        assert lineage["what-if"].merged_into == "main" and lineage["what-if"].merged_at
        assert lineage["main"].parent is None
        # the branch itself is unchanged by merging it into main
        room.checkout_branch("what-if")
        assert sources(room.cells) == branch_cells


def test_merge_preview_equals_what_merge_then_makes(lake):
    with snb.SqlRoom("preview", lake=lake) as room:
        a = room.add_cell("select 1", name="one")
        room.branch("b")
        room.update_cell(a, source="select 1 -- main")
        room.checkout_branch("b")
        room.update_cell(a, source="select 2")
        room.add_cell("select 3", name="three", index=0)
        room.checkout_branch("main")
        before = sources(room.cells)
        before_merge = room.version
        preview = room.merge_preview("b")
        room.merge("b")
        assert preview == room.diff(before_merge)
        statuses = {d.name: d.status for d in preview}
        assert statuses == {"three": "added", "one": "changed"}
        changed = next(d for d in preview if d.name == "one")
        merged_text = dict(sources(room.cells))["one"]
        assert f"+{merged_text}" in changed.diff.splitlines()
        assert f"-{dict(before)['one']}" in changed.diff.splitlines()


def test_every_branch_recovers_after_a_restart_with_its_lineage(lake):
    with snb.SqlRoom("restart", lake=lake, author="ana") as room:
        a = room.add_cell("select 1", name="one")
        old = room.version
        room.update_cell(a, source="select 2")
        room.branch("from-old", at=old)
        room.branch("from-now")
        room.checkout_branch("from-now")
        room.add_cell("select 3", name="three")
        untouched = sources(room.at(old))
    with snb.SqlRoom("restart", lake=lake, branch="from-now") as again:
        assert [b.name for b in again.branches()] == ["main", "from-old", "from-now"]
        assert sources(again.cells) == [("one", "select 2"), ("three", "select 3")]
        again.checkout_branch("from-old")
        assert sources(again.cells) == untouched == [("one", "select 1")]
        again.checkout_branch("main")
        assert sources(again.cells) == [("one", "select 2")]
    lake_obj = Lake.open(lake)
    try:
        cur = lake_obj.cursor()
        rows = cur.execute(
            f"SELECT branch, min(seq) FROM {lake_obj.table('snapshots')} WHERE room = 'restart' "
            "GROUP BY branch ORDER BY branch"
        ).fetchall()
        cur.close()
    finally:
        lake_obj.release()
    assert ("from-old", 0) in rows and ("from-now", 0) in rows  # each starts with its snapshot


def test_bad_taken_and_unknown_branch_names_are_refused(lake):
    with snb.SqlRoom("names", lake=lake) as room:
        room.branch("one")
        with pytest.raises(ValidationError, match="already has a branch"):
            room.branch("one")
        with pytest.raises(ValidationError, match="always exists"):
            room.branch("main")
        for bad in ("../x", "a/b", "", "x" * 200, "quote'd", ".."):
            with pytest.raises(ValidationError):
                room.branch(bad)
        with pytest.raises(BranchNotFoundError, match="has no branch 'nope'"):
            room.checkout_branch("nope")
        with pytest.raises(BranchNotFoundError):
            room.merge("nope")
        with pytest.raises(ValidationError, match="into itself"):
            room.merge("one", into="one")
        with pytest.raises(ValidationError):
            room.branch("two", at="AAAA")  # not a version of this document
    with pytest.raises(BranchNotFoundError):
        snb.SqlRoom("names", lake=lake, branch="nope")
    assert [b.name for b in snb.SqlRoom("names", lake=lake).branches()] == ["main", "one"]


def test_views_on_different_branches_see_only_their_branch_until_a_merge(lake):
    with snb.SqlRoom("views", lake=lake, author="ana") as room:
        cid = room.add_cell("select 1", name="one")
        room.branch("b")
        on_main, on_b = FakeView(room, "m"), FakeView(room, "x", branch="b")
        on_main.hello()
        on_b.hello()
        pump(on_main, on_b)
        assert on_main.branch == "main" and on_b.branch == "b"

        on_b.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(8, " -- on b"))
        on_main.edit(lambda d: nb.add_cell(d, "select 2", name="two"))
        pump(on_main, on_b)
        assert on_main.cells() == [("one", "select 1"), ("two", "select 2")]
        assert on_b.cells() == [("one", "select 1 -- on b")]
        assert sources(room.cells) == on_main.cells()  # the API is on main
        assert on_b.doc.oplog_vv != on_main.doc.oplog_vv

        room.flush()
        pump(on_b)
        assert any(m["kind"] == "saved" and m["branch"] == "b" for m in on_b.received)
        # a merge reaches main's views as an update, and b's views ignore it
        room.merge("b")
        pump(on_main, on_b)
        assert on_main.cells() == [("one", "select 1 -- on b"), ("two", "select 2")]
        assert on_b.cells() == [("one", "select 1 -- on b")]


def test_branch_and_merge_requests_from_a_view(lake):
    with snb.SqlRoom("requests", lake=lake) as room:
        room.add_cell("select 1", name="one")
        view = FakeView(room, "v")
        other = FakeView(room, "w")
        view.hello()
        other.hello()
        pump(view, other)
        view.send({"kind": "branch", "id": "r1", "name": "mine", "author": "cy"})
        pump(view, other)
        created = [m for m in view.received if m["kind"] == "branch_created"]
        assert created == [{"kind": "branch_created", "to": "v", "id": "r1", "name": "mine"}]
        listed = [m for m in other.received if m["kind"] == "branches"][-1]
        assert [b["name"] for b in listed["branches"]] == ["main", "mine"]
        assert listed["branches"][1]["created_by"] == "cy"

        # the view switches: a fresh replica says hello on the new branch
        mine = FakeView(room, "v2", branch="mine")
        mine.hello()
        pump(mine)
        mine.edit(lambda d: nb.add_cell(d, "select 5", name="five"))
        pump(mine, view)
        assert ("five", "select 5") not in view.cells()

        mine.send({"kind": "merge", "id": "r2", "source": "mine", "into": "main", "preview": True})
        preview = mine.wait_for("merge_preview", "r2")  # answered from the reader thread
        assert [(d["name"], d["status"]) for d in preview["diff"]] == [("five", "added")]
        assert ("five", "select 5") not in sources(room.cells)
        mine.send({"kind": "merge", "id": "r3", "source": "mine", "into": "main", "preview": False})
        pump(mine, view)
        merged = next(m for m in mine.received if m["kind"] == "merged")
        assert merged["current"] == room.version
        assert [(c["name"], c["source"]) for c in preview["cells"]] == sources(room.cells)
        assert ("five", "select 5") in view.cells()

        mine.send({"kind": "hello", "branch": "ghost"}, [mine.doc.oplog_vv.encode()])
        pump(mine)
        error = mine.received[-1]
        assert error["kind"] == "error" and error["code"] == "branch_not_found"
        assert error["to"] == "v2"


def test_history_and_runs_follow_the_views_branch(lake):
    with snb.SqlRoom("history", lake=lake) as room:
        cid = room.add_cell("select 1 as x", name="one")
        room.branch("b")
        room.checkout_branch("b")
        room.update_cell(cid, source="select 2 as x")
        room.checkout_branch("main")
        view = FakeView(room, "v", branch="b")
        view.hello()
        pump(view)
        view.send({"kind": "run", "id": "r", "cell": cid})
        view.send({"kind": "history", "id": "h"})
        assert room._runner.wait_idle()
        pump(view)
        result = next(m for m in view.received if m["kind"] == "result")
        assert result["branch"] == "b"
        reply = view.wait_for("history", "h")
        main_version = room.version
        room.checkout_branch("b")
        assert reply["current"] == room.version != main_version
        assert room.run(cid).column("x").to_pylist() == [2]


def test_sql_cells_see_the_branches_and_the_checked_out_branchs_changes(lake):
    with snb.SqlRoom("sql", lake=lake, author="ana") as room:
        room.add_cell("select 1", name="one")
        room.branch("b", author="bo")
        room.checkout_branch("b")
        room.add_cell("select 2", name="two")
        room.flush()
        cid = room.add_cell(
            "select name, parent, created_by from sqlrooms_history.branches order by name",
            name="lineage",
        )
        assert room.run(cid).to_pylist() == [
            {"name": "b", "parent": "main", "created_by": "bo"},
            {"name": "main", "parent": None, "created_by": None},
        ]
        room.flush()
        count = room.add_cell(
            "select count(*) as n from sqlrooms_history.changes", name="branch_changes"
        )
        # the branch's own rows: what was edited on it (the fork's base lives in main's rows)
        assert room.run(count).column("n").to_pylist()[0] >= 2
