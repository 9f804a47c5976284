"""Messages between browser views and the kernel, and their encoding (one place).

Transport: anywidget custom messages, ``model.send(content, callbacks, buffers)``. ``content``
is a JSON object with a ``kind``; binary payloads (Loro updates, version vectors, Arrow IPC)
travel in ``buffers``, never inside JSON. ``js/protocol.ts`` mirrors this module with the same
kind names; ``tests/test_protocol.py`` checks the two agree.

All kernel messages reach every view of the widget (a marimo tab pair or a notebook showing
the widget twice share one model), so a message meant for one view carries ``to`` = that
view's id and the others ignore it. Relayed updates carry ``origin`` = the sending view's id
(``None`` for kernel-made changes) so the sender can skip its own bytes.

Branches: a room has one document per branch, and each view shows and edits one of them.
Messages about a document carry ``branch`` (client messages may leave it out, meaning the
kernel's checked-out branch); views ignore server messages of branches they do not show.

View -> kernel ("client" messages)
----------------------------------
``hello``   {view, branch?}             buffers: [oplog version vector] (``VersionVector.encode``)
            The first thing a view sends, and again after any gap (or to switch branch, with
            an empty replica). The kernel answers ``welcome``, then ``branches``.
``update``  {view, branch?}             buffers: [update, ...]  one or more Loro update blobs
``run``     {view, id, cell, branch?, cascade?}  run a SQL cell; replies are broadcast
            (``queued`` if it waits behind another run, ``run_started``, ``run_progress``, then
            ``result``, ``error`` or ``cancelled``), echoing ``id``. With ``cascade`` (default
            true) the cells that read it re-run after it, in dependency order (and upstream cells
            that never ran run first). A run of a cell already queued is ignored (``queued`` is
            sent again); one of a running cell is queued behind it.
``cancel``  {view, id, cell, branch?}   cancel the cell's run: a running query is interrupted, a
            queued one dropped, and the rest of its cascade too; answered by ``cancelled``
            (nothing when the cell is neither running nor queued).
``run_all`` {view, id, branch?}         run every SQL cell of the branch in dependency order.
``ping``    {view, id}                  liveness; answered by ``pong``.
``awareness`` {view}                    buffers: [one Loro ``EphemeralStore`` encoded update]
            the view's presence (name, colour, selection); it may only touch the view's own
            entry. Relayed to every view; never persisted.
``history`` {view, id, offset?, limit?, branch?}  edit sessions newest first, skipping
            ``offset`` (int >= 0, default 0) and returning at most ``limit`` (1-200, default
            50); answered by ``history``.
``preview`` {view, id, version, branch?} the cells at ``version`` and their diff against the
            current state; answered by ``preview`` (the live document is untouched).
``restore`` {view, id, version, author?, branch?}  make ``version`` current as a new change
            (the change's message notes the restore, by ``author``, at most 64 characters);
            the change reaches every view as an ``update``; answered by ``restored``.
``branch``  {view, id, name, source?, at?, author?}  create branch ``name`` from ``source``
            (default: the kernel's checked-out branch) at version ``at`` (default: its current
            version); answered by ``branch_created``, then ``branches`` to everyone.
``merge``   {view, id, source, into, preview}  merge branch ``source`` into ``into``
            (a CRDT import of the changes ``into`` lacks). With ``preview`` true nothing
            changes and the answer is ``merge_preview``; otherwise the merged changes reach
            ``into``'s views as an ``update`` and the answer is ``merged``.
``chart_data`` {view, id, cell, branch?}  the data of chart cell ``cell`` as the kernel's
            replica of the document specifies it (send pending updates first); answered by
            ``chart_data``, or by ``error`` {to, id} when the spec is incomplete or the plotted
            result cannot be read.
``page``    {view, id, cell, offset, limit, sort?, branch?}  rows ``offset`` (0-based, >= 0) to
            ``offset + limit - 1`` (``limit`` 1-5000) of cell ``cell``'s last result, sorted by
            ``sort`` (``[{column, desc}]``, most significant first, nulls last; absent or empty:
            the result's own order); answered by ``page``.
``export``  {view, id, cell, format, sort?, branch?}  the whole of cell ``cell``'s last result
            as a ``"csv"`` or ``"parquet"`` file (same ``sort``); answered by ``export``.

Kernel -> views ("server" messages)
-----------------------------------
``welcome`` {to, room, branch, protocol} buffers: [updates the view lacks, kernel oplog version
            vector, saved version vector]. The view imports buffer 0, then sends an ``update``
            with whatever it has beyond the kernel's version vector (if anything).
``update``  {origin, branch}            buffers: [update, ...]  every update the kernel imported
            or made, re-broadcast to all views.
``saved``   {branch, lake?, kept?, unkept?}  buffers: [version vector]  everything up to this
            version is durable in the lake. ``lake: "unreachable"`` (absent otherwise) says the
            lake cannot be written now: ``kept`` changes beyond the version are fsynced in the
            kernel's spill file, ``unkept`` are in its memory only; written when the lake is
            back (a ``saved`` without ``lake`` follows).
``run_started`` {id, cell, view, branch}  a run began (``view`` = who asked, ``None`` for Python).
``run_progress`` {cell, branch, elapsed_ms, percent}  a running cell, every ~250 ms: elapsed wall
            time (ms) and DuckDB's query progress (0-100, ``None`` when DuckDB cannot tell).
``cancelled`` {id, cell, branch, elapsed_ms}  the run ended because it was cancelled (not an error).
``queued``  {id, cell, branch}          the run waits behind another run.
``stale``   {branch, cells}             the full current set of stale cells of the branch (ids):
            their text changed since their last successful run, or a cell they read re-ran or
            went stale after it. Sent after runs and edits that change it, and after ``welcome``.
``result``  {id, cell, name, rows, columns, shown, elapsed_ms, branch, author}  buffers: [Arrow
            IPC stream of the first ``shown`` rows]. ``rows`` is the total row count, ``columns``
            a list of ``{"name", "type"}`` (DuckDB type names), ``author`` who ran it ("" if
            unknown).
``error``   {to?, id?, cell?, branch?, code, message, line?, column?}  a tagged error (see
            :mod:`sqlrooms_nb.errors`); ``line``/``column`` are 0-based.
``pong``    {to, id}
``awareness`` {origin}                  buffers: [``EphemeralStore`` encoded update]. A view's
            presence relayed (``origin`` = that view), or, with ``origin`` ``None``, everyone's
            current presence right after a ``welcome``.
``history`` {to, id, offset, versions, more, tags, current}  ``versions``: a list of
            ``{id, time, start, author, summary, cells, added, removed, changes}`` (times ISO
            8601 UTC; ``added``/``removed`` in code points); ``more``: older sessions exist;
            ``tags``: ``[{name, version}]``; ``current``: the current version id.
``preview`` {to, id, version, cells, diff}  ``cells``: ``[{id, kind, name, source}]`` at that
            version; ``diff``: ``[{id, name, status, index_a, index_b, diff}]`` from that version
            to the current state (0-based indexes, ``None`` where absent; ``diff`` unified).
``restored`` {to, id, version, current}  the restore of ``version`` is committed; ``current`` is
            the new current version id.
``branches`` {branches, current}       every branch of the room: ``[{name, parent, fork_version,
            created_by, created_at, merged_into, merged_at}]`` (times ISO 8601 UTC or ``None``),
            ``main`` first; ``current`` is the kernel's checked-out branch. Sent after each
            ``welcome`` and to everyone whenever the list changes.
``branch_created`` {to, id, name}      the branch exists (the view may switch to it).
``merge_preview`` {to, id, source, into, cells, diff}  what ``into`` would hold after the merge
            (same shapes as ``preview``; ``diff`` from ``into`` now to the merged result).
``merged``  {to, id, source, into, current}  the merge is committed; ``current`` is ``into``'s
            new version id.
``chart_data`` {to, id, cell, branch, rows}  buffers: [Arrow IPC stream] the chart's rows
            (``rows`` of them): columns x, y, then colour if chosen (see
            :mod:`sqlrooms_nb.charts`).
``page``    {to, id, cell, branch, offset, rows, sort}  buffers: [Arrow IPC stream] the rows asked
            for (fewer at the end); ``rows`` is the result's total row count from its run.
``export``  {to, id, cell, format, filename}  buffers: [the file's bytes].
            Page and export failures (result gone, bad column, file too large) are answered by
            ``error`` {to, id, cell}.
``catalog`` {branch, tables}           the connection's tables and views for SQL autocompletion:
            ``[{database, schema, name, columns, kind}]`` (``database`` "" for the current
            database, ``columns`` the column names in order, ``kind`` ``"table"`` or ``"view"``;
            see :mod:`sqlrooms_nb.catalog`). Sent after each ``welcome`` and after each run job;
            ``branch`` is the branch of the run (the catalog is the connection's, the same for
            every branch).
``input_options`` {cell, branch, options, error}  the options of a select input cell: the
            first column of its ``options_sql`` as strings (at most ``MAX_INPUT_OPTIONS``);
            ``error`` is the query's error message or ``None``. Sent after each ``welcome`` and
            whenever the options query changes or a cell it reads re-runs.

Bad version ids are answered by ``error`` addressed to the view with the request's ``id``.

Every client message must carry ``view`` (a string of 1-64 URL-safe characters). A message that
cannot be decoded raises :class:`~sqlrooms_nb.errors.ProtocolError`; the room replies with an
``error`` addressed to the view (if one could be read) and changes nothing. Limits: JSON content
of at most :data:`MAX_CONTENT_BYTES` characters nested at most :data:`MAX_CONTENT_DEPTH` deep, at
most :data:`MAX_BUFFERS` buffers of :data:`MAX_UPDATE_BYTES` bytes in all.

Error codes a view acts on (besides showing the message):

- ``resync``: an ``update`` depended on changes the kernel lacks, so none of its blobs that
  did were imported: the view sends a new ``hello``, and the handshake re-sends them.
- ``rate_limited``: the view sent too much too fast (see :mod:`sqlrooms_nb.ratelimit`); its
  messages are refused until it slows down. The view waits a moment, then sends a new
  ``hello`` (re-sending whatever updates were refused).
- ``read_only``: the view (or the whole room) is read-only; the kernel decides this per widget,
  never from anything a view sends. Read-only views may send ``hello``, ``ping``, ``awareness``,
  ``history``, ``preview``, a previewing ``merge``, ``page``, ``export`` and ``chart_data``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NewType

from .errors import ProtocolError

PROTOCOL_VERSION = 2
"""Bumped whenever a message changes shape; views send nothing the kernel cannot read."""

MAX_UPDATE_BYTES = 32 * 1024 * 1024
"""Largest total of buffer bytes accepted in one client message (bytes). A view's handshake
reply carries everything it made while the kernel did not have it: a whole 5,000-cell notebook
of 1 KB cells is a 5.6 MB update, so 32 MiB leaves ~6x headroom, while a message of that size
(43 MB of base64 in one marimo HTTP POST) is about the most a kernel should take in one go."""
MAX_CONTENT_BYTES = 64 * 1024
"""Largest JSON content of one client message (characters of its JSON text, estimated). The
largest legitimate one, a ``page`` request with 16 sort keys of 1024-character column names,
is ~17 K."""
MAX_CONTENT_DEPTH = 8
"""Deepest nesting of containers accepted in a client message's JSON content (the protocol
uses 3: a list of sort-key objects in the message object)."""
MAX_MESSAGE_BYTES = MAX_UPDATE_BYTES + MAX_CONTENT_BYTES
"""Largest whole client message: JSON content plus buffers (bytes)."""
MAX_BUFFERS = 10_000
"""Most buffers in one client message (each update blob is one; a view coalesces its local
updates every 20 ms, so even a long offline spell sent as separate blobs stays far below)."""

ViewId = NewType("ViewId", str)
RequestId = NewType("RequestId", str)

CLIENT_KINDS = ("hello", "update", "run", "ping", "awareness", "history", "preview", "restore", "branch", "merge", "chart_data", "page", "export", "cancel", "run_all")  # noqa: E501  # fmt: skip
# Each tuple stays on one line (js/protocol.ts and the tests parse these lines).
SERVER_KINDS = ("welcome", "update", "saved", "run_started", "result", "error", "pong", "awareness", "history", "preview", "restored", "branches", "branch_created", "merge_preview", "merged", "chart_data", "page", "export", "run_progress", "cancelled", "stale", "queued", "catalog", "input_options")  # noqa: E501  # fmt: skip

# \Z, not $: "$" also matches before a trailing newline ("main\n" passed).
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,4096}\Z")
_NAME = re.compile(r"^(?!\.+\Z)[A-Za-z0-9_.-]{1,128}\Z")
"""Branch names (the room-id rule: 1-128 of ``[A-Za-z0-9_.-]``, not only dots)."""

HISTORY_PAGE = 50
"""Sessions in a ``history`` reply when the request gives no ``limit``."""
MAX_HISTORY_PAGE = 200
"""Largest ``limit`` a ``history`` request may ask for."""

MAX_PAGE_ROWS = 5000
"""Largest ``limit`` a ``page`` request may ask for (rows)."""
MAX_SORT_KEYS = 16
"""Most sort keys a ``page`` or ``export`` request may give."""

Buffer = bytes | bytearray | memoryview


# --- client messages (view -> kernel) -------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A view's opening message: its oplog version vector (encoded bytes)."""

    view: ViewId
    version: bytes
    branch: str | None = None
    kind: Literal["hello"] = "hello"


