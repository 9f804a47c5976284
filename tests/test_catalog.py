"""The connection's catalog for autocompletion: tables, views, columns, internals left out."""

import duckdb

from sqlrooms_nb import catalog, query


def test_tables_and_views_come_with_their_columns_in_order():
    con = duckdb.connect()
    con.execute("create table flights as select 1 as dep_delay, 'AA' as carrier")
    con.execute("create view late as select carrier from flights where dep_delay > 0")
    con.execute("create schema s; create table s.t (a int)")
    tables = {(t.schema, t.name): t for t in catalog.read_catalog(con)}
    assert tables["main", "flights"].columns == ("dep_delay", "carrier")
    assert tables["main", "flights"].kind == "table" and tables["main", "flights"].database == ""
    assert tables["main", "late"].kind == "view" and tables["main", "late"].columns == ("carrier",)
    assert tables["s", "t"].columns == ("a",)
    assert list(tables)[:2] == [("main", "flights"), ("main", "late")]  # main schema first


def test_result_tables_and_duckdb_internals_are_left_out():
    con = duckdb.connect()
    con.execute(f"create table {query.result_relation('main', 'c1')} as select 1 as x")
    con.execute("create table visible as select 1 as x")
    names = [t.name for t in catalog.read_catalog(con)]
    assert names == ["visible"]


def test_other_databases_are_named_and_the_column_cap_holds(monkeypatch):
    con = duckdb.connect()
    con.execute("attach ':memory:' as other; create table other.main.o (a int, b int)")
    con.execute("create table wide as select 1 as a, 2 as b, 3 as c")
    tables = catalog.read_catalog(con)
    assert [(t.database, t.name) for t in tables] == [("", "wide"), ("other", "o")]
    monkeypatch.setattr(catalog, "MAX_CATALOG_COLUMNS", 4)
    assert [t.name for t in catalog.read_catalog(con)] == ["wide"]


def test_a_closed_connection_gives_an_empty_catalog():
    con = duckdb.connect()
    con.close()
    assert catalog.read_catalog(con) == ()
