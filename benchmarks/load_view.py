"""One simulated browser view of benchmarks/load.py, in a process of its own.

Each view is a process, as each browser tab is: with the views as threads of the kernel's process
the ten replicas' imports shared one GIL with the kernel, fell behind, typed on stale versions,
and the concurrency made every import (the kernel's too) more expensive until nothing kept up:
the harness, not the kernel, was what collapsed.

The view speaks the wire protocol as ``js/sync.ts`` does (hello / welcome, throttled updates:
the first at once, then coalesced for ``throttle_s``; relayed updates imported; ``saved`` acks;
a new hello on a gap or a ``resync`` error). Messages travel as ``(content, buffers)`` tuples on
multiprocessing queues: ``inbox`` (kernel -> this view) and ``kernel`` (every view -> kernel).

Only ``loro`` is imported here (importing ``sqlrooms_nb`` costs ~0.5 s of CPU per process); the
few reads of the document schema (see ``sqlrooms_nb.notebook``) are done on Loro directly.
"""

from __future__ import annotations

import os
import queue
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from loro import ExportMode, LoroDoc, LoroMap, LoroText, VersionVector

TOKEN = re.compile(r"/\*(\d+)\.(\d+)\*/")
"""An edit's token: ``/*<view index>.<edit seq>*/`` (a SQL comment; never split by inserts)."""

CHANGE_MERGE_INTERVAL_S = 10  # as sqlrooms_nb.notebook configures every replica
STATUS_EVERY_S = 0.05
FRAME_S = 0.016
"""A view imports what the kernel sent at most once per display frame (a busy tab handles its
queued messages in a burst): under load the batches grow, and one Loro import of n updates costs
far less than n imports (measured on a recorded run: 1.36 ms per message one by one, 0.22 in
batches of 10, 0.06 in batches of 50), so the simulated browsers catch up instead of falling
further behind."""

Message = tuple[dict[str, Any], list[bytes]]


@dataclass
class ViewResult:
    """What a view reports when it stops (pickled to the kernel's process).

    ``ledger``: per edit, ``(last op counter of this peer, commit time)``; ``arrivals``: after
    each import, ``(peer, last counter now held, time)`` for every peer that advanced (times:
    ``time.monotonic()``, one clock for every process of the machine). ``snapshot``: the final
    document.
    """

    index: int
    peer: int
    inserted: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    ledger: list[tuple[int, float]] = field(default_factory=list)
    arrivals: list[tuple[int, int, float]] = field(default_factory=list)
    updates_sent: int = 0
    resyncs: int = 0
    errors: list[str] = field(default_factory=list)
    snapshot: bytes = b""
    saved: bool = False
    cpu_s: float = 0.0


