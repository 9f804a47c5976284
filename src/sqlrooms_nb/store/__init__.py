"""Persistence of notebook documents in DuckLake.

- :mod:`.config` — :class:`LakeConfig` / :func:`parse_lake`: where a lake lives (embedded folder,
  SQLite file, PostgreSQL catalog; local or ``s3://`` data), never holding credentials.
- :mod:`.extensions` — a DuckDB connection with the extensions a lake needs (ducklake, sqlite /
  postgres scanner, httpfs) loaded from their Python wheels (never downloaded at run time).
- :mod:`.lake` — :class:`Lake`: one attached lake (catalog + data path) shared per
  process, the project's tables, reads of a room (:class:`StoredRoom`), retries.
- :mod:`.checksums` — the CRC-32 every stored blob carries, checked on every read.
- :mod:`.persister` — :class:`Persister`: the background writer of one (room, branch) document
  (batched updates + change rows, snapshots), driven by a :class:`FlushPolicy`.
- :mod:`.recovery` — :func:`recover`: latest snapshot + later updates into a document,
  passing over damaged rows and saying what that cost; then a crashed kernel's spill files.
- :mod:`.spill` — spill files: unsaved changes kept on the kernel's local disk (fsynced) while
  the lake cannot be written, replayed on the next open after a crash.
- :mod:`.branches` — branch lineage (:class:`Branch`): fork, first snapshot, merges.
- :mod:`.tags` — named versions of a room's branch (:class:`Tag`).
- :mod:`.timeline` — DuckLake's own timeline: which lake snapshots saved a room's rows.

Nothing here knows about widgets or views.
"""

from .branches import MAIN, Branch, create_branch, has_rows, list_branches, mark_merged
from .config import LakeConfig, S3Settings, parse_lake
from .extensions import connect
from .lake import Lake, StoredRoom, retrying
from .persister import FlushPolicy, Persister, snapshot_table
from .recovery import Recovered, recover, recover_room
from .tags import Tag, add_tag, list_tags
from .timeline import SavedVersion, saved_versions

__all__ = [
    "MAIN",
    "Branch",
    "FlushPolicy",
    "Lake",
    "LakeConfig",
    "Persister",
    "Recovered",
    "S3Settings",
    "SavedVersion",
    "StoredRoom",
    "Tag",
    "add_tag",
    "connect",
    "create_branch",
    "has_rows",
    "list_branches",
    "list_tags",
    "mark_merged",
    "parse_lake",
    "recover",
    "recover_room",
    "retrying",
    "saved_versions",
    "snapshot_table",
]