@dataclass(frozen=True)
class ClientUpdate:
    """Loro update blobs made in a view."""

    view: ViewId
    updates: tuple[bytes, ...]
    branch: str | None = None
    kind: Literal["update"] = "update"


@dataclass(frozen=True)
class Run:
    """Run the SQL cell ``cell``; ``id`` is echoed in the replies."""

    view: ViewId
    id: RequestId
    cell: str
    branch: str | None = None
    cascade: bool = True
    kind: Literal["run"] = "run"


@dataclass(frozen=True)
class Cancel:
    """Cancel the run of cell ``cell`` (running or queued) and the rest of its cascade."""

    view: ViewId
    id: RequestId
    cell: str
    branch: str | None = None
    kind: Literal["cancel"] = "cancel"


@dataclass(frozen=True)
class RunAll:
    """Run every SQL cell of the branch, in dependency order."""

    view: ViewId
    id: RequestId
    branch: str | None = None
    kind: Literal["run_all"] = "run_all"


@dataclass(frozen=True)
class Ping:
    """Liveness probe; answered by :class:`Pong`."""

    view: ViewId
    id: RequestId
    kind: Literal["ping"] = "ping"


@dataclass(frozen=True)
class ClientAwareness:
    """A view's presence: one encoded Loro ``EphemeralStore`` update (its own entry only)."""

    view: ViewId
    update: bytes
    kind: Literal["awareness"] = "awareness"


