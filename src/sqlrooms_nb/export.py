"""Exports of a notebook into files people open elsewhere: a DuckDB SQL script, a marimo app, a
Jupyter notebook, or JSON.

Pure text generation: :func:`from_doc` reads what an export needs from a Loro document (cells,
input and chart specs) into an :class:`ExportedNotebook`; :func:`export` (or one of
:func:`to_sql`, :func:`to_marimo`, :func:`to_ipynb`, :func:`to_json`) turns that into the file's
text. Nothing here touches the lake or runs SQL; DuckDB's parser and tokenizer (on a private
in-memory database, see :mod:`sqlrooms_nb.deps`) find dependencies and ``$name`` parameters.

How the notebook's semantics are kept:

- **SQL cells** make their result available under their name. The SQL script does that with
  ``CREATE OR REPLACE VIEW "name" AS <last statement>`` (earlier statements of a cell run as
  they are, as the room runs them); the marimo app and the Jupyter notebook assign the result
  to a Python variable of that name and DuckDB finds it by replacement scan. Cells come in an
  order where every cell follows the cells it reads (sequential formats only; marimo orders
  cells itself).
- **Input cells** are read by SQL cells as ``$name``: the SQL script sets a DuckDB variable
  (``SET VARIABLE name = ...``, read with ``getvariable('name')``); marimo gets a UI element
  and Jupyter a plain Python variable, spliced into the SQL as a quoted literal by a small
  ``sql_literal`` helper written into the file. Numbers are ``DOUBLE``, as the room binds them.
- **Markdown** becomes comments (SQL) or markdown cells; **chart** cells become a note (charts
  are not exported).
"""

from __future__ import annotations

import builtins
import itertools
import json
import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import duckdb
from loro import LoroDoc

from . import deps
from . import history as hist
from . import notebook as nb
from .errors import ValidationError
from .query import quote_ident

FORMATS: tuple[str, ...] = ("sql", "marimo", "ipynb", "json")
"""The export formats, by the names :func:`export` takes."""
SUFFIXES: dict[str, str] = {"sql": ".sql", "marimo": ".py", "ipynb": ".ipynb", "json": ".json"}
"""The usual file suffix of each format."""
MARIMO_VERSION = "0.25.2"
"""The marimo release the generated app's layout follows (``__generated_with``)."""

# The helper the Python formats splice input values into SQL with (the room binds them as
# prepared-statement parameters, which a view or an f-string cannot hold). Numbers go through
# a string cast so that inf/nan stay valid SQL.
_SQL_LITERAL_DEF = '''\
def sql_literal(value):
    """A Python value as a DuckDB literal: NULL, a DOUBLE, or a quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"CAST('{float(value)!r}' AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"'''


@dataclass(frozen=True)
class ExportedNotebook:
    """What an export holds: the cells in notebook order and where they come from.

    ``inputs`` / ``charts``: the spec of each input / chart cell, by cell id (a cell missing
    here exports with the defaults). ``version`` is a version id (see
    :mod:`sqlrooms_nb.history`); ``exported_at`` an aware datetime (now, UTC, by default).
    """

    room: str
    branch: str
    version: str
    cells: tuple[nb.Cell, ...]
    inputs: Mapping[str, nb.InputSpec] = field(default_factory=dict)
    charts: Mapping[str, nb.ChartSpec] = field(default_factory=dict)
    exported_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def from_doc(
    doc: LoroDoc,
    *,
    room: str,
    branch: str,
    version: str | None = None,
    exported_at: datetime | None = None,
) -> ExportedNotebook:
    """The :class:`ExportedNotebook` of ``doc`` as it is now.

    For an old version pass a fork (``doc.fork_at(frontiers)``) and that version's id.
    ``version`` ``None`` means the document's current version. Reads only; never raises for a
    well-formed document (malformed cells are skipped as :func:`notebook.read_cells` does).
    """
    cells = tuple(nb.read_cells(doc))
    inputs = {cid: spec for cid, _, spec in nb.read_input_cells(doc)}
    charts: dict[str, nb.ChartSpec] = {
        c.id: nb.read_chart(doc, c.id) for c in cells if c.kind == "chart"
    }
    return ExportedNotebook(
        room=room,
        branch=branch,
        version=version if version is not None else hist.current_version(doc),
        cells=cells,
        inputs=inputs,
        charts=charts,
        exported_at=exported_at or datetime.now(timezone.utc),
    )


