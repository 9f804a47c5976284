"""One attached DuckLake: the catalog, the data path, the project's tables, and reads of a room.

Where a lake lives is a :class:`~sqlrooms_nb.store.config.LakeConfig` (or a string
:func:`~sqlrooms_nb.store.config.parse_lake` reads): the embedded default is a folder
(default ``.sqlrooms``)::

    <folder>/catalog.sqlite   DuckLake catalog (SQLite, WAL journal): other processes can read
                              while a kernel writes
    <folder>/data/            DuckLake data path (parquet files)

A shared lake has a PostgreSQL catalog (the ``postgres_scanner`` extension) and a local or
``s3://`` data path (the ``httpfs`` extension; credentials from the environment become a
temporary, session-only DuckDB secret of the lake's own DuckDB, see :mod:`.config`). The
catalog holds the same tables either way.

Tables, in schema ``sqlrooms_nb`` (:data:`SCHEMA`); every row carries ``room`` and ``branch``
and everything this package issues filters by both. Lake schema version 5
(:data:`LAKE_SCHEMA_VERSION`, recorded in ``lake_meta``; version 1 lakes lacked ``branches``,
version 2 lakes lacked ``runs``, version 3 lakes lacked ``snapshots.lake_version``, version 4
lakes lacked the ``checksum`` columns; older lakes are upgraded in place by adding them, and
their existing rows keep NULL there)::

    updates    one row per flushed batch of Loro changes (the log)
      room VARCHAR, branch VARCHAR, writer VARCHAR (peer id of the writing kernel, decimal;
      several kernels may write one room/branch at once, each its own rows),
      seq BIGINT (assigned by the writer: start_seq + 1, + 2, ..., where start_seq is the
      largest seq of the room/branch when the writer started; (writer, seq) is unique),
      vv_from BLOB, vv_to BLOB (encoded version vectors before / after the batch),
      frontiers BLOB (encoded frontiers after the batch), change_count INTEGER,
      first_change_at TIMESTAMPTZ, last_change_at TIMESTAMPTZ (Loro change times, NULL if
      unrecorded), byte_length INTEGER, bytes BLOB (a Loro update, ``ExportMode.Updates``),
      written_at TIMESTAMPTZ (when the writer wrote the row), checksum BIGINT (CRC-32 of
      bytes, vv_from, vv_to, frontiers, see :mod:`.checksums`; NULL in rows written before
      layout 5)
    changes    one row per Loro change (or part of one) in an ``updates`` row: the history
      room, branch, writer, seq (of the ``updates`` row), peer VARCHAR (decimal),
      counter_start BIGINT, counter_end BIGINT (exclusive), lamport BIGINT (of the first op),
      time TIMESTAMPTZ, author VARCHAR (first line of the change message), cells VARCHAR[] (ids of
      the cells the change touched, as of the flush)
    snapshots  full Loro snapshots (whole history included)
      room, branch, writer, seq BIGINT, version BLOB (encoded version vector), frontiers BLOB,
      change_count BIGINT (changes in the document), byte_length BIGINT, bytes BLOB,
      created_at TIMESTAMPTZ, lake_version BIGINT (DuckLake snapshot id; NULL in snapshots
      written before layout 4), checksum BIGINT (CRC-32 of bytes, version, frontiers; NULL
      before layout 5)
      A snapshot S *covers* an ``updates`` row u (u's changes are all in S) when
      ``u.snapshot_id <= S.lake_version`` (``snapshot_id``: DuckLake's virtual column, the lake
      snapshot that inserted the row; the writer of S had imported every row up to there), or
      ``u.writer = S.writer AND u.seq <= S.seq`` (S's own rows), or, for a snapshot without
      ``lake_version`` (one writer at a time), ``u.seq <= S.seq``. See :meth:`Lake.load`.
    tags       named versions: room, branch, name VARCHAR (unique per room/branch),
      version VARCHAR (a version id, see sqlrooms_nb.history), created_by VARCHAR,
      created_at TIMESTAMPTZ
    branches   lineage of every branch but ``main``: room, name VARCHAR (unique per room),
      parent VARCHAR (the branch it was forked from), fork_version VARCHAR (version id in the
      parent), created_by VARCHAR, created_at TIMESTAMPTZ, merged_into VARCHAR, merged_at
      TIMESTAMPTZ (the latest merge of this branch into another, NULL if never merged)
    runs       one row per SQL cell run (the run log): room, branch, cell VARCHAR (cell id),
      name VARCHAR (result name), sql_hash VARCHAR (sha256 hex of the cell's text), author
      VARCHAR, started_at TIMESTAMPTZ, duration_ms DOUBLE, rows BIGINT (NULL unless ok),
      status VARCHAR ('ok' | 'error' | 'cancelled'), error VARCHAR (NULL unless 'error')
    lake_meta  key VARCHAR, value VARCHAR (``schema_version`` -> ``"5"``)

Reads check every blob they return against its row's checksum (:meth:`Lake.load`,
:meth:`Lake.tail`): a damaged ``updates`` row is left out and reported, a damaged or unreadable
snapshot is passed over for the next best one (see :mod:`.recovery` for what the room does
then). The ``runs``, ``changes``, ``tags`` and ``branches`` tables hold no blobs.

Small ``updates`` / ``changes`` inserts are inlined in the catalog (a persisted per-table
``data_inlining_row_limit``); ``snapshots`` never are. With a PostgreSQL catalog the inlined
rows live in PostgreSQL tables of the catalog database (``ducklake_inlined_data_*``), so a small
batch costs one round trip to PostgreSQL and no object in S3; snapshots always go to the data
path as parquet.

Threads: :meth:`Lake.open` / :meth:`Lake.release` may be called from any thread. The lake's
own connection is used only while opening; every other use goes through :meth:`Lake.cursor`
(one cursor per thread, never shared). Writers serialise their transactions with
:attr:`Lake.write_lock`.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import pathlib
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import duckdb

from ..errors import CorruptionError, StorageError, ValidationError
from .checksums import SNAPSHOT_BLOBS, UPDATE_BLOBS, check_row, describe_row
from .config import (
    CATALOG_FILE,
    DATA_DIR,
    DEFAULT_LAKE_DIR,
    LAKE_ENV,
    SQLITE_BUSY_TIMEOUT_MS,
    LakeConfig,
    parse_lake,
    redact,
    s3_secret_sql,
)
from .extensions import connect
from .notify import Notifier, notifier_for
from .serverless import check_layout, open_serverless

T = TypeVar("T")
LOG = logging.getLogger("sqlrooms_nb")

__all__ = [
    "ALIAS",
    "CATALOG_FILE",
    "DATA_DIR",
    "DEFAULT_LAKE_DIR",
    "LAKE_ENV",
    "LAKE_SCHEMA_VERSION",
    "SCHEMA",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Lake",
    "LakeJob",
    "RowId",
    "StoredRoom",
    "TailRow",
    "is_transient",
    "quote_ident",
    "retrying",
]

ALIAS = "lake"
"""Name the lake is attached as in the lake's private DuckDB instance."""
SCHEMA = "sqlrooms_nb"
"""Schema of the project's tables inside the lake."""
LAKE_SCHEMA_VERSION = 5
"""Version of the table layout described in this module's docstring."""

