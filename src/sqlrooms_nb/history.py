"""The notebook's history, read from the Loro document: versions, edit sessions, diffs, restore.

A *version* is a Loro frontiers value; its public id is the frontiers' canonical encoding in
URL-safe base64 (no padding), so ids round-trip and are safe in URLs and HTML attributes.
The version of a change is the frontiers holding that change's last op: checking it out gives
the notebook with that change and everything it depended on.

*Edit sessions* group changes the way people think of "a version": consecutive changes (in
causal/Lamport order) by the same author with no gap longer than ``idle_gap_s`` (default
:data:`IDLE_GAP_S`). Each session reports its time span, author, cells touched and characters
added/removed (Unicode code points), computed from the changes' own ops
(``export_json_in_id_span``), one change at a time, cached by the caller.

Previews never check out the live document: :func:`cells_at` reads a ``fork_at`` copy, and
:class:`Previews` (what a room uses) checks out one of a few detached forks it keeps, the one
whose version is nearest the asked one, so a preview costs the ops between the two rather
than a whole ``fork_at``. Restore
(:func:`restore`) uses ``revert_to``, which records the way back as new ops on the live
document, so everyone sees it and it can itself be undone or restored away. Nothing here knows
about DuckDB or widgets.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from loro import ID, CounterSpan, ExportMode, Frontiers, IdSpan, LoroDoc, VersionVector

from . import notebook as nb
from .errors import ValidationError

IDLE_GAP_S = 60.0
"""A pause longer than this (seconds) between an author's changes starts a new edit session."""


@dataclass(frozen=True)
class Change:
    """One Loro change: ops ``counter_start`` (inclusive) to ``counter_end`` (exclusive) of
    ``peer``. ``time`` is seconds since the epoch as recorded by the committing replica
    (0 when it recorded none); ``author`` and ``note`` come from the change message
    (:func:`~sqlrooms_nb.notebook.split_change_message`; "" when none)."""

    peer: int
    counter_start: int
    counter_end: int
    lamport: int
    time: int
    author: str
    note: str = ""


@dataclass(frozen=True)
class ChangeStats:
    """What one change did: cells touched (ids, in first-touch order), code points added and
    removed in cell sources."""

    cells: tuple[str, ...]
    added: int
    removed: int


@dataclass(frozen=True)
class Version:
    """One edit session, named by the version at its end.

    ``id`` round-trips through :func:`parse_version`; ``time`` is when the session ended and
    ``start`` when it began (UTC); ``summary`` is a one-line description for people.
    """

    id: str
    time: datetime
    author: str
    summary: str
    start: datetime
    cells: tuple[str, ...]
    added: int
    removed: int
    changes: int


@dataclass(frozen=True)
class CellDiff:
    """How one cell differs between two versions.

    ``status``: ``added`` / ``removed`` (exists on one side only), ``moved`` (position changed,
    text and name equal), ``changed`` (text or name differs; it may also have moved).
    ``diff`` is a unified diff of the source ("" when the text is equal); ``index_a`` /
    ``index_b`` are 0-based positions (``None`` where the cell is absent).
    """

    id: str
    name: str
    status: Literal["added", "removed", "moved", "changed"]
    index_a: int | None
    index_b: int | None
    diff: str


# --- version ids ----------------------------------------------------------------------------


def version_id(frontiers: Frontiers) -> str:
    """The public id of a version: URL-safe base64 of ``frontiers.encode()``, unpadded."""
    return base64.urlsafe_b64encode(frontiers.encode()).rstrip(b"=").decode()


def current_version(doc: LoroDoc) -> str:
    """The id of the document's current (oplog) version."""
    return version_id(doc.oplog_frontiers)


def parse_version(doc: LoroDoc, version: str | Version) -> Frontiers:
    """Frontiers of a version id (or :class:`Version`) that ``doc`` contains.

    Raises :class:`ValidationError` if the id is not a version id, or names changes this
    document does not have (e.g. a version of another room).
    """
    text = version.id if isinstance(version, Version) else version
    if not isinstance(text, str) or len(text) > 4096:
        raise ValidationError(f"{text!r:.80} is not a version id (see room.history())")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        frontiers = Frontiers.decode(raw)
    except (binascii.Error, ValueError, BaseException) as exc:  # loro raises BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValidationError(f"{text!r:.80} is not a version id (see room.history())") from None
    if version_id(frontiers) != text:  # trailing bytes or another spelling: not one of ours
        raise ValidationError(f"{text!r:.80} is not a version id (see room.history())")
    if not _counters_valid(raw):  # Loro would panic below and poison the document for good
        raise ValidationError(f"{text!r:.80} is not a version id (see room.history())")
    if doc.frontiers_to_vv(frontiers) is None:  # names ops this document does not have
        raise ValidationError(
            f"version {text!r:.80} is not in this notebook's history (from another room or branch?)"
        )
    return frontiers