def export(notebook: ExportedNotebook, format: str) -> str:
    """The text of ``notebook`` in ``format`` (one of :data:`FORMATS`), ending with a newline.

    Raises :class:`ValidationError` for an unknown format.
    """
    writer = _WRITERS.get(format)
    if writer is None:
        raise ValidationError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    return writer(notebook)


# --- SQL script -------------------------------------------------------------------------------


def to_sql(notebook: ExportedNotebook) -> str:
    """A DuckDB SQL script (``duckdb < file.sql``; DuckDB >= 1.1 for ``SET VARIABLE``).

    A header comment (room, branch, version, export time, tables read that no cell defines);
    one ``SET VARIABLE`` per input cell (first, so that every cell sees them); then the cells
    with every SQL cell after the cells it reads: markdown as ``--`` comments, a named SQL cell
    whose last statement is a query as ``CREATE OR REPLACE VIEW "name" AS ...;`` (statements
    before it as written), anything else as written. ``$name`` becomes ``getvariable('name')``
    where an input cell is named ``name``.
    """
    inputs = _input_cells(notebook)
    graph = _graph(notebook)
    missing = sorted({t for c in _sql_cells(notebook) for t in graph.unresolved[c.id]})
    out = _comment(_header_lines(notebook))
    out.append("-- Run it with the duckdb command line (DuckDB >= 1.1): duckdb < this-file.sql")
    if missing:
        out.append(
            _one_line(f"-- Reads tables no cell defines (create them first): {', '.join(missing)}")
        )
    params = {name for _, name, _ in inputs if name}
    if inputs:
        out += ["", "-- Inputs: SQL cells read them as getvariable('name')."]
    for cell, name, spec in inputs:
        out.append(_one_line(f"-- input {name or '(unnamed)'} ({spec.type})") + _note(cell.source))
        if spec.options_sql.strip():
            out += _comment([f"options: {line}" for line in spec.options_sql.splitlines()])
        if name:
            out.append(f"SET VARIABLE {quote_ident(name)} = {_literal(spec.value)};")
    for cell in _run_order(notebook, graph):
        if cell.kind != "input":  # (set above)
            out.append("")
        if cell.kind == "markdown":
            out += _comment(cell.source.splitlines())
        elif cell.kind == "chart":
            out += _comment(_chart_note(notebook, cell).splitlines())
        elif cell.kind == "sql":
            out += _sql_statements(cell, params)
    return "\n".join(out) + "\n"


def _sql_statements(cell: nb.Cell, params: set[str]) -> list[str]:
    text = "".join(
        f"getvariable({_literal(piece.name)})" if isinstance(piece, _Param) else piece
        for piece in _split_params(cell.source, params)
    )
    out = [_one_line(f"-- cell {cell.name or cell.id}" + _unbound(cell.source, params))]
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        return [*out, f"-- DuckDB cannot parse this cell ({first}); kept as written:", text]
    for i, stmt in enumerate(statements):
        query = stmt.query.strip()
        last = i == len(statements) - 1
        if last and cell.name and stmt.type == duckdb.StatementType.SELECT:
            query = f"CREATE OR REPLACE VIEW {quote_ident(cell.name)} AS {query}"
        # A trailing "-- comment" would swallow the semicolon.
        out.append(query + ("\n;" if "--" in query.rsplit("\n", 1)[-1] else ";"))
    return out


def _literal(value: nb.InputValue) -> str:
    """An input value as the SQL literal the room would bind (numbers as DOUBLE)."""
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return f"CAST('{float(value)!r}' AS DOUBLE)"
    return "'" + value.replace("'", "''") + "'"


# --- marimo -----------------------------------------------------------------------------------


