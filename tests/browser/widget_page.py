"""Drive the sqlrooms_nb widget in a page through its ``data-testid`` hooks (DESIGN.md).

Playwright locators pierce shadow roots, so the same code serves marimo and JupyterLab.
Waits poll with a deadline and fail with what was last seen, never a bare timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from playwright.sync_api import Locator, Page

T = TypeVar("T")

DEMO_CELLS = [
    ("markdown", ""),
    ("sql", "delay_by_airline"),
    ("sql", "worst_routes"),
    ("input", "origin"),
    ("sql", "flights_per_month"),
    ("chart", ""),
]
"""The cells notebooks/demo.py makes on first open: (kind, name), in order."""
DEMO_NAMES = [name for _, name in DEMO_CELLS]
DEMO_SQL = [name for kind, name in DEMO_CELLS if kind == "sql"]
"""The demo's SQL cells, in order."""

WIDGET_TIMEOUT_S = 60.0
SYNC_TIMEOUT_S = 15.0

# Reads each cell element: id, kind, name (an <input>'s value or an element's text) and the
# editor's text (from CodeMirror's state when reachable, else its rendered lines).
_READ_CELLS = """
(cells) => cells.map((cell) => {
  const nameEl = cell.querySelector('[data-testid=snb-cell-name]');
  let name = null;
  if (nameEl) name = (typeof nameEl.value === 'string' ? nameEl.value : nameEl.textContent).trim();
  const editor = cell.querySelector('[data-testid=snb-cell-editor]');
  const content = editor && (editor.classList.contains('cm-content')
    ? editor : editor.querySelector('.cm-content'));
  let text = null;
  if (content) {
    const view = (content.cmTile && content.cmTile.root && content.cmTile.root.view)
      || (content.cmView && content.cmView.rootView && content.cmView.rootView.view);
    text = view ? view.state.doc.toString()
      : [...content.querySelectorAll('.cm-line')].map((line) => line.textContent).join('\\n');
  }
  return {id: cell.getAttribute('data-cell-id'), kind: cell.getAttribute('data-cell-kind'),
          name, text};
})
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


@dataclass(frozen=True)
class CellView:
    """One cell as a page shows it."""

    id: str
    kind: str | None
    name: str | None
    text: str | None


def wait_for(
    what: str, probe: Callable[[], T], ok: Callable[[T], bool], timeout_s: float = SYNC_TIMEOUT_S
) -> T:
    """Call ``probe`` until ``ok(value)``; return the value, or fail saying what was last seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; last: {value!r}"
            )
        time.sleep(0.1)


class WidgetPage:
    """The widget as shown in one page: the only one, or the ``index``-th (0-based) of several."""

    def __init__(self, page: Page, name: str, index: int | None = None) -> None:
        self.page = page
        self.name = name
        self.index = index

    @property
    def root(self) -> Locator:
        roots = self.page.locator("[data-testid=snb-root]")
        return roots if self.index is None else roots.nth(self.index)

    def wait_ready(self, cells: int | None = None, timeout_s: float = WIDGET_TIMEOUT_S) -> None:
        """Wait for the widget root, then (if given) for exactly ``cells`` cells.

        Fails at once, with the traceback, when the host shows a Python traceback instead.
        """
        tracebacks = self.page.locator("text=/Traceback/")
        found = wait_for(
            f"the widget in {self.name}",
            lambda: "root" if self.root.count() else "traceback" if tracebacks.count() else "",
            bool,
            timeout_s,
        )
        if found == "traceback":
            text = tracebacks.first.evaluate(_AROUND_TEXT)
            raise AssertionError(f"{self.name} shows a traceback instead of the widget:\n{text}")
        self.root.first.wait_for(state="visible", timeout=timeout_s * 1000)
        if cells is not None:
            wait_for(
                f"{cells} cells in {self.name}", self.cells, lambda c: len(c) == cells, timeout_s
            )

    # --- reading -------------------------------------------------------------------------------

    def cells(self) -> list[CellView]:
        raw: list[dict[str, Any]] = self.root.locator("[data-testid=snb-cell]").evaluate_all(
            _READ_CELLS
        )
        return [CellView(**c) for c in raw]

    def ids(self) -> list[str]:
        return [c.id for c in self.cells()]

    def sql_ids(self) -> list[str]:
        """Ids of the SQL cells only (markdown cells render, input and chart cells have no
        editor shown: tests that type pick these)."""
        return [c.id for c in self.cells() if c.kind == "sql"]

    def cell_named(self, name: str) -> Locator:
        views = self.cells()
        ids = [c.id for c in views if c.name == name]
        assert len(ids) == 1, f"{self.name}: one cell named {name!r} expected, saw {views!r}"
        return self.cell(ids[0])

    def cell(self, cell_id: str) -> Locator:
        return self.root.locator(f'[data-testid=snb-cell][data-cell-id="{cell_id}"]')

    def text_of(self, cell_id: str) -> str | None:
        return next((c.text for c in self.cells() if c.id == cell_id), None)

    def presence(self) -> list[dict[str, Any]]:
        """The toolbar's who-is-here entries: ``{"view", "name", "title", "self"}``, in order."""
        peers: list[dict[str, Any]] = self.root.first.locator(
            "[data-testid=snb-presence] > *"
        ).evaluate_all(
            "(els) => els.map((e) => ({view: e.dataset.view, name: e.dataset.name,"
            " title: e.title, self: e.dataset.self === 'true'}))"
        )
        return peers

    def status(self) -> str:
        return self.root.locator("[data-testid=snb-status]").first.inner_text()

    def wait_saved(self, timeout_s: float = SYNC_TIMEOUT_S) -> None:
        """Wait until the status badge says Saved (after giving pending edits time to leave)."""
        time.sleep(0.5)
        wait_for(f"'Saved' in {self.name}", self.status, lambda s: "Saved" in s, timeout_s)

    def rowcount(self, cell: Locator) -> str:
        counts = cell.locator("[data-testid=snb-result-rowcount]")
        return counts.first.inner_text().strip() if counts.count() else ""

    # --- acting --------------------------------------------------------------------------------

    def focus_end(self, cell: Locator) -> None:
        """Put the caret at the end of a cell's editor."""
        cell.locator("[data-testid=snb-cell-editor] .cm-content").click()
        self.page.keyboard.press("Control+End")

    def type_at_end(self, cell: Locator, text: str) -> None:
        self.focus_end(cell)
        self.page.keyboard.type(text)

    def click(self, cell: Locator, testid: str) -> None:
        """Click a per-cell action (hovering first: actions may show on hover only)."""
        cell.hover()
        cell.locator(f"[data-testid={testid}]").first.click()

    def run(self, cell: Locator) -> None:
        self.click(cell, "snb-run")

    def add_cell(self) -> None:
        self.root.locator("[data-testid=snb-add-cell]").first.click()

    def toolbar(self, testid: str) -> Locator:
        """A toolbar control, e.g. ``snb-undo``, ``snb-redo``."""
        return self.root.first.locator(f"[data-testid={testid}]")

    def undo(self) -> None:
        """Click Undo: this page's newest own edit, over all cells and the cell list."""
        self.toolbar("snb-undo").click()

    def redo(self) -> None:
        self.toolbar("snb-redo").click()