@dataclass(frozen=True)
class HistoryRequest:
    """Ask for edit sessions newest first: skip ``offset``, return at most ``limit``."""

    view: ViewId
    id: RequestId
    offset: int = 0
    limit: int = HISTORY_PAGE
    branch: str | None = None
    kind: Literal["history"] = "history"


@dataclass(frozen=True)
class PreviewRequest:
    """Ask for the cells at ``version`` (a version id) and their diff against the current state."""

    view: ViewId
    id: RequestId
    version: str
    branch: str | None = None
    kind: Literal["preview"] = "preview"


@dataclass(frozen=True)
class RestoreRequest:
    """Make ``version`` current again as a new change; ``author`` ("" = the kernel's) is who."""

    view: ViewId
    id: RequestId
    version: str
    author: str = ""
    branch: str | None = None
    kind: Literal["restore"] = "restore"


@dataclass(frozen=True)
class BranchRequest:
    """Create branch ``name`` from ``source`` (``None``: the checked-out branch) at version
    ``at`` (``None``: its current version); ``author`` ("" = the kernel's) made it."""

    view: ViewId
    id: RequestId
    name: str
    source: str | None = None
    at: str | None = None
    author: str = ""
    kind: Literal["branch"] = "branch"


@dataclass(frozen=True)
class MergeRequest:
    """Merge branch ``source`` into ``into``; with ``preview`` only say what it would do."""

    view: ViewId
    id: RequestId
    source: str
    into: str
    preview: bool
    kind: Literal["merge"] = "merge"


@dataclass(frozen=True)
class ChartDataRequest:
    """Ask for the data of chart cell ``cell`` (its spec is read from the kernel's replica)."""

    view: ViewId
    id: RequestId
    cell: str
    branch: str | None = None
    kind: Literal["chart_data"] = "chart_data"


