"""Rooms written through the real persister, shared by the benchmarks of one run.

:func:`built_room` replays the first ``n`` edits of the paper trace into one cell of a
:class:`~sqlrooms_nb.SqlRoom` (``room.doc``, one commit per edit, the real persister, an
embedded lake in a temporary folder), times it until everything is saved, closes the room
(final snapshot) and returns a :class:`BuiltRoom`. Results are kept for the process, so
``persist`` builds the lakes that ``storage``, ``open`` and ``time_travel`` then read; a
benchmark run alone builds what it needs. Temporary folders are removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import traces
from benchmarks.suite import folder_size

import sqlrooms_nb as snb
from sqlrooms_nb import history as hist
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import Lake

ROOM = "paper"
MARKS = (10, 50, 90)
"""Points of the history (percent of the edits) whose versions are recorded for time travel."""

_root: Path | None = None


def scratch(prefix: str) -> Path:
    """A new empty folder under this run's temporary root (removed at exit)."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="snb-bench-"))
        atexit.register(shutil.rmtree, _root, True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_root))


@dataclass(frozen=True)
class BuiltRoom:
    """A room holding the first ``edits`` edits of the paper trace in cell ``cell``.

    ``lake``: the embedded lake folder (closed: flushed, final snapshot written).
    ``edit_s``: seconds from the first edit to the last commit; ``saved_s``: to the end of
    ``room.flush()`` (everything in the lake). ``versions``: percent of the edits -> version
    id after that many edits (see :data:`MARKS`). ``lake_bytes`` / ``lake_files``: the lake
    folder after close (catalog + data files).
    """

    lake: Path
    room: str
    cell: str
    edits: int
    edit_s: float
    saved_s: float
    versions: dict[int, str]
    lake_bytes: int
    lake_files: int

    @property
    def edits_per_s(self) -> float:
        """Edits per second until everything was saved."""
        return self.edits / self.saved_s


def persist_into(lake: Path | str, room_id: str, n: int) -> BuiltRoom:
    """Replay the first ``n`` paper edits into a new room ``room_id`` of ``lake`` through the
    real persister and close it. Raises ``AssertionError`` when the room's text is not the
    trace's text (after the replay, and again as re-opened from the lake)."""
    patches = traces.paper_patches(n)
    cuts = sorted({max(1, n * m // 100) for m in MARKS} | {n})
    versions: dict[int, str] = {}
    with snb.SqlRoom(room_id, lake=lake, author="bench") as room:
        cell = room.add_cell("", name="paper")
        room.flush()
        doc = room.doc
        text = nb.cell_text(nb.find_cell(doc, cell)[1])
        done = 0
        start = time.perf_counter()
        # No per-edit hook: versions are read between chunks, off the timed path's inner loop.
        for cut in cuts:
            traces.replay_loro(doc, text, patches[done:cut])
            done = cut
            for mark in MARKS:
                if max(1, n * mark // 100) == cut:
                    versions[mark] = hist.current_version(doc)
        edited = time.perf_counter()
        room.flush()
        saved = time.perf_counter()
        if text.to_string() != traces.expected_text(n):
            raise AssertionError(f"room text after {n} edits differs from the trace")
    with snb.SqlRoom(room_id, lake=lake) as again:
        source = next(c.source for c in again.cells if c.id == cell)
        if source != traces.expected_text(n):
            raise AssertionError(f"re-opened room after {n} edits differs from the trace")
    size, files = folder_size(Path(lake)) if isinstance(lake, Path) else (0, 0)
    return BuiltRoom(
        lake=Path(lake),
        room=room_id,
        cell=cell,
        edits=n,
        edit_s=edited - start,
        saved_s=saved - start,
        versions=versions,
        lake_bytes=size,
        lake_files=files,
    )


@functools.cache
def built_room(n: int, repeat: int = 0) -> BuiltRoom:
    """The ``repeat``-th room of ``n`` edits built in this process (built on first use, each
    in its own new lake)."""
    return persist_into(scratch(f"room-n{n}-r{repeat}-") / "lake", ROOM, n)


@functools.cache
def empty_lake_bytes() -> tuple[int, int]:
    """``(bytes, files)`` of a lake holding the project's tables and nothing else: the fixed
    cost every lake pays, whatever it holds."""
    folder = scratch("empty-") / "lake"
    Lake.open(folder).release()
    return folder_size(folder)


@dataclass(frozen=True)
class LakeContent:
    """What one room's rows hold: ``updates`` rows and their Loro bytes, ``changes`` rows,
    ``snapshots`` rows and their bytes."""

    updates: int
    update_bytes: int
    changes: int
    snapshots: int
    snapshot_bytes: int


def lake_content(lake: Path | str, room: str) -> LakeContent:
    """Count ``room``'s rows and blob bytes in ``lake`` (main branch)."""
    opened = Lake.open(lake)
    cur = opened.cursor()
    try:

        def one(sql: str) -> tuple[int, int]:
            row = cur.execute(sql, [room]).fetchone()
            return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

        updates = one(
            f"SELECT count(*), sum(octet_length(bytes)) FROM {opened.table('updates')} "
            "WHERE room = ? AND branch = 'main'"
        )
        changes = one(
            f"SELECT count(*), 0 FROM {opened.table('changes')} WHERE room = ? AND branch = 'main'"
        )
        snaps = one(
            f"SELECT count(*), sum(octet_length(bytes)) FROM {opened.table('snapshots')} "
            "WHERE room = ? AND branch = 'main'"
        )
    finally:
        cur.close()
        opened.release()
    return LakeContent(updates[0], updates[1], changes[0], snaps[0], snaps[1])


def latest_snapshot(lake: Path | str, room: str) -> bytes:
    """The newest snapshot blob of ``room`` (main branch). Raises ``LookupError`` if none."""
    opened = Lake.open(lake)
    cur = opened.cursor()
    try:
        row = cur.execute(
            f"SELECT bytes FROM {opened.table('snapshots')} WHERE room = ? AND branch = 'main' "
            "ORDER BY created_at DESC LIMIT 1",
            [room],
        ).fetchone()
    finally:
        cur.close()
        opened.release()
    if row is None:
        raise LookupError(f"room {room!r} has no snapshot")
    return bytes(row[0])