class View:
    """One view: its replica, its throttle and its typing (see the module docstring)."""

    def __init__(self, index: int, settings: dict[str, Any], kernel: Any, status: Any) -> None:
        self.index = index
        self.id = f"view{index}"
        self.settings = settings
        self.kernel = kernel
        self.status = status
        self.rng = random.Random(settings["seed"] * 1000 + index)
        self.doc = LoroDoc()  # type: ignore[no-untyped-call]
        self.doc.set_record_timestamp(True)
        self.doc.set_change_merge_interval(CHANGE_MERGE_INTERVAL_S)
        self.result = ViewResult(index=index, peer=self.doc.peer_id)
        self.cell_ids: list[str] = settings["cell_ids"]
        self.live: list[list[str]] = [[] for _ in self.cell_ids]  # own tokens in each cell
        self.saved_vv = VersionVector()
        self.welcomed = False
        self.sent = 0
        self._last: dict[int, int] = {}  # peer -> last counter held
        self._pending: list[bytes] = []
        self._window_end: float | None = None
        self._seq = 0
        self._status_at = 0.0

    # --- protocol ------------------------------------------------------------------------

    def send(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self.sent += 1
        self.kernel.put(({"view": self.id, "branch": "main", **content}, buffers))

    def hello(self) -> None:
        self.send({"kind": "hello"}, [self.doc.oplog_vv.encode()])

    def receive_all(self, messages: list[Message]) -> None:
        """Messages from the kernel, in order; the relayed updates of consecutive ``update``
        messages are imported as one batch (what the tab does one message at a time; the
        machine has 2 CPUs for the kernel and ten views)."""
        batch: list[bytes] = []
        for content, buffers in messages:
            if content.get("kind") == "update" and content.get("origin") != self.id:
                batch.extend(buffers)
                continue
            if batch:
                self._import(batch)
                batch = []
            self.receive(content, buffers)
        if batch:
            self._import(batch)

    def receive(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("kind")
        if content.get("to") not in (None, self.id):
            return
        if kind == "welcome":
            if buffers[0]:
                self.doc.import_(bytes(buffers[0]))
            self.saved_vv = VersionVector.decode(bytes(buffers[2]))
            ahead = self.doc.export(ExportMode.Updates(VersionVector.decode(bytes(buffers[1]))))
            if LoroDoc.decode_import_blob_meta(ahead, False).change_num:
                self.send({"kind": "update"}, [ahead])
            self.welcomed = True
            self._arrived()
        elif kind == "update" and content.get("origin") != self.id:
            self._import(list(buffers))
        elif kind == "saved":
            self.saved_vv = VersionVector.decode(bytes(buffers[0]))
        elif kind == "error" and content.get("code") == "resync":
            self.resync()  # an update of ours was refused for a gap: re-send after a hello
        elif kind == "error":
            self.result.errors.append(f"{content.get('code')}: {content.get('message')}")

    def _import(self, updates: list[bytes]) -> None:
        status = self.doc.import_batch([bytes(u) for u in updates])
        if status.pending is not None and not status.pending.is_empty:
            self.resync()
        self._arrived()

    def resync(self) -> None:
        self.result.resyncs += 1
        self.hello()

    def _arrived(self) -> None:
        """Note which peers' ops this replica now holds, and when (for the lag)."""
        now = time.monotonic()
        for peer, (_first, end) in self.doc.oplog_vv.to_spans().inner().items():
            last = int(end) - 1
            if peer != self.result.peer and last > self._last.get(peer, -1):
                self._last[peer] = last
                self.result.arrivals.append((int(peer), last, now))

    # --- typing --------------------------------------------------------------------------
    # run_view drives the typing through start_typing / type_due / typing_over / finish: a
    # subclass (named by ``settings["view_class"]``) can type something else on another
    # schedule (benchmarks/trace_views.py replays an editing trace).

    def start_typing(self, start: float) -> None:
        """Typing starts at ``start`` (monotonic s): ``rate_hz`` edits/s for ``seconds``, the
        first at a random offset within the first interval."""
        self._interval = 1.0 / self.settings["rate_hz"]
        self._stop = start + self.settings["seconds"]
        self._next_edit = start + self.rng.random() * self._interval

    def type_due(self, now: float) -> float | None:
        """Make every edit due by ``now`` (a view that fell behind catches up); returns when
        the next one is due (monotonic s), ``None`` when none is scheduled."""
        while self._next_edit <= now and self._next_edit < self._stop:
            self.edit()
            self._next_edit += self._interval
        return self._next_edit if self._next_edit < self._stop else None

    def typing_over(self, now: float) -> bool:
        """Whether this view has typed everything (from then on it reports its status)."""
        return now >= self._stop

    def finish(self) -> None:
        """Called once when the view stops, before its result is taken (nothing here)."""

    def edit(self) -> None:
        """One edit (insert a token before a random token or at the end, or delete one of
        this view's own), committed and sent through the throttle."""
        cell = self.rng.randrange(len(self.cell_ids))
        text = self._text(cell)
        before = self.doc.oplog_vv
        live = self.live[cell]
        if live and self.rng.random() < self.settings["delete_share"]:
            token = live.pop(self.rng.randrange(len(live)))
            at = text.to_string().find(token)
            if at < 0:
                self.result.errors.append(f"own token {token} missing from cell {cell}")
                return
            text.delete(at, len(token))
            self.result.deleted.add(token)
        else:
            self._seq += 1
            token = f"/*{self.index}.{self._seq}*/"
            source = text.to_string()
            found = TOKEN.search(source, self.rng.randrange(len(source) + 1))
            text.insert(found.start() if found else len(source), token)
            self.result.inserted[token] = cell
            live.append(token)
        self.doc.commit()
        last = self.doc.oplog_vv.get_last(self.result.peer)
        self.result.ledger.append((int(last or 0), time.monotonic()))
        self.queue_update(self.doc.export(ExportMode.Updates(before)))

    def queue_update(self, update: bytes) -> None:
        """Send a local update through the throttle: at once if no window is open (then open
        one of ``throttle_s``), else with the window's batch when it closes."""
        if self._window_end is None:  # throttle, not debounce (js/sync.ts)
            self._send_updates([update])
            self._window_end = time.monotonic() + self.settings["throttle_s"]
        else:
            self._pending.append(update)

    def _text(self, cell: int) -> LoroText:
        """The ``source`` text of cell ``cell`` (by id, in the root ``cells`` movable list)."""
        cells = self.doc.get_movable_list("cells")
        for i in range(len(cells)):
            item = getattr(cells.get(i), "container", None)
            if isinstance(item, LoroMap) and _value(item.get("id")) == self.cell_ids[cell]:
                source = getattr(item.get("source"), "container", None)
                if isinstance(source, LoroText):
                    return source
        raise LookupError(f"cell {self.cell_ids[cell]} is not in this replica")

    def close_window_if_due(self, now: float) -> None:
        if self._window_end is None or now < self._window_end:
            return
        self._window_end = None
        if self._pending:
            batch, self._pending = self._pending, []
            self._send_updates(batch)
            self._window_end = now + self.settings["throttle_s"]

    def _send_updates(self, updates: list[bytes]) -> None:
        self.result.updates_sent += 1
        self.send({"kind": "update"}, updates)

    def report_status(self, now: float, force: bool = False) -> None:
        """Tell the kernel's process this replica's version and how much it sent (for the
        drain check), at most every :data:`STATUS_EVERY_S` (once ready, then after typing)."""
        if force or now - self._status_at >= STATUS_EVERY_S:
            self._status_at = now
            saved = self.saved_vv.includes_vv(self.doc.oplog_vv)
            self.status.put((self.index, self.doc.oplog_vv.encode(), self.sent, saved, now))


def _value(got: Any) -> Any:
    return None if got is None else getattr(got, "value", None)


def run_view(
    index: int,
    settings: dict[str, Any],
    inbox: Any,
    kernel: Any,
    status: Any,
    results: Any,
    start_at: Any,
    done: Any,
) -> None:
    """A view process: handshake, report ready (a status), wait until ``start_at`` (a shared
    double: the monotonic start time, 0 until every view is ready), type ``rate_hz`` edits/s
    for ``seconds`` (or what ``settings["view_class"]``, a :class:`View` subclass, types),
    keep receiving until ``done`` (an Event) is set, then put its :class:`ViewResult` on
    ``results``."""
    # Browsers run on their own machines: here they share 2 CPUs with the kernel they load, so
    # they yield to it (a starved kernel would measure the simulation, not the kernel).
    os.nice(settings["nice"])
    view_class: type[View] = settings.get("view_class", View)
    view = view_class(index, settings, kernel, status)
    cpu_start = time.process_time()
    try:
        view.hello()
        while not view.welcomed:
            view.receive(*inbox.get(timeout=settings["timeout_s"]))
        view.report_status(time.monotonic(), force=True)
        deadline = time.monotonic() + settings["timeout_s"]
        while start_at.value == 0.0 and not done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("no start")
            time.sleep(0.01)
        cpu_start = time.process_time()  # the CPU spent starting the process is not the load's
        view.start_typing(start_at.value)
        last_import = 0.0
        while not done.is_set():
            now = time.monotonic()
            next_edit = view.type_due(now)
            view.close_window_if_due(now)
            deadlines = [now + STATUS_EVERY_S]
            if next_edit is not None:
                deadlines.append(next_edit)
            if view._window_end is not None:
                deadlines.append(view._window_end)
            try:
                items = [inbox.get(timeout=max(0.0, min(deadlines) - now))]
            except queue.Empty:
                items = []
            # At most one import per frame: what arrived meanwhile goes in as one batch.
            wait = last_import + FRAME_S - time.monotonic()
            if items and wait > 0:
                time.sleep(min(wait, max(0.0, min(deadlines) - time.monotonic())))
            while True:  # take what else is queued before typing on
                try:
                    items.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if items:
                view.receive_all(items)
                last_import = time.monotonic()
            if view.typing_over(time.monotonic()):  # the drain check needs it, typing not
                view.report_status(time.monotonic())
    except BaseException as exc:  # a crashed view is a finding, not a hang
        view.result.errors.append(f"view process failed: {exc!r}")
    try:
        view.finish()
    except BaseException as exc:
        view.result.errors.append(f"view finish failed: {exc!r}")
    view.result.snapshot = view.doc.export(ExportMode.Snapshot())
    view.result.saved = view.saved_vv.includes_vv(view.doc.oplog_vv)
    view.result.cpu_s = time.process_time() - cpu_start
    results.put(view.result)