@dataclass(frozen=True)
class SortKey:
    """One sort key of a result page: a column name, descending or not (nulls always last)."""

    column: str
    desc: bool = False


@dataclass(frozen=True)
class PageRequest:
    """Ask for rows ``offset`` .. ``offset + limit - 1`` (0-based) of cell ``cell``'s last
    result, sorted by ``sort`` (empty: the result's own order)."""

    view: ViewId
    id: RequestId
    cell: str
    offset: int
    limit: int
    sort: tuple[SortKey, ...] = ()
    branch: str | None = None
    kind: Literal["page"] = "page"


@dataclass(frozen=True)
class ExportRequest:
    """Ask for cell ``cell``'s whole last result as a file (``"csv"`` or ``"parquet"``)."""

    view: ViewId
    id: RequestId
    cell: str
    format: Literal["csv", "parquet"]
    sort: tuple[SortKey, ...] = ()
    branch: str | None = None
    kind: Literal["export"] = "export"


ClientMessage = (
    Cancel
    | RunAll
    | Hello
    | PageRequest
    | ExportRequest
    | ClientUpdate
    | Run
    | Ping
    | ClientAwareness
    | HistoryRequest
    | PreviewRequest
    | RestoreRequest
    | BranchRequest
    | MergeRequest
    | ChartDataRequest
)


def is_read_only(message: ClientMessage) -> bool:
    """Whether a read-only view may send ``message``: it reads (handshake, presence, history,
    previews, a merge preview, result pages, exports, chart data) rather than changing the
    document or starting, stopping or queueing runs (which every view sees)."""
    if isinstance(message, MergeRequest):
        return message.preview
    return isinstance(
        message,
        (
            Hello,
            Ping,
            ClientAwareness,
            HistoryRequest,
            PreviewRequest,
            PageRequest,
            ExportRequest,
            ChartDataRequest,
        ),
    )


# --- server messages (kernel -> views) ------------------------------------------------------


@dataclass(frozen=True)
class Welcome:
    """Answer to :class:`Hello`: what the view lacks, and what the kernel has and has saved."""

    to: ViewId
    room: str
    branch: str
    missing: bytes
    version: bytes
    saved: bytes
    kind: Literal["welcome"] = "welcome"


@dataclass(frozen=True)
class ServerUpdate:
    """Updates imported or made by the kernel; ``origin`` is the view they came from."""

    origin: ViewId | None
    updates: tuple[bytes, ...]
    branch: str = "main"
    kind: Literal["update"] = "update"


@dataclass(frozen=True)
class Saved:
    """Everything up to ``version`` (encoded version vector) is durable in the lake.

    ``lake``: ``"ok"``, or ``"unreachable"`` while flushes fail; then ``kept`` / ``unkept``
    count the Loro changes beyond ``version`` kept in the kernel's spill file / only in its
    memory (both 0 when ``lake`` is ``"ok"``).
    """

    version: bytes
    branch: str = "main"
    lake: Literal["ok", "unreachable"] = "ok"
    kept: int = 0
    unkept: int = 0
    kind: Literal["saved"] = "saved"


@dataclass(frozen=True)
class RunStarted:
    """A cell run began; ``view`` is who asked (``None`` when Python did)."""

    id: RequestId | None
    cell: str
    view: ViewId | None
    branch: str = "main"
    kind: Literal["run_started"] = "run_started"


@dataclass(frozen=True)
class Column:
    """One result column: its name and DuckDB type name."""

    name: str
    type: str


@dataclass(frozen=True)
class Result:
    """A cell's result: ``rows`` in total, the first ``shown`` of them as Arrow IPC;
    ``author`` is the display name of who ran it ("" when unknown)."""

    id: RequestId | None
    cell: str
    name: str
    rows: int
    columns: tuple[Column, ...]
    shown: int
    elapsed_ms: float
    arrow: bytes
    branch: str = "main"
    author: str = ""
    kind: Literal["result"] = "result"


@dataclass(frozen=True)
class RunProgress:
    """A running cell: ``elapsed_ms`` so far, DuckDB's ``percent`` (0-100, ``None``: unknown)."""

    cell: str
    branch: str
    elapsed_ms: float
    percent: float | None
    kind: Literal["run_progress"] = "run_progress"


@dataclass(frozen=True)
class Cancelled:
    """A run ended because it was cancelled, after ``elapsed_ms`` (0 when it never started)."""

    id: RequestId | None
    cell: str
    branch: str
    elapsed_ms: float
    kind: Literal["cancelled"] = "cancelled"


@dataclass(frozen=True)
class Stale:
    """The full current set of stale cells (ids, notebook order) of ``branch``."""

    branch: str
    cells: tuple[str, ...]
    kind: Literal["stale"] = "stale"


MAX_INPUT_OPTIONS = 1000
"""Most options a select input offers (the first rows of its options query)."""


@dataclass(frozen=True)
class InputOptions:
    """The options of select input ``cell`` on ``branch``: the first column of its options
    query, as strings (at most :data:`MAX_INPUT_OPTIONS`); ``error`` says why the query failed
    (then ``options`` is empty)."""

    cell: str
    branch: str
    options: tuple[str, ...]
    error: str | None = None
    kind: Literal["input_options"] = "input_options"


@dataclass(frozen=True)
class Queued:
    """A run of ``cell`` waits behind another run."""

    id: RequestId | None
    cell: str
    branch: str
    kind: Literal["queued"] = "queued"


