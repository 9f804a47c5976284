"""Load: ten views on one kernel, each typing 20 edits/s into shared cells (issue 6, part 8).

The harness is benchmarks/load.py (which also prints the figures next to a baseline): a real
SqlRoom on an embedded lake with the default flush policy, the wire protocol through
``room.receive`` on one comm thread, and ten views, each a process of its own with its own Loro
replica (benchmarks/load_view.py). CI types for 5 s; the slow suite (``--slow``) for the issue's
60 s.

What must hold at every size: every view, the kernel and a room re-opened from the lake end
with the same cells; every edit is there exactly once (tokens inserted and not deleted present
once, in their cell; deleted ones gone; the text around them intact); every view gets its saved
ack; the backlog drains; the kernel's memory stays bounded.

Bounds, and why they are where they are. The machine has 2 CPUs shared with other jobs, and the
simulation itself (ten Python processes importing every edit) needs about one of them at this
rate, so wall-time figures swing with the machine's load. Measured at CI size at load averages
of 5-12: p50 lag 4-18 ms, p99 30-180 ms, drain < 0.3 s, kernel CPU 0.3-0.75 ms per message,
kernel RSS growth 0-5 MB. The lag and CPU bounds are far above that but below what a kernel
that falls behind does: its backlog grows for the rest of the run and lag reaches seconds, and
every import then costs more (edits made on stale versions are concurrent with more ops: Loro's
import cost per message rose from 0.08 to 12 ms in a recorded run that fell behind). At the
slow size this machine does fall behind (the whole simulation needs more CPU than the other jobs
leave it; p50 lag 25-40 s, the backlog drained 90-190 s after typing stopped, nothing lost):
there the test asserts what the issue asks, that it drains and nothing is lost, with a drain
bound of minutes, and prints the lag.

Why it falls behind: Loro's import of an update that is concurrent with others costs time
linear in the text, not in the concurrency. Measured with plain Loro (the repro is in the
session note): ten peers typing 3 edits per update, each seeing the others' updates ten
updates late, cost 6 / 17 / 31 ms per import after 500 / 1,000 / 1,500 updates (0.03-0.05 ms
with no concurrency); importing them ten at a time with ``import_batch`` cost 0.5 / 1.5 / 2.8
ms per update. Every view pays it too, so on two CPUs the ten views and the kernel saturate
together. Batching queued updates in the kernel is the next step (not done).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"
spec = importlib.util.spec_from_file_location("benchmarks_load", BENCH)
assert spec is not None and spec.loader is not None
load = importlib.util.module_from_spec(spec)
sys.modules["benchmarks_load"] = load  # dataclasses look their module up by name
spec.loader.exec_module(load)

VIEWS = 10
RATE_HZ = 20.0
P99_LAG_BOUND_MS = 3_000.0
"""CI size: typing feels laggy from ~200 ms; a kernel that falls behind passes 3 s in seconds."""
KERNEL_CPU_BOUND_MS = 5.0
"""CI size: the comm thread's own CPU per message (decode, import, relay to ten views)."""
DRAIN_BOUND_S = {False: 20.0, True: 600.0}
"""Once typing stops, until every queue is empty and every view holds the kernel's version."""
RSS_GROWTH_BOUND_MB = {False: 100.0, True: 200.0}
"""The kernel process's RSS growth while typing and draining (measured 0-5 MB at CI size,
37-40 MB over 60 s; the document itself stays under 200 kB)."""

pytestmark = pytest.mark.timeout(1800)


def _run(tmp_path: Path, config: Any) -> Any:
    report = load.run_load(config, tmp_path / "lake")
    load.print_reports(["load"], [report])
    return report


def test_ten_views_typing_converge_with_every_edit_exactly_once(tmp_path, slow):
    seconds = 60.0 if slow else 5.0
    config = load.LoadConfig(
        views=VIEWS, rate_hz=RATE_HZ, seconds=seconds, drain_timeout_s=DRAIN_BOUND_S[slow]
    )
    report = _run(tmp_path, config)
    # Views, kernel and the re-opened room hold the same cells; every token is there exactly
    # once (or deleted by its view); every view got its saved ack; the backlog drained in time.
    assert report.problems == []
    assert report.drain_s < DRAIN_BOUND_S[slow]
    assert report.edits >= 0.95 * VIEWS * RATE_HZ * seconds, "the views did not type at rate"
    assert report.tokens_checked == report.inserts > 0
    assert report.deletes > 0
    # Every edit reached every other view, and its lag was measured there.
    assert len(report.lags_ms) == report.edits * (VIEWS - 1)
    assert report.rss_peak_mb - report.rss_start_mb < RSS_GROWTH_BOUND_MB[slow]
    if not slow:
        assert report.lag_ms(0.99) < P99_LAG_BOUND_MS
        assert 1000 * report.kernel_cpu_s / report.kernel_messages < KERNEL_CPU_BOUND_MS


def test_backlog_built_while_the_kernel_is_busy_drains_and_loses_nothing(tmp_path, slow):
    """The kernel hands comm messages over only between cell runs (marimo): a 1.5 s stall in
    the middle of typing queues ~300 updates while the views keep typing on versions the kernel
    has not relayed yet; afterwards the queue drains, everything converges, nothing is lost."""
    seconds = 20.0 if slow else 4.0
    config = load.LoadConfig(
        views=VIEWS,
        rate_hz=RATE_HZ,
        seconds=seconds,
        stall_at_s=1.0,
        stall_s=1.5,
        drain_timeout_s=DRAIN_BOUND_S[slow],
    )
    report = _run(tmp_path, config)
    assert report.problems == []
    assert report.backlog_peak >= 0.5 * VIEWS * RATE_HZ * 1.5, "the stall built no backlog"
    assert report.lag_ms(1.0) >= 1000.0, "edits made during the stall waited for it"
    assert report.drain_s < DRAIN_BOUND_S[slow]
    assert len(report.lags_ms) == report.edits * (VIEWS - 1)
