"""The pure sync core: one branch document shared by many views.

:class:`SyncHub` turns client messages into server messages and document changes, with no
I/O: ``hub.handle(message) -> [messages to broadcast]``. The room owns the transport (the
widget comm) and the persister; the hub only imports, exports and answers. This follows the
pycrdt-websocket split (a sync core that a websocket and a test double both fit).

Handshake (view speaks first): ``hello(vv)`` -> ``welcome(updates the view lacks, kernel vv,
saved vv)``; the view then sends what the kernel lacks as an ordinary ``update``. Every update
the hub imports is re-broadcast to all views (one fan-out path); bytes that fail to import are
never relayed. Importing is idempotent and order-tolerant, so duplicates are harmless.

Threads: ``handle`` runs on whatever thread delivers comm messages; the hub keeps no state that
needs a lock beyond the Loro document's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loro import ExportMode, LoroDoc, VersionVector

from . import protocol as p
from .errors import ProtocolError, loro_error


@dataclass(frozen=True)
class Imported:
    """What importing a view's update did: blobs applied, and whether a gap was detected."""

    changes: int
    nbytes: int
    gap: bool


class SyncHub:
    """Sync state of one (room, branch) document.

    ``saved_version`` is a callable returning the version vector known durable (from the
    persister); it is sent in ``welcome`` so a view can show Saved at once.
    ``on_imported(changes, nbytes)`` is called after updates from a view were imported, so
    the room can queue them for the writer.
    """

    def __init__(
        self,
        doc: LoroDoc,
        room: str,
        branch: str,
        *,
        saved_version: Callable[[], VersionVector],
        on_imported: Callable[[int, int], None],
    ) -> None:
        self.doc = doc
        self.room = room
        self.branch = branch
        self._saved_version = saved_version
        self._on_imported = on_imported

    def handle(self, message: p.ClientMessage) -> list[p.ServerMessage]:
        """Answer one sync message (``hello`` or ``update``); other kinds are the room's.

        Returns the messages to broadcast. Raises :class:`ProtocolError` for a version vector
        or update that Loro cannot decode; the document is then unchanged.
        """
        if isinstance(message, p.Hello):
            return [self.welcome(message.view, message.version)]
        if isinstance(message, p.ClientUpdate):
            imported = self.import_updates(message.updates)
            out: list[p.ServerMessage] = [
                p.ServerUpdate(origin=message.view, updates=message.updates, branch=self.branch)
            ]
            if imported.gap:
                # The view built on changes the kernel has not seen: ask it for everything
                # beyond the kernel's version (it answers with an ordinary update).
                out.append(self._welcome_for(message.view, b""))
            return out
        raise ProtocolError(f"{message.kind!r} is not a sync message")

    def welcome(self, view: p.ViewId, version: bytes) -> p.Welcome:
        """The ``welcome`` answering a ``hello`` that carried ``version`` (encoded vv)."""
        try:
            view_vv = VersionVector.decode(version)
        except BaseException as exc:  # loro raises BaseException subclasses
            raise ProtocolError(
                f"hello carried a version vector Loro cannot decode: {exc}"
            ) from None
        self.doc.commit()  # oplog_vv counts uncommitted ops: commit before exporting
        missing = self.doc.export(ExportMode.Updates(view_vv))
        return self._welcome_for(view, missing)

    def _welcome_for(self, view: p.ViewId, missing: bytes) -> p.Welcome:
        return p.Welcome(
            to=view,
            room=self.room,
            branch=self.branch,
            missing=missing,
            version=self.doc.oplog_vv.encode(),
            saved=self._saved_version().encode(),
        )

    def import_updates(self, updates: tuple[bytes, ...]) -> Imported:
        """Import update blobs from a view, all or nothing as far as this method can tell.

        Each blob is first decoded for its metadata (cheap), so garbage is refused before any
        of the batch is applied. Raises :class:`ProtocolError` if a blob cannot be imported.
        """
        changes = 0
        for blob in updates:
            try:
                meta = LoroDoc.decode_import_blob_meta(blob, False)
            except BaseException as exc:
                raise ProtocolError(f"an update blob could not be decoded: {exc}") from None
            changes += int(meta.change_num)
        try:
            status = self.doc.import_batch(list(updates))
        except BaseException as exc:
            raise ProtocolError(str(loro_error(exc, "import an update from a view"))) from None
        gap = status.pending is not None and not status.pending.is_empty
        nbytes = sum(len(b) for b in updates)
        self._on_imported(changes, nbytes)
        return Imported(changes=changes, nbytes=nbytes, gap=gap)
