"""The Python side of results: room.result, room.run_all, the widget's results trait, catalog."""

import duckdb
import pyarrow as pa
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb.errors import CellNotFoundError, QueryError, ValidationError

from .fakes import FakeView


@pytest.fixture
def room(tmp_path):
    con = duckdb.connect()
    con.execute(
        "create table flights as select range as id, range % 7 as dep_delay from range(100)"
    )
    with snb.SqlRoom("pyapi", lake=str(tmp_path / "lake"), connection=con, author="ana") as r:
        yield r


def test_result_returns_the_cells_full_result_as_an_arrow_table(room):
    cid = room.add_cell("select * from flights where dep_delay > 3", name="late")
    room.run(cid)
    table = room.result("late")
    assert isinstance(table, pa.Table)
    assert table.num_rows == 42 and table.column_names == ["id", "dep_delay"]
    assert table.to_pandas()["dep_delay"].min() == 4


def test_result_of_an_unknown_name_or_a_cell_not_run_yet_says_what_to_do(room):
    room.add_cell("select 1 as x", name="one")
    with pytest.raises(CellNotFoundError, match="nope") as info:
        room.result("nope")
    assert isinstance(info.value, KeyError)
    with pytest.raises(ValidationError, match="run it first"):
        room.result("one")


def test_result_after_a_failed_run_says_the_run_failed(room):
    cid = room.add_cell("select * from missing_table", name="broken")
    with pytest.raises(QueryError):
        room.run(cid)
    with pytest.raises(ValidationError, match="last run failed"):
        room.result("broken")


def test_run_all_runs_every_cell_in_dependency_order_and_returns_row_counts(room):
    room.add_cell("select * from late where id < 50", name="early_late")
    room.add_cell("select * from flights where dep_delay > 3", name="late")
    rows = room.run_all()
    assert rows == {"late": 42, "early_late": 21}
    assert room.result("early_late").num_rows == 21


def test_run_all_names_the_cells_that_failed(room):
    room.add_cell("select 1 as x", name="fine")
    room.add_cell("select * from nowhere", name="bad")
    with pytest.raises(QueryError, match="bad"):
        room.run_all()
    assert room.result("fine").num_rows == 1


def test_the_widget_results_trait_summarises_each_run_with_who_asked(room):
    widget = room.widget
    cid = room.add_cell("select * from flights", name="all_flights")
    view = FakeView(room, "v1")
    view.send({"kind": "run", "id": "r1", "cell": cid})
    assert room._runner.wait_idle()
    entry = widget.results["all_flights"]
    assert entry == {"cell": cid, "branch": "main", "rows": 100, "run": 1, "view": "v1"}
    room.update_cell(cid, name="flights_all")
    room.run(cid)
    assert room._runner.wait_idle()
    assert list(widget.results) == ["flights_all"]  # the old name went with the rename
    assert widget.results["flights_all"]["run"] == 2
    assert widget.results["flights_all"]["view"] is None


def test_views_get_the_catalog_after_welcome_and_after_each_run(room):
    view = FakeView(room, "v")
    view.hello()
    view.pump()
    catalogs = [m for m in view.received if m["kind"] == "catalog"]
    assert (
        catalogs
        and {
            "name": "flights",
            "database": "",
            "schema": "main",
            "columns": ["id", "dep_delay"],
            "kind": "table",
        }
        in catalogs[-1]["tables"]
    )
    cid = room.add_cell("select id from flights", name="ids")
    view.send({"kind": "run", "id": "r", "cell": cid})
    assert room._runner.wait_idle()
    view.pump()
    last = [m for m in view.received if m["kind"] == "catalog"][-1]
    assert {
        "name": "ids",
        "database": "",
        "schema": "main",
        "columns": ["id"],
        "kind": "view",
    } in last["tables"]
    assert not any(t["name"].startswith("_snb_") for t in last["tables"])
