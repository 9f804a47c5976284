"""The background writer of one (room, branch) document: batched updates, change rows, snapshots.

A flush exports everything the document has beyond the persister's *saved version*
(``doc.export(ExportMode.Updates(from_=saved_vv))``) and writes, in one DuckLake transaction,
one ``updates`` row (the bytes) and one ``changes`` row per Loro change in them, each as one
Arrow table and one INSERT (every DuckLake commit costs ~10 ms whatever its size, and every
INSERT writes its own file or inlined block). Only then does the saved version advance and
``on_saved(version)`` run. Because a flush exports from the saved version, the same bytes
arriving twice (a view re-sending an update) add nothing to the document and nothing to the
lake: dedupe is inherent.

On failure nothing advances: the changes stay in the document, ``on_error(StorageError)`` is
called, and the writer retries with exponential backoff (``RETRY_FIRST_DELAY_S`` doubling up to
``RETRY_MAX_DELAY_S``) until it succeeds. A snapshot (``ExportMode.Snapshot``, never inlined)
is written on close and when :meth:`FlushPolicy.snapshot_due` says so: once this writer has
written at least ``snapshot_every_changes`` Loro changes *and* ``snapshot_growth`` times the
last snapshot's size in ``updates`` bytes since the last snapshot. A Loro snapshot holds the
whole history, so the size rule keeps the snapshots written during a session a bounded multiple
of the history's bytes (each one at least ``1 + snapshot_growth`` times bigger than the last,
roughly), whatever the rate of edits.

Outage (with a spill file, see :mod:`.spill`): before a failure is reported, what the document
holds beyond the saved version and the spill is appended to the spill file and fsynced, and
while retries wait, new changes are spilled every ``max_delay_s`` (the same window as flushes).
:attr:`Persister.outage` and ``on_outage`` say how many changes are kept on disk and how many
only in memory. The spill (and any orphan spill files recovery imported) is removed only after
a lake commit covers it. So a kernel that dies during an outage loses at most the changes of
its last ``max_delay_s``, exactly as with a reachable lake.

Threads: one named daemon thread per persister owns its DuckDB cursor; :meth:`Persister.notify`,
:meth:`Persister.flush` and :meth:`Persister.close` may be called from any other thread and
reach it through a queue. ``on_saved`` and ``on_error`` run on the writer thread: keep them
short, never block on the persister from them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from loro import ID, ExportMode, LoroDoc, VersionVector

from .. import notebook as nb
from ..errors import CorruptionError, SpillError, StorageError, ValidationError
from .checksums import UPDATE_BLOBS, blob_checksum, check_row
from .lake import Lake, _rollback
from .spill import Orphan, SpillFile

LOG = logging.getLogger("sqlrooms_nb")

RETRY_FIRST_DELAY_S = 0.1
"""First wait before retrying a failed flush, seconds (doubles per failure)."""
RETRY_MAX_DELAY_S = 10.0
"""Longest wait between flush retries, seconds."""
DOC_LOCK_WAIT_S = 0.05
"""How long the writer waits for the caller's document lock before reading the doc anyway."""
CLOSE_TIMEOUT_S = 60.0
"""Default time :meth:`Persister.close` waits for the final flush and snapshot, seconds."""

before_commit_hook: Callable[[int], None] | None = None
"""Test seam (``None`` in use): called on the writer thread inside each flush transaction, after
its INSERTs and before COMMIT, with the batch's seq; crash tests sleep in it so that a kill
lands mid-commit."""

_TS = pa.timestamp("us", tz="UTC")
_UPDATES_SCHEMA = pa.schema(
    [
        ("room", pa.string()),
        ("branch", pa.string()),
        ("writer", pa.string()),
        ("seq", pa.int64()),
        ("vv_from", pa.binary()),
        ("vv_to", pa.binary()),
        ("frontiers", pa.binary()),
        ("change_count", pa.int32()),
        ("first_change_at", _TS),
        ("last_change_at", _TS),
        ("byte_length", pa.int32()),
        ("bytes", pa.binary()),
        ("written_at", _TS),
        ("checksum", pa.int64()),
    ]
)
_CHANGES_SCHEMA = pa.schema(
    [
        ("room", pa.string()),
        ("branch", pa.string()),
        ("writer", pa.string()),
        ("seq", pa.int64()),
        ("peer", pa.string()),
        ("counter_start", pa.int64()),
        ("counter_end", pa.int64()),
        ("lamport", pa.int64()),
        ("time", _TS),
        ("author", pa.string()),
        ("cells", pa.list_(pa.string())),
    ]
)
SNAPSHOTS_SCHEMA = pa.schema(
    [
        ("room", pa.string()),
        ("branch", pa.string()),
        ("writer", pa.string()),
        ("seq", pa.int64()),
        ("version", pa.binary()),
        ("frontiers", pa.binary()),
        ("change_count", pa.int64()),
        ("byte_length", pa.int64()),
        ("bytes", pa.binary()),
        ("created_at", _TS),
        ("lake_version", pa.int64()),
        ("checksum", pa.int64()),
    ]
)


