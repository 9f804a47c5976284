"""Messages between browser views and the kernel, and their encoding (one place).

Transport: anywidget custom messages, ``model.send(content, callbacks, buffers)``. ``content``
is a JSON object with a ``kind``; binary payloads (Loro updates, version vectors, Arrow IPC)
travel in ``buffers``, never inside JSON. ``js/protocol.ts`` mirrors this module with the same
kind names; ``tests/test_protocol.py`` checks the two agree.

All kernel messages reach every view of the widget (a marimo tab pair or a notebook showing
the widget twice share one model), so a message meant for one view carries ``to`` = that
view's id and the others ignore it. Relayed updates carry ``origin`` = the sending view's id
(``None`` for kernel-made changes) so the sender can skip its own bytes.

View -> kernel ("client" messages)
----------------------------------
``hello``   {view}                      buffers: [oplog version vector] (``VersionVector.encode``)
            The first thing a view sends, and again after any gap. The kernel answers ``welcome``.
``update``  {view}                      buffers: [update, ...]  one or more Loro update blobs
``run``     {view, id, cell}            run a SQL cell; replies are broadcast (``run_started``,
                                        then ``result`` or ``error``), echoing ``id``.
``ping``    {view, id}                  liveness; answered by ``pong``.
``awareness`` {view}                    buffers: [one Loro ``EphemeralStore`` encoded update]
            the view's presence (name, colour, selection); it may only touch the view's own
            entry. Relayed to every view; never persisted.
``history`` {view, id, offset?, limit?} edit sessions newest first, skipping ``offset`` (int >= 0,
            default 0) and returning at most ``limit`` (1-200, default 50); answered by
            ``history``.
``preview`` {view, id, version}         the cells at ``version`` and their diff against the
            current state; answered by ``preview`` (the live document is untouched).
``restore`` {view, id, version, author?} make ``version`` current as a new change (the change's
            message notes the restore, by ``author``, at most 64 characters); the change
            reaches every view as an ``update``; answered by ``restored``.

Kernel -> views ("server" messages)
-----------------------------------
``welcome`` {to, room, branch, protocol} buffers: [updates the view lacks, kernel oplog version
            vector, saved version vector]. The view imports buffer 0, then sends an ``update``
            with whatever it has beyond the kernel's version vector (if anything).
``update``  {origin}                    buffers: [update, ...]  every update the kernel imported
            or made, re-broadcast to all views.
``saved``   {}                          buffers: [version vector]  everything up to this version
            is durable in the lake.
``run_started`` {id, cell, view}        a run began (``view`` = who asked, ``None`` for Python).
``result``  {id, cell, name, rows, columns, shown, elapsed_ms}  buffers: [Arrow IPC stream of
            the first ``shown`` rows]. ``rows`` is the total row count, ``columns`` a list of
            ``{"name", "type"}`` (DuckDB type names).
``error``   {to?, id?, cell?, code, message, line?, column?}  a tagged error (see
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

Bad version ids are answered by ``error`` addressed to the view with the request's ``id``.

Every client message must carry ``view`` (a string of 1-64 URL-safe characters). A message that
cannot be decoded raises :class:`~sqlrooms_nb.errors.ProtocolError`; the room replies with an
``error`` addressed to the view (if one could be read) and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NewType

from .errors import ProtocolError

PROTOCOL_VERSION = 1
"""Bumped whenever a message changes shape; views send nothing the kernel cannot read."""

MAX_UPDATE_BYTES = 32 * 1024 * 1024
"""Largest total of update bytes accepted in one client message (bytes)."""

ViewId = NewType("ViewId", str)
RequestId = NewType("RequestId", str)

CLIENT_KINDS = ("hello", "update", "run", "ping", "awareness", "history", "preview", "restore")
# Each tuple stays on one line (js/protocol.ts and the tests parse these lines).
SERVER_KINDS = ("welcome", "update", "saved", "run_started", "result", "error", "pong", "awareness", "history", "preview", "restored")  # noqa: E501  # fmt: skip

_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,4096}$")

HISTORY_PAGE = 50
"""Sessions in a ``history`` reply when the request gives no ``limit``."""
MAX_HISTORY_PAGE = 200
"""Largest ``limit`` a ``history`` request may ask for."""

Buffer = bytes | bytearray | memoryview


# --- client messages (view -> kernel) -------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A view's opening message: its oplog version vector (encoded bytes)."""

    view: ViewId
    version: bytes
    kind: Literal["hello"] = "hello"


@dataclass(frozen=True)
class ClientUpdate:
    """Loro update blobs made in a view."""

    view: ViewId
    updates: tuple[bytes, ...]
    kind: Literal["update"] = "update"


@dataclass(frozen=True)
class Run:
    """Run the SQL cell ``cell``; ``id`` is echoed in the replies."""

    view: ViewId
    id: RequestId
    cell: str
    kind: Literal["run"] = "run"


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
    kind: Literal["history"] = "history"


