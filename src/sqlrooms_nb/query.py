"""Running SQL cells on DuckDB and shipping results as Arrow IPC.

A SQL cell's result becomes a view named after the cell (``CREATE OR REPLACE VIEW "name"``),
so later cells can ``SELECT ... FROM name``. A cell may hold several statements: all but the
last run as they are; the last one, if it is a query, defines the view. Statement splitting
and classification come from DuckDB's own parser (``extract_statements``), not regex.

Runs happen on a cursor of the given connection (``con.cursor()``), so they share its
database and catalog (views are visible to the user's own code) without sharing its
transaction state. Nothing here knows about widgets or the lake.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from .errors import QueryError
from .notebook import validate_cell_name

PREVIEW_ROWS = 1000
"""Rows sent to browser views with each result (the total count is sent too)."""

_LINE = re.compile(r"^LINE (\d+): ", re.MULTILINE)


@dataclass(frozen=True)
class QueryResult:
    """A cell's full result.

    ``columns`` pairs each column name with its DuckDB type name; ``elapsed_ms`` is the wall
    time of the run in milliseconds; ``view`` says whether the result is available as a view
    named after the cell (``False`` for statements that are not queries, e.g. ``CREATE``).
    """

    table: pa.Table
    columns: tuple[tuple[str, str], ...]
    elapsed_ms: float
    view: bool


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def run_cell(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> QueryResult:
    """Run a SQL cell's text on ``con`` and make its result the view ``name``.

    Raises :class:`~sqlrooms_nb.errors.ValidationError` for a bad ``name`` and
    :class:`~sqlrooms_nb.errors.QueryError` (with 0-based ``line``/``column`` in ``sql`` when
    DuckDB reports a position) when DuckDB fails or the cell is empty.
    """
    validate_cell_name(name)
    started = time.perf_counter()
    cur = con.cursor()
    try:
        try:
            statements = cur.extract_statements(sql)
        except duckdb.Error as exc:
            raise _query_error(exc, sql, sql) from None
        if not statements:
            raise QueryError("the cell has no SQL statement to run")
        for stmt in statements[:-1]:
            _execute(cur, stmt.query, sql)
        last = statements[-1].query
        view = False
        if statements[-1].type == duckdb.StatementType.SELECT:
            try:
                cur.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {last}")
                view = True
            except duckdb.Error:
                # Not every query can define a view (e.g. DESCRIBE), and errors raised inside
                # the wrapper point at the wrapper: run the query as written instead.
                view = False
        if view:
            _execute(cur, f"SELECT * FROM {quote_ident(name)}", sql)
        else:
            _execute(cur, last, sql)
        if cur.description is None:
            table, columns = pa.table({}), ()
        else:
            columns = tuple((d[0], str(d[1])) for d in cur.description)
            table = cur.to_arrow_table()
    except duckdb.Error as exc:  # raised while fetching rows
        raise _query_error(exc, sql, sql) from None
    finally:
        cur.close()
    return QueryResult(table, columns, (time.perf_counter() - started) * 1000.0, view)


def _execute(cur: duckdb.DuckDBPyConnection, statement: str, cell_sql: str) -> None:
    """Run one statement with ``execute`` (whose errors carry ``LINE n`` positions)."""
    try:
        cur.execute(statement)
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