def snapshot_table(
    doc: LoroDoc, room: str, branch: str, writer: str, seq: int, lake_version: int | None = None
) -> pa.Table:
    """One ``snapshots`` row (as a one-row Arrow table) holding a full snapshot of ``doc``.

    ``seq`` is the last ``updates`` seq of ``writer`` the snapshot covers; ``lake_version`` the
    DuckLake snapshot id up to which ``doc`` holds every ``updates`` row of the room/branch
    (``None``: only ``writer``'s rows up to ``seq`` are covered; see :mod:`.lake`). Call with
    the document not being edited (the export commits any open transaction). Raises
    :class:`StorageError` if Loro cannot export it.
    """
    try:
        blob = doc.export(ExportMode.Snapshot())
        meta = LoroDoc.decode_import_blob_meta(blob, False)
        version = meta.partial_end_vv
        encoded = version.encode()  # (encoded once: the checksum covers these very bytes)
        frontiers = doc.vv_to_frontiers(version).encode()
        change_count = int(doc.len_changes)
    except BaseException as exc:  # loro raises BaseException subclasses
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise StorageError(f"could not export a snapshot of room {room!r}: {exc}") from exc
    return pa.Table.from_pylist(
        [
            {
                "room": room,
                "branch": branch,
                "writer": writer,
                "seq": seq,
                "version": encoded,
                "frontiers": frontiers,
                "change_count": change_count,
                "byte_length": len(blob),
                "bytes": blob,
                "created_at": time.time_ns() // 1000,
                "lake_version": lake_version,
                "checksum": blob_checksum((blob, encoded, frontiers)),  # see .checksums
            }
        ],
        schema=SNAPSHOTS_SCHEMA,
    )


@dataclass(frozen=True)
class FlushPolicy:
    """When the writer flushes and snapshots.

    A flush is due when ``max_delay_s`` seconds have passed since the first unflushed change,
    or ``max_changes`` changes, or ``max_bytes`` bytes (of updates, as reported to
    :meth:`Persister.notify`) are pending. A snapshot is written after a flush when
    :meth:`snapshot_due`, and on close (if anything was written since the last snapshot).

    Units: ``max_changes`` and ``snapshot_every_changes`` count Loro *changes* (what the
    ``changes`` table gets one row for; Loro merges a writer's consecutive commits into one
    change, so thousands of one-key commits may be a single change), except that
    ``max_changes`` counts what callers report to :meth:`Persister.notify` (commits, usually).
    ``max_bytes`` counts update bytes as reported to ``notify``; ``snapshot_growth`` is a ratio
    of bytes: ``updates`` bytes written since the last snapshot over that snapshot's
    ``byte_length``.

    Raises :class:`ValueError` (:class:`~sqlrooms_nb.errors.ValidationError`) for non-positive
    values.
    """

    max_delay_s: float = 0.1
    """Seconds from the first unflushed change to its flush. 0.1 s keeps the saved ack's p99
    under 250 ms at 1,000 edits/s (benchmarks/durability.py, load 2.5: 146 ms; 0.2 s gave 310 ms
    at load 4). 0.05 s is faster still (96 ms) but its 20 flushes a second slowed the comm
    thread 2x in a flood (tests/test_bad_input.py); up to 10 ``updates`` rows a second while
    someone types, which compaction merges."""
    max_changes: int = 1000
    max_bytes: int = 1 << 20
    snapshot_every_changes: int = 10_000
    snapshot_growth: float = 1.0
    """A snapshot during a session also needs this many times the last snapshot's bytes in
    ``updates`` bytes written since it (no snapshot yet: no size condition)."""
    poll_s: float | None = 0.5
    """How often the writer looks for rows other writers (kernels) added to its room/branch,
    seconds; ``None`` never. A PostgreSQL catalog also wakes it at once (LISTEN/NOTIFY)."""

    def __post_init__(self) -> None:
        names = [
            "max_delay_s",
            "max_changes",
            "max_bytes",
            "snapshot_every_changes",
            "snapshot_growth",
        ]
        if self.poll_s is not None:
            names.append("poll_s")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValidationError(
                    f"FlushPolicy.{name} must be a positive number, got {value!r}"
                )

    def due(
        self, now: float, first_pending_at: float | None, pending_changes: int, pending_bytes: int
    ) -> bool:
        """Whether a flush is due at time ``now`` (seconds, same clock as ``first_pending_at``).

        ``first_pending_at`` is when the first unflushed change was reported, ``None`` when
        nothing is pending (then nothing is due, whatever the counts say).
        """
        if first_pending_at is None:
            return False
        return (
            pending_changes >= self.max_changes
            or pending_bytes >= self.max_bytes
            or now - first_pending_at >= self.max_delay_s
        )

    def snapshot_due(self, changes_since: int, bytes_since: int, last_snapshot_bytes: int) -> bool:
        """Whether a snapshot is due after a flush: ``changes_since`` Loro changes and
        ``bytes_since`` ``updates`` bytes written since the last snapshot, which held
        ``last_snapshot_bytes`` bytes (0: none, or its size is unknown)."""
        return (
            changes_since >= self.snapshot_every_changes
            and bytes_since >= self.snapshot_growth * last_snapshot_bytes
        )


@dataclass(frozen=True)
class Outage:
    """The lake cannot be written (see :attr:`Persister.outage`).

    ``error``: the latest failure's message; ``since``: when the outage began (``time.time()``
    seconds); ``saved_version``: encoded version vector of what the lake holds;
    ``kept_changes``: Loro changes beyond it that are fsynced in spill files (this writer's
    and the orphans recovery imported); ``unkept_changes``: changes beyond it held only in
    memory (the spill failed, there is none, or they are younger than ``max_delay_s``);
    ``spill_path`` / ``spill_bytes``: this writer's spill file and its size (``None`` / 0
    without one); ``spill_error``: why the last spill append failed, ``None`` if it did not.
    """

    error: str
    since: float
    saved_version: bytes
    kept_changes: int
    unkept_changes: int
    spill_path: str | None = None
    spill_bytes: int = 0
    spill_error: str | None = None


