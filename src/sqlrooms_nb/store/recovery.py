"""Recovery: rebuild a room's document from the lake (latest snapshot + later updates), then
replay the spill files a crashed kernel left for it (see :mod:`.spill`)."""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass, field

from loro import ID, ExportMode, Frontiers, LoroDoc, VersionVector

from ..errors import CorruptionError, RecoveryError, SpillError, StorageError
from .branches import MAIN, list_branches
from .checksums import describe_row
from .lake import Lake, RowId, StoredRoom
from .spill import Orphan, SpillDir

LOG = logging.getLogger("sqlrooms_nb")


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_room` loaded: ``last_seq`` (largest seq of the room/branch, the
    persister's ``start_seq``) and ``lake_version`` (DuckLake snapshot id the read saw: every
    row up to it is in the document; the persister tails from there).

    ``saved_version``: version vector of what the lake holds (the document before any spill
    replay; the persister's saved version), ``None`` if not recorded; ``spills``: the orphan
    spill files whose updates were imported, still locked: hand them to the persister, which
    removes them once a flush covers them.

    ``problems``: the damaged stored rows recovery passed over (see :func:`recover_room`),
    empty when all is well; ``complete``: whether the document holds everything the lake
    says the branch holds (always true without problems; with problems, false also when that
    cannot be told); ``missing``: ``{peer: (first counter, end counter)}`` of the changes the
    lake lists (its ``changes`` table) that the document lacks; ``report``: all that in
    words, with what to do ("" when there are no problems)."""

    last_seq: int
    lake_version: int
    saved_version: VersionVector | None = None
    spills: tuple[Orphan, ...] = ()
    problems: tuple[CorruptionError, ...] = ()
    complete: bool = True
    missing: dict[int, tuple[int, int]] = field(default_factory=dict)
    report: str = ""


def recover(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    *,
    warm: bool = True,
    at_snapshot: int | None = None,
) -> int:
    """:func:`recover_room`, returning only ``last_seq``; for readers that must not go on
    with a document that lacks changes (exports, ``at_saved``, compaction).

    Raises :class:`~sqlrooms_nb.errors.CorruptionError` (its message is
    :attr:`Recovered.report`) when damaged rows left changes missing; damage that lost nothing
    is only logged. Otherwise raises as :func:`recover_room`.
    """
    recovered = recover_room(lake, room, branch, doc, warm=warm, at_snapshot=at_snapshot)
    if not recovered.complete:
        first = recovered.problems[0]
        raise CorruptionError(
            recovered.report,
            room=room,
            branch=branch,
            table=first.table,
            writer=first.writer,
            seq=first.seq,
            lake_snapshot=first.lake_snapshot,
        )
    return recovered.last_seq


def recover_room(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    *,
    warm: bool = True,
    at_snapshot: int | None = None,
    spills: SpillDir | None = None,
) -> Recovered:
    """Load ``room``/``branch`` from ``lake`` into ``doc``; return :class:`Recovered`.

    ``doc`` should be empty (a fresh :func:`sqlrooms_nb.notebook.new_doc`); importing into a
    non-empty doc merges (CRDT import is idempotent). The latest snapshot is imported first,
    then every update it does not cover, in commit order, in one ``import_batch`` (see
    :meth:`Lake.load`). ``last_seq`` is 0 for a room never written.

    With ``warm`` (default) and a snapshot loaded, a daemon thread then pays Loro's lazy history
    decode (~240 ms per 100k ops) off the request path. ``at_snapshot`` recovers the room as
    the lake held it at that DuckLake snapshot id (see :meth:`Lake.load`).

    With ``spills`` (and no ``at_snapshot``), the spill files of this room/branch that no live
    kernel holds are then claimed and imported (:func:`replay_spills`); they are returned in
    ``Recovered.spills`` and ``Recovered.saved_version`` is what the lake alone holds.

    Damaged rows (see :mod:`.checksums`): a snapshot whose checksum does not match, that
    cannot be read or that Loro refuses is passed over for the next best one (and the updates
    that one does not cover); an ``updates`` row whose checksum does not match is left out,
    unless its update passes Loro's own check of its body (the damage is then in its version
    vectors, which recovery does not use), and one Loro refuses is left out too. Each is
    logged at ERROR and listed in :attr:`Recovered.problems`; the document's changes are then
    compared with what the lake says the branch holds (its ``changes`` rows, the version a
    branch was forked at, what a passed-over snapshot's ``version`` claims), and what it lacks
    is :attr:`Recovered.missing` (changes that depended on a left-out row stay pending inside
    Loro: they are not in the document and count as missing). When that cannot be told (a
    left-out row with no ``changes`` rows, an unreadable ``changes`` table or lineage) or the
    fork version is missing, the recovery is not :attr:`Recovered.complete` either. Nothing in
    the lake is changed.

    Raises :class:`~sqlrooms_nb.errors.StorageError` if the lake cannot be read, and
    :class:`~sqlrooms_nb.errors.RecoveryError` if Loro refuses the stored updates as a batch
    but none on its own, or the stored updates leave a gap (changes whose dependencies are
    missing) although no row is damaged. Runs on the calling thread.
    """
    where = f"room {room!r} branch {branch!r} in {lake.location}"
    stored, damage = _import_lake_rows(lake, room, branch, doc, at_snapshot, where)
    report = _report(where, damage)
    if report:
        LOG.error("[sqlrooms_nb] %s", report)
    saved_version = VersionVector.decode(doc.oplog_vv.encode())
    orphans = []
    if spills is not None and at_snapshot is None:
        orphans = replay_spills(doc, spills, where)
    if warm and stored.snapshot is not None:
        threading.Thread(
            target=_warm_history, args=(doc,), name=f"sqlrooms_nb-warm:{room}/{branch}", daemon=True
        ).start()
    return Recovered(
        problems=tuple(damage.problems),
        complete=damage.complete,
        missing=damage.missing,
        report=report,
        last_seq=stored.last_seq,
        lake_version=stored.lake_version,
        saved_version=saved_version,
        spills=tuple(orphans),
    )


def replay_spills(doc: LoroDoc, spills: SpillDir, where: str) -> list[Orphan]:
    """Claim the orphan spill files of ``spills`` and import their updates into ``doc``.

    Call after the lake's rows are in ``doc``. Updates are imported only when they apply
    cleanly (tried first on a fork of ``doc``: all files in one batch, else file by file until
    none more applies), so the document never gets changes stuck waiting for missing ones; a
    file that cannot apply (its base is not in the lake) is logged, left on disk and
    released. Import is idempotent: changes the lake already has add nothing. Returns the
    claimed files whose updates are in ``doc`` (still locked, ``version``/``changes`` set);
    files with no update are removed here. Never raises: a spill problem is logged, and the
    room opens from the lake.
    """
    try:
        claimed = spills.claim_orphans()
    except SpillError as exc:
        LOG.warning("[sqlrooms_nb] %s: spill files not replayed: %s", where, exc)
        return []
    waiting: list[Orphan] = []
    for orphan in claimed:
        if orphan.contents.problem is not None:
            LOG.warning(
                "[sqlrooms_nb] spill file %s of %s: %s (%s); the records before it are replayed",
                orphan.path,
                where,
                orphan.contents.problem,
                "a crash mid-append" if orphan.contents.torn else "damaged",
            )
        if orphan.contents.updates:
            waiting.append(orphan)
        else:
            orphan.remove()  # nothing in it but a header (or damage before any update)
    done: list[Orphan] = []
    while waiting:
        together = [blob for orphan in waiting for blob in orphan.contents.updates]
        if _import_if_clean(doc, together):
            done += waiting
            waiting = []
            break
        progress = [o for o in waiting if _import_if_clean(doc, o.contents.updates)]
        if not progress:
            break
        done += progress
        waiting = [o for o in waiting if o not in progress]
    for orphan in waiting:
        LOG.error(
            "[sqlrooms_nb] spill file %s of %s holds changes whose base is not in the lake; it "
            "was not replayed and is left on disk: report this",
            orphan.path,
            where,
        )
        orphan.release()
    kept: list[Orphan] = []
    for orphan in done:
        try:
            orphan.version = orphan.contents.version()
        except SpillError as exc:  # (it imported, so Loro decodes it: not expected)
            LOG.warning("[sqlrooms_nb] %s: %s", orphan.path, exc)
            orphan.release()
            continue
        orphan.changes = sum(
            int(LoroDoc.decode_import_blob_meta(blob, False).change_num)
            for blob in orphan.contents.updates
        )
        header = orphan.contents.header or {}
        LOG.warning(
            "[sqlrooms_nb] replayed %d changes of %s from the spill file %s, left by writer %s "
            "(pid %s on %s)",
            orphan.changes,
            where,
            orphan.path,
            header.get("writer"),
            header.get("pid"),
            header.get("host"),
        )
        kept.append(orphan)
    return kept


def _import_if_clean(doc: LoroDoc, blobs: list[bytes]) -> bool:
    """Import ``blobs`` into ``doc`` if they apply with nothing left pending (tried on a fork
    first); ``False`` (``doc`` untouched) otherwise."""
    try:
        probe = doc.fork()
        status = probe.import_batch(blobs)
        if status.pending is not None and not status.pending.is_empty:
            return False
        doc.import_batch(blobs)
    except BaseException as exc:  # loro raises BaseException subclasses
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        LOG.warning("[sqlrooms_nb] a spill update cannot be imported: %s", exc)
        return False
    return True


def _import_lake_rows(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    at_snapshot: int | None,
    where: str,
) -> tuple[StoredRoom, _Damage]:
    """Import the best snapshot and the updates it does not cover, passing over damaged rows
    (see :func:`recover_room`). Returns what was read and the damage (none: no problems)."""
    problems: dict[tuple[object, ...], CorruptionError] = {}
    claims: dict[tuple[object, ...], bytes | None] = {}  # passed-over snapshot -> its version
    refused: list[RowId] = []
    while True:
        stored = lake.load(room, branch, at_snapshot=at_snapshot, skip_snapshots=refused)
        for problem in stored.problems:
            problems.setdefault(problem.key, problem)
        snapshot_problems = [e for e in stored.problems if e.table == "snapshots"]
        for problem, claim in zip(snapshot_problems, stored.passed_over, strict=True):
            claims.setdefault(problem.key, claim)
        if stored.snapshot is None or stored.snapshot_row is None:
            break
        try:
            doc.import_(stored.snapshot)
            break
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            problem = _refused(room, branch, stored.snapshot_row, exc)
            problems.setdefault(problem.key, problem)
            claims.setdefault(problem.key, stored.snapshot_version)
            refused.append(stored.snapshot_row)  # read again: the next best snapshot
    pending = None
    updates, update_rows = list(stored.updates), list(stored.update_rows)
    for row, blob in stored.salvage:
        # One checksum covers all of a row's blobs: the damage may be in its version vectors,
        # which recovery does not use. Loro checks its own update body: if that passes, the
        # update is used (and the row still reported).
        if _loro_accepts(blob):
            updates.append(blob)
            update_rows.append(row)
            key = (room, branch, row.table, row.writer, row.seq, row.lake_snapshot)
            found = problems.get(key)
            if found is not None:
                problems[key] = _with_note(
                    found, "its Loro update passes Loro's own checksum, so it was used"
                )
    if updates:
        try:
            status = doc.import_batch(updates)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            # Leave out the rows Loro refuses on their own (its blobs carry a checksum of their
            # body: rows written before lake layout 5 are still checked that way).
            sound = []
            for blob, row in zip(updates, update_rows, strict=True):
                try:
                    LoroDoc.decode_import_blob_meta(blob, True)
                    sound.append(blob)
                except BaseException as one:
                    if isinstance(one, (KeyboardInterrupt, SystemExit)):
                        raise
                    problem = _refused(room, branch, row, one)
                    problems.setdefault(problem.key, problem)
            if len(sound) == len(updates):
                raise RecoveryError(
                    f"the stored updates of {where} cannot be loaded: {exc}"
                ) from exc
            try:
                status = doc.import_batch(sound)
            except BaseException as again:
                if isinstance(again, (KeyboardInterrupt, SystemExit)):
                    raise
                raise RecoveryError(
                    f"the stored updates of {where} cannot be loaded: {again}"
                ) from again
        if status.pending is not None and not status.pending.is_empty:
            pending = status.pending
    if not problems:
        if pending is not None:
            raise RecoveryError(
                f"the stored updates of {where} have a gap: changes {pending.inner()} (peer -> "
                "counter range) depend on changes that are not in the lake; the lake was left "
                "unchanged: another writer may still be writing them, try again"
            )
        return stored, _Damage()
    return stored, _measure(lake, room, branch, doc, stored, list(problems.values()), claims)


@dataclass
class _Damage:
    """Damaged rows of one recovery and what they cost (see :class:`Recovered`);
    ``unknown``: why it cannot be told whether something is missing."""

    problems: list[CorruptionError] = field(default_factory=list)
    missing: dict[int, tuple[int, int]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unknown


def _measure(
    lake: Lake,
    room: str,
    branch: str,
    doc: LoroDoc,
    stored: StoredRoom,
    problems: list[CorruptionError],
    claims: dict[tuple[object, ...], bytes | None],
) -> _Damage:
    """What ``doc`` lacks of what the lake says the branch holds: every change its
    ``changes`` table lists, the version a branch was forked at (its lineage row: a fork's
    first snapshot is the only row holding what came before), and what each passed-over
    snapshot claimed (its ``version``, when readable). Every snapshot this package writes holds
    no more than those (its changes came through ``updates`` rows, or from the fork)."""
    damage = _Damage(problems=problems)
    have = doc.oplog_vv  # (pending changes are not in it: they count as missing)
    left_out = [(e.writer, e.seq) for e in problems if e.table == "updates" and e.seq is not None]
    try:
        ends, listed = lake.expected_changes(
            room, branch, left_out, at_snapshot=stored.lake_version
        )
    except StorageError as exc:
        damage.unknown.append(f"the lake's changes table cannot be read ({exc})")
        ends, listed = {}, set(left_out)
    for peer, end in ends.items():
        if end > 0 and not have.includes_id(ID(peer, end - 1)):
            last = have.get_last(peer)
            damage.missing[peer] = (0 if last is None else int(last) + 1, end)
    for writer, seq in left_out:
        if (writer, seq) not in listed:
            damage.unknown.append(f"the changes table lists nothing for writer {writer} seq {seq}")
    fork = _fork_frontiers(lake, room, branch, damage)
    if fork is not None and doc.frontiers_to_vv(fork) is None:
        damage.unknown.append(f"it lacks the version branch {branch!r} was forked at")
    for problem in problems:
        claim = claims.get(problem.key)
        if problem.table != "snapshots" or claim is None:
            continue  # (an unreadable claim: the changes table and the fork say enough)
        try:
            claimed = VersionVector.decode(claim)
        except BaseException as exc:  # loro raises BaseException subclasses
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            continue  # (a damaged version blob: as above)
        for span in claimed.sub_iter(have):  # what it held that the document lacks
            start, end = int(span.counter.start), int(span.counter.end)
            if end > start:
                old = damage.missing.get(int(span.peer), (start, end))
                damage.missing[int(span.peer)] = (min(old[0], start), max(old[1], end))
    return damage


def _fork_frontiers(lake: Lake, room: str, branch: str, damage: _Damage) -> Frontiers | None:
    """The frontiers ``branch`` was forked at (``None`` for ``main`` or a branch without a
    lineage row); an unreadable one is noted in ``damage.unknown``."""
    if branch == MAIN:
        return None
    try:
        lineage = [b for b in list_branches(lake, room) if b.name == branch]
    except StorageError as exc:
        damage.unknown.append(f"the branch lineage cannot be read ({exc})")
        return None
    if not lineage or not lineage[0].fork_version:
        return None
    text = lineage[0].fork_version
    try:  # a version id: url-safe base64 of encoded frontiers (see sqlrooms_nb.history)
        return Frontiers.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except BaseException as exc:  # binascii.Error, or loro's BaseException subclasses
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        damage.unknown.append(f"the version branch {branch!r} was forked at is unreadable")
        return None


def _loro_accepts(blob: bytes) -> bool:
    """Whether Loro's own checksum of an update's body matches (it does not cover the
    header's unused bytes, which carry nothing)."""
    try:
        LoroDoc.decode_import_blob_meta(blob, True)
    except BaseException as exc:  # loro raises BaseException subclasses
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False
    return True


def _with_note(error: CorruptionError, note: str) -> CorruptionError:
    """``error`` with ``note`` added to its message (same row identity)."""
    return CorruptionError(
        f"{error}; {note}",
        room=error.room,
        branch=error.branch,
        table=error.table,
        writer=error.writer,
        seq=error.seq,
        lake_snapshot=error.lake_snapshot,
    )


def _refused(room: str, branch: str, row: RowId, exc: BaseException) -> CorruptionError:
    """The error naming a stored row whose bytes Loro refuses."""
    what = describe_row(room, branch, row.table, row.writer, row.seq, row.lake_snapshot)
    return CorruptionError(
        f"{what} cannot be loaded: Loro refuses it ({exc})",
        room=room,
        branch=branch,
        table=row.table,
        writer=row.writer,
        seq=row.seq,
        lake_snapshot=row.lake_snapshot,
    )


def _report(where: str, damage: _Damage) -> str:
    """The damage of one recovery in words, with what to do ("" without problems)."""
    problems, missing = damage.problems, damage.missing
    if not problems:
        return ""
    rows = "; ".join(str(p) for p in problems)
    head = f"{where}: {len(problems)} stored row(s) damaged and passed over ({rows})."
    if not missing and not damage.unknown:
        return (
            f"{head} Nothing is missing: the room was rebuilt from the other rows (an earlier "
            "snapshot and the update rows); the lake was left unchanged, and the next snapshot "
            "written makes later opens read sound rows only."
        )
    lacks = [*damage.unknown]
    if missing:
        spans = ", ".join(f"peer {peer} counters {a}..{b - 1}" for peer, (a, b) in missing.items())
        lacks.insert(
            0, f"{sum(b - a for a, b in missing.values())} changes the lake lists ({spans})"
        )
    return (
        f"{head} The room is INCOMPLETE: {'; '.join(lacks)}. It shows what the other rows hold; "
        "edits that built on missing changes wait inside the document. No snapshot is written "
        "while this lasts, so the damage stays visible and reported at every open. To get "
        "the changes back: a kernel or browser tab that still has this room open holds them "
        "and sends them when it syncs (keep it open); otherwise restore the lake from a "
        "backup. The lake was left unchanged."
    )


def _warm_history(doc: LoroDoc) -> None:
    """Touch the history so that Loro decodes it now, not on the next import (any thread)."""
    try:
        doc.export(ExportMode.Updates(from_=doc.oplog_vv))
        doc.len_changes  # noqa: B018
    except BaseException:
        LOG.debug("[sqlrooms_nb] history warm-up failed", exc_info=True)
