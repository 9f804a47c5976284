"""P6, part 2: three views type the ``clownschool`` concurrent trace at its recorded pace, 10x.

    .venv/bin/python benchmarks/trace_views.py [--txns N] [--speed 10]

What runs (issue 7, P6 part 2: "3 views typing the clownschool concurrent trace at its recorded
pace, scaled up 10x: all converge to endContent; report the lag"):

- Ours: one kernel, the harness of benchmarks/load.py (:class:`benchmarks.load.Comm`,
  :class:`benchmarks.load.Views`): a :class:`sqlrooms_nb.SqlRoom` on a fresh embedded lake in a
  temporary folder with one SQL cell, empty at start; every view's messages go through one comm
  thread to ``room.enqueue`` (the widget's path); three view processes, each with its own Loro
  document, speaking the wire protocol as ``js/sync.ts`` does (benchmarks/load_view.py: hello /
  welcome, local updates throttled 20 ms, relayed updates imported at most once per 16 ms
  frame, ``saved`` acks).
- View *k* plays agent *k* of the trace (:class:`TraceView`), as tests/store/trace_agent.py
  does with one agent per kernel: its transactions in trace order, each applied on the document
  as its parents left it (Loro detached editing, checkout at the parents' frontiers, the view's
  peer id ``PEER_BASE + k`` kept across checkouts), and only once every parent has arrived in
  this view's document (a transaction's Loro ids are known in advance: one counter per
  character inserted or deleted).
- The schedule: transaction *i* is due ``(time_i - time_0) / speed`` seconds after the start
  (``time`` has 1-second resolution, so the transactions of one recorded second are due
  together and typed as one burst); a view applies it at ``max(due, its parents arrived)``; a
  view that fell behind catches up in order. The whole trace: 23,136 transactions over 3,152 s,
  315 s at 10x. Sizes (:func:`run`): smoke the first 300 transactions at 20x (at 10x they
  take 9.4 s per side), medium the first 5,000 at 10x, full all of them at 10x.
- The floor (:class:`BareRelay`): the same three view processes replay the same transactions
  on the same schedule, but the kernel side is a bare relay: one thread takes each view's
  message off the same inbound queue and puts its update bytes, untouched, on the other views'
  queues (a ``hello`` gets a ``welcome`` holding the same initial document). No Loro import,
  no sync hub, no lake, no ``saved`` acks: what the harness itself costs (processes, queues,
  pickling, the views' throttle, frame batching and imports, the trace's own dependencies), as
  marimo's bare anywidget relay is the floor of P6 part 1. The two sides run back to back in
  one invocation (ours first) and are reported as ours / floor.

Measured, per side:

- Apply time of every transaction in its view (after its commit), and for every (transaction,
  other view) the arrival time: the first time that view's oplog version vector covers the
  transaction's last op (noted after every import). Lag = arrival - apply. Every time is
  ``time.monotonic()``: CLOCK_MONOTONIC on Linux, one clock for every process of the machine
  (not per process), so times taken in different view processes subtract directly. The lag
  holds what a browser adds on both sides: the sender's throttle (a transaction committed
  while a window is open waits for its end, up to 20 ms; the bursts of one recorded second
  make that the usual case, a plateau near 20 ms) and the receiver's frame batching (up to
  16 ms).
- Schedule slip: apply - due, for the transactions that waited on their parents: some parent
  typed in another view arrived in this view after the transaction's due time (a parent the
  view typed itself is always there: it applies its own in order). The lateness of every
  transaction (apply - due, waited or not: a burst of one recorded second is applied one
  after another, and a transaction queued behind one that waited is late too) is printed too.
- Convergence: every view's text, the kernel cell's text and a fresh SqlRoom re-opened from
  the lake equal the expected text (``endContent`` for the whole trace, the one-document
  replay :func:`tests.store.test_kernels.prefix_text` for a prefix); the floor's views too.
  :func:`run` raises when a side did not converge or lost a transaction.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import gzip
import importlib.machinery
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loro import ID, ExportMode, Frontiers, LoroText, VersionVector

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Only light modules at the top: every view process imports this module (for TraceView), and
# importing sqlrooms_nb costs ~0.5 s of CPU; the kernel side imports it where it is used.
from benchmarks.load_view import View, ViewResult  # noqa: E402
from benchmarks.suite import Row, percentile, pick, save_plot  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.load import Views

NAME = "trace_views"
TRACE = REPO.parent / "shared" / "data" / "editing-traces" / "clownschool.json.gz"
SPEED = 10.0
THROTTLE_S = 0.020
"""The views' send throttle (js/sync.ts): the first update at once, then coalesced 20 ms."""
DRAIN_TIMEOUT_S = 120.0
"""How long after the schedule's end a side may take to converge before it counts as broken."""
FLOOR = "bare relay"
VIEWS_NICE = 10
"""The view processes' niceness, as in benchmarks/load.py (browsers run on machines of their
own: here they yield the CPU to the kernel). The price: on a machine busy with other jobs the
niced views get a small share of the CPU, and the lag's tail shows it, on both sides alike
(``--views-nice 0`` measures without)."""


