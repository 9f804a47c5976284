"""Running cells through the room's runner: cascades, staleness, cancel, progress, the run log."""

import threading
import time

import duckdb
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb.errors import CancelledError, QueryError

from .fakes import FakeView


@pytest.fixture
def lake(tmp_path):
    return str(tmp_path / "lake")


@pytest.fixture
def room(lake):
    con = duckdb.connect()
    con.execute("create table big as select range as r from range(20000000)")
    with snb.SqlRoom("runner", lake=lake, connection=con, author="ana") as r:
        yield r


def started(view: FakeView) -> list[str]:
    return [m["cell"] for m in view.received if m["kind"] == "run_started"]


def last(view: FakeView, kind: str) -> dict:
    return next(m for m in reversed(view.received) if m["kind"] == kind)


def test_running_a_cell_reruns_its_downstream_cells_in_dependency_order(room):
    c = room.add_cell("select * from b join a using (x)", name="c")
    b = room.add_cell("select x, x * 2 as y from a", name="b")
    a = room.add_cell("select 1 as x", name="a")
    d = room.add_cell("select 42 as unrelated", name="d")
    room.run(a)
    assert room._runner.wait_idle()
    view = FakeView(room, "v")
    view.send({"kind": "run", "id": "r1", "cell": a})
    assert room._runner.wait_idle()
    view.pump()
    assert started(view) == [a, b, c]
    assert d not in started(view)
    assert room._con.sql("select * from c").fetchall() == [(1, 2)]


def test_upstream_cells_that_never_ran_run_first_and_run_all_runs_everything(room):
    b = room.add_cell("select x + 1 as y from a", name="b")
    a = room.add_cell("select 1 as x", name="a")
    assert room.run(b).column("y").to_pylist() == [2]
    view = FakeView(room, "v")
    view.send({"kind": "run_all", "id": "all"})
    assert room._runner.wait_idle()
    view.pump()
    assert started(view) == [a, b]


def test_cells_become_stale_when_their_text_or_an_upstream_cell_changes(room):
    a = room.add_cell("select 1 as x", name="a")
    b = room.add_cell("select x + 1 as y from a", name="b")
    view = FakeView(room, "v")
    view.hello()
    room.run(a)
    assert room._runner.wait_idle()
    assert room._runner.stale("main") == ()
    room.run(a, cascade=False)  # a re-ran after b: b is behind
    assert room._runner.stale("main") == (b,)
    room.run(b)
    assert room._runner.stale("main") == ()
    room.update_cell(a, source="select 5 as x")  # a's text changed: a, and b through it
    assert room._runner.stale("main") == (a, b)
    view.pump()
    assert last(view, "stale")["cells"] == [a, b]
    room.run(a)
    assert room._runner.wait_idle()
    view.pump()
    assert last(view, "stale")["cells"] == []


def test_a_cycle_is_a_per_cell_error(room):
    x = room.add_cell("select * from y", name="x")
    room.add_cell("select * from x", name="y")
    with pytest.raises(QueryError, match="cycle"):
        room.run(x)


def test_a_missing_name_is_a_per_cell_error(room):
    cid = room.add_cell("select * from nowhere_at_all", name="m")
    with pytest.raises(QueryError, match="nowhere_at_all"):
        room.run(cid)


def test_a_long_query_is_cancelled_within_a_second_and_ends_as_cancelled(room):
    cid = room.add_cell(
        "select count(*) from big a, big b where a.r * 3 = b.r + hash(a.r) % 2", name="slow"
    )
    view = FakeView(room, "v")
    view.send({"kind": "run", "id": "r", "cell": cid})
    time.sleep(1.0)  # let it run, and report progress
    asked = time.perf_counter()
    view.send({"kind": "cancel", "id": "c", "cell": cid})
    assert room._runner.wait_idle(5)
    latency = time.perf_counter() - asked
    view.pump()
    assert latency < 1.0, latency
    cancelled = last(view, "cancelled")
    assert cancelled["cell"] == cid and cancelled["id"] == "r"
    assert not any(m["kind"] == "error" and m.get("cell") == cid for m in view.received)
    progress = [m for m in view.received if m["kind"] == "run_progress"]
    assert progress and progress[-1]["elapsed_ms"] > 500


def test_a_second_run_of_a_waiting_cell_is_ignored_visibly(room):
    slow = room.add_cell("select count(*) from big a, big b where a.r = b.r + 1", name="slow")
    quick = room.add_cell("select 1 as one", name="quick")
    view = FakeView(room, "v")
    view.send({"kind": "run", "id": "r1", "cell": slow})
    time.sleep(0.2)
    view.send({"kind": "run", "id": "r2", "cell": quick})
    view.send({"kind": "run", "id": "r3", "cell": quick})
    view.send({"kind": "cancel", "id": "c", "cell": slow})
    assert room._runner.wait_idle(10)
    view.pump()
    assert [m["id"] for m in view.received if m["kind"] == "queued"] == ["r2", "r3"]
    assert started(view).count(quick) == 1


def test_python_runs_can_be_cancelled_from_another_thread(room):
    cid = room.add_cell("select count(*) from big a, big b where a.r = b.r + 1", name="slow")
    threading.Timer(0.5, lambda: room._runner.cancel("main", cid, None)).start()
    with pytest.raises(CancelledError):
        room.run(cid)


def test_every_run_is_logged_in_the_lake_and_queryable(room):
    ok = room.add_cell("select 1 as x", name="ok")
    bad = room.add_cell("select nope", name="bad")
    room.run(ok)
    with pytest.raises(QueryError):
        room.run(bad)
    room.flush()
    rows = room._con.sql(
        "select name, author, status, rows, error is not null, length(sql_hash) "
        "from sqlrooms_history.runs order by started_at"
    ).fetchall()
    assert rows == [("ok", "ana", "ok", 1, False, 64), ("bad", "ana", "error", None, True, 64)]


def test_a_slow_result_that_other_cells_read_becomes_a_table(room, monkeypatch):
    from sqlrooms_nb import query

    monkeypatch.setattr(query, "TABLE_AFTER_MS", 0.0)
    a = room.add_cell("select 1 as x", name="a")
    room.add_cell("select * from a", name="b")
    lone = room.add_cell("select 2 as x", name="lone")
    room.run(a)
    room.run(lone)
    assert room._runner.wait_idle()
    kinds = dict(
        room._con.sql(
            "select table_name, table_type from information_schema.tables "
            "where table_name in ('a', 'lone')"
        ).fetchall()
    )
    assert kinds == {"a": "BASE TABLE", "lone": "VIEW"}