class _Flush:
    """A flush request: done when everything up to ``target`` is saved, or ``error`` is set."""

    __slots__ = ("error", "event", "target")

    def __init__(self, target: VersionVector | None) -> None:
        self.target = target
        self.event = threading.Event()
        self.error: StorageError | None = None


class _Tail:
    """Queue item: look for other writers' rows now (a NOTIFY arrived)."""


_TAIL = _Tail()


class _Stop(_Flush):
    """Stop request: flush, snapshot if anything changed, then end the thread."""


_WAKE = object()


def _noop_saved(version: VersionVector) -> None:
    pass


def _log_error(error: StorageError) -> None:
    LOG.warning("[sqlrooms_nb] %s", error)


def copy_vv(vv: VersionVector) -> VersionVector:
    """An independent copy of a version vector (they are mutable)."""
    return VersionVector.decode(vv.encode())


def _cells_of_container(doc: LoroDoc, container: Any) -> tuple[int, list[str]]:
    """``(index of its cell in the list, [cell id])`` for a container inside a cell, else
    ``(-1, [])``. Index is 0-based, in the current state."""
    ids = nb.cell_ids_for_containers(doc, [container])
    if not ids:
        return -1, []
    try:
        path = doc.get_path_to_container(container)
        index = getattr(path[1][1], "index", -1) if path and len(path) > 1 else -1
    except BaseException:  # loro raises BaseException subclasses
        index = -1
    return (index if isinstance(index, int) else -1), ids


