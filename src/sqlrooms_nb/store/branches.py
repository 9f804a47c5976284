"""Branch lineage of a room, stored in the lake's ``branches`` table.

Every branch but ``main`` has one lineage row: the branch it was forked from, the version of
the parent it was forked at, who made it and when, and where it was last merged. A new
branch's own rows start with a full snapshot of the forked document (seq 0), written in the
same lake transaction as its lineage row, so a branch recovers on its own, whatever happens to
its parent's rows later, and never exists half-made.

Branch operations are rare, small writes: they run on the calling thread with their own
cursor, under the lake's ``write_lock`` and with the lake's retry on "database is locked".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import pyarrow as pa

from ..errors import ValidationError
from ..names import validate_branch_name, validate_room_id
from .lake import Lake, _rollback

MAIN = "main"
"""The branch every room starts with; it has no lineage row."""


@dataclass(frozen=True)
class Branch:
    """One branch of a room.

    ``parent`` is the branch it was forked from and ``fork_version`` the version id (see
    :mod:`sqlrooms_nb.history`) of the parent it started at; both ``None`` for ``main``.
    ``created_by`` / ``created_at`` (UTC, ``None`` for ``main``) say who made it and when;
    ``merged_into`` / ``merged_at`` the latest merge of this branch into another (``None`` if
    never merged).
    """

    name: str
    parent: str | None = None
    fork_version: str | None = None
    created_by: str = ""
    created_at: datetime | None = None
    merged_into: str | None = None
    merged_at: datetime | None = None


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=timezone.utc)


def list_branches(lake: Lake, room: str) -> list[Branch]:
    """``main`` first, then the room's other branches oldest first.

    Raises :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be read.
    """
    table = lake.table("branches")

    def read() -> list[tuple[str, str, str, str, int, str | None, int | None]]:
        cur = lake.cursor()
        try:
            return cur.execute(
                f"SELECT name, parent, fork_version, created_by, epoch_us(created_at), "
                f"merged_into, epoch_us(merged_at) FROM {table} WHERE room = ? "
                "ORDER BY created_at, name",
                [room],
            ).fetchall()
        finally:
            cur.close()

    rows = lake.retrying(read, what=f"read the branches of room {room!r}")
    return [Branch(MAIN)] + [
        Branch(n, p, v, a or "", _time(c), m, _time(mt)) for n, p, v, a, c, m, mt in rows
    ]


def create_branch(lake: Lake, branch: Branch, room: str, snapshot: pa.Table) -> None:
    """Record ``branch`` (its lineage row) and its first snapshot, in one lake transaction.

    ``snapshot`` is the one-row ``snapshots`` table of the forked document (see
    :func:`sqlrooms_nb.store.persister.snapshot_table`, seq 0). Raises
    :class:`ValidationError` for a bad room id or branch name (:mod:`sqlrooms_nb.names`) or
    if the room already has a branch of that name (including ``main``), and
    :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be written.
    """
    validate_room_id(room)
    validate_branch_name(branch.name)
    if branch.parent is not None:
        validate_branch_name(branch.parent)
    if branch.name == MAIN:
        raise ValidationError(f"branch {MAIN!r} always exists; pick another name")
    table = lake.table("branches")
    row = [
        room,
        branch.name,
        branch.parent,
        branch.fork_version,
        branch.created_by,
        branch.created_at or datetime.now(timezone.utc),
    ]

    def write() -> bool:
        """Insert both rows; ``False`` (nothing written) if the name is taken."""
        cur = lake.cursor()
        view = "_sqlrooms_nb_branch_snapshot"
        try:
            cur.execute("BEGIN TRANSACTION")
            taken = cur.execute(
                f"SELECT 1 FROM {table} WHERE room = ? AND name = ?", [room, branch.name]
            ).fetchone()
            used = cur.execute(
                f"SELECT 1 FROM {lake.table('updates')} WHERE room = ? AND branch = ? "
                f"UNION ALL SELECT 1 FROM {lake.table('snapshots')} WHERE room = ? AND branch = ? "
                "LIMIT 1",
                [room, branch.name, room, branch.name],
            ).fetchone()
            if taken is not None or used is not None:
                cur.execute("ROLLBACK")
                return False
            cur.execute(
                f"INSERT INTO {table} (room, name, parent, fork_version, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            cur.register(view, snapshot)
            cur.execute(f"INSERT INTO {lake.table('snapshots')} BY NAME SELECT * FROM {view}")
            cur.execute("COMMIT")
            return True
        except BaseException:
            _rollback(cur)
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.unregister(view)
            cur.close()

    with lake.write_lock:
        written = lake.retrying(write, what=f"create branch {branch.name!r} of room {room!r}")
    if not written:
        raise ValidationError(
            f"room {room!r} already has a branch named {branch.name!r}; pick another name"
        )


def mark_merged(lake: Lake, room: str, source: str, into: str) -> None:
    """Record that ``source`` was merged into ``into`` now (nothing to record for ``main``).

    Raises :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be written.
    """
    if source == MAIN:
        return
    table = lake.table("branches")
    now = datetime.now(timezone.utc)

    def write() -> None:
        cur = lake.cursor()
        try:
            cur.execute(
                f"UPDATE {table} SET merged_into = ?, merged_at = ? WHERE room = ? AND name = ?",
                [into, now, room, source],
            )
        finally:
            cur.close()

    with lake.write_lock:
        lake.retrying(write, what=f"record the merge of {source!r} into {into!r}")


def has_rows(lake: Lake, room: str, branch: str) -> bool:
    """Whether the lake holds any ``updates`` or ``snapshots`` row of ``room``/``branch``
    (a branch written before lineage was recorded still counts as existing)."""

    def read() -> bool:
        cur = lake.cursor()
        try:
            row = cur.execute(
                f"SELECT 1 FROM {lake.table('snapshots')} WHERE room = ? AND branch = ? "
                f"UNION ALL SELECT 1 FROM {lake.table('updates')} WHERE room = ? AND branch = ? "
                "LIMIT 1",
                [room, branch, room, branch],
            ).fetchone()
        finally:
            cur.close()
        return row is not None

    return lake.retrying(read, what=f"look for branch {branch!r} of room {room!r}")