def _counters_valid(raw: bytes) -> bool:
    """Whether every id in encoded frontiers ``raw`` has a counter >= 0.

    Found by fuzzing: Loro 1.17 panics in ``frontiers_to_vv`` on a negative counter, and the
    panic poisons the document's lock, so every later call on it panics too. ``Frontiers`` has
    no accessor for its ids, so this reads the encoding (which ``decode`` accepted and the
    round trip in :func:`parse_version` matched): a varint count, then per id a varint peer and
    a zigzag varint counter (odd = negative).
    """
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while pos < len(raw):
            byte = raw[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ValueError("truncated varint")

    try:
        for _ in range(varint()):
            varint()  # peer
            if varint() & 1:  # zigzag: odd encodes a negative counter
                return False
    except ValueError:
        return False
    return pos == len(raw)


# --- changes and sessions -------------------------------------------------------------------


def changes(doc: LoroDoc, own_author: str = "") -> list[Change]:
    """Every change in the document, in causal order (Lamport, then peer).

    Walks each peer's counters with ``get_change``, so the cost is the number of changes,
    not of ops. ``own_author`` names the document's own peer's changes that carry no message
    (direct edits on ``room.doc``). :class:`ChangeIndex` keeps this list up to date instead.
    """
    out = _changes_between(doc, {}, own_author)
    out.sort(key=_causal)
    return out


def _causal(change: Change) -> tuple[int, int]:
    return (change.lamport, change.peer)


class ChangeIndex:
    """:func:`changes` of one document, kept up to date incrementally.

    Each :meth:`changes` call walks only the changes added since the previous call (per peer,
    from the counter it had reached), so listing the history of a 100k-change document costs
    its full walk (~340 ms) once, then milliseconds. Changes are immutable once made, so
    nothing cached goes stale, except that Loro may extend a peer's last change with later
    ops (changes merge within the merge interval): such a change is listed again, whole, in
    place of its shorter self. Thread-safe.
    """

    def __init__(self, doc: LoroDoc, own_author: str = "") -> None:
        self._doc = doc
        self._own_author = own_author
        self._ends: dict[int, int] = {}
        self._list: list[Change] = []
        self._lock = threading.Lock()

    def changes(self) -> list[Change]:
        """Every change, in causal order (a snapshot list, like :func:`changes`)."""
        with self._lock:
            new = _changes_between(self._doc, self._ends, self._own_author)
            if new:
                grown = {
                    (c.peer, c.counter_start)
                    for c in new
                    if c.counter_start < self._ends.get(c.peer, 0)
                }
                if grown:
                    self._list = [c for c in self._list if (c.peer, c.counter_start) not in grown]
                # Mostly appends at the end (new changes have the highest Lamport): timsort is
                # linear on such nearly-sorted input.
                self._list = self._list + new
                self._list.sort(key=_causal)
                for change in new:
                    self._ends[change.peer] = max(
                        self._ends.get(change.peer, 0), change.counter_end
                    )
            return self._list


def _changes_between(doc: LoroDoc, ends: dict[int, int], own_author: str) -> list[Change]:
    """The changes of ``doc`` beyond ``ends`` (peer -> counter reached), unsorted."""
    own = doc.peer_id
    out: list[Change] = []
    for peer, (first, end) in doc.oplog_vv.to_spans().inner().items():
        counter = max(int(first), ends.get(peer, 0))
        while counter < end:
            meta = doc.get_change(ID(peer, counter))
            if meta is None:
                break
            start = int(meta.id.counter)
            author, note = nb.split_change_message(meta.message)
            if not author and peer == own:
                author = own_author
            out.append(
                Change(
                    peer=peer,
                    counter_start=start,
                    counter_end=start + int(meta.len),
                    lamport=int(meta.lamport),
                    time=int(meta.timestamp),
                    author=author,
                    note=note,
                )
            )
            counter = start + int(meta.len)
    return out


def change_stats(doc: LoroDoc, change: Change, cell_of: dict[str, str]) -> ChangeStats:
    """Cells touched and code points added/removed by one change (from its JSON ops).

    ``cell_of`` maps container ids (``cid:...`` strings) to cell ids; see
    :func:`container_cells`.
    """
    span = IdSpan(change.peer, CounterSpan(change.counter_start, change.counter_end))
    data = json.loads(doc.export_json_in_id_span(span))
    cells: dict[str, None] = {}
    added = removed = 0
    for item in data if isinstance(data, list) else []:
        for op in item.get("ops", []):
            cid = cell_of.get(op.get("container", ""))
            if cid is not None:
                cells.setdefault(cid, None)
            content = op.get("content", {})
            if not op.get("container", "").endswith(":Text"):
                continue
            if content.get("type") == "insert" and isinstance(content.get("text"), str):
                added += len(content["text"])
            elif content.get("type") == "delete":
                removed += abs(int(content.get("len", 0)))
    return ChangeStats(tuple(cells), added, removed)


def container_cells(doc: LoroDoc) -> dict[str, str]:
    """Map ``cid:...`` container ids of each current cell (its map and its source text) to
    the cell's id. Deleted cells are not in it (their edits count toward no cell)."""
    out: dict[str, str] = {}
    cells = nb.cells_list(doc)
    for i in range(len(cells)):
        item = getattr(cells.get(i), "container", None)
        if item is None or not hasattr(item, "get"):
            continue
        cell_id = getattr(item.get("id"), "value", None)
        if not isinstance(cell_id, str):
            continue
        out[_cid(item.id)] = cell_id
        source = getattr(item.get("source"), "container", None)
        if source is not None:
            out[_cid(source.id)] = cell_id
    return out


def _cid(container: Any) -> str:
    """A container id in the ``cid:<counter>@<peer>:<Type>`` form of Loro's JSON export."""
    return f"cid:{container.counter}@{container.peer}:{container.container_type}"


def sessions(
    doc: LoroDoc,
    stats: Any,
    *,
    idle_gap_s: float = IDLE_GAP_S,
    limit: int | None = None,
    since: datetime | None = None,
    own_author: str = "",
    listed: list[Change] | None = None,
) -> list[Version]:
    """Edit sessions, newest first (see the module doc for the grouping rule).

    ``stats(change) -> ChangeStats`` gives one change's stats (the room caches them).
    ``limit`` caps the number returned (``None``: all); ``since`` keeps sessions that ended
    at or after it. ``own_author`` is passed to :func:`changes`; ``listed`` is that list when
    the caller has it already (e.g. from a :class:`ChangeIndex`). Only returned sessions
    have their stats computed.
    """
    groups: list[list[Change]] = []
    for change in changes(doc, own_author) if listed is None else listed:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and not last.note  # a noted change (a restore) is a session of its own
            and not change.note
            and last.author == change.author
            and change.time - last.time <= idle_gap_s
        ):
            groups[-1].append(change)
        else:
            groups.append([change])
    out: list[Version] = []
    # The version a session ends at is the document as of its last change in this order: every
    # change up to it (a Lamport-ordered prefix is causally closed), not only that change's own
    # past, so changes concurrent with it (another view typing, a merged branch) are included
    # and the newest session is the current version. Walking newest first, each session's
    # changes are taken off the version vector once it is listed.
    ends = {peer: end for peer, (_, end) in doc.oplog_vv.to_spans().inner().items()}
    for group in reversed(groups):
        end = datetime.fromtimestamp(group[-1].time, tz=timezone.utc)
        if since is not None and end < since:
            break
        vv = VersionVector()  # type: ignore[no-untyped-call]  # untyped in the stubs
        for peer, counter in ends.items():
            if counter > 0:
                vv.set_end(ID(peer, counter))
        out.append(_version(group, stats, doc.vv_to_frontiers(vv)))
        if limit is not None and len(out) >= limit:
            break
        for change in group:
            ends[change.peer] = min(ends[change.peer], change.counter_start)
    return out


