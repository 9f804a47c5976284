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


class ClosedError(SqlRoomsError):
    """The room was closed; open a new ``SqlRoom`` to keep working."""

    code = "closed"


def loro_error(exc: BaseException, doing: str) -> DocumentError:
    """Wrap an exception raised by ``loro`` (a ``BaseException``) as a :class:`DocumentError`.

    ``doing`` says what was attempted, e.g. ``"import an update"``.
    """
    return DocumentError(f"Loro could not {doing}: {exc}")
