"""Exports of a notebook: SQL script, marimo app, Jupyter notebook, JSON (sqlrooms_nb.export).

Each format is checked by running what it wrote: the SQL script in DuckDB, the marimo app with
``app.run()`` in a subprocess, the notebook's code cells with ``exec`` in order.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pytest

from sqlrooms_nb import export as ex
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import ValidationError

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def make_notebook(build: Any) -> ex.ExportedNotebook:
    """An export of a new document that ``build(doc)`` fills in."""
    doc = nb.new_doc()
    nb.ensure_schema(doc)
    build(doc)
    doc.commit()
    return ex.from_doc(doc, room="r1", branch="main", exported_at=AT)


def flights_notebook(doc: Any) -> None:
    """Cells that read each other (one of them before the cell it reads), three kinds of input,
    text that needs escaping in Python (braces, quotes, backslashes), a multi-statement cell."""
    nb.add_cell(doc, '# Flights\nA "quoted" word, \\alpha and {braces}.', kind="markdown")
    nb.add_cell(doc, "select * from late where id < $limit", name="early_late")
    nb.add_cell(
        doc,
        "select range as id, range % 7 as delay, 'O''Hare' as origin,\n"
        "  '{x}\\n' as odd -- a comment with $limit\nfrom range(20) where range % 7 > 3",
        name="late",
    )
    limit = nb.add_cell(doc, "how many", kind="input", name="limit")
    nb.set_input(doc, limit, type="number", value=10)
    origin = nb.add_cell(doc, kind="input", name="origin")
    nb.set_input(doc, origin, value="O'Hare")
    pick = nb.add_cell(doc, kind="input", name="pick")
    nb.set_input(doc, pick, type="select", value="4", options_sql="select distinct delay from late")
    nb.add_cell(
        doc,
        "select count(*) as n, any_value(origin) as origin from early_late "
        "where origin = $origin and delay::varchar = $pick and odd = '{x}\\n' and '$origin' <> ''",
        name="summary",
    )
    nb.add_cell(
        doc, "create or replace table t as select 1 as q;\nselect q + 1 as q2 from t", name="multi"
    )
    nb.add_cell(doc, 'select 42 as "the answer"', name="max")  # a builtin's name in Python
    nb.add_cell(doc, 'select "the answer" + 1 as a from "max"', name="after_max")
    chart = nb.add_cell(doc, kind="chart")
    nb.set_chart(doc, chart, source="late", x="id", y="delay")


@pytest.fixture
def flights() -> ex.ExportedNotebook:
    return make_notebook(flights_notebook)


def room_results() -> dict[str, list[tuple[Any, ...]]]:
    """What the cells give in DuckDB with the inputs' values substituted by hand."""
    con = duckdb.connect()
    con.execute(
        "create view late as select range as id, range % 7 as delay, 'O''Hare' as origin, "
        "'{x}\\n' as odd from range(20) where range % 7 > 3"
    )
    con.execute("create view early_late as select * from late where id < 10.0")
    return {
        "early_late": con.sql("select id from early_late order by id").fetchall(),
        "summary": con.sql(
            "select count(*), any_value(origin) from early_late "
            "where origin = 'O''Hare' and delay::varchar = '4' and odd = '{x}\\n'"
        ).fetchall(),
    }


def test_an_unknown_format_is_a_validation_error(flights):
    with pytest.raises(ValidationError, match=r"unknown export format 'pdf': use one of sql, "):
        ex.export(flights, "pdf")


def test_json_holds_the_metadata_and_every_cell_with_its_spec(flights):
    data = json.loads(ex.export(flights, "json"))
    assert data["format"] == "sqlrooms_nb"
    assert (data["room"], data["branch"], data["exported_at"]) == ("r1", "main", AT.isoformat())
    assert data["version"] == flights.version
    assert [c["kind"] for c in data["cells"]] == [c.kind for c in flights.cells]
    assert [c["source"] for c in data["cells"]] == [c.source for c in flights.cells]
    by_name = {c["name"]: c for c in data["cells"]}
    assert by_name["limit"]["input"] == {"type": "number", "value": 10.0, "options_sql": ""}
    assert by_name["pick"]["input"]["options_sql"] == "select distinct delay from late"
    chart = next(c for c in data["cells"] if c["kind"] == "chart")
    assert chart["chart"]["source"] == "late" and chart["chart"]["y"] == "delay"


def test_the_sql_script_runs_in_duckdb_with_views_and_variables(flights):
    script = ex.export(flights, "sql")
    assert script.startswith("-- sqlrooms_nb notebook export\n-- room: r1\n-- branch: main\n")
    assert f"-- version: {flights.version}\n" in script
    assert "-- exported at: 2026-01-02T03:04:05+00:00" in script
    assert "SET VARIABLE \"limit\" = CAST('10.0' AS DOUBLE);" in script
    assert "-- # Flights" in script  # markdown as comments
    assert "'$origin' <> ''" in script  # a string is not a parameter
    assert "a comment with $limit" in script  # nor is a comment
    con = duckdb.connect()
    con.execute(script)
    expected = room_results()
    assert con.sql("select id from early_late order by id").fetchall() == expected["early_late"]
    assert con.sql("select * from summary").fetchall() == expected["summary"]
    assert con.sql("select * from multi").fetchall() == [(2,)]
    assert con.sql("select * from after_max").fetchall() == [(43,)]
    # Cells are views reading the variables: a new value shows at once.
    con.execute('SET VARIABLE "limit" = 6.0')
    assert con.sql("select count(*) from early_late").fetchall() == [(2,)]


