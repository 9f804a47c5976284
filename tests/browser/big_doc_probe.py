"""A 5,000-cell notebook in a page: how long it takes to show, scroll and edit (issue 6, part 8).

Shared by ``tests/browser/test_big_doc.py`` (which asserts bounds) and ``benchmarks/big_doc.py``
(which prints the figures, lazy editors next to eager ones).

The room is written to the lake beforehand (:func:`seed_room`), so opening the page measures
what a user opening a big notebook waits for: kernel recovery, the welcome with the whole
document, and the widget building 5,000 cells. In-page timings use ``performance.now()`` (ms
from navigation start), sampled once per animation frame by :data:`TIMELINE_SCRIPT`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb

from .widget_page import _READ_CELLS, WidgetPage, wait_for

ROOM = "big-doc"
NOTEBOOK = f"""
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import sqlrooms_nb as snb

    room = snb.SqlRoom("{ROOM}", author="probe")
    return (room,)


@app.cell
def _(room):
    room.widget
    return


if __name__ == "__main__":
    app.run()
"""

EAGER_SCRIPT = "window.sqlroomsNbEagerEditors = true;"
"""Init script: the widget builds every cell's editor at once (the behaviour before lazy
editors; see js/ui/cells.ts), for side-by-side figures."""

# Once per animation frame, from navigation start: when the widget root appeared, when its first
# cell was on screen, when all cells existed; and the longest frame gap (main thread blocked).
TIMELINE_SCRIPT = """
(() => {
  const t = window.__snbTimeline = {root: null, firstCell: null, allCells: null, cells: 0,
    want: 0, longestFrame: 0, framesOver50: 0, lastFrame: null};
  const findRoot = (node) => {
    const found = node.querySelector('[data-testid=snb-root]');
    if (found) return found;
    for (const el of node.querySelectorAll('*')) {
      if (el.shadowRoot) { const r = findRoot(el.shadowRoot); if (r) return r; }
    }
    return null;
  };
  let root = null;
  const frame = () => {
    const now = performance.now();
    if (t.lastFrame !== null) {
      const gap = now - t.lastFrame;
      t.longestFrame = Math.max(t.longestFrame, gap);
      if (gap > 50) t.framesOver50++;
    }
    t.lastFrame = now;
    if (t.allCells === null && (!root || !root.isConnected)) root = findRoot(document);
    if (root && t.allCells === null) {  // then only frame gaps: counting costs a frame's time
      if (t.root === null) t.root = now;
      const list = root.querySelector('.snb-cells');
      t.cells = list ? list.querySelectorAll(':scope > [data-testid=snb-cell]').length : 0;
      const first = list && list.querySelector('[data-testid=snb-cell]');
      if (first && t.firstCell === null) {
        const box = first.getBoundingClientRect();
        if (box.height > 0 && box.bottom > 0 && box.top < innerHeight) t.firstCell = now;
      }
      if (t.want && t.cells >= t.want && t.allCells === null) t.allCells = now;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})();
"""

# The element that scrolls the widget: its first scrollable ancestor, across shadow roots.
FIND_SCROLLER = """
(root) => {
  let node = root;
  while (node) {
    if (node instanceof Element) {
      const style = getComputedStyle(node);
      if (/(auto|scroll)/.test(style.overflowY) && node.scrollHeight > node.clientHeight + 10) {
        return node;
      }
    }
    node = node.parentNode || node.host;
  }
  return document.scrollingElement;
}
"""

# Jump `scroller` to its end (`toEnd`) or its top, then scroll back `step` px per animation frame
# for `frames` frames (a wheel's pace). Returns the time from the jump to the first frame after it,
# how many jumps it took (cells that render taller than their estimate move the end), and the
# frame intervals (ms) of the steady scroll.
JUMP_AND_SCROLL = """
async ([scroller, toEnd, step, frames]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const atEnd = () => scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 2;
  const t0 = performance.now();
  let jumps = 0, firstFrame = null;
  do {
    scroller.scrollTop = toEnd ? scroller.scrollHeight : 0;
    await frame();
    if (firstFrame === null) firstFrame = performance.now() - t0;
    jumps++;
  } while (toEnd && !atEnd() && jumps < 20);
  const reached = toEnd ? atEnd() : scroller.scrollTop === 0;
  const intervals = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    scroller.scrollTop += toEnd ? -step : step;
    await frame();
    const now = performance.now();
    intervals.push(now - last);
    last = now;
  }
  return {firstFrame, jumps, reached, intervals,
          scrollHeight: scroller.scrollHeight};
}
"""

# Event Timing: how long keystrokes took from input to the next paint (ms).
RECORD_KEY_EVENTS = """
() => {
  window.__snbKeys = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.name === 'keydown' || e.name === 'keypress' || e.name === 'input') {
        window.__snbKeys.push(e.duration);
      }
    }
  }).observe({type: 'event', durationThreshold: 0, buffered: false});
}
"""


def source_of(i: int) -> tuple[str, str, str]:
    """``(kind, name, source)`` of cell ``i`` (0-based): every fifth a Markdown heading."""
    if i % 5 == 4:
        return "markdown", "", f"## Part {i // 5}\nNotes on cells {i - 4} to {i}."
    return "sql", f"c{i}", f"select {i} as v{i}"


def seed_room(lake: Path, cells: int) -> list[str]:
    """Write a room of ``cells`` small cells (:func:`source_of`) to ``lake`` in one change;
    return their ids in order."""
    with snb.SqlRoom(ROOM, lake=str(lake), author="seed") as room:
        doc = room.doc
        ids = []
        for i in range(cells):
            kind, name, source = source_of(i)
            ids.append(nb.add_cell(doc, source, name=name, kind=kind))
        doc.commit()
    return [str(i) for i in ids]


def timeline(page: Page) -> dict[str, Any]:
    """The page's timeline (:data:`TIMELINE_SCRIPT`), ms from navigation start."""
    found: dict[str, Any] = page.evaluate("() => ({...window.__snbTimeline})")
    return found