def to_marimo(notebook: ExportedNotebook) -> str:
    """A marimo app (``marimo edit file.py``; ``from file import app; app.run()``).

    One ``@app.cell`` per notebook cell, in notebook order (marimo orders runs by the names
    cells define and read): SQL cells as ``name = mo.sql(f\"\"\"...\"\"\")``, markdown as
    ``mo.md(...)``, input cells as ``mo.ui.text`` / ``mo.ui.number`` / ``mo.ui.dropdown`` (the
    dropdown's options from its options query), ``$name`` as ``{sql_literal(name.value)}``.
    A SQL cell whose name cannot be a Python global of the app (a keyword, a builtin, a
    leading ``_``, a name used before) creates a DuckDB table of that name instead.
    """
    names = _python_names(notebook, reserved={"mo", "marimo", "app", "sql_literal"})
    graph = _graph(notebook)
    cells: list[tuple[list[str], list[str], list[str]]] = [(["import marimo as mo"], [], ["mo"])]
    for cell in notebook.cells:
        if cell.kind == "markdown":
            cells.append(([f"mo.md({_md_text(cell.source)})"], ["mo"], []))
        elif cell.kind == "chart":
            cells.append(([f"mo.md({_md_text(_chart_note(notebook, cell))})"], ["mo"], []))
        elif cell.kind == "input":
            cells.append(_marimo_input(notebook, cell, names))
        elif cell.kind == "sql":
            body, refs, defs = _sql_call(cell, "mo.sql", names, graph, ".value")
            # sql_literal is a top-level function (@app.function): not a cell's ref.
            cells.append((body, ["mo", *(r for r in refs if r != "sql_literal")], defs))
    out = [*_comment(_header_lines(notebook), "#"), "import marimo", ""]
    out += [f'__generated_with = "{MARIMO_VERSION}"', "app = marimo.App()", ""]
    if _uses_params(notebook, names):
        out += ["", "@app.function", *_SQL_LITERAL_DEF.splitlines(), ""]
    for body, refs, defs in cells:
        returns = f"return ({', '.join(sorted(defs))},)" if defs else "return"
        out += ["", "@app.cell", f"def _({', '.join(sorted(set(refs)))}):"]
        out += [_indent(line) for line in [*body, returns]]
        out.append("")
    out += ["", 'if __name__ == "__main__":', "    app.run()"]
    return "\n".join(out) + "\n"


def _md_text(text: str) -> str:
    """``text`` as the argument of ``mo.md``, indented as marimo writes it (``mo.md``
    removes the common indentation, ``inspect.cleandoc``)."""
    first, *rest = _py_text("\n" + text + "\n", raw_ok=True).split("\n")
    return "\n".join([first, *(_indent(line) for line in rest)])


def _marimo_input(
    notebook: ExportedNotebook, cell: nb.Cell, names: _Names
) -> tuple[list[str], list[str], list[str]]:
    spec = notebook.inputs.get(cell.id, nb.InputSpec())
    var = names.input_var[cell.id]
    label = f"label={_py_text(cell.name or var)}"
    body = _comment(cell.source.splitlines(), "#")  # an input cell's text is a note
    if spec.type == "number":
        number = None if not isinstance(spec.value, (int, float)) else float(spec.value)
        body.append(f"{var} = mo.ui.number(value={number!r}, {label})")
    elif spec.type == "select":
        if spec.options_sql.strip():
            # As the room does: the options are the first column's non-null values as text.
            body += [
                f"_options = mo.sql({_py_text(spec.options_sql, fstring=True)}, output=False)",
                "_choices = [str(v) for v in _options[_options.columns[0]] if v is not None]",
            ]
        else:
            body.append(f"_choices = {[spec.value] if spec.value else []!r}")
        body += [
            f"_value = {spec.value!r}",
            f"{var} = mo.ui.dropdown(_choices, value=_value if _value in _choices else None, "
            f"{label})",
        ]
    else:
        text = spec.value if isinstance(spec.value, str) else ""
        body.append(f"{var} = mo.ui.text(value={_py_text(text)}, {label})")
    body.append(var)  # the cell's output: the control itself
    return body, ["mo"], [var]


# --- Jupyter ----------------------------------------------------------------------------------


