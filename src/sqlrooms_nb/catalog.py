"""The connection's catalog for SQL autocompletion in the browser: tables, views, columns.

Read from DuckDB's own ``duckdb_tables()``, ``duckdb_views()`` and ``duckdb_columns()`` on a
cursor of the room's connection, and sent to views as a ``catalog`` message (after each
``welcome`` and after each run, since cells create views and tables). Internal objects are left
out: DuckDB's own (``internal``) and the package's own tables (``_snb_*``: run results, see
:func:`sqlrooms_nb.query.result_relation`, and sorted copies). The history views
(``sqlrooms_history``) and the attached lake (``sqlrooms_lake``) stay: users query them.

Threads: any (each call uses its own cursor of the connection).
"""

from __future__ import annotations

import logging

import duckdb

from . import protocol as p

LOG = logging.getLogger("sqlrooms_nb")

MAX_CATALOG_COLUMNS = 5000
"""Most columns listed in one catalog (tables and views past it are left out)."""
MAX_CATALOG_TABLES = 2000
"""Most tables and views listed in one catalog."""

_INTERNAL_PREFIX = "_snb_"

_CATALOG_SQL = r"""
WITH objects AS (
    SELECT database_name, schema_name, table_name AS name, 'table' AS kind
    FROM duckdb_tables() WHERE NOT internal
    UNION ALL
    SELECT database_name, schema_name, view_name AS name, 'view' AS kind
    FROM duckdb_views() WHERE NOT internal
)
SELECT o.database_name, o.schema_name, o.name, o.kind,
       list(c.column_name ORDER BY c.column_index) FILTER (WHERE c.column_name IS NOT NULL)
FROM objects o
LEFT JOIN duckdb_columns() c
  ON c.database_name = o.database_name AND c.schema_name = o.schema_name
 AND c.table_name = o.name
WHERE NOT starts_with(o.name, ?)
GROUP BY o.database_name, o.schema_name, o.name, o.kind
ORDER BY o.database_name = current_database() DESC, o.schema_name = 'main' DESC,
         o.database_name, o.schema_name, o.name
"""


def read_catalog(con: duckdb.DuckDBPyConnection) -> tuple[p.CatalogTable, ...]:
    """Tables and views of every database attached to ``con``, with their column names.

    The current database comes first (its objects, and temporary ones, have ``database`` "";
    the browser completes their ``main`` schema's objects unqualified), then schema ``main``
    first, then by name. At most
    :data:`MAX_CATALOG_TABLES` objects and :data:`MAX_CATALOG_COLUMNS` columns in all. Returns
    ``()`` (after logging) when the catalog cannot be read: completion is an extra.
    """
    try:
        cur = con.cursor()
    except duckdb.Error:
        LOG.warning("[sqlrooms_nb] could not read the catalog for autocompletion", exc_info=True)
        return ()
    try:
        current = cur.execute("SELECT current_database()").fetchone()
        rows = cur.execute(_CATALOG_SQL, [_INTERNAL_PREFIX]).fetchall()
    except duckdb.Error:
        LOG.warning("[sqlrooms_nb] could not read the catalog for autocompletion", exc_info=True)
        return ()
    finally:
        cur.close()
    current_db = current[0] if current else ""
    tables: list[p.CatalogTable] = []
    columns = 0
    for database, schema, name, kind, cols in rows:
        names = tuple(cols or ())
        if len(tables) >= MAX_CATALOG_TABLES or columns + len(names) > MAX_CATALOG_COLUMNS:
            break
        columns += len(names)
        tables.append(
            p.CatalogTable(
                schema=schema,
                name=name,
                columns=names,
                kind="view" if kind == "view" else "table",
                database="" if database in (current_db, "temp") else database,
            )
        )
    return tuple(tables)