@dataclass(frozen=True)
class Error:
    """A tagged error: ``code`` from :mod:`sqlrooms_nb.errors`; ``line``/``column`` 0-based."""

    code: str
    message: str
    to: ViewId | None = None
    id: RequestId | None = None
    cell: str | None = None
    line: int | None = None
    column: int | None = None
    branch: str | None = None
    kind: Literal["error"] = "error"


@dataclass(frozen=True)
class Pong:
    """Answer to :class:`Ping`."""

    to: ViewId
    id: RequestId
    kind: Literal["pong"] = "pong"


@dataclass(frozen=True)
class ServerAwareness:
    """Presence for views: ``origin`` is the view it came from, ``None`` for a snapshot of all."""

    origin: ViewId | None
    update: bytes
    kind: Literal["awareness"] = "awareness"


@dataclass(frozen=True)
class VersionInfo:
    """One edit session as the history panel lists it (times are ISO 8601 UTC strings)."""

    id: str
    time: str
    start: str
    author: str
    summary: str
    cells: tuple[str, ...]
    added: int
    removed: int
    changes: int


@dataclass(frozen=True)
class TagInfo:
    """A named version."""

    name: str
    version: str


@dataclass(frozen=True)
class History:
    """Answer to :class:`HistoryRequest`: one page of sessions, newest first."""

    to: ViewId
    id: RequestId
    offset: int
    versions: tuple[VersionInfo, ...]
    more: bool
    tags: tuple[TagInfo, ...]
    current: str
    kind: Literal["history"] = "history"


@dataclass(frozen=True)
class PreviewCell:
    """A cell as it was at a version."""

    id: str
    kind: str
    name: str
    source: str


@dataclass(frozen=True)
class PreviewDiff:
    """How a cell changed from the previewed version to now (see ``history.CellDiff``)."""

    id: str
    name: str
    status: str
    index_a: int | None
    index_b: int | None
    diff: str


@dataclass(frozen=True)
class Preview:
    """Answer to :class:`PreviewRequest`."""

    to: ViewId
    id: RequestId
    version: str
    cells: tuple[PreviewCell, ...]
    diff: tuple[PreviewDiff, ...]
    kind: Literal["preview"] = "preview"


@dataclass(frozen=True)
class Restored:
    """Answer to :class:`RestoreRequest`: ``current`` is the version after the restore."""

    to: ViewId
    id: RequestId
    version: str
    current: str
    kind: Literal["restored"] = "restored"


@dataclass(frozen=True)
class BranchInfo:
    """One branch and its lineage (times ISO 8601 UTC strings, ``None`` where unknown)."""

    name: str
    parent: str | None
    fork_version: str | None
    created_by: str
    created_at: str | None
    merged_into: str | None
    merged_at: str | None


@dataclass(frozen=True)
class Branches:
    """Every branch of the room, ``main`` first; ``current`` is the kernel's checked-out one."""

    branches: tuple[BranchInfo, ...]
    current: str
    kind: Literal["branches"] = "branches"


@dataclass(frozen=True)
class BranchCreated:
    """Answer to :class:`BranchRequest`."""

    to: ViewId
    id: RequestId
    name: str
    kind: Literal["branch_created"] = "branch_created"


@dataclass(frozen=True)
class MergePreview:
    """Answer to a previewing :class:`MergeRequest`: ``into``'s cells after the merge, and the
    diff from ``into`` now to them."""

    to: ViewId
    id: RequestId
    source: str
    into: str
    cells: tuple[PreviewCell, ...]
    diff: tuple[PreviewDiff, ...]
    kind: Literal["merge_preview"] = "merge_preview"


@dataclass(frozen=True)
class Merged:
    """Answer to a :class:`MergeRequest` that merged: ``current`` is ``into``'s new version."""

    to: ViewId
    id: RequestId
    source: str
    into: str
    current: str
    kind: Literal["merged"] = "merged"


@dataclass(frozen=True)
class ChartData:
    """Answer to :class:`ChartDataRequest`: ``rows`` rows as an Arrow IPC stream."""

    to: ViewId
    id: RequestId
    cell: str
    branch: str
    rows: int
    arrow: bytes
    kind: Literal["chart_data"] = "chart_data"


@dataclass(frozen=True)
class Page:
    """Answer to :class:`PageRequest`: the page as an Arrow IPC stream; ``rows`` is the total
    row count of the result (from its run, never recounted)."""

    to: ViewId
    id: RequestId
    cell: str
    branch: str
    offset: int
    rows: int
    sort: tuple[SortKey, ...]
    arrow: bytes
    kind: Literal["page"] = "page"


@dataclass(frozen=True)
class Export:
    """Answer to :class:`ExportRequest`: the file's bytes and a suggested file name."""

    to: ViewId
    id: RequestId
    cell: str
    format: str
    filename: str
    data: bytes
    kind: Literal["export"] = "export"


@dataclass(frozen=True)
class CatalogTable:
    """One table or view: ``database`` ("" = the current one), ``schema``, ``name``, its
    column names in order, ``kind`` ``"table"`` or ``"view"``."""

    schema: str
    name: str
    columns: tuple[str, ...]
    kind: Literal["table", "view"]
    database: str = ""


@dataclass(frozen=True)
class Catalog:
    """The connection's tables and views, for autocompletion (see :mod:`.catalog`)."""

    branch: str
    tables: tuple[CatalogTable, ...]
    kind: Literal["catalog"] = "catalog"


ServerMessage = (
    Catalog
    | RunProgress
    | Cancelled
    | Stale
    | Queued
    | InputOptions
    | Welcome
    | Page
    | Export
    | ServerUpdate
    | Saved
    | RunStarted
    | Result
    | Error
    | Pong
    | ServerAwareness
    | History
    | Preview
    | Restored
    | Branches
    | BranchCreated
    | MergePreview
    | Merged
    | ChartData
)


