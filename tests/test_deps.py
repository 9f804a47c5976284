"""Dependencies of SQL cells from DuckDB's parser, and the cells' dependency graph."""

from sqlrooms_nb.deps import CellSql, TableRef, build_graph, table_refs


def names(sql: str) -> list[str]:
    return [str(r) for r in table_refs(sql)]


def test_joins_read_every_joined_table():
    sql = "select * from a join b using (x) left join c on c.y = a.y, d"
    assert names(sql) == ["a", "b", "c", "d"]


def test_cte_names_are_not_dependencies_but_what_they_read_is():
    sql = (
        "with t as (select * from base), u as (select * from t) select * from u join other using(k)"
    )
    assert names(sql) == ["base", "other"]


def test_recursive_ctes_do_not_depend_on_themselves():
    assert (
        names("with recursive r as (select 1 as n union all select n + 1 from r) select * from r")
        == []
    )


def test_a_cte_name_outside_its_scope_is_a_dependency():
    assert names("select * from (with t as (select 1) select * from t), t") == ["t"]


def test_subqueries_anywhere_are_found():
    sql = (
        "select (select max(v) from s1) from a where x in (select x from s2) "
        "and exists (select 1 from s3) union all select * from (select * from s4)"
    )
    assert names(sql) == ["a", "s1", "s2", "s3", "s4"]


def test_quoted_names_keep_their_text_and_qualified_names_their_schema():
    refs = table_refs('select * from "My Table", sales.orders, db.main.x')
    assert refs == (
        TableRef("My Table"),
        TableRef("orders", "sales"),
        TableRef("x", "main", "db"),
    )


def test_table_functions_and_unparsable_text_have_no_references():
    assert names("select * from read_csv('x.csv')") == []
    assert names("select * from where") == []


def test_the_graph_matches_names_case_insensitively_and_in_schema_main_only():
    cells = [
        CellSql("1", "orders", "select 1 as x"),
        CellSql("2", "b", "select * from ORDERS"),
        CellSql("3", "c", "select * from main.b join sales.orders using (x)"),
        CellSql("4", "d", "select * from c, flights"),
    ]
    g = build_graph(cells)
    assert g.upstream == {"1": set(), "2": {"1"}, "3": {"2"}, "4": {"3"}}
    assert g.descendants("1") == {"2", "3", "4"}
    assert g.unresolved["4"] == {"flights"}


def test_topological_order_puts_upstream_first_and_ties_in_notebook_order():
    cells = [
        CellSql("d", "d", "select * from b, c"),
        CellSql("b", "b", "select * from a"),
        CellSql("c", "c", "select * from a"),
        CellSql("a", "a", "select 1"),
    ]
    g = build_graph(cells)
    assert g.topological(["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    assert g.topological(["d", "c"]) == ["c", "d"]


def test_cycles_are_found_with_their_members():
    cells = [
        CellSql("1", "x", "select * from z"),
        CellSql("2", "y", "select * from x"),
        CellSql("3", "z", "select * from y"),
        CellSql("4", "w", "select * from x"),
        CellSql("5", "me", "select * from me"),
    ]
    g = build_graph(cells)
    assert g.cycles() == {"1", "2", "3", "5"}
    assert g.cycle_of("2") == ["1", "2", "3"]
    assert g.cycle_of("4") == []
    assert g.topological(["1", "2", "3", "4"]) == ["1", "2", "3", "4"]
