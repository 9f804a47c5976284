"""One branch of a room as this kernel holds it: its Loro document, writer, sync hub and results.

A :class:`~sqlrooms_nb.room.SqlRoom` is ``{branch name -> Replica}``: it opens a replica when
the Python API or a view first needs that branch, and closes them all on close. The replica
owns the one fan-out path of its document: kernel commits arrive through its
:class:`~sqlrooms_nb.relay.LocalRelay` (at once for API edits, within 20 ms for direct ones),
imports from views through the hub; both go to the writer and, through the
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
from .errors import CorruptionError, StorageError
from .relay import LocalRelay
from .store import FlushPolicy, Lake, Persister, recover_room
from .store.config import spill_root
from .store.persister import Outage
from .store.spill import SpillDir
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
        read_only: the writer writes nothing (a read-only room); it still follows the rows
            other kernels write.

    Attributes: ``doc``, ``hub`` (:class:`SyncHub`), ``persister``, ``results`` (the latest
    ``result``/``error`` per cell id, replayed to views that join), ``change_stats`` (history
    statistics cache, per change span), ``change_index`` (the document's changes in causal
    order, kept up to date incrementally), ``problems`` (damaged stored rows met by recovery or
    by tailing other writers' rows, :class:`~sqlrooms_nb.errors.CorruptionError`, empty when
    all is well) and ``report`` (them in words, with what was done and what to do; "" when
    none). A branch recovered with changes missing writes no snapshot (it would hide the loss).

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
        read_only: bool = False,
    ) -> None:
        self.room = room
        self.branch = branch
        self._broadcast = broadcast
        # Unsaved changes go to a local spill file while the lake cannot be written; a crashed
        # kernel's spill files for this branch are replayed here (see store/spill.py). A
        # read-only replica writes nothing, so it leaves them to a writer.
        spills = None if read_only else SpillDir(spill_root(), lake.config.identity, room, branch)
        recovered = None
        if doc is None:
            self.doc = nb.new_doc()
            recovered = recover_room(lake, room, branch, self.doc, spills=spills)
            last_seq, lake_version = recovered.last_seq, recovered.lake_version
        else:  # a new branch: its seq-0 snapshot was the only row
            self.doc, last_seq, lake_version = doc, 0, 0
        self.problems: list[CorruptionError] = list(recovered.problems) if recovered else []
        self.report = recovered.report if recovered else ""
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
            spill=spills.writer_file(str(self.doc.peer_id)) if spills is not None else None,
            orphans=recovered.spills if recovered is not None else (),
            saved_version=recovered.saved_version if recovered is not None else None,
            on_outage=self._on_outage,
            read_only=read_only,
            # Damage: no snapshot while changes are missing; a fresh one when nothing is.
            snapshots=recovered is None or recovered.complete,
            snapshot_now=bool(self.problems),
        )
        self.hub = SyncHub(
            self.doc,
            room,
            branch,
            saved_version=lambda: self.persister.saved_version,
            on_imported=self._on_imported,
        )
        # Kernel-made commits (the API or direct edits on room.doc) enter the fan-out here.
        self._local = LocalRelay(self.doc, lock, self._on_local_update)

    def close(self, timeout: float | None) -> None:
        """Flush, snapshot and stop the writer (raises :class:`StorageError` if the final
        flush failed); the subscription is dropped whatever happens."""
        try:
            self.doc.commit()
            self._local.close()
        finally:
            self.persister.close(timeout)

    # --- fan-out callbacks ---------------------------------------------------------------------

    def relay_local(self) -> None:
        """Fan out this kernel's commits now (the API calls it after each edit), rather than
        at the next tick of the relay."""
        self._local.relay()

    def _on_local_update(self, update: bytes, changes: int) -> None:
        """Kernel commits, relayed: to the writer and every view. Never raises."""
        try:
            self.persister.notify(max(changes, 1), len(update))
            self._broadcast([p.ServerUpdate(origin=None, updates=(update,), branch=self.branch)])
        except BaseException:
            LOG.exception("[sqlrooms_nb] could not fan out a kernel change")

    def _on_remote(self, updates: list[bytes]) -> None:
        """Rows another kernel wrote, now in the document: relay them to this kernel's views."""
        self._broadcast([p.ServerUpdate(origin=None, updates=tuple(updates), branch=self.branch)])

    def _on_imported(self, changes: int, nbytes: int) -> None:
        self.persister.notify(max(changes, 1), nbytes)

    def _on_saved(self, version: VersionVector) -> None:
        self._broadcast([p.Saved(version=version.encode(), branch=self.branch)])

    def outage_messages(self) -> list[p.ServerMessage]:
        """For a view that joins: the outage state (a ``saved`` with ``lake: "unreachable"``)
        while the lake cannot be written, else nothing."""
        outage = self.persister.outage
        return [] if outage is None else [self._outage_message(outage)]

    def _on_outage(self, outage: Outage) -> None:
        self._broadcast([self._outage_message(outage)])

    def _outage_message(self, outage: Outage) -> p.Saved:
        return p.Saved(
            version=outage.saved_version,
            branch=self.branch,
            lake="unreachable",
            kept=outage.kept_changes,
            unkept=outage.unkept_changes,
        )

    def damage_messages(self, view: p.ViewId | None) -> list[p.ServerMessage]:
        """An ``error`` (code ``corrupt``) telling ``view`` about :attr:`problems`, for its
        hello; none when there are no problems."""
        if not self.problems:
            return []
        return [p.Error(code="corrupt", message=self.report, to=view, branch=self.branch)]

    def _on_storage_error(self, error: StorageError) -> None:
        if isinstance(error, CorruptionError) and all(e.key != error.key for e in self.problems):
            self.problems.append(error)  # (tailing logged it at ERROR)
            self.report = f"{self.report} {error}".strip()
        LOG.warning("[sqlrooms_nb] room %s branch %s: %s", self.room, self.branch, error)
        self._broadcast([p.Error(code=error.code, message=str(error), branch=self.branch)])
