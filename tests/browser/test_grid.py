"""The result grid on the demo's 336,776-row ``flights`` table, in marimo and Chromium."""

from __future__ import annotations

import pytest

from .grid_probe import record_run_clicks, run_to_rows_ms, scroll_stats
from .widget_page import DEMO_CELLS, WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

FLIGHTS = 336776
DEP_DELAY = 5  # column index of dep_delay in flights


def first_cells(grid, col: int) -> tuple[str, str]:
    """(row index, text) of column ``col`` in the first filled row in view."""
    row, text = grid.evaluate(
        """(grid, col) => {
          const rows = [...grid.querySelectorAll('[data-testid=snb-grid-row][data-filled="1"]')]
            .filter((r) => Number(r.dataset.row) * 26 >= grid.scrollTop - 1)
            .sort((a, b) => a.dataset.row - b.dataset.row);
          const row = rows[0];
          if (!row) return ['', ''];
          return [row.dataset.row, row.querySelector(`[data-col="${col}"]`).textContent];
        }""",
        col,
    )
    return row, text


def test_sort_and_scroll_the_336776_row_flights_result(marimo_demo, open_page, artifact):
    a = WidgetPage(open_page("page-a", marimo_demo.url), "page A")
    a.wait_ready(cells=len(DEMO_CELLS))
    record_run_clicks(a.page)
    a.add_cell()
    new = wait_for("the added cell", a.ids, lambda ids: len(ids) == len(DEMO_CELLS) + 1)[-1]
    cell = a.cell(new)
    a.type_at_end(cell, "select * from flights")
    wait_for(
        "the SQL in the kernel's doc",
        lambda: a.text_of(new),
        lambda t: t == "select * from flights",
    )
    a.run(cell)
    wait_for("336776 rows", lambda: a.rowcount(cell), lambda n: n == str(FLIGHTS), timeout_s=120)
    result = cell.locator("[data-testid=snb-result]").first
    wait_for("rows on screen", lambda: result.get_attribute("data-first-rows-at"), bool)
    first_rows_ms = run_to_rows_ms(a.page, result)
    summary = cell.locator("[data-testid=snb-result-summary]").inner_text()
    assert summary.startswith("336,776 rows · 19 columns · ") and " ms" in summary, summary
    headers = cell.locator("[data-testid=snb-grid-header]")
    assert headers.count() == 19
    assert headers.nth(DEP_DELAY).get_attribute("data-column") == "dep_delay"
    assert "smallint" in headers.nth(DEP_DELAY).inner_text()
    grid = cell.locator("[data-testid=snb-grid]")
    rows = cell.locator("[data-testid=snb-grid-row]")
    assert 10 < rows.count() < 100  # virtualized: only the rows in view (+ overscan) exist
    assert first_cells(grid, 0) == ("0", "2013")
    a.page.screenshot(path=artifact("grid-first-rows.png"))

    # Steady scrolling through pages the kernel serves on demand.
    idle = scroll_stats(grid, 0, 60)  # the page's own frame rate, for comparison
    smooth = scroll_stats(grid, 600, 90)
    wait_for("rows in view after scrolling", lambda: first_cells(grid, 0)[1], lambda t: t == "2013")
    assert smooth["rows_in_dom"] < 100
    # A jump to the end: the last row's page is fetched.
    grid.evaluate("(g) => { g.scrollTop = g.scrollHeight; }")
    last = cell.locator(f'[data-testid=snb-grid-row][data-row="{FLIGHTS - 1}"][data-filled="1"]')
    wait_for("the last row", last.count, lambda n: n == 1)
    assert last.locator('[data-col="0"]').inner_text() == "2013"

    # Sorting happens in the kernel: ascending, descending (nulls last), none.
    header = cell.locator('[data-testid=snb-grid-header][data-column="dep_delay"]')
    header.click()
    assert header.get_attribute("data-sort") == "asc"
    wait_for(
        "the earliest departure first",
        lambda: first_cells(grid, DEP_DELAY),
        lambda v: v == ("0", "-43"),
    )
    header.click()
    assert header.get_attribute("data-sort") == "desc"
    wait_for(
        "the latest departure first",
        lambda: first_cells(grid, DEP_DELAY),
        lambda v: v == ("0", "1301"),
    )
    a.page.screenshot(path=artifact("grid-sorted-desc.png"))
    grid.evaluate("(g) => { g.scrollTop = g.scrollHeight; }")
    wait_for("NULL delays last", last.count, lambda n: n == 1)
    assert last.locator(f'[data-col="{DEP_DELAY}"]').inner_text() == "NULL"
    sorted_scroll = scroll_stats(grid, -600, 60)
    header.click()
    assert header.get_attribute("data-sort") == "none"
    wait_for(
        "the result's own order back", lambda: first_cells(grid, 3), lambda v: v == ("0", "517")
    )

    # Copy a cell (the exact value), and export the whole result.
    cell.locator('[data-testid=snb-grid-row][data-row="0"] [data-col="5"]').click()
    a.page.keyboard.press("Control+c")
    wait_for("the copied cell", lambda: grid.get_attribute("data-copied"), lambda v: v == "2")
    with a.page.expect_download(timeout=60_000) as download:
        cell.locator("[data-testid=snb-export-parquet]").click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".parquet")
    import pyarrow.parquet as pq

    assert pq.read_metadata(path).num_rows == FLIGHTS
    print(
        f"\n[grid] run -> rows on screen: {first_rows_ms:.0f} ms; idle: {idle}; scroll: {smooth}; "
        f"sorted scroll: {sorted_scroll}"
    )
    (artifact("grid-numbers.txt")).write_text(
        f"run_to_rows_ms={first_rows_ms:.0f}\nidle={idle}\nscroll={smooth}\n"
        f"sorted_scroll={sorted_scroll}\n"
    )
    a.page.screenshot(path=artifact("grid-final.png"))