class Persister:
    """Background writer of one (room, branch) Loro document to a :class:`Lake`.

    Args:
        lake: the open lake (the persister neither opens nor releases it).
        room, branch: the rows' ``room`` and ``branch``.
        doc: the live document. It already holds the recovered state: the saved version starts
            at ``doc.oplog_vv`` at construction.
        writer: this writer's id for the rows' ``writer`` column (the kernel's peer id, decimal).
        start_seq: last seq already in the lake for this room/branch (``StoredRoom.last_seq``);
            this writer's rows get ``start_seq + 1``, ``+ 2``, ...
        policy: flush and snapshot thresholds.
        clock: monotonic time in seconds, for the policy (tests pass a fake one).
        on_saved: called on the writer thread with the new saved version after each flush.
        on_error: called on the writer thread with a :class:`StorageError` when a flush or
            snapshot fails (the writer keeps the changes and retries).
        doc_lock: optional lock the caller holds around edit + commit; the writer holds it while
            it reads the document (export, change metadata) so that its implicit commit never
            splits a user action. Waited for at most ``DOC_LOCK_WAIT_S``.
        author: recorded as the ``author`` of this document's own peer's changes that carry no
            message (e.g. direct edits on ``room.doc``); other peers' changes name their own.
        lake_version: the DuckLake snapshot id the recovery read (``StoredRoom.lake_version``):
            every row up to it is in ``doc``. Tailing starts there.
        on_remote: called on the writer thread with the update blobs other writers added, once
            they are imported into ``doc`` (the caller relays them to its views).
        read_only: write nothing (no updates, changes, snapshots or maintenance: a read-only
            room); flushes return at once and tailing goes on.
        spill: this writer's spill file (:meth:`SpillDir.writer_file`), where unsaved changes go
            while the lake cannot be written; ``None``: they stay in memory only.
        orphans: spill files of dead writers that recovery imported into ``doc``; each is
            removed once a flush covers it (the persister takes them over).
        saved_version: what the lake holds (``Recovered.saved_version``), when ``doc`` holds
            more (imported orphans); ``None``: ``doc.oplog_vv``.
        on_outage: called on the writer thread with an :class:`Outage` after each failed flush
            and each spill append during an outage; the next ``on_saved`` ends it.
        snapshots: ``False``: write no snapshot (recovery found changes missing, see
            ``Recovered.complete``: a snapshot would cover the damaged rows and hide the loss).
        snapshot_now: write a snapshot at close even without new changes (recovery passed over
            a damaged row: a fresh snapshot lets the next open read sound rows only).

    Several writers (kernels) may write one room/branch at once: each writes its own rows and,
    every ``policy.poll_s`` seconds or when :meth:`wake_tail` is called, imports the rows the
    others added since the last DuckLake snapshot it saw (:meth:`Lake.tail`), in commit order,
    and marks them saved (they are in the lake already, so this writer never writes them again).

    Starts the thread ``sqlrooms_nb-writer:<room>/<branch>``.
    """

    def __init__(
        self,
        lake: Lake,
        room: str,
        branch: str,
        doc: LoroDoc,
        *,
        writer: str,
        start_seq: int,
        policy: FlushPolicy = FlushPolicy(),
        clock: Callable[[], float] = time.monotonic,
        on_saved: Callable[[VersionVector], None] = _noop_saved,
        on_error: Callable[[StorageError], None] = _log_error,
        doc_lock: Any = None,
        author: str = "",
        lake_version: int = 0,
        on_remote: Callable[[list[bytes]], None] | None = None,
        spill: SpillFile | None = None,
        orphans: list[Orphan] | tuple[Orphan, ...] = (),
        saved_version: VersionVector | None = None,
        on_outage: Callable[[Outage], None] | None = None,
        read_only: bool = False,
        snapshots: bool = True,
        snapshot_now: bool = False,
    ) -> None:
        self._lake = lake
        self._read_only = read_only
        self._author = author
        self._room = room
        self._branch = branch
        self._doc = doc
        self._writer = writer
        self._seq = int(start_seq)
        self._start_seq = int(start_seq)
        self._policy = policy
        self._clock = clock
        self._on_saved = on_saved
        self._on_error = on_error
        self._doc_lock = doc_lock
        self._on_remote = on_remote
        self._lake_version = int(lake_version)

        self._state = threading.Lock()  # guards the fields below
        self._saved_vv = copy_vv(doc.oplog_vv if saved_version is None else saved_version)
        self._pending_changes = 0
        self._pending_bytes = 0
        self._first_pending_at: float | None = None
        if not self._saved_vv.includes_vv(doc.oplog_vv):  # imported orphans: flush them soon
            self._pending_changes = 1
            self._first_pending_at = clock()
        self._outage: Outage | None = None
        self._wake_queued = False
        self._closing = False
        self._stopped = False

        # Writer-thread-only fields.
        self._changes_since_snapshot = 0  # Loro changes this writer wrote since the last snapshot
        self._bytes_since_snapshot = 0  # their ``updates`` bytes
        # byte_length of the room/branch's latest snapshot (None: not read from the lake yet)
        self._last_snapshot_bytes: int | None = None
        self._snapshot_needed = snapshot_now
        self._snapshots = snapshots
        self._tail_problem = ""  # the damaged row tailing last reported
        self._failures = 0
        self._retry_at: float | None = None
        self._unknown_attempt: int | None = None  # seq of a write whose outcome is unknown
        self._next_tail_at = self._clock() if policy.poll_s is not None else None
        self._spill = spill
        self._orphans = list(orphans)
        self._on_outage = on_outage
        self._spilled_vv = copy_vv(self._saved_vv)  # saved + this writer's spill file
        self._outage_since: float | None = None
        self._last_error = ""

        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"sqlrooms_nb-writer:{room}/{branch}", daemon=True
        )
        self._unlisten = lake.on_rows(room, branch, self.wake_tail)
        self._thread.start()

    # --- any thread ----------------------------------------------------------------------------

    @property
    def saved_version(self) -> VersionVector:
        """Version vector of everything known to be in the lake (a copy; any thread)."""
        with self._state:
            return copy_vv(self._saved_vv)

    @property
    def lake_version(self) -> int:
        """DuckLake snapshot id up to which every row of the room/branch is in the document."""
        return self._lake_version

    @property
    def outage(self) -> Outage | None:
        """The current outage (the last flush failed), ``None`` while the lake is written
        fine (any thread)."""
        return self._outage

    def wake_tail(self) -> None:
        """Look for other writers' rows now (any thread; e.g. on a PostgreSQL NOTIFY)."""
        if not self._stopped:
            self._queue.put(_TAIL)

    @property
    def last_seq(self) -> int:
        """Seq of the last ``updates`` row this writer wrote (``start_seq`` before any)."""
        return self._seq

    def notify(self, changes: int = 1, nbytes: int = 0) -> None:
        """Report that the document has new changes (``changes`` of them, ``nbytes`` bytes).

        Cheap and non-blocking; any thread, including inside Loro callbacks (it never calls
        into Loro). The counts only drive the policy: a flush always writes everything the
        document has beyond the saved version.
        """
        with self._state:
            if self._stopped:
                return
            now = self._clock()
            starting = self._first_pending_at is None
            if starting:
                self._first_pending_at = now
            self._pending_changes += max(int(changes), 0)
            self._pending_bytes += max(int(nbytes), 0)
            wake = starting or self._policy.due(
                now, self._first_pending_at, self._pending_changes, self._pending_bytes
            )
            if wake and not self._wake_queued:
                self._wake_queued = True
                self._queue.put(_WAKE)

    def flush(self, timeout: float | None = 60) -> None:
        """Block until everything in the document at call time is in the lake.

        ``timeout`` in seconds (``None``: wait for ever). Raises :class:`StorageError` if the
        flush failed (the writer keeps the changes and retries in the background), if it did
        not finish within ``timeout``, or if the persister is closed while the document has
        unsaved changes. Must not be called from the writer thread (``on_saved``/``on_error``).
        """
        if threading.current_thread() is self._thread:
            raise StorageError("flush() called from the writer thread (on_saved/on_error)")
        target = copy_vv(self._doc.oplog_vv)
        self._wait(_Flush(target), timeout, "flush")

    def close(self, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Flush, write a snapshot if anything changed since the last one, stop the thread.

        Idempotent. ``timeout`` in seconds. Raises :class:`StorageError` if the final flush or
        snapshot failed within ``timeout``; the thread then keeps retrying in the background
        (nothing is dropped while the process lives) and a later ``close()`` waits again.
        """
        if threading.current_thread() is self._thread:
            raise StorageError("close() called from the writer thread (on_saved/on_error)")
        if self._stopped:
            return
        self._wait(_Stop(None), timeout, "close")
        self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` completed (the thread has ended)."""
        return self._stopped

    def _wait(self, item: _Flush, timeout: float | None, doing: str) -> None:
        with self._state:
            if self._stopped:
                error = self._closed_error(item.target)
                if error is not None:
                    raise error
                return
            if isinstance(item, _Stop):
                self._closing = True
            self._queue.put(item)
        if not item.event.wait(timeout):
            raise StorageError(
                f"{doing} of room {self._room!r} branch {self._branch!r} did not finish within "
                f"{timeout} s; the writer keeps trying in the background"
            )
        if item.error is not None:
            raise item.error

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        cur: duckdb.DuckDBPyConnection | None = None
        waiters: list[_Flush] = []
        stops: list[_Flush] = []
        try:
            cur = self._lake.cursor()
            try:
                last_snapshot = self._lake.last_snapshot_seq(self._room, self._branch)
                self._snapshot_needed |= self._start_seq > last_snapshot
            except StorageError as exc:
                LOG.warning("[sqlrooms_nb] %s", exc)
            self._clear_spills()  # orphans whose changes the lake already had
            while True:
                item = self._next_item()
                items = [] if item is None else [item]
                while True:  # drain: one flush serves every request queued so far
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                with self._state:
                    self._wake_queued = False
                    closing = self._closing
                if self._tail_due(items):
                    self._tail(cur)
                for it in items:
                    if isinstance(it, _Stop):
                        stops.append(it)
                    elif isinstance(it, _Flush):
                        waiters.append(it)
                if not (waiters or stops):
                    now = self._clock()
                    if self._retry_at is not None:
                        if now < self._retry_at:
                            self._spill_if_due(now)
                            continue
                    else:
                        with self._state:
                            due = self._policy.due(
                                now,
                                self._first_pending_at,
                                self._pending_changes,
                                self._pending_bytes,
                            )
                        if not due:
                            continue
                final = closing or bool(stops)
                error = self._flush_and_maybe_snapshot(cur, final=final)
                for waiter in waiters:
                    waiter.error = error
                    waiter.event.set()
                waiters = []
                if final and error is None:
                    with self._state:
                        self._stopped = True
                        late = self._drain()
                    for it in [*stops, *late]:
                        it.error = self._closed_error(it.target)
                        it.event.set()
                    return
                for it in stops:  # close() raises; the thread keeps retrying
                    it.error = error
                    it.event.set()
                stops = []
                if error is not None and self._lake.closed:
                    # Nothing can write any more: the spill file keeps the unsaved changes
                    # for the next open, and retrying a closed connection would spin forever.
                    LOG.warning(
                        "[sqlrooms_nb] writer of room %r branch %r stops: its lake was closed "
                        "with changes unsaved (kept on disk; the next open replays them)",
                        self._room,
                        self._branch,
                    )
                    with self._state:
                        self._stopped = True
                        late = self._drain()
                    for it in late:
                        it.error = error
                        it.event.set()
                    return
        except BaseException as exc:  # the thread must never die silently
            error = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(
                    f"the writer of room {self._room!r} branch {self._branch!r} stopped: {exc!r}"
                )
            )
            LOG.exception("[sqlrooms_nb] writer thread failed")
            with self._state:
                self._stopped = True
                late = self._drain()
            for it in [*waiters, *stops, *late]:
                it.error = error
                it.event.set()
            self._report(error)
        finally:
            self._unlisten()
            if cur is not None:
                cur.close()
            # Whatever is left on disk still holds unsaved changes: the next open replays it.
            if self._spill is not None:
                self._spill.close()
            for orphan in self._orphans:
                orphan.release()

    def _drain(self) -> list[_Flush]:
        """Requests still queued (call with ``_state`` held, after setting ``_stopped``)."""
        out: list[_Flush] = []
        while True:
            try:
                it = self._queue.get_nowait()
            except queue.Empty:
                return out
            if isinstance(it, _Flush):
                out.append(it)

    def _closed_error(self, target: VersionVector | None) -> StorageError | None:
        """For a request answered after the writer stopped: ``None`` if ``target`` is saved."""
        if target is None or self._saved_vv.includes_vv(target):
            return None
        return StorageError(
            f"the writer of room {self._room!r} branch {self._branch!r} is closed and the "
            "document has unsaved changes: open the room again to save them"
        )

    def _next_item(self) -> object | None:
        """Block until a queue item arrives or the next deadline (flush due / retry) passes."""
        with self._state:
            first = self._first_pending_at
        deadlines = []
        if self._next_tail_at is not None:
            deadlines.append(self._next_tail_at)
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if first is not None:  # a flush, or during an outage a spill append
            deadlines.append(first + self._policy.max_delay_s)
        if not deadlines:
            return self._queue.get()
        wait = max(0.0, min(deadlines) - self._clock())
        try:
            return self._queue.get(timeout=min(wait, 1.0) + 0.001)
        except queue.Empty:
            return None

    def _tail_due(self, items: list[object]) -> bool:
        if self._next_tail_at is None:
            return False
        return any(it is _TAIL for it in items) or self._clock() >= self._next_tail_at

    def _tail(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Import the rows other writers added since :attr:`lake_version`; mark them saved."""
        assert self._policy.poll_s is not None
        self._next_tail_at = self._clock() + self._policy.poll_s
        try:
            version, rows = self._lake.tail(
                cur, self._room, self._branch, after=self._lake_version, writer=self._writer
            )
        except CorruptionError as exc:  # a damaged row: stay before it; tell the room once
            if str(exc) != self._tail_problem:
                self._tail_problem = str(exc)
                self._report(exc)
            return
        except StorageError as exc:  # an unreachable lake shows in flush errors; try later
            LOG.debug("[sqlrooms_nb] tail of %s/%s failed: %s", self._room, self._branch, exc)
            return
        if rows:
            blobs = [row.update for row in rows]
            lock = self._doc_lock
            if lock is not None and not lock.acquire(timeout=DOC_LOCK_WAIT_S * 10):
                self._next_tail_at = self._clock() + DOC_LOCK_WAIT_S  # an edit is running
                return
            try:
                status = self._doc.import_batch(blobs)
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                LOG.warning(
                    "[sqlrooms_nb] rows of other writers of %s/%s could not be imported: %s",
                    self._room,
                    self._branch,
                    exc,
                )
                return
            finally:
                if lock is not None:
                    lock.release()
            if status.pending is not None and not status.pending.is_empty:
                # Commit order makes this impossible unless a row is missing: read again later.
                LOG.warning(
                    "[sqlrooms_nb] rows of other writers of %s/%s wait for changes not yet "
                    "seen: %s",
                    self._room,
                    self._branch,
                    status.pending.inner(),
                )
                return
            saved = copy_vv(self._saved_vv)
            for row in rows:
                saved.merge(VersionVector.decode(row.vv_to))
            with self._state:
                self._saved_vv = saved
            if self._on_remote is not None:
                try:
                    self._on_remote(blobs)
                except BaseException:
                    LOG.exception("[sqlrooms_nb] on_remote callback failed")
        self._lake_version = version

    def _flush_and_maybe_snapshot(
        self, cur: duckdb.DuckDBPyConnection, *, final: bool
    ) -> StorageError | None:
        """One flush (and a snapshot when due or ``final``). Returns the error, if any."""
        if self._read_only:
            return None
        try:
            self._flush(cur)
            if not self._snapshots:
                pass  # changes are missing: a snapshot would cover (and hide) the damage
            elif final:
                if self._snapshot_needed or self._changes_since_snapshot > 0:
                    self._write_snapshot(cur)
            elif self._changes_since_snapshot >= self._policy.snapshot_every_changes:
                if self._last_snapshot_bytes is None:  # read once, when first needed
                    self._last_snapshot_bytes = self._read_last_snapshot_bytes(cur)
                if self._policy.snapshot_due(
                    self._changes_since_snapshot,
                    self._bytes_since_snapshot,
                    self._last_snapshot_bytes,
                ):
                    self._write_snapshot(cur)
        except StorageError as exc:
            self._failures += 1
            delay = min(RETRY_FIRST_DELAY_S * 2 ** (self._failures - 1), RETRY_MAX_DELAY_S)
            self._retry_at = self._clock() + delay
            self._last_error = str(exc)
            self._spill_unsaved()  # write-ahead: on disk before anyone is told
            self._report(exc)
            return exc
        self._failures = 0
        self._retry_at = None
        self._lake.after_flush(cur)
        return None

    def _report(self, error: StorageError) -> None:
        try:
            self._on_error(error)
        except BaseException:
            LOG.exception("[sqlrooms_nb] on_error callback failed")

    @contextlib.contextmanager
    def _reading_doc(self) -> Iterator[None]:
        lock = self._doc_lock
        got = bool(lock is not None and lock.acquire(timeout=DOC_LOCK_WAIT_S))
        try:
            yield
        finally:
            if got:
                lock.release()

    def _flush(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Write everything beyond the saved version as one batch. Raises StorageError."""
        with self._state:
            taken = (self._pending_changes, self._pending_bytes, self._first_pending_at)
            self._pending_changes = 0
            self._pending_bytes = 0
            self._first_pending_at = None
        try:
            written = self._write_batch(cur)
            self._clear_spills()
        except BaseException:
            with self._state:  # put the counts back: they are still pending
                self._pending_changes += taken[0]
                self._pending_bytes += taken[1]
                if taken[2] is not None and (
                    self._first_pending_at is None or taken[2] < self._first_pending_at
                ):
                    self._first_pending_at = taken[2]
            raise
        if written is not None:
            rows, size, version = written
            # Loro changes, not notify() calls: one change may hold thousands of commits.
            self._changes_since_snapshot += rows
            self._bytes_since_snapshot += size
            self._call_saved(version)
        elif taken[0] or taken[1]:
            # Reported changes the lake already has (e.g. the same update imported twice):
            # acknowledge the saved version anyway so views waiting for it see "Saved".
            self._call_saved(self._saved_vv)

    def _call_saved(self, version: VersionVector) -> None:
        try:
            self._on_saved(copy_vv(version))
        except BaseException:
            LOG.exception("[sqlrooms_nb] on_saved callback failed")

    def _write_batch(self, cur: duckdb.DuckDBPyConnection) -> tuple[int, int, VersionVector] | None:
        """Export, build the two Arrow tables, insert them in one transaction, advance.

        Returns ``(change rows, update bytes, new saved version)``, or ``None`` when there was
        nothing new.
        """
        seq = self._seq + 1
        if self._unknown_attempt == seq and self._adopt_if_written(cur, seq):
            return None
        saved = self._saved_vv  # only this thread replaces it
        try:
            with self._reading_doc():
                if saved.includes_vv(self._doc.oplog_vv):
                    return None
                blob = self._doc.export(ExportMode.Updates(from_=saved))
                meta = LoroDoc.decode_import_blob_meta(blob, False)
                vv_to = copy_vv(saved)
                vv_to.merge(meta.partial_end_vv)
                changes = self._change_rows(saved, vv_to)
                frontiers = self._doc.vv_to_frontiers(vv_to).encode()
        except StorageError:
            raise
        except BaseException as exc:  # loro raises BaseException subclasses
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise StorageError(
                f"could not export the changes of room {self._room!r}: {exc}"
            ) from exc
        if not changes:
            return None
        times = [c[4] for c in changes if c[4]]
        now_us = time.time_ns() // 1000
        vv_from, vv_to_bytes = saved.encode(), vv_to.encode()
        updates = pa.Table.from_pylist(
            [
                {
                    "room": self._room,
                    "branch": self._branch,
                    "writer": self._writer,
                    "seq": seq,
                    "vv_from": vv_from,
                    "vv_to": vv_to_bytes,
                    "frontiers": frontiers,
                    "change_count": len(changes),
                    "first_change_at": min(times) * 1_000_000 if times else None,
                    "last_change_at": max(times) * 1_000_000 if times else None,
                    "byte_length": len(blob),
                    "bytes": blob,
                    "written_at": now_us,
                    "checksum": blob_checksum((blob, vv_from, vv_to_bytes, frontiers)),
                }
            ],
            schema=_UPDATES_SCHEMA,
        )
        n = len(changes)
        rows = pa.Table.from_arrays(
            [
                pa.array([self._room] * n, pa.string()),
                pa.array([self._branch] * n, pa.string()),
                pa.array([self._writer] * n, pa.string()),
                pa.array([seq] * n, pa.int64()),
                pa.array([str(c[0]) for c in changes], pa.string()),
                pa.array([c[1] for c in changes], pa.int64()),
                pa.array([c[2] for c in changes], pa.int64()),
                pa.array([c[3] for c in changes], pa.int64()),
                pa.array([c[4] * 1_000_000 if c[4] else None for c in changes], _TS),
                pa.array([c[5] for c in changes], pa.string()),
                pa.array([c[6] for c in changes], pa.list_(pa.string())),
            ],
            schema=_CHANGES_SCHEMA,
        )
        self._insert(cur, {"updates": updates, "changes": rows}, f"write update {seq}", seq)
        with self._state:
            self._seq = seq
            self._saved_vv = vv_to
        self._lake.announce_rows(self._room, self._branch)
        return n, len(blob), vv_to

    def _author_of(self, peer: int, message: str | None) -> str:
        author = nb.split_change_message(message)[0]
        if not author and peer == self._doc.peer_id:
            return self._author
        return author

    def _change_rows(
        self, old: VersionVector, new: VersionVector
    ) -> list[tuple[int, int, int, int, int, str | None, list[str]]]:
        """``(peer, counter_start, counter_end, lamport, timestamp_s, message, cells)`` for each
        Loro change (clipped to the span) between ``old`` and ``new``. Call with the doc read."""
        doc = self._doc
        out: list[tuple[int, int, int, int, int, str | None, list[str]]] = []
        cells_of: dict[Any, tuple[int, list[str]]] = {}
        for span in new.sub_iter(old):
            peer, counter, end = span.peer, span.counter.start, span.counter.end
            while counter < end:
                change = doc.get_change(ID(peer, counter))
                if change is None:
                    break
                stop = min(change.id.counter + change.len, end)
                if stop <= counter:
                    break
                touched: dict[str, int] = {}
                for container in doc.get_changed_containers_in(ID(peer, counter), stop - counter):
                    found = cells_of.get(container)
                    if found is None:
                        found = cells_of[container] = _cells_of_container(doc, container)
                    for cell in found[1]:
                        touched.setdefault(cell, found[0])
                cells = sorted(touched, key=touched.__getitem__)  # display order
                out.append(
                    (
                        peer,
                        counter,
                        stop,
                        change.lamport + (counter - change.id.counter),
                        int(change.timestamp or 0),
                        self._author_of(peer, change.message),
                        cells,
                    )
                )
                counter = stop
        return out

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], what: str, seq: int
    ) -> None:
        """Insert each Arrow table into its lake table, all in one transaction (with retries)."""

        def attempt() -> None:
            names = []
            try:
                cur.execute("BEGIN TRANSACTION")
                for name, table in tables.items():
                    view = f"_sqlrooms_nb_{name}_batch"
                    cur.register(view, table)
                    names.append(view)
                    cur.execute(
                        f"INSERT INTO {self._lake.table(name)} BY NAME SELECT * FROM {view}"
                    )
                hook = before_commit_hook
                if hook is not None:
                    hook(seq)
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
            finally:
                for view in names:
                    with contextlib.suppress(duckdb.Error):
                        cur.unregister(view)

        try:
            with self._lake.write_lock:
                self._lake.retrying(attempt, what=f"{what} of room {self._room!r} to the lake")
        except StorageError:
            # A failed COMMIT may still have landed: check before writing this seq again.
            self._unknown_attempt = seq
            raise
        self._unknown_attempt = None

    def _adopt_if_written(self, cur: duckdb.DuckDBPyConnection, seq: int) -> bool:
        """After a failed write of ``seq``: if the row landed anyway, adopt it as saved."""
        try:
            row = cur.execute(
                f"SELECT vv_to, change_count, {', '.join(UPDATE_BLOBS)}, checksum "
                f"FROM {self._lake.table('updates')} "
                "WHERE room = ? AND branch = ? AND writer = ? AND seq = ?",
                [self._room, self._branch, self._writer, seq],
            ).fetchone()
        except duckdb.Error as exc:
            raise StorageError(
                f"could not read back update {seq} of room {self._room!r}: {exc}"
            ) from exc
        self._unknown_attempt = None
        if row is None:
            return False
        damaged = check_row(
            row[2:-1],
            row[-1],
            room=self._room,
            branch=self._branch,
            table="updates",
            writer=self._writer,
            seq=seq,
            lake_snapshot=None,
        )
        if damaged is not None:  # landed damaged: recovery passes over it; write it again
            with self._state:
                self._seq = seq
            raise damaged
        version = VersionVector.decode(bytes(row[0]))
        with self._state:
            self._seq = seq
            self._saved_vv = version
        self._changes_since_snapshot += int(row[1] or 0)
        self._bytes_since_snapshot += len(row[2] or b"")
        self._call_saved(version)
        return True

    # --- outage: the spill file ------------------------------------------------------------------

    def _spill_if_due(self, now: float) -> None:
        """While a retry waits: spill the changes that would be due for a flush."""
        with self._state:
            due = self._policy.due(
                now, self._first_pending_at, self._pending_changes, self._pending_bytes
            )
        if due:
            self._spill_unsaved()

    def _spill_unsaved(self) -> None:
        """Append what the document holds beyond the saved version and the spill to the spill
        file (fsynced), then publish the outage (``on_outage``). Never raises."""
        with self._state:  # these changes are taken care of until the next spill or flush
            self._pending_changes = self._pending_bytes = 0
            self._first_pending_at = None
        base = copy_vv(self._saved_vv)
        base.merge(self._spilled_vv)
        spill_error: str | None = None
        unkept = 0
        try:
            with self._reading_doc():
                fresh = not base.includes_vv(self._doc.oplog_vv)
                blob = self._doc.export(ExportMode.Updates(from_=base)) if fresh else b""
            if blob:
                meta = LoroDoc.decode_import_blob_meta(blob, False)
                changes = int(meta.change_num)
                if self._spill is None:
                    unkept = changes
                else:
                    try:
                        self._spill.append(blob, changes)
                        base.merge(meta.partial_end_vv)
                        self._spilled_vv = base
                    except SpillError as exc:
                        spill_error, unkept = str(exc), changes
                        LOG.warning("[sqlrooms_nb] %s", exc)
        except BaseException as exc:  # loro raises BaseException subclasses
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            spill_error = f"could not export the unsaved changes for the spill file: {exc}"
            LOG.exception("[sqlrooms_nb] %s", spill_error)
        if self._outage_since is None:
            self._outage_since = time.time()
        spill = self._spill
        kept = (spill.changes if spill is not None else 0) + sum(o.changes for o in self._orphans)
        self._outage = Outage(
            error=self._last_error,
            since=self._outage_since,
            saved_version=self._saved_vv.encode(),
            kept_changes=kept,
            unkept_changes=unkept,
            spill_path=str(spill.path) if spill is not None else None,
            spill_bytes=spill.size_bytes if spill is not None else 0,
            spill_error=spill_error,
        )
        if self._on_outage is not None:
            try:
                self._on_outage(self._outage)
            except BaseException:
                LOG.exception("[sqlrooms_nb] on_outage callback failed")

    def _clear_spills(self) -> None:
        """After a lake commit: remove the spill file and the orphans it now covers, and end
        the outage."""
        saved = self._saved_vv
        if self._spill is not None and self._spill.exists and saved.includes_vv(self._spilled_vv):
            self._spill.remove()
        for orphan in list(self._orphans):
            if orphan.version is not None and saved.includes_vv(orphan.version):
                orphan.remove()
                self._orphans.remove(orphan)
        self._outage = None
        self._outage_since = None

    def _write_snapshot(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Write a full snapshot: it covers this writer's rows and every row up to
        :attr:`lake_version` (see :mod:`.lake`)."""
        with self._reading_doc():
            table = snapshot_table(
                self._doc, self._room, self._branch, self._writer, self._seq, self._lake_version
            )
        with self._lake.write_lock:
            self._lake.retrying(
                lambda: self._insert_snapshot(cur, table),
                what=f"write a snapshot of room {self._room!r} to the lake",
            )
        self._changes_since_snapshot = 0
        self._bytes_since_snapshot = 0
        self._last_snapshot_bytes = int(table.column("byte_length")[0].as_py() or 0)
        self._snapshot_needed = False

    def _read_last_snapshot_bytes(self, cur: duckdb.DuckDBPyConnection) -> int:
        """``byte_length`` of the room/branch's latest snapshot; 0 if none or unreadable (then
        only ``snapshot_every_changes`` decides, see :meth:`FlushPolicy.snapshot_due`)."""
        try:
            row = cur.execute(
                f"SELECT byte_length FROM {self._lake.table('snapshots')} "
                "WHERE room = ? AND branch = ? ORDER BY created_at DESC LIMIT 1",
                [self._room, self._branch],
            ).fetchone()
        except duckdb.Error as exc:
            LOG.warning("[sqlrooms_nb] could not read the last snapshot's size: %s", exc)
            return 0
        return int(row[0] or 0) if row else 0

    def _insert_snapshot(self, cur: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
        view = "_sqlrooms_nb_snapshots_batch"
        cur.register(view, table)
        try:
            cur.execute(f"INSERT INTO {self._lake.table('snapshots')} BY NAME SELECT * FROM {view}")
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.unregister(view)

    def __repr__(self) -> str:
        state = "closed" if self._stopped else "running"
        return f"Persister({self._room!r}, {self._branch!r}, seq={self._seq}, {state})"