def _txns(size: str) -> int | None:
    """Transactions replayed at ``size`` (``None``: the whole trace)."""
    return pick(size, smoke=300, medium=5_000, full=None)  # type: ignore[no-any-return]


def _speed(size: str) -> float:
    """The pace at ``size``: the issue's 10x, but 20x at smoke size (the first 300
    transactions span 94 recorded seconds: 9.4 s per side at 10x, ~23 s for the module)."""
    return pick(size, smoke=20.0, medium=SPEED, full=SPEED)  # type: ignore[no-any-return]


# --- the schedule -------------------------------------------------------------------------


@dataclass(frozen=True)
class Txn:
    """One transaction of the trace, ready for a view: ``index`` in the trace, ``agent``,
    ``due_s`` (seconds after the start: recorded time offset / speed), ``last`` (the Loro
    counter of its last op, peer ``PEER_BASE + agent``), ``parents`` (trace indexes) and
    ``needs`` (their last op ids, ``(peer, counter)``: the frontiers it applies on),
    ``patches`` (``(pos, deleted, inserted)``, positions in Unicode code points)."""

    index: int
    agent: int
    due_s: float
    last: int
    parents: tuple[int, ...]
    needs: tuple[tuple[int, int], ...]
    patches: tuple[tuple[int, int, str], ...]


def schedule(limit: int | None, speed: float = SPEED) -> list[Txn]:
    """The first ``limit`` transactions of clownschool (``None``: all), with due times for
    ``speed`` (10: ten times the recorded pace). Counters come from
    :func:`tests.store.trace_agent.load`."""
    from tests.store.trace_agent import PEER_BASE, load

    raw = load(str(TRACE), limit)
    times = [_epoch_s(t["time"]) for t in raw]
    t0 = min(times)  # the first transaction's time (the trace is in causal, not time, order)
    out = []
    for i, (txn, at) in enumerate(zip(raw, times, strict=True)):
        if txn["end"] == txn["start"]:
            raise ValueError(f"transaction {i} has no ops: it could not be told apart")
        parents = tuple(int(p) for p in txn["parents"])
        out.append(
            Txn(
                index=i,
                agent=int(txn["agent"]),
                due_s=(at - t0) / speed,
                last=int(txn["end"]) - 1,
                parents=parents,
                needs=tuple((PEER_BASE + raw[p]["agent"], raw[p]["end"] - 1) for p in parents),
                patches=tuple((int(a), int(b), str(c)) for a, b, c in txn["patches"]),
            )
        )
    return out


