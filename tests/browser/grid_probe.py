"""Measurements of the result grid in a page: Run -> rows on screen, and scrolling frames.

Shared by the browser test and ``benchmarks/grid_first_page.py``.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page

# Records when a Run button is clicked (capture phase: sees clicks inside shadow roots), on the
# same clock as the grid's `data-first-rows-at` (epoch ms from performance.timeOrigin).
RECORD_RUN_CLICKS = """
() => {
  if (window.__snbRunClicks) return;
  window.__snbRunClicks = [];
  document.addEventListener('click', (e) => {
    if (e.composedPath().some((el) => el.dataset && el.dataset.testid === 'snb-run')) {
      window.__snbRunClicks.push(performance.timeOrigin + performance.now());
    }
  }, true);
}
"""

# Scrolls the grid by `step` px per animation frame for `frames` frames; returns the frame
# intervals (ms) and, per frame, how many rows in view had no data yet.
SCROLL_FRAMES = """
async (grid, [step, frames]) => {
  const intervals = [];
  const empty = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    grid.scrollTop += step;
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    intervals.push(now - last);
    last = now;
    const top = grid.scrollTop, bottom = top + grid.clientHeight;
    let blank = 0;
    for (const row of grid.querySelectorAll('[data-testid=snb-grid-row]')) {
      const y = Number(row.dataset.row) * 26 + 38;
      if (y + 26 > top + 38 && y < bottom && row.dataset.filled !== '1') blank++;
    }
    empty.push(blank);
  }
  return {intervals, empty, rowsInDom: grid.querySelectorAll('[data-testid=snb-grid-row]').length};
}
"""


def record_run_clicks(page: Page) -> None:
    page.evaluate(RECORD_RUN_CLICKS)


def run_to_rows_ms(page: Page, result: Locator) -> float:
    """Milliseconds from the latest Run click to the result's first rows on screen."""
    clicked = page.evaluate("() => window.__snbRunClicks[window.__snbRunClicks.length - 1]")
    shown = float(result.get_attribute("data-first-rows-at") or "nan")
    return shown - float(clicked)


def scroll_stats(grid: Locator, step: int, frames: int) -> dict[str, Any]:
    raw: dict[str, Any] = grid.evaluate(SCROLL_FRAMES, [step, frames])
    intervals = sorted(raw["intervals"])
    n = len(intervals)
    return {
        "frames": n,
        "p50_ms": round(intervals[n // 2], 1),
        "p95_ms": round(intervals[min(n - 1, int(n * 0.95))], 1),
        "max_ms": round(intervals[-1], 1),
        "frames_with_blank_rows": sum(1 for b in raw["empty"] if b),
        "rows_in_dom": raw["rowsInDom"],
    }