@dataclass
class Outgoing:
    """A server message encoded for ``widget.send``: JSON ``content`` plus binary ``buffers``."""

    content: dict[str, Any]
    buffers: list[bytes] = field(default_factory=list)


# --- decoding -------------------------------------------------------------------------------


def _str_field(content: dict[str, Any], name: str, pattern: re.Pattern[str] = _TOKEN) -> str:
    value = content.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise ProtocolError(f"field {name!r} must be a short id string, got {value!r:.80}")
    return value


def view_of(content: object) -> ViewId | None:
    """The sending view's id if ``content`` names a well-formed one, else ``None``.

    Used to address an error reply when the rest of the message could not be decoded.
    """
    if isinstance(content, dict):
        view = content.get("view")
        if isinstance(view, str) and _TOKEN.match(view):
            return ViewId(view)
    return None


def decode_client(content: object, buffers: Sequence[Buffer] | None) -> ClientMessage:
    """Decode one view -> kernel message.

    ``content`` is the JSON object anywidget delivered; ``buffers`` its binary buffers
    (bytes, bytearray or memoryview; Jupyter gives memoryviews). Buffers are copied to
    ``bytes`` because Loro only imports ``bytes``.

    Raises :class:`ProtocolError` for anything malformed: not an object, content larger than
    :data:`MAX_CONTENT_BYTES` or nested deeper than :data:`MAX_CONTENT_DEPTH`, unknown ``kind``,
    missing or ill-typed fields, missing or non-binary buffers, more than :data:`MAX_BUFFERS`
    buffers or :data:`MAX_UPDATE_BYTES` buffer bytes. The sizes are checked before anything is
    copied.
    """
    if not isinstance(content, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(content).__name__}")
    content_size(content)
    kind = content.get("kind")
    if not isinstance(kind, str) or kind not in CLIENT_KINDS:
        raise ProtocolError(f"unknown message kind {kind!r:.40}; expected one of {CLIENT_KINDS}")
    view = ViewId(_str_field(content, "view"))
    bufs = _buffers(buffers)
    branch = _optional(content, "branch", _NAME)
    if kind == "hello":
        if len(bufs) != 1:
            raise ProtocolError("hello needs exactly one buffer: the view's version vector")
        return Hello(view=view, version=bufs[0], branch=branch)
    if kind == "update":
        if not bufs or any(len(b) == 0 for b in bufs):
            raise ProtocolError("update needs one or more non-empty buffers")
        return ClientUpdate(view=view, updates=tuple(bufs), branch=branch)
    if kind == "awareness":
        if len(bufs) != 1 or len(bufs[0]) == 0:
            raise ProtocolError("awareness needs exactly one non-empty buffer")
        return ClientAwareness(view=view, update=bufs[0])
    request = RequestId(_str_field(content, "id"))
    if kind == "page":
        return PageRequest(
            view=view,
            id=request,
            cell=_str_field(content, "cell", _CELL_ID),
            offset=_int_field(content, "offset", 0, 0, 1 << 53),
            limit=_int_field(content, "limit", 500, 1, MAX_PAGE_ROWS),
            sort=_sort_field(content),
            branch=branch,
        )
    if kind == "export":
        fmt = content.get("format")
        if fmt not in ("csv", "parquet"):
            raise ProtocolError(f"field 'format' must be 'csv' or 'parquet', got {fmt!r:.80}")
        return ExportRequest(
            view=view,
            id=request,
            cell=_str_field(content, "cell", _CELL_ID),
            format=fmt,
            sort=_sort_field(content),
            branch=branch,
        )
    if kind == "run":
        cascade = content.get("cascade", True)
        if not isinstance(cascade, bool):
            raise ProtocolError(f"field 'cascade' must be true or false, got {cascade!r:.80}")
        cell = _str_field(content, "cell", _CELL_ID)
        return Run(view=view, id=request, cell=cell, branch=branch, cascade=cascade)
    if kind == "cancel":
        return Cancel(
            view=view, id=request, cell=_str_field(content, "cell", _CELL_ID), branch=branch
        )
    if kind == "run_all":
        return RunAll(view=view, id=request, branch=branch)
    if kind == "chart_data":
        cell = _str_field(content, "cell", _CELL_ID)
        return ChartDataRequest(view=view, id=request, cell=cell, branch=branch)
    if kind == "history":
        offset = _int_field(content, "offset", 0, 0, 1 << 31)
        limit = _int_field(content, "limit", HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
        return HistoryRequest(view=view, id=request, offset=offset, limit=limit, branch=branch)
    if kind == "preview":
        version = _str_field(content, "version", _VERSION)
        return PreviewRequest(view=view, id=request, version=version, branch=branch)
    if kind == "restore":
        version = _str_field(content, "version", _VERSION)
        author = _author_field(content)
        return RestoreRequest(view=view, id=request, version=version, author=author, branch=branch)
    if kind == "branch":
        return BranchRequest(
            view=view,
            id=request,
            name=_str_field(content, "name", _NAME),
            source=_optional(content, "source", _NAME),
            at=_optional(content, "at", _VERSION),
            author=_author_field(content),
        )
    if kind == "merge":
        preview = content.get("preview")
        if not isinstance(preview, bool):
            raise ProtocolError(f"field 'preview' must be true or false, got {preview!r:.80}")
        return MergeRequest(
            view=view,
            id=request,
            source=_str_field(content, "source", _NAME),
            into=_str_field(content, "into", _NAME),
            preview=preview,
        )
    return Ping(view=view, id=request)


def message_bytes(content: object, buffers: Sequence[Buffer] | None) -> int:
    """Size of a client message for rate limiting: buffer bytes plus a flat 256 for the JSON
    content (never raises; anything malformed counts as 256 and is refused by the decoder)."""
    total = 256
    if isinstance(buffers, (list, tuple)):
        for b in buffers[: MAX_BUFFERS + 1]:
            if isinstance(b, (bytes, bytearray, memoryview)):
                total += memoryview(b).nbytes
    return total


def content_size(content: object) -> int:
    """Estimated length of ``content`` as JSON text (characters: strings count their code
    points, numbers, booleans and null 8 each). Walks iteratively and stops early: raises
    :class:`ProtocolError` as soon as the estimate passes :data:`MAX_CONTENT_BYTES` or nesting
    passes :data:`MAX_CONTENT_DEPTH` (so neither a huge nor a deeply nested payload costs more
    than the limit to refuse)."""
    total = 0
    stack: list[tuple[object, int]] = [(content, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CONTENT_DEPTH:
            raise ProtocolError(f"message content is nested deeper than {MAX_CONTENT_DEPTH} levels")
        if isinstance(value, str):
            total += len(value) + 2
        elif isinstance(value, dict):
            total += 2 + 4 * len(value)
            if total <= MAX_CONTENT_BYTES:
                for key, item in value.items():
                    total += len(key) if isinstance(key, str) else 8
                    stack.append((item, depth + 1))
        elif isinstance(value, (list, tuple)):
            total += 2 + len(value)
            if total <= MAX_CONTENT_BYTES:
                stack.extend((item, depth + 1) for item in value)
        else:
            total += 8
        if total > MAX_CONTENT_BYTES:
            raise ProtocolError(
                f"message content is larger than {MAX_CONTENT_BYTES} characters of JSON; "
                "binary data goes in buffers"
            )
    return total


def _buffers(buffers: object) -> list[bytes]:
    """The message's buffers copied to ``bytes``, after checking their types, count and total
    size (before any copy). Raises :class:`ProtocolError`."""
    if buffers is None:
        return []
    if not isinstance(buffers, (list, tuple)):
        raise ProtocolError(f"buffers must be a list, got {type(buffers).__name__}")
    if len(buffers) > MAX_BUFFERS:
        raise ProtocolError(f"a message may carry at most {MAX_BUFFERS} buffers")
    total = 0
    for b in buffers:
        if not isinstance(b, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"buffers must be binary, got {type(b).__name__}")
        total += memoryview(b).nbytes
    if total > MAX_UPDATE_BYTES:
        raise ProtocolError(
            f"message buffers exceed {MAX_UPDATE_BYTES} bytes ({total}); send less at once"
        )
    return [bytes(b) for b in buffers]


def _optional(content: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    """An optional string field: ``None`` when absent or null, else it must match."""
    if content.get(name) is None:
        return None
    return _str_field(content, name, pattern)


def _sort_field(content: dict[str, Any]) -> tuple[SortKey, ...]:
    """The optional ``sort`` list of ``{column, desc}`` (absent or null -> no sort)."""
    value = content.get("sort")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SORT_KEYS:
        raise ProtocolError(f"field 'sort' must be a list of at most {MAX_SORT_KEYS} keys")
    keys = []
    for item in value:
        column = item.get("column") if isinstance(item, dict) else None
        desc = item.get("desc", False) if isinstance(item, dict) else None
        if not isinstance(column, str) or not 0 < len(column) <= 1024 or not isinstance(desc, bool):
            raise ProtocolError(f"each sort key must be {{column, desc}}, got {item!r:.80}")
        keys.append(SortKey(column, desc))
    return tuple(keys)


def _author_field(content: dict[str, Any]) -> str:
    """The optional one-line ``author`` (at most 64 characters; absent or null -> "")."""
    author = content.get("author", "")
    if author is None:
        author = ""
    if not isinstance(author, str) or len(author) > 64 or "\n" in author:
        raise ProtocolError(
            f"field 'author' must be a one-line string of at most 64 characters, got {author!r:.80}"
        )
    return author


def _int_field(content: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = content.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(
            f"field {name!r} must be an integer from {low} to {high}, got {value!r:.80}"
        )
    return value


# --- encoding -------------------------------------------------------------------------------


def encode_server(message: ServerMessage) -> Outgoing:
    """Encode a kernel -> view message as JSON content plus buffers (see the module doc)."""
    if isinstance(message, Welcome):
        return Outgoing(
            {
                "kind": "welcome",
                "to": message.to,
                "room": message.room,
                "branch": message.branch,
                "protocol": PROTOCOL_VERSION,
            },
            [message.missing, message.version, message.saved],
        )
    if isinstance(message, ServerUpdate):
        return Outgoing(
            {"kind": "update", "origin": message.origin, "branch": message.branch},
            list(message.updates),
        )
    if isinstance(message, Saved):
        outage = (
            {"lake": message.lake, "kept": message.kept, "unkept": message.unkept}
            if message.lake != "ok"
            else {}
        )
        return Outgoing({"kind": "saved", "branch": message.branch, **outage}, [message.version])
    if isinstance(message, ServerAwareness):
        return Outgoing({"kind": "awareness", "origin": message.origin}, [message.update])
    if isinstance(message, RunStarted):
        return Outgoing(
            {
                "kind": "run_started",
                "id": message.id,
                "cell": message.cell,
                "view": message.view,
                "branch": message.branch,
            }
        )
    if isinstance(message, Result):
        return Outgoing(
            {
                "kind": "result",
                "id": message.id,
                "cell": message.cell,
                "name": message.name,
                "rows": message.rows,
                "columns": [{"name": c.name, "type": c.type} for c in message.columns],
                "shown": message.shown,
                "elapsed_ms": message.elapsed_ms,
                "branch": message.branch,
                "author": message.author,
            },
            [message.arrow],
        )
    if isinstance(message, RunProgress):
        return Outgoing(
            {
                "kind": "run_progress",
                "cell": message.cell,
                "branch": message.branch,
                "elapsed_ms": message.elapsed_ms,
                "percent": message.percent,
            }
        )
    if isinstance(message, Cancelled):
        return Outgoing(
            {
                "kind": "cancelled",
                "id": message.id,
                "cell": message.cell,
                "branch": message.branch,
                "elapsed_ms": message.elapsed_ms,
            }
        )
    if isinstance(message, Stale):
        return Outgoing({"kind": "stale", "branch": message.branch, "cells": list(message.cells)})
    if isinstance(message, Catalog):
        return Outgoing(
            {
                "kind": "catalog",
                "branch": message.branch,
                "tables": [
                    {
                        "database": t.database,
                        "schema": t.schema,
                        "name": t.name,
                        "columns": list(t.columns),
                        "kind": t.kind,
                    }
                    for t in message.tables
                ],
            }
        )
    if isinstance(message, InputOptions):
        return Outgoing(
            {
                "kind": "input_options",
                "cell": message.cell,
                "branch": message.branch,
                "options": list(message.options),
                "error": message.error,
            }
        )
    if isinstance(message, Queued):
        return Outgoing(
            {"kind": "queued", "id": message.id, "cell": message.cell, "branch": message.branch}
        )
    if isinstance(message, Error):
        content: dict[str, Any] = {
            "kind": "error",
            "code": message.code,
            "message": message.message,
        }
        for key in ("to", "id", "cell", "branch", "line", "column"):
            value = getattr(message, key)
            if value is not None:
                content[key] = value
        return Outgoing(content)
    if isinstance(message, History):
        return Outgoing(
            {
                "kind": "history",
                "to": message.to,
                "id": message.id,
                "offset": message.offset,
                "versions": [
                    {
                        "id": v.id,
                        "time": v.time,
                        "start": v.start,
                        "author": v.author,
                        "summary": v.summary,
                        "cells": list(v.cells),
                        "added": v.added,
                        "removed": v.removed,
                        "changes": v.changes,
                    }
                    for v in message.versions
                ],
                "more": message.more,
                "tags": [{"name": t.name, "version": t.version} for t in message.tags],
                "current": message.current,
            }
        )
    if isinstance(message, Preview):
        return Outgoing(
            {
                "kind": "preview",
                "to": message.to,
                "id": message.id,
                "version": message.version,
                "cells": _cells_json(message.cells),
                "diff": _diff_json(message.diff),
            }
        )
    if isinstance(message, MergePreview):
        return Outgoing(
            {
                "kind": "merge_preview",
                "to": message.to,
                "id": message.id,
                "source": message.source,
                "into": message.into,
                "cells": _cells_json(message.cells),
                "diff": _diff_json(message.diff),
            }
        )
    if isinstance(message, Merged):
        return Outgoing(
            {
                "kind": "merged",
                "to": message.to,
                "id": message.id,
                "source": message.source,
                "into": message.into,
                "current": message.current,
            }
        )
    if isinstance(message, Branches):
        return Outgoing(
            {
                "kind": "branches",
                "branches": [
                    {
                        "name": b.name,
                        "parent": b.parent,
                        "fork_version": b.fork_version,
                        "created_by": b.created_by,
                        "created_at": b.created_at,
                        "merged_into": b.merged_into,
                        "merged_at": b.merged_at,
                    }
                    for b in message.branches
                ],
                "current": message.current,
            }
        )
    if isinstance(message, BranchCreated):
        return Outgoing(
            {"kind": "branch_created", "to": message.to, "id": message.id, "name": message.name}
        )
    if isinstance(message, ChartData):
        return Outgoing(
            {
                "kind": "chart_data",
                "to": message.to,
                "id": message.id,
                "cell": message.cell,
                "branch": message.branch,
                "rows": message.rows,
            },
            [message.arrow],
        )
    if isinstance(message, Page):
        return Outgoing(
            {
                "kind": "page",
                "to": message.to,
                "id": message.id,
                "cell": message.cell,
                "branch": message.branch,
                "offset": message.offset,
                "rows": message.rows,
                "sort": [{"column": k.column, "desc": k.desc} for k in message.sort],
            },
            [message.arrow],
        )
    if isinstance(message, Export):
        return Outgoing(
            {
                "kind": "export",
                "to": message.to,
                "id": message.id,
                "cell": message.cell,
                "format": message.format,
                "filename": message.filename,
            },
            [message.data],
        )
    if isinstance(message, Restored):
        return Outgoing(
            {
                "kind": "restored",
                "to": message.to,
                "id": message.id,
                "version": message.version,
                "current": message.current,
            }
        )
    return Outgoing({"kind": "pong", "to": message.to, "id": message.id})


def _cells_json(cells: tuple[PreviewCell, ...]) -> list[dict[str, Any]]:
    return [{"id": c.id, "kind": c.kind, "name": c.name, "source": c.source} for c in cells]


def _diff_json(diff: tuple[PreviewDiff, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "name": d.name,
            "status": d.status,
            "index_a": d.index_a,
            "index_b": d.index_b,
            "diff": d.diff,
        }
        for d in diff
    ]
