"""Running SQL cells on DuckDB and shipping results as Arrow IPC.

A SQL cell's result becomes a view named after the cell (``CREATE OR REPLACE VIEW "name"``),
so later cells can ``SELECT ... FROM name``. A cell may hold several statements: all but the
last run as they are; the last one, if it is a query, defines the view. Statement splitting
and classification come from DuckDB's own parser (``extract_statements``), not regex.

With a result relation (:func:`result_relation`, what the runner always uses), the last query
runs **once**, into a per-branch result table that the result grid pages from; the cell's name
is then bound to the result by this rule:

- a **VIEW** of the query by default: cheap, always fresh, nothing copied;
- a **TABLE** (a copy of the result table) when the run took at least
  :data:`TABLE_AFTER_MS` and other cells read this one: an expensive result that is reused is
  then computed once, not again by every downstream cell. The runner
  (:mod:`sqlrooms_nb.runner`) decides; re-running the cell re-applies the rule.
- always a **TABLE** when the query uses parameters (``$name``, bound from input cells): a
  DuckDB view cannot hold a prepared-statement parameter ("This type of statement can't be
  prepared"), and splicing the value into the view's text is exactly what parameters avoid. The
  table holds the result for the values bound at the run; the runner re-runs the cell when an
  input it reads changes, so readers of the name never see a mix of old and new values.

Parameters are bound per statement (:func:`~sqlrooms_nb.deps.parameter_names` says which a
statement uses; DuckDB refuses values it does not use), as DuckDB named parameters: the values
never become SQL text.

Runs happen on a cursor of the given connection (``con.cursor()``), so they share its
database and catalog (views are visible to the user's own code) without sharing its
transaction state. Nothing here knows about widgets or the lake.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from .deps import parameter_names
from .errors import CancelledError, QueryError, ValidationError
from .notebook import validate_cell_name

PREVIEW_ROWS = 1000
"""Rows sent to browser views with each result (the total count is sent too)."""

TABLE_AFTER_MS = 2000.0
"""A cell whose run took at least this long (milliseconds) and that other cells read is
materialised as a TABLE under its name instead of a VIEW (see the module docstring)."""

_LINE = re.compile(r"^LINE (\d+): ", re.MULTILINE)


@dataclass(frozen=True)
class QueryResult:
    """A cell's full result.

    ``columns`` pairs each column name with its DuckDB type name; ``elapsed_ms`` is the wall
    time of the run in milliseconds; ``view`` says whether the result is available under the
    cell's name (``False`` for statements that are not queries, e.g. ``CREATE``), and
    ``materialized`` how: ``"view"``, ``"table"`` or ``None``. ``rows`` is the total row count
    (``table`` may hold only the first ``preview_rows`` of them).
    """

    table: pa.Table
    columns: tuple[tuple[str, str], ...]
    elapsed_ms: float
    view: bool
    rows: int = 0
    materialized: str | None = None


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled).

    Raises :class:`~sqlrooms_nb.errors.ValidationError` for a name holding a NUL character
    (DuckDB would cut the statement there)."""
    if "\x00" in name:
        raise ValidationError(f"an SQL name cannot hold a NUL character: {name!r:.80}")
    return '"' + name.replace('"', '""') + '"'


def result_relation(branch: str, cell_id: str) -> str:
    """The quoted name of the table holding cell ``cell_id``'s full result on ``branch``."""
    return quote_ident(f"_snb_result_{branch}_{cell_id}")


