"""Load: many views typing into the shared cells of one kernel (issue 6, part 8).

    .venv/bin/python benchmarks/load.py [--views 10] [--rate 20] [--seconds 60] [--cells 3]
                                        [--only baseline|load|no-flush] [--drain-timeout 600]

Runs three loads side by side, each on a fresh embedded lake in a temporary folder: two views
(the baseline; lag is measured view to view), ``--views`` views, and ``--views`` views with the
lake's flush thresholds out of reach while they type (the writer only writes at close: what the
lake costs under load).
Prints edit lag (p50 / p99 / max), kernel RSS (start, peak, growth), comm backlog (peak, and
the time it takes to drain once typing stops), the kernel's busy share and CPU, and the checks.

The model (what :func:`run_load` builds, and ``tests/test_load.py`` reuses):

- One :class:`~sqlrooms_nb.SqlRoom` with ``cells`` SQL cells, default flush policy.
- The comm, as the widget's: every view's messages go to one queue, drained by one kernel
  "comm thread" calling :meth:`SqlRoom.receive` (marimo and Jupyter hand comm messages to the
  kernel one at a time); each view has its own queue of the kernel's messages, filled by the
  room's broadcast, so a backlog shows as queue lengths.
- Views (benchmarks/load_view.py): each a process of its own, as each browser tab is, with its
  own Loro document (own peer), speaking the wire protocol as ``js/sync.ts`` does: hello /
  welcome handshake, local updates throttled (the first at once, then coalesced for
  ``throttle_s``), imports of the kernel's relayed updates, ``saved`` acks. (As threads of the
  kernel's process, sharing its GIL, the views fell behind and the harness collapsed, not the
  kernel: see load_view.py.)
- Edits: ``rate_hz`` per view, on a fixed schedule (a view that falls behind catches up, as
  queued keystrokes do). An insert puts a unique token ``/*<view>.<seq>*/`` before a random
  token of a random cell (or at its end), so tokens never split; a delete (``delete_share`` of
  edits) removes one of the view's own live tokens. Every edit is thus checkable: each token
  inserted and not deleted must be present exactly once, in its cell, each deleted one absent,
  and what is left without tokens must be the cell's initial text.
- Lag: edit *e* of view *i* has arrived at view *j* once *j*'s oplog version vector covers
  *e*'s last op counter of *i*'s peer (noted after each import): lag = arrival - commit, on the
  machine's monotonic clock, for every (edit, other view) pair.
- The end: typing stops, the backlog drains (all queues empty, every message handled, every
  view's version vector equal to the kernel's), every view gets its ``saved`` ack, then views,
  kernel and a fresh SqlRoom re-opened from the lake must hold identical cells.

Memory: "kernel RSS" is this process's (the SqlRoom, its writer, the comm queues holding the
backlog, the harness's bookkeeping); the views' RSS is reported apart. CPU: the kernel's comm
thread's own CPU time per message, and the CPU of the kernel's process and of the views.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.machinery
import multiprocessing
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from loro import ExportMode, VersionVector

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.load_view import TOKEN, ViewResult, run_view  # noqa: E402

import sqlrooms_nb as snb  # noqa: E402
from sqlrooms_nb import notebook as nb  # noqa: E402
from sqlrooms_nb.store import FlushPolicy  # noqa: E402

INITIAL_SOURCE = "select 1 as x"
NO_FLUSH = FlushPolicy(max_delay_s=1e9, max_changes=1 << 40, max_bytes=1 << 50, poll_s=None)
"""A policy whose thresholds typing never reaches: the writer writes at close only."""


@dataclass(frozen=True)
class LoadConfig:
    """One load run.

    ``views`` views each make ``rate_hz`` edits per second for ``seconds`` seconds into
    ``cells`` shared SQL cells; ``delete_share`` (0-1) of the edits delete one of the view's own
    tokens. ``throttle_s``: the views' coalescing window (js/sync.ts: 20 ms). ``policy``: the
    writer's flush policy (``None``: the default). ``drain_timeout_s``: how long the run waits
    for the backlog to drain and for ``saved`` acks before it reports a problem. ``sample_s``:
    the monitor's sampling period (backlog, RSS). ``stall_s`` seconds from ``stall_at_s``
    after the start, the comm thread hands the kernel nothing (as while a marimo cell runs:
    the kernel handles comm messages only between cells), so a backlog builds up and drains.
    ``views_nice``: the view processes' niceness (they yield the CPU to the kernel they load:
    real browsers run on machines of their own).
    """

    views: int = 10
    rate_hz: float = 20.0
    seconds: float = 60.0
    cells: int = 3
    delete_share: float = 0.2
    throttle_s: float = 0.020
    seed: int = 1
    policy: FlushPolicy | None = None
    drain_timeout_s: float = 120.0
    sample_s: float = 0.1
    views_nice: int = 10
    stall_at_s: float = 0.0
    stall_s: float = 0.0


@dataclass
class LoadReport:
    """What a run measured. Times in seconds unless the name says ``_ms``; memory in MB
    (10^6 bytes). ``problems`` lists every failed check (empty: all held)."""

    config: LoadConfig
    inserts: int = 0
    deletes: int = 0
    updates_sent: int = 0
    """``update`` messages the views sent (edits coalesced by the throttle)."""
    typing_s: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    """Sorted: one per (edit, receiving view) pair."""
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_half_mb: float = 0.0
    rss_stop_mb: float = 0.0
    """Sampled RSS half-way through typing and when typing stopped (growth in the second half
    vs the first tells a steady leak from a one-off cost)."""
    backlog_peak: int = 0
    """Most messages waiting at once: kernel inbound plus every view's outbound queue."""
    backlog_at_stop: int = 0
    drain_s: float = float("nan")
    """From the end of typing until every queue is empty and every view holds the kernel's
    version."""
    saved_s: float = float("nan")
    """From the end of typing until every view has the ``saved`` ack covering its edits."""
    kernel_busy_s: float = 0.0
    """Wall time the comm thread (queueing) and the room's inbox thread (handling) spent on
    the views' messages while typing (includes waiting for the GIL and for a CPU)."""
    kernel_cpu_s: float = 0.0
    """CPU time of the comm thread and the room's inbox thread on the views' messages, typing
    and drain."""
    process_cpu_s: float = 0.0
    """CPU time of the kernel's process (comm thread, writer, queues), typing and drain."""
    views_cpu_s: float = 0.0
    """CPU time of the view processes, summed, from start to stop."""
    views_rss_start_mb: float = 0.0
    views_rss_end_mb: float = 0.0
    """Summed RSS of the view processes when typing started and once the backlog drained."""
    kernel_messages: int = 0
    kernel_batches: int = 0
    """Batches the room's inbox handed over (messages queued together are handled as one)."""
    resyncs: int = 0
    """Resyncs of the views (a gap at import, or a ``resync`` error: a new hello)."""
    snapshot_bytes: int = 0
    """Size of the kernel document's final snapshot."""
    tokens_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def edits(self) -> int:
        return self.inserts + self.deletes

    def lag_ms(self, q: float) -> float:
        """The ``q`` quantile (0-1) of the lags, ms (NaN without lags)."""
        if not self.lags_ms:
            return float("nan")
        return self.lags_ms[min(len(self.lags_ms) - 1, int(q * len(self.lags_ms)))]