def wait_for_cells(page: Page, cells: int, timeout_s: float) -> dict[str, Any]:
    """Tell the timeline how many cells to expect and wait until they all exist."""
    page.evaluate(f"() => {{ window.__snbTimeline.want = {cells}; }}")
    return wait_for(
        f"{cells} cells in the page",
        lambda: timeline(page),
        lambda t: t["allCells"] is not None,
        timeout_s,
    )


def metrics(page: Page) -> dict[str, float]:
    """Chromium's page metrics after a garbage collection: ``JSHeapUsedSize`` (bytes),
    ``Nodes`` (DOM nodes), ``JSEventListeners``, ..."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("Performance.enable")
        raw = cdp.send("Performance.getMetrics")["metrics"]
    finally:
        cdp.detach()
    return {m["name"]: float(m["value"]) for m in raw}


def text_of(widget: WidgetPage, cell_id: str) -> str | None:
    """One cell's editor text (reading only that cell: reading all 5,000 takes seconds)."""
    found: list[dict[str, Any]] = widget.cell(cell_id).evaluate_all(_READ_CELLS)
    return found[0]["text"] if found else None


def materialised_editors(widget: WidgetPage) -> int:
    """How many cells have a CodeMirror editor in the DOM."""
    count: int = widget.root.first.evaluate(
        "(root) => root.querySelectorAll('[data-testid=snb-cell] .cm-editor').length"
    )
    return count