def run_cell(
    con: duckdb.DuckDBPyConnection,
    name: str,
    sql: str,
    *,
    relation: str | None = None,
    table_after_ms: float | None = None,
    on_cursor: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    preview_rows: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> QueryResult:
    """Run a SQL cell's text on ``con`` and make its result the view (or table) ``name``.

    Args:
        relation: where to materialise the full result (:func:`result_relation`); the query
            then runs **once**, into that table, and the result is read back from it.
            ``None``: no result table; the result is read from the view ``name``.
        table_after_ms: with ``relation``, make ``name`` a TABLE (a copy of the result table)
            instead of a VIEW when the run took at least this many milliseconds (``None``:
            always a view). See the module docstring for the rule the runner applies.
        on_cursor: called with the cursor before anything runs (the runner uses it to
            ``interrupt()`` and poll ``query_progress()`` from another thread).
        preview_rows: read at most this many rows into ``QueryResult.table`` (``None``: all);
            ``QueryResult.rows`` is the total either way.
        params: values of named parameters (``$name`` -> value), bound as DuckDB prepared
            statement parameters, never spliced into the SQL. A query that uses one is
            materialised as a TABLE (see the module docstring). A parameter without a value
            raises :class:`~sqlrooms_nb.errors.QueryError`.

    Raises :class:`~sqlrooms_nb.errors.ValidationError` for a bad ``name``,
    :class:`~sqlrooms_nb.errors.CancelledError` when the cursor was interrupted, and
    :class:`~sqlrooms_nb.errors.QueryError` (with 0-based ``line``/``column`` in ``sql`` when
    DuckDB reports a position) when DuckDB fails or the cell is empty.
    """
    validate_cell_name(name)
    started = time.perf_counter()
    cur = con.cursor()
    target = quote_ident(name)
    materialized: str | None = None
    columns: tuple[tuple[str, str], ...]
    try:
        if on_cursor is not None:
            on_cursor(cur)
        try:
            statements = cur.extract_statements(sql)
        except duckdb.Error as exc:
            raise _query_error(exc, sql, sql) from None
        if not statements:
            raise QueryError("the cell has no SQL statement to run")
        bound = [_bind(stmt.query, params or {}) for stmt in statements]
        for stmt, values in zip(statements[:-1], bound[:-1], strict=True):
            _execute(cur, stmt.query, sql, values)
        last, last_params = statements[-1].query, bound[-1]
        is_query = statements[-1].type == duckdb.StatementType.SELECT
        if relation is not None:
            fetched: pa.Table | None = None
            if is_query:
                prefix = f"CREATE OR REPLACE TABLE {relation} AS "
                try:
                    cur.execute(prefix + last, last_params)
                except duckdb.InterruptException:
                    raise
                except duckdb.Error:
                    # Not every query can be wrapped (e.g. DESCRIBE), and errors raised inside
                    # the wrapper point at it: run the query as written (its own error, with
                    # the right position, or its rows).
                    is_query = False
            if not is_query:
                _execute(cur, last, sql, last_params)
                fetched = cur.to_arrow_table() if cur.description is not None else None
                if fetched is not None:
                    cur.register("_snb_fetched", fetched)
                    cur.execute(f"CREATE OR REPLACE TABLE {relation} AS SELECT * FROM _snb_fetched")
                    cur.unregister("_snb_fetched")
                else:
                    cur.execute(f"DROP TABLE IF EXISTS {relation}")
            else:
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                slow = table_after_ms is not None and elapsed_ms >= table_after_ms
                if slow or last_params:
                    _drop(cur, "VIEW", target)
                    cur.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {relation}")
                    materialized = "table"
                else:
                    _drop(cur, "TABLE", target)
                    try:
                        cur.execute(f"CREATE OR REPLACE VIEW {target} AS {last}")
                        materialized = "view"
                    except duckdb.Error:
                        materialized = None
            if fetched is None and not is_query:
                table, columns, rows = pa.table({}), (), 0
            else:
                count = cur.execute(f"SELECT count(*) FROM {relation}").fetchone()
                rows = int(count[0]) if count else 0
                limit = "" if preview_rows is None else f" LIMIT {int(preview_rows)}"
                cur.execute(f"SELECT * FROM {relation}{limit}")
                columns = tuple((d[0], str(d[1])) for d in cur.description or ())
                table = cur.to_arrow_table()
        else:
            if is_query:
                kind = "TABLE" if last_params else "VIEW"
                try:
                    _drop(cur, "VIEW" if last_params else "TABLE", target)
                    cur.execute(f"CREATE OR REPLACE {kind} {target} AS {last}", last_params)
                    materialized = kind.lower()
                except duckdb.InterruptException:
                    raise
                except duckdb.Error:
                    materialized = None
            if materialized:
                _execute(cur, f"SELECT * FROM {target}", sql)
            else:
                _execute(cur, last, sql, last_params)
            if cur.description is None:
                table, columns = pa.table({}), ()
            else:
                columns = tuple((d[0], str(d[1])) for d in cur.description)
                table = cur.to_arrow_table()
            rows = table.num_rows
            if preview_rows is not None:
                table = table.slice(0, preview_rows)
    except duckdb.InterruptException:
        raise CancelledError("the run was cancelled") from None
    except duckdb.Error as exc:  # raised while fetching rows
        if "INTERRUPT" in str(exc):
            raise CancelledError("the run was cancelled") from None
        raise _query_error(exc, sql, sql) from None
    finally:
        cur.close()
    elapsed = (time.perf_counter() - started) * 1000.0
    return QueryResult(table, columns, elapsed, materialized is not None, rows, materialized)


def _drop(cur: duckdb.DuckDBPyConnection, kind: str, target: str) -> None:
    """``DROP <kind> IF EXISTS target``, ignoring an object of the other kind by that name."""
    try:
        cur.execute(f"DROP {kind} IF EXISTS {target}")
    except duckdb.CatalogException:
        pass


def _bind(statement: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The values of the parameters ``statement`` uses (``None`` when it uses none).

    Raises :class:`QueryError` naming a parameter that has no value."""
    names = parameter_names(statement)
    if not names:
        return None
    missing = [n for n in names if n not in params]
    if missing:
        raise QueryError("no value for parameter " + ", ".join(f"${n}" for n in missing))
    return {n: params[n] for n in names}


def _execute(
    cur: duckdb.DuckDBPyConnection,
    statement: str,
    cell_sql: str,
    params: dict[str, Any] | None = None,
) -> None:
    """Run one statement with ``execute`` (whose errors carry ``LINE n`` positions)."""
    try:
        cur.execute(statement, params)
    except duckdb.Error as exc:
        raise _query_error(exc, statement, cell_sql) from None


def _query_error(exc: duckdb.Error, statement: str, cell_sql: str) -> QueryError:
    """A :class:`QueryError` from a DuckDB error, with its position mapped into the cell."""
    message = str(exc)
    line, column = error_position(message, statement)
    if line is not None and column is not None:
        offset = cell_sql.find(statement)
        if offset > 0:  # the statement starts later in the cell: shift by what precedes it
            before = cell_sql[:offset]
            extra_lines = before.count("\n")
            if line == 0:
                column += offset - (before.rfind("\n") + 1)
            line += extra_lines
    return QueryError(message.split("\n\nLINE ")[0], line=line, column=column)


def error_position(message: str, sql: str) -> tuple[int | None, int | None]:
    """0-based ``(line, column)`` of a DuckDB error in ``sql``, or ``(None, None)``.

    DuckDB appends ``LINE n: <text>`` and a caret line under it; the caret's offset minus the
    ``LINE n: `` prefix is the column. DuckDB elides long lines with ``...``; then the column
    is found by locating the shown fragment in the source line.
    """
    match = _LINE.search(message)
    if match is None:
        return None, None
    line = int(match.group(1)) - 1
    rest = message[match.end() :].split("\n")
    if len(rest) < 2 or "^" not in rest[1]:
        return line, None
    shown = rest[0]
    caret = rest[1].index("^") - len(match.group(0))
    lines = sql.split("\n")
    if not 0 <= line < len(lines):
        return None, None
    source_line = lines[line]
    if shown.startswith("..."):
        fragment = shown[3:].rstrip(".")
        start = source_line.find(fragment[: max(1, min(len(fragment), 20))])
        column = (start - 3 + caret) if start >= 0 else None
    else:
        column = caret
    if column is not None:
        column = max(0, min(column, len(source_line)))
    return line, column


def to_ipc(table: pa.Table, max_rows: int = PREVIEW_ROWS) -> bytes:
    """The first ``max_rows`` rows of ``table`` as an Arrow IPC stream (bytes).

    Types that ``apache-arrow`` in the browser cannot read (e.g. DuckDB's ``HUGEINT`` as
    decimal128(38) is fine; large/view types are not) are cast to their plain forms.
    """
    head = table.slice(0, max_rows)
    head = head.cast(_browser_schema(head.schema))
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, head.schema) as writer:
        writer.write_table(head)
    return sink.getvalue()


def _browser_schema(schema: pa.Schema) -> pa.Schema:
    fields = []
    for field in schema:
        t = field.type
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
            t = pa.binary()
        fields.append(field.with_type(t))
    return pa.schema(fields)