def to_ipynb(notebook: ExportedNotebook) -> str:
    """A Jupyter notebook (nbformat 4.5 JSON, Python 3 kernel, needs the ``duckdb`` package).

    A title cell; a set-up cell (``import duckdb``, the ``sql_literal`` helper); a parameters
    cell (tagged ``parameters``) holding each input's value as a Python variable; then the
    cells with every SQL cell after the cells it reads: markdown as markdown cells, SQL cells
    as ``name = duckdb.sql(f\"\"\"...\"\"\")`` followed by ``name`` (displayed). Cell ids are the
    notebook's own cell ids.
    """
    names = _python_names(notebook, reserved={"duckdb", "sql_literal"})
    graph = _graph(notebook)
    taken: set[str] = {c.id for c in notebook.cells}
    title = "\n".join(
        [f"# {notebook.room}", "", *(f"- {line}" for line in _header_lines(notebook)[1:])]
    )
    setup = ["import duckdb"]
    if _uses_params(notebook, names):
        setup += ["", "", *_SQL_LITERAL_DEF.splitlines()]
    cells = [
        _ipynb_cell("markdown", _fresh_id("snb-title", taken), title),
        _ipynb_cell("code", _fresh_id("snb-setup", taken), "\n".join(setup)),
    ]
    params = [
        f"{names.input_var[cell.id]} = {_python_value(notebook.inputs.get(cell.id))!r}"
        + (_one_line(f"  # {cell.name}") if names.input_var[cell.id] != cell.name else "")
        for cell in notebook.cells
        if cell.kind == "input"
    ]
    if params:
        cell_json = _ipynb_cell("code", _fresh_id("snb-parameters", taken), "\n".join(params))
        cell_json["metadata"] = {"tags": ["parameters"]}
        cells.append(cell_json)
    for cell in _run_order(notebook, graph):
        if cell.kind == "markdown":
            cells.append(_ipynb_cell("markdown", cell.id, cell.source))
        elif cell.kind == "chart":
            cells.append(_ipynb_cell("markdown", cell.id, _chart_note(notebook, cell)))
        elif cell.kind == "sql":
            body, _, defs = _sql_call(cell, "duckdb.sql", names, graph, "")
            cells.append(_ipynb_cell("code", cell.id, "\n".join(body + defs)))
    document = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "sqlrooms_nb": _meta(notebook),
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def _ipynb_cell(kind: str, cell_id: str, text: str) -> dict[str, Any]:
    lines = text.splitlines(keepends=True)
    cell: dict[str, Any] = {"cell_type": kind, "id": cell_id, "metadata": {}, "source": lines}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _python_value(spec: nb.InputSpec | None) -> nb.InputValue:
    spec = spec or nb.InputSpec()
    if spec.type == "number" and isinstance(spec.value, (int, float)):
        return float(spec.value)
    return spec.value


def _fresh_id(base: str, taken: set[str]) -> str:
    """``base`` or ``base-2``, ``base-3``... not in ``taken`` (which it joins)."""
    cell_id, n = base, 1
    while cell_id in taken:
        n += 1
        cell_id = f"{base}-{n}"
    taken.add(cell_id)
    return cell_id


# --- JSON -------------------------------------------------------------------------------------


def to_json(notebook: ExportedNotebook) -> str:
    """The notebook as JSON::

        {"format": "sqlrooms_nb", "room", "branch", "version", "exported_at" (ISO 8601),
         "cells": [{"id", "kind", "name", "source"}, ...]}

    Input cells also carry ``"input": {"type", "value", "options_sql"}`` and chart cells
    ``"chart": {"source", "mark", "x", "y", "color", "aggregate"}``.
    """
    cells: list[dict[str, Any]] = []
    for cell in notebook.cells:
        item: dict[str, Any] = {
            "id": cell.id,
            "kind": cell.kind,
            "name": cell.name,
            "source": cell.source,
        }
        if cell.kind == "input":
            item["input"] = asdict(notebook.inputs.get(cell.id, nb.InputSpec()))
        if cell.kind == "chart":
            item["chart"] = asdict(notebook.charts.get(cell.id, nb.ChartSpec()))
        cells.append(item)
    document = {"format": "sqlrooms_nb", **_meta(notebook), "cells": cells}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


_WRITERS: dict[str, Callable[[ExportedNotebook], str]] = {
    "sql": to_sql,
    "marimo": to_marimo,
    "ipynb": to_ipynb,
    "json": to_json,
}


# --- shared helpers ---------------------------------------------------------------------------


class _Param(NamedTuple):
    """A ``$name`` parameter in SQL text that an input cell gives a value to."""

    name: str


@dataclass(frozen=True)
class _Names:
    """Python variables of the Python formats: ``sql_var`` by SQL cell id (only cells whose
    name can be a Python global), ``input_var`` by input cell id, ``param_var`` by ``$name``
    (the first input cell of that name, as the room binds)."""

    sql_var: dict[str, str]
    input_var: dict[str, str]
    param_var: dict[str, str]