S3_SECRET_NAME = "sqlrooms_nb_lake_s3"
"""Name of the temporary S3 secret a lake on S3 creates in its own DuckDB."""
UPDATES_INLINE_ROW_LIMIT = 500
"""Inserts of at most this many rows into ``updates`` / ``changes`` are inlined in the catalog."""
SNAPSHOTS_INLINE_ROW_LIMIT = 0
"""Snapshots are never inlined (a 5 MB blob inlined took 1.9 s and bloated the catalog)."""

RETRY_ATTEMPTS = 40
"""Attempts of one lake operation before a transient error ("database is locked", a
transaction conflict) is reported (~9 s of waiting in all). A SQLite catalog in WAL mode answers
"database is locked" at once, without waiting for the busy timeout, when a transaction that
has read wants to write after another process committed: retrying soon is the remedy."""
RETRY_FIRST_DELAY_S = 0.01
RETRY_MAX_DELAY_S = 0.25

_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "sqlite_busy",
    "busy",
    "conflict",
)

_TABLES: dict[str, str] = {
    "updates": """
        room VARCHAR NOT NULL, branch VARCHAR NOT NULL, writer VARCHAR NOT NULL,
        seq BIGINT NOT NULL, vv_from BLOB, vv_to BLOB, frontiers BLOB,
        change_count INTEGER, first_change_at TIMESTAMPTZ, last_change_at TIMESTAMPTZ,
        byte_length INTEGER, bytes BLOB NOT NULL, written_at TIMESTAMPTZ, checksum BIGINT""",
    "changes": """
        room VARCHAR NOT NULL, branch VARCHAR NOT NULL, writer VARCHAR NOT NULL,
        seq BIGINT NOT NULL, peer VARCHAR NOT NULL, counter_start BIGINT NOT NULL,
        counter_end BIGINT NOT NULL, lamport BIGINT, time TIMESTAMPTZ, author VARCHAR,
        cells VARCHAR[]""",
    "snapshots": """
        room VARCHAR NOT NULL, branch VARCHAR NOT NULL, writer VARCHAR NOT NULL,
        seq BIGINT NOT NULL, version BLOB, frontiers BLOB, change_count BIGINT,
        byte_length BIGINT, bytes BLOB NOT NULL, created_at TIMESTAMPTZ, lake_version BIGINT,
        checksum BIGINT""",
    "tags": """
        room VARCHAR NOT NULL, branch VARCHAR NOT NULL, name VARCHAR NOT NULL,
        version VARCHAR NOT NULL, created_by VARCHAR, created_at TIMESTAMPTZ""",
    "branches": """
        room VARCHAR NOT NULL, name VARCHAR NOT NULL, parent VARCHAR NOT NULL,
        fork_version VARCHAR NOT NULL, created_by VARCHAR, created_at TIMESTAMPTZ,
        merged_into VARCHAR, merged_at TIMESTAMPTZ""",
    "runs": """
        room VARCHAR NOT NULL, branch VARCHAR NOT NULL, cell VARCHAR NOT NULL, name VARCHAR,
        sql_hash VARCHAR, author VARCHAR, started_at TIMESTAMPTZ, duration_ms DOUBLE,
        rows BIGINT, status VARCHAR NOT NULL, error VARCHAR""",
}
_INLINE_LIMITS = {
    "updates": UPDATES_INLINE_ROW_LIMIT,
    "changes": UPDATES_INLINE_ROW_LIMIT,
    "snapshots": SNAPSHOTS_INLINE_ROW_LIMIT,
    "tags": UPDATES_INLINE_ROW_LIMIT,
    "branches": UPDATES_INLINE_ROW_LIMIT,
    "runs": UPDATES_INLINE_ROW_LIMIT,
}
_ADDED_IN: dict[int, tuple[str, ...]] = {2: ("branches",), 3: ("runs",), 4: (), 5: ()}
"""Tables each layout version added: upgrading a lake creates them."""
_COLUMNS_ADDED_IN: dict[int, tuple[tuple[str, str, str], ...]] = {
    4: (("snapshots", "lake_version", "BIGINT"),),
    5: (("updates", "checksum", "BIGINT"), ("snapshots", "checksum", "BIGINT")),
}
"""Columns each layout version added to existing tables (table, column, type): upgrading a
lake adds them as NULL columns (nothing else changes)."""

