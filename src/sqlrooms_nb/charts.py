"""The data behind chart cells: one DuckDB query over the plotted SQL cell's result view.

A chart cell names a SQL cell's result (``spec.source``, a view of that name) and the columns
to plot (see :class:`~sqlrooms_nb.notebook.ChartSpec`). :func:`chart_query` turns the spec into
SQL; :func:`chart_data` runs it and returns an Arrow table whose columns are, in this order,
x, y, then colour when one is chosen, so the browser can read the fields by position:

- with an aggregate: ``SELECT x, agg(y) AS "<agg>_<y>"[, color] FROM "source" GROUP BY ALL
  ORDER BY ALL`` (``count`` counts rows and needs no y);
- without: ``SELECT x, y[, color] FROM "source" LIMIT 5000``.

Numbers are sent as doubles (Vega-Lite has no 64-bit integers or decimals) and dates and
timestamps as millisecond timestamps. Nothing here knows about widgets or the document.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .errors import QueryError, ValidationError
from .notebook import CHART_AGGREGATES, CHART_MARKS, ChartSpec, validate_cell_name
from .query import quote_ident

MAX_CHART_ROWS = 5000
"""Rows plotted at most (a chart of raw rows is cut there; aggregated charts are not)."""

_SQL_AGGREGATE = {"sum": "sum", "mean": "avg", "count": "count", "min": "min", "max": "max"}


def chart_query(spec: ChartSpec, columns: Sequence[str]) -> str:
    """The SQL that computes a chart's data from the result view ``spec.source``.

    ``columns`` are the names of that result's columns. Raises :class:`ValidationError` when
    the spec is incomplete (no source, no x, no y without ``count``) or names a column the
    result lacks, or has an unknown mark or aggregate.
    """
    if not spec.source:
        raise ValidationError("choose the SQL cell whose result the chart plots")
    validate_cell_name(spec.source)
    if spec.mark not in CHART_MARKS:
        raise ValidationError(f"chart mark {spec.mark!r} is not one of {CHART_MARKS}")
    if spec.aggregate not in CHART_AGGREGATES:
        raise ValidationError(
            f"chart aggregate {spec.aggregate!r} is not one of {CHART_AGGREGATES}"
        )
    known = set(columns)
    counting = spec.aggregate == "count"
    needed = {"x": spec.x} if counting else {"x": spec.x, "y": spec.y}
    for role, column in needed.items():
        if not column:
            raise ValidationError(f"choose the chart's {role} column")
    for role, column in (*needed.items(), ("color", spec.color)):
        if column and column not in known:
            raise ValidationError(
                f"{spec.source!r} has no column {column!r} (for {role}); "
                f"its columns are {', '.join(columns) or 'none'}"
            )
    items = [(quote_ident(spec.x), spec.x)]
    if spec.aggregate == "none":
        items.append((quote_ident(spec.y), spec.y))
    elif counting:
        items.append(("count(*)", "count"))
    else:
        agg = _SQL_AGGREGATE[spec.aggregate]
        items.append((f"{agg}({quote_ident(spec.y)})", f"{spec.aggregate}_{spec.y}"))
    if spec.color:
        items.append((quote_ident(spec.color), spec.color))
    select = f"SELECT {_select_list(items)} FROM {quote_ident(spec.source)}"
    if spec.aggregate == "none":
        return f"{select} LIMIT {MAX_CHART_ROWS}"
    return f"{select} GROUP BY ALL ORDER BY ALL"


def _select_list(items: Sequence[tuple[str, str]]) -> str:
    """``expr [AS "name"], ...`` with output names made unique (``name_2``... on a clash)."""
    taken: set[str] = set()
    out = []
    for expr, name in items:
        alias, n = name, 1
        while alias in taken:
            n += 1
            alias = f"{name}_{n}"
        taken.add(alias)
        quoted = quote_ident(alias)
        out.append(expr if expr == quoted else f"{expr} AS {quoted}")
    return ", ".join(out)


def chart_data(con: duckdb.DuckDBPyConnection, spec: ChartSpec) -> pa.Table:
    """Run :func:`chart_query` for ``spec`` on a cursor of ``con`` (run from the comm thread).

    Returns the chart's rows as an Arrow table (x, y[, colour]; numbers as float64, dates and
    timestamps as ``timestamp[ms]``). Raises :class:`ValidationError` for a bad spec and
    :class:`QueryError` when the source result cannot be read (e.g. its cell never ran).
    """
    if not spec.source:
        raise ValidationError("choose the SQL cell whose result the chart plots")
    validate_cell_name(spec.source)
    cur = con.cursor()
    try:
        try:
            cur.execute(f"SELECT * FROM {quote_ident(spec.source)} LIMIT 0")
        except duckdb.Error as exc:
            raise QueryError(
                f"cannot read the result {spec.source!r}: run that SQL cell first ({exc})"
            ) from None
        columns = [d[0] for d in cur.description or []]
        sql = chart_query(spec, columns)
        try:
            table = cur.execute(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"the chart's query failed: {exc}") from None
    finally:
        cur.close()
    return for_browser(table)


def for_browser(table: pa.Table) -> pa.Table:
    """``table`` with types Vega-Lite can use: numbers as float64, temporal values as
    ``timestamp[ms]`` (time zones kept), big/view strings as plain strings; others as they are.
    """
    arrays, fields = [], []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        target: pa.DataType | None = None
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            target = pa.float64()
        elif pa.types.is_date(t):
            target = pa.timestamp("ms")
        elif pa.types.is_timestamp(t):
            target = pa.timestamp("ms", tz=t.tz)
        elif pa.types.is_string_view(t) or pa.types.is_large_string(t):
            target = pa.string()
        if target is not None and target != t:
            column = pc.cast(column, target, safe=False)
        arrays.append(column)
        fields.append(field.with_type(column.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
