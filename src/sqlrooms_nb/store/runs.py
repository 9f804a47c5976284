"""The run log: one row per SQL cell run in the lake's ``runs`` table, written in the background.

Runs are frequent-ish and must never wait for the lake, so :meth:`RunLog.append` only queues a
row; the writer thread (``sqlrooms_nb-runlog``) inserts everything queued as one Arrow table, in
one transaction, every :data:`RUNS_FLUSH_INTERVAL_S` seconds (or sooner when
:data:`RUNS_MAX_BATCH` rows wait), and on :meth:`RunLog.flush` / :meth:`RunLog.close`. A failed
insert keeps its rows and retries at the next interval (after the lake's own retries).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from dataclasses import astuple, dataclass
from datetime import datetime

import pyarrow as pa

from .lake import Lake

LOG = logging.getLogger("sqlrooms_nb")

RUNS_FLUSH_INTERVAL_S = 2.0
"""Longest a queued run row waits before the writer inserts it, seconds."""
RUNS_MAX_BATCH = 500
"""Rows that make the writer insert at once."""

_SCHEMA = pa.schema(
    [
        ("room", pa.string()),
        ("branch", pa.string()),
        ("cell", pa.string()),
        ("name", pa.string()),
        ("sql_hash", pa.string()),
        ("author", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("duration_ms", pa.float64()),
        ("rows", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
    ]
)


def sql_hash(text: str) -> str:
    """sha256 hex digest of a cell's text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One run: ``started_at`` aware UTC, ``duration_ms`` wall time, ``rows`` ``None`` unless
    ``status`` is ``"ok"``, ``error`` ``None`` unless it is ``"error"``."""

    room: str
    branch: str
    cell: str
    name: str
    sql_hash: str
    author: str
    started_at: datetime
    duration_ms: float
    rows: int | None
    status: str
    error: str | None


class RunLog:
    """Background writer of :class:`RunRecord` rows into ``lake``'s ``runs`` table."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._queue: queue.Queue[RunRecord | threading.Event | None] = queue.Queue()
        self._pending: list[RunRecord] = []
        self._thread = threading.Thread(target=self._loop, name="sqlrooms_nb-runlog", daemon=True)
        self._thread.start()

    def append(self, record: RunRecord) -> None:
        """Queue one row (never blocks on the lake; any thread)."""
        self._queue.put(record)

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until every row queued so far was written (or its insert failed)."""
        if not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self, timeout: float | None = 30) -> None:
        """Write what is queued and stop the writer. Idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=RUNS_FLUSH_INTERVAL_S)
            except queue.Empty:
                self._write()
                continue
            if item is None:
                self._write()
                return
            if isinstance(item, threading.Event):
                self._write()
                item.set()
                continue
            self._pending.append(item)
            if len(self._pending) >= RUNS_MAX_BATCH:
                self._write()

    def _write(self) -> None:
        if not self._pending or self._lake.closed:
            return
        rows = list(zip(*(astuple(r) for r in self._pending), strict=True))
        batch = pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(rows, _SCHEMA, strict=True)],
            schema=_SCHEMA,
        )
        table = self._lake.table("runs")

        def insert() -> None:
            cur = self._lake.cursor()
            try:
                cur.register("_snb_runs", batch)
                cur.execute(f"INSERT INTO {table} SELECT * FROM _snb_runs")
                cur.unregister("_snb_runs")
            finally:
                cur.close()

        try:
            with self._lake.write_lock:
                self._lake.retrying(insert, what=f"write {batch.num_rows} run log rows")
            self._pending.clear()
        except Exception as exc:  # keep the rows; the next interval retries
            LOG.warning("[sqlrooms_nb] could not write the run log: %s", exc)