@dataclass(frozen=True)
class PreviewRequest:
    """Ask for the cells at ``version`` (a version id) and their diff against the current state."""

    view: ViewId
    id: RequestId
    version: str
    kind: Literal["preview"] = "preview"


@dataclass(frozen=True)
class RestoreRequest:
    """Make ``version`` current again as a new change; ``author`` ("" = the kernel's) is who."""

    view: ViewId
    id: RequestId
    version: str
    author: str = ""
    kind: Literal["restore"] = "restore"


ClientMessage = (
    Hello
    | ClientUpdate
    | Run
    | Ping
    | ClientAwareness
    | HistoryRequest
    | PreviewRequest
    | RestoreRequest
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
    kind: Literal["update"] = "update"


@dataclass(frozen=True)
class Saved:
    """Everything up to ``version`` (encoded version vector) is durable in the lake."""

    version: bytes
    kind: Literal["saved"] = "saved"


@dataclass(frozen=True)
class RunStarted:
    """A cell run began; ``view`` is who asked (``None`` when Python did)."""

    id: RequestId | None
    cell: str
    view: ViewId | None
    kind: Literal["run_started"] = "run_started"


@dataclass(frozen=True)
class Column:
    """One result column: its name and DuckDB type name."""

    name: str
    type: str


@dataclass(frozen=True)
class Result:
    """A cell's result: ``rows`` in total, the first ``shown`` of them as Arrow IPC."""

    id: RequestId | None
    cell: str
    name: str
    rows: int
    columns: tuple[Column, ...]
    shown: int
    elapsed_ms: float
    arrow: bytes
    kind: Literal["result"] = "result"


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


ServerMessage = (
    Welcome
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

    Raises :class:`ProtocolError` for anything malformed: not an object, unknown ``kind``,
    missing or ill-typed fields, missing buffers, or more than :data:`MAX_UPDATE_BYTES`.
    """
    if not isinstance(content, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(content).__name__}")
    kind = content.get("kind")
    if kind not in CLIENT_KINDS:
        raise ProtocolError(f"unknown message kind {kind!r:.40}; expected one of {CLIENT_KINDS}")
    view = ViewId(_str_field(content, "view"))
    bufs = [bytes(b) for b in (buffers or [])]
    if sum(len(b) for b in bufs) > MAX_UPDATE_BYTES:
        raise ProtocolError(f"message buffers exceed {MAX_UPDATE_BYTES} bytes")
    if kind == "hello":
        if len(bufs) != 1:
            raise ProtocolError("hello needs exactly one buffer: the view's version vector")
        return Hello(view=view, version=bufs[0])
    if kind == "update":
        if not bufs or any(len(b) == 0 for b in bufs):
            raise ProtocolError("update needs one or more non-empty buffers")
        return ClientUpdate(view=view, updates=tuple(bufs))
    if kind == "awareness":
        if len(bufs) != 1 or len(bufs[0]) == 0:
            raise ProtocolError("awareness needs exactly one non-empty buffer")
        return ClientAwareness(view=view, update=bufs[0])
    request = RequestId(_str_field(content, "id"))
    if kind == "run":
        return Run(view=view, id=request, cell=_str_field(content, "cell", _CELL_ID))
    if kind == "history":
        offset = _int_field(content, "offset", 0, 0, 1 << 31)
        limit = _int_field(content, "limit", HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
        return HistoryRequest(view=view, id=request, offset=offset, limit=limit)
    if kind == "preview":
        return PreviewRequest(
            view=view, id=request, version=_str_field(content, "version", _VERSION)
        )
    if kind == "restore":
        author = content.get("author", "")
        if author is None:
            author = ""
        if not isinstance(author, str) or len(author) > 64 or "\n" in author:
            raise ProtocolError(
                "field 'author' must be a one-line string of at most 64 characters, "
                f"got {author!r:.80}"
            )
        return RestoreRequest(
            view=view, id=request, version=_str_field(content, "version", _VERSION), author=author
        )
    return Ping(view=view, id=request)


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
        return Outgoing({"kind": "update", "origin": message.origin}, list(message.updates))
    if isinstance(message, Saved):
        return Outgoing({"kind": "saved"}, [message.version])
    if isinstance(message, ServerAwareness):
        return Outgoing({"kind": "awareness", "origin": message.origin}, [message.update])
    if isinstance(message, RunStarted):
        return Outgoing(
            {"kind": "run_started", "id": message.id, "cell": message.cell, "view": message.view}
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
            },
            [message.arrow],
        )
    if isinstance(message, Error):
        content: dict[str, Any] = {
            "kind": "error",
            "code": message.code,
            "message": message.message,
        }
        for key in ("to", "id", "cell", "line", "column"):
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
                "cells": [
                    {"id": c.id, "kind": c.kind, "name": c.name, "source": c.source}
                    for c in message.cells
                ],
                "diff": [
                    {
                        "id": d.id,
                        "name": d.name,
                        "status": d.status,
                        "index_a": d.index_a,
                        "index_b": d.index_b,
                        "diff": d.diff,
                    }
                    for d in message.diff
                ],
            }
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