def rss_mb() -> float:
    """This process's resident set size, MB."""
    return float(psutil.Process().memory_info().rss) / 1e6


class Comm:
    """The widget comm of the kernel: the views' messages arrive on ``inbound`` (one queue for
    all, as one comm channel) and one thread hands them to ``room.enqueue`` in arrival order,
    as the room's widget does; the room handles them on its inbox thread (timed here too)."""

    def __init__(self, room: snb.SqlRoom, inbound: Any) -> None:
        self.room = room
        self.inbound = inbound
        self.busy_s = 0.0
        self.cpu_s = 0.0
        self.messages = 0  # handed over (comm thread only)
        self.handled = 0  # handled by the room (inbox thread only)
        self.batches = 0
        self.errors: list[str] = []
        self._stall = (0.0, 0.0)
        inbox = room._inbox
        handle = inbox._handle

        def timed(items: list[Any]) -> None:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                handle(items)
            finally:
                self.busy_s += time.perf_counter() - t0
                self.cpu_s += time.thread_time() - c0
                self.handled += len(items)
                self.batches += 1

        inbox._handle = timed
        self._thread = threading.Thread(target=self._loop, name="load-comm", daemon=True)
        self._thread.start()

    def stall(self, at: float, seconds: float) -> None:
        """Hand nothing to the kernel from monotonic time ``at`` for ``seconds``."""
        self._stall = (at, at + seconds)

    def stop(self) -> None:
        self.inbound.put(None)
        self._thread.join(30)

    def _loop(self) -> None:
        while True:
            item = self.inbound.get()
            if item is None:
                return
            start, end = self._stall
            now = time.monotonic()
            if start <= now < end:
                time.sleep(end - now)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                self.room.enqueue(*item)
            except BaseException as exc:  # enqueue must never raise: record it as a problem
                self.errors.append(repr(exc))
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0
            self.messages += 1


