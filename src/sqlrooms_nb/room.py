"""SqlRoom: one collaborative notebook, its document, its views, its storage and its SQL.

The room is where the pieces meet, and the public Python API:

- one :class:`~sqlrooms_nb.replica.Replica` per open branch: its Loro document
  (:mod:`sqlrooms_nb.notebook` schema), sync hub, writer to DuckLake and cell results; the
  Python API edits the checked-out branch (``room.current_branch``), each view the branch it chose,
- branch lineage and tags in the lake (:mod:`sqlrooms_nb.store`),
- SQL execution (:mod:`sqlrooms_nb.query`) on the user's DuckDB connection.

One fan-out path per branch: every change — typed in a view, made through this API, made
directly on ``room.doc``, or merged in from another branch — lands in the branch's document
first, then goes to every view and to the writer (see :mod:`sqlrooms_nb.replica`).

Threads: public methods may be called from the notebook's main thread; comm messages arrive on
the kernel's comm thread; ``saved`` acks come from the writer thread. Sends to views are
serialised by a lock.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import pyarrow as pa
from loro import ExportMode, LoroDoc

from . import catalog, charts, names, query
from . import history as hist
from . import notebook as nb
from . import protocol as p
from . import results as res
from .errors import (
    BranchNotFoundError,
    CancelledError,
    CellNotFoundError,
    ClosedError,
    CorruptionError,
    ProtocolError,
    QueryError,
    RateLimitError,
    ReadOnlyError,
    SqlRoomsError,
    StorageError,
    ValidationError,
)
from .history_views import HISTORY_SCHEMA, LAKE_ALIAS, create_history_views_soon
from .inbox import Inbox, Item
from .inputs import InputWatch
from .presence import Presence
from .ratelimit import HELLO_COST, RateLimiter
from .replica import Replica
from .runner import Job, Runner
from .store import (
    MAIN,
    Branch,
    FlushPolicy,
    Lake,
    SavedVersion,
    Tag,
    add_tag,
    create_branch,
    has_rows,
    list_branches,
    list_tags,
    mark_merged,
    recover,
    saved_versions,
    snapshot_table,
)
from .store.config import redact
from .store.runs import RunLog

if TYPE_CHECKING:
    from .widget import SqlRoomWidget

LOG = logging.getLogger("sqlrooms_nb")

_T = TypeVar("_T")

_open_rooms: weakref.WeakSet[SqlRoom] = weakref.WeakSet()

Deliver = Callable[[dict[str, Any], list[bytes]], None]
"""A transport to browser views: ``deliver(json_content, binary_buffers)``."""


def validate_room_id(room_id: str, what: str = "room id") -> str:
    """Return ``room_id`` if it is 1-128 of ``[A-Za-z0-9_.-]`` and not only dots (the rule of
    :mod:`sqlrooms_nb.names`, also for branch and tag names: ``what`` names the argument).

    Raises :class:`ValidationError` otherwise (the id reaches SQL filters and could reach
    file names, so it is checked before anything else happens).
    """
    return names.validate_name(room_id, what)


class SqlRoom:
    """A collaborative SQL notebook stored in a DuckLake.

    Args:
        room_id: the notebook's id in the lake, ``[A-Za-z0-9_.-]{1,128}``.
        lake: where the lake lives: a folder path for the embedded default (SQLite catalog +
            data folder inside it), a lake string (``sqlite:...``, ``postgres:...`` or
            ``postgresql://...?data=s3://...``) or a :class:`~sqlrooms_nb.LakeConfig`; see
            :func:`sqlrooms_nb.store.config.parse_lake`. ``None`` means ``$SQLROOMS_NB_LAKE``
            or ``.sqlrooms``.
        connection: DuckDB connection SQL cells run on (their results become views in it).
            ``None`` gives the room its own in-memory database.
        branch: the branch the Python API edits (``"main"`` unless branches were created
            with :meth:`branch`); views start on it and may pick another.
        author: display name recorded on this kernel's changes and offered to views.
        flush_policy: when the writer flushes (see :class:`~sqlrooms_nb.store.FlushPolicy`).
        readonly: open the room read-only: every view of it is read-only (see :meth:`view`),
            the editing methods raise :class:`~sqlrooms_nb.errors.ReadOnlyError`, ``room.doc``
            is a copy, and the room writes nothing to the lake (no updates, changes,
            snapshots, runs, branches or tags; lake maintenance does not run). It still follows
            the edits other kernels write to the lake, and SQL cells still run from Python
            (their results show in its views). Opening a lake that does not exist yet still
            creates its tables.

    On construction the room recovers the branch from the lake (latest snapshot + later
    updates); other branches are recovered when first used. Displaying the room (last
    expression of a marimo or Jupyter cell) shows the widget; ``room.widget`` is the anywidget
    itself. ``close()`` (or leaving a ``with`` block, or interpreter exit) flushes every open
    branch and writes its snapshot.

    Raises :class:`ValidationError` for a bad id, :class:`BranchNotFoundError` for a branch
    the room does not have, :class:`StorageError` / :class:`~sqlrooms_nb.errors.RecoveryError`
    when the lake cannot be opened or read.
    """

    def __init__(
        self,
        room_id: str,
        *,
        lake: str | Any | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
        branch: str = MAIN,
        author: str | None = None,
        flush_policy: FlushPolicy | None = None,
        readonly: bool = False,
    ) -> None:
        self.room_id = validate_room_id(room_id)
        self.readonly = bool(readonly)
        # Per-view token buckets, checked before a message is even decoded (see .ratelimit).
        self._limiter = RateLimiter()
        self._branch = validate_room_id(branch, "branch name")
        self.author = author or ""
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._closed = False
        # The widgets' messages are queued here and handled on the inbox's thread, in batches.
        self._inbox = Inbox(self.room_id, self._process)
        self._widget: SqlRoomWidget | None = None
        self._readonly_widget: SqlRoomWidget | None = None
        self._transports: list[Deliver] = []
        self._policy = flush_policy or FlushPolicy()
        self._replicas: dict[str, Replica] = {}
        self._tags_cache: dict[str, list[Tag]] = {}
        self._previews: dict[str, hist.Previews] = {}  # branch -> forks kept for previews
        self._last_branches: p.Branches | None = None  # for views joining while the lake is down
        # Requests that only read and may take long are answered off the comm thread, so it
        # keeps relaying everyone's edits meanwhile (see _reader_for): history pages, previews
        # and merge previews (the first read of a 100k-change branch walks it in ~0.4 s), one
        # at a time; result pages and exports (DuckDB releases the GIL while it sorts and
        # writes), two at a time, each on its own cursor.
        self._history_reads = ThreadPoolExecutor(1, thread_name_prefix="sqlrooms_nb-history")
        self._result_reads = ThreadPoolExecutor(2, thread_name_prefix="sqlrooms_nb-results")
        # The widget's `results` trait: result name -> summary of its latest successful run.
        self._results_summary: dict[str, dict[str, Any]] = {}
        self._result_runs = 0  # counts successful cell runs (the summary's `run`)
        self._sorted = res.SortedCopies()  # deep pages of a sorted grid read a sorted copy
        # The room's own SQL connection is made meanwhile on another thread (~9 ms, DuckDB
        # releases the GIL): recovery below does not need it.
        connecting = None if connection is not None else _connect_soon()
        # Input cells: value changes re-run their readers; select inputs' options.
        self._inputs = InputWatch(
            lambda: self._con,
            self._lock,
            self._broadcast,
            lambda branch, names, view: self._runner.run_inputs(
                branch, names, self._who(view), view
            ),
        )
        self._lake = Lake.open(lake)
        # Re-running the notebook cell that opens a room must not leave two writers on it in
        # one kernel: the earlier object is closed (flushed) before this one recovers.
        for other in list(_open_rooms):
            if self.readonly or other.readonly:
                continue  # a read-only room writes nothing: it may sit beside the writer
            if (other.room_id, other._lake.location) == (self.room_id, self._lake.location):
                LOG.info("[sqlrooms_nb] closing the earlier SqlRoom(%r) of this kernel", room_id)
                other.close()
        try:
            replica = self._replica(self._branch)
        except BaseException:
            self._lake.release()
            if connecting is not None:
                connecting.result().close()
            raise
        self._con: duckdb.DuckDBPyConnection
        if connection is not None:
            self._con = connection
        else:
            assert connecting is not None
            self._con = connecting.result()
        self._presence = Presence()  # who is here: relayed to views, never persisted
        # Views of other kernels on this room (PostgreSQL catalog: NOTIFY), shown alike.
        self._unsubscribe_presence = self._lake.on_presence(self.room_id, self._remote_presence)
        # SQL runs: a worker thread off the comm thread; the run log is written in the background.
        self._runlog = RunLog(self._lake)
        self._runner = Runner(
            self._con,
            self.room_id,
            read_cells=self._cells_of,
            broadcast=self._broadcast,
            on_outcome=lambda branch, cell, message: self._record_outcome(branch, cell, message),
            log=self._runlog.append if not self.readonly else lambda *_args: None,
            on_job_done=self._job_done,
            read_inputs=self._inputs_of,
            before_run=self._before_run,
        )
        if not self.readonly and nb.ensure_schema(replica.doc, title=self.room_id):
            self._commit(replica.doc)
        # The collaboration as data for SQL cells (sqlrooms_history.*); optional, never fatal.
        # Made in the background (0.2-1.5 s), last: runs naming it and flush() wait for it.
        self._history_views = create_history_views_soon(
            self._con, self._lake, self.room_id, self._branch
        )
        _open_rooms.add(self)
        _flush_on_sigterm()

    # --- document API ------------------------------------------------------------------------

    @property
    def current_branch(self) -> str:
        """The checked-out branch: the one the Python API (and ``room.doc``) edits.

        (``room.branch(name)`` creates a branch; see :meth:`branch`.)"""
        return self._branch

    @property
    def doc(self) -> LoroDoc:
        """The kernel's Loro document of the checked-out branch.

        Edits made on it directly (then ``doc.commit()``) reach every view and the lake. In a
        read-only room it is a fork (a copy made on each access): edits on it go nowhere.
        """
        doc = self._replica().doc
        return doc.fork() if self.readonly else doc

    @property
    def cells(self) -> list[nb.Cell]:
        """All cells in display order, as plain :class:`~sqlrooms_nb.notebook.Cell` values."""
        return nb.read_cells(self._replica().doc)

    def add_cell(
        self,
        source: str = "",
        *,
        name: str | None = None,
        kind: str = "sql",
        index: int | None = None,
    ) -> str:
        """Insert a cell at ``index`` (0-based; ``None`` appends) and return its id.

        ``name`` is the SQL result name (a view of that name is created when the cell runs);
        ``None`` picks a free ``qN``. Raises :class:`ValidationError`.
        """
        with self._editing() as doc:
            return nb.add_cell(doc, source, name=name, kind=kind, index=index)

    def update_cell(
        self, cell_id: str, *, source: str | None = None, name: str | None = None
    ) -> None:
        """Change a cell's source and/or name (``None`` leaves it unchanged).

        The source is changed by a text diff, so concurrent edits elsewhere in it survive.
        Raises :class:`~sqlrooms_nb.errors.CellNotFoundError`, :class:`ValidationError`.
        """
        with self._editing() as doc:
            nb.update_cell(doc, cell_id, source=source, name=name)

    def move_cell(self, cell_id: str, index: int) -> None:
        """Move a cell to 0-based position ``index``. Raises ``CellNotFoundError``."""
        with self._editing() as doc:
            nb.move_cell(doc, cell_id, index)

    def delete_cell(self, cell_id: str) -> None:
        """Delete a cell. Raises :class:`~sqlrooms_nb.errors.CellNotFoundError`."""
        with self._editing() as doc:
            nb.delete_cell(doc, cell_id)
            self._replica().results.pop(cell_id, None)

    def update_chart(
        self,
        cell_id: str,
        *,
        source: str | None = None,
        mark: str | None = None,
        x: str | None = None,
        y: str | None = None,
        color: str | None = None,
        aggregate: str | None = None,
    ) -> None:
        """Change fields of a chart cell's spec (``None`` leaves a field as it is, ``""``
        clears it). ``source`` is the result name of the SQL cell plotted; ``x``, ``y``,
        ``color`` are its column names; ``mark`` one of ``bar line point area``; ``aggregate``
        one of ``none sum mean count min max``. Raises ``CellNotFoundError``,
        :class:`ValidationError` (unknown mark or aggregate, not a chart cell).
        """
        given = {
            "source": source,
            "mark": mark,
            "x": x,
            "y": y,
            "color": color,
            "aggregate": aggregate,
        }
        with self._editing() as doc:
            nb.set_chart(doc, cell_id, **{k: v for k, v in given.items() if v is not None})

    def chart_data(self, cell_id: str) -> pa.Table:
        """The rows a chart cell of the checked-out branch plots (see :mod:`.charts`).

        Raises ``CellNotFoundError``, :class:`ValidationError` (not a chart cell, incomplete
        spec, unknown column), :class:`QueryError` (the plotted cell's result is missing).
        """
        self._check_open()
        spec = nb.read_chart(self._replica().doc, cell_id)
        return charts.chart_data(self._con, spec)

    # --- SQL -----------------------------------------------------------------------------------

    def run(self, cell_id: str, *, cascade: bool = True) -> pa.Table:
        """Run a SQL cell of the checked-out branch and return its full result as a
        ``pyarrow.Table``.

        The result gets the cell's name (a view, or a table for slow results other cells read;
        see :mod:`sqlrooms_nb.query`), and every view of the branch shows it. The run waits
        behind runs already queued; with ``cascade`` the cells that read this one re-run after
        it, in the background (upstream cells that never ran run first). Raises
        :class:`~sqlrooms_nb.errors.QueryError` (0-based ``line``/``column``) if DuckDB fails,
        :class:`~sqlrooms_nb.errors.CancelledError` if the run was cancelled,
        ``CellNotFoundError``, or :class:`ValidationError` for a non-SQL cell.
        """
        table = self._run(self._replica(), cell_id, request=None, view=None, cascade=cascade)
        assert table is not None
        return table

    def _run(
        self,
        replica: Replica,
        cell_id: str,
        *,
        request: p.RequestId | None,
        view: p.ViewId | None,
        cascade: bool = True,
        wait: bool = True,
    ) -> pa.Table | None:
        """Queue a run of ``cell_id`` (and its cascade); with ``wait`` block until the cell's
        own result is ready and return it (raising its error)."""
        self._check_open()
        nb.find_cell(replica.doc, cell_id)  # raises CellNotFoundError
        cell = next(c for c in nb.read_cells(replica.doc) if c.id == cell_id)
        if cell.kind != "sql":
            raise ValidationError(f"cell {cell_id!r} is a {cell.kind} cell; only SQL cells run")
        future: Future[pa.Table] | None = Future() if wait else None
        job = Job(replica.branch, [cell_id], request, view, self._who(view), cascade, future=future)
        self._runner.submit(job)
        return None if future is None else future.result()

    def set_input(
        self,
        cell_id: str,
        *,
        value: nb.InputValue = nb.UNSET,
        type: str | None = None,
        options_sql: str | None = None,
    ) -> None:
        """Change an input cell of the checked-out branch (``None`` / unset leaves a field as
        it is; ``value=None`` clears the value, which binds NULL).

        SQL cells read the input's value as the parameter ``$name`` (its cell name), bound as
        a DuckDB prepared-statement parameter, never spliced into the SQL. ``type`` is one of
        ``text number select``; a number input's value is a finite number, a text or select
        input's a string; ``options_sql`` is a select input's options query (its first column).
        Changing the value re-runs the cells that read it, in the background, like a view's
        edit does. Raises ``CellNotFoundError``, :class:`ValidationError` (not an input cell,
        bad type or value).
        """
        with self._editing() as doc:
            nb.set_input(doc, cell_id, value=value, type=type, options_sql=options_sql)

    def _inputs_of(self, branch: str) -> dict[str, nb.InputSpec]:
        """Input specs of ``branch`` by parameter name (for the runner; takes the lock briefly)."""
        with self._lock:
            return nb.read_inputs(self._replica(branch).doc)

    def _cells_of(self, branch: str) -> list[nb.Cell]:
        """The cells of ``branch`` (for the runner; holds the edit lock only while reading)."""
        with self._lock:
            return nb.read_cells(self._replica(branch).doc)

    def _record_outcome(self, branch: str, cell: str, message: p.Result | p.Error) -> None:
        replica = self._replicas.get(branch)
        if replica is not None:
            replica.results[cell] = message
        if replica is not None and isinstance(message, p.Result):
            self._inputs.after_result(replica, message)

    def _job_done(self, job: Job) -> None:
        """After each run job (runner thread): record its successful runs in the widget's
        ``results`` trait, then send the catalog (runs create views and tables)."""
        results = [m for m in job.outcomes.values() if isinstance(m, p.Result)]
        if results:
            self._summarise_results(job.branch, results, job.view)
        if job.outcomes and self._transports:
            tables = catalog.read_catalog(self._con)
            self._broadcast([p.Catalog(branch=job.branch, tables=tables)])

    def _summarise_results(
        self, branch: str, results: Sequence[p.Result], view: p.ViewId | None
    ) -> None:
        """Update the widget's ``results`` trait with a job's successful runs (one change per
        job, so a cascade re-runs the Python cells reading it once).

        The trait maps result name -> ``{"cell", "branch", "rows", "run", "view"}``: ``run``
        counts successful runs in this room (higher = newer), ``view`` is the view that asked
        (``None`` for Python). marimo exposes it as ``mo.ui.anywidget(room.widget).value``; the
        view that asked tells marimo (see ``js/widget.ts``) so cells reading that value re-run.
        """
        with self._lock:
            summary = dict(self._results_summary)
            for message in results:
                self._result_runs += 1
                for name, entry in list(summary.items()):
                    if (entry["cell"], entry["branch"]) == (message.cell, branch):
                        del summary[name]  # renamed since its last run
                summary[message.name] = {
                    "cell": message.cell,
                    "branch": branch,
                    "rows": message.rows,
                    "run": self._result_runs,
                    "view": view,
                }
            self._results_summary = summary
            widgets = self._widgets()
        for widget in widgets:
            widget.results = summary

    def result(self, name: str) -> pa.Table:
        """The full last result of the SQL cell named ``name`` (checked-out branch) as a
        ``pyarrow.Table`` (``.to_pandas()``, ``polars.from_arrow(...)``).

        Read from the run's result table in the kernel's DuckDB: the result as it was when the
        cell last ran successfully in this kernel, whoever ran it (a view or Python). Raises
        :class:`~sqlrooms_nb.errors.CellNotFoundError` (a ``KeyError``) when no SQL cell has
        that name, :class:`ValidationError` when the cell has not run successfully in this
        kernel yet (run it, or :meth:`run_all`).
        """
        self._check_open()
        replica = self._replica()
        cells = [c for c in nb.read_cells(replica.doc) if c.kind == "sql"]
        cell = next((c for c in cells if c.name == name), None)
        if cell is None:
            known = ", ".join(repr(c.name) for c in cells) or "none"
            raise CellNotFoundError(f"no SQL cell is named {name!r} (names: {known})")
        outcome = replica.results.get(cell.id)
        if not isinstance(outcome, p.Result):
            why = "its last run failed" if isinstance(outcome, p.Error) else "it has not run yet"
            raise ValidationError(
                f"cell {name!r} has no result in this kernel: {why}; run it first "
                "(room.run(cell_id) or room.run_all())"
            )
        cur = self._con.cursor()
        try:
            relation = query.result_relation(replica.branch, cell.id)
            try:
                return cur.execute(f"SELECT * FROM {relation}").to_arrow_table()
            except duckdb.CatalogException:
                # Not materialised: read the view named after the cell.
                view = query.quote_ident(outcome.name)
                return cur.execute(f"SELECT * FROM {view}").to_arrow_table()
        finally:
            cur.close()

    def run_all(self, timeout: float | None = None) -> dict[str, int]:
        """Run every SQL cell of the checked-out branch in dependency order and wait.

        Returns ``{result name: row count}`` of the cells that ran, in run order (their full
        results: :meth:`result`). Every view shows the runs as they happen. Raises
        :class:`QueryError` naming the cells that failed (the others still ran, except those
        reading a failed cell), :class:`~sqlrooms_nb.errors.CancelledError` if a run was
        cancelled, ``TimeoutError`` after ``timeout`` seconds (``None``: no limit; the runs
        then go on in the background).
        """
        self._check_open()
        replica = self._replica()
        job = Job(replica.branch, [], None, None, self.author)
        job.run_all = True
        job.done = threading.Event()
        self._runner.submit(job)
        if not job.done.wait(timeout):
            raise TimeoutError(f"run_all did not finish within {timeout} s; the runs go on")
        names: dict[str, str] = {str(c.id): c.name for c in nb.read_cells(replica.doc)}
        rows: dict[str, int] = {}
        failed: list[str] = []
        for cell_id, outcome in job.outcomes.items():
            if isinstance(outcome, p.Result):
                rows[outcome.name] = outcome.rows
            elif isinstance(outcome, p.Error):
                failed.append(f"{names.get(cell_id, cell_id)}: {outcome.message}")
            else:
                name = names.get(cell_id, cell_id)
                raise CancelledError(f"run_all was cancelled at cell {name!r}")
        if failed:
            raise QueryError(f"{len(failed)} cell(s) failed in run_all: " + "; ".join(failed))
        return rows

    # --- history -----------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The id of the current version of the checked-out branch (see
        :mod:`sqlrooms_nb.history`)."""
        return self._version(self._replica())

    @staticmethod
    def _version(replica: Replica) -> str:
        replica.doc.commit()
        replica.relay_local()
        return hist.current_version(replica.doc)

    def history(
        self,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        idle_gap_s: float = hist.IDLE_GAP_S,
    ) -> list[hist.Version]:
        """Edit sessions of the checked-out branch, newest first, as
        :class:`~sqlrooms_nb.history.Version` values.

        A session is consecutive changes by one author with pauses of at most ``idle_gap_s``
        seconds. ``limit`` caps how many are returned; ``since`` (aware datetime) keeps those
        that ended at or after it. Per-change statistics are computed once and cached.
        """
        return self._history(self._replica(), limit, since, idle_gap_s)

    def _history(
        self, replica: Replica, limit: int | None, since: datetime | None, idle_gap_s: float
    ) -> list[hist.Version]:
        doc = replica.doc
        doc.commit()
        cell_of = hist.container_cells(doc)
        cache = replica.change_stats

        def stats(change: hist.Change) -> hist.ChangeStats:
            key = (change.peer, change.counter_start, change.counter_end)
            found = cache.get(key)
            if found is None:
                found = cache[key] = hist.change_stats(doc, change, cell_of)
            return found

        return hist.sessions(
            doc,
            stats,
            idle_gap_s=idle_gap_s,
            limit=limit,
            since=since,
            own_author=self.author,
            listed=replica.change_index.changes(),
        )

    def at(self, version: str | hist.Version) -> list[nb.Cell]:
        """The cells as they were at ``version`` (read-only; the live document is untouched).

        Raises :class:`ValidationError` for an id that is not a version of this branch.
        """
        replica = self._replica()
        return self._previews_of(replica).cells_at(hist.parse_version(replica.doc, version))

    def _previews_of(self, replica: Replica) -> hist.Previews:
        """The branch's kept forks for reading old versions (see :class:`hist.Previews`)."""
        with self._lock:
            previews = self._previews.get(replica.branch)
            if previews is None or previews.doc is not replica.doc:
                previews = self._previews[replica.branch] = hist.Previews(replica.doc)
            return previews

    def diff(
        self, a: str | hist.Version, b: str | hist.Version | None = None
    ) -> list[hist.CellDiff]:
        """Per-cell changes from version ``a`` to version ``b`` (``None``: the current state)."""
        before = self.at(a)
        after = self.cells if b is None else self.at(b)
        return hist.diff_cells(before, after)

    def restore(self, version: str | hist.Version, *, author: str | None = None) -> str:
        """Make ``version`` current again **as a new change** that every view receives, the
        lake stores, and that can itself be undone or restored away. Returns the new
        version's id. ``author`` names who restored (``None``: this room's author).
        Raises :class:`ValidationError` for an unknown version."""
        return self._restore(self._replica(), version, author)

    def _restore(self, replica: Replica, version: str | hist.Version, author: str | None) -> str:
        doc = replica.doc
        frontiers = hist.parse_version(doc, version)
        vid = version.id if isinstance(version, hist.Version) else version
        who = author or self.author or "python"
        with self._editing(replica):
            self._commit(doc)  # the restore must be a change of its own
            hist.restore(doc, frontiers)
            doc.set_next_commit_message(nb.change_message(who, f"restored version {vid}"))
            doc.commit()
        return self._version(replica)

    @property
    def problems(self) -> list[CorruptionError]:
        """Damaged stored rows met while opening (or following) this room's open branches,
        oldest first; empty when all is well. Each names its row; see
        :func:`sqlrooms_nb.store.recovery.recover_room` for what was done about it, and
        :attr:`problem_report` for the whole story in words."""
        with self._lock:
            return [e for r in self._replicas.values() for e in r.problems]

    @property
    def problem_report(self) -> str:
        """:attr:`problems` in words, per branch, with what was done and what to do ("" when
        there are none). The same text reaches views as an ``error`` with code ``corrupt``."""
        with self._lock:
            return "\n".join(r.report for r in self._replicas.values() if r.report)

    def saved_versions(self) -> list[SavedVersion]:
        """DuckLake's own timeline for the checked-out branch: the lake snapshots that saved
        its rows (what was saved when), newest first. Independent of the CRDT history."""
        self._check_open()
        return saved_versions(self._lake, self.room_id, self._branch)

    def at_saved(self, snapshot_id: int) -> list[nb.Cell]:
        """The cells as the lake held them at DuckLake snapshot ``snapshot_id`` (time travel).

        Recovered into a separate document; the room is untouched. Raises
        :class:`~sqlrooms_nb.errors.StorageError` for a snapshot the lake does not have, and
        :class:`~sqlrooms_nb.errors.CorruptionError` when damaged rows leave changes missing
        (damage that loses nothing is only logged, see :attr:`problems`).
        """
        self._check_open()
        doc = nb.new_doc()
        recover(
            self._lake, self.room_id, self._branch, doc, warm=False, at_snapshot=int(snapshot_id)
        )
        return nb.read_cells(doc)

    def tag(self, name: str, version: str | hist.Version | None = None) -> str:
        """Name a version of the checked-out branch (``None``: the current one); return its id.

        Tag names follow the room-id rule (1-128 of ``[A-Za-z0-9_.-]``) and never move: a name
        already used on this branch raises :class:`ValidationError`.
        """
        self._check_writable()
        validate_room_id(name, "tag name")
        if version is None:
            vid = self.version
        else:
            vid = version.id if isinstance(version, hist.Version) else version
            hist.parse_version(self._replica().doc, vid)
        add_tag(self._lake, self.room_id, self._branch, name, vid, self.author)
        self._tags_cache.pop(self._branch, None)
        return vid

    def tags(self) -> list[Tag]:
        """Named versions of the checked-out branch, newest first
        (:class:`~sqlrooms_nb.store.Tag`)."""
        return list_tags(self._lake, self.room_id, self._branch)

    def _tags_of(self, branch: str) -> list[Tag]:
        """Tags of a branch for history pages, read from the lake once and then kept: only
        :meth:`tag` adds tags (it drops the kept list), and a lake query per page cost
        30-100 ms, up to 2 s while the writer was saving."""
        found = self._tags_cache.get(branch)
        if found is None:
            found = self._tags_cache[branch] = list_tags(self._lake, self.room_id, branch)
        return found

    # --- branches ------------------------------------------------------------------------------

    def branches(self) -> list[Branch]:
        """Every branch of the room with its lineage, ``main`` first, then oldest first
        (:class:`~sqlrooms_nb.store.Branch`). Raises ``StorageError``."""
        self._check_open()
        return list_branches(self._lake, self.room_id)

    def branch(
        self,
        name: str,
        at: str | hist.Version | None = None,
        *,
        source: str | None = None,
        author: str | None = None,
    ) -> Branch:
        """Create branch ``name``: a fork of branch ``source`` (``None``: the checked-out one)
        at version ``at`` (``None``: its current version). Returns its lineage.

        The fork gets its own rows in the lake, starting with a full snapshot written with its
        lineage row in one transaction, so it recovers after a restart on its own. This room
        object stays on its branch (see :meth:`checkout_branch`). Raises
        :class:`ValidationError` for a bad or taken name or an unknown version,
        :class:`BranchNotFoundError` for an unknown ``source``, ``StorageError``.
        """
        self._check_writable()
        validate_room_id(name, "branch name")
        parent = self._replica(source)
        with self._lock:
            parent.doc.commit()
            frontiers = (
                parent.doc.oplog_frontiers if at is None else hist.parse_version(parent.doc, at)
            )
            fork = parent.doc.fork_at(frontiers)
        nb.configure(fork)
        lineage = Branch(
            name=name,
            parent=parent.branch,
            fork_version=hist.version_id(frontiers),
            created_by=author or self.author,
            created_at=datetime.now(timezone.utc),
        )
        snapshot = snapshot_table(fork, self.room_id, name, str(fork.peer_id), 0)
        create_branch(self._lake, lineage, self.room_id, snapshot)  # raises if the name is taken
        with self._lock:
            self._replicas[name] = self._new_replica(name, doc=fork)
        self._broadcast([self._branches_message()])
        return lineage

    def checkout_branch(self, name: str) -> None:
        """Make ``name`` the branch the Python API edits (``room.doc``, ``room.cells``, ...).

        Views showing the widget follow it unless their user picked a branch there. Raises
        :class:`BranchNotFoundError`.
        """
        self._replica(name)
        self._branch = name
        self._history_views = create_history_views_soon(self._con, self._lake, self.room_id, name)
        for widget in self._widgets():
            widget.branch = name
        self._broadcast([self._branches_message()])

    def merge_preview(self, source: str, into: str = MAIN) -> list[hist.CellDiff]:
        """The per-cell changes merging ``source`` into ``into`` would make (nothing changes).

        Computed on a fork of ``into`` that imports ``source``'s changes, exactly as
        :meth:`merge` would. Raises :class:`BranchNotFoundError`, ``ValidationError`` when
        ``source`` is ``into``.
        """
        return hist.diff_cells(*self._merged_cells(source, into))

    def _merged_cells(self, source: str, into: str) -> tuple[list[nb.Cell], list[nb.Cell]]:
        src, dst = self._merge_pair(source, into)
        with self._lock:
            trial = dst.doc.fork()
            trial.import_(self._changes_missing(src, dst))
        return nb.read_cells(dst.doc), nb.read_cells(trial)

    def merge(self, source: str, into: str = MAIN) -> str:
        """Merge branch ``source`` into branch ``into`` and return ``into``'s new version id.

        A CRDT merge: ``into`` imports the changes of ``source`` it lacks (nothing is
        replaced; concurrent edits to one text interleave as Loro merges them — check
        :meth:`merge_preview` first). The merged changes reach ``into``'s views and its rows
        in the lake like any import, and the lineage records the merge. Raises
        :class:`BranchNotFoundError`, ``ValidationError`` when ``source`` is ``into``,
        ``StorageError``.
        """
        self._check_writable()
        src, dst = self._merge_pair(source, into)
        with self._lock:
            update = self._changes_missing(src, dst)
            dst.hub.import_updates((update,))
        self._broadcast([p.ServerUpdate(origin=None, updates=(update,), branch=into)])
        mark_merged(self._lake, self.room_id, source, into)
        self._broadcast([self._branches_message()])
        return self._version(dst)

    def _merge_pair(self, source: str, into: str) -> tuple[Replica, Replica]:
        if source == into:
            raise ValidationError(f"cannot merge branch {source!r} into itself")
        return self._replica(source), self._replica(into)

    @staticmethod
    def _changes_missing(src: Replica, dst: Replica) -> bytes:
        """The changes ``src`` has and ``dst`` lacks, as one Loro update (commits both)."""
        src.doc.commit()
        dst.doc.commit()
        return src.doc.export(ExportMode.Updates(dst.doc.oplog_vv))

    def _branches_message(self) -> p.Branches:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        try:
            branches = self.branches()
        except StorageError as exc:
            # The lake is unreachable: a view must still connect and edit (its changes go to
            # the spill file), so it gets the last list read rather than no welcome at all.
            LOG.warning("[sqlrooms_nb] the branches of %s cannot be read: %s", self.room_id, exc)
            unknown = p.BranchInfo(self._branch, None, None, "", None, None, None)
            return self._last_branches or p.Branches(branches=(unknown,), current=self._branch)
        self._last_branches = p.Branches(
            branches=tuple(
                p.BranchInfo(
                    b.name,
                    b.parent,
                    b.fork_version,
                    b.created_by,
                    iso(b.created_at),
                    b.merged_into,
                    iso(b.merged_at),
                )
                for b in branches
            ),
            current=self._branch,
        )
        return self._last_branches

    def _replica(self, branch: str | None = None) -> Replica:
        """The open replica of ``branch`` (``None``: the checked-out one), recovering it from
        the lake on first use. Raises :class:`BranchNotFoundError`, ``StorageError``."""
        self._check_open()
        name = self._branch if branch is None else names.validate_branch_name(branch)
        with self._lock:
            replica = self._replicas.get(name)
            if replica is None:
                if name != MAIN and not self._branch_exists(name):
                    known = ", ".join(b.name for b in list_branches(self._lake, self.room_id))
                    raise BranchNotFoundError(
                        f"room {self.room_id!r} has no branch {name!r} (it has: {known}); "
                        f"create it with room.branch({name!r})"
                    )
                replica = self._replicas[name] = self._new_replica(name)
            return replica

    def _branch_exists(self, name: str) -> bool:
        if any(b.name == name for b in list_branches(self._lake, self.room_id)):
            return True
        return has_rows(self._lake, self.room_id, name)

    def _new_replica(self, branch: str, doc: LoroDoc | None = None) -> Replica:
        replica = Replica(
            self._lake,
            self.room_id,
            branch,
            broadcast=self._broadcast,
            lock=self._lock,
            author=self.author,
            policy=self._policy,
            doc=doc,
            read_only=self.readonly,
        )
        self._inputs.opened(replica)
        return replica

    # --- storage -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 60) -> None:
        """Block until every change made so far, on every open branch, is in the lake.

        Raises :class:`StorageError` if the lake could not be written (nothing is dropped:
        the writer keeps the changes and retries).
        """
        self._check_open()
        self._inbox.settle(timeout)  # views' edits already queued count as made
        for replica in list(self._replicas.values()):
            replica.doc.commit()
            replica.relay_local()
            replica.persister.flush(timeout)
        self._runlog.flush(timeout)
        self._history_views_ready(timeout)

    def _before_run(self, sql: str) -> None:
        """Before a SQL cell runs: SQL naming the history views waits until they exist."""
        lowered = sql.lower()
        if HISTORY_SCHEMA in lowered or LAKE_ALIAS in lowered:
            self._history_views_ready()

    def _history_views_ready(self, timeout: float | None = 60) -> None:
        """Wait (at most ``timeout`` s) for the latest request for the history views
        (``sqlrooms_history.*`` in the SQL connection, made in the background)."""
        try:
            self._history_views.result(timeout)
        except FutureTimeout:
            LOG.warning("[sqlrooms_nb] the history views were not ready within %s s", timeout)

    def close(self, timeout: float | None = 60) -> None:
        """Flush every open branch, write its snapshot, stop the writers and release the
        lake. Idempotent.

        Waits at most ``timeout`` seconds per writer (``None``: no limit); raises
        :class:`StorageError` if a final flush failed (that writer keeps retrying meanwhile).
        """
        self._inbox.close(timeout)  # what views sent before the close goes in first
        with self._lock:
            if self._closed:
                return
            self._closed = True
            replicas = list(self._replicas.values())
        _open_rooms.discard(self)
        self._unsubscribe_presence()
        self._history_reads.shutdown(wait=False, cancel_futures=True)
        self._inputs.close()
        self._result_reads.shutdown(wait=True, cancel_futures=True)  # they use the connection
        self._history_views_ready(timeout)  # it uses the connection too
        errors: list[BaseException] = []
        self._runner.close(timeout)
        self._runlog.close(timeout)
        try:
            for replica in replicas:
                try:
                    replica.close(timeout)
                except BaseException as exc:
                    errors.append(exc)
        finally:
            self._lake.release()
        if errors:
            raise errors[0]

    def _remote_presence(self, update: bytes) -> None:
        """Presence of another kernel's views (listener thread): keep it and show it here."""
        try:
            self._presence.apply_remote(update)
        except ProtocolError as exc:
            LOG.debug("[sqlrooms_nb] ignored presence from another kernel: %s", exc)
            return
        self._broadcast([p.ServerAwareness(origin=None, update=update)])

    def __enter__(self) -> SqlRoom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- views (comm) --------------------------------------------------------------------------

    @property
    def widget(self) -> SqlRoomWidget:
        """The anywidget showing this room (made on first use; display it any number of times).

        Its views may edit, unless the room was opened with ``readonly=True``."""
        return self.view(readonly=self.readonly)

    def view(self, *, readonly: bool = False) -> SqlRoomWidget:
        """A widget showing this room; with ``readonly`` its views are read-only.

        Display the returned widget (last expression of a marimo or Jupyter cell) where people
        should only look: a read-only view shows the cells, live edits, results, history and
        previews, may page and export results and switch branch, but its editors do not take
        input and it has no run, add, delete, move, restore, branch or merge controls. The
        kernel enforces this, not the browser: every message arriving through this widget's comm
        that would change the document or start a run (``update``, ``run``, ``run_all``,
        ``cancel``, ``restore``, ``branch``, ``merge``) is refused with a ``read_only`` error,
        whatever the browser claims. One widget of each kind is made per room (cached);
        ``view(readonly=False)`` is :attr:`widget`, and in a read-only room every view is
        read-only.
        """
        readonly = readonly or self.readonly
        widget = self._readonly_widget if readonly else self._widget
        if widget is None:
            from .widget import SqlRoomWidget

            def on_message(content: object, buffers: Sequence[Any] | None) -> None:
                self.enqueue(content, buffers, readonly=readonly)

            widget = SqlRoomWidget(
                results=self._results_summary,
                room_id=self.room_id,
                branch=self._branch,
                author=self.author,
                readonly=readonly,
                on_message=on_message,
            )
            if readonly:
                self._readonly_widget = widget
            else:
                self._widget = widget
            self.connect(widget.deliver)
        return widget

    def _widgets(self) -> list[SqlRoomWidget]:
        return [w for w in (self._widget, self._readonly_widget) if w is not None]

    def connect(self, deliver: Deliver) -> Callable[[], None]:
        """Attach a transport: ``deliver(content, buffers)`` is called for every message to views.

        The widget is one such transport; tests attach in-memory ones. Messages from views
        come back through :meth:`receive`. Returns a function that detaches the transport.
        """
        with self._send_lock:
            self._transports.append(deliver)

        def disconnect() -> None:
            with self._send_lock:
                if deliver in self._transports:
                    self._transports.remove(deliver)

        return disconnect

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Jupyter display: the widget's view."""
        return self.widget._repr_mimebundle_(**kwargs)

    def _display_(self) -> Any:
        """marimo display: the widget (marimo wraps anywidgets itself)."""
        return self.widget

    def receive(
        self, content: object, buffers: Sequence[p.Buffer] | None, *, readonly: bool = False
    ) -> None:
        """Handle one message from a view, on the caller's thread, before returning.

        ``readonly``: the message came through a read-only widget's comm (see :meth:`view`);
        set by the kernel side of the comm, never read from the message. Checks the sending
        view's rate limit (see :mod:`sqlrooms_nb.ratelimit`), decodes, refuses what a read-only
        view may not send, handles and sends the replies. Malformed, refused or failing input
        gets an ``error`` reply addressed to that view (codes: ``protocol``, ``rate_limited``,
        ``read_only``, ``resync``, ...) and changes nothing; no exception escapes to the comm.

        The room's own widgets do not call this on the comm thread: they queue (see
        :meth:`enqueue`), so that a backlog of edits is imported as one batch.
        """
        if self._admit(content, buffers):
            self._process([(content, buffers, readonly)])

    def enqueue(
        self, content: object, buffers: Sequence[p.Buffer] | None, *, readonly: bool = False
    ) -> None:
        """Like :meth:`receive`, but handled on the room's inbox thread (see
        :mod:`sqlrooms_nb.inbox`): returns once the message is queued (the rate limit is
        checked here, at arrival). Messages are handled in arrival order; consecutive
        ``update`` messages waiting together are imported as one batch. :meth:`settle` waits
        until everything queued was handled."""
        if self._admit(content, buffers) and not self._inbox.put(content, buffers, readonly):
            self._process([(content, buffers, readonly)])  # closed: answered "closed"

    def settle(self, timeout: float | None = 60) -> bool:
        """Wait (at most ``timeout`` seconds) until every message queued by :meth:`enqueue` has
        been handled; returns whether it has."""
        return self._inbox.settle(timeout)

    def _admit(self, content: object, buffers: Sequence[p.Buffer] | None) -> bool:
        """The sending view's rate limit: ``False`` (and a first-refusal ``error``) when over."""
        view = p.view_of(content)
        hello = isinstance(content, dict) and content.get("kind") == "hello"
        cost = HELLO_COST if hello else 1.0
        verdict = self._limiter.check(view, p.message_bytes(content, buffers), cost)
        if verdict == "admit":
            return True
        if verdict == "refuse":  # the first refusal of a spell; later ones are silent
            error = RateLimitError(
                f"view {view} sent more than {self._limiter.messages_per_s:.0f} messages or "
                f"{self._limiter.bytes_per_s / 2**20:.0f} MiB per second: its messages are "
                "refused until it slows down; edits it sent meanwhile are re-sent by a new "
                "handshake"
            )
            LOG.warning("[sqlrooms_nb] %s", error)
            self._broadcast([p.Error(code=error.code, message=str(error), to=view)])
        return False

    def _process(self, items: list[Item]) -> None:
        """Handle admitted messages in order; each run of consecutive ``update`` messages for
        one branch is imported with one Loro import (see :meth:`SyncHub.handle_updates`)."""
        updates: list[tuple[p.ClientUpdate, object]] = []
        for content, buffers, readonly in items:
            message = self._guarded(
                content, functools.partial(self._decode, content, buffers, readonly)
            )
            if message is None:
                continue
            if isinstance(message, p.ClientUpdate):
                if updates and updates[0][0].branch != message.branch:
                    self._import_updates(updates)
                    updates = []
                updates.append((message, content))
                continue
            if updates:
                self._import_updates(updates)
                updates = []
            self._dispatch(message, content)
        if updates:
            self._import_updates(updates)

    def _decode(
        self, content: object, buffers: Sequence[p.Buffer] | None, readonly: bool
    ) -> p.ClientMessage:
        message = p.decode_client(content, buffers)
        if (readonly or self.readonly) and not p.is_read_only(message):
            raise ReadOnlyError(
                f"this view of room {self.room_id!r} is read-only: a {message.kind!r} "
                "message (which would change the notebook or start a run) was refused"
            )
        return message

    def _dispatch(self, message: p.ClientMessage, content: object) -> None:
        """One decoded message: a read request goes to its reader pool, the rest is handled
        here; the replies are sent."""
        reader = self._reader_for(message)
        if reader is not None:
            view = p.view_of(content)

            def submit() -> list[p.ServerMessage]:
                self._check_open()
                reader.submit(self._answer, message, view, content)
                return []

            replies = self._guarded(content, submit)
        else:
            replies = self._guarded(content, lambda: self.handle(message))
        if replies:
            self._broadcast(replies)

    def _import_updates(self, updates: list[tuple[p.ClientUpdate, object]]) -> None:
        """Consecutive ``update`` messages for one branch: one import, then the replies."""

        def run() -> list[p.ServerMessage]:
            if self._closed:
                raise ClosedError("this room was closed; re-run the cell that opens it")
            replica = self._replica(updates[0][0].branch)
            with self._lock:
                replies = replica.hub.handle_updates([m for m, _c in updates])
            for view in dict.fromkeys(m.view for m, _c in updates):
                self._inputs.changed(replica, view)
            return [*replies, *self._runner.stale_message(replica.branch)]

        replies = self._guarded(updates[0][1], run)
        if replies:
            self._broadcast(replies)

    def _guarded(self, content: object, fn: Callable[[], _T]) -> _T | None:
        """``fn()``, or ``None`` after an ``error`` reply to the sending view when it raised:
        the message's own fault (a :class:`SqlRoomsError`, its code kept) or a bug
        (``internal``); never an exception out to the comm."""
        view = p.view_of(content)
        try:
            return fn()
        except SqlRoomsError as exc:
            LOG.warning("[sqlrooms_nb] message from view %s refused: %s", view, redact(str(exc)))
            error = p.Error(
                code=exc.code, message=redact(str(exc)), to=view, id=_request_of(content)
            )
        except Exception as exc:  # a bug must not take the comm down
            LOG.exception("[sqlrooms_nb] failed to handle a message from view %s", view)
            error = p.Error(
                code="internal", message=redact(repr(exc)), to=view, id=_request_of(content)
            )
        except BaseException as exc:  # loro's PanicException is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            LOG.exception("[sqlrooms_nb] Loro failed on a message from view %s", view)
            error = p.Error(
                code="internal", message=redact(repr(exc)), to=view, id=_request_of(content)
            )
        self._broadcast([error])
        return None

    def _reader_for(self, message: p.ClientMessage) -> ThreadPoolExecutor | None:
        """The reader thread pool that answers ``message``, ``None`` to answer it inline."""
        if isinstance(message, (p.HistoryRequest, p.PreviewRequest)) or (
            isinstance(message, p.MergeRequest) and message.preview
        ):
            return self._history_reads
        if isinstance(message, (p.PageRequest, p.ExportRequest)):
            return self._result_reads
        return None

    def _answer(self, message: p.ClientMessage, view: p.ViewId | None, content: object) -> None:
        """Answer a read request on a reader thread, with :meth:`receive`'s error handling
        (errors about a cell's result name the cell, so its grid shows them)."""
        cell = getattr(message, "cell", None)
        try:
            replies = self.handle(message)
        except SqlRoomsError as exc:
            replies = [
                p.Error(
                    code=exc.code, message=str(exc), to=view, id=_request_of(content), cell=cell
                )
            ]
        except Exception as exc:  # a bug must not leave the view waiting forever
            LOG.exception("[sqlrooms_nb] failed to answer a %s request", message.kind)
            replies = [
                p.Error(code="internal", message=repr(exc), to=view, id=_request_of(content))
            ]
        self._broadcast(replies)

    def handle(self, message: p.ClientMessage) -> list[p.ServerMessage]:
        """The pure core of :meth:`receive`: one decoded message in, messages to send out.

        Messages about a document go to the replica of the branch they name (the checked-out
        one when they name none). Raises :class:`SqlRoomsError` subclasses for bad input (the
        caller replies with an ``error``). A failing SQL run is not an exception here: its
        ``error`` is broadcast.
        """
        if self._closed:
            raise ClosedError("this room was closed; re-run the cell that opens it")
        if isinstance(message, p.ClientAwareness):
            self._presence.apply(message.view, message.update)  # raises ProtocolError
            self._lake.announce_presence(self.room_id, message.update)
            return [p.ServerAwareness(origin=message.view, update=message.update)]
        if isinstance(message, p.Ping):
            return [p.Pong(to=message.view, id=message.id)]
        if isinstance(message, p.BranchRequest):
            self.branch(message.name, message.at, source=message.source, author=message.author)
            return [p.BranchCreated(to=message.view, id=message.id, name=message.name)]
        if isinstance(message, p.MergeRequest):
            return [self._merge_request(message)]
        replica = self._replica(message.branch)
        if isinstance(message, (p.PageRequest, p.ExportRequest)):
            return [self._result_read(replica, message)]
        if isinstance(message, p.Hello):
            snapshot = self._presence.snapshot()
            presence = [p.ServerAwareness(origin=None, update=snapshot)] if snapshot else []
            return [
                *replica.hub.handle(message),
                *replica.outage_messages(),  # the lake is unreachable: say so at once
                *replica.damage_messages(message.view),  # damaged rows: never silently
                *presence,
                self._branches_message(),
                *replica.results.values(),
                *self._runner.stale_message(replica.branch, force=True),
                p.Catalog(branch=replica.branch, tables=catalog.read_catalog(self._con)),
                *self._inputs.options_for(replica),
            ]
        if isinstance(message, p.ClientUpdate):
            with self._lock:
                replies = replica.hub.handle(message)
            self._inputs.changed(replica, message.view)
            return [*replies, *self._runner.stale_message(replica.branch)]
        if isinstance(message, p.Run):
            self._run(
                replica,
                message.cell,
                request=message.id,
                view=message.view,
                cascade=message.cascade,
                wait=False,
            )
            return []
        if isinstance(message, p.Cancel):
            self._runner.cancel(replica.branch, message.cell, message.id)
            return []
        if isinstance(message, p.RunAll):
            self._check_open()
            job = Job(replica.branch, [], message.id, message.view, self._who(message.view))
            job.run_all = True
            self._runner.submit(job)
            return []
        if isinstance(message, p.HistoryRequest):
            return [self._history_page(replica, message)]
        if isinstance(message, p.ChartDataRequest):
            return [self._chart_data(replica, message)]
        if isinstance(message, p.PreviewRequest):
            return [self._preview(replica, message)]
        current = self._restore(replica, message.version, message.author or None)
        return [
            p.Restored(to=message.view, id=message.id, version=message.version, current=current)
        ]

    def _merge_request(self, message: p.MergeRequest) -> p.MergePreview | p.Merged:
        if message.preview:
            before, after = self._merged_cells(message.source, message.into)
            return p.MergePreview(
                to=message.view,
                id=message.id,
                source=message.source,
                into=message.into,
                cells=_preview_cells(after),
                diff=_preview_diff(hist.diff_cells(before, after)),
            )
        current = self.merge(message.source, message.into)
        return p.Merged(
            to=message.view,
            id=message.id,
            source=message.source,
            into=message.into,
            current=current,
        )

    def _chart_data(self, replica: Replica, message: p.ChartDataRequest) -> p.ChartData | p.Error:
        """A chart's data for the view that asked, or an ``error`` to it (a chart whose
        spec is incomplete, or whose source has not run, is a normal state, not a failure)."""
        try:
            spec = nb.read_chart(replica.doc, message.cell)
            table = charts.chart_data(self._con, spec)
        except SqlRoomsError as exc:
            return p.Error(code=exc.code, message=str(exc), to=message.view, id=message.id)
        return p.ChartData(
            to=message.view,
            id=message.id,
            cell=message.cell,
            branch=replica.branch,
            rows=min(table.num_rows, charts.MAX_CHART_ROWS),
            arrow=query.to_ipc(table, charts.MAX_CHART_ROWS),
        )

    def _history_page(self, replica: Replica, message: p.HistoryRequest) -> p.History:
        """One page of the branch's history for a view (one session more tells whether more
        exist)."""
        end = message.offset + message.limit
        sessions = self._history(replica, end + 1, None, hist.IDLE_GAP_S)
        versions = tuple(
            p.VersionInfo(
                id=v.id,
                time=v.time.isoformat(),
                start=v.start.isoformat(),
                author=v.author,
                summary=v.summary,
                cells=v.cells,
                added=v.added,
                removed=v.removed,
                changes=v.changes,
            )
            for v in sessions[message.offset : end]
        )
        tags = self._tags_of(replica.branch)
        return p.History(
            to=message.view,
            id=message.id,
            offset=message.offset,
            versions=versions,
            more=len(sessions) > end,
            tags=tuple(p.TagInfo(name=t.name, version=t.version) for t in tags),
            current=self._version(replica),
        )

    def _preview(self, replica: Replica, message: p.PreviewRequest) -> p.Preview:
        """The cells at a version and their diff to now (read from a fork; raises
        :class:`ValidationError` for an unknown version)."""
        doc = replica.doc
        cells = self._previews_of(replica).cells_at(hist.parse_version(doc, message.version))
        diff = hist.diff_cells(cells, nb.read_cells(doc))
        return p.Preview(
            to=message.view,
            id=message.id,
            version=message.version,
            cells=_preview_cells(cells),
            diff=_preview_diff(diff),
        )

    # --- result pages and exports -------------------------------------------------------------

    def _who(self, view: p.ViewId | None) -> str:
        """Display name of a view (from its presence), or this kernel's author for Python."""
        if view is None:
            return self.author
        state = self._presence.state(view)
        name = state.get("name") if isinstance(state, dict) else None
        return name if isinstance(name, str) else ""

    def _result_read(
        self, replica: Replica, message: p.PageRequest | p.ExportRequest
    ) -> p.Page | p.Export:
        """One page (sorted in DuckDB) or the whole exported file of a cell's last result, read
        on a cursor of its own from the cell's result table. Raises :class:`QueryError` when
        the cell has no result yet."""
        result = replica.results.get(message.cell)
        if not isinstance(result, p.Result):
            raise QueryError("this cell has no result to read: run it first")
        sort = [(k.column, k.desc) for k in message.sort]
        cur = self._con.cursor()
        try:
            relation = query.result_relation(replica.branch, message.cell)
            try:
                res.columns(cur, relation)
            except QueryError:
                # Not materialised (yet): read the view named after the cell instead.
                relation = query.quote_ident(result.name)
            if isinstance(message, p.ExportRequest):
                data = res.export(cur, relation, message.format, sort)
                return p.Export(
                    to=message.view,
                    id=message.id,
                    cell=message.cell,
                    format=message.format,
                    filename=f"{result.name}.{message.format}",
                    data=data,
                )
            ordered = self._sorted.relation(
                cur,
                (replica.branch, message.cell),
                result,  # this run's result: a new run makes a new sorted copy
                relation,
                sort,
                query.quote_ident(f"_snb_sorted_{replica.branch}_{message.cell}"),
            )
            table = res.page(cur, ordered, message.offset, message.limit)
        finally:
            cur.close()
        return p.Page(
            to=message.view,
            id=message.id,
            cell=message.cell,
            branch=replica.branch,
            offset=message.offset,
            rows=result.rows,
            sort=message.sort,
            arrow=query.to_ipc(table, message.limit),
        )

    def _broadcast(self, messages: Sequence[p.ServerMessage]) -> None:
        if not messages or not self._transports:
            return
        with self._send_lock:
            for message in messages:
                out = p.encode_server(message)
                for deliver in self._transports:
                    try:
                        deliver(out.content, out.buffers)
                    except Exception:  # one broken transport must not stop the others
                        LOG.exception(
                            "[sqlrooms_nb] could not send %s to a view", out.content["kind"]
                        )

    # --- helpers -------------------------------------------------------------------------------

    def _commit(self, doc: LoroDoc) -> None:
        """Commit this kernel's pending ops as one change stamped with the author's name.

        The name is set per commit rather than by a pre-commit hook: a Python pre-commit hook
        deadlocks against the writer thread (Loro calls it with its transaction lock held and
        the GIL released, while the writer holds the GIL waiting for that lock).
        """
        if self.author and doc.get_pending_txn_len():
            doc.set_next_commit_message(self.author)
        doc.commit()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(
                f"room {self.room_id!r} is closed; open a new SqlRoom to keep working"
            )

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyError(
                f"room {self.room_id!r} was opened read-only (SqlRoom(..., readonly=True)): "
                "it cannot change the notebook; open it without readonly=True to edit"
            )

    def _editing(self, replica: Replica | None = None) -> _Edit:
        self._check_writable()
        return _Edit(self, replica or self._replica())

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.cells)} cells"
        lake = redact(str(self._lake.location))
        mode = ", readonly" if self.readonly else ""
        return f"SqlRoom({self.room_id!r}, branch={self._branch!r}, {state}, lake={lake!r}{mode})"


