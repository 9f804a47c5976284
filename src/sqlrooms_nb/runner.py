"""Running SQL cells for a room: one worker thread, a queue, cascades, cancel, progress, staleness.

A :class:`Runner` belongs to one :class:`~sqlrooms_nb.room.SqlRoom`. Runs never happen on the
comm thread (so the widget keeps syncing while a query runs) and never hold the room's edit
lock while SQL runs: the worker reads the cells it needs through ``read_cells`` (which takes
the lock briefly), then runs them.

- **Jobs.** ``run`` (one cell; with ``cascade`` the cells that read it follow, and upstream
  cells that never ran successfully here come first) and ``run_all`` are queued as jobs and run
  one at a time, in submission order. The job's cells are ordered when it starts, from the
  dependency graph of the cells as they are then (:mod:`sqlrooms_nb.deps`): upstream first.
  A cell in a cycle gets a per-cell ``error`` naming the cycle; cells downstream of a failed,
  cycled or cancelled cell are not run in that job (they show as stale).
- **One run at a time per cell.** A run of a cell already waiting in the queue is ignored
  (``queued`` is broadcast again); a run of the running cell is queued behind it.
- **Cancel** interrupts the running cursor (``interrupt()``), or drops a queued job; the cell
  ends as ``cancelled`` (not an error) and the rest of its job is dropped.
- **Progress.** While a cell runs, a poller thread broadcasts ``run_progress`` every
  :data:`PROGRESS_INTERVAL_S` with the elapsed time and DuckDB's ``query_progress()``.
- **Results.** Each cell's query runs once into :func:`~sqlrooms_nb.query.result_relation`;
  its name becomes a VIEW, or a TABLE when the run took at least
  :data:`~sqlrooms_nb.query.TABLE_AFTER_MS` and other cells read it.
- **Parameters.** A cell's ``$name`` parameters (:func:`~sqlrooms_nb.deps.parameter_names`)
  are bound from the input cells named ``name`` (``read_inputs``) when the cell runs; a name
  no input cell has is a per-cell ``error``. :meth:`Runner.run_inputs` re-runs the cells that
  read changed inputs, with their cascade (the room calls it when an input's value changes).
- **Staleness.** A cell is stale when its text or name changed since its last successful run,
  or a cell it reads re-ran after it, or is itself stale, or an input it reads changed
  (:meth:`Runner.stale`).
- **Run log.** Every run ends with one :class:`~sqlrooms_nb.store.runs.RunRecord`, handed to
  ``log`` (the room queues it for the lake's ``runs`` table; never waited for).

Threads: :meth:`submit` / :meth:`cancel` / :meth:`stale` from any thread; runs on the worker
thread ``sqlrooms_nb-runner``; callbacks (``broadcast``, ``on_outcome``, ``log``) are called
from the worker and poller threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from . import deps, query
from . import notebook as nb
from . import protocol as p
from .errors import CancelledError, QueryError, SqlRoomsError, ValidationError
from .store.runs import RunRecord, sql_hash

LOG = logging.getLogger("sqlrooms_nb")

PROGRESS_INTERVAL_S = 0.25
"""How often a running cell's progress is broadcast, seconds."""


@dataclass
class Job:
    """A queued request: run ``cells`` (with their cascade) of ``branch``.

    ``future``, when set, receives the full result table of ``cells[0]`` (or its exception);
    ``run_all`` runs every SQL cell of the branch. ``outcomes`` collects what each cell run by
    the job ended with (``None``: cancelled), in run order; ``done``, when set, is set once the
    job has ended (ran, failed or was dropped).
    """

    branch: str
    cells: list[str]
    request: p.RequestId | None
    view: p.ViewId | None
    author: str
    cascade: bool = True
    run_all: bool = False
    future: Future[pa.Table] | None = None
    cancelled: bool = False
    remaining: list[str] = field(default_factory=list)
    outcomes: dict[str, p.Result | p.Error | None] = field(default_factory=dict)
    done: threading.Event | None = None


