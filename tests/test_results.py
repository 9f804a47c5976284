"""Pages and exports of a stored result, on a real DuckDB connection."""

import io

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sqlrooms_nb import query, results
from sqlrooms_nb.errors import QueryError, ValidationError

REL = query.result_relation("main", "c1")


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute(
        f"""create table {REL} as
        select range as id,
               case when range % 4 = 0 then null else (range * 7) % 10 end as "Delay (min)",
               'r' || range as label
        from range(2500)"""
    )
    return c


def test_pages_without_sort_keep_the_results_order(con):
    t = results.page(con, REL, 1000, 500)
    assert t.column("id").to_pylist() == list(range(1000, 1500))
    assert t.column_names == ["id", "Delay (min)", "label"]


def test_sorting_puts_nulls_last_both_ways_and_breaks_ties_by_result_order(con):
    asc = results.page(con, REL, 0, 5000, [("Delay (min)", False)])
    delays = asc.column("Delay (min)").to_pylist()
    assert delays[:3] == [0, 0, 0] and delays[-1] is None
    assert delays.index(None) == 2500 - 625  # every fourth row is NULL
    ones = [i for i, d in zip(asc.column("id").to_pylist(), delays, strict=True) if d == 0]
    assert ones == sorted(ones)  # ties in result order
    desc = results.page(con, REL, 0, 3, [("Delay (min)", True)])
    assert desc.column("Delay (min)").to_pylist() == [9, 9, 9]
    last = results.page(con, REL, 2499, 10, [("Delay (min)", True)])
    assert last.column("Delay (min)").to_pylist() == [None]


def test_sorting_by_several_columns_quotes_each(con):
    t = results.page(con, REL, 0, 4, [("Delay (min)", True), ("id", True)])
    assert t.column("id").to_pylist() == [2497, 2487, 2477, 2467]


def test_a_sort_column_the_result_lacks_is_refused_by_name(con):
    with pytest.raises(ValidationError, match="no such column"):
        results.page(con, REL, 0, 10, [('id" desc; drop table x; --', False)])
    with pytest.raises(ValidationError, match="no such column"):
        results.page(con, REL, 0, 10, [("ID", False)])


def test_paging_bounds(con):
    assert results.page(con, REL, 2500, 10).num_rows == 0
    assert results.page(con, REL, 10**9, 10).column_names == ["id", "Delay (min)", "label"]
    assert results.page(con, REL, 2495, 10).num_rows == 5
    for offset, limit in [(-1, 10), (0, 0), (0, results.MAX_PAGE_ROWS + 1), (True, 10)]:
        with pytest.raises(ValidationError):
            results.page(con, REL, offset, limit)


def test_a_result_that_is_gone_says_to_run_again(con):
    with pytest.raises(QueryError, match="run the cell again"):
        results.page(con, query.result_relation("main", "nope"), 0, 10)


def test_pages_of_a_view_work_without_a_tiebreak(con):
    con.execute(f"create view v as select * from {REL}")
    t = results.page(con, '"v"', 0, 2, [("id", True)])
    assert t.column("id").to_pylist() == [2499, 2498]


def test_export_csv_and_parquet_hold_the_whole_result(con):
    csv = results.export(con, REL, "csv")
    table = pacsv.read_csv(io.BytesIO(csv))
    assert table.num_rows == 2500 and table.column_names == ["id", "Delay (min)", "label"]
    parquet = results.export(con, REL, "parquet", sort=[("id", True)])
    back = pq.read_table(io.BytesIO(parquet))
    assert back.num_rows == 2500 and back.column("id")[0].as_py() == 2499


def test_export_refuses_other_formats_and_oversized_files(con):
    with pytest.raises(ValidationError, match="csv, parquet"):
        results.export(con, REL, "xlsx")
    with pytest.raises(ValidationError, match="export from Python"):
        results.export(con, REL, "csv", max_bytes=100)


def test_a_cursor_sees_a_result_table_in_an_attached_database(con):
    # Temp tables are private to the cursor that made them; an attached database is shared.
    con.execute("attach ':memory:' as snb_results")
    con.execute("create table snb_results.r as select 1 as x")
    assert results.page(con.cursor(), "snb_results.r", 0, 1).num_rows == 1
    cur = con.cursor()
    cur.execute("create temp table t as select 1 as x")
    with pytest.raises(QueryError):
        results.page(con.cursor(), '"t"', 0, 1)


def test_sorted_copies_serve_deep_pages_in_order_and_follow_new_runs():
    con = duckdb.connect()
    con.execute("CREATE TABLE r AS SELECT range AS i, (range * 7919) % 1000 AS k FROM range(5000)")
    copies = results.SortedCopies()
    run = object()
    name = copies.relation(con, ("main", "c"), run, "r", [("k", True)], '"_sorted_c"')
    assert name == '"_sorted_c"'
    expected = con.execute("SELECT * FROM r ORDER BY k DESC NULLS LAST, i").to_arrow_table()
    deep = results.page(con, name, 4000, 500)
    assert deep.to_pylist() == expected.slice(4000, 500).to_pylist()
    assert copies.relation(con, ("main", "c"), run, "r", [("k", True)], '"_sorted_c"') == name
    assert copies.relation(con, ("main", "c"), run, "r", [], '"_sorted_c"') == "r"
    # a new run of the cell (new result rows) makes a new copy
    con.execute("CREATE OR REPLACE TABLE r AS SELECT range AS i, -range AS k FROM range(10)")
    name = copies.relation(con, ("main", "c"), object(), "r", [("k", True)], '"_sorted_c"')
    assert [row["i"] for row in results.page(con, name, 0, 10).to_pylist()] == list(range(10))