@dataclass
class ViewStatus:
    """The latest status a view reported: its oplog version vector (encoded), messages it sent,
    whether its saved ack covers its oplog, and when (monotonic)."""

    version: bytes = b""
    sent: int = 0
    saved: bool = False
    at: float = 0.0


class Hub(Protocol):
    """What the views attach to: a :class:`~sqlrooms_nb.SqlRoom`, or anything else that
    delivers the kernel's messages through ``connect(deliver)`` (returns a detach function)."""

    def connect(
        self, deliver: Callable[[dict[str, Any], list[bytes]], None]
    ) -> Callable[[], None]: ...


class Views:
    """The view processes, their queues, and what they report (see benchmarks/load_view.py).

    ``extra`` adds to (or overrides) the settings every view gets: e.g. ``view_class``, a
    :class:`~benchmarks.load_view.View` subclass that types something else."""

    def __init__(
        self,
        room: Hub,
        config: LoadConfig,
        cell_ids: list[str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process running DuckDB
        self.kernel: Any = ctx.Queue()
        self.status: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.done = ctx.Event()
        self.start_at: Any = ctx.Value("d", 0.0)
        self.inboxes: list[Any] = [ctx.Queue() for _ in range(config.views)]
        self.latest = [ViewStatus() for _ in range(config.views)]
        self.disconnects = [room.connect(lambda c, b, q=q: q.put((c, b))) for q in self.inboxes]
        settings = {
            "seed": config.seed,
            "rate_hz": config.rate_hz,
            "delete_share": config.delete_share,
            "throttle_s": config.throttle_s,
            "cell_ids": cell_ids,
            "seconds": config.seconds,
            "nice": config.views_nice,
            "timeout_s": config.drain_timeout_s,
            **(extra or {}),
        }
        self.processes = [
            ctx.Process(
                target=run_view,
                args=(
                    i,
                    settings,
                    inbox,
                    self.kernel,
                    self.status,
                    self.results,
                    self.start_at,
                    self.done,
                ),
                name=f"load-view{i}",
                daemon=True,
            )
            for i, inbox in enumerate(self.inboxes)
        ]
        for process in self.processes:
            process.start()

    def start(self, timeout_s: float) -> float:
        """Wait until every view is welcomed, then start them typing (in 0.2 s); returns the
        monotonic start time. Raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll_status()
            if all(v.version for v in self.latest):
                break
            if time.monotonic() > deadline or not all(p.is_alive() for p in self.processes):
                raise TimeoutError("the view processes did not start")
            time.sleep(0.02)
        start = time.monotonic() + 0.2
        self.start_at.value = start
        return start

    def poll_status(self) -> None:
        """Take every status the views reported since the last call."""
        while True:
            try:
                index, version, sent, saved, at = self.status.get_nowait()
            except queue.Empty:
                return
            self.latest[index] = ViewStatus(version, sent, saved, at)

    def backlog(self, comm: Comm) -> int:
        """Messages waiting: for the kernel, and for every view."""
        kernel = int(comm.inbound.qsize()) + comm.room._inbox.backlog
        return kernel + sum(int(q.qsize()) for q in self.inboxes)

    def rss_mb(self) -> float:
        """Summed RSS of the view processes, MB."""
        total = 0.0
        for process in self.processes:
            try:
                total += psutil.Process(process.pid).memory_info().rss / 1e6
            except (psutil.Error, TypeError):
                pass
        return total

    def stop(self, timeout_s: float) -> list[ViewResult]:
        """Tell the views to stop and collect their results (those that report in time)."""
        self.done.set()
        results: list[ViewResult] = []
        deadline = time.monotonic() + timeout_s
        while len(results) < len(self.processes) and time.monotonic() < deadline:
            try:
                results.append(self.results.get(timeout=1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes):
                    break
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        for disconnect in self.disconnects:
            disconnect()
        return sorted(results, key=lambda r: r.index)


def run_load(
    config: LoadConfig, lake: Path, log: Callable[[str], None] = lambda _: None
) -> LoadReport:
    """Run one load on a new room in ``lake`` (an embedded lake folder) and return its figures
    and checks (see the module docstring). Never raises for a failed check: each goes to
    ``report.problems``."""
    report = LoadReport(config=config)
    room_id = "load"
    room = snb.SqlRoom(room_id, lake=str(lake), author="kernel", flush_policy=config.policy)
    cell_ids = [
        room.add_cell(INITIAL_SOURCE, name=f"c{i}", index=None) for i in range(config.cells)
    ]
    room.flush()
    views = Views(room, config, cell_ids)
    comm = Comm(room, views.kernel)
    results: list[ViewResult] = []
    samples: list[tuple[float, int, float]] = []
    done = threading.Event()
    try:
        start = views.start(config.drain_timeout_s)
        stop_typing = start + config.seconds
        if config.stall_s > 0:
            comm.stall(start + config.stall_at_s, config.stall_s)
        time.sleep(max(0.0, start - time.monotonic()))
        report.rss_start_mb = rss_mb()
        report.views_rss_start_mb = views.rss_mb()
        cpu_before, kernel_cpu_before, busy_before = _cpu_s(), comm.cpu_s, comm.busy_s
        monitor = threading.Thread(
            target=_monitor,
            args=(comm, views, samples, done, config.sample_s),
            name="load-monitor",
            daemon=True,
        )
        monitor.start()
        time.sleep(max(0.0, stop_typing - time.monotonic()))
        report.kernel_busy_s = comm.busy_s - busy_before
        report.backlog_at_stop = views.backlog(comm)
        log(f"typing stopped; backlog {report.backlog_at_stop} messages")
        report.drain_s = _wait(
            lambda: _drained(room, comm, views), stop_typing, config.drain_timeout_s
        )
        flushes = config.policy is None or config.policy.max_delay_s <= config.drain_timeout_s
        if flushes:  # with the writer held back (NO_FLUSH) no ack comes before close
            report.saved_s = _wait(lambda: _all_saved(views), stop_typing, config.drain_timeout_s)
        report.process_cpu_s = _cpu_s() - cpu_before
        report.kernel_cpu_s = comm.cpu_s - kernel_cpu_before
        report.kernel_messages = comm.messages
        report.kernel_batches = comm.batches
        report.views_rss_end_mb = views.rss_mb()
        done.set()
        monitor.join(5)
        report.typing_s = config.seconds
        report.rss_end_mb = rss_mb()
        _summarise(report, samples, start, stop_typing)
        results = views.stop(config.drain_timeout_s)
        if len(results) < config.views:
            report.problems.append(f"only {len(results)} of {config.views} views reported")
        for result in results:
            report.inserts += len(result.inserted)
            report.deletes += len(result.deleted)
            report.updates_sent += result.updates_sent
            report.resyncs += result.resyncs
            report.views_cpu_s += result.cpu_s
            report.problems += [f"view{result.index}: {e}" for e in result.errors]
        report.lags_ms = _lags(results)
        report.problems += [f"comm: {e}" for e in comm.errors]
        if report.drain_s != report.drain_s:  # NaN
            report.problems.append(
                f"backlog did not drain within {config.drain_timeout_s} s "
                f"(left: {views.backlog(comm)} messages)"
            )
        if flushes and report.saved_s != report.saved_s:
            report.problems.append(f"not every view was saved within {config.drain_timeout_s} s")
        _check(report, room, results, cell_ids)
    finally:
        done.set()
        if not views.done.is_set():
            views.stop(10)
        comm.stop()
        kernel_cells = [(c.id, c.source) for c in room.cells]
        report.snapshot_bytes = len(room.doc.export(ExportMode.Snapshot()))
        room.close()
    with snb.SqlRoom(room_id, lake=str(lake)) as reopened:
        if [(c.id, c.source) for c in reopened.cells] != kernel_cells:
            report.problems.append("the room re-opened from the lake differs from the kernel")
    return report


def _cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _drained(room: snb.SqlRoom, comm: Comm, views: Views) -> bool:
    views.poll_status()
    if views.backlog(comm) or comm.messages != sum(v.sent for v in views.latest):
        return False
    if not room.settle(0):  # the inbox thread is still handling a batch
        return False
    kernel = room.doc.oplog_vv
    return all(VersionVector.decode(v.version) == kernel for v in views.latest if v.version)


def _all_saved(views: Views) -> bool:
    views.poll_status()
    return all(v.saved for v in views.latest)


def _wait(done: Callable[[], bool], since: float, timeout_s: float) -> float:
    """Poll ``done`` every 10 ms; seconds from ``since`` until it held, NaN on timeout."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return float("nan")
        time.sleep(0.01)
    return time.monotonic() - since


def _monitor(
    comm: Comm,
    views: Views,
    samples: list[tuple[float, int, float]],
    done: threading.Event,
    period_s: float,
) -> None:
    """Sample ``(time, backlog, kernel RSS MB)`` every ``period_s`` until ``done``."""
    while not done.is_set():
        samples.append((time.monotonic(), views.backlog(comm), rss_mb()))
        done.wait(period_s)


def _summarise(
    report: LoadReport, samples: list[tuple[float, int, float]], start: float, stop: float
) -> None:
    if not samples:
        return
    report.backlog_peak = max(s[1] for s in samples)
    report.rss_peak_mb = max(report.rss_end_mb, *(s[2] for s in samples))
    half = start + (stop - start) / 2
    report.rss_half_mb = next((s[2] for s in samples if s[0] >= half), samples[-1][2])
    report.rss_stop_mb = next((s[2] for s in samples if s[0] >= stop), samples[-1][2])


def _lags(results: list[ViewResult]) -> list[float]:
    """Sorted lags, ms: for each edit of each view, from its commit to its arrival at each
    other view (the first arrival note holding its last op counter)."""
    lags: list[float] = []
    for sender in results:
        for receiver in results:
            if receiver is sender:
                continue
            notes = [(last, at) for peer, last, at in receiver.arrivals if peer == sender.peer]
            counters = [last for last, _ in notes]  # increasing: a replica's oplog only grows
            for last, committed in sender.ledger:
                i = bisect.bisect_left(counters, last)
                if i < len(notes):
                    lags.append((notes[i][1] - committed) * 1000)
    lags.sort()
    return lags


def _check(
    report: LoadReport, room: snb.SqlRoom, results: list[ViewResult], cell_ids: list[str]
) -> None:
    """Convergence and exactly-once: every replica holds the same cells, and every token is
    where its edits say (present once, or deleted), with the initial text intact around."""
    kernel = [(c.id, c.source) for c in room.cells]
    for result in results:
        doc = nb.new_doc()
        doc.import_(result.snapshot)
        if [(c.id, c.source) for c in nb.read_cells(doc)] != kernel:
            report.problems.append(f"view{result.index}'s cells differ from the kernel's")
    sources = dict(kernel)
    expected: dict[str, int] = {}
    for result in results:
        for token, cell in result.inserted.items():
            if token not in result.deleted:
                expected[token] = cell
    seen: dict[str, int] = {}
    for index, cell_id in enumerate(cell_ids):
        source = sources.get(cell_id, "")
        if TOKEN.sub("", source) != INITIAL_SOURCE:
            report.problems.append(f"cell {index}: text outside the tokens was changed")
        for match in TOKEN.finditer(source):
            token = match.group(0)
            if token in seen:
                report.problems.append(f"token {token} present more than once")
            seen[token] = index
    lost = expected.keys() - seen.keys()
    extra = seen.keys() - expected.keys()
    moved = [t for t in expected.keys() & seen.keys() if expected[t] != seen[t]]
    if lost:
        report.problems.append(f"{len(lost)} inserted tokens lost, e.g. {sorted(lost)[:3]}")
    if extra:
        report.problems.append(
            f"{len(extra)} deleted or unknown tokens present: {sorted(extra)[:3]}"
        )
    if moved:
        report.problems.append(f"{len(moved)} tokens in the wrong cell")
    report.tokens_checked = sum(len(r.inserted) for r in results)
    if report.edits == 0:
        report.problems.append("no edits were made")


# --- the benchmark --------------------------------------------------------------------------


def _row(label: str, reports: list[LoadReport], fmt: Callable[[LoadReport], str]) -> str:
    return f"  {label:<30}" + "".join(f"{fmt(r):>18}" for r in reports)


def _halves(r: LoadReport) -> str:
    return f"{r.rss_half_mb - r.rss_start_mb:.0f} / {r.rss_stop_mb - r.rss_half_mb:.0f}"


def print_reports(names: list[str], reports: list[LoadReport]) -> None:
    """Print runs side by side."""
    print(f"  {'':<30}" + "".join(f"{n:>18}" for n in names))
    rows: list[tuple[str, Callable[[LoadReport], str]]] = [
        ("views x edits/s x s", lambda r: f"{r.config.views}x{r.config.rate_hz:g}x{r.typing_s:g}"),
        ("edits (inserts+deletes)", lambda r: f"{r.inserts}+{r.deletes}"),
        ("edits/s achieved", lambda r: f"{r.edits / r.typing_s:.0f}"),
        ("update messages sent", lambda r: f"{r.updates_sent}"),
        ("kernel messages handled", lambda r: f"{r.kernel_messages}"),
        (
            "messages per inbox batch",
            lambda r: f"{r.kernel_messages / max(r.kernel_batches, 1):.1f}",
        ),
        ("kernel busy while typing", lambda r: f"{100 * r.kernel_busy_s / r.typing_s:.0f}%"),
        ("kernel CPU ms / message", lambda r: f"{1000 * r.kernel_cpu_s / r.kernel_messages:.2f}"),
        (
            "kernel process CPU ms / edit",
            lambda r: f"{1000 * r.process_cpu_s / max(r.edits, 1):.2f}",
        ),
        ("views CPU ms / edit", lambda r: f"{1000 * r.views_cpu_s / max(r.edits, 1):.2f}"),
        ("lag p50 ms", lambda r: f"{r.lag_ms(0.5):.1f}"),
        ("lag p99 ms", lambda r: f"{r.lag_ms(0.99):.1f}"),
        ("lag max ms", lambda r: f"{r.lag_ms(1.0):.1f}"),
        ("lag samples", lambda r: f"{len(r.lags_ms)}"),
        ("backlog peak (messages)", lambda r: f"{r.backlog_peak}"),
        ("backlog at stop", lambda r: f"{r.backlog_at_stop}"),
        ("drain after stop s", lambda r: f"{r.drain_s:.2f}"),
        ("all saved after stop s", lambda r: f"{r.saved_s:.2f}"),
        ("kernel RSS start MB", lambda r: f"{r.rss_start_mb:.0f}"),
        ("kernel RSS peak MB", lambda r: f"{r.rss_peak_mb:.0f}"),
        ("kernel RSS growth MB", lambda r: f"{r.rss_peak_mb - r.rss_start_mb:.0f}"),
        ("  growth 1st / 2nd half MB", _halves),
        (
            "views RSS start / end MB",
            lambda r: f"{r.views_rss_start_mb:.0f} / {r.views_rss_end_mb:.0f}",
        ),
        ("doc snapshot KB", lambda r: f"{r.snapshot_bytes / 1e3:.0f}"),
        ("resyncs", lambda r: f"{r.resyncs}"),
        ("tokens checked", lambda r: f"{r.tokens_checked}"),
        ("problems", lambda r: f"{len(r.problems)}"),
    ]
    for label, fmt in rows:
        print(_row(label, reports, fmt))
    for name, report in zip(names, reports, strict=True):
        for problem in report.problems:
            print(f"  PROBLEM [{name}] {problem}")


def main() -> None:
    # Spawned view processes would re-run this script to rebuild its __main__ (importing
    # sqlrooms_nb: ~0.5 s of CPU each); they need nothing from it (see multiprocessing.spawn).
    sys.modules["__main__"].__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="edits per second per view")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["baseline", "load", "no-flush"], action="append")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds")
    args = parser.parse_args()
    base = LoadConfig(
        views=args.views,
        rate_hz=args.rate,
        seconds=args.seconds,
        cells=args.cells,
        seed=args.seed,
        drain_timeout_s=args.drain_timeout,
    )
    runs = {
        "baseline": LoadConfig(**{**base.__dict__, "views": 2}),
        "load": base,
        "no-flush": LoadConfig(**{**base.__dict__, "policy": NO_FLUSH}),
    }
    names = [n for n in runs if not args.only or n in args.only]
    titles = {"baseline": "2 views", "load": f"{args.views} views", "no-flush": "same, no flush"}
    reports = []
    for name in names:
        print(f"running {titles[name]} ({runs[name].seconds:g} s)...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            reports.append(run_load(runs[name], Path(tmp) / "lake", log=print))
    load = psutil.getloadavg()
    print(f"machine: {psutil.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f}")
    print_reports([titles[n] for n in names], reports)
    if any(r.problems for r in reports):
        sys.exit(1)


if __name__ == "__main__":
    main()
