"""One branch of a room as this kernel holds it: its Loro document, writer, sync hub and results.

A :class:`~sqlrooms_nb.room.SqlRoom` is ``{branch name -> Replica}``: it opens a replica when
the Python API or a view first needs that branch, and closes them all on close. The replica
owns the one fan-out path of its document: kernel commits arrive through Loro's local-update
subscription, imports from views through the hub; both go to the writer and, through the
room's ``broadcast``, to every view (messages carry the branch, so views on other branches
ignore them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from loro import LoroDoc, VersionVector

from . import history as hist
from . import notebook as nb
from . import protocol as p
from .errors import StorageError
from .store import FlushPolicy, Lake, Persister, recover_room
from .sync import SyncHub

LOG = logging.getLogger("sqlrooms_nb")

Broadcast = Callable[[Sequence[p.ServerMessage]], None]


class Replica:
    """The kernel's copy of one (room, branch) document and everything attached to it.

    Args:
        lake, room, branch: where the branch lives.
        broadcast: sends server messages to every view (the room's transports).
        lock: the room's edit lock; the writer holds it while reading the document.
        author: recorded on this kernel's message-less changes (see :class:`Persister`).
        policy: the writer's flush policy.
        doc: a document to adopt (a new branch's fork, whose first snapshot is already in
            the lake as seq 0); ``None`` recovers the branch from the lake.

    Attributes: ``doc``, ``hub`` (:class:`SyncHub`), ``persister``, ``results`` (the latest
    ``result``/``error`` per cell id, replayed to views that join), ``change_stats`` (history
    statistics cache, per change span), ``change_index`` (the document's changes in causal
    order, kept up to date incrementally).

    Raises :class:`StorageError` / :class:`~sqlrooms_nb.errors.RecoveryError` when the branch
    cannot be read from the lake.
    """

    def __init__(
        self,
        lake: Lake,
        room: str,
        branch: str,
        *,
        broadcast: Broadcast,
        lock: threading.RLock,
        author: str,
        policy: FlushPolicy,
        doc: LoroDoc | None = None,
    ) -> None:
        self.room = room
        self.branch = branch
        self._broadcast = broadcast
        if doc is None:
            self.doc = nb.new_doc()
            recovered = recover_room(lake, room, branch, self.doc)
            last_seq, lake_version = recovered.last_seq, recovered.lake_version
        else:  # a new branch: its seq-0 snapshot was the only row
            self.doc, last_seq, lake_version = doc, 0, 0
        self.results: dict[str, p.Result | p.Error] = {}
        self.change_stats: dict[tuple[int, int, int], hist.ChangeStats] = {}
        self.change_index = hist.ChangeIndex(self.doc, author)
        self.persister = Persister(
            lake,
            room,
            branch,
            self.doc,
            writer=str(self.doc.peer_id),
            start_seq=last_seq,
            policy=policy,
            on_saved=self._on_saved,
            on_error=self._on_storage_error,
            # exporting commits an open transaction: wait briefly for API edits to finish
            doc_lock=lock,
            author=author,
            lake_version=lake_version,
            on_remote=self._on_remote,
        )
        self.hub = SyncHub(
            self.doc,
            room,
            branch,
            saved_version=lambda: self.persister.saved_version,
            on_imported=self._on_imported,
        )
        # Kernel-made commits (the API or direct edits on room.doc) enter the fan-out here.
        self._local_updates = self.doc.subscribe_local_update(self._on_local_update)

    def close(self, timeout: float | None) -> None:
        """Flush, snapshot and stop the writer (raises :class:`StorageError` if the final
        flush failed); the subscription is dropped whatever happens."""
        try:
            self.doc.commit()
            self.persister.close(timeout)
        finally:
            self._local_updates.unsubscribe()

    # --- fan-out callbacks ---------------------------------------------------------------------

    def _on_local_update(self, update: bytes) -> bool:
        """Loro local-update subscription: a kernel commit. Must return True and never raise."""
        try:
            self.persister.notify(1, len(update))
            self._broadcast(
                [p.ServerUpdate(origin=None, updates=(bytes(update),), branch=self.branch)]
            )
        except BaseException:
            LOG.exception("[sqlrooms_nb] could not fan out a kernel change")
        return True

    def _on_remote(self, updates: list[bytes]) -> None:
        """Rows another kernel wrote, now in the document: relay them to this kernel's views."""
        self._broadcast([p.ServerUpdate(origin=None, updates=tuple(updates), branch=self.branch)])

    def _on_imported(self, changes: int, nbytes: int) -> None:
        self.persister.notify(max(changes, 1), nbytes)

    def _on_saved(self, version: VersionVector) -> None:
        self._broadcast([p.Saved(version=version.encode(), branch=self.branch)])

    def _on_storage_error(self, error: StorageError) -> None:
        LOG.warning("[sqlrooms_nb] room %s branch %s: %s", self.room, self.branch, error)
        self._broadcast([p.Error(code=error.code, message=str(error), branch=self.branch)])
