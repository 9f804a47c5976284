"""The history panel on a long history, in a real browser (issue 3: "a 100k-change history: the
panel's first page renders and a preview opens without blocking other views").

What it does, per ``--repeat`` (each repeat is a fresh kernel on a fresh copy of the lake, so
"cold" really is cold):

1. Builds once (cached under ``--cache-dir``, keyed by N and a hash of the storage code) a lake
   with one room holding a small ``scratch`` cell and a ``paper`` cell that received N
   single-character edits from the automerge-paper trace, one Loro change each (commit
   timestamps 11 s apart, authors alternating every 50 edits: ~N/50 edit sessions), like
   ``history_scale.py``. Also times the kernel's share in this process (no browser, nobody
   typing) on a copy of that lake.
2. Serves a one-cell marimo notebook that opens that room (``marimo edit --headless``), with
   ``room.handle`` wrapped to log each view message's kernel-side time (and the parts of a
   history / preview reply: sessions, the walk over all changes, the tags query, the fork).
3. Opens three pages (three people, one kernel): **A** uses the history panel, **B** types into
   the scratch cell one key every ``--type-interval-ms``, **C** only watches. Each page records
   (in-page, every 4 ms) when its scratch editor reached each length, so each keystroke's
   latency B -> C (an idle other view), B -> A (the view using the panel) and B -> kernel
   (kernel log) is known. Browser and kernel clocks are the same wall clock (+-4 ms).
4. Phases, B typing: ``baseline`` (nobody opens history); ``history`` (A opens the panel cold,
   closes and reopens it warm, previews the 10th and the 50th session, presses "Load more"
   once, goes back to live); ``panel-open`` (A leaves the panel open: it refreshes itself at
   most once a second while the document changes). Then B stops, the backlog drains, and in
   ``quiet`` A reopens the panel, previews the 10th session, presses "Load more"
   ``--load-more`` times and previews the oldest listed session.

A's timings are taken in the page: from the click to the DOM mutation that shows the result
(a new first ``snb-history-item``; more items; a new ``snb-preview`` for that version with its
banner and cells), plus one frame. A click whose result never shows within
``--step-timeout`` is reported as ``t/o``.

Usage: .venv/bin/python benchmarks/history_panel.py [--changes 100000] [--repeat 3]
       .venv/bin/python benchmarks/history_panel.py --changes 2000 --repeat 1   # quick
It measures whichever ``sqlrooms_nb`` Python imports (the editable install; or put an exported
tree first with ``PYTHONPATH=<tree>/src``, its ``static/`` bundle built, to pin a version).
Prints one table in wall-clock milliseconds; browser, marimo and kernel share this machine's
cores, so the figures include their contention (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import Browser, Locator, Page, async_playwright  # noqa: E402
from tests.browser.servers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    Server,
    marimo_server,
)

import sqlrooms_nb as snb  # noqa: E402
from sqlrooms_nb import history as hist  # noqa: E402
from sqlrooms_nb import notebook as nb  # noqa: E402

TRACE = REPO.parent / "shared/data/editing-traces/automerge-paper.json.gz"
ROOM = "history-bench"
CACHE_VERSION = 2  # bump when the built room's shape changes
SCRATCH_TEXT = "-- B types here\n"

# --- 1. the lake ---------------------------------------------------------------------------------


def storage_key() -> str:
    """A short hash of the installed package's storage code: a cached lake is rebuilt when the
    code that writes and recovers it changes."""
    digest = hashlib.sha256()
    package = Path(snb.__file__).parent
    for path in [*sorted(package.glob("store/*.py")), package / "notebook.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _build(n: int, lake: Path) -> dict[str, Any]:
    """Write the benchmark room with ``n`` edits into a new lake; return its meta data."""
    trace = json.load(gzip.open(TRACE))
    patches = [p for txn in trace["txns"] for p in txn["patches"]][:n]
    if len(patches) < n:
        raise SystemExit(f"the trace has only {len(patches)} edits")
    started = time.perf_counter()
    # Timestamps from a minute ahead, as in history_scale.py: Loro keeps a peer's change times
    # monotonic (an explicit time earlier than the peer's last change is raised to it), so past
    # times after the room's first commit would all collapse onto it and the edits of one
    # author would merge into a single change (10 s merge interval).
    t0 = int(time.time()) + 60
    with snb.SqlRoom(ROOM, lake=lake, author="builder") as room:
        paper = room.add_cell("", name="paper")
        scratch = room.add_cell(SCRATCH_TEXT, name="scratch", index=0)
        text = nb.cell_text(nb.find_cell(room.doc, paper)[1])
        for i, (pos, deleted, inserted) in enumerate(patches):
            if deleted:
                text.delete(pos, deleted)
            if inserted:
                text.insert(pos, inserted)
            room.doc.set_next_commit_timestamp(t0 + 11 * i)
            room.doc.set_next_commit_message("ana" if (i // 50) % 2 else "bo")
            room.doc.commit()
        changes = len(hist.changes(room.doc))
        no_stats = hist.ChangeStats((), 0, 0)
        sessions = len(hist.sessions(room.doc, lambda _c: no_stats))
        paper_chars = len(text.to_string())
        room.flush()
    meta = {
        "room": ROOM,
        "scratch": scratch,
        "paper": paper,
        "edits": n,
        "changes": changes,
        "sessions": sessions,
        "paper_chars": paper_chars,
        "build_s": round(time.perf_counter() - started, 1),
    }
    return meta


def build_lake(n: int, cache_root: Path, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """The cached lake for ``n`` changes (built when missing) and its meta data."""
    folder = cache_root / f"history_panel-n{n}-v{CACHE_VERSION}-{storage_key()}"
    meta_path = folder / "meta.json"
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if meta_path.exists():
        print(f"reusing the lake in {folder}", flush=True)
        return folder / "lake", json.loads(meta_path.read_text())
    cache_root.mkdir(parents=True, exist_ok=True)
    for stale in cache_root.glob(f"history_panel-n{n}-*"):  # built by older storage code
        shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f"building-n{n}-", dir=cache_root))
    print(f"building a {n}-change room in {building} ...", flush=True)
    try:
        meta = _build(n, building / "lake")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    (building / "meta.json").write_text(json.dumps(meta, indent=1))
    building.rename(folder)
    print(f"built in {meta['build_s']} s", flush=True)
    return folder / "lake", meta


def kernel_reference(lake: Path, meta: dict[str, Any], repeat: int) -> list[tuple[str, float]]:
    """What the kernel spends on the panel's requests in this process, with no browser, no
    marimo and nobody typing (on a copy of the lake): ``(measure, ms)`` rows."""
    rows: list[tuple[str, float]] = []

    def timed(label: str, fn: Any, times: int = repeat) -> Any:
        runs, out = [], None
        for _ in range(times):
            start = time.perf_counter()
            out = fn()
            runs.append((time.perf_counter() - start) * 1000)
        rows.append((label, statistics.median(runs)))
        return out

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(lake, Path(tmp) / "lake")
        room = timed(
            "SqlRoom() open (recovery)",
            lambda: snb.SqlRoom(meta["room"], lake=Path(tmp) / "lake", author="ref"),
            1,
        )
        try:
            timed("history(limit=51), cold", lambda: room.history(limit=51), 1)
            timed("history(limit=51), warm", lambda: room.history(limit=51))
            timed("history(limit=201), warm", lambda: room.history(limit=201))
            timed("  of which changes() walk", lambda: hist.changes(room.doc))
            timed("tags() (a DuckLake query)", room.tags)
            no_stats = hist.ChangeStats((), 0, 0)
            listed = hist.sessions(room.doc, lambda _c: no_stats)  # newest first
            picks = (
                ("10th session", 9),
                ("50th session", 49),
                ("session at 10% of history", len(listed) * 9 // 10),
            )
            for label, index in picks:
                if index < len(listed):
                    vid = listed[index].id
                    timed(
                        f"preview {label}: at() + diff",
                        lambda v=vid: hist.diff_cells(room.at(v), room.cells),
                    )
        finally:
            room.close()
    return rows


# --- 2. the notebook -----------------------------------------------------------------------------

NOTEBOOK = r'''
import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import json
    import os
    import time

    import sqlrooms_nb as snb
    from sqlrooms_nb import notebook as nb

    _log = open(os.environ["SNB_BENCH_LOG"], "a", buffering=1)
    _scratch = os.environ["SNB_BENCH_SCRATCH"]
    _t = time.time()
    room = snb.SqlRoom(
        os.environ["SNB_BENCH_ROOM"], lake=os.environ["SQLROOMS_NB_LAKE"], author="kernel"
    )
    _log.write(json.dumps({"kind": "open", "start": _t, "end": time.time()}) + "\n")
    _handle = room.handle

    def _timed(message):
        """room.handle, logging when the kernel started and finished each view message (and,
        after updates, the scratch cell's length, to time keystrokes to the kernel)."""
        start = time.time()
        try:
            return _handle(message)
        finally:
            end = time.time()
            entry = {"kind": type(message).__name__, "view": getattr(message, "view", None),
                     "start": start, "end": end}
            if entry["kind"] == "ClientUpdate":
                try:
                    cell = nb.find_cell(room.doc, _scratch)[1]
                    entry["scratch"] = len(nb.cell_text(cell).to_string())
                except BaseException:
                    pass
            _log.write(json.dumps(entry) + "\n")

    room.handle = _timed

    def _wrap(owner, name):
        """Log the time of one function too (the parts of a history or preview reply)."""
        inner = getattr(owner, name, None)
        if inner is None:
            return False

        def timed(*args, **kwargs):
            start = time.time()
            try:
                return inner(*args, **kwargs)
            finally:
                _log.write(json.dumps({"kind": "call:" + name, "start": start,
                                       "end": time.time()}) + "\n")

        setattr(owner, name, timed)
        return True

    # The sessions (the room's own method: _history in newer code, history before), the lake
    # query for tags, the fork for a preview, and the walk over every change.
    _wrap(room, "_history") or _wrap(room, "history")
    _wrap(room, "_history_page")
    _wrap(room, "_preview")
    import sqlrooms_nb.history as _hist
    import sqlrooms_nb.room as _room_module
    _wrap(_room_module, "list_tags")
    _wrap(_hist, "cells_at")
    _wrap(_hist, "changes")
    room
    return (room,)


if __name__ == "__main__":
    app.run()
'''


def start_server(run_dir: Path, lake: Path, meta: dict[str, Any]) -> Server:
    """``marimo edit`` on the benchmark notebook in ``run_dir``, room on ``lake`` (started)."""
    folder = run_dir / "marimo"
    folder.mkdir(parents=True)
    (folder / "bench.py").write_text(NOTEBOOK.lstrip())
    server = marimo_server(
        folder,
        "bench.py",
        lake,
        run_dir / "marimo.log",
        SNB_BENCH_ROOM=meta["room"],
        SNB_BENCH_SCRATCH=meta["scratch"],
        SNB_BENCH_LOG=str(run_dir / "kernel.jsonl"),
    )
    server.start()
    return server


# --- 3. the pages --------------------------------------------------------------------------------

# Installs, on a cell's .cm-content, a 4 ms poller recording [length, Date.now()] each time the
# editor's document length changes (CodeMirror's state: updated even while the cell is hidden).
_TRACE_JS = """
(content) => {
  const view = (content.cmTile && content.cmTile.root && content.cmTile.root.view)
    || (content.cmView && content.cmView.rootView && content.cmView.rootView.view);
  if (!view) throw new Error('no CodeMirror view on the scratch cell');
  window.__snbTrace = [];
  let last = -1;
  const tick = () => {
    const n = view.state.doc.length;
    if (n !== last) { last = n; window.__snbTrace.push([n, Date.now()]); }
  };
  tick();
  window.__snbTraceTimer = setInterval(tick, 4);
  return last;
}
"""

# Clicks one element inside the widget root and resolves when the expected result shows:
#   until = "first":   a first snb-history-item that was not there before, visible
#           "more":    more snb-history-items than before
#           "preview": snb-preview for the clicked item's version, with banner and a cell, visible
# Returns {dom, paint} in ms from the click (paint = dom + one animation frame) and the version,
# or {timeout: true} when nothing showed within a.timeout ms.
_MEASURE_JS = """
async (root, a) => {
  const q = (s) => root.querySelector(s);
  const qa = (s) => root.querySelectorAll(s);
  const visible = (el) => !!el && el.getClientRects().length > 0;
  const ITEM = '[data-testid=snb-history-item]';
  const oldFirst = q(ITEM);
  const oldCount = qa(ITEM).length;
  const oldPreview = q('[data-testid=snb-preview]');
  const all = qa(a.click);
  const target = a.index === null ? q(a.click) : all[a.index < 0 ? all.length + a.index : a.index];
  if (!target) throw new Error(`nothing to click: ${a.click} #${a.index}`);
  const version = target.dataset.version || null;
  const done = () => {
    if (a.until === 'first') { const f = q(ITEM); return !!f && f !== oldFirst && visible(f); }
    if (a.until === 'more') return qa(ITEM).length > oldCount;
    const p = q(`[data-testid=snb-preview][data-version="${version}"]`);
    return p !== oldPreview && visible(p)
      && visible(p.querySelector('[data-testid=snb-preview-banner]'))
      && visible(p.querySelector('[data-testid=snb-preview-cell]'));
  };
  return await new Promise((resolve) => {
    let t0 = 0;
    let finished = false;
    const stop = () => {
      finished = true; obs.disconnect(); clearInterval(poll); clearTimeout(timer);
    };
    const check = () => {
      if (finished || !done()) return;
      const dom = performance.now() - t0;
      stop();
      const painted = () => resolve({dom, paint: performance.now() - t0, version});
      requestAnimationFrame(() => setTimeout(painted, 0));
    };
    const obs = new MutationObserver(check);
    obs.observe(root, {subtree: true, childList: true, attributes: true});
    const poll = setInterval(check, 16);
    const timer = setTimeout(() => { stop(); resolve({timeout: true, version}); }, a.timeout);
    t0 = performance.now();
    target.click();
    check();
  });
}
"""


# The text of the smallest ancestor of an element that says more than a heading does.
_AROUND_TEXT = """
(el) => {
  let node = el;
  for (let i = 0; i < 8 && node.parentElement && node.innerText.length < 300; i++) {
    node = node.parentElement;
  }
  return node.innerText.slice(-3000);
}
"""


@dataclass
class Run:
    """What one repeat measured."""

    ui: dict[str, float] = field(default_factory=dict)  # A's timings, ms (paint)
    ui_dom: dict[str, float] = field(default_factory=dict)
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end (ms)
    traces: dict[str, list[list[float]]] = field(default_factory=dict)  # page -> [len, ms]
    kernel: list[dict[str, Any]] = field(default_factory=list)
    loaded: int = 0  # sessions listed when the deep preview was clicked
    timeouts: list[str] = field(default_factory=list)  # A's steps that never showed
    drain_ms: float = 0.0  # typing stopped -> A and C show B's last key
    idle_ms: float = 0.0  # typing stopped -> the kernel has nothing left to handle
    number: int = 0  # 1-based repeat number
    open_ms: float = 0.0  # kernel: SqlRoom(...) (recovery)
    ready_s: float = 0.0  # first page: goto -> widget with its cells


OPEN_PAGES: list[Page] = []  # closed after each run, whatever happened


async def open_page(browser: Browser, url: str, console: list[str], name: str) -> Page:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    OPEN_PAGES.append(page)
    page.on("console", lambda m: console.append(f"{name} {m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"{name} pageerror: {e}"))
    await page.goto(url)
    return page


async def ready(page: Page, meta: dict[str, Any], timeout_s: float) -> Locator:
    """Wait for the widget with both cells synced; return the widget root."""
    root = page.locator("[data-testid=snb-root]").first
    traceback = page.locator("text=/Traceback/")
    deadline = time.monotonic() + timeout_s
    while not await root.is_visible():
        if await traceback.count():
            text = await traceback.first.evaluate(_AROUND_TEXT)
            raise RuntimeError(f"the notebook failed:\n{text}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no widget after {timeout_s} s")
        await asyncio.sleep(0.2)
    for cid in (meta["scratch"], meta["paper"]):
        await root.locator(f'[data-testid=snb-cell][data-cell-id="{cid}"] .cm-content').wait_for(
            state="attached", timeout=timeout_s * 1000
        )
    return root


def scratch_content(root: Locator, meta: dict[str, Any]) -> Locator:
    return root.locator(f'[data-testid=snb-cell][data-cell-id="{meta["scratch"]}"] .cm-content')


async def measure(
    root: Locator, click: str, until: str, index: int | None = None, timeout_s: float = 120
) -> dict[str, Any]:
    return await root.evaluate(
        _MEASURE_JS, {"click": click, "until": until, "index": index, "timeout": timeout_s * 1000}
    )


async def typist(
    page: Page, root: Locator, meta: dict[str, Any], interval_ms: float, stop: asyncio.Event
) -> int:
    """Page B: one key every ``interval_ms`` at the end of the scratch cell until ``stop``."""
    await scratch_content(root, meta).click()
    await page.keyboard.press("Control+End")
    typed = 0
    letters = "abcdefghijklmnopqrstuvwxyz"
    next_at = time.perf_counter()
    while not stop.is_set():
        key = "Space" if typed % 8 == 7 else letters[typed % 26]
        await page.keyboard.press(key)
        typed += 1
        next_at += interval_ms / 1000
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return typed


async def scratch_length(page: Page) -> int:
    trace = await page.evaluate("window.__snbTrace")
    return int(trace[-1][0]) if trace else -1


async def wait_kernel_idle(log: Path, quiet_s: float, timeout_s: float) -> None:
    """Wait until the kernel has logged nothing for ``quiet_s`` (its queue is drained)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and time.time() - log.stat().st_mtime >= quiet_s:
            return
        await asyncio.sleep(0.2)


async def one_run(
    browser: Browser,
    url: str,
    meta: dict[str, Any],
    args: argparse.Namespace,
    console: list[str],
    kernel_log: Path,
) -> Run:
    run = Run()
    t = time.perf_counter()
    page_a = await open_page(browser, url, console, "A")
    root_a = await ready(page_a, meta, args.timeout)
    run.ready_s = time.perf_counter() - t
    page_b = await open_page(browser, url, console, "B")
    root_b = await ready(page_b, meta, args.timeout)
    page_c = await open_page(browser, url, console, "C")
    root_c = await ready(page_c, meta, args.timeout)
    pages = {"A": (page_a, root_a), "B": (page_b, root_b), "C": (page_c, root_c)}
    for _name, (_page, root) in pages.items():
        await scratch_content(root, meta).evaluate(_TRACE_JS)
    await asyncio.sleep(1.0)  # let the views settle (handshakes, presence)

    stop = asyncio.Event()
    typing = asyncio.create_task(typist(page_b, root_b, meta, args.type_interval_ms, stop))
    now_ms = lambda: time.time() * 1000  # noqa: E731  (same clock as the pages' Date.now())
    toggle = "[data-testid=snb-history-toggle]"
    item = "[data-testid=snb-history-item]"
    more = "[data-testid=snb-history-more]"

    async def phase(name: str, body: Any) -> None:
        start = now_ms()
        await body()
        run.phases.append((name, start, now_ms()))

    async def step(label: str, click: str, until: str, index: int | None = None) -> bool:
        """One timed click in page A; a timeout is recorded (as missing) and reported."""
        r = await measure(root_a, click, until, index, args.step_timeout)
        if r.get("timeout"):
            run.timeouts.append(label)
            print(f"  {label}: nothing shown within {args.step_timeout:g} s", flush=True)
            return False
        run.ui[label], run.ui_dom[label] = r["paint"], r["dom"]
        await asyncio.sleep(args.gap_s)
        return True

    async def exit_preview() -> None:
        button = root_a.locator("[data-testid=snb-exit-preview]")
        if await button.count():
            await button.first.click()
            await asyncio.sleep(args.gap_s)

    async def baseline() -> None:
        await asyncio.sleep(args.phase_s)

    async def history() -> None:
        await step("first page, cold, B typing", toggle, "first")
        await root_a.locator(toggle).click()  # close
        await asyncio.sleep(args.gap_s)
        await step("first page, warm (reopen), B typing", toggle, "first")
        items = await root_a.locator(item).count()
        for label, index in (
            ("preview, 10th session, B typing", 9),
            ("preview, 50th session, B typing", 49),
        ):
            if index < items:
                await step(label, item, "preview", index)
        if await root_a.locator(more).is_visible():
            await step("load more, while B types", more, "more")
        await exit_preview()

    async def panel_open() -> None:
        await asyncio.sleep(args.phase_s)

    try:
        await phase("baseline", baseline)
        await phase("history", history)
        await phase("panel-open", panel_open)
    finally:
        stop.set()
        await typing
    # Nobody types from here on: wait for the backlog to drain, then A's actions again.
    stopped = time.perf_counter()
    final = await scratch_length(page_b)
    deadline = time.monotonic() + args.drain_timeout
    while (
        time.monotonic() < deadline
        and min([await scratch_length(page_a), await scratch_length(page_c)]) < final
    ):
        await asyncio.sleep(0.05)
    run.drain_ms = (time.perf_counter() - stopped) * 1000
    await wait_kernel_idle(kernel_log, 2.0, args.drain_timeout)
    run.idle_ms = (time.perf_counter() - stopped) * 1000 - 2000
    for name, (page, _root) in pages.items():
        run.traces[name] = await page.evaluate("window.__snbTrace")

    async def quiet() -> None:
        if await root_a.locator(toggle).get_attribute("aria-pressed") == "true":
            await root_a.locator(toggle).click()  # close
            await asyncio.sleep(args.gap_s)
        await step("first page, warm, nobody typing", toggle, "first")
        if await root_a.locator(item).count() > 9:
            await step("preview, 10th session, nobody typing", item, "preview", 9)
            await exit_preview()
        for k in range(args.load_more):
            if not await root_a.locator(more).is_visible():
                break
            if not await step(f"load more #{k + 1}, nobody typing", more, "more"):
                break
        run.loaded = await root_a.locator(item).count()
        if run.loaded:
            await step("preview, oldest listed, nobody typing", item, "preview", -1)

    await phase("quiet", quiet)
    return run


# --- 4. figures ----------------------------------------------------------------------------------


def first_reach(trace: list[list[float]]) -> dict[int, float]:
    """length -> the first time (ms) a page's scratch editor had at least that length."""
    out: dict[int, float] = {}
    best = -1
    for length, at in trace:
        length = int(length)
        if length > best:
            for k in range(best + 1, length + 1):
                out[k] = at
            best = length
    return out


def latencies(run: Run, meta: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """phase -> target ('C', 'A', 'kernel') -> per-keystroke latency from page B, ms."""
    typed = run.traces["B"]
    start_len = int(typed[0][0])
    reach = {name: first_reach(run.traces[name]) for name in ("A", "C")}
    kernel_trace = [[e["scratch"], e["end"] * 1000] for e in run.kernel if "scratch" in e]
    reach["kernel"] = first_reach(kernel_trace)
    out: dict[str, dict[str, list[float]]] = {}
    seen = start_len
    for length, at in typed[1:]:
        length = int(length)
        if length <= seen:
            continue
        seen = length
        phase = next((p for p, s, e in run.phases if s <= at <= e), None)
        if phase is None:
            continue
        out.setdefault(phase, {}).setdefault("typed", []).append(0.0)
        for target, times in reach.items():
            got = times.get(length)
            if got is not None:
                out.setdefault(phase, {}).setdefault(target, []).append(max(0.0, got - at))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def kernel_calls(run: Run, kind: str, phase: str | None = None) -> list[float]:
    spans = [(s, e) for p, s, e in run.phases if phase is None or p == phase]
    return [
        (e["end"] - e["start"]) * 1000
        for e in run.kernel
        if e["kind"] == kind and any(s <= e["start"] * 1000 <= t for s, t in spans)
    ]


def busy_percent(run: Run, phase: str) -> float | None:
    """Share of a phase the kernel spent inside ``handle()`` (its control loop is serial)."""
    span = next(((s, e) for p, s, e in run.phases if p == phase), None)
    if span is None or span[1] <= span[0]:
        return None
    total = 0.0
    for entry in run.kernel:
        if entry["kind"] == "open" or entry["kind"].startswith("call:"):
            continue
        start, end = entry["start"] * 1000, entry["end"] * 1000
        total += max(0.0, min(end, span[1]) - max(start, span[0]))
    return 100 * total / (span[1] - span[0])


def report(
    runs: list[Run],
    meta: dict[str, Any],
    args: argparse.Namespace,
    reference: list[tuple[str, float]],
) -> None:
    rows: list[tuple[str, list[float | None]]] = []

    def row(name: str, values: list[float | None]) -> None:
        rows.append((name, values))

    row("page A ready (goto -> widget shown)", [r.ready_s * 1000 for r in runs])
    row("kernel: SqlRoom() open (recovery)", [r.open_ms for r in runs])
    seen = [k for r in runs for k in [*r.ui, *r.timeouts]]
    labels = sorted(dict.fromkeys(seen), key=lambda k: (k.endswith("nobody typing"), seen.index(k)))
    rows.append(("-- page A, click -> shown (+1 frame)", []))
    for label in labels:
        row(
            f"A: {label}",
            [math.inf if label in r.timeouts else r.ui.get(label) for r in runs],
        )
    rows.append(("-- kernel-side handle() time", []))
    for kind, label in (("HistoryRequest", "history"), ("PreviewRequest", "preview")):
        calls = [kernel_calls(r, kind) for r in runs]
        row(f"kernel {label}: requests (count)", [float(len(c)) for c in calls])
        row(f"kernel {label}: median", [statistics.median(c) if c else None for c in calls])
        row(f"kernel {label}: max", [max(c) if c else None for c in calls])
    parts = (
        ("sessions (room history)", ("call:_history", "call:history")),
        ("  of it: changes() walk", ("call:changes",)),
        ("tags (list_tags, a lake query)", ("call:list_tags",)),
        ("preview fork (cells_at)", ("call:cells_at",)),
    )
    for name, kinds in parts:
        calls = [[ms for kind in kinds for ms in kernel_calls(r, kind)] for r in runs]
        row(f"  {name}: median", [statistics.median(c) if c else None for c in calls])
        row(f"  {name}: max", [max(c) if c else None for c in calls])
    for phase in ("baseline", "history", "panel-open"):
        calls = [kernel_calls(r, "ClientUpdate", phase) for r in runs]
        row(f"kernel update import, {phase}: max", [max(c) if c else None for c in calls])
    for phase in ("baseline", "history", "panel-open"):
        row(f"kernel busy in handle(), {phase}: %", [busy_percent(r, phase) for r in runs])
        row(
            f"history requests, {phase} (count)",
            [float(len(kernel_calls(r, "HistoryRequest", phase))) for r in runs],
        )
    row("typing stops -> A and C show the last key", [r.drain_ms for r in runs])
    row("typing stops -> kernel queue empty", [r.idle_ms for r in runs])
    rows.append(("-- keystroke B -> other view latency", []))
    per_run = [latencies(r, meta) for r in runs]
    for target, who in (("C", "idle view C"), ("A", "view A (panel)"), ("kernel", "kernel")):
        for phase in ("baseline", "history", "panel-open"):
            vals = [lat.get(phase, {}).get(target, []) for lat in per_run]
            for stat, fn in (
                ("median", statistics.median),
                ("p95", lambda v: pct(v, 0.95)),
                ("max", max),
            ):
                row(f"B->{who}, {phase}: {stat}", [fn(v) if v else None for v in vals])
            if target == "C":
                typed = [float(len(lat.get(phase, {}).get("typed", []))) for lat in per_run]
                row(f"keys typed in B, {phase}", typed)
                row("  of which reached C", [float(len(v)) for v in vals])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average now {load} (start: {args.load_at_start})")
    runs_hdr = "".join(f"{f'run {r.number}':>10}" for r in runs)
    print()
    print(
        f"{meta['edits']} edits -> {meta['changes']} Loro changes, {meta['sessions']} sessions; "
        f"paper cell {meta['paper_chars']} chars; B types 1 key / {args.type_interval_ms:g} ms; "
        f"deep preview = oldest of {runs[0].loaded} listed sessions"
    )
    print(f"{'measure (ms)':<46}{runs_hdr}{'median':>10}")
    for name, values in rows:
        if not values and name.startswith("--"):
            print(name)
            continue
        cells = "".join(
            f"{'-':>10}" if v is None else f"{'t/o':>10}" if v == math.inf else f"{v:>10.1f}"
            for v in values
        )
        present = [v for v in values if v is not None and v != math.inf]
        med = f"{statistics.median(present):>10.1f}" if present else f"{'-':>10}"
        print(f"{name:<46}{cells}{med}")
    print(f"(t/o: not shown within --step-timeout {args.step_timeout:g} s; -: not measured)")
    if reference:
        print("\nkernel in-process, same lake, no browser, nobody typing (median ms)")
        for name, ms in reference:
            print(f"{name:<46}{ms:>10.1f}")


# --- main ----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    print(f"sqlrooms_nb from {Path(snb.__file__).parent}", flush=True)
    lake, meta = build_lake(args.changes, Path(args.cache_dir), args.rebuild)
    reference = [] if args.no_kernel_ref else kernel_reference(lake, meta, args.repeat)
    runs: list[Run] = []
    failures: list[str] = []
    console: list[str] = []
    keep = Path(tempfile.mkdtemp(prefix="snb-history-panel-"))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for i in range(args.repeat):
                run_dir = keep / f"run{i + 1}"
                run_dir.mkdir()
                shutil.copytree(lake, run_dir / "lake")
                server = await asyncio.to_thread(start_server, run_dir, run_dir / "lake", meta)
                try:
                    run = await one_run(
                        browser, server.url, meta, args, console, run_dir / "kernel.jsonl"
                    )
                except Exception as exc:  # one failed run (e.g. a busy machine) is reported
                    failures.append(f"run {i + 1}: {type(exc).__name__}: {exc}")
                    print(f"run {i + 1} failed: {exc}", flush=True)
                    continue
                finally:
                    for page in OPEN_PAGES:
                        await page.context.close()
                    OPEN_PAGES.clear()
                    await asyncio.to_thread(server.stop)
                run.number = i + 1
                log = run_dir / "kernel.jsonl"
                run.kernel = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
                opened = [e for e in run.kernel if e["kind"] == "open"]
                run.open_ms = (opened[0]["end"] - opened[0]["start"]) * 1000 if opened else 0.0
                runs.append(run)
                ui = ", ".join(f"{k} {v:.0f}" for k, v in run.ui.items())
                print(f"run {i + 1}: {ui}", flush=True)
        finally:
            await browser.close()
    (keep / "console.log").write_text("\n".join(console) + "\n")
    if not runs:
        raise SystemExit("every run failed:\n" + "\n".join(failures))
    report(runs, meta, args, reference)
    for failure in failures:
        print(f"FAILED {failure}")
    for r in runs:
        if r.timeouts:
            missed = ", ".join(r.timeouts)
            print(f"run {r.number}: never shown within {args.step_timeout:g} s: {missed}")
    errors = [c for c in console if "error" in c.split(":")[0]]
    if errors:
        print(f"\n{len(errors)} browser console errors, e.g.: {errors[0][:300]}")
    print(f"\nlogs (kernel.jsonl, marimo.log, console.log): {keep}")
    if not args.keep:
        for i in range(args.repeat):
            shutil.rmtree(keep / f"run{i + 1}" / "lake", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=textwrap.dedent(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--load-more",
        type=int,
        default=3,
        help="press 'Load more' this many times before the deep preview",
    )
    parser.add_argument("--type-interval-ms", type=float, default=50.0)
    parser.add_argument(
        "--phase-s", type=float, default=6.0, help="length of the baseline and panel-open phases"
    )
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause between A's actions")
    parser.add_argument("--timeout", type=float, default=180.0, help="page ready timeout, s")
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=30.0,
        help="how long one of A's clicks may take to show its result, s",
    )
    parser.add_argument(
        "--cache-dir", default=str(Path(tempfile.gettempdir()) / "sqlrooms_nb_bench")
    )
    parser.add_argument(
        "--no-kernel-ref", action="store_true", help="skip the in-process kernel timings"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="wait for a backlog to drain, s"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached lake")
    parser.add_argument("--keep", action="store_true", help="keep each run's lake copy")
    args = parser.parse_args()
    args.load_at_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
