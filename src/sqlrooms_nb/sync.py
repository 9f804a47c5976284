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

from loro import EncodedBlobMode, ExportMode, LoroDoc, VersionVector

from . import protocol as p
from .errors import ProtocolError, ResyncError, loro_error


@dataclass(frozen=True)
class Imported:
    """What importing a view's update blobs did.

    ``applied``: the blobs imported (in import order) that brought changes the document did not
    have; ``gaps``: the blobs refused because they depend on changes the document lacks (not
    imported: the document and Loro's pending queue are unchanged by them); ``changes`` and
    ``nbytes``: Loro changes and bytes in ``applied``; ``gap``: whether any blob was refused,
    or an import still left ops pending (a dependency the pre-check could not see); ``error``:
    why Loro refused a blob after others of the batch went in (the rest were not tried).
    """

    changes: int
    nbytes: int
    gap: bool
    applied: tuple[bytes, ...] = ()
    gaps: tuple[bytes, ...] = ()
    error: str | None = None


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

        Returns the messages to broadcast: for an ``update``, the blobs that brought new
        changes relayed to every view (none if none did) and, when some blobs depend on changes
        the kernel lacks, a ``resync`` error to the view (those blobs are not imported; the
        view re-sends them after a new handshake). Raises :class:`ProtocolError` for a version
        vector or update that Loro cannot decode; the document is then unchanged.
        """
        if isinstance(message, p.Hello):
            return [self.welcome(message.view, message.version)]
        if isinstance(message, p.ClientUpdate):
            imported = self.import_updates(message.updates)
            out: list[p.ServerMessage] = []
            if imported.applied:
                out.append(
                    p.ServerUpdate(
                        origin=message.view, updates=imported.applied, branch=self.branch
                    )
                )
            if imported.gap:
                error = ResyncError(
                    f"{len(imported.gaps) or 'an'} update(s) of this view depend on changes the "
                    "kernel does not have (an earlier update was lost or refused); they were not "
                    "imported: the view re-sends them after a new handshake"
                )
                out.append(
                    p.Error(
                        code=error.code, message=str(error), to=message.view, branch=self.branch
                    )
                )
            if imported.error is not None:
                out.append(
                    p.Error(code=ProtocolError.code, message=imported.error, to=message.view)
                )
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
        """Import update blobs from a view (any thread; the caller holds the room's lock).

        Every blob's metadata is decoded first, checksum included, so garbage or a corrupted
        blob raises :class:`ProtocolError` before any of the batch is applied. Then each blob is
        imported only if the document already has what it builds on — its start version vector
        (``partial_start_vv``) and start frontiers, as ``decode_import_blob_meta`` reports them,
        are covered by the document's oplog — so a blob with missing dependencies never enters
        Loro's pending queue; it is returned in ``gaps``. Blobs are tried in order of their
        start counters, in passes until one imports nothing (a shuffled batch still goes in).
        A blob whose changes the document already has is skipped (not relayed again). Raises
        :class:`ProtocolError` if Loro refuses a blob that passed these checks and nothing was
        imported before it; when some blobs were, they are reported to ``on_imported`` and
        returned with ``error`` set.
        """
        metas = []
        for blob in updates:
            try:
                meta = LoroDoc.decode_import_blob_meta(blob, True)
            except BaseException as exc:  # loro raises BaseException subclasses
                raise ProtocolError(f"an update blob could not be decoded: {exc}") from None
            if meta.mode not in (EncodedBlobMode.Updates, EncodedBlobMode.Snapshot):
                raise ProtocolError(
                    f"an update message may only carry Loro updates or snapshots, not {meta.mode}"
                )
            metas.append((blob, meta))
        applied: list[bytes] = []
        changes = 0
        pending = False
        waiting = metas
        # A view's blobs are its own consecutive updates: ordering by start counters puts them in
        # causal order, so the passes below take one round however the batch was shuffled.
        waiting.sort(
            key=lambda m: sum(end for _s, end in m[1].partial_start_vv.to_spans().inner().values())
        )
        deferred = waiting
        try:
            for _attempt in range(len(waiting)):
                deferred = []
                for blob, meta in waiting:
                    vv = self.doc.oplog_vv
                    if vv.includes_vv(meta.partial_end_vv):
                        continue  # nothing new in it (a duplicate)
                    ready = vv.includes_vv(meta.partial_start_vv) and (
                        self.doc.frontiers_to_vv(meta.start_frontiers) is not None
                    )
                    if not ready:
                        deferred.append((blob, meta))
                        continue
                    status = self.doc.import_(blob)
                    pending = pending or (
                        status.pending is not None and not status.pending.is_empty
                    )
                    applied.append(blob)
                    changes += int(meta.change_num)
                if len(deferred) == len(waiting):
                    break
                waiting = deferred
            else:
                deferred = waiting
        except BaseException as exc:
            failure: str | None = str(loro_error(exc, "import an update from a view"))
            deferred = []
        else:
            failure = None
        if not applied:
            if failure is not None:
                raise ProtocolError(failure)
        else:
            self._on_imported(changes, sum(len(b) for b in applied))
        gaps = tuple(blob for blob, _meta in deferred)
        return Imported(
            changes=changes,
            nbytes=sum(len(b) for b in applied),
            gap=bool(gaps) or pending,
            applied=tuple(applied),
            gaps=gaps,
            error=failure,
        )