def _epoch_s(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def expected_text(limit: int | None) -> str:
    """The text after the first ``limit`` transactions (``None`` or all: ``endContent``)."""
    trace = json.load(gzip.open(TRACE))
    if limit is None or limit >= len(trace["txns"]):
        return str(trace["endContent"])
    from tests.store.test_kernels import prefix_text

    return prefix_text(limit)


# --- the views ----------------------------------------------------------------------------


@dataclass
class TraceResult(ViewResult):
    """A :class:`~benchmarks.load_view.ViewResult` plus ``applied``: ``(txn index, monotonic
    time of its commit)`` per transaction this view applied, and ``text``: the view's final
    text (at the latest version)."""

    applied: list[tuple[int, float]] = field(default_factory=list)
    text: str = ""


class TraceView(View):
    """A view process that plays one agent of the trace (``settings["txns"]``: every
    :class:`Txn`; this view plays those of agent ``index``; ``settings["peer_base"]``)."""

    def __init__(self, index: int, settings: dict[str, Any], kernel: Any, status: Any) -> None:
        super().__init__(index, settings, kernel, status)
        self.peer = int(settings["peer_base"]) + index
        self.doc.peer_id = self.peer
        self.trace_result = TraceResult(index=index, peer=self.peer)
        self.result = self.trace_result
        self.own: list[Txn] = [t for t in settings["txns"] if t.agent == index]
        self._next = 0
        self._start = 0.0
        self._text_handle: LoroText | None = None
        self._base: Frontiers | None = None

    def start_typing(self, start: float) -> None:
        """The schedule's clock starts at ``start`` (monotonic s); from here the document is
        edited detached (each transaction at its parents' frontiers)."""
        self._start = start
        self._text_handle = self._text(0)
        self._base = self.doc.oplog_frontiers  # the room before any transaction
        self.doc.set_detached_editing(True)

    def type_due(self, now: float) -> float | None:
        """Apply, in order, every own transaction due by ``now`` whose parents are all in this
        document; returns when the next is due (``None``: it waits for its parents, or none
        is left)."""
        while self._next < len(self.own):
            txn = self.own[self._next]
            due = self._start + txn.due_s
            if due > now:
                return due
            vv = self.doc.oplog_vv
            for peer, counter in txn.needs:
                last = vv.get_last(peer)
                if last is None or last < counter:
                    return None  # woken by the next import
            self._apply(txn)
            self._next += 1
        return None

    def _apply(self, txn: Txn) -> None:
        text = self._text_handle
        assert text is not None and self._base is not None
        frontiers = (
            Frontiers.from_ids([ID(peer, counter) for peer, counter in txn.needs])
            if txn.needs
            else self._base
        )
        if self.doc.state_frontiers != frontiers:
            self.doc.checkout(frontiers)
            self.doc.peer_id = self.peer  # detached editing picks a new peer id: keep ours
        before = self.doc.oplog_vv
        for pos, deleted, inserted in txn.patches:
            if deleted:
                text.delete(pos, deleted)
            if inserted:
                text.insert(pos, inserted)
        self.doc.commit()
        self.trace_result.applied.append((txn.index, time.monotonic()))
        last = self.doc.oplog_vv.get_last(self.peer)
        if last != txn.last:
            self.result.errors.append(f"txn {txn.index}: last counter {last}, not {txn.last}")
        self.queue_update(self.doc.export(ExportMode.Updates(before)))

    def typing_over(self, now: float) -> bool:
        """Every own transaction applied."""
        return self._next >= len(self.own)

    def finish(self) -> None:
        """Back to the latest version; note the final text."""
        self.doc.checkout_to_latest()
        if self._text_handle is not None:
            self.trace_result.text = self._text_handle.to_string()


# --- the floor's kernel side --------------------------------------------------------------

Deliver = Callable[[dict[str, Any], list[bytes]], None]


class BareRelay:
    """The floor's kernel side: one thread takes the views' messages off ``inbound`` in
    arrival order (as :class:`benchmarks.load.Comm` does) and forwards each ``update``'s
    buffers, untouched, to every other view; a ``hello`` is answered with a ``welcome``
    holding ``snapshot`` (the initial document) and its ``version``. Nothing else: no Loro,
    no hub, no lake, no ``saved`` acks. Views attach with :meth:`connect`, in view order."""

    def __init__(self, snapshot: bytes, version: bytes) -> None:
        self.snapshot = snapshot
        self.version = version
        self.delivers: list[Deliver | None] = []
        self.handled = 0
        self.cpu_s = 0.0
        self.errors: list[str] = []
        self.inbound: Any = None
        self._thread: threading.Thread | None = None

    def connect(self, deliver: Deliver) -> Callable[[], None]:
        """Attach view ``len(delivers)``'s transport; returns a function that detaches it."""
        index = len(self.delivers)
        self.delivers.append(deliver)

        def disconnect() -> None:
            self.delivers[index] = None

        return disconnect

    def start(self, inbound: Any) -> None:
        """Start relaying what arrives on ``inbound`` (a queue of ``(content, buffers)``)."""
        self.inbound = inbound
        self._thread = threading.Thread(target=self._loop, name="bare-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.inbound.put(None)
            self._thread.join(30)

    def _loop(self) -> None:
        empty = VersionVector().encode()  # type: ignore[no-untyped-call]
        while True:
            item = self.inbound.get()
            if item is None:
                return
            c0 = time.thread_time()
            try:
                content, buffers = item
                view = str(content["view"])
                sender = int(view.removeprefix("view"))
                kind = content.get("kind")
                if kind == "hello":
                    out = {"kind": "welcome", "to": view, "branch": "main"}
                    deliver = self.delivers[sender]
                    if deliver is not None:
                        deliver(out, [self.snapshot, self.version, empty])
                elif kind == "update":
                    out = {"kind": "update", "origin": view, "branch": "main"}
                    for i, deliver in enumerate(self.delivers):
                        if i != sender and deliver is not None:
                            deliver(out, buffers)
            except Exception as exc:  # a broken relay is a finding, not a hang
                self.errors.append(repr(exc))
            self.cpu_s += time.thread_time() - c0
            self.handled += 1


# --- one side -----------------------------------------------------------------------------


@dataclass
class SideReport:
    """What one side (ours or the floor) measured. Times are monotonic seconds unless the name
    says ``_ms``; ``problems`` lists every failed check (empty: converged, nothing lost)."""

    side: str
    txns: int
    speed: float
    start: float = 0.0
    applied: dict[int, float] = field(default_factory=dict)
    """Txn index -> when its view committed it."""
    arrivals: dict[tuple[int, int], float] = field(default_factory=dict)
    """(txn index, view) -> when that (other) view's document first held it."""
    lags_ms: list[float] = field(default_factory=list)
    """Sorted: arrival - apply per (txn, other view)."""
    slips_ms: list[float] = field(default_factory=list)
    """Sorted: apply - due of the transactions that waited on a parent typed in another
    view (it arrived after the due time)."""
    late_ms: list[float] = field(default_factory=list)
    """Sorted: apply - due of every transaction."""
    replay_s: float = float("nan")
    """From the start to the last transaction's apply."""
    drain_s: float = float("nan")
    """From the schedule's end until every replica held every transaction (ours: and the
    kernel's version; the saved acks are waited for after)."""
    wall_s: float = float("nan")
    """The whole side: processes started, replay, drain, checks (ours: the lake re-opened)."""
    updates_sent: int = 0
    kernel_messages: int = 0
    kernel_cpu_s: float = 0.0
    """CPU of the kernel side's handling (ours: comm thread and room inbox; the floor: the
    relay thread)."""
    views_cpu_s: float = 0.0
    """CPU of the three view processes, summed, from the start until they stopped."""
    worst_at_s: float = float("nan")
    """When (seconds after the start) the transaction with the largest lag was applied."""
    resyncs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.problems

    def lag(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the lags, ms (NaN without any)."""
        return percentile(self.lags_ms, q) if self.lags_ms else math.nan

    def slip(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the slips, ms (NaN when nothing waited)."""
        return percentile(self.slips_ms, q) if self.slips_ms else math.nan


def _config(timeout_s: float, nice: int) -> Any:
    from benchmarks.load import LoadConfig

    # rate_hz / seconds / cells are the random typist's; TraceView reads its own schedule.
    return LoadConfig(
        views=3, cells=1, throttle_s=THROTTLE_S, drain_timeout_s=timeout_s, views_nice=nice
    )


def _extra(txns: Sequence[Txn]) -> dict[str, Any]:
    from tests.store.trace_agent import PEER_BASE

    return {"view_class": TraceView, "txns": list(txns), "peer_base": PEER_BASE}


def _final_vv(txns: Sequence[Txn]) -> dict[int, int]:
    """Peer -> last counter once every transaction is in."""
    from tests.store.trace_agent import PEER_BASE

    out: dict[int, int] = {}
    for txn in txns:
        out[PEER_BASE + txn.agent] = max(out.get(PEER_BASE + txn.agent, -1), txn.last)
    return out


def _covers(version: bytes, final: dict[int, int]) -> bool:
    if not version:
        return False
    vv = VersionVector.decode(version)
    return all((vv.get_last(peer) or -1) >= last for peer, last in final.items())


def run_ours(
    txns: Sequence[Txn],
    expected: str,
    folder: Path,
    speed: float = SPEED,
    nice: int = VIEWS_NICE,
) -> SideReport:
    """Ours: replay ``txns`` (scheduled for ``speed``) with three views (niceness ``nice``) on
    one SqlRoom on an embedded lake in ``folder``; check views, kernel and the re-opened room
    against ``expected``. Never raises for a failed check (see ``problems``)."""
    from benchmarks.load import Comm, Views, _all_saved, _drained, _wait

    import sqlrooms_nb as snb

    report = SideReport("ours", len(txns), speed)
    started = time.perf_counter()
    final = _final_vv(txns)
    lake = str(folder / "lake")
    room = snb.SqlRoom("trace", lake=lake, author="kernel")
    cell = room.add_cell("", name="trace")
    room.flush()
    config = _config(DRAIN_TIMEOUT_S, nice)
    views = Views(room, config, [cell], extra=_extra(txns))
    comm = Comm(room, views.kernel)
    kernel_text = None
    try:
        start = views.start(DRAIN_TIMEOUT_S)
        end = start + max(t.due_s for t in txns)
        time.sleep(max(0.0, end - time.monotonic()))

        def drained() -> bool:
            if not _drained(room, comm, views):
                return False
            return all(_covers(v.version, final) for v in views.latest)

        report.drain_s = _wait(drained, end, DRAIN_TIMEOUT_S)
        if math.isnan(report.drain_s):
            report.problems.append(f"not converged {DRAIN_TIMEOUT_S:.0f} s after the schedule")
        elif math.isnan(_wait(lambda: _all_saved(views), end, DRAIN_TIMEOUT_S)):
            report.problems.append("not every view got the saved ack covering its edits")
        report.kernel_messages = comm.messages
        report.kernel_cpu_s = comm.cpu_s
        results = _collect(views, report)
        _measure(report, start, txns, results, expected)
        report.problems += [f"comm: {e}" for e in comm.errors]
    finally:
        if not views.done.is_set():
            views.stop(10)
        comm.stop()
        try:
            kernel_text = next((c.source for c in room.cells if c.id == cell), None)
        finally:
            room.close()
    if kernel_text != expected:
        report.problems.append("the kernel's cell differs from the expected text")
    with snb.SqlRoom("trace", lake=lake) as reopened:
        if [c.source for c in reopened.cells] != [expected]:
            report.problems.append("the room re-opened from the lake differs from the expected")
    report.wall_s = time.perf_counter() - started
    return report


def run_floor(
    txns: Sequence[Txn], expected: str, speed: float = SPEED, nice: int = VIEWS_NICE
) -> SideReport:
    """The floor: the same views and schedule through a :class:`BareRelay`; checks the views'
    texts against ``expected``. Never raises for a failed check (see ``problems``)."""
    from benchmarks.load import Views, _wait

    from sqlrooms_nb import notebook as nb

    report = SideReport("floor", len(txns), speed)
    started = time.perf_counter()
    final = _final_vv(txns)
    doc = nb.new_doc()  # the same initial document as the room's: schema, one empty SQL cell
    nb.ensure_schema(doc)
    cell = nb.add_cell(doc, "", name="trace")
    doc.commit()
    relay = BareRelay(doc.export(ExportMode.Snapshot()), doc.oplog_vv.encode())
    views = Views(relay, _config(DRAIN_TIMEOUT_S, nice), [cell], extra=_extra(txns))
    relay.start(views.kernel)
    try:
        start = views.start(DRAIN_TIMEOUT_S)
        end = start + max(t.due_s for t in txns)
        time.sleep(max(0.0, end - time.monotonic()))

        def drained() -> bool:
            views.poll_status()
            if relay.handled != sum(v.sent for v in views.latest):
                return False
            if views.kernel.qsize() or any(q.qsize() for q in views.inboxes):
                return False
            return all(_covers(v.version, final) for v in views.latest)

        report.drain_s = _wait(drained, end, DRAIN_TIMEOUT_S)
        if math.isnan(report.drain_s):
            report.problems.append(f"not converged {DRAIN_TIMEOUT_S:.0f} s after the schedule")
        report.kernel_messages = relay.handled
        report.kernel_cpu_s = relay.cpu_s
        results = _collect(views, report)
        _measure(report, start, txns, results, expected)
        report.problems += [f"relay: {e}" for e in relay.errors]
    finally:
        if not views.done.is_set():
            views.stop(10)
        relay.stop()
    report.wall_s = time.perf_counter() - started
    return report


def _collect(views: Views, report: SideReport) -> list[TraceResult]:
    results = [r for r in views.stop(DRAIN_TIMEOUT_S) if isinstance(r, TraceResult)]
    if len(results) < 3:
        report.problems.append(f"only {len(results)} of 3 views reported")
    for r in results:
        report.updates_sent += r.updates_sent
        report.resyncs += r.resyncs
        report.views_cpu_s += r.cpu_s
        report.problems += [f"view{r.index}: {e}" for e in r.errors]
    return results


def _measure(
    report: SideReport,
    start: float,
    txns: Sequence[Txn],
    results: Sequence[TraceResult],
    expected: str,
) -> None:
    """Fill ``report``'s times (apply, arrivals, lags, slips) and check the views' texts."""
    report.start = start
    for r in results:
        if r.text != expected:
            report.problems.append(f"view{r.index}'s text differs from the expected text")
        for index, at in r.applied:
            if index in report.applied:
                report.problems.append(f"txn {index} applied twice")
            report.applied[index] = at
    missing = [t.index for t in txns if t.index not in report.applied]
    if missing:
        report.problems.append(f"{len(missing)} txns never applied, e.g. {missing[:3]}")
        return
    from tests.store.trace_agent import PEER_BASE as peer_base

    notes: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
    for r in results:  # per (receiving view, sending peer): counters held, in time order
        for peer, last, at in r.arrivals:
            counters, times = notes.setdefault((r.index, peer), ([], []))
            counters.append(last)
            times.append(at)
    lags, lost, worst = [], 0, -1.0
    for txn in txns:
        for r in results:
            if r.index == txn.agent:
                continue
            counters, times = notes.get((r.index, peer_base + txn.agent), ([], []))
            i = bisect.bisect_left(counters, txn.last)
            if i == len(counters):
                lost += 1
                continue
            report.arrivals[(txn.index, r.index)] = times[i]
            lags.append((times[i] - report.applied[txn.index]) * 1000)
            if lags[-1] > worst:
                worst, report.worst_at_s = lags[-1], report.applied[txn.index] - start
    if lost:
        report.problems.append(f"{lost} (txn, view) arrivals never noted")
    report.lags_ms = sorted(lags)
    slips, late = [], []
    by_index = {t.index: t for t in txns}
    for txn in txns:
        due = start + txn.due_s
        applied = report.applied[txn.index]
        late.append((applied - due) * 1000)
        ready = max(  # when the last of its parents typed in other views arrived here
            (
                report.arrivals.get((p, txn.agent), math.inf)
                for p in txn.parents
                if by_index[p].agent != txn.agent
            ),
            default=-math.inf,
        )
        if ready > due:
            slips.append((applied - due) * 1000)
    report.slips_ms, report.late_ms = sorted(slips), sorted(late)
    report.replay_s = max(report.applied.values()) - start


# --- the benchmark ------------------------------------------------------------------------


def compare(
    limit: int | None,
    speed: float = SPEED,
    log: Callable[[str], None] = lambda _: None,
    nice: int = VIEWS_NICE,
) -> tuple[SideReport, SideReport]:
    """Replay the first ``limit`` transactions (``None``: all) at ``speed`` with the views at
    niceness ``nice``: ours, then the floor, back to back. Returns both reports (check their
    ``problems``)."""
    txns = schedule(limit, speed)
    expected = expected_text(limit)
    log(f"{len(txns):,} txns at {speed:g}x: {max(t.due_s for t in txns):.0f} s per side")
    with tempfile.TemporaryDirectory(prefix="snb-trace-views-") as tmp:
        log("ours (SqlRoom on an embedded lake)...")
        ours = run_ours(txns, expected, Path(tmp), speed, nice)
    log(f"  {ours.wall_s:.1f} s; the floor ({FLOOR})...")
    floor = run_floor(txns, expected, speed, nice)
    log(f"  {floor.wall_s:.1f} s")
    return ours, floor


def _pct_curve(values: Sequence[float]) -> tuple[list[float], list[float]]:
    qs = [float(q) for q in range(1, 100)] + [99.9, 100.0]
    return qs, [percentile(values, q) for q in qs]


def run(size: str, out: Path) -> list[Row]:
    """P6 part 2 rows: lag p50 and p99 (ms), ours beside the bare relay floor, and a row
    saying ours converged (its figure: the transactions replayed). Raises ``AssertionError``
    when either side did not converge or lost a transaction."""
    limit, speed = _txns(size), _speed(size)
    ours, floor = compare(limit, speed)
    broken = [f"{s.side}: {p}" for s in (ours, floor) for p in s.problems]
    if broken:
        raise AssertionError("; ".join(broken[:5]))
    plot = save_plot(
        out,
        "trace_views.png",
        f"P6.2 clownschool, 3 views, {ours.txns:,} txns at {speed:g}x: apply -> other view",
        "percentile",
        "lag (ms)",
        {
            "ours (SqlRoom kernel)": _pct_curve(ours.lags_ms),
            f"floor ({FLOOR})": _pct_curve(floor.lags_ms),
        },
        logy=True,
    )
    note = (
        f"{ours.txns:,} txns of clownschool at {speed:g}x the recorded pace (3 view processes "
        f"at nice {VIEWS_NICE}, throttle {THROTTLE_S * 1000:.0f} ms); lag max ours "
        f"{ours.lag(100):.0f} ms, floor {floor.lag(100):.0f} ms; schedule slip of txns that "
        f"waited on parents p50/p99 ours "
        f"{ours.slip(50):.0f}/{ours.slip(99):.0f} ms ({len(ours.slips_ms)} txns), floor "
        f"{floor.slip(50):.0f}/{floor.slip(99):.0f} ms ({len(floor.slips_ms)})"
    )
    extra = {
        side.side: {
            "lag_ms": {str(q): v for q, v in zip(*_pct_curve(side.lags_ms), strict=True)},
            "slip_p50_ms": side.slip(50),
            "slip_p99_ms": side.slip(99),
            "waited_txns": len(side.slips_ms),
            "late_p99_ms": percentile(side.late_ms, 99),
            "replay_s": side.replay_s,
            "drain_s": side.drain_s,
            "wall_s": side.wall_s,
            "updates_sent": side.updates_sent,
            "kernel_messages": side.kernel_messages,
            "kernel_cpu_s": side.kernel_cpu_s,
            "views_cpu_s": side.views_cpu_s,
            "resyncs": side.resyncs,
        }
        for side in (ours, floor)
    }
    rows = [
        Row(
            NAME,
            f"P6.2 clownschool 3 views {speed:g}x: lag p{q}",
            "ms",
            ours.lag(q),
            FLOOR,
            floor.lag(q),
            note=note,
            plot=plot,
            extra=extra if q == 50 else {},
        )
        for q in (50, 99)
    ]
    rows.append(
        Row(
            NAME,
            "P6.2 converged (ours): 3 views, kernel, re-opened lake = expected text",
            "txns",
            float(ours.txns),
            note=(
                f"{'endContent' if limit is None else f'the first {limit:,} txns'}; "
                f"replay {ours.replay_s:.0f} s, drained {ours.drain_s:.2f} s after the "
                f"schedule's end; {ours.resyncs} resyncs"
            ),
        )
    )
    return rows


def print_reports(ours: SideReport, floor: SideReport) -> None:
    """Print both sides' figures side by side."""

    def row(label: str, fmt: Callable[[SideReport], str]) -> None:
        print(f"  {label:<34}{fmt(ours):>14}{fmt(floor):>14}")

    print(f"  {'':<34}{'ours':>14}{'floor':>14}")
    row("txns x speed", lambda s: f"{s.txns}x{s.speed:g}")
    row("lag p50 ms", lambda s: f"{s.lag(50):.1f}")
    row("lag p99 ms", lambda s: f"{s.lag(99):.1f}")
    row("lag max ms", lambda s: f"{s.lag(100):.1f}")
    row("lag samples", lambda s: f"{len(s.lags_ms)}")
    row("txns that waited on parents", lambda s: f"{len(s.slips_ms)}")
    row("  their slip p50 ms", lambda s: f"{s.slip(50):.1f}")
    row("  their slip p99 ms", lambda s: f"{s.slip(99):.1f}")
    row(
        "late (apply - due) p50/p99 ms",
        lambda s: (
            f"{percentile(s.late_ms, 50):.0f}/{percentile(s.late_ms, 99):.0f}" if s.late_ms else "-"
        ),
    )
    row("update messages sent", lambda s: f"{s.updates_sent}")
    row("kernel messages handled", lambda s: f"{s.kernel_messages}")
    row(
        "kernel CPU ms / message",
        lambda s: f"{1000 * s.kernel_cpu_s / max(s.kernel_messages, 1):.2f}",
    )
    row("replay s (start -> last apply)", lambda s: f"{s.replay_s:.1f}")
    row("converged after schedule s", lambda s: f"{s.drain_s:.2f}")
    row("side wall s", lambda s: f"{s.wall_s:.1f}")
    row("views CPU s (3 processes)", lambda s: f"{s.views_cpu_s:.1f}")
    row("max lag's txn applied at s", lambda s: f"{s.worst_at_s:.1f}")
    row("resyncs", lambda s: f"{s.resyncs}")
    row("converged", lambda s: "yes" if s.converged else "NO")
    print(
        f"  ours / floor: lag p50 x{ours.lag(50) / floor.lag(50):.2f}, "
        f"p99 x{ours.lag(99) / floor.lag(99):.2f}, max x{ours.lag(100) / floor.lag(100):.2f}"
    )
    for side in (ours, floor):
        for problem in side.problems:
            print(f"  PROBLEM [{side.side}] {problem}")


def main() -> None:
    """Replay the first ``--txns`` transactions at ``--speed`` (ours, then the floor) and
    print the figures; exit 1 when a side did not converge."""
    # Spawned view processes would re-run this script to rebuild its __main__; they need
    # nothing from it (they import benchmarks.trace_views for TraceView).
    sys.modules["__main__"].__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txns", type=int, default=None, help="default: the whole trace")
    parser.add_argument("--speed", type=float, default=SPEED, help="x the recorded pace")
    parser.add_argument("--views-nice", type=int, default=VIEWS_NICE, help="views' niceness")
    args = parser.parse_args()
    started = time.perf_counter()
    ours, floor = compare(
        args.txns, args.speed, log=lambda s: print(s, flush=True), nice=args.views_nice
    )
    load = os.getloadavg()
    print(
        f"clownschool, 3 views at nice {args.views_nice}, {ours.txns:,} txns at {args.speed:g}x; "
        f"{time.perf_counter() - started:.0f} s in all; load average {load[0]:.1f} / "
        f"{load[1]:.1f} on {os.cpu_count()} CPUs"
    )
    print_reports(ours, floor)
    if ours.problems or floor.problems:
        sys.exit(1)


if __name__ == "__main__":
    # Run as a script, the classes the view processes unpickle must be those of the module
    # benchmarks.trace_views, not of __main__.
    from benchmarks.trace_views import main as _main

    _main()