@dataclass(frozen=True)
class _Ok:
    """A cell's last successful run: its text and name then, when (a tick), and the tick of
    each cell it read at that moment; ``params``: the parameter values it was run with."""

    source: str
    name: str
    tick: int
    upstream: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)


class Runner:
    """The run queue and worker of one room (see the module docstring).

    Args:
        con: the DuckDB connection cells run on (each run uses its own cursor).
        room: room id (for the run log).
        read_cells: ``branch -> cells`` in notebook order (takes the room's lock briefly).
        broadcast: sends server messages to every view.
        on_outcome: ``(branch, cell, result or error)``: the room records the latest outcome.
        log: receives one record per finished run.
        on_job_done: called with each job once it has ended (on the worker thread).
        read_inputs: ``branch -> {parameter name: input spec}`` (takes the room's lock
            briefly); ``None``: the notebook has no inputs, and ``$name`` parameters fail.
        before_run: called with a cell's SQL on the worker thread just before it runs (the
            room waits there for its history views, made in the background, when the SQL
            names them; see :mod:`.history_views`).
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        room: str,
        *,
        read_cells: Callable[[str], list[nb.Cell]],
        broadcast: Callable[[Sequence[p.ServerMessage]], None],
        on_outcome: Callable[[str, str, p.Result | p.Error], None],
        log: Callable[[RunRecord], None],
        on_job_done: Callable[[Job], None] | None = None,
        read_inputs: Callable[[str], Mapping[str, nb.InputSpec]] | None = None,
        before_run: Callable[[str], None] | None = None,
    ) -> None:
        self._con = con
        self._before_run = before_run
        self._room = room
        self._read_cells = read_cells
        self._broadcast = broadcast
        self._on_outcome = on_outcome
        self._log = log
        self._on_job_done = on_job_done
        self._read_inputs = read_inputs
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._current: Job | None = None
        self._running: tuple[str, str] | None = None  # (branch, cell)
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        self._tick = 0
        self._ok: dict[str, dict[str, _Ok]] = {}  # branch -> cell -> last successful run
        self._stale_sent: dict[str, tuple[str, ...]] = {}
        self._thread = threading.Thread(target=self._loop, name="sqlrooms_nb-runner", daemon=True)
        self._thread.start()

    # --- requests ------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job``; broadcasts ``queued`` when it has to wait. A view's run of a cell
        that is already waiting is dropped (``queued`` is sent again)."""
        with self._cond:
            if self._closed:
                raise SqlRoomsError("the room is closed")
            waiting = self._current is not None or bool(self._jobs)
            if job.future is None and not job.run_all:
                for other in self._jobs:
                    if other.branch == job.branch and other.cells == job.cells:
                        self._broadcast(_queued(job))
                        return
            self._jobs.append(job)
            self._cond.notify()
        if waiting:
            self._broadcast(_queued(job))

    def run_inputs(
        self, branch: str, names: Sequence[str], author: str, view: p.ViewId | None = None
    ) -> list[str]:
        """Queue a run of the SQL cells of ``branch`` that read any of the parameters
        ``names`` (an input's value changed), with their cascade. Returns their ids (notebook
        order); nothing is queued when no cell reads them."""
        wanted = set(names)
        cells: list[str] = [
            c.id
            for c in self._read_cells(branch)
            if c.kind == "sql" and wanted & set(deps.parameter_names(c.source))
        ]
        if cells:
            self.submit(Job(branch, cells, None, view, author))
        return cells

    def cancel(self, branch: str, cell: str, request: p.RequestId | None) -> None:
        """Cancel ``cell``'s run: interrupt it if it runs, drop it if it waits (with the rest
        of its job). Broadcasts ``cancelled`` for a dropped job; an interrupted run broadcasts
        it when it ends. Nothing happens when the cell is neither running nor queued."""
        dropped: list[Job] = []
        with self._cond:
            if self._running == (branch, cell) and self._current is not None:
                self._current.cancelled = True
                if self._cursor is not None:
                    try:
                        self._cursor.interrupt()
                    except duckdb.Error:
                        LOG.exception("[sqlrooms_nb] could not interrupt a run")
                return
            current = self._current
            if current is not None and current.branch == branch and cell in current.remaining:
                current.remaining.remove(cell)
                dropped.append(Job(branch, [cell], request, None, ""))
            for job in list(self._jobs):
                if job.branch == branch and cell in job.cells:
                    self._jobs.remove(job)
                    dropped.append(job)
        for job in dropped:
            self._broadcast([p.Cancelled(id=job.request, cell=cell, branch=branch, elapsed_ms=0.0)])
            if job.future is not None:
                job.future.set_exception(CancelledError("the run was cancelled before it began"))
            if job.done is not None:
                job.done.set()

    def wait_idle(self, timeout: float | None = 30) -> bool:
        """Block until nothing runs or waits (``False`` when ``timeout`` seconds passed)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._current is None and not self._jobs, timeout=timeout
            )

    def close(self, timeout: float | None = 10) -> None:
        """Drop queued jobs, interrupt the running one and stop the worker."""
        with self._cond:
            self._closed = True
            for job in self._jobs:
                if job.future is not None:
                    job.future.set_exception(CancelledError("the room was closed"))
                if job.done is not None:
                    job.done.set()
            self._jobs.clear()
            if self._cursor is not None:
                try:
                    self._cursor.interrupt()
                except duckdb.Error:
                    pass
            self._cond.notify_all()
        self._thread.join(timeout)

    # --- staleness -----------------------------------------------------------------------------

    def stale(self, branch: str, cells: Sequence[nb.Cell] | None = None) -> tuple[str, ...]:
        """Ids of the stale cells of ``branch`` (notebook order), from ``cells`` (``None``:
        read them) and the runs recorded here."""
        ok = self._ok.get(branch)
        if not ok:
            return ()
        cells = self._read_cells(branch) if cells is None else cells
        sql = [c for c in cells if c.kind == "sql"]
        graph = deps.build_graph([deps.CellSql(c.id, c.name, c.source) for c in sql])
        by_id: dict[str, nb.Cell] = {c.id: c for c in sql}
        memo: dict[str, bool] = {}
        inputs: Mapping[str, nb.InputSpec] = {}
        if self._read_inputs is not None and any(r.params for r in ok.values()):
            inputs = self._read_inputs(branch)

        def is_stale(cid: str, seen: frozenset[str]) -> bool:
            if cid in memo:
                return memo[cid]
            record = ok.get(cid)
            cell = by_id.get(cid)
            if record is None or cell is None or cid in seen:
                return False
            result: bool = record.source != cell.source or record.name != cell.name
            for name, value in record.params.items():
                spec = inputs.get(name)
                result = result or spec is None or spec.value != value
            for up in graph.upstream.get(cid, set()):
                if result:
                    break
                up_record = ok.get(up)
                if up_record is None:
                    continue  # never ran here (or failed): nothing newer to be behind
                if up_record.tick > record.upstream.get(up, -1):
                    result = True
                elif is_stale(up, seen | {cid}):
                    result = True
            memo[cid] = result
            return result

        return tuple(c.id for c in sql if is_stale(c.id, frozenset()))

    def stale_message(self, branch: str, *, force: bool = False) -> list[p.ServerMessage]:
        """A ``stale`` message for ``branch`` if its set changed since the last one sent (or
        ``force``), else nothing."""
        try:
            cells = self.stale(branch)
        except SqlRoomsError:
            return []
        if not force and self._stale_sent.get(branch, ()) == cells:
            return []
        self._stale_sent[branch] = cells
        if not force and not cells and branch not in self._ok:
            return []
        return [p.Stale(branch=branch, cells=cells)]

    # --- worker --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._current = self._jobs.pop(0)
            try:
                self._run_job(job)
            except BaseException as exc:  # a bug must not stop the worker
                LOG.exception("[sqlrooms_nb] a run failed unexpectedly")
                if job.future is not None and not job.future.done():
                    job.future.set_exception(exc)
            finally:
                self._broadcast(self.stale_message(job.branch))
                if self._on_job_done is not None:
                    try:
                        self._on_job_done(job)
                    except Exception:
                        LOG.exception("[sqlrooms_nb] a job-done callback failed")
                with self._cond:
                    self._current = None
                    self._running = None
                    self._cond.notify_all()
                if job.future is not None and not job.future.done():
                    job.future.set_exception(
                        QueryError("the cell did not run: a cell it reads failed or was cancelled")
                    )
                if job.done is not None:
                    job.done.set()

    def _plan(self, job: Job, cells: list[nb.Cell]) -> tuple[list[str], deps.Graph]:
        sql = [c for c in cells if c.kind == "sql"]
        graph = deps.build_graph([deps.CellSql(c.id, c.name, c.source) for c in sql])
        known: set[str] = {c.id for c in sql}
        if job.run_all:
            wanted = set(known)
        else:
            wanted = {c for c in job.cells if c in known}
            ok = self._ok.get(job.branch, {})
            for cell in list(wanted):
                wanted |= {a for a in graph.ancestors(cell) if a not in ok and a != cell}
                if job.cascade:
                    wanted |= graph.descendants(cell)
        return graph.topological(wanted), graph

    def _run_job(self, job: Job) -> None:
        cells = self._read_cells(job.branch)
        order, graph = self._plan(job, cells)
        job.remaining = list(order)
        by_id: dict[str, nb.Cell] = {c.id: c for c in cells}
        skipped: set[str] = set()
        cycles = graph.cycles()
        while job.remaining and not job.cancelled:
            cid = job.remaining.pop(0)
            if skipped & graph.upstream.get(cid, set()):
                skipped.add(cid)
                continue
            cell = by_id[cid]
            wants_table = job.future is not None and cid == job.cells[0]
            ok = self._run_cell(job, cell, cells, graph, cid in cycles, wants_table)
            if not ok:
                skipped.add(cid)
            if cid != order[-1]:
                self._broadcast(self.stale_message(job.branch))

    def _run_cell(
        self,
        job: Job,
        cell: nb.Cell,
        cells: list[nb.Cell],
        graph: deps.Graph,
        in_cycle: bool,
        full: bool,
    ) -> bool:
        branch = job.branch
        started_at = datetime.now(timezone.utc)
        started = time.perf_counter()
        self._broadcast([p.RunStarted(id=job.request, cell=cell.id, view=job.view, branch=branch)])
        stop = threading.Event()
        with self._cond:
            self._running = (branch, cell.id)
        poller = threading.Thread(
            target=self._poll, args=(branch, cell.id, started, stop), daemon=True
        )

        def on_cursor(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("SET enable_progress_bar = true")
            cur.execute("SET enable_progress_bar_print = false")
            with self._cond:
                self._cursor = cur
                cancelled = job.cancelled
            if cancelled:
                raise CancelledError("the run was cancelled")
            poller.start()

        def log(status: str, duration_ms: float, rows: int | None, error: str | None) -> None:
            self._log(
                RunRecord(
                    self._room,
                    branch,
                    cell.id,
                    cell.name,
                    sql_hash(cell.source),
                    job.author,
                    started_at,
                    duration_ms,
                    rows,
                    status,
                    error,
                )
            )

        try:
            if in_cycle:
                names: dict[str, str] = {c.id: c.name for c in cells}
                loop = [names[c] for c in graph.cycle_of(cell.id)]
                raise QueryError(
                    "this cell is part of a dependency cycle ("
                    + " -> ".join([*loop, loop[0]])
                    + "): a cell cannot read its own result, directly or through other cells"
                )
            if any(c.name == cell.name and c.id != cell.id for c in cells if c.kind == "sql"):
                raise ValidationError(
                    f"another cell is also named {cell.name!r}: rename one of them so each "
                    "result has its own view name"
                )
            params = self._params(branch, cell)
            if self._before_run is not None:
                self._before_run(cell.source)
            result = query.run_cell(
                self._con,
                cell.name,
                cell.source,
                relation=query.result_relation(branch, cell.id),
                table_after_ms=query.TABLE_AFTER_MS if graph.downstream.get(cell.id) else None,
                on_cursor=on_cursor,
                preview_rows=None if full else query.PREVIEW_ROWS,
                params=params,
            )
        except CancelledError as exc:
            elapsed = _ms(started)
            self._finish(stop, poller)
            job.cancelled = True
            job.outcomes[cell.id] = None
            self._broadcast(
                [p.Cancelled(id=job.request, cell=cell.id, branch=branch, elapsed_ms=elapsed)]
            )
            log("cancelled", elapsed, None, None)
            if full and job.future is not None:
                job.future.set_exception(exc)
            return False
        except SqlRoomsError as exc:
            elapsed = _ms(started)
            self._finish(stop, poller)
            error = p.Error(
                code=exc.code,
                message=str(exc),
                id=job.request,
                cell=cell.id,
                line=exc.line if isinstance(exc, QueryError) else None,
                column=exc.column if isinstance(exc, QueryError) else None,
                branch=branch,
            )
            self._ok.get(branch, {}).pop(cell.id, None)
            job.outcomes[cell.id] = error
            self._on_outcome(branch, cell.id, error)
            self._broadcast([error])
            log("error", elapsed, None, str(exc))
            if full and job.future is not None:
                job.future.set_exception(exc)
            return False
        self._finish(stop, poller)
        self._tick += 1
        ok = self._ok.setdefault(branch, {})
        ok[cell.id] = _Ok(
            cell.source,
            cell.name,
            self._tick,
            {u: ok[u].tick for u in graph.upstream.get(cell.id, set()) if u in ok},
            dict(params),
        )
        message = p.Result(
            id=job.request,
            cell=cell.id,
            name=cell.name,
            rows=result.rows,
            columns=tuple(p.Column(name, type_) for name, type_ in result.columns),
            shown=min(result.rows, query.PREVIEW_ROWS),
            elapsed_ms=round(result.elapsed_ms, 2),
            arrow=query.to_ipc(result.table),
            branch=branch,
            author=job.author,
        )
        job.outcomes[cell.id] = message
        self._on_outcome(branch, cell.id, message)
        self._broadcast([message])
        log("ok", result.elapsed_ms, result.rows, None)
        if full and job.future is not None:
            job.future.set_result(result.table)
        return True

    def _params(self, branch: str, cell: nb.Cell) -> dict[str, Any]:
        """Values of the ``$name`` parameters ``cell`` uses, from the input cells (an unset
        value binds NULL). Raises :class:`QueryError` for a name no input cell has."""
        names = deps.parameter_names(cell.source)
        if not names:
            return {}
        inputs = self._read_inputs(branch) if self._read_inputs is not None else {}
        for name in names:
            if name not in inputs:
                raise QueryError(
                    f"no input cell named {name}: this cell reads the parameter ${name}; add an "
                    f"input cell named {name} (+ Input), or rename the parameter"
                )
        return {name: inputs[name].value for name in names}

    def _finish(self, stop: threading.Event, poller: threading.Thread) -> None:
        stop.set()
        with self._cond:
            self._cursor = None
            self._running = None
        if poller.is_alive():
            poller.join(1.0)

    def _poll(self, branch: str, cell: str, started: float, stop: threading.Event) -> None:
        """Broadcast ``run_progress`` every :data:`PROGRESS_INTERVAL_S` until ``stop``."""
        while not stop.wait(PROGRESS_INTERVAL_S):
            with self._cond:
                cur = self._cursor
            percent: float | None = None
            if cur is not None:
                try:
                    value = cur.query_progress()
                    percent = round(min(100.0, value), 1) if value >= 0 else None
                except duckdb.Error:
                    percent = None
            if stop.is_set():
                return
            self._broadcast(
                [p.RunProgress(cell=cell, branch=branch, elapsed_ms=_ms(started), percent=percent)]
            )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)


def _queued(job: Job) -> list[p.ServerMessage]:
    return [p.Queued(id=job.request, cell=c, branch=job.branch) for c in job.cells]
