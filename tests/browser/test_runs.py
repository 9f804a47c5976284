"""Running cells from the UI in `marimo edit` with two pages: cascades and cancel."""

from __future__ import annotations

import time

import pytest

from .test_marimo import two_pages
from .widget_page import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_a_cascade_run_in_page_a_shows_its_downstream_results_in_page_b(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    start = a.ids()
    a.add_cell()
    new = wait_for("the added cell in page B", b.ids, lambda ids: len(ids) == len(start) + 1)[-1]
    a.type_at_end(a.cell(new), "SELECT count(*) AS airlines FROM delay_by_airline")
    wait_for("the text in page B", lambda: b.text_of(new), lambda t: "airlines" in (t or ""))
    a.page.wait_for_timeout(300)  # let the throttled update reach the kernel
    a.run(a.cell_named("delay_by_airline"))
    for page in (a, b):
        wait_for(
            f"the downstream cell's result in {page.name}",
            lambda page=page: page.rowcount(page.cell(new)),
            lambda n: n == "1",
            timeout_s=60,
        )
        assert "16" in page.cell(new).locator("[data-testid=snb-result]").first.inner_text()
    a.page.screenshot(path=str(artifact("page-a-cascade.png")))
    b.page.screenshot(path=str(artifact("page-b-cascade.png")))


def test_a_long_query_cancelled_from_the_ui_ends_cancelled_in_both_pages(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    start = a.ids()
    a.add_cell()
    new = wait_for("the added cell in page B", b.ids, lambda ids: len(ids) == len(start) + 1)[-1]
    a.type_at_end(
        a.cell(new),
        "SELECT count(*) AS n FROM flights x, flights y "
        "WHERE x.dep_delay::DOUBLE * y.arr_delay = 7.5",
    )
    wait_for("the text in page B", lambda: b.text_of(new), lambda t: "arr_delay" in (t or ""))
    a.page.wait_for_timeout(300)
    a.run(a.cell(new))
    for page in (a, b):
        page.cell(new).locator("[data-testid=snb-progress]").first.wait_for(
            state="visible", timeout=30_000
        )
    a.page.wait_for_timeout(1000)
    a.page.screenshot(path=str(artifact("page-a-running.png")))
    asked = time.monotonic()
    a.click(a.cell(new), "snb-cancel")
    for page in (a, b):
        page.cell(new).locator("[data-testid=snb-cancelled]").first.wait_for(
            state="visible", timeout=10_000
        )
        assert page.cell(new).locator("[data-testid=snb-cell-error]").count() == 0
    print(f"cancel seen in both pages after {time.monotonic() - asked:.2f} s")
    a.page.screenshot(path=str(artifact("page-a-cancelled.png")))
    b.page.screenshot(path=str(artifact("page-b-cancelled.png")))
