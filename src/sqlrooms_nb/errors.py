"""The project's errors: one base class, a shallow tree.

Every error raised on purpose by ``sqlrooms_nb`` is a :class:`SqlRoomsError`. Some also inherit
the builtin that callers already expect (``ValueError`` for bad arguments). Each carries a
``code`` (the tag used when the error crosses the comm as an ``error`` message, see
:mod:`sqlrooms_nb.protocol`) and says what to do about it in its message.

Loro raises ``BaseException`` subclasses (and ``pyo3_runtime.PanicException``) rather than
``Exception``; :func:`loro_error` turns those into :class:`DocumentError` at the boundary.
"""

from __future__ import annotations

import datetime
from typing import Any


class SqlRoomsError(Exception):
    """Base of every error sqlrooms_nb raises on purpose.

    ``code`` is the short tag sent to browser views in ``error`` messages.
    """

    code = "error"

    def to_wire(self) -> dict[str, Any]:
        """The error as the JSON fields of an ``error`` message (``code``, ``message``)."""
        return {"code": self.code, "message": str(self)}


class ValidationError(SqlRoomsError, ValueError):
    """An argument (room id, cell name, cell kind, index...) is not acceptable."""

    code = "invalid"


class CellNotFoundError(SqlRoomsError, KeyError):
    """No cell with that id exists in the current document."""

    code = "cell_not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "cell not found"


class BranchNotFoundError(SqlRoomsError, KeyError):
    """The room has no branch of that name (create it with ``room.branch(name)``)."""

    code = "branch_not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "branch not found"


class ProtocolError(SqlRoomsError):
    """A message from a browser view is malformed, unknown or not acceptable.

    The view gets an ``error`` reply; the document is left unchanged.
    """

    code = "protocol"


class ResyncError(ProtocolError):
    """A view's update depends on changes the kernel does not have (a gap: an earlier update
    of the view was lost or refused). Nothing of it was imported; the view keeps its changes
    and re-sends them after a new handshake (``hello``), which it does on this code."""

    code = "resync"


class RateLimitError(ProtocolError):
    """A view sent more messages (or bytes) than the kernel accepts per second from one view
    (see :mod:`sqlrooms_nb.ratelimit`). Its messages are refused until it slows down; a view
    re-sends refused document updates with a new handshake once it is under the limit."""

    code = "rate_limited"


class ReadOnlyError(SqlRoomsError, PermissionError):
    """The room, or the view a message came from, is read-only: it may read (cells, history,
    previews, result pages, exports, charts) but not change the document or start runs.
    Open the room without ``readonly=True`` (or display ``room.widget`` rather than
    ``room.view(readonly=True)``) to edit."""

    code = "read_only"


class DocumentError(SqlRoomsError):
    """Loro refused an operation or an update (corrupt bytes, wrong container...)."""

    code = "document"


class QueryError(SqlRoomsError):
    """A SQL cell failed in DuckDB.

    ``line`` and ``column`` are 0-based positions in the cell's source when DuckDB reports
    one, else ``None``.
    """

    code = "query"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "line": self.line, "column": self.column}


class CancelledError(QueryError):
    """A SQL cell's run was cancelled (``interrupt()``) before it finished: not a failure of
    the SQL, and shown as "cancelled" rather than as an error."""

    code = "cancelled"


class StorageError(SqlRoomsError):
    """The lake (catalog or data path) cannot be opened, read or written."""

    code = "storage"


class LeaseError(StorageError):
    """A serverless lake (``s3://bucket/prefix``) is open for writing elsewhere: another
    process holds its lease object. Open it read-only, wait for that process to close it, or
    take it over once the lease has expired (which happens automatically on open).

    ``holder`` (e.g. ``"ana@laptop pid 4242"``), ``since`` and ``expires`` (timezone-aware
    datetimes, ``None`` when unknown) describe the lease that was found.
    """

    code = "lease"

    def __init__(
        self,
        message: str,
        *,
        holder: str = "",
        since: datetime.datetime | None = None,
        expires: datetime.datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.holder = holder
        self.since = since
        self.expires = expires


class RecoveryError(StorageError):
    """The room's stored history could not be loaded into a document."""

    code = "recovery"


class CorruptionError(StorageError):
    """Stored bytes do not match the checksum written with them (or cannot be read back):
    one ``updates`` or ``snapshots`` row is damaged. The message names the row and says what
    was done about it (the row is skipped; the room opens from the rest).

    ``room``, ``branch``, ``table`` (``"updates"`` | ``"snapshots"``), ``writer``, ``seq``
    and ``lake_snapshot`` (the DuckLake snapshot id that inserted the row, ``None`` if
    unknown) identify the row; any of them is ``""`` / ``None`` when not known.
    """

    code = "corrupt"

    def __init__(
        self,
        message: str,
        *,
        room: str = "",
        branch: str = "",
        table: str = "",
        writer: str = "",
        seq: int | None = None,
        lake_snapshot: int | None = None,
    ) -> None:
        super().__init__(message)
        self.room = room
        self.branch = branch
        self.table = table
        self.writer = writer
        self.seq = seq
        self.lake_snapshot = lake_snapshot

    @property
    def key(self) -> tuple[str, str, str, str, int | None, int | None]:
        """The row's identity: ``(room, branch, table, writer, seq, lake_snapshot)``."""
        return (self.room, self.branch, self.table, self.writer, self.seq, self.lake_snapshot)


class SpillError(StorageError):
    """The local spill file (unsaved changes kept on the kernel's disk while the lake is
    unreachable, see :mod:`sqlrooms_nb.store.spill`) cannot be written or read: the changes
    stay in the kernel's memory. Free disk space or set ``SQLROOMS_NB_SPILL_DIR``."""

    code = "spill"


class ClosedError(SqlRoomsError):
    """The room was closed; open a new ``SqlRoom`` to keep working."""

    code = "closed"


def loro_error(exc: BaseException, doing: str) -> DocumentError:
    """Wrap an exception raised by ``loro`` (a ``BaseException``) as a :class:`DocumentError`.

    ``doing`` says what was attempted, e.g. ``"import an update"``.
    """
    return DocumentError(f"Loro could not {doing}: {exc}")