def _version(group: list[Change], stats: Any, frontiers: Frontiers) -> Version:
    last = group[-1]
    per = [stats(c) for c in group]
    cells: dict[str, None] = {}
    for s in per:
        for cid in s.cells:
            cells.setdefault(cid, None)
    added = sum(s.added for s in per)
    removed = sum(s.removed for s in per)
    start = datetime.fromtimestamp(group[0].time, tz=timezone.utc)
    end = datetime.fromtimestamp(last.time, tz=timezone.utc)
    who = last.author or "someone"
    n = len(cells)
    if last.note:
        summary = f"{who} {last.note}"
    elif n:
        summary = f"{who} edited {n} cell{'s' if n != 1 else ''} (+{added} -{removed} chars)"
    else:
        summary = f"{who} changed the notebook's structure"
    return Version(
        id=version_id(frontiers),
        time=end,
        author=last.author,
        summary=summary,
        start=start,
        cells=tuple(cells),
        added=added,
        removed=removed,
        changes=len(group),
    )


# --- reading old versions -------------------------------------------------------------------


def cells_at(doc: LoroDoc, frontiers: Frontiers) -> list[nb.Cell]:
    """The cells as they were at ``frontiers``, read from a fork (the live doc is untouched)."""
    return nb.read_cells(doc.fork_at(frontiers))