_COVERED = (
    "(coalesce(snapshot_id <= ?, false) OR coalesce(writer = ? AND seq <= ?, false) "
    "OR coalesce(? IS NULL AND seq <= ?, false))"
)
"""SQL predicate on an ``updates`` row: covered by a snapshot (see the module docstring).
Parameters: lake_version, writer, seq, lake_version, seq of the snapshot (seq 0 and the rest
NULL when there is none)."""


class LakeJob(Protocol):
    """Work a lake runs on a persister's writer thread, between flushes (maintenance, the
    serverless catalog upload). Register with :meth:`Lake.add_job`.

    ``due(flushes, now)``: whether to run now; ``flushes`` counts successful flushes of this lake
    in this process since it was opened, ``now`` is ``time.monotonic()`` seconds.
    ``run(cur, final)``: do the work with the writer's cursor while the lake's ``write_lock`` is
    held (so no insert of this process runs concurrently, ducklake#650); ``final`` is True for
    the last run, when the lake is released. Raise :class:`StorageError` on failure: it is
    logged and the job is tried again at its next due time; saved work is never affected.
    """

    name: str

    def due(self, flushes: int, now: float) -> bool: ...

    def run(self, cur: duckdb.DuckDBPyConnection, final: bool) -> None: ...


@dataclass(frozen=True)
class RowId:
    """Which stored row: ``table`` (``"updates"`` | ``"snapshots"``), ``writer``, ``seq`` and
    ``lake_snapshot`` (the DuckLake snapshot id that inserted it: ``(writer, seq,
    lake_snapshot)`` tells two snapshots of one writer and seq apart)."""

    table: str
    writer: str
    seq: int
    lake_snapshot: int


@dataclass(frozen=True)
class StoredRoom:
    """What the lake holds for one room/branch, as read by :meth:`Lake.load`.

    ``snapshot``: bytes of the best readable snapshot (the one covering the lake furthest
    whose checksum matches), ``None`` if there is none; ``snapshot_seq``: the seq it covers (0
    without one); ``updates``: bytes of every sound update row it does not cover, in commit
    order; ``update_seqs``: their seqs, same order; ``last_seq``: the largest seq of the
    room/branch in ``updates`` or ``snapshots``, 0 if none; ``lake_version``: the DuckLake
    snapshot id the read saw (every row up to it is in the snapshot or in ``updates``, or is
    named in ``problems``), the starting point of :meth:`Lake.tail`.

    ``snapshot_row`` / ``update_rows``: identities of the snapshot and of each update (same
    order as ``updates``); ``snapshot_version``: the snapshot's ``version`` blob (encoded
    version vector). ``problems``: one :class:`~sqlrooms_nb.errors.CorruptionError` per row
    passed over because its checksum did not match or it could not be read (empty when all is
    well): such a snapshot was replaced by the next best one, such an update row is not in
    ``updates``. ``passed_over``: the ``version`` blob of each snapshot passed over (what it
    claimed to hold; ``None`` when it could not be read), so a caller can tell whether the
    rest holds as much. ``salvage``: ``(row, bytes)`` of each update row left out, for a
    caller that can check the bytes another way (Loro's own checksum of its update body).
    """

    snapshot: bytes | None
    snapshot_seq: int
    updates: list[bytes]
    last_seq: int
    update_seqs: list[int] = field(default_factory=list)
    lake_version: int = 0
    snapshot_row: RowId | None = None
    update_rows: list[RowId] = field(default_factory=list)
    problems: tuple[CorruptionError, ...] = ()
    snapshot_version: bytes | None = None
    passed_over: tuple[bytes | None, ...] = ()
    salvage: tuple[tuple[RowId, bytes], ...] = ()


@dataclass(frozen=True)
class TailRow:
    """One ``updates`` row another writer wrote: ``writer``, ``seq``, ``update`` (its
    ``bytes``: a Loro update), ``vv_to`` (encoded version vector after it)."""

    writer: str
    seq: int
    update: bytes
    vv_to: bytes


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: SQLite "database is locked"/busy, or a DuckLake
    transaction conflict with another writer."""
    text = str(exc).lower()
    return any(marker in text for marker in _TRANSIENT)


def retrying(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = RETRY_ATTEMPTS,
    first_delay_s: float = RETRY_FIRST_DELAY_S,
    max_delay_s: float = RETRY_MAX_DELAY_S,
    sleep: Callable[[float], None] = time.sleep,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``fn()``; retry it on transient errors (:func:`is_transient`) with exponential backoff.

    Delays start at ``first_delay_s`` and double up to ``max_delay_s`` (seconds, with +-50%
    jitter); at most ``attempts`` calls. ``fn`` must be safe to repeat (roll back its own
    transaction on failure). Returns what ``fn`` returns. Raises :class:`StorageError` saying
    "could not <what>" (the original error chained) for a non-transient error or when attempts
    run out; a :class:`StorageError` raised by ``fn`` passes through unchanged. ``transient``
    decides which errors are retried. Runs and sleeps on the calling thread.
    """
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:
            if not transient(exc) or attempt >= attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise StorageError(redact(f"could not {what}{tries}: {exc}")) from exc
        sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_delay_s)
    raise StorageError(f"could not {what}: no attempts made")  # attempts < 1


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled).

    Raises :class:`~sqlrooms_nb.errors.ValidationError` for a name holding a NUL character
    (DuckDB would cut the statement there)."""
    if "\x00" in name:
        raise ValidationError(f"an SQL name cannot hold a NUL character: {name!r:.80}")
    return '"' + name.replace('"', '""') + '"'


class _Unreadable(StorageError):
    """Internal: a snapshot (``row``; ``None``: the snapshots table as a whole) cannot be
    read; :meth:`Lake.load` reads again without it."""

    def __init__(self, row: RowId | None, error: CorruptionError) -> None:
        super().__init__(str(error))
        self.row = row
        self.error = error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def resolve_location(location: str | os.PathLike[str] | LakeConfig | None) -> pathlib.Path | str:
    """What :attr:`Lake.location` will be for ``location``: the absolute folder of an
    embedded lake, else the lake's identity text (no secrets). Raises ``ValidationError``."""
    config = parse_lake(location)
    return config.folder if config.folder is not None else config.identity