class _Edit:
    """Context for one API edit: holds the room lock and commits once at the end (one change);
    ``with`` gives the document being edited."""

    def __init__(self, room: SqlRoom, replica: Replica) -> None:
        self._room = room
        self._doc = replica.doc
        self._branch = replica.branch

    def __enter__(self) -> LoroDoc:
        self._room._lock.acquire()
        return self._doc

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._room._commit(self._doc)
        finally:
            self._room._lock.release()
        replica = self._room._replicas.get(self._branch)
        if replica is not None:
            replica.relay_local()  # API edits reach views and the writer at once
            self._room._inputs.changed(replica, None)
        self._room._broadcast(self._room._runner.stale_message(self._branch))


def _preview_cells(cells: Sequence[nb.Cell]) -> tuple[p.PreviewCell, ...]:
    return tuple(p.PreviewCell(c.id, c.kind, c.name, c.source) for c in cells)


def _preview_diff(diff: Sequence[hist.CellDiff]) -> tuple[p.PreviewDiff, ...]:
    return tuple(p.PreviewDiff(d.id, d.name, d.status, d.index_a, d.index_b, d.diff) for d in diff)


def _request_of(content: object) -> p.RequestId | None:
    if isinstance(content, dict) and isinstance(content.get("id"), str):
        return p.RequestId(content["id"][:64])
    return None