def jump_and_scroll(widget: WidgetPage, to_end: bool, step: int, frames: int) -> dict[str, Any]:
    """Jump the widget's scroller to its end (or top), then scroll ``frames`` frames back,
    ``step`` px each (:data:`JUMP_AND_SCROLL`): ms to the first frame after the jump, jumps
    needed, frame interval figures (ms)."""
    scroller = widget.root.first.evaluate_handle(FIND_SCROLLER)
    raw: dict[str, Any] = widget.page.evaluate(JUMP_AND_SCROLL, [scroller, to_end, step, frames])
    intervals = sorted(raw["intervals"]) or [0.0]
    n = len(intervals)
    return {
        "jump_first_frame_ms": round(raw["firstFrame"]),
        "jumps": raw["jumps"],
        "reached": raw["reached"],
        "frames": n,
        "p50_ms": round(intervals[n // 2], 1),
        "p95_ms": round(intervals[min(n - 1, int(n * 0.95))], 1),
        "max_ms": round(intervals[-1], 1),
        "scroll_height_px": raw["scrollHeight"],
    }


def record_keys(page: Page) -> None:
    page.evaluate(RECORD_KEY_EVENTS)


def key_durations(page: Page) -> dict[str, float]:
    """Event Timing durations of the keystrokes since :func:`record_keys` (ms, rounded to 8 ms
    by Chromium)."""
    raw: list[float] = sorted(page.evaluate("() => window.__snbKeys"))
    if not raw:
        return {"events": 0, "p50_ms": float("nan"), "max_ms": float("nan")}
    return {"events": len(raw), "p50_ms": raw[len(raw) // 2], "max_ms": raw[-1]}


EDIT = " -- edited at the end"
SCROLL_STEP_PX = 300
"""A fast wheel: 300 px per frame (~3 cells)."""
SCROLL_FRAMES = 60


def measure(
    page: Page,
    url: str,
    cells: int,
    last_id: str,
    timeout_s: float,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Open ``url`` in ``page`` (a fresh page: the timeline script is installed first), wait
    for ``cells`` cells, then scroll to the end and back and type :data:`EDIT` at the end of
    cell ``last_id``, waiting for Saved. Returns the figures (ms from navigation start unless
    the name says otherwise). Raises AssertionError when a step does not happen in time."""
    page.add_init_script(TIMELINE_SCRIPT)
    page.goto(url)
    widget = WidgetPage(page, "page")
    found = wait_for_cells(page, cells, timeout_s)
    log(f"{cells} cells in the page")
    widget.wait_saved(timeout_s)
    log("saved")
    loaded = metrics(page)
    figures: dict[str, Any] = {
        "root_ms": round(found["root"]),
        "first_cell_ms": round(found["firstCell"] or float("nan")),
        "all_cells_ms": round(found["allCells"]),
        "longest_frame_ms": round(timeline(page)["longestFrame"]),
        "heap_mb": round(loaded["JSHeapUsedSize"] / 1e6, 1),
        "dom_nodes": int(loaded["Nodes"]),
        "editors": materialised_editors(widget),
    }
    figures["scroll_end"] = jump_and_scroll(widget, True, SCROLL_STEP_PX, SCROLL_FRAMES)
    figures["scroll_top"] = jump_and_scroll(widget, False, SCROLL_STEP_PX, SCROLL_FRAMES)
    log("scrolled")
    scrolled = metrics(page)
    figures["heap_after_scroll_mb"] = round(scrolled["JSHeapUsedSize"] / 1e6, 1)
    figures["editors_after_scroll"] = materialised_editors(widget)
    cell = widget.cell(last_id)
    cell.scroll_into_view_if_needed(timeout=timeout_s * 1000)
    content = cell.locator("[data-testid=snb-cell-editor] .cm-content")
    content.wait_for(state="visible", timeout=timeout_s * 1000)
    log("editor of the last cell shown")
    record_keys(page)
    before = text_of(widget, last_id)
    t0 = time.monotonic()
    widget.type_at_end(cell, EDIT)
    figures["typing_s"] = round(time.monotonic() - t0, 2)
    wait_for(
        "the edit in the last cell's editor",
        lambda: text_of(widget, last_id),
        lambda t: t == f"{before}{EDIT}",
        timeout_s,
    )
    widget.wait_saved(timeout_s)
    figures["edit_saved_s"] = round(time.monotonic() - t0, 2)
    figures["keys"] = key_durations(page)
    return figures
