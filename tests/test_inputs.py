"""Input cells: parameters bound to SQL cells as DuckDB prepared-statement parameters."""

import time

import duckdb
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb import deps, query
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import QueryError, ValidationError

from .fakes import FakeView


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "create table flights as select * from (values ('JFK', 'UA', 10), ('EWR', 'AA', 20),"
        " ('O''Hare', 'UA', 30), ('JFK', 'AA', 40)) t(origin, carrier, delay)"
    )
    return con


@pytest.fixture
def room(tmp_path, con):
    with snb.SqlRoom("inputs", lake=str(tmp_path / "lake"), connection=con, author="ana") as r:
        yield r


def wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def results_of(view: FakeView, cell: str) -> list[dict]:
    view.pump()
    return [m for m in view.received if m["kind"] == "result" and m["cell"] == cell]


def test_parameter_names_come_from_the_parser_not_from_strings_or_comments():
    assert deps.parameter_names("select $a, $b from t where x = $a") == ("a", "b")
    assert deps.parameter_names("select '$not' -- $nor\n, $yes") == ("yes",)
    assert deps.parameter_names("create table x as select $c as c") == ("c",)
    assert deps.parameter_names("select ?, 1") == ()


def test_input_cells_store_a_typed_value_and_validate_it():
    doc = nb.new_doc()
    cid = nb.add_cell(doc, kind="input", name="carrier")
    assert nb.read_input(doc, cid) == nb.InputSpec("text", "", "")
    nb.set_input(doc, cid, value="UA")
    nb.set_input(doc, cid, type="number")  # "UA" is not a number: the value clears
    assert nb.read_input(doc, cid).value is None
    nb.set_input(doc, cid, value="12.5")
    assert nb.read_inputs(doc) == {"carrier": nb.InputSpec("number", 12.5, "")}
    with pytest.raises(ValidationError):
        nb.set_input(doc, cid, value="many")
    with pytest.raises(ValidationError):
        nb.set_input(doc, cid, type="slider")
    with pytest.raises(ValidationError):
        nb.add_cell(doc, kind="input", name="not a name")
    sql = nb.add_cell(doc, "select 1")
    with pytest.raises(ValidationError):
        nb.set_input(doc, sql, value="x")


def test_a_value_with_quotes_is_bound_never_spliced(room, con):
    inp = room.add_cell(kind="input", name="origin")
    cell = room.add_cell("select carrier, delay from flights where origin = $origin", name="q")
    room.set_input(inp, value="O'Hare")
    assert room.run(cell).to_pylist() == [{"carrier": "UA", "delay": 30}]
    room.set_input(inp, value="'; drop table flights; --")
    room._runner.wait_idle()
    assert room.run(cell).num_rows == 0
    assert con.execute("select count(*) from flights").fetchone() == (4,)
    # A parameterised result is a TABLE (a view cannot hold a parameter): later cells read it.
    kind = con.execute("select table_type from information_schema.tables where table_name = 'q'")
    assert kind.fetchone() == ("BASE TABLE",)


def test_a_number_input_binds_a_number(room):
    inp = room.add_cell(kind="input", name="min_delay")
    room.set_input(inp, type="number", value=25)
    cell = room.add_cell("select count(*) as n from flights where delay >= $min_delay")
    assert room.run(cell).to_pylist() == [{"n": 2}]


def test_a_missing_input_is_a_per_cell_error(room):
    cell = room.add_cell("select * from flights where carrier = $carrier")
    with pytest.raises(QueryError, match="no input cell named carrier"):
        room.run(cell)


def test_run_cell_refuses_a_parameter_without_a_value(con):
    with pytest.raises(QueryError, match=r"no value for parameter \$x"):
        query.run_cell(con, "q", "select $x", params={})


def test_select_options_come_from_the_options_query(room):
    inp = room.add_cell(kind="input", name="origin")
    options_sql = "select distinct origin from flights order by 1"
    room.set_input(inp, type="select", value="JFK", options_sql=options_sql)
    view = FakeView(room, "a")
    view.hello()
    message = view.wait_for("input_options")
    assert message["cell"] == inp and message["options"] == ["EWR", "JFK", "O'Hare"]
    assert message["error"] is None
    room.set_input(inp, options_sql="select nope from flights")
    wait_until(lambda: results_with_error(view))


def results_with_error(view: FakeView) -> bool:
    view.pump()
    return any(m["kind"] == "input_options" and m["error"] for m in view.received)


def test_changing_an_input_in_a_view_reruns_the_cells_that_read_it(room):
    inp = room.add_cell(kind="input", name="carrier")
    room.set_input(inp, value="UA")
    cell = room.add_cell(
        "select sum(delay) as total from flights where carrier = $carrier", name="total"
    )
    after = room.add_cell("select total * 2 as twice from total", name="twice")
    room.run(cell)
    room._runner.wait_idle()
    view = FakeView(room, "a")
    view.hello()
    view.pump()
    before = len(results_of(view, after))
    view.edit(lambda doc: nb.set_input(doc, inp, value="AA"))
    wait_until(lambda: len(results_of(view, after)) > before)
    room._runner.wait_idle()
    assert room.run(after, cascade=False).to_pylist() == [{"twice": 120}]
    assert not room._runner.stale(room.current_branch)