SIGTERM_CLOSE_TIMEOUT_S = 10.0
"""How long a SIGTERM waits for each open room's final flush and snapshot, seconds."""


@atexit.register
def _close_open_rooms(timeout: float | None = 60) -> None:
    """Interpreter exit flushes every room still open (its writer thread is a daemon)."""
    for room in list(_open_rooms):
        try:
            room.close(timeout)
        except BaseException:
            LOG.exception("[sqlrooms_nb] could not close room %s at exit", room.room_id)


_sigterm_hooked = False


def _connect_soon() -> Future[duckdb.DuckDBPyConnection]:
    """``duckdb.connect()`` (an in-memory database) on a new daemon thread; the future holds
    the connection (or the error DuckDB raised)."""
    future: Future[duckdb.DuckDBPyConnection] = Future()

    def connect() -> None:
        try:
            future.set_result(duckdb.connect())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=connect, name="sqlrooms_nb-connect", daemon=True).start()
    return future


def _flush_on_sigterm() -> None:
    """Make SIGTERM close open rooms (flush + snapshot) before the process ends.

    Hosts stop kernels with SIGTERM, and neither Python's default disposition nor marimo's
    kernel handler (``os._exit``) runs ``atexit``. So the rooms are closed first (at most
    :data:`SIGTERM_CLOSE_TIMEOUT_S` each), then the host's own handler runs, or the default
    one. Installed once, from the main thread only; an ignored SIGTERM stays ignored.
    """
    global _sigterm_hooked
    if _sigterm_hooked or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return

    def handler(signum: int, frame: Any) -> None:
        _close_open_rooms(SIGTERM_CLOSE_TIMEOUT_S)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    _sigterm_hooked = True
