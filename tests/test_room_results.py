"""A room answers views' page and export requests from a cell's stored result."""

import io
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sqlrooms_nb as snb

from .fakes import FakeView


@pytest.fixture
def room(tmp_path):
    con = duckdb.connect()
    con.execute(
        "create table flights as select range as id, "
        "case when range % 5 = 0 then null else range % 97 end as dep_delay from range(12345)"
    )
    with snb.SqlRoom("grid", lake=str(tmp_path / "lake"), connection=con, author="ana") as r:
        yield r


def reply(view: FakeView, request: str, timeout_s: float = 10.0) -> tuple[dict, list[bytes]]:
    """The kernel's answer to ``request`` (page/export replies come from a reader thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for content, buffers in view.inbox:
            if content.get("id") == request and content.get("to") == view.view:
                return content, buffers
        time.sleep(0.01)
    raise AssertionError(f"no reply to {request}; inbox: {[c for c, _ in view.inbox]}")


def test_pages_come_sorted_from_the_kernel_with_the_runs_row_count(room):
    cid = room.add_cell("select * from flights", name="all_flights")
    room.run(cid)
    a = FakeView(room, "a")
    a.send(
        {
            "kind": "page",
            "id": "p1",
            "cell": cid,
            "offset": 500,
            "limit": 500,
            "sort": [{"column": "dep_delay", "desc": True}],
        }
    )
    content, buffers = reply(a, "p1")
    assert content["kind"] == "page" and content["rows"] == 12345 and content["offset"] == 500
    assert content["sort"] == [{"column": "dep_delay", "desc": True}]
    table = pa.ipc.open_stream(buffers[0]).read_all()
    expected = room._con.sql(
        "select dep_delay from flights order by dep_delay desc nulls last limit 500 offset 500"
    ).fetchall()
    assert table.column("dep_delay").to_pylist() == [d for (d,) in expected]
    a.send({"kind": "page", "id": "p2", "cell": cid, "offset": 12000, "limit": 500})
    content, buffers = reply(a, "p2")
    last = pa.ipc.open_stream(buffers[0]).read_all()
    assert last.num_rows == 345 and last.column("id")[0].as_py() == 12000


def test_results_name_who_ran_them(room):
    cid = room.add_cell("select 1 as x", name="one")
    a = FakeView(room, "a")
    room.run(cid)
    a.pump()
    assert [m["author"] for m in a.received if m["kind"] == "result"] == ["ana"]


def test_exports_carry_the_whole_result_as_a_file(room):
    cid = room.add_cell("select * from flights", name="all_flights")
    room.run(cid)
    a = FakeView(room, "a")
    a.send({"kind": "export", "id": "e1", "cell": cid, "format": "parquet"})
    content, buffers = reply(a, "e1")
    assert content["filename"] == "all_flights.parquet"
    assert pq.read_table(io.BytesIO(buffers[0])).num_rows == 12345
    a.send({"kind": "export", "id": "e2", "cell": cid, "format": "csv"})
    content, buffers = reply(a, "e2")
    assert buffers[0].startswith(b"id,dep_delay\n") and buffers[0].count(b"\n") == 12346


def test_bad_page_requests_get_an_error_to_the_asker(room):
    cid = room.add_cell("select * from flights", name="all_flights")
    a = FakeView(room, "a")
    a.send({"kind": "page", "id": "p0", "cell": cid, "offset": 0, "limit": 10})
    content, _ = reply(a, "p0")
    assert content["kind"] == "error" and "run it first" in content["message"]
    room.run(cid)
    a.send({"kind": "page", "id": "p1", "cell": cid, "limit": 10, "sort": [{"column": "nope"}]})
    content, _ = reply(a, "p1")
    assert content["kind"] == "error" and content["code"] == "invalid" and content["cell"] == cid
    assert "no such column" in content["message"]
