"""Chart cells: the spec in the document, the chart query, and chart data over the comm."""

import duckdb
import pyarrow as pa
import pytest
from loro import ExportMode

import sqlrooms_nb as snb
from sqlrooms_nb import charts
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import QueryError, ValidationError

from .fakes import FakeView

COLUMNS = ["carrier", "month", "delay"]


def spec(**fields: str) -> nb.ChartSpec:
    return nb.ChartSpec(**{"source": "flights", **fields})


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute(
        "create view flights as select * from (values "
        "('AA', 1, 10), ('AA', 1, 20), ('AA', 2, 5), ('UA', 1, 7), ('UA', 2, 1)"
        ") t(carrier, month, delay)"
    )
    return c


def test_raw_rows_are_selected_x_then_y_then_color_with_a_limit():
    sql = charts.chart_query(spec(x="month", y="delay", color="carrier"), COLUMNS)
    assert sql == (
        f'SELECT "month", "delay", "carrier" FROM "flights" LIMIT {charts.MAX_CHART_ROWS}'
    )


def test_an_aggregate_groups_by_x_and_color_and_names_its_value():
    sql = charts.chart_query(spec(x="month", y="delay", aggregate="mean"), COLUMNS)
    assert sql == (
        'SELECT "month", avg("delay") AS "mean_delay" FROM "flights" GROUP BY ALL ORDER BY ALL'
    )
    counted = charts.chart_query(spec(x="carrier", aggregate="count"), COLUMNS)
    assert counted.startswith('SELECT "carrier", count(*) AS "count" FROM "flights"')


def test_output_names_never_clash_when_a_column_plays_two_roles():
    sql = charts.chart_query(spec(x="month", y="month", color="month"), COLUMNS)
    assert sql.startswith('SELECT "month", "month" AS "month_2", "month" AS "month_3" FROM')


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": ""}, "choose the SQL cell"),
        ({"x": ""}, "x column"),
        ({"x": "month", "y": ""}, "y column"),
        ({"x": "month", "y": "nope"}, "no column 'nope'"),
        ({"x": "month", "y": "delay", "color": 'x"; drop table t; --'}, "no column"),
        ({"x": "month", "y": "delay", "aggregate": "median"}, "aggregate"),
        ({"x": "month", "y": "delay", "mark": "pie"}, "mark"),
        ({"source": 'flights"; --', "x": "month", "y": "delay"}, "not valid"),
    ],
)
def test_incomplete_or_unknown_specs_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        charts.chart_query(spec(**fields), COLUMNS)


def test_chart_data_aggregates_on_duckdb_and_sends_numbers_as_doubles(con):
    table = charts.chart_data(con, spec(x="carrier", y="delay", aggregate="sum"))
    assert table.column_names == ["carrier", "sum_delay"]
    assert table.schema.field("sum_delay").type == pa.float64()
    assert table.to_pylist() == [
        {"carrier": "AA", "sum_delay": 35.0},
        {"carrier": "UA", "sum_delay": 8.0},
    ]


def test_chart_data_of_a_result_that_does_not_exist_says_to_run_it(con):
    with pytest.raises(QueryError, match="run that SQL cell first"):
        charts.chart_data(con, nb.ChartSpec(source="nothing", x="a", y="b"))


def test_dates_become_millisecond_timestamps():
    table = pa.table({"d": pa.array([0], pa.date32()), "n": pa.array([1], pa.decimal128(38, 0))})
    out = charts.for_browser(table)
    assert out.schema.field("d").type == pa.timestamp("ms")
    assert out.schema.field("n").type == pa.float64()


# --- the spec in the document ------------------------------------------------------------------


def test_a_new_chart_cell_has_its_chart_map_with_defaults():
    doc = nb.new_doc()
    cid = nb.add_cell(doc, kind="chart")
    doc.commit()
    assert nb.read_chart(doc, cid) == nb.ChartSpec()
    assert [(c.kind, c.name) for c in nb.read_cells(doc)] == [("chart", "")]


def test_chart_fields_set_concurrently_by_two_peers_both_survive():
    a = nb.new_doc()
    cid = nb.add_cell(a, kind="chart")
    a.commit()
    b = nb.new_doc()
    b.import_(a.export(ExportMode.Snapshot()))
    nb.set_chart(a, cid, x="month")
    a.commit()
    nb.set_chart(b, cid, mark="line", y="delay")
    b.commit()
    a.import_(b.export(ExportMode.Snapshot()))
    b.import_(a.export(ExportMode.Snapshot()))
    assert nb.read_chart(a, cid) == nb.read_chart(b, cid)
    assert nb.read_chart(a, cid) == nb.ChartSpec(mark="line", x="month", y="delay")


def test_set_chart_refuses_unknown_marks_fields_and_other_cell_kinds():
    doc = nb.new_doc()
    cid = nb.add_cell(doc, kind="chart")
    sql = nb.add_cell(doc, "select 1", name="one")
    with pytest.raises(ValidationError, match="mark"):
        nb.set_chart(doc, cid, mark="pie")
    with pytest.raises(ValidationError, match="aggregate"):
        nb.set_chart(doc, cid, aggregate="median")
    with pytest.raises(ValidationError, match="field"):
        nb.set_chart(doc, cid, title="x")
    with pytest.raises(ValidationError, match="not a chart cell"):
        nb.set_chart(doc, sql, x="a")


# --- the room ----------------------------------------------------------------------------------


@pytest.fixture
def room(tmp_path, con):
    with snb.SqlRoom("charts", lake=str(tmp_path / "lake"), connection=con) as r:
        yield r


def test_update_chart_validates_and_chart_cells_do_not_run(room):
    cid = room.add_cell(kind="chart")
    room.update_chart(cid, source="flights", x="month", y="delay", aggregate="max")
    assert nb.read_chart(room.doc, cid) == spec(x="month", y="delay", aggregate="max")
    with pytest.raises(ValidationError):
        room.update_chart(cid, mark="pie")
    with pytest.raises(ValidationError, match="only SQL cells run"):
        room.run(cid)
    assert room.chart_data(cid).to_pylist() == [
        {"month": 1.0, "max_delay": 20.0},
        {"month": 2.0, "max_delay": 5.0},
    ]


def test_a_view_asking_for_chart_data_gets_arrow_rows_only_it_sees(room):
    cid = room.add_cell(kind="chart")
    room.update_chart(cid, source="flights", x="carrier", aggregate="count")
    got: list[tuple[dict, list[bytes]]] = []
    disconnect = room.connect(lambda content, buffers: got.append((content, buffers)))
    a = FakeView(room, "a")
    a.send({"kind": "chart_data", "id": "c1", "cell": cid})
    disconnect()
    (content, buffers) = got[-1]
    assert content == {
        "kind": "chart_data",
        "to": "a",
        "id": "c1",
        "cell": cid,
        "branch": "main",
        "rows": 2,
    }
    table = pa.ipc.open_stream(buffers[0]).read_all()
    assert table.to_pylist() == [{"carrier": "AA", "count": 3.0}, {"carrier": "UA", "count": 2.0}]


def test_an_incomplete_chart_gets_an_error_to_that_view_only(room):
    cid = room.add_cell(kind="chart")
    a = FakeView(room, "a")
    a.send({"kind": "chart_data", "id": "c2", "cell": cid})
    a.pump()
    error = a.received[-1]
    assert error["kind"] == "error" and error["to"] == "a" and error["id"] == "c2"
    assert error["code"] == "invalid" and "cell" not in error