def test_the_sql_script_puts_a_cell_after_the_cells_it_reads(flights):
    script = ex.export(flights, "sql")
    assert script.index('VIEW "late"') < script.index('VIEW "early_late"')
    assert script.index('VIEW "early_late"') < script.index('VIEW "summary"')


def test_sql_cells_without_a_query_or_with_unknown_parameters_are_kept_as_written():
    def build(doc: Any) -> None:
        nb.add_cell(doc, "create table t as select 1 as a", name="q1")
        nb.add_cell(doc, "select $nobody as x", name="q2")
        nb.add_cell(doc, "select 1 as x -- trailing comment", name="q3")

    script = ex.export(make_notebook(build), "sql")
    assert "\ncreate table t as select 1 as a;\n" in script
    assert "-- cell q2 (no input cell named $nobody: it fails)" in script
    assert 'CREATE OR REPLACE VIEW "q3" AS select 1 as x -- trailing comment\n;' in script


def test_the_notebook_runs_its_code_cells_in_order(flights):
    text = ex.export(flights, "ipynb")
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5)
    assert notebook.metadata["sqlrooms_nb"]["room"] == "r1"
    kinds = [c.cell_type for c in notebook.cells]
    assert kinds.count("markdown") == 3  # title, the markdown cell, the chart's note
    params = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    assert "limit = 10.0" in params.source and 'origin = "O\'Hare"' in params.source
    namespace: dict[str, Any] = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, f"<cell {cell.id}>", "exec"), namespace)
    expected = room_results()
    assert namespace["early_late"].order("id").select("id").fetchall() == expected["early_late"]
    assert namespace["summary"].fetchall() == expected["summary"]
    assert namespace["after_max"].fetchall() == [(43,)]
    # Changing a parameter and running again uses the new value.
    namespace["limit"] = 6.0
    early = next(c for c in notebook.cells if c.source.startswith("early_late ="))
    exec(early.source, namespace)
    assert namespace["early_late"].count("*").fetchall() == [(2,)]


def test_the_marimo_app_runs_and_gives_the_rooms_results(flights, tmp_path):
    source = ex.export(flights, "marimo")
    compile(source, "app.py", "exec")
    assert f'__generated_with = "{ex.MARIMO_VERSION}"' in source
    assert '    early_late = mo.sql(f"""\n' in source
    assert "{sql_literal(limit.value)}" in source
    assert "mo.ui.dropdown(" in source and "mo.ui.number(value=10.0" in source
    assert 'CREATE OR REPLACE TABLE "max" AS' in source  # `max` stays the builtin
    results = run_marimo(source, tmp_path, ["early_late", "summary", "multi", "after_max", "pick"])
    expected = room_results()
    assert sorted(r["id"] for r in results["early_late"]) == [i for (i,) in expected["early_late"]]
    assert [(r["n"], r["origin"]) for r in results["summary"]] == expected["summary"]
    assert results["multi"] == [{"q2": 2}]
    assert results["after_max"] == [{"a": 43}]
    assert results["pick"] == "4"  # the dropdown's value, one of its options


def test_python_literals_survive_any_text(tmp_path):
    nasty = ['ends with a quote "', 'three """ quotes', "a backslash \\", "cr \r esc \x1b end"]

    def build(doc: Any) -> None:
        for i, text in enumerate(nasty):
            nb.add_cell(doc, text, kind="markdown")
            nb.add_cell(doc, "select " + _sql_string(text) + " as t", name=f"s{i}")

    exported = make_notebook(build)
    names = [f"s{i}" for i in range(len(nasty))]
    results = run_marimo(ex.export(exported, "marimo"), tmp_path, names)
    assert [results[name][0]["t"] for name in names] == nasty
    namespace: dict[str, Any] = {}
    notebook = nbformat.reads(ex.export(exported, "ipynb"), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(cell.source, namespace)
    assert [namespace[f"s{i}"].fetchone()[0] for i in range(len(nasty))] == nasty


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_marimo(source: str, folder: Path, names: list[str]) -> dict[str, Any]:
    """Write ``source`` as a module, run ``app.run()`` in a new Python and return the
    definitions ``names`` as JSON values (data frames as lists of row dicts, UI elements as
    their value)."""
    assert importlib.util.find_spec("sqlglot") is not None, (
        "marimo's mo.sql needs sqlglot: pip install sqlglot"
    )
    module = folder / "exported_app.py"
    module.write_text(source, encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(folder)!r})
        from exported_app import app
        outputs, defs = app.run()

        def plain(value):
            if hasattr(value, "to_dicts"):  # polars
                return value.to_dicts()
            if hasattr(value, "to_dict"):  # pandas
                return value.to_dict("records")
            return getattr(value, "value", value)  # a UI element

        out = {{name: plain(defs[name]) for name in {names!r}}}
        print(json.dumps(out, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=folder
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
