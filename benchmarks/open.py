"""P4, open: time to open the paper room from the lake to a usable document, vs raw Loro
importing the same snapshot.

The room is :func:`benchmarks.rooms.built_room` (the ``persist`` run's lake; the whole trace
at full size). Measured, median of the repeats, interleaved with the baseline:

- **open, lake attached**: ``SqlRoom(room, lake=...)`` until ``room.cells`` is read (recovery
  from the latest snapshot plus later updates, the writer started, the history views), while
  the process already holds the lake open (a kernel's second room, or a re-run cell) — the
  target's case;
- **open, cold**: the same with no lake attached in the process (DuckDB instance, extensions,
  catalog attach included);
- **open, connection reused**: the same, passing the kernel's DuckDB connection for SQL cells
  (kept across opens) instead of letting the room make its own;
- **open → first edit**: the attached open plus one edit committed: Loro decodes a snapshot's
  history lazily, on the first edit (recovery warms it on a background thread meanwhile).

Baseline: ``LoroDoc().import_(snapshot)`` of the room's newest snapshot, then its cells read
(and, for the last row, one edit committed). Target: ≤ 50 ms to a usable document.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb
from benchmarks import persist, rooms, traces
from benchmarks.suite import Row, median, pick
from loro import LoroDoc

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import Lake

NAME = "open"
TARGET_MS = 50.0


def _repeats(size: str) -> int:
    return pick(size, smoke=1, medium=5, full=9)  # type: ignore[no-any-return]


def open_ms(
    lake: Path,
    room: str,
    cell: str,
    expected: str,
    *,
    edit: bool = False,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> float:
    """Milliseconds from ``SqlRoom(...)`` to its cells read (and, with ``edit``, one edit
    committed in ``cell``); ``connection``: the DuckDB connection for SQL cells (``None``: the
    room makes its own). Closes the room afterwards (untimed; an edit is then saved).
    Raises ``AssertionError`` if the cell's text is not ``expected``."""
    start = time.perf_counter()
    opened = snb.SqlRoom(room, lake=lake, connection=connection)
    try:
        cells = opened.cells
        if edit:
            nb.cell_text(nb.find_cell(opened.doc, cell)[1]).insert(0, "%")
            opened.doc.commit()
        took = (time.perf_counter() - start) * 1000
        source = next(c.source for c in cells if c.id == cell)
        if source != expected:
            raise AssertionError(f"room {room!r} opened with the wrong text")
    finally:
        opened.close()
    return took


def import_ms(snapshot: bytes, cell: str, *, edit: bool = False) -> float:
    """Milliseconds for raw Loro to import ``snapshot`` and read its cells (and, with
    ``edit``, commit one edit in ``cell``)."""
    start = time.perf_counter()
    doc = nb.configure(LoroDoc())  # type: ignore[no-untyped-call]
    doc.import_(snapshot)
    nb.read_cells(doc)
    if edit:
        nb.cell_text(nb.find_cell(doc, cell)[1]).insert(0, "%")
        doc.commit()
    return (time.perf_counter() - start) * 1000


def run(size: str, out: Path) -> list[Row]:
    """P4 rows: attached open, cold open, open -> first edit; each vs raw Loro import."""
    n = persist.params(size).edits
    built = rooms.built_room(n, 0)
    expected = traces.expected_text(n)
    snapshot = rooms.latest_snapshot(built.lake, built.room)
    repeats = _repeats(size)
    attached: list[float] = []
    cold: list[float] = []
    reused: list[float] = []
    base: list[float] = []
    user_con = duckdb.connect()  # a kernel's connection, kept across opens
    try:
        for _ in range(repeats):
            cold.append(open_ms(built.lake, built.room, built.cell, expected))
            holder = Lake.open(built.lake)  # the process keeps the lake attached meanwhile
            try:
                attached.append(open_ms(built.lake, built.room, built.cell, expected))
                reused.append(
                    open_ms(built.lake, built.room, built.cell, expected, connection=user_con)
                )
            finally:
                holder.release()
            base.append(import_ms(snapshot, built.cell))
    finally:
        user_con.close()
    # Editing changes the lake: the first-edit rows run on a copy each time.
    edit_ours: list[float] = []
    edit_base: list[float] = []
    for _ in range(repeats):
        copy = rooms.scratch("open-edit-") / "lake"
        shutil.copytree(built.lake, copy)
        holder = Lake.open(copy)
        try:
            edit_ours.append(open_ms(copy, built.room, built.cell, expected, edit=True))
        finally:
            holder.release()
        edit_base.append(import_ms(snapshot, built.cell, edit=True))
    ours = median(attached)
    note = f"{n:,}-edit room, snapshot {len(snapshot) / 1024:.0f} KiB, median of {repeats}"
    raw = median(base)
    return [
        Row(
            NAME,
            "P4 open to a usable document (lake attached)",
            "ms",
            ours,
            "raw Loro import",
            raw,
            f"≤ {TARGET_MS:.0f} ms",
            ours <= TARGET_MS,
            note,
        ),
        Row(
            NAME,
            "P4 open, lake attached, SQL connection reused",
            "ms",
            median(reused),
            "raw Loro import",
            raw,
            note=note + "; SqlRoom(connection=con), con kept open",
        ),
        Row(
            NAME,
            "P4 open, cold (no lake attached in the process)",
            "ms",
            median(cold),
            "raw Loro import",
            raw,
            note=note,
        ),
        Row(
            NAME,
            "P4 open and commit a first edit (lake attached)",
            "ms",
            median(edit_ours),
            "raw import + edit",
            median(edit_base),
            note=note,
        ),
    ]
