"""Named versions (tags) of a room's branch, stored in the lake's ``tags`` table.

Tags are rare, small writes: they run on the calling thread with their own cursor, under the
lake's ``write_lock`` (so this process commits one lake transaction at a time) and with the
lake's retry on "database is locked".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import ValidationError
from ..names import validate_branch_name, validate_room_id, validate_tag_name
from .lake import Lake


@dataclass(frozen=True)
class Tag:
    """A named version: ``version`` is a version id; ``time`` is when it was tagged (UTC)."""

    name: str
    version: str
    author: str
    time: datetime


def add_tag(lake: Lake, room: str, branch: str, name: str, version: str, author: str) -> Tag:
    """Record tag ``name`` for ``version``. Names are unique per room and branch.

    Raises :class:`ValidationError` for a bad room id, branch or tag name
    (:mod:`sqlrooms_nb.names`) or when the name is taken (tags never move), and
    :class:`~sqlrooms_nb.errors.StorageError` when the lake cannot be written.
    """
    validate_room_id(room)
    validate_branch_name(branch)
    validate_tag_name(name)
    table = lake.table("tags")
    now = datetime.now(timezone.utc)

    def write() -> str | None:
        """Insert the tag; the version the name already has if it is taken (nothing written)."""
        cur = lake.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            taken = cur.execute(
                f"SELECT version FROM {table} WHERE room = ? AND branch = ? AND name = ?",
                [room, branch, name],
            ).fetchone()
            if taken is not None:
                cur.execute("ROLLBACK")
                return str(taken[0])
            cur.execute(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                [room, branch, name, version, author, now],
            )
            cur.execute("COMMIT")
            return None
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except Exception:
                pass
            raise
        finally:
            cur.close()

    with lake.write_lock:
        taken = lake.retrying(write, what=f"tag version {version} as {name!r}")
    if taken is not None:
        raise ValidationError(
            f"tag {name!r} already names version {taken}; tags never move, pick another name"
        )
    return Tag(name, version, author, now)


def list_tags(lake: Lake, room: str, branch: str) -> list[Tag]:
    """Tags of a room's branch, newest first."""
    table = lake.table("tags")

    def read() -> list[Tag]:
        cur = lake.cursor()
        try:
            rows = cur.execute(
                f"SELECT name, version, created_by, epoch_us(created_at) FROM {table} "
                "WHERE room = ? AND branch = ? ORDER BY created_at DESC, name",
                [room, branch],
            ).fetchall()
        finally:
            cur.close()
        return [
            Tag(n, v, a or "", datetime.fromtimestamp(us / 1e6, tz=timezone.utc))
            for n, v, a, us in rows
        ]

    return lake.retrying(read, what=f"read the tags of {room}/{branch}")
