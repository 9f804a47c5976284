"""SqlRoom: one collaborative notebook, its document, its views, its storage and its SQL.

The room is where the pieces meet, and the public Python API:

- the Loro document of the checked-out branch (:mod:`sqlrooms_nb.notebook` schema),
- the sync core (:class:`~sqlrooms_nb.sync.SyncHub`) answering browser views,
- the persister (:mod:`sqlrooms_nb.store`) writing the history to DuckLake,
- SQL execution (:mod:`sqlrooms_nb.query`) on the user's DuckDB connection.

One fan-out path: every change — typed in a view, made through this API, or made directly on
``room.doc`` — lands in the document first, then goes to every view and to the writer. Kernel
commits reach the fan-out through Loro's local-update subscription; imports from views through
the hub (Loro does not report imports as local updates).

Threads: public methods may be called from the notebook's main thread; comm messages arrive on
the kernel's comm thread; ``saved`` acks come from the writer thread. Sends to views are
serialised by a lock.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from loro import LoroDoc, VersionVector

from . import history as hist
from . import notebook as nb
from . import protocol as p
from . import query
from .errors import ClosedError, QueryError, SqlRoomsError, StorageError, ValidationError
from .history_views import create_history_views
from .presence import Presence
from .store import (
    FlushPolicy,
    Lake,
    Persister,
    SavedVersion,
    Tag,
    add_tag,
    list_tags,
    recover,
    saved_versions,
)
from .sync import SyncHub

if TYPE_CHECKING:
    from .widget import SqlRoomWidget

LOG = logging.getLogger("sqlrooms_nb")

_ROOM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

_open_rooms: weakref.WeakSet[SqlRoom] = weakref.WeakSet()

Deliver = Callable[[dict[str, Any], list[bytes]], None]
"""A transport to browser views: ``deliver(json_content, binary_buffers)``."""


def validate_room_id(room_id: str, what: str = "room id") -> str:
    """Return ``room_id`` if it is 1-128 of ``[A-Za-z0-9_.-]`` and not only dots.

    Raises :class:`ValidationError` otherwise (the id reaches SQL filters and could reach
    file names, so it is checked before anything else happens).
    """
    if not isinstance(room_id, str) or not _ROOM_ID.match(room_id) or set(room_id) == {"."}:
        raise ValidationError(
            f"{what} {room_id!r} is not valid: use 1-128 letters, digits, '_', '.' or '-' "
            "(e.g. 'sales-review')"
        )
    return room_id


class SqlRoom:
    """A collaborative SQL notebook stored in a DuckLake.

    Args:
        room_id: the notebook's id in the lake, ``[A-Za-z0-9_.-]{1,128}``.
        lake: where the lake lives: a folder path for the embedded default (SQLite catalog +
            data folder inside it). ``None`` means ``$SQLROOMS_NB_LAKE`` or ``.sqlrooms``.
        connection: DuckDB connection SQL cells run on (their results become views in it).
            ``None`` gives the room its own in-memory database.
        branch: the branch to open (only ``"main"`` exists until branches are created).
        author: display name recorded on this kernel's changes and offered to views.
        flush_policy: when the writer flushes (see :class:`~sqlrooms_nb.store.FlushPolicy`).

    On construction the room recovers the branch from the lake (latest snapshot + later
    updates). Displaying the room (last expression of a marimo or Jupyter cell) shows the
    widget; ``room.widget`` is the anywidget itself. ``close()`` (or leaving a ``with`` block,
    or interpreter exit) flushes everything and writes a snapshot.

    Raises :class:`ValidationError` for a bad id, :class:`StorageError` /
    :class:`~sqlrooms_nb.errors.RecoveryError` when the lake cannot be opened or read.
    """

    def __init__(
        self,
        room_id: str,
        *,
        lake: str | Any | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
        branch: str = "main",
        author: str | None = None,
        flush_policy: FlushPolicy | None = None,
    ) -> None:
        self.room_id = validate_room_id(room_id)
        self.branch = validate_room_id(branch, "branch name")
        self.author = author or ""
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._closed = False
        self._widget: SqlRoomWidget | None = None
        self._transports: list[Deliver] = []
        self._results: dict[str, p.Result | p.Error] = {}
        self._change_stats: dict[tuple[int, int, int], hist.ChangeStats] = {}
        self._con = connection if connection is not None else duckdb.connect()
        self._lake = Lake.open(lake)
        # The collaboration as data for SQL cells (sqlrooms_history.*); optional, never fatal.
        create_history_views(self._con, self._lake, self.room_id, self.branch)
        # Re-running the notebook cell that opens a room must not leave two writers on it in
        # one kernel: the earlier object is closed (flushed) before this one recovers.
        for other in list(_open_rooms):
            if (other.room_id, other.branch, other._lake.location) == (
                self.room_id,
                self.branch,
                self._lake.location,
            ):
                LOG.info("[sqlrooms_nb] closing the earlier SqlRoom(%r) of this kernel", room_id)
                other.close()
        try:
            self._doc = nb.new_doc()
            last_seq = recover(self._lake, self.room_id, self.branch, self._doc)
            self._persister = Persister(
                self._lake,
                self.room_id,
                self.branch,
                self._doc,
                writer=str(self._doc.peer_id),
                start_seq=last_seq,
                policy=flush_policy or FlushPolicy(),
                on_saved=self._on_saved,
                on_error=self._on_storage_error,
                # exporting commits an open transaction: wait briefly for API edits to finish
                doc_lock=self._lock,
                author=self.author,
            )
        except BaseException:
            self._lake.release()
            raise
        self._presence = Presence()  # who is here: relayed to views, never persisted
        self._hub = SyncHub(
            self._doc,
            self.room_id,
            self.branch,
            saved_version=lambda: self._persister.saved_version,
            on_imported=self._on_imported,
        )
        # Kernel-made commits (this API or direct edits on room.doc) enter the fan-out here.
        self._local_updates = self._doc.subscribe_local_update(self._on_local_update)
        if nb.ensure_schema(self._doc, title=self.room_id):
            self._commit()
        _open_rooms.add(self)
        _flush_on_sigterm()

    # --- document API ------------------------------------------------------------------------

    @property
    def doc(self) -> LoroDoc:
        """The kernel's Loro document of the current branch.

        Edits made on it directly (then ``doc.commit()``) reach every view and the lake.
        """
        return self._doc

    @property
    def cells(self) -> list[nb.Cell]:
        """All cells in display order, as plain :class:`~sqlrooms_nb.notebook.Cell` values."""
        return nb.read_cells(self._doc)

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
        with self._editing():
            return nb.add_cell(self._doc, source, name=name, kind=kind, index=index)

    def update_cell(
        self, cell_id: str, *, source: str | None = None, name: str | None = None
    ) -> None:
        """Change a cell's source and/or name (``None`` leaves it unchanged).

        The source is changed by a text diff, so concurrent edits elsewhere in it survive.
        Raises :class:`~sqlrooms_nb.errors.CellNotFoundError`, :class:`ValidationError`.
        """
        with self._editing():
            nb.update_cell(self._doc, cell_id, source=source, name=name)

    def move_cell(self, cell_id: str, index: int) -> None:
        """Move a cell to 0-based position ``index``. Raises ``CellNotFoundError``."""
        with self._editing():
            nb.move_cell(self._doc, cell_id, index)

    def delete_cell(self, cell_id: str) -> None:
        """Delete a cell. Raises :class:`~sqlrooms_nb.errors.CellNotFoundError`."""
        with self._editing():
            nb.delete_cell(self._doc, cell_id)
            self._results.pop(cell_id, None)

    # --- SQL -----------------------------------------------------------------------------------

    def run(self, cell_id: str) -> pa.Table:
        """Run a SQL cell and return its full result as a ``pyarrow.Table``.

        The result becomes a view named after the cell, and every view shows it. Raises
        :class:`~sqlrooms_nb.errors.QueryError` (0-based ``line``/``column``) if DuckDB fails,
        ``CellNotFoundError``, or :class:`ValidationError` for a non-SQL cell.
        """
        return self._run(cell_id, request=None, view=None)

    def _run(self, cell_id: str, *, request: p.RequestId | None, view: p.ViewId | None) -> pa.Table:
        self._check_open()
        nb.find_cell(self._doc, cell_id)  # raises CellNotFoundError
        cell = next(c for c in nb.read_cells(self._doc) if c.id == cell_id)
        if cell.kind != "sql":
            raise ValidationError(f"cell {cell_id!r} is a {cell.kind} cell; only SQL cells run")
        self._broadcast([p.RunStarted(id=request, cell=cell_id, view=view)])
        try:
            twins = [
                c.id for c in nb.read_cells(self._doc) if c.name == cell.name and c.id != cell_id
            ]
            if twins:  # e.g. two views added a cell at once and both picked the next free qN
                raise ValidationError(
                    f"another cell is also named {cell.name!r}: rename one of them so each "
                    "result has its own view name"
                )
            result = query.run_cell(self._con, cell.name, cell.source)
        except QueryError as exc:
            error = p.Error(
                code=exc.code,
                message=str(exc),
                id=request,
                cell=cell_id,
                line=exc.line,
                column=exc.column,
            )
            self._results[cell_id] = error
            self._broadcast([error])
            raise
        except SqlRoomsError as exc:
            error = p.Error(code=exc.code, message=str(exc), id=request, cell=cell_id)
            self._results[cell_id] = error
            self._broadcast([error])
            raise
        message = p.Result(
            id=request,
            cell=cell_id,
            name=cell.name,
            rows=result.table.num_rows,
            columns=tuple(p.Column(name, type_) for name, type_ in result.columns),
            shown=min(result.table.num_rows, query.PREVIEW_ROWS),
            elapsed_ms=round(result.elapsed_ms, 2),
            arrow=query.to_ipc(result.table),
        )
        self._results[cell_id] = message
        self._broadcast([message])
        return result.table

    # --- history -----------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The id of the current version (see :mod:`sqlrooms_nb.history`)."""
        self._doc.commit()
        return hist.current_version(self._doc)

    def history(
        self,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        idle_gap_s: float = hist.IDLE_GAP_S,
    ) -> list[hist.Version]:
        """Edit sessions, newest first, as :class:`~sqlrooms_nb.history.Version` values.

        A session is consecutive changes by one author with pauses of at most ``idle_gap_s``
        seconds. ``limit`` caps how many are returned; ``since`` (aware datetime) keeps those
        that ended at or after it. Per-change statistics are computed once and cached.
        """
        self._doc.commit()
        cell_of = hist.container_cells(self._doc)

        def stats(change: hist.Change) -> hist.ChangeStats:
            key = (change.peer, change.counter_start, change.counter_end)
            found = self._change_stats.get(key)
            if found is None:
                found = hist.change_stats(self._doc, change, cell_of)
                self._change_stats[key] = found
            return found

        return hist.sessions(
            self._doc,
            stats,
            idle_gap_s=idle_gap_s,
            limit=limit,
            since=since,
            own_author=self.author,
        )

    def at(self, version: str | hist.Version) -> list[nb.Cell]:
        """The cells as they were at ``version`` (read-only; the live document is untouched).

        Raises :class:`ValidationError` for an id that is not a version of this document.
        """
        return hist.cells_at(self._doc, hist.parse_version(self._doc, version))

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
        frontiers = hist.parse_version(self._doc, version)
        vid = version.id if isinstance(version, hist.Version) else version
        who = author or self.author or "python"
        with self._editing():
            self._commit()  # the restore must be a change of its own
            hist.restore(self._doc, frontiers)
            self._doc.set_next_commit_message(nb.change_message(who, f"restored version {vid}"))
            self._doc.commit()
        return self.version

    def saved_versions(self) -> list[SavedVersion]:
        """DuckLake's own timeline for this branch: the lake snapshots that saved its rows
        (what was saved when), newest first. Independent of the CRDT history, for audits."""
        self._check_open()
        return saved_versions(self._lake, self.room_id, self.branch)

    def at_saved(self, snapshot_id: int) -> list[nb.Cell]:
        """The cells as the lake held them at DuckLake snapshot ``snapshot_id`` (time travel).

        Recovered into a separate document; the room is untouched. Raises
        :class:`~sqlrooms_nb.errors.StorageError` for a snapshot the lake does not have.
        """
        self._check_open()
        doc = nb.new_doc()
        recover(
            self._lake, self.room_id, self.branch, doc, warm=False, at_snapshot=int(snapshot_id)
        )
        return nb.read_cells(doc)

    def tag(self, name: str, version: str | hist.Version | None = None) -> str:
        """Name a version (``None``: the current one) and return its id.

        Tag names follow the room-id rule (1-128 of ``[A-Za-z0-9_.-]``) and never move: a name
        already used on this branch raises :class:`ValidationError`.
        """
        validate_room_id(name, "tag name")
        if version is None:
            vid = self.version
        else:
            vid = version.id if isinstance(version, hist.Version) else version
            hist.parse_version(self._doc, vid)
        add_tag(self._lake, self.room_id, self.branch, name, vid, self.author)
        return vid

    def tags(self) -> list[Tag]:
        """Named versions of this branch, newest first (:class:`~sqlrooms_nb.store.Tag`)."""
        return list_tags(self._lake, self.room_id, self.branch)

    # --- storage -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 60) -> None:
        """Block until every change made so far is in the lake.

        Raises :class:`StorageError` if the lake could not be written (nothing is dropped:
        the writer keeps the changes and retries).
        """
        self._check_open()
        self._doc.commit()
        self._persister.flush(timeout)

    def close(self, timeout: float | None = 60) -> None:
        """Flush, write a snapshot, stop the writer and release the lake. Idempotent.

        Waits at most ``timeout`` seconds for the writer (``None``: no limit); raises
        :class:`StorageError` if the final flush failed (the writer keeps retrying meanwhile).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_rooms.discard(self)
        try:
            self._doc.commit()
            self._persister.close(timeout)
        finally:
            self._local_updates.unsubscribe()
            self._lake.release()

    def __enter__(self) -> SqlRoom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- views (comm) --------------------------------------------------------------------------

    @property
    def widget(self) -> SqlRoomWidget:
        """The anywidget showing this room (made on first use; display it any number of times)."""
        if self._widget is None:
            from .widget import SqlRoomWidget

            self._widget = SqlRoomWidget(
                room_id=self.room_id,
                branch=self.branch,
                author=self.author,
                on_message=self.receive,
            )
            self.connect(self._widget.deliver)
        return self._widget

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

    def receive(self, content: object, buffers: Sequence[p.Buffer] | None) -> None:
        """Entry point for one message from a view (called by the widget on the comm thread).

        Decodes, handles and sends the replies. Malformed input gets an ``error`` reply to
        that view and changes nothing; no exception escapes to the comm.
        """
        view = p.view_of(content)
        try:
            message = p.decode_client(content, buffers)
            replies = self.handle(message)
        except SqlRoomsError as exc:
            LOG.warning("[sqlrooms_nb] message from view %s refused: %s", view, exc)
            replies = [p.Error(code=exc.code, message=str(exc), to=view, id=_request_of(content))]
        except Exception as exc:  # a bug must not take the comm down
            LOG.exception("[sqlrooms_nb] failed to handle a message from view %s", view)
            replies = [
                p.Error(code="internal", message=repr(exc), to=view, id=_request_of(content))
            ]
        self._broadcast(replies)

    def handle(self, message: p.ClientMessage) -> list[p.ServerMessage]:
        """The pure core of :meth:`receive`: one decoded message in, messages to send out.

        Raises :class:`SqlRoomsError` subclasses for bad input (the caller replies with an
        ``error``). A failing SQL run is not an exception here: its ``error`` is broadcast.
        """
        if self._closed:
            raise ClosedError("this room was closed; re-run the cell that opens it")
        if isinstance(message, p.Hello):
            snapshot = self._presence.snapshot()
            presence = [p.ServerAwareness(origin=None, update=snapshot)] if snapshot else []
            return [*self._hub.handle(message), *presence, *self._results.values()]
        if isinstance(message, p.ClientAwareness):
            self._presence.apply(message.view, message.update)  # raises ProtocolError
            return [p.ServerAwareness(origin=message.view, update=message.update)]
        if isinstance(message, p.ClientUpdate):
            with self._lock:
                return self._hub.handle(message)
        if isinstance(message, p.Run):
            try:
                self._run(message.cell, request=message.id, view=message.view)
            except QueryError:
                pass  # already broadcast as the cell's error
            return []
        if isinstance(message, p.HistoryRequest):
            return [self._history_page(message)]
        if isinstance(message, p.PreviewRequest):
            return [self._preview(message)]
        if isinstance(message, p.RestoreRequest):
            current = self.restore(message.version, author=message.author or None)
            return [
                p.Restored(to=message.view, id=message.id, version=message.version, current=current)
            ]
        return [p.Pong(to=message.view, id=message.id)]

    def _history_page(self, message: p.HistoryRequest) -> p.History:
        """One page of :meth:`history` for a view (one session more tells whether more exist)."""
        end = message.offset + message.limit
        sessions = self.history(limit=end + 1)
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
        tags = tuple(p.TagInfo(name=t.name, version=t.version) for t in self.tags())
        return p.History(
            to=message.view,
            id=message.id,
            offset=message.offset,
            versions=versions,
            more=len(sessions) > end,
            tags=tags,
            current=self.version,
        )

    def _preview(self, message: p.PreviewRequest) -> p.Preview:
        """The cells at a version and their diff to now (read from a fork; raises
        :class:`ValidationError` for an unknown version)."""
        cells = self.at(message.version)
        diff = hist.diff_cells(cells, self.cells)
        return p.Preview(
            to=message.view,
            id=message.id,
            version=message.version,
            cells=tuple(p.PreviewCell(c.id, c.kind, c.name, c.source) for c in cells),
            diff=tuple(
                p.PreviewDiff(d.id, d.name, d.status, d.index_a, d.index_b, d.diff) for d in diff
            ),
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

    # --- fan-out callbacks ---------------------------------------------------------------------

    def _on_local_update(self, update: bytes) -> bool:
        """Loro local-update subscription: a kernel commit. Must return True and never raise."""
        try:
            self._persister.notify(1, len(update))
            self._broadcast([p.ServerUpdate(origin=None, updates=(bytes(update),))])
        except BaseException:
            LOG.exception("[sqlrooms_nb] could not fan out a kernel change")
        return True

    def _on_imported(self, changes: int, nbytes: int) -> None:
        self._persister.notify(max(changes, 1), nbytes)

    def _on_saved(self, version: VersionVector) -> None:
        self._broadcast([p.Saved(version=version.encode())])

    def _on_storage_error(self, error: StorageError) -> None:
        LOG.warning("[sqlrooms_nb] room %s: %s", self.room_id, error)
        self._broadcast([p.Error(code=error.code, message=str(error))])

    # --- helpers -------------------------------------------------------------------------------

    def _commit(self) -> None:
        """Commit this kernel's pending ops as one change stamped with the author's name.

        The name is set per commit rather than by a pre-commit hook: a Python pre-commit hook
        deadlocks against the writer thread (Loro calls it with its transaction lock held and
        the GIL released, while the writer holds the GIL waiting for that lock).
        """
        if self.author and self._doc.get_pending_txn_len():
            self._doc.set_next_commit_message(self.author)
        self._doc.commit()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(
                f"room {self.room_id!r} is closed; open a new SqlRoom to keep working"
            )

    def _editing(self) -> _Edit:
        self._check_open()
        return _Edit(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.cells)} cells"
        lake = str(self._lake.location)
        return f"SqlRoom({self.room_id!r}, branch={self.branch!r}, {state}, lake={lake!r})"


class _Edit:
    """Context for one API edit: holds the room lock and commits once at the end (one change)."""

    def __init__(self, room: SqlRoom) -> None:
        self._room = room

    def __enter__(self) -> None:
        self._room._lock.acquire()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._room._commit()
        finally:
            self._room._lock.release()


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