def _python_names(notebook: ExportedNotebook, reserved: set[str]) -> _Names:
    # SQL cells first: their names must stay as they are (DuckDB finds results by them);
    # input variables can take another name, since SQL reads them only through the f-string.
    taken = reserved | set(dir(builtins))
    sql_var: dict[str, str] = {}
    for cell in _sql_cells(notebook):
        if _usable(cell.name, taken):
            sql_var[cell.id] = cell.name
            taken.add(cell.name)
    input_var: dict[str, str] = {}
    param_var: dict[str, str] = {}
    for cell in notebook.cells:
        if cell.kind != "input":
            continue
        base = cell.name if _usable(cell.name, set()) else "input"
        var = base if base not in taken else base + "_input"
        n = 1
        while var in taken:
            n += 1
            var = f"{base}_input{n}"
        taken.add(var)
        input_var[cell.id] = var
        if cell.name:
            param_var.setdefault(cell.name, var)
    return _Names(sql_var, input_var, param_var)


def _usable(name: str, taken: set[str]) -> bool:
    """Whether ``name`` can be a global of the generated app (marimo keeps ``_x`` cell-local)."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and name not in taken
    )


def _uses_params(notebook: ExportedNotebook, names: _Names) -> bool:
    params = set(names.param_var)
    return any(
        isinstance(piece, _Param)
        for cell in _sql_cells(notebook)
        for piece in _split_params(cell.source, params)
    )


def _sql_call(
    cell: nb.Cell, call: str, names: _Names, graph: deps.Graph, attr: str
) -> tuple[list[str], list[str], list[str]]:
    """``(body lines, refs, defs)`` of a Python cell running SQL cell ``cell`` with ``call``
    (``mo.sql`` / ``duckdb.sql``); ``attr`` reads an input variable's value (``.value``)."""
    pieces = _split_params(cell.source, set(names.param_var))
    var = names.sql_var.get(cell.id)
    if var is None and cell.name:
        # The name cannot be a Python variable here: make DuckDB hold the result under it.
        pieces = [f"CREATE OR REPLACE TABLE {quote_ident(cell.name)} AS\n", *pieces]
    text = "".join(
        "{sql_literal(" + names.param_var[p.name] + attr + ")}"
        if isinstance(p, _Param)
        else _py_body(p, fstring=True)
        for p in pieces
    )
    used = sorted({names.param_var[p.name] for p in pieces if isinstance(p, _Param)})
    refs = [names.sql_var[u] for u in graph.upstream.get(cell.id, ()) if u in names.sql_var]
    refs += used + (["sql_literal"] if used else [])
    unbound = _unbound(cell.source, set(names.param_var))
    body = [_one_line(f"# {cell.name}{unbound}")] if unbound else []
    # One logical line: the SQL inside the string keeps its own indentation.
    body.append(f'{var or "_result"} = {call}(f"""\n{text}\n""")')
    return body, refs, [var] if var else []


def _split_params(sql: str, params: set[str]) -> list[str | _Param]:
    """``sql`` cut into text and the ``$name`` parameters whose name is in ``params``, found
    by DuckDB's tokenizer (``'$x'`` and ``-- $x`` are not parameters), as :mod:`.deps` does."""
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error:
        return [sql]
    out: list[str | _Param] = []
    done = 0
    for (at, kind), (nxt, nxt_kind) in itertools.pairwise(tokens):
        if not (
            kind == duckdb.token_type.operator
            and sql[at : at + 1] == "$"
            and nxt_kind in (duckdb.token_type.identifier, duckdb.token_type.keyword)
            and nxt == at + 1
        ):
            continue
        end = at + 1
        while end < len(sql) and (sql[end].isalnum() or sql[end] == "_"):
            end += 1
        if sql[at + 1 : end] in params:
            out += [sql[done:at], _Param(sql[at + 1 : end])]
            done = end
    out.append(sql[done:])
    return [piece for piece in out if piece != ""]


def _unbound(sql: str, params: set[str]) -> str:
    """A note naming the ``$name`` parameters of ``sql`` no input cell gives a value to."""
    missing = [n for n in deps.parameter_names(sql) if n not in params]
    if not missing:
        return ""
    return " (no input cell named " + ", ".join(f"${n}" for n in missing) + ": it fails)"


def _sql_cells(notebook: ExportedNotebook) -> list[nb.Cell]:
    return [c for c in notebook.cells if c.kind == "sql"]