_registry: dict[str, Lake] = {}
"""Open lakes of this process by :attr:`LakeConfig.identity`."""
_registry_lock = threading.Lock()


class Lake:
    """One attached DuckLake (catalog + data path, see :class:`LakeConfig`) and the project's
    tables.

    Get one with :meth:`open`, give it back with :meth:`release`. Lakes are shared within a
    process: every :meth:`open` of the same lake (same :attr:`LakeConfig.identity`) returns the
    same object (one DuckDB instance per lake per process, never two ``duckdb.connect()`` on
    one lake) with a reference count.

    Attributes: ``config`` (the :class:`LakeConfig`), ``location`` (the absolute folder of an
    embedded lake, else the lake's identity text, which holds no secrets), ``catalog_path``
    (SQLite catalog file, ``None`` for PostgreSQL), ``data_path`` (local folder as a path, or
    the ``s3://`` text), ``alias`` (``"lake"``: the attached name inside this lake's DuckDB),
    ``write_lock`` (held by writers around each write transaction, so one process commits to
    the lake one transaction at a time).
    """

    alias = ALIAS
    schema = SCHEMA

    def __init__(self, config: LakeConfig, con: duckdb.DuckDBPyConnection) -> None:
        """Private: use :meth:`Lake.open`."""
        self.config = config
        self.location: pathlib.Path | str = (
            config.folder if config.folder is not None else config.identity
        )
        self.catalog_path: pathlib.Path | None = config.catalog_path
        self.data_path: pathlib.Path | str = (
            config.data_path if config.on_s3 else pathlib.Path(config.data_path)
        )
        self.write_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = con
        self._con_lock = threading.Lock()
        self._refs = 0
        self._jobs: list[LakeJob] = []
        self._flushes = 0
        self._jobs_lock = threading.Lock()  # guards _jobs, _flushes and _reported
        self._reported: set[tuple[object, ...]] = set()  # damaged rows logged (report_once)
        # Whether the tables have the layout-5 checksum columns (a read-only lake may be older).
        self._checksums = True
        # PostgreSQL catalog: LISTEN/NOTIFY wakes other kernels (see .notify); else polling.
        self.notifier: Notifier | None = None

    # --- lifetime ------------------------------------------------------------------------------

    @classmethod
    def open(cls, location: str | os.PathLike[str] | LakeConfig | None = None) -> Lake:
        """Open (creating if needed) the lake ``location`` and add a reference.

        ``location``: a :class:`LakeConfig`, or a folder path / lake URI read by
        :func:`~sqlrooms_nb.store.config.parse_lake`; ``None`` means ``$SQLROOMS_NB_LAKE`` or
        ``.sqlrooms`` (relative to the current directory). Creates a local folder / data
        folder, loads the extensions the lake needs, creates the S3 secret from the
        environment (data on S3), attaches the catalog, creates the schema and tables if
        missing and checks the recorded lake schema version.

        Raises :class:`~sqlrooms_nb.errors.ValidationError` for a malformed lake string or one
        holding a password; :class:`StorageError` if the folder or catalog cannot be created
        or reached (the message names the catalog host, never a password), the extensions
        cannot be loaded, or the lake was written by a newer or unknown table layout (nothing
        is ever deleted or migrated silently). Blocks the calling thread (~0.3 s for the first
        open of an embedded lake in a process, up to the PostgreSQL ``connect_timeout`` for an
        unreachable catalog, then a dictionary lookup).
        """
        config = parse_lake(location)
        with _registry_lock:
            lake = _registry.get(config.identity)
            if lake is None:
                if config.serverless is None:
                    lake = cls._create(config)
                else:  # lease + catalog copy from the bucket, then _create (see .serverless)
                    lake = open_serverless(config, cls._create)
                _registry[config.identity] = lake
            lake._refs += 1
            return lake

    @classmethod
    def _create(cls, config: LakeConfig) -> Lake:
        where = config.describe()
        if config.catalog_path is not None:
            _mkdir(config.catalog_path.parent)
        con = connect(extensions=config.extensions)
        lake = cls(config, con)
        try:
            lake._create_s3_secret()
            catalog = config.catalog_path if config.catalog_path is not None else where
            retrying(lake._attach, what=f"attach the lake catalog {catalog}")
            if not config.on_s3:  # (made once the catalog answered: no stray folders)
                _mkdir(pathlib.Path(config.data_path))
            # Two processes creating a new lake at once can fail each other's DuckLake commit
            # (e.g. "table ... references schema id 1 that does not exist"): the retry then
            # finds the other's tables.
            retrying(
                (lambda: check_layout(lake)) if config.read_only else lake._ensure_tables,
                what=f"create the sqlrooms_nb tables in {where}",
                transient=lambda e: is_transient(e) or isinstance(e, duckdb.TransactionException),
            )
            if config.read_only:  # (a writer has just upgraded the layout: it has them)
                lake._checksums = "checksum" in lake._columns("updates")
        except StorageError as exc:
            con.close()
            if config.catalog == "postgres" and _auth_failed(exc):
                raise StorageError(
                    f"{exc}\nPostgreSQL refused the login to {config.host or 'the catalog'}: "
                    "give the password through PGPASSWORD or ~/.pgpass (never in the lake "
                    "string), and check the user in the DSN"
                ) from exc.__cause__
            raise
        except BaseException:
            con.close()
            raise
        if config.catalog == "postgres":
            lake.notifier = notifier_for(config.dsn)
        from .maintenance import MaintenanceJob, MaintenancePolicy  # (import cycle)

        if not config.read_only:
            lake.add_job(MaintenanceJob(MaintenancePolicy(), lake=lake))
        return lake

    def release(self) -> None:
        """Give back one reference; the last one detaches the lake and closes its DuckDB.

        Calls beyond the number of :meth:`open` calls do nothing. Close every cursor (stop
        every persister) of this lake before the last release.
        """
        with _registry_lock:
            if self._refs <= 0:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            if _registry.get(self.config.identity) is self:
                del _registry[self.config.identity]
            con = self._con
        self._run_jobs(final=True)
        if self.notifier is not None:
            self.notifier.close()
        with self._con_lock:
            self._con = None
        if con is not None:
            try:
                con.execute(f"DETACH {ALIAS}")
            except duckdb.Error:
                pass
            con.close()

    @property
    def closed(self) -> bool:
        """Whether the last reference was released."""
        return self._con is None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor (its own DuckDB connection to this lake's instance); the lake is
        attached as ``lake``. Use one per thread and close it when done.

        Raises :class:`StorageError` if the lake was released.
        """
        with self._con_lock:
            if self._con is None:
                raise StorageError(f"the lake {self.location} is closed: open it again")
            return self._con.cursor()

    # --- other kernels ---------------------------------------------------------------------------

    def announce_rows(self, room: str, branch: str) -> None:
        """Tell other kernels that this one committed rows of ``room``/``branch`` (a NOTIFY on
        a PostgreSQL catalog; nothing otherwise: they poll). Never raises."""
        if self.notifier is not None:
            self.notifier.publish(f"rows/{room}/{branch}")

    def on_rows(self, room: str, branch: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` when another kernel announces rows of ``room``/``branch``; returns
        the unsubscribe function (a no-op without a notifier)."""
        if self.notifier is None:
            return lambda: None
        return self.notifier.subscribe(f"rows/{room}/{branch}", lambda _message: wake())

    def announce_presence(self, room: str, update: bytes) -> None:
        """Relay a view's presence update (Loro ephemeral-store bytes) of ``room`` to other
        kernels (PostgreSQL catalog only; presence is never stored). Never raises."""
        if self.notifier is not None:
            self.notifier.publish(f"presence/{room}", update=base64.b64encode(update).decode())

    def on_presence(self, room: str, apply: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``apply(update)`` with presence updates other kernels relay for ``room``;
        returns the unsubscribe function (a no-op without a notifier)."""
        if self.notifier is None:
            return lambda: None

        def received(message: dict[str, object]) -> None:
            update = message.get("update")
            if isinstance(update, str):
                apply(base64.b64decode(update))

        return self.notifier.subscribe(f"presence/{room}", received)

    # --- jobs between flushes -------------------------------------------------------------------

    def add_job(self, job: LakeJob) -> None:
        """Run ``job`` between flushes from now on (see :class:`LakeJob`); any thread."""
        with self._jobs_lock:
            self._jobs.append(job)

    def remove_job(self, job: LakeJob) -> None:
        """Stop running ``job`` (no error if it was not registered); any thread."""
        with self._jobs_lock:
            if job in self._jobs:
                self._jobs.remove(job)

    def after_flush(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Called by a persister's writer thread after each successful flush: counts it and runs
        the jobs that are due, one at a time, under :attr:`write_lock`. Never raises."""
        with self._jobs_lock:
            self._flushes += 1
            flushes = self._flushes
            jobs = list(self._jobs)
        now = time.monotonic()
        for job in jobs:
            try:
                due = job.due(flushes, now)
            except Exception:
                LOG.exception("[sqlrooms_nb] lake job %s: due() failed", job.name)
                continue
            if due:
                self._run_job(job, cur, final=False)

    def _run_jobs(self, *, final: bool) -> None:
        """Run every job once more (the lake is being released), with a cursor of its own."""
        with self._jobs_lock:
            jobs, self._jobs = list(self._jobs), []
        if not jobs or self._con is None:
            return
        cur = self._con.cursor()
        try:
            for job in jobs:
                self._run_job(job, cur, final=final)
        finally:
            cur.close()

    def _run_job(self, job: LakeJob, cur: duckdb.DuckDBPyConnection, *, final: bool) -> None:
        try:
            with self.write_lock:
                job.run(cur, final)
        except Exception as exc:
            LOG.warning("[sqlrooms_nb] lake job %s failed (tried again later): %s", job.name, exc)

    def table(self, name: str) -> str:
        """Fully qualified, quoted name of one of the project's tables, e.g.
        ``"lake"."sqlrooms_nb"."updates"``."""
        return f"{quote_ident(ALIAS)}.{quote_ident(SCHEMA)}.{quote_ident(name)}"

    def retrying(self, fn: Callable[[], T], *, what: str, attempts: int = RETRY_ATTEMPTS) -> T:
        """:func:`retrying` for an operation on this lake (same errors)."""
        return retrying(fn, what=what, attempts=attempts)

    # --- reads ---------------------------------------------------------------------------------

    def load(
        self,
        room: str,
        branch: str,
        *,
        at_snapshot: int | None = None,
        skip_snapshots: Collection[RowId] = (),
    ) -> StoredRoom:
        """The best snapshot of ``room``/``branch`` and every ``updates`` row it does not
        cover (see the module docstring), in commit order, in one consistent read. Any
        writer's snapshot serves: several kernels may write one room.

        The best snapshot is the one with the highest ``lake_version`` whose blobs match their
        checksum and can be read; the others are tried in order when it does not, and each one
        passed over is named in :attr:`StoredRoom.problems`, as is each ``updates`` row whose
        blobs do not match (left out of :attr:`StoredRoom.updates`). Rows written before lake
        layout 5 carry no checksum and are returned unchecked. ``skip_snapshots``: snapshots
        not to use (e.g. ones Loro refused; not reported again).

        ``at_snapshot`` reads the tables as they were at that DuckLake snapshot id (time
        travel, ``AT (VERSION => n)``) instead of now. Returns an empty :class:`StoredRoom` (no
        snapshot, no updates, ``last_seq`` 0) for a room never written. Raises
        :class:`StorageError` if the lake cannot be read (or has no such snapshot). Runs on
        the calling thread with its own cursor; verifying costs ~0.3 ms per MB read.
        """
        skip: set[RowId | None] = set(skip_snapshots)
        unreadable: list[CorruptionError] = []
        unread: list[bytes | None] = []
        what = f"read room {room!r} branch {branch!r} from {self.location}"
        while True:
            try:
                stored = retrying(
                    lambda: self._read_room(room, branch, at_snapshot, frozenset(skip)), what=what
                )
            except _Unreadable as exc:  # read again without that snapshot (or any)
                skip.add(exc.row)
                unreadable.append(exc.error)
                unread.append(None)
                continue
            if unreadable:
                stored = dataclasses.replace(
                    stored,
                    problems=(*unreadable, *stored.problems),
                    passed_over=(*unread, *stored.passed_over),
                )
            return stored

    def _read_room(
        self, room: str, branch: str, at_snapshot: int | None, skip: frozenset[RowId | None]
    ) -> StoredRoom:
        """One attempt of :meth:`load`. Raises :class:`_Unreadable` for a snapshot DuckDB
        cannot read (not transient), which ends the transaction."""
        updates, snapshots = self.table("updates"), self.table("snapshots")
        if at_snapshot is not None:
            travel = f" AT (VERSION => {int(at_snapshot)})"
            updates, snapshots = updates + travel, snapshots + travel
        problems: list[CorruptionError] = []
        passed_over: list[bytes | None] = []

        def bad_row(row: RowId | None, exc: BaseException) -> _Unreadable:
            if row is None:
                what = f"the snapshots of room {room!r} branch {branch!r}"
            else:
                what = describe_row(room, branch, row.table, row.writer, row.seq, row.lake_snapshot)
            error = CorruptionError(
                f"{what} cannot be read ({_first_line(exc)})",
                room=room,
                branch=branch,
                table="snapshots",
                writer=row.writer if row else "",
                seq=row.seq if row else None,
                lake_snapshot=row.lake_snapshot if row else None,
            )
            return _Unreadable(row, error)

        cur = self.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            version = int(at_snapshot) if at_snapshot is not None else self._current_version(cur)
            checksum = "checksum" if self._checksums else "NULL"
            if at_snapshot is not None:  # the tables as they were then: maybe before layout 5
                old = cur.execute(f"SELECT * FROM {snapshots} LIMIT 0").description or ()
                if "checksum" not in {column[0] for column in old}:
                    checksum = "NULL"
            candidates: list[tuple[RowId, int | None]] = []
            if None not in skip:
                try:
                    listed = cur.execute(
                        f"SELECT writer, seq, snapshot_id, lake_version FROM {snapshots} "
                        "WHERE room = ? AND branch = ? "
                        # The snapshot covering the lake furthest first: the rows it lacks are
                        # still there even after a compaction deleted older ones.
                        "ORDER BY lake_version DESC NULLS LAST, change_count DESC NULLS LAST, "
                        "seq DESC, created_at DESC",
                        [room, branch],
                    ).fetchall()
                except duckdb.Error as exc:
                    if is_transient(exc):
                        raise
                    raise bad_row(None, exc) from exc
                candidates = [
                    (RowId("snapshots", str(w), int(q), int(sid)), None if lv is None else int(lv))
                    for w, q, sid, lv in listed
                ]
            chosen: tuple[RowId, bytes, int | None, bytes | None] | None = None
            for row, lake_version in candidates:
                if row in skip:
                    continue
                try:
                    got = cur.execute(
                        f"SELECT {', '.join(SNAPSHOT_BLOBS)}, {checksum} FROM {snapshots} "
                        "WHERE room = ? AND branch = ? AND writer = ? AND seq = ? "
                        "AND snapshot_id = ? LIMIT 1",
                        [room, branch, row.writer, row.seq, row.lake_snapshot],
                    ).fetchone()
                except duckdb.Error as exc:
                    if is_transient(exc):
                        raise
                    raise bad_row(row, exc) from exc
                if got is None:
                    continue
                error = check_row(
                    got[:-1],
                    got[-1],
                    room=room,
                    branch=branch,
                    table="snapshots",
                    writer=row.writer,
                    seq=row.seq,
                    lake_snapshot=row.lake_snapshot,
                )
                if error is not None:
                    problems.append(error)
                    passed_over.append(None if got[1] is None else bytes(got[1]))
                    continue
                chosen = (row, bytes(got[0]), lake_version, got[1])
                break
            s_row = chosen[0] if chosen else None
            s_seq = s_row.seq if s_row else 0
            s_version = chosen[2] if chosen else None
            rows = cur.execute(
                f"SELECT writer, seq, snapshot_id, {', '.join(UPDATE_BLOBS)}, {checksum} "
                f"FROM {updates} WHERE room = ? AND branch = ? AND NOT {_COVERED} "
                "ORDER BY snapshot_id, seq, writer",
                [room, branch, s_version, s_row.writer if s_row else None, s_seq, s_version, s_seq],
            ).fetchall()
            last = cur.execute(
                f"SELECT max(seq) FROM {updates} WHERE room = ? AND branch = ?", [room, branch]
            ).fetchone()
            cur.execute("COMMIT")
        except BaseException:
            _rollback(cur)
            raise
        finally:
            cur.close()
        blobs: list[bytes] = []
        update_rows: list[RowId] = []
        salvage: list[tuple[RowId, bytes]] = []
        for writer, seq, sid, *stored, stored_checksum in rows:
            row = RowId("updates", str(writer), int(seq), int(sid))
            error = check_row(
                stored,
                stored_checksum,
                room=room,
                branch=branch,
                table="updates",
                writer=row.writer,
                seq=row.seq,
                lake_snapshot=row.lake_snapshot,
            )
            if error is not None:
                problems.append(error)
                salvage.append((row, bytes(stored[0])))
                continue
            blobs.append(bytes(stored[0]))
            update_rows.append(row)
        last_update = int(last[0]) if last and last[0] is not None else 0
        return StoredRoom(
            snapshot=chosen[1] if chosen else None,
            snapshot_seq=s_seq,
            updates=blobs,
            last_seq=max([last_update, s_seq, *(row.seq for row, _ in candidates)]),
            update_seqs=[row.seq for row in update_rows],
            lake_version=version,
            snapshot_row=s_row,
            update_rows=update_rows,
            problems=tuple(problems),
            snapshot_version=bytes(chosen[3]) if chosen and chosen[3] is not None else None,
            passed_over=tuple(passed_over),
            salvage=tuple(salvage),
        )

    def expected_changes(
        self,
        room: str,
        branch: str,
        rows: Collection[tuple[str, int]] = (),
        *,
        at_snapshot: int | None = None,
    ) -> tuple[dict[int, int], set[tuple[str, int]]]:
        """What the ``changes`` table says a complete recovery of ``room``/``branch`` holds, as
        the lake was at DuckLake snapshot ``at_snapshot`` (``None``: now).

        Returns ``({peer: counter end (exclusive)}, listed)``: the end of every peer's changes,
        and which of ``rows`` (``(writer, seq)`` of ``updates`` rows) have ``changes`` rows at
        all. The table holds no blobs and is written in the transaction of each ``updates`` row
        (a branch's seq-0 fork snapshot has no rows there; its own ``version`` says what it
        holds). Raises :class:`StorageError`."""
        changes = self.table("changes")
        if at_snapshot is not None:
            changes += f" AT (VERSION => {int(at_snapshot)})"
        wanted = sorted(set(rows))

        def read() -> tuple[dict[int, int], set[tuple[str, int]]]:
            cur = self.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                ends = cur.execute(
                    f"SELECT peer, max(counter_end) FROM {changes} "
                    "WHERE room = ? AND branch = ? GROUP BY peer",
                    [room, branch],
                ).fetchall()
                listed = set()
                for writer, seq in wanted:
                    found = cur.execute(
                        f"SELECT 1 FROM {changes} "
                        "WHERE room = ? AND branch = ? AND writer = ? AND seq = ? LIMIT 1",
                        [room, branch, writer, seq],
                    ).fetchone()
                    if found is not None:
                        listed.add((writer, seq))
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
            finally:
                cur.close()
            return {int(peer): int(end) for peer, end in ends if end is not None}, listed

        return retrying(read, what=f"read the changes of room {room!r} branch {branch!r}")

    def tail(
        self, cur: duckdb.DuckDBPyConnection, room: str, branch: str, *, after: int, writer: str
    ) -> tuple[int, list[TailRow]]:
        """What other writers added to ``room``/``branch`` since DuckLake snapshot ``after``.

        Returns ``(lake_version, rows)``: the current DuckLake snapshot id and the ``updates``
        rows inserted after ``after`` by writers other than ``writer``, ordered by writer and
        seq; import them as one batch (Loro resolves dependencies within a batch). A lake
        with no new snapshot costs one catalog lookup. Uses ``cur`` (the caller's thread's
        cursor). Raises :class:`StorageError` if the lake cannot be read, and
        :class:`~sqlrooms_nb.errors.CorruptionError` naming the first row whose blobs do not
        match their checksum (then nothing is returned: read again later from ``after``; the
        row is logged at ERROR once per process).
        """
        checksum = "checksum" if self._checksums else "NULL"

        def read() -> tuple[int, list[tuple[Any, ...]]]:
            try:
                cur.execute("BEGIN TRANSACTION")
                version = self._current_version(cur)
                rows = []
                if version > after:
                    rows = cur.execute(
                        f"SELECT writer, seq, snapshot_id, {', '.join(UPDATE_BLOBS)}, {checksum} "
                        f"FROM {self.table('updates')} "
                        "WHERE room = ? AND branch = ? AND snapshot_id > ? AND writer <> ? "
                        "ORDER BY writer, seq",
                        [room, branch, after, writer],
                    ).fetchall()
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
            return version, rows

        version, rows = retrying(read, what=f"read new rows of room {room!r} branch {branch!r}")
        out: list[TailRow] = []
        for w, seq, sid, *blobs, stored in rows:
            error = check_row(
                blobs,
                stored,
                room=room,
                branch=branch,
                table="updates",
                writer=str(w),
                seq=int(seq),
                lake_snapshot=int(sid),
            )
            if error is not None:
                self.report_once(error)
                raise error
            vv_to = blobs[UPDATE_BLOBS.index("vv_to")]
            out.append(TailRow(str(w), int(seq), bytes(blobs[0]), bytes(vv_to)))
        return version, out

    def report_once(self, error: CorruptionError) -> None:
        """Log ``error`` at ERROR level unless this lake object logged the same row before
        (readers that poll meet a damaged row again and again). Any thread."""
        with self._jobs_lock:
            if error.key in self._reported:
                return
            self._reported.add(error.key)
        LOG.error("[sqlrooms_nb] %s", error)

    def _columns(self, table: str) -> list[str]:
        """Column names of one of the project's tables. Raises ``duckdb.Error``."""
        cur = self.cursor()
        try:
            description = cur.execute(f"SELECT * FROM {self.table(table)} LIMIT 0").description
        finally:
            cur.close()
        return [str(column[0]) for column in description or ()]

    def _current_version(self, cur: duckdb.DuckDBPyConnection) -> int:
        """The lake's current DuckLake snapshot id (in ``cur``'s transaction)."""
        row = cur.execute(f"SELECT id FROM {quote_ident(ALIAS)}.current_snapshot()").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def last_snapshot_seq(self, room: str, branch: str) -> int:
        """Seq of the latest snapshot of ``room``/``branch``, 0 if none. Raises StorageError."""

        def read() -> int:
            cur = self.cursor()
            try:
                row = cur.execute(
                    f"SELECT max(seq) FROM {self.table('snapshots')} WHERE room = ? AND branch = ?",
                    [room, branch],
                ).fetchone()
            finally:
                cur.close()
            return int(row[0]) if row and row[0] is not None else 0

        return retrying(read, what=f"read the snapshots of room {room!r} branch {branch!r}")

    # --- setup ---------------------------------------------------------------------------------

    def _attach(self) -> None:
        assert self._con is not None
        try:
            self._con.execute(self.config.attach_sql(ALIAS))
        except duckdb.Error:
            # A locked catalog aborts the connection's transaction; without a rollback the
            # retry would fail with "Current transaction is aborted" instead of trying again.
            _rollback(self._con)
            raise

    def _create_s3_secret(self) -> None:
        """Give this lake's DuckDB the S3 keys from the environment (a temporary secret scoped
        to the data path; nothing when the data is local or the environment has no keys)."""
        assert self._con is not None
        statement = s3_secret_sql(self.config, S3_SECRET_NAME)
        if statement is None:
            return
        try:
            self._con.execute(statement)
        except duckdb.Error as exc:
            # The statement holds the keys: report DuckDB's words, redacted, never the SQL.
            raise StorageError(
                redact(f"cannot set up S3 access to {self.config.data_path}: {exc}")
            ) from None

    def _ensure_tables(self) -> None:
        """Create schema/tables/options if missing and check the recorded layout version."""
        meta = self.table("lake_meta")
        cur = self.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ALIAS)}.{quote_ident(SCHEMA)}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {meta} (key VARCHAR NOT NULL, value VARCHAR)")
            versions = {
                row[0]
                for row in cur.execute(
                    f"SELECT value FROM {meta} WHERE key = 'schema_version'"
                ).fetchall()
            }
            known = {str(v) for v in range(1, LAKE_SCHEMA_VERSION + 1)}
            if versions - known or len(versions) > 1:
                cur.execute("ROLLBACK")
                raise StorageError(
                    f"the lake {self.config.describe()} has table layout version "
                    f"{', '.join(sorted(versions))}, which this sqlrooms_nb (layout "
                    f"{LAKE_SCHEMA_VERSION}) does not understand: upgrade sqlrooms_nb, or use "
                    "another lake folder (nothing was changed)"
                )
            if versions == {str(LAKE_SCHEMA_VERSION)}:
                cur.execute("COMMIT")
                return
            old = int(next(iter(versions))) if versions else 0
            if old:  # an older layout: add the tables later versions introduced
                names = [t for v in range(old + 1, LAKE_SCHEMA_VERSION + 1) for t in _ADDED_IN[v]]
            else:
                names = list(_TABLES)
            for name in names:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table(name)} ({_TABLES[name]})")
            for version in range(old + 1, LAKE_SCHEMA_VERSION + 1) if old else ():
                for table, column, type_ in _COLUMNS_ADDED_IN.get(version, ()):
                    cur.execute(
                        f"ALTER TABLE {self.table(table)} ADD COLUMN IF NOT EXISTS "
                        f"{quote_ident(column)} {type_}"
                    )
            cur.execute("COMMIT")
            # Table options cannot be set on tables created in the same transaction.
            for name in names:
                cur.execute(
                    f"CALL {quote_ident(ALIAS)}.set_option('data_inlining_row_limit', ?, "
                    "schema => ?, table_name => ?)",
                    [_INLINE_LIMITS[name], SCHEMA, name],
                )
            # Written last: a lake with a version row is completely set up.
            if old:
                cur.execute(
                    f"UPDATE {meta} SET value = ? WHERE key = 'schema_version'",
                    [str(LAKE_SCHEMA_VERSION)],
                )
            else:
                cur.execute(
                    f"INSERT INTO {meta} VALUES ('schema_version', ?), "
                    "('created_by', 'sqlrooms_nb')",
                    [str(LAKE_SCHEMA_VERSION)],
                )
        except BaseException:
            _rollback(cur)
            raise
        finally:
            cur.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._refs} refs"
        return f"Lake({redact(str(self.location))!r}, {state})"


def _mkdir(folder: pathlib.Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the lake folder {folder}: {exc}") from exc


def _auth_failed(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "password authentication failed" in text or "no password supplied" in text


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    """Roll back ``cur``'s open transaction, if any (errors ignored: there may be none)."""
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass
