"""Maintenance of a lake: flush inlined rows, merge small files, expire lake snapshots, delete
unneeded files, and (opt-in) compact old ``updates`` rows into a snapshot.

What runs, in order (:func:`maintain`; each step one or a few DuckLake calls, each its own
commit, so a failing step leaves the earlier ones done):

1. **flush inlined data** (``ducklake_flush_inlined_data``): small inserts live in catalog tables
   (:data:`~sqlrooms_nb.store.lake.UPDATES_INLINE_ROW_LIMIT`); this writes them to parquet files
   and keeps each row's ``snapshot_id`` (the lake's timeline and tailing are unaffected).
2. **merge adjacent files** (``ducklake_merge_adjacent_files``, then
   ``ducklake_rewrite_data_files`` for files with at least ``rewrite_delete_threshold`` of their
   rows deleted): many small files become one per table; rows keep their ``snapshot_id``, and
   time travel to earlier lake snapshots still reads them.
3. **expire snapshots** (``ducklake_expire_snapshots`` with an explicit ``versions`` list): lake
   snapshots committed more than ``expire_snapshots_older_than_s`` ago (never the latest) are
   forgotten: ``room.at_saved(x)`` / :meth:`Lake.load(at_snapshot=x)
   <sqlrooms_nb.store.lake.Lake.load>` no longer work for them and ``room.saved_versions()`` no
   longer lists them. **No notebook version is lost**: the Loro history lives in the rows
   (``updates`` + ``snapshots``), which expiry never deletes; every version stays listed by
   ``room.history()`` and readable with ``room.at``.
4. **clean up files**: ``ducklake_cleanup_old_files`` deletes the files no remaining snapshot
   needs (replaced by a merge, or freed by the expiry) once they have been unneeded for
   ``cleanup_files_older_than_s`` (a query of another process may still read them meanwhile);
   ``ducklake_delete_orphaned_files`` deletes files of the data path the catalog does not know
   (left by a crash mid-write) older than ``delete_orphaned_files_older_than_s``.
5. **compact updates** (opt-in, ``compact_updates_older_than_s``): see :func:`compact`.

DuckLake's ``CHECKPOINT lake`` statement runs the same functions in one go (expiry and cleanup
driven by the ``expire_older_than`` / ``delete_older_than`` lake options, whose cutoffs meet the
SQLite time comparison problem below) but has no dry run and reports no counts, so this module
calls the functions one by one.

DuckLake behaviour worth knowing (DuckDB 1.5.5, DuckLake format 1.0), measured here:

- On a **SQLite catalog** DuckLake compares ``older_than`` with the stored times as *text*
  (``'2026-11-21 10:16:04+00' < '2026-11-21T09:16:04+00'`` is true), so ``older_than`` treats
  everything stamped on the cutoff's UTC day as older. Expiry therefore passes the snapshot ids
  it chose (compared as timestamps in DuckDB); file cleanup rounds its cutoff down to the start
  of that UTC day (files are deleted up to a day later than asked, never earlier). A PostgreSQL
  catalog compares correctly and gets the exact cutoff.
- The ``snapshot_time`` columns are TIMESTAMPTZ, which the Python client can only fetch with
  ``pytz`` installed: this module fetches ids and epoch numbers only.
- Deletes are inlined in the catalog too (``ducklake_inlined_delete_<table id>``) until a flush.
- A DuckLake function that changes the lake (``ducklake_expire_snapshots``, ...) called as an
  autocommit ``SELECT count(*) FROM ducklake_...(...)`` whose result is fetched with
  ``fetchone()`` returned its count but changed nothing (no error); fetching the whole result
  (``fetchall()``) applies it. Plain DuckDB tables commit either way.

Threads: every step runs with the caller's cursor while the lake's ``write_lock`` is held, so no
insert of this process runs concurrently (ducklake#650): :func:`maintain` takes the lock itself,
or, given ``cur``, trusts that its caller holds it (a :class:`~sqlrooms_nb.store.lake.LakeJob`
does: :class:`MaintenanceJob` runs on a persister's writer thread between flushes). Writers in
other processes are DuckLake's business: a conflicting commit is retried
(:func:`~sqlrooms_nb.store.lake.retrying`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from .. import notebook as nb
from ..errors import StorageError, ValidationError
from .lake import ALIAS, Lake, _rollback, quote_ident
from .persister import snapshot_table
from .recovery import recover

LOG = logging.getLogger("sqlrooms_nb")

__all__ = [
    "DAY_S",
    "MaintenanceJob",
    "MaintenancePolicy",
    "MaintenanceStep",
    "compact",
    "maintain",
]

DAY_S = 86_400.0
"""Seconds in a day."""
EXPIRE_BATCH = 1000
"""Snapshot ids per ``ducklake_expire_snapshots`` call (the ids become an SQL ``IN`` list)."""

_LAKE = f"'{ALIAS}'"  # the attached lake's name as the first argument of ducklake_* functions
_META = quote_ident(f"__ducklake_metadata_{ALIAS}")  # DuckLake's catalog database, attached


@dataclass(frozen=True)
class MaintenancePolicy:
    """When maintenance runs and what it does (see the module docstring for each step).

    ``every_flushes`` / ``every_s``: :class:`MaintenanceJob` runs after the flush that reaches
    either since its last run (default 500 flushes or 10 minutes; checked after flushes only, so
    an idle lake is left alone). 500 flushes leave at most ~500 inlined rows per table in the
    catalog and cost ~5 s of commits, against ~0.1 s for a maintenance run (~2%).

    ``flush_inlined_data``, ``merge_adjacent_files``: steps 1 and 2 on/off (default on).
    ``rewrite_delete_threshold``: share of deleted rows (0..1) from which step 2 rewrites a data
    file without them (default 0.5; deletes only come from :func:`compact` and tag/branch
    updates).

    ``expire_snapshots_older_than_s``: lake snapshots older than this are expired (default 7
    days: ``room.at_saved`` / ``room.saved_versions()`` reach a week back); ``None`` never.
    ``cleanup_files_older_than_s``: files no remaining snapshot needs are deleted this long
    after they became unneeded (default 1 hour: a query of another process still reading them
    has that long to finish); ``None`` never. ``delete_orphaned_files_older_than_s``: files of
    the data path the catalog does not know (a crash mid-write) are deleted when older than this
    (default 1 day: no write in progress takes that long; it lists the whole data path);
    ``None`` never.

    ``compact_updates_older_than_s``: opt-in compaction (:func:`compact`) of every room/branch
    with at least ``compact_min_rows`` (default 100) ``updates`` rows written longer ago than
    this; ``None`` (default) never. It gives up the lake's own timeline of those rows, never a
    notebook version.

    Raises :class:`~sqlrooms_nb.errors.ValidationError` for a count below 1, a negative time or
    a threshold outside 0..1.
    """

    every_flushes: int = 500
    every_s: float = 600.0
    flush_inlined_data: bool = True
    merge_adjacent_files: bool = True
    rewrite_delete_threshold: float = 0.5
    expire_snapshots_older_than_s: float | None = 7 * DAY_S
    cleanup_files_older_than_s: float | None = 3600.0
    delete_orphaned_files_older_than_s: float | None = DAY_S
    compact_updates_older_than_s: float | None = None
    compact_min_rows: int = 100

    def __post_init__(self) -> None:
        for name in ("every_flushes", "compact_min_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(
                    f"MaintenancePolicy.{name} must be a whole number >= 1, got {value!r}"
                )
        names = [
            "every_s",
            "expire_snapshots_older_than_s",
            "cleanup_files_older_than_s",
            "delete_orphaned_files_older_than_s",
            "compact_updates_older_than_s",
        ]
        for name in names:
            value = getattr(self, name)
            if value is None and name != "every_s":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValidationError(
                    f"MaintenancePolicy.{name} must be a number of seconds >= 0"
                    f"{' or None' if name != 'every_s' else ''}, got {value!r}"
                )
        value = self.rewrite_delete_threshold
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValidationError(
                f"MaintenancePolicy.rewrite_delete_threshold must be between 0 and 1, got {value!r}"
            )


@dataclass
class MaintenanceStep:
    """What one maintenance step did (``done``) or, in a dry run, would do (``done`` False).

    ``name``: the step (``"flush inlined data"``, ``"merge adjacent files"``, ``"expire
    snapshots"``, ``"clean up files"``, ``"compact updates <room>/<branch>"``); ``detail``: what
    happened or would happen, with counts; ``elapsed_s``: how long the step took.
    """

    name: str
    detail: str
    done: bool
    elapsed_s: float = 0.0


@dataclass
class _Run:
    """What the steps of one run share."""

    lake: Lake
    cur: duckdb.DuckDBPyConnection
    policy: MaintenancePolicy
    dry_run: bool


def maintain(
    lake: Lake,
    *,
    policy: MaintenancePolicy | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    cur: duckdb.DuckDBPyConnection | None = None,
) -> list[MaintenanceStep]:
    """Run the maintenance steps ``policy`` enables on ``lake``, in order; return what each did.

    ``dry_run``: change nothing; each step says what it would do, with counts (``done`` False).
    ``progress``: called with a line of text before and after each step (on this thread).
    ``cur``: a cursor of ``lake`` whose caller **already holds** ``lake.write_lock`` (as in
    :meth:`LakeJob.run <sqlrooms_nb.store.lake.LakeJob.run>`); ``None`` (the default) opens a
    cursor and takes the lock for the whole run, so this process's writers wait meanwhile.

    Raises :class:`StorageError` naming the step that failed (after the lake's retries on
    transient errors); the steps before it stay done, the later ones are not run. Blocks the
    calling thread (~0.1 s on a small embedded lake; compaction recovers each room it compacts).
    """
    policy = policy or MaintenancePolicy()
    if cur is not None:
        return _run_steps(_Run(lake, cur, policy, dry_run), progress)
    with lake.write_lock:
        own = lake.cursor()
        try:
            return _run_steps(_Run(lake, own, policy, dry_run), progress)
        finally:
            own.close()


def _run_steps(run: _Run, progress: Callable[[str], None] | None) -> list[MaintenanceStep]:
    """The steps of one :func:`maintain` run; the caller holds ``write_lock``."""
    policy = run.policy
    steps: list[tuple[str, Callable[[_Run], list[MaintenanceStep]]]] = []
    if policy.flush_inlined_data:
        steps.append(("flush inlined data", _flush_inlined))
    if policy.merge_adjacent_files:
        steps.append(("merge adjacent files", _merge_files))
    if policy.expire_snapshots_older_than_s is not None:
        steps.append(("expire snapshots", _expire_snapshots))
    if (
        policy.cleanup_files_older_than_s is not None
        or policy.delete_orphaned_files_older_than_s is not None
    ):
        steps.append(("clean up files", _clean_up_files))
    if policy.compact_updates_older_than_s is not None:
        steps.append(("compact updates", _compact_rooms))
    done: list[MaintenanceStep] = []
    for name, fn in steps:
        _tell(progress, f"{name}{' (dry run)' if run.dry_run else ''}...")
        started = time.perf_counter()
        try:
            results = fn(run)
        except Exception as exc:
            kept = ", ".join(s.name for s in done if s.done) or "none"
            raise StorageError(
                f"maintenance of the lake {run.lake.location} failed at step {name!r}: {exc}; "
                f"the steps done before it stay done ({kept}), the later ones were not run"
            ) from exc
        elapsed = time.perf_counter() - started
        for step in results:
            if not step.elapsed_s:
                step.elapsed_s = elapsed / len(results)
            _tell(progress, f"{step.name}: {step.detail}")
        done.extend(results)
    return done


def _tell(progress: Callable[[str], None] | None, text: str) -> None:
    if progress is not None:
        try:
            progress(text)
        except Exception:
            LOG.exception("[sqlrooms_nb] maintenance progress callback failed")


# --- the steps --------------------------------------------------------------------------------


def _flush_inlined(run: _Run) -> list[MaintenanceStep]:
    name = "flush inlined data"
    if run.dry_run:
        counts = _inlined_rows(run.cur)
        if counts is None:
            detail = "would write the inlined rows (count unknown) to parquet files"
        else:
            detail = (
                f"would write {sum(counts.values())} inlined rows to parquet files"
                f"{_per_table(counts)}"
            )
        return [MaintenanceStep(name, detail, False)]
    rows = run.lake.retrying(
        lambda: run.cur.execute(
            f"SELECT table_name, rows_flushed FROM ducklake_flush_inlined_data({_LAKE})"
        ).fetchall(),
        what="flush the inlined rows",
    )
    counts = _sum_by_table(rows)
    detail = f"wrote {sum(counts.values())} inlined rows to parquet files{_per_table(counts)}"
    return [MaintenanceStep(name, detail, True)]


def _merge_files(run: _Run) -> list[MaintenanceStep]:
    name = "merge adjacent files"
    threshold = float(run.policy.rewrite_delete_threshold)
    if run.dry_run:
        info = run.cur.execute(
            f"SELECT table_name, file_count, delete_file_count FROM ducklake_table_info({_LAKE})"
        ).fetchall()
        many = {str(t): int(n) for t, n, _ in info if n and n > 1}
        deletes = sum(int(d or 0) for _, _, d in info)
        detail = (
            f"would merge up to {sum(many.values())} files of {len(many)} tables"
            f"{_per_table(many)}; {deletes} delete files (rows deleted from data files) would "
            f"be checked for a rewrite at a {threshold:g} threshold"
        )
        return [MaintenanceStep(name, detail, False)]

    def merge() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        merged = run.cur.execute(
            "SELECT table_name, files_processed, files_created "
            f"FROM ducklake_merge_adjacent_files({_LAKE})"
        ).fetchall()
        rewritten = run.cur.execute(
            "SELECT table_name, files_processed, files_created "
            f"FROM ducklake_rewrite_data_files({_LAKE}, delete_threshold => ?)",
            [threshold],
        ).fetchall()
        return merged, rewritten

    merged, rewritten = run.lake.retrying(merge, what="merge the lake's small files")
    before = sum(int(r[1] or 0) for r in merged)
    after = sum(int(r[2] or 0) for r in merged)
    per = {str(r[0]): int(r[1] or 0) for r in merged}
    redone = sum(int(r[1] or 0) for r in rewritten)
    detail = (
        f"merged {before} files into {after}{_per_table(per)}; rewrote {redone} files "
        "without their deleted rows"
    )
    return [MaintenanceStep(name, detail, True)]


def _expire_snapshots(run: _Run) -> list[MaintenanceStep]:
    name = "expire snapshots"
    older_than_s = run.policy.expire_snapshots_older_than_s
    assert older_than_s is not None
    cutoff = time.time() - float(older_than_s)
    # Chosen here, compared as timestamps: DuckLake's own ``older_than`` compares them as text
    # on a SQLite catalog (see the module docstring). The latest snapshot is never expired.
    ids = [
        int(row[0])
        for row in run.cur.execute(
            f"SELECT snapshot_id FROM ducklake_snapshots({_LAKE}) "
            f"WHERE snapshot_time < to_timestamp(?) "
            f"AND snapshot_id < (SELECT max(snapshot_id) FROM ducklake_snapshots({_LAKE})) "
            "ORDER BY snapshot_id",
            [cutoff],
        ).fetchall()
    ]
    total = _one_int(run.cur, f"SELECT count(*) FROM ducklake_snapshots({_LAKE})")
    when = _iso(cutoff)
    span = f" (ids {ids[0]}..{ids[-1]})" if ids else ""
    note = "; notebook versions are unaffected (they live in the rows)"
    if run.dry_run:
        detail = (
            f"would expire {len(ids)} of {total} lake snapshots committed before {when}{span}{note}"
        )
        return [MaintenanceStep(name, detail, False)]

    def expire(batch: list[int]) -> int:
        return _one_int(
            run.cur,
            f"SELECT count(*) FROM ducklake_expire_snapshots({_LAKE}, versions => ?::UBIGINT[])",
            [batch],
        )

    expired = 0
    for start in range(0, len(ids), EXPIRE_BATCH):
        batch = ids[start : start + EXPIRE_BATCH]
        expired += run.lake.retrying(
            lambda: expire(batch),  # noqa: B023 (called before the loop moves on)
            what="expire old lake snapshots",
        )
    detail = (
        f"expired {expired} of {total} lake snapshots committed before {when}{span}; "
        f"{total - expired} kept{note}"
    )
    return [MaintenanceStep(name, detail, True)]


def _clean_up_files(run: _Run) -> list[MaintenanceStep]:
    name = "clean up files"
    policy = run.policy
    parts: list[str] = []
    verb = "would delete" if run.dry_run else "deleted"
    dry = "true" if run.dry_run else "false"
    if policy.cleanup_files_older_than_s is not None:
        args, when = _age_args(
            run, float(policy.cleanup_files_older_than_s), text_times=_text_times(run.lake)
        )
        count = run.lake.retrying(
            lambda: _one_int(
                run.cur,
                f"SELECT count(*) FROM ducklake_cleanup_old_files({_LAKE}, dry_run => {dry}"
                f"{args[0]})",
                args[1],
            ),
            what="delete the lake's unneeded files",
        )
        later = " (plus those this run's expiry frees, once old enough)" if run.dry_run else ""
        parts.append(f"{verb} {count} files no lake snapshot needs any more, {when}{later}")
    if policy.delete_orphaned_files_older_than_s is not None:
        args, when = _age_args(
            run, float(policy.delete_orphaned_files_older_than_s), text_times=False
        )
        count = run.lake.retrying(
            lambda: _one_int(
                run.cur,
                f"SELECT count(*) FROM ducklake_delete_orphaned_files({_LAKE}, dry_run => {dry}"
                f"{args[0]})",
                args[1],
            ),
            what="delete the orphaned files of the lake's data path",
        )
        parts.append(f"{verb} {count} orphaned files (unknown to the catalog), {when}")
    return [MaintenanceStep(name, "; ".join(parts), not run.dry_run)]


def _age_args(
    run: _Run, older_than_s: float, *, text_times: bool
) -> tuple[tuple[str, list[float]], str]:
    """(SQL argument text, its parameters) selecting files older than ``older_than_s``, and
    words saying which."""
    if older_than_s <= 0:
        return (", cleanup_all => true", []), "whatever their age"
    cutoff = time.time() - older_than_s
    if text_times:
        # SQLite catalog: DuckLake compares the times as text, where a time on the cutoff's UTC
        # day compares as older whatever its hour; one microsecond before that day's midnight
        # compares right (and deletes later than asked, never earlier).
        day = datetime.fromtimestamp(cutoff, tz=timezone.utc).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        cutoff = day.timestamp() - 1e-6
        return (
            ", older_than => to_timestamp(?)",
            [cutoff],
        ), f"unneeded since before {_iso(day.timestamp())}"
    return (", older_than => to_timestamp(?)", [cutoff]), f"older than {_iso(cutoff)}"


def _text_times(lake: Lake) -> bool:
    """Whether DuckLake compares catalog times as text on ``lake`` (a SQLite catalog)."""
    return lake.config.catalog != "postgres"


def _compact_rooms(run: _Run) -> list[MaintenanceStep]:
    older_than_s = run.policy.compact_updates_older_than_s
    assert older_than_s is not None
    cutoff = time.time() - float(older_than_s)
    pairs = run.cur.execute(
        f"SELECT room, branch FROM {run.lake.table('updates')} "
        "WHERE written_at < to_timestamp(?) GROUP BY room, branch HAVING count(*) >= ? "
        "ORDER BY room, branch",
        [cutoff, run.policy.compact_min_rows],
    ).fetchall()
    if not pairs:
        detail = (
            f"nothing to compact: no room/branch has {run.policy.compact_min_rows} or more "
            f"update rows written before {_iso(cutoff)}"
        )
        return [MaintenanceStep("compact updates", detail, not run.dry_run)]
    return [
        _compact(run.lake, run.cur, str(room), str(branch), cutoff, run.dry_run)
        for room, branch in pairs
    ]


# --- compaction -----------------------------------------------------------------------------

_GIVES_UP = (
    "kept: every notebook version (the new snapshot holds the whole Loro history; room.history()"
    " and room.at are unchanged) and every changes row (the history panel); given up: the "
    "lake's own timeline of the deleted rows (room.saved_versions() no longer lists them, nor "
    "does sqlrooms_history.updates), and once the lake snapshots before this compaction expire, "
    "room.at_saved(x) / Lake.load(at_snapshot=x) can no longer show the room as the lake held "
    "it at a lake snapshot x before {cutoff}"
)


def compact(
    lake: Lake,
    room: str,
    branch: str,
    *,
    older_than_s: float,
    dry_run: bool = False,
    cur: duckdb.DuckDBPyConnection | None = None,
) -> MaintenanceStep:
    """Fold the ``updates`` rows of ``room``/``branch`` written more than ``older_than_s`` seconds
    ago into a fresh full snapshot, and delete them (opt-in; never run unless asked).

    How: recover the branch from the lake into a new document (:func:`recover`), write it as a
    ``snapshots`` row (a Loro snapshot holds the document's **whole history**), and in the same
    transaction delete the ``updates`` rows that are older than the window **and** covered by
    that snapshot. Nothing else is deleted: older snapshots and every ``changes`` row stay.

    What it keeps: every notebook version (``room.history()``, ``room.at``, restore, branches
    and tags all read the Loro history, which the snapshot carries in full) and the history
    panel's ``changes`` rows. What it gives up, for the deleted rows: the lake's own timeline
    (:mod:`.timeline`: ``room.saved_versions()`` no longer lists those batches, nor does the
    ``sqlrooms_history.updates`` view, with their per-batch version vectors and write times);
    and, once the lake snapshots from before the compaction are expired
    (:attr:`MaintenancePolicy.expire_snapshots_older_than_s`), restoring the room "as the lake
    held it at DuckLake snapshot x" (``room.at_saved(x)``, :meth:`Lake.load(at_snapshot=x)
    <sqlrooms_nb.store.lake.Lake.load>`) for x before the window. Until that expiry, DuckLake
    time travel to such an x still sees the deleted rows.

    Several writers: a kernel writing the room must have read the lake (it tails every
    ``FlushPolicy.poll_s``) since the rows were written, which a window of days guarantees for
    any running kernel; one that has not read the lake for longer than the window (a machine
    asleep that long) should be re-opened. Keep ``older_than_s`` at a day or more outside tests.

    ``dry_run``: count what would be deleted, change nothing (``done`` False). ``cur``: as for
    :func:`maintain` (a caller given one holds ``lake.write_lock``; ``None`` takes it). Returns
    the step, whose ``detail`` says what was kept and what was given up. Raises
    :class:`StorageError` (:class:`~sqlrooms_nb.errors.RecoveryError` if the branch cannot be
    recovered; nothing is deleted then) or :class:`ValidationError` for a negative window.
    """
    if isinstance(older_than_s, bool) or not isinstance(older_than_s, (int, float)):
        raise ValidationError(f"older_than_s must be a number of seconds, got {older_than_s!r}")
    if older_than_s < 0:
        raise ValidationError(f"older_than_s must be >= 0, got {older_than_s!r}")
    cutoff = time.time() - float(older_than_s)
    if cur is not None:
        return _compact(lake, cur, room, branch, cutoff, dry_run)
    with lake.write_lock:
        own = lake.cursor()
        try:
            return _compact(lake, own, room, branch, cutoff, dry_run)
        finally:
            own.close()


def _compact(
    lake: Lake,
    cur: duckdb.DuckDBPyConnection,
    room: str,
    branch: str,
    cutoff: float,
    dry_run: bool,
) -> MaintenanceStep:
    """:func:`compact` with the cutoff as epoch seconds; the caller holds ``write_lock``."""
    started = time.perf_counter()
    name = f"compact updates {room}/{branch}"
    updates, snapshots = lake.table("updates"), lake.table("snapshots")
    when = _iso(cutoff)
    gives_up = _GIVES_UP.format(cutoff=when)
    row = cur.execute(
        f"SELECT count(*), coalesce(sum(byte_length), 0) FROM {updates} "
        "WHERE room = ? AND branch = ? AND written_at < to_timestamp(?)",
        [room, branch, cutoff],
    ).fetchone()
    old_rows, old_bytes = (int(row[0]), int(row[1])) if row else (0, 0)
    if old_rows == 0:
        detail = f"nothing to compact: no update row of {room}/{branch} written before {when}"
        return MaintenanceStep(name, detail, not dry_run, time.perf_counter() - started)
    if dry_run:
        detail = (
            f"would write a fresh snapshot of {room}/{branch} and delete its {old_rows} update "
            f"rows ({old_bytes} bytes) written before {when}; {gives_up}"
        )
        return MaintenanceStep(name, detail, False, time.perf_counter() - started)

    # The lake version is read BEFORE the recovery reads: the recovery then sees every row
    # committed up to it (DuckLake snapshot ids grow with commits), so the new snapshot holds
    # every row whose snapshot_id <= lake_version. Conservative: rows committed in between are
    # in the snapshot too but stay in ``updates`` (importing them again is harmless).
    lake_version = lake.retrying(
        lambda: _one_int(cur, f"SELECT id FROM {quote_ident(ALIAS)}.current_snapshot()"),
        what="read the lake's current snapshot id",
    )
    doc = nb.new_doc()
    last_seq = recover(lake, room, branch, doc, warm=False)
    writer = str(doc.peer_id)  # a fresh writer id: no updates row has it
    table = snapshot_table(doc, room, branch, writer, last_seq)
    has_lake_version = "lake_version" in _columns(cur, snapshots)
    if has_lake_version:
        table = _set_column(table, "lake_version", lake_version)
        # Coverage rule (see the lake module): a row u is covered by snapshot S iff
        #   (S.lake_version IS NOT NULL AND u.snapshot_id <= S.lake_version)
        #   OR (u.writer = S.writer AND u.seq <= S.seq)
        #   OR (S.lake_version IS NULL AND u.seq <= S.seq).
        # S.writer is fresh (no row has it) and S.lake_version is set, so the rows S covers
        # are exactly those with snapshot_id <= lake_version: the predicate below.
        covered, params = "snapshot_id <= ?", [lake_version]
    else:
        # A lake without snapshots.lake_version (layout 3, one writer per room): S covers the
        # rows with seq <= S.seq (the third clause), and S.seq is the largest seq the recovery
        # saw, so S holds every such row that existed then; a row written since then is newer
        # than the window (the written_at condition) and stays.
        if "lake_version" in table.column_names:
            table = table.drop_columns(["lake_version"])
        covered, params = "seq <= ?", [last_seq]
    view = "_sqlrooms_nb_compaction_snapshot"

    def write() -> int:
        try:
            cur.execute("BEGIN TRANSACTION")
            cur.register(view, table)
            cur.execute(f"INSERT INTO {snapshots} BY NAME SELECT * FROM {view}")
            deleted = _one_int(
                cur,
                f"DELETE FROM {updates} WHERE room = ? AND branch = ? "
                f"AND written_at < to_timestamp(?) AND {covered}",
                [room, branch, cutoff, *params],
            )
            cur.execute("COMMIT")
            return deleted
        except BaseException:
            _rollback(cur)
            raise
        finally:
            try:
                cur.unregister(view)
            except duckdb.Error:
                pass

    deleted = lake.retrying(write, what=f"compact the updates of room {room!r} branch {branch!r}")
    size = int(table.column("byte_length")[0].as_py() or 0)
    detail = (
        f"wrote a fresh snapshot of {room}/{branch} ({size} bytes, seq {last_seq}, "
        f"lake version {lake_version}) and deleted {deleted} of its {old_rows} update rows "
        f"written before {when}; {gives_up}"
    )
    LOG.info("[sqlrooms_nb] %s: %s", name, detail)
    return MaintenanceStep(name, detail, True, time.perf_counter() - started)


# --- the job --------------------------------------------------------------------------------


class MaintenanceJob:
    """:func:`maintain` as a :class:`~sqlrooms_nb.store.lake.LakeJob` of ``lake``: run by a
    persister's writer thread after the flush that makes it due (every ``policy.every_flushes``
    flushes or ``policy.every_s`` seconds since the last run), with the writer's cursor while
    ``lake.write_lock`` is held, so never concurrently with this process's inserts.

    On the lake's release (``final``) it does nothing: maintenance never delays a close.
    Attributes for observers: ``runs`` (completed runs), ``last_steps`` (the steps of the last
    completed run), ``last_error`` (the last failure's message, ``None`` after a success),
    ``last_run_s`` (duration of the last completed run, seconds).
    """

    name = "maintenance"

    def __init__(self, policy: MaintenancePolicy | None = None, *, lake: Lake) -> None:
        self.policy = policy or MaintenancePolicy()
        self._lake = lake
        self._lock = threading.Lock()  # due() may be called from several writer threads
        self._last_flushes = 0
        self._last_at = time.monotonic()
        self.runs = 0
        self.last_steps: Sequence[MaintenanceStep] = ()
        self.last_error: str | None = None
        self.last_run_s = 0.0

    def due(self, flushes: int, now: float) -> bool:
        """Whether ``every_flushes`` flushes or ``every_s`` seconds passed since the last run
        (or since the job was created). Answering yes starts the next interval."""
        with self._lock:
            if (
                flushes - self._last_flushes < self.policy.every_flushes
                and now - self._last_at < self.policy.every_s
            ):
                return False
            self._last_flushes = flushes
            self._last_at = now
            return True

    def run(self, cur: duckdb.DuckDBPyConnection, final: bool) -> None:
        """One :func:`maintain` run with ``cur`` (the caller holds ``write_lock``); nothing when
        ``final``. Raises :class:`StorageError` if a step failed (the lake logs it; the job is
        tried again when next due)."""
        if final:
            return
        started = time.perf_counter()
        try:
            steps = maintain(self._lake, policy=self.policy, cur=cur)
        except StorageError as exc:
            self.last_error = str(exc)
            raise
        self.last_run_s = time.perf_counter() - started
        self.last_steps = tuple(steps)
        self.last_error = None
        self.runs += 1
        LOG.info(
            "[sqlrooms_nb] lake maintenance of %s in %.3f s: %s",
            self._lake.location,
            self.last_run_s,
            "; ".join(f"{s.name}: {s.detail}" for s in steps),
        )

    def __repr__(self) -> str:
        return f"MaintenanceJob(runs={self.runs}, {self.policy!r})"


# --- helpers --------------------------------------------------------------------------------


def _one_int(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> int:
    """The first column of the first row of ``sql`` as an int (0 for none / NULL).

    Fetches the whole result: a DuckLake function that changes the lake (expire, cleanup) in
    an autocommit statement whose result is only partly fetched (``fetchone``) is rolled back
    when the next statement closes it, without an error.
    """
    rows = cur.execute(sql, list(params)).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _columns(cur: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    description = cur.execute(f"SELECT * FROM {table} LIMIT 0").description or []
    return [str(column[0]) for column in description]


def _set_column(table: pa.Table, name: str, value: int) -> pa.Table:
    """``table`` (one row) with column ``name`` (BIGINT) set to ``value``, added if missing."""
    column = pa.array([value] * table.num_rows, pa.int64())
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, column)
    return table.append_column(name, column)


def _inlined_rows(cur: duckdb.DuckDBPyConnection) -> dict[str, int] | None:
    """Live inlined rows per table, read from DuckLake's catalog tables; ``None`` if the
    catalog cannot be read that way (the layout is DuckLake's, not a public API)."""
    try:
        names = {
            int(tid): str(name)
            for name, tid in cur.execute(
                f"SELECT table_name, table_id FROM ducklake_table_info({_LAKE})"
            ).fetchall()
        }
        inlined = cur.execute(
            f"SELECT table_id, table_name FROM {_META}.ducklake_inlined_data_tables"
        ).fetchall()
        counts: dict[str, int] = {}
        for tid, storage in inlined:
            n = _one_int(
                cur,
                f"SELECT count(*) FROM {_META}.{quote_ident(str(storage))} "
                "WHERE end_snapshot IS NULL",
            )
            if n:
                label = names.get(int(tid), f"table {tid}")
                counts[label] = counts.get(label, 0) + n
        return counts
    except duckdb.Error:
        LOG.debug("[sqlrooms_nb] cannot count the inlined rows", exc_info=True)
        return None


def _sum_by_table(rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, n in rows:
        counts[str(table)] = counts.get(str(table), 0) + int(n or 0)
    return {t: n for t, n in counts.items() if n}


def _per_table(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) + ")"


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="seconds")
