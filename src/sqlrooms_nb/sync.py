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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
            return self._replies(message, self.import_updates(message.updates))
        raise ProtocolError(f"{message.kind!r} is not a sync message")

    def handle_updates(self, messages: Sequence[p.ClientUpdate]) -> list[p.ServerMessage]:
        """Answer several ``update`` messages (from any views) with **one** Loro import.

        What :meth:`handle` returns for each message, concatenated in message order; a message
        whose blobs cannot be decoded gets a ``protocol`` error (to its view) instead of
        raising, and changes nothing, while the others go in. One ``import_batch`` of n blobs
        costs about one import when edits are concurrent (see :mod:`sqlrooms_nb.inbox`).
        """
        out: list[p.ServerMessage] = []
        decoded: list[tuple[p.ClientUpdate, list[_Blob]]] = []
        for message in messages:
            try:
                decoded.append((message, _decode_blobs(message.updates)))
            except ProtocolError as exc:
                out.append(p.Error(code=exc.code, message=str(exc), to=message.view))
        imports = self._import_groups([blobs for _m, blobs in decoded])
        for (message, _blobs), imported in zip(decoded, imports, strict=True):
            out.extend(self._replies(message, imported))
        return out

    def _replies(self, message: p.ClientUpdate, imported: Imported) -> list[p.ServerMessage]:
        out: list[p.ServerMessage] = []
        if imported.applied:
            out.append(
                p.ServerUpdate(origin=message.view, updates=imported.applied, branch=self.branch)
            )
        if imported.gap:
            error = ResyncError(
                f"{len(imported.gaps) or 'an'} update(s) of this view depend on changes the "
                "kernel does not have (an earlier update was lost or refused); they were not "
                "imported: the view re-sends them after a new handshake"
            )
            out.append(
                p.Error(code=error.code, message=str(error), to=message.view, branch=self.branch)
            )
        if imported.error is not None:
            out.append(p.Error(code=ProtocolError.code, message=imported.error, to=message.view))
        return out

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
        blob raises :class:`ProtocolError` before any of the batch is applied. Then a blob is
        imported only if the document already has what it builds on (see
        :meth:`_import_groups`), so a blob with missing dependencies never enters Loro's
        pending queue; it is returned in ``gaps``. A blob whose changes the document already
        has is skipped (not relayed again). Raises :class:`ProtocolError` if Loro refuses a blob
        that passed these checks and nothing was imported before it; when some blobs were,
        they are reported to ``on_imported`` and returned with ``error`` set.
        """
        imported = self._import_groups([_decode_blobs(updates)])[0]
        if imported.error is not None and not imported.applied:
            raise ProtocolError(imported.error)
        return imported

    def _import_groups(self, groups: list[list[_Blob]]) -> list[Imported]:
        """Import the blobs of several messages (a group each) in one ``import_batch``.

        A blob goes in when what it builds on is in the document or in blobs accepted before
        it: its start version vector (``partial_start_vv``) is covered, and, when it builds on
        the document alone, its start frontiers are known to the document. Blobs are taken in
        order of their start counters, in passes until one accepts nothing (a view's blobs are
        its own consecutive updates, so a shuffled batch still goes in). A blob that builds on
        another of the batch is accepted on its version vector; should Loro still leave ops
        pending (a dependency on another peer that no check could see), the groups holding such
        blobs report a gap and their views resync. If Loro refuses the batch, the blobs are
        imported one at a time so that only the faulty group reports the error.
        """
        doc_vv = self.doc.oplog_vv
        seen = VersionVector.decode(doc_vv.encode())
        waiting = sorted(
            ((g, blob) for g, blobs in enumerate(groups) for blob in blobs),
            key=lambda item: item[1].start_sum,
        )
        accepted: list[tuple[int, _Blob]] = []
        chained: set[int] = set()
        while True:
            deferred = []
            for g, blob in waiting:
                meta = blob.meta
                if seen.includes_vv(meta.partial_end_vv):
                    continue  # nothing new in it (a duplicate)
                if not seen.includes_vv(meta.partial_start_vv):
                    deferred.append((g, blob))
                    continue
                if not doc_vv.includes_vv(meta.partial_start_vv):
                    chained.add(g)  # builds on a blob of this batch
                elif self.doc.frontiers_to_vv(meta.start_frontiers) is None:
                    deferred.append((g, blob))
                    continue
                accepted.append((g, blob))
                seen.merge(meta.partial_end_vv)
            if len(deferred) == len(waiting):
                break
            waiting = deferred
        failures: dict[int, str] = {}
        pending = False
        if len(accepted) == 1:
            try:
                status = self.doc.import_(accepted[0][1].data)
                pending = status.pending is not None and not status.pending.is_empty
            except BaseException as exc:  # loro raises BaseException subclasses
                failures[accepted[0][0]] = str(loro_error(exc, "import an update from a view"))
                accepted = []
        elif accepted:
            try:
                status = self.doc.import_batch([blob.data for _g, blob in accepted])
                pending = status.pending is not None and not status.pending.is_empty
            except BaseException:
                accepted, failures, pending = self._import_one_by_one(accepted)
        applied: list[list[bytes]] = [[] for _ in groups]
        changes = [0] * len(groups)
        for g, blob in accepted:
            applied[g].append(blob.data)
            changes[g] += int(blob.meta.change_num)
        if accepted:
            self._on_imported(sum(changes), sum(len(b.data) for _g, b in accepted))
        gaps: list[list[bytes]] = [[] for _ in groups]
        for g, blob in waiting:  # what the last pass could not accept
            gaps[g].append(blob.data)
        suspects = chained or set(range(len(groups)))
        return [
            Imported(
                changes=changes[g],
                nbytes=sum(len(b) for b in applied[g]),
                gap=bool(gaps[g]) or (pending and g in suspects),
                applied=tuple(applied[g]),
                gaps=tuple(gaps[g]) if g not in failures else (),
                error=failures.get(g),
            )
            for g in range(len(groups))
        ]

    def _import_one_by_one(
        self, accepted: list[tuple[int, _Blob]]
    ) -> tuple[list[tuple[int, _Blob]], dict[int, str], bool]:
        """After Loro refused a batch: each blob on its own, a group stopping at its first
        refused blob (the rest of that group is not tried). Returns what went in, each failed
        group's error, and whether ops were left pending."""
        done: list[tuple[int, _Blob]] = []
        failures: dict[int, str] = {}
        pending = False
        for g, blob in accepted:
            if g in failures:
                continue
            if self.doc.oplog_vv.includes_vv(blob.meta.partial_end_vv):
                done.append((g, blob))  # went in before the batch failed
                continue
            try:
                status = self.doc.import_(blob.data)
            except BaseException as exc:  # loro raises BaseException subclasses
                failures[g] = str(loro_error(exc, "import an update from a view"))
                continue
            pending = pending or (status.pending is not None and not status.pending.is_empty)
            done.append((g, blob))
        return done, failures, pending


@dataclass(frozen=True)
class _Blob:
    """One update blob of a view with its decoded metadata; ``start_sum`` orders a view's
    consecutive blobs causally (the sum of the start counters of its peers)."""

    data: bytes
    meta: Any
    start_sum: int


def _decode_blobs(updates: Sequence[bytes]) -> list[_Blob]:
    """Decode every blob's metadata (checksum included). Raises :class:`ProtocolError` for a
    blob Loro cannot decode, or one that is neither updates nor a snapshot."""
    out = []
    for blob in updates:
        try:
            meta = LoroDoc.decode_import_blob_meta(blob, True)
        except BaseException as exc:  # loro raises BaseException subclasses
            raise ProtocolError(f"an update blob could not be decoded: {exc}") from None
        if meta.mode not in (EncodedBlobMode.Updates, EncodedBlobMode.Snapshot):
            raise ProtocolError(
                f"an update message may only carry Loro updates or snapshots, not {meta.mode}"
            )
        start = sum(end for _s, end in meta.partial_start_vv.to_spans().inner().values())
        out.append(_Blob(bytes(blob), meta, start))
    return out
