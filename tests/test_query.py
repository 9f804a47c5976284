"""SQL cells on DuckDB: result views, statements, errors with positions, Arrow IPC."""

import duckdb
import pyarrow as pa
import pytest

from sqlrooms_nb import query
from sqlrooms_nb.errors import QueryError, ValidationError


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("create table flights as select range as id, range % 3 as carrier from range(2500)")
    return c


def test_a_result_becomes_a_view_later_cells_can_query(con):
    r = query.run_cell(
        con, "per_carrier", "select carrier, count(*) as n from flights group by 1 order by 1"
    )
    assert r.view and r.table.column("n").to_pylist() == [834, 833, 833]
    assert r.columns == (("carrier", "BIGINT"), ("n", "BIGINT"))
    again = query.run_cell(con, "top", "select max(n) as m from per_carrier")
    assert again.table.column("m").to_pylist() == [834]
    assert con.sql("select count(*) from per_carrier").fetchone() == (3,)


def test_rerunning_replaces_the_view(con):
    query.run_cell(con, "v", "select 1 as x")
    query.run_cell(con, "v", "select 2 as x")
    assert con.sql("select x from v").fetchall() == [(2,)]


def test_several_statements_run_in_order_and_the_last_defines_the_result(con):
    r = query.run_cell(
        con,
        "res",
        "create table t as select 7 as a;\ninsert into t values (8);\nselect sum(a) as s from t",
    )
    assert r.table.column("s").to_pylist() == [15]


def test_a_statement_that_is_not_a_query_returns_its_own_result(con):
    r = query.run_cell(con, "made", "create table z as select 1 as a")
    assert not r.view
    assert con.sql("select * from z").fetchall() == [(1,)]


def test_describe_runs_even_though_it_cannot_be_a_view(con):
    r = query.run_cell(con, "d", "describe flights")
    assert "column_name" in r.table.column_names


def test_names_are_validated_before_reaching_sql(con):
    with pytest.raises(ValidationError):
        query.run_cell(con, 'x"; drop table flights; --', "select 1")
    assert con.sql("select count(*) from flights").fetchone() == (2500,)


def test_syntax_errors_carry_zero_based_positions(con):
    with pytest.raises(QueryError) as info:
        query.run_cell(con, "bad", "select 1,\n  2 frm flights")  # "2 frm" is "2 AS frm"
    err = info.value
    assert "syntax error" in str(err).lower()
    assert (err.line, err.column) == (1, 8)
    assert "LINE" not in str(err)


def test_binder_errors_point_into_the_cell_not_the_view_wrapper(con):
    with pytest.raises(QueryError) as info:
        query.run_cell(con, "bad", "select nope from flights")
    assert "nope" in str(info.value)
    assert (info.value.line, info.value.column) == (0, 7)


def test_errors_in_a_later_statement_are_positioned_in_the_cell(con):
    with pytest.raises(QueryError) as info:
        query.run_cell(con, "bad", "select 1;\nselect missing_col from flights")
    assert (info.value.line, info.value.column) == (1, 7)


def test_an_empty_cell_is_a_clear_error(con):
    with pytest.raises(QueryError, match="no SQL statement"):
        query.run_cell(con, "empty", "  -- nothing\n")


def test_ipc_preview_holds_the_first_rows_and_reads_back(con):
    r = query.run_cell(con, "all", "select id, 'x' || id as label from flights")
    ipc = query.to_ipc(r.table, max_rows=1000)
    back = pa.ipc.open_stream(ipc).read_all()
    assert back.num_rows == 1000 and r.table.num_rows == 2500
    assert back.column("label")[0].as_py() == "x0"
    assert back.schema.field("label").type == pa.string()


def test_error_position_handles_elided_long_lines():
    sql = "select " + ", ".join(f"c{i}" for i in range(60)) + ", oops from t"
    shown = "...c58, c59, oops from t"
    message = f"Binder Error: x\n\nLINE 1: {shown}\n" + " " * (8 + shown.index("oops")) + "^"
    line, column = query.error_position(message, sql)
    assert line == 0 and sql[column:].startswith("oops")
