"""Input cells seen from the kernel: value changes that re-run their readers, select options.

An input cell (kind ``input``, see :mod:`sqlrooms_nb.notebook`) is read by SQL cells as the
parameter ``$name``. After every edit of a branch the room asks :meth:`InputWatch.changed`,
which compares the inputs with what it saw last and asks for a re-run of the cells reading an
input whose value, type or name changed (or that was deleted). A select input's options are
its options query's first column, run on a cursor of the room's connection: kept per cell
(replayed to views that join) and refreshed off the comm thread when the query changes or a
cell it reads re-runs.

Threads: :meth:`changed` and :meth:`after_result` may run on any thread; option queries run on
one ``sqlrooms_nb-inputs`` thread; the room's edit lock is held only while reading the doc.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import duckdb

from . import deps
from . import notebook as nb
from . import protocol as p
from .replica import Broadcast, Replica

LOG = logging.getLogger("sqlrooms_nb")

Rerun = Callable[[str, list[str], p.ViewId | None], object]
"""``rerun(branch, parameter names, view)``: re-run the cells reading those inputs."""


class InputWatch:
    """The input cells of one room's branches (see the module docstring).

    Args:
        con: returns the room's DuckDB connection (options queries run on cursors of it;
            called only then, so the room may still be making it when this is built).
        lock: the room's edit lock (held while reading a document).
        broadcast: sends ``input_options`` messages to every view.
        rerun: asks the runner to re-run the readers of changed inputs.
    """

    def __init__(
        self,
        con: Callable[[], duckdb.DuckDBPyConnection],
        lock: threading.RLock,
        broadcast: Broadcast,
        rerun: Rerun,
    ) -> None:
        self._con = con
        self._lock = lock
        self._broadcast = broadcast
        self._rerun = rerun
        self._seen: dict[str, dict[str, tuple[str, nb.InputSpec]]] = {}
        self._options: dict[tuple[str, str], tuple[str, p.InputOptions]] = {}
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="sqlrooms_nb-inputs")

    def opened(self, replica: Replica) -> None:
        """A branch was opened: its inputs as recovered are the baseline, not a change."""
        inputs = nb.read_input_cells(replica.doc)
        self._seen[replica.branch] = {cid: (name, spec) for cid, name, spec in inputs}

    def changed(self, replica: Replica, view: p.ViewId | None) -> None:
        """After an edit of ``replica`` (a view's update, an API edit): re-run the cells that
        read an input whose value, type or name changed (or that was deleted), and refresh the
        options of select inputs whose options query changed (off the comm thread)."""
        with self._lock:
            now = {cid: (name, spec) for cid, name, spec in nb.read_input_cells(replica.doc)}
            before = self._seen.get(replica.branch)
            self._seen[replica.branch] = now
        if before is None or before == now:
            return
        names: set[str] = set()
        refresh: list[str] = []
        for cid, (name, spec) in now.items():
            old_name, old = before.get(cid, (name, None))
            if old is not None and (old.value, old.type, old_name) != (spec.value, spec.type, name):
                names |= {name, old_name}
            was = None if old is None else (old.type, old.options_sql)
            if spec.type == "select" and was != ("select", spec.options_sql):
                refresh.append(cid)
        for cid in before.keys() - now.keys():
            names.add(before[cid][0])
            self._options.pop((replica.branch, cid), None)
        names.discard("")
        if names:
            self._rerun(replica.branch, sorted(names), view)
        if refresh:
            self._reads.submit(self._refresh, replica, refresh)

    def after_result(self, replica: Replica, result: p.Result) -> None:
        """A cell produced ``result``: refresh the select inputs whose options query reads it."""
        with self._lock:
            inputs = nb.read_input_cells(replica.doc)
        name = result.name.lower()
        readers = [
            cid
            for cid, _, spec in inputs
            if spec.type == "select"
            and any(r.name.lower() == name for r in deps.table_refs(spec.options_sql))
        ]
        if readers:
            self._reads.submit(self._refresh, replica, readers)

    def options_for(self, replica: Replica) -> list[p.InputOptions]:
        """The options of every select input of ``replica`` (for a view that joins): kept
        ones, or computed now (an options query is meant to be quick)."""
        with self._lock:
            inputs = nb.read_input_cells(replica.doc)
        out: list[p.InputOptions] = []
        for cid, _, spec in inputs:
            if spec.type != "select":
                continue
            kept = self._options.get((replica.branch, cid))
            if kept is not None and kept[0] == spec.options_sql:
                out.append(kept[1])
            else:
                out.append(self._options_of(replica.branch, cid, spec.options_sql))
        return out

    def close(self) -> None:
        """Stop the options thread (queued refreshes are dropped)."""
        self._reads.shutdown(wait=False, cancel_futures=True)

    def _refresh(self, replica: Replica, cells: Sequence[str]) -> None:
        """Run the options queries of select inputs ``cells`` and broadcast their options
        (on the ``sqlrooms_nb-inputs`` thread)."""
        try:
            with self._lock:
                specs = {cid: spec for cid, _, spec in nb.read_input_cells(replica.doc)}
            out = [
                self._options_of(replica.branch, cid, specs[cid].options_sql)
                for cid in cells
                if cid in specs and specs[cid].type == "select"
            ]
            self._broadcast(out)
        except Exception:
            LOG.exception("[sqlrooms_nb] could not refresh input options")

    def _options_of(self, branch: str, cell: str, sql: str) -> p.InputOptions:
        """Run a select input's options query on a cursor: the first column's non-null values
        as strings (at most ``MAX_INPUT_OPTIONS``), or the error. Kept for joining views."""
        options: tuple[str, ...] = ()
        error: str | None = None
        if sql.strip():
            cur = self._con().cursor()
            try:
                cur.execute(sql)
                if cur.description is None:
                    error = "the options query returned no rows: use a SELECT"
                else:
                    rows = cur.fetchmany(p.MAX_INPUT_OPTIONS)
                    options = tuple(str(r[0]) for r in rows if r and r[0] is not None)
            except duckdb.Error as exc:
                error = str(exc).split("\n\nLINE ")[0]
            finally:
                cur.close()
        message = p.InputOptions(cell=cell, branch=branch, options=options, error=error)
        self._options[(branch, cell)] = (sql, message)
        return message