PREVIEW_FORKS = 3
"""Detached forks a :class:`Previews` keeps at most (each holds a copy of the document)."""


class Previews:
    """The cells of ``doc`` at old versions, read from a few detached forks kept checked out.

    Loro's ``fork_at(v)`` checks the document out from its current version to ``v`` and back
    and encodes a snapshot of everything up to ``v``: on the 260k-op paper trace 30-180 ms,
    the more the further ``v`` is from now. A detached fork's ``checkout(v)`` costs only the
    ops between the version it shows and ``v``. So this keeps up to ``forks`` forks (made on
    demand, ~1 ms each: Loro shares nothing with the live doc but decodes lazily) and checks
    out the one whose version is nearest (in ops) the asked one; it stays there, so previews
    around a few places of the history (a history panel being browsed, the same version
    asked again) cost little. A new fork is made while there are fewer than ``forks`` and the
    nearest is further than ``spread`` of the history's ops away. Changes the live document
    received since are imported into the fork first (a detached doc's state does not move on
    import). Any thread; one preview at a time.
    """

    def __init__(self, doc: LoroDoc, forks: int = PREVIEW_FORKS, spread: float = 0.1) -> None:
        self.doc = doc
        self._max = max(1, int(forks))
        self._spread = spread
        self._forks: list[LoroDoc] = []
        self._lock = threading.Lock()

    def cells_at(self, frontiers: Frontiers) -> list[nb.Cell]:
        """The cells as they were at ``frontiers`` (a version of ``doc``; the live document is
        untouched). Raises ``ValueError`` (Loro) for frontiers ``doc`` does not have."""
        doc = self.doc
        target = doc.frontiers_to_vv(frontiers)
        if target is None:
            raise ValidationError("not a version of this notebook")
        with self._lock:
            fork = self._nearest(target, doc)
            live = doc.oplog_vv
            if not fork.oplog_vv.includes_vv(live):
                fork.import_(doc.export(ExportMode.Updates(from_=fork.oplog_vv)))
            fork.checkout(frontiers)
            return nb.read_cells(fork)

    def _nearest(self, target: VersionVector, doc: LoroDoc) -> LoroDoc:
        best = min(self._forks, key=lambda f: f.state_vv.distance_between(target), default=None)
        if best is not None and len(self._forks) >= self._max:
            return best
        if best is not None:
            ops = max(1, int(doc.len_ops))
            if best.state_vv.distance_between(target) <= self._spread * ops:
                return best
        fork = doc.fork()  # at the live version; checkout detaches it
        self._forks.append(fork)
        return fork


def diff_cells(a: Iterable[nb.Cell], b: Iterable[nb.Cell]) -> list[CellDiff]:
    """Per-cell differences from ``a`` to ``b`` (cells matched by id), in ``b``'s order then
    the removed ones in ``a``'s order. Equal cells in the same place are left out."""
    old = {c.id: (i, c) for i, c in enumerate(a)}
    new = {c.id: (i, c) for i, c in enumerate(b)}
    old_order = [cid for cid in old if cid in new]
    new_order = [cid for cid in new if cid in old]
    out: list[CellDiff] = []
    for cid, (j, cell) in new.items():
        if cid not in old:
            out.append(CellDiff(cid, cell.name, "added", None, j, _unified("", cell.source)))
            continue
        i, before = old[cid]
        text = _unified(before.source, cell.source) if before.source != cell.source else ""
        if text or before.name != cell.name:
            out.append(CellDiff(cid, cell.name, "changed", i, j, text))
        elif old_order.index(cid) != new_order.index(cid):
            out.append(CellDiff(cid, cell.name, "moved", i, j, ""))
    for cid, (i, cell) in old.items():
        if cid not in new:
            out.append(CellDiff(cid, cell.name, "removed", i, None, _unified(cell.source, "")))
    return out


def _unified(a: str, b: str) -> str:
    lines = difflib.unified_diff(
        a.splitlines(), b.splitlines(), "before", "after", n=2, lineterm=""
    )
    return "\n".join(lines)


def restore(doc: LoroDoc, frontiers: Frontiers) -> None:
    """Make the document's state equal to ``frontiers`` as new ops (``revert_to``).

    The caller commits (one change, which every view receives and the lake stores) with a
    message noting the restore (:func:`~sqlrooms_nb.notebook.change_message`).
    """
    doc.revert_to(frontiers)
