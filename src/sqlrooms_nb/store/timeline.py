"""DuckLake's own timeline of a room: which lake snapshots hold its rows (what was saved when).

This is the second timeline next to the Loro history: it says when bytes reached storage,
independent of the CRDT, for audits. Every row DuckLake stores carries the id of the lake
snapshot that inserted it (the ``snapshot_id`` virtual column); joining with the lake's
``snapshots()`` gives the time. Reading a room *as of* one of those ids is
:meth:`~sqlrooms_nb.store.lake.Lake.load` with ``at_snapshot``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from .lake import Lake


@dataclass(frozen=True)
class SavedVersion:
    """One lake snapshot that saved rows of a room's branch.

    ``snapshot_id`` is DuckLake's id (for ``room.at_saved``); ``time`` its commit time (UTC);
    ``kind`` says whether it saved an ``updates`` batch or a document ``snapshot``; ``seq``
    is that row's writer sequence and ``changes`` its change count.
    """

    snapshot_id: int
    time: datetime
    kind: Literal["updates", "snapshot"]
    seq: int
    changes: int


def saved_versions(lake: Lake, room: str, branch: str) -> list[SavedVersion]:
    """The lake snapshots that hold ``room``/``branch`` rows, newest first.

    Raises :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be read.
    """
    updates, snapshots = lake.table("updates"), lake.table("snapshots")
    query = f"""
        WITH saved AS (
            SELECT snapshot_id, 'updates' AS kind, seq, change_count AS changes
            FROM {updates} WHERE room = ? AND branch = ?
            UNION ALL
            SELECT snapshot_id, 'snapshot' AS kind, seq, change_count AS changes
            FROM {snapshots} WHERE room = ? AND branch = ?
        )
        SELECT saved.snapshot_id, epoch_us(s.snapshot_time), saved.kind, saved.seq,
               coalesce(saved.changes, 0)
        FROM saved JOIN {lake.alias}.snapshots() s ON s.snapshot_id = saved.snapshot_id
        ORDER BY saved.snapshot_id DESC, saved.kind
    """

    def read() -> list[SavedVersion]:
        cur = lake.cursor()
        try:
            rows = cur.execute(query, [room, branch, room, branch]).fetchall()
        finally:
            cur.close()
        return [
            SavedVersion(
                int(sid),
                datetime.fromtimestamp(us / 1e6, tz=timezone.utc),
                kind,
                int(seq),
                int(changes),
            )
            for sid, us, kind, seq, changes in rows
        ]

    return lake.retrying(read, what=f"read the saved versions of {room}/{branch}")
