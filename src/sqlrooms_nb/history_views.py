"""The room's history as data: read-only SQL views in the user's DuckDB connection.

SQL cells (and the user's own code) can query the collaboration itself::

    SELECT author, date_trunc('day', time) AS day, count(*) AS changes
    FROM sqlrooms_history.changes GROUP BY ALL ORDER BY day;

The lake is attached **read-only** in the user's connection as :data:`LAKE_ALIAS` (the
extensions it needs loaded by path from their wheels, nothing installed), whatever its catalog
(embedded SQLite, PostgreSQL) and data path (local, ``s3://``: the S3 keys from the environment
become a temporary secret of the user's connection, scoped to the lake's data path, as in the
lake's own DuckDB), and views in schema
:data:`HISTORY_SCHEMA` select this room's and branch's rows:

- ``changes``   one row per Loro change: peer, counters, lamport, time, author, cells
- ``sessions``  edit sessions: consecutive changes by one author with pauses of at most 60 s
                (the rule of :mod:`sqlrooms_nb.history`), with start, end, changes and cells
- ``updates``   the flushed batches (without their bytes): seq, change count, sizes, times
- ``snapshots`` the stored snapshots (without their bytes)
- ``tags``      named versions
- ``branches``  every branch of the room (all branches, ``main`` included) and its lineage:
                parent, fork version, who made it and when, where it was last merged
- ``runs``      the run log: one row per SQL cell run (cell, name, sql_hash, author,
                started_at, duration_ms, rows, status 'ok' | 'error' | 'cancelled', error);
                rows reach the lake a few seconds after the run (``room.flush()`` waits)

The views are (re)created each time a room opens on the connection or checks out a branch,
so they follow the most recently opened room and its checked-out branch. In a file-backed
user database they are stored like any view.

Off the open path: loading the extensions and attaching the lake in the user's connection
takes 0.2-1.5 s, several times what opening a room takes otherwise, so a room asks for the
views with :func:`create_history_views_soon`, which does the work on one background thread
(requests run in the order they were made: the last room opened or branch checked out wins)
and returns a future. The room waits for it before running a SQL cell whose text names
:data:`HISTORY_SCHEMA` or :data:`LAKE_ALIAS`, in ``room.flush()`` and in ``room.close()``, so
such a cell (or code run after ``flush()``) always sees the views.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import duckdb

from .history import IDLE_GAP_S
from .store import Lake
from .store.config import redact, s3_secret_sql
from .store.extensions import load_into

LOG = logging.getLogger("sqlrooms_nb")

HISTORY_SCHEMA = "sqlrooms_history"
"""Schema (in the user's default database) holding the history views."""
LAKE_ALIAS = "sqlrooms_lake"
"""Name the lake is attached as (read-only) in the user's connection."""
S3_SECRET_NAME = "sqlrooms_lake_s3"
"""Temporary S3 secret (scoped to the lake's data path) made in the user's connection when the
lake's data is on S3 and the environment has keys."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_history_views(
    con: duckdb.DuckDBPyConnection, lake: Lake, room: str, branch: str
) -> bool:
    """Attach ``lake`` read-only to ``con`` and (re)create the views for ``room``/``branch``.

    Returns ``False`` (after logging why) if the lake cannot be attached there: history as
    data is an extra, and must never stop a room from opening. ``room`` and ``branch`` are
    validated ids; they are still quoted as SQL literals.
    """
    return _create(con.cursor(), lake, room, branch)


def create_history_views_soon(
    con: duckdb.DuckDBPyConnection, lake: Lake, room: str, branch: str
) -> Future[bool]:
    """:func:`create_history_views` on the background thread; the future's result is its
    ``True``/``False`` (it never raises). Requests run one at a time, in the order made. The
    cursor is made here, on the caller's thread (a DuckDB connection is not to be shared
    between threads); the background thread only uses (and closes) that cursor."""
    cur = con.cursor()
    done: Future[bool] = Future()

    def job() -> None:
        ok = False
        try:
            ok = _create(cur, lake, room, branch)
        finally:
            done.set_result(ok)

    _worker().put(job)
    return done


_queue: queue.SimpleQueue[Callable[[], None]] | None = None
_queue_lock = threading.Lock()


def _worker() -> queue.SimpleQueue[Callable[[], None]]:
    """The queue of the one background thread (a daemon: an attach hanging on an unreachable
    catalog never holds up the interpreter's exit), started on first use."""
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = queue.SimpleQueue()
            jobs = _queue

            def loop() -> None:
                while True:
                    job = jobs.get()
                    try:
                        job()
                    except BaseException:  # _create never raises; keep the thread alive
                        LOG.exception("[sqlrooms_nb] history views job failed")

            threading.Thread(target=loop, name="sqlrooms_nb-history-views", daemon=True).start()
        return _queue


def _create(cur: duckdb.DuckDBPyConnection, lake: Lake, room: str, branch: str) -> bool:
    """:func:`create_history_views` with a cursor of the user's connection (closed here)."""
    try:
        load_into(cur, lake.config.extensions)  # the lake's own copies: never a second SQLite
        secret = s3_secret_sql(lake.config, S3_SECRET_NAME)
        if secret is not None:
            cur.execute(secret)
        attached = cur.execute(
            "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [LAKE_ALIAS]
        ).fetchone()
        if not attached or attached[0] == 0:
            cur.execute(lake.config.attach_sql(LAKE_ALIAS, read_only=True))
        where = f"WHERE room = {_literal(room)} AND branch = {_literal(branch)}"
        src = f"{LAKE_ALIAS}.{lake.schema}"
        views = {
            "changes": f"SELECT peer, counter_start, counter_end, lamport, time, author, cells, "
            f"seq FROM {src}.changes {where}",
            "updates": f"SELECT seq, writer, change_count, first_change_at, last_change_at, "
            f"byte_length, written_at FROM {src}.updates {where}",
            "snapshots": f"SELECT seq, writer, change_count, byte_length, created_at "
            f"FROM {src}.snapshots {where}",
            "tags": f"SELECT name, version, created_by, created_at FROM {src}.tags {where}",
            "runs": f"SELECT cell, name, sql_hash, author, started_at, duration_ms, rows, status, "
            f"error FROM {src}.runs {where}",
            "branches": "SELECT 'main' AS name, NULL::VARCHAR AS parent, "
            "NULL::VARCHAR AS fork_version, NULL::VARCHAR AS created_by, "
            "NULL::TIMESTAMPTZ AS created_at, NULL::VARCHAR AS merged_into, "
            "NULL::TIMESTAMPTZ AS merged_at UNION ALL "
            "SELECT name, parent, fork_version, created_by, created_at, merged_into, merged_at "
            f"FROM {src}.branches WHERE room = {_literal(room)}",
            "sessions": _SESSIONS.format(gap=int(IDLE_GAP_S), schema=HISTORY_SCHEMA),
        }
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {HISTORY_SCHEMA}")
        for name, body in views.items():
            cur.execute(f"CREATE OR REPLACE VIEW {HISTORY_SCHEMA}.{name} AS {body}")
        return True
    except Exception as exc:  # never stop a room from opening over an optional extra
        LOG.warning(
            "[sqlrooms_nb] history views not available in this connection: %s", redact(str(exc))
        )
        return False
    finally:
        cur.close()


_SESSIONS = """
WITH ordered AS (
    SELECT author, time, lamport, cells,
           CASE WHEN lag(author) OVER w IS DISTINCT FROM author
                  OR time - lag(time) OVER w > INTERVAL {gap} SECOND THEN 1 ELSE 0 END AS starts
    FROM {schema}.changes
    WINDOW w AS (ORDER BY time, lamport)
), numbered AS (
    SELECT *, sum(starts) OVER (ORDER BY time, lamport) AS session FROM ordered
)
SELECT session::BIGINT AS session, any_value(author) AS author, min(time) AS started_at,
       max(time) AS ended_at, count(*) AS changes,
       list_distinct(flatten(list(cells))) AS cells
FROM numbered GROUP BY session ORDER BY session
"""
