"""Recovery: rebuild a room's document from the lake (latest snapshot + later updates)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from loro import ExportMode, LoroDoc

from ..errors import RecoveryError
from .lake import Lake

LOG = logging.getLogger("sqlrooms_nb")


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_room` loaded: ``last_seq`` (largest seq of the room/branch, the
    persister's ``start_seq``) and ``lake_version`` (DuckLake snapshot id the read saw: every
    row up to it is in the document; the persister tails from there)."""

    last_seq: int
    lake_version: int


def recover(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    *,
    warm: bool = True,
    at_snapshot: int | None = None,
) -> int:
    """:func:`recover_room`, returning only ``last_seq``."""
    return recover_room(lake, room, branch, doc, warm=warm, at_snapshot=at_snapshot).last_seq


def recover_room(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    *,
    warm: bool = True,
    at_snapshot: int | None = None,
) -> Recovered:
    """Load ``room``/``branch`` from ``lake`` into ``doc``; return :class:`Recovered`.

    ``doc`` should be empty (a fresh :func:`sqlrooms_nb.notebook.new_doc`); importing into a
    non-empty doc merges (CRDT import is idempotent). The latest snapshot is imported first,
    then every update it does not cover, in commit order, in one ``import_batch`` (see
    :meth:`Lake.load`). ``last_seq`` is 0 for a room never written.

    With ``warm`` (default) and a snapshot loaded, a daemon thread then pays Loro's lazy history
    decode (~240 ms per 100k ops) off the request path. ``at_snapshot`` recovers the room as
    the lake held it at that DuckLake snapshot id (see :meth:`Lake.load`).

    Raises :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be read, and
    :class:`~sqlrooms_nb.errors.RecoveryError` (naming the snapshot or update row) if Loro
    refuses a stored blob or the stored updates leave a gap (changes whose dependencies are
    missing). Runs on the calling thread.
    """
    stored = lake.load(room, branch, at_snapshot=at_snapshot)
    where = f"room {room!r} branch {branch!r} in {lake.location}"
    if stored.snapshot is not None:
        try:
            doc.import_(stored.snapshot)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise RecoveryError(
                f"the snapshot at seq {stored.snapshot_seq} of {where} cannot be loaded ({exc}); "
                "the lake was left unchanged: report this, or open the room under another branch"
            ) from exc
    if stored.updates:
        try:
            status = doc.import_batch(stored.updates)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise _find_bad_update(stored.updates, stored.update_seqs, where, exc) from exc
        pending = status.pending
        if pending is not None and not pending.is_empty:
            raise RecoveryError(
                f"the stored updates of {where} have a gap: changes {pending.inner()} (peer -> "
                "counter range) depend on changes that are not in the lake; the lake was left "
                "unchanged: another writer may still be writing them, try again"
            )
    if warm and stored.snapshot is not None:
        threading.Thread(
            target=_warm_history, args=(doc,), name=f"sqlrooms_nb-warm:{room}/{branch}", daemon=True
        ).start()
    return Recovered(last_seq=stored.last_seq, lake_version=stored.lake_version)


def _find_bad_update(
    updates: list[bytes], seqs: list[int], where: str, exc: BaseException
) -> RecoveryError:
    """Name the first update row Loro refuses on its own (the batch failed as a whole)."""
    for i, blob in enumerate(updates):
        try:
            LoroDoc.decode_import_blob_meta(blob, True)
        except BaseException as one:
            if isinstance(one, (KeyboardInterrupt, SystemExit)):
                raise
            seq = seqs[i] if i < len(seqs) else "?"
            return RecoveryError(
                f"the update at seq {seq} of {where} is corrupt ({one}); the lake was left "
                "unchanged: report this"
            )
    return RecoveryError(f"the stored updates of {where} cannot be loaded: {exc}")


def _warm_history(doc: LoroDoc) -> None:
    """Touch the history so that Loro decodes it now, not on the next import (any thread)."""
    try:
        doc.export(ExportMode.Updates(from_=doc.oplog_vv))
        doc.len_changes  # noqa: B018
    except BaseException:
        LOG.debug("[sqlrooms_nb] history warm-up failed", exc_info=True)