def _input_cells(notebook: ExportedNotebook) -> list[tuple[nb.Cell, str, nb.InputSpec]]:
    """``(cell, parameter name, spec)`` of each input cell; a repeated name is listed with
    ``""`` (the room binds the first cell of a name)."""
    seen: set[str] = set()
    out: list[tuple[nb.Cell, str, nb.InputSpec]] = []
    for cell in notebook.cells:
        if cell.kind == "input":
            name = cell.name if cell.name not in seen else ""
            seen.add(cell.name)
            out.append((cell, name, notebook.inputs.get(cell.id, nb.InputSpec())))
    return out


def _graph(notebook: ExportedNotebook) -> deps.Graph:
    sql = [deps.CellSql(c.id, c.name, c.source) for c in _sql_cells(notebook)]
    return deps.build_graph(sql)


def _run_order(notebook: ExportedNotebook, graph: deps.Graph) -> list[nb.Cell]:
    """The cells in notebook order, except that a SQL cell's upstream cells come right before
    it when they were below it (so that a script can run top to bottom)."""
    by_id: dict[str, nb.Cell] = {c.id: c for c in notebook.cells}
    done: set[str] = set()
    out: list[nb.Cell] = []
    for cell in notebook.cells:
        if cell.id in done:
            continue
        if cell.kind == "sql":
            ahead = [a for a in graph.ancestors(cell.id) if a not in done and a != cell.id]
            for up in graph.topological(ahead):
                out.append(by_id[up])
                done.add(up)
        out.append(cell)
        done.add(cell.id)
    return out


def _meta(notebook: ExportedNotebook) -> dict[str, str]:
    return {
        "room": notebook.room,
        "branch": notebook.branch,
        "version": notebook.version,
        "exported_at": notebook.exported_at.isoformat(),
    }


def _header_lines(notebook: ExportedNotebook) -> list[str]:
    return [
        "sqlrooms_nb notebook export",
        f"room: {notebook.room}",
        f"branch: {notebook.branch}",
        f"version: {notebook.version}",
        f"exported at: {notebook.exported_at.isoformat()}",
    ]


def _chart_note(notebook: ExportedNotebook, cell: nb.Cell) -> str:
    spec = notebook.charts.get(cell.id, nb.ChartSpec())
    fields = ", ".join(
        f"{key} = {value}" for key, value in vars(spec).items() if key != "source" and value
    )
    text = f"Chart of {spec.source or '(no result)'} ({fields}); charts are not exported."
    return text + (f"\n\n{cell.source}" if cell.source.strip() else "")


def _note(text: str) -> str:
    return f": {' '.join(text.split())}" if text.strip() else ""


def _comment(lines: Sequence[str], mark: str = "--") -> list[str]:
    return [_one_line(f"{mark} {line}").rstrip() for line in lines]


def _one_line(text: str) -> str:
    """``text`` with every line break (``\\n``, ``\\r``, ``\\u2028``... all that
    :meth:`str.splitlines` knows) turned into a space: text that goes into a ``--`` or ``#``
    comment of a generated file (a cell name, a room id: names a view can set to anything
    through the document) can never end the comment and become code."""
    return " ".join(text.splitlines()) if text else text


def _indent(line: str) -> str:
    return "    " + line if line else line


def _py_text(text: str, *, raw_ok: bool = False, fstring: bool = False) -> str:
    """``text`` as a Python string literal: triple-quoted when it spans lines (raw when that
    needs no escapes and ``raw_ok``), else the plain ``repr``; an f-string with braces
    doubled when ``fstring``."""
    if "\n" not in text and not fstring:
        return repr(text)
    plain = all(ch in "\n\t" or ch >= " " for ch in text)
    if raw_ok and plain and '"""' not in text and not text.endswith(("\\", '"')):
        return 'r"""' + text + '"""'
    return ('f"""' if fstring else '"""') + _py_body(text, fstring=fstring) + '"""'


def _py_body(text: str, *, fstring: bool) -> str:
    """``text`` escaped for the inside of a ``\"\"\"``-quoted (f-)string literal."""
    out = text.replace("\\", "\\\\")
    if fstring:
        out = out.replace("{", "{{").replace("}", "}}")
    if '"""' in out or out.endswith('"'):
        out = out.replace('"', '\\"')  # a quote run would end the literal
    # Control characters (a CR, a NUL...) as escapes: they are not all valid in source code.
    return "".join(ch if ch in "\n\t" or " " <= ch != "\x7f" else f"\\x{ord(ch):02x}" for ch in out)
