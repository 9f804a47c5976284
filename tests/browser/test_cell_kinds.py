"""Markdown, chart and input cells in the demo under `marimo edit`, two pages = two people."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page

from .servers import Server
from .widget_page import WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

XSS = (
    "# Notes\n\n"
    "Some **bold** text and [a link](https://example.com).\n\n"
    "<script>window.__snb_xss = 'script'</script>\n\n"
    '<img src="x" onerror="window.__snb_xss = \'onerror\'">\n\n'
    "[click me](javascript:window.__snb_xss='link')\n"
)


def pages(open_page: Callable[[str, str], Page], server: Server) -> tuple[WidgetPage, WidgetPage]:
    a = WidgetPage(open_page("page-a", server.url), "page A")
    a.wait_ready()
    b = WidgetPage(open_page("page-b", server.url), "page B")
    b.wait_ready()
    n = len(a.cells())
    wait_for("the same cells in both pages", lambda: len(b.cells()), lambda c: c == n)
    return a, b


def added_cell_of_kind(page: WidgetPage, kind: str, before: list[str]) -> Locator:
    """The one cell of ``kind`` that is not among the ids ``before`` (the demo has its own)."""
    ids = wait_for(
        f"one new {kind} cell in {page.name}",
        lambda: [c.id for c in page.cells() if c.kind == kind and c.id not in before],
        lambda found: len(found) == 1,
    )
    return page.cell(ids[0])


def test_a_markdown_cell_with_script_is_rendered_inert(marimo_demo, open_page, artifact):
    a, b = pages(open_page, marimo_demo)
    before = a.ids()
    a.root.locator("[data-testid=snb-add-markdown]").click()
    cell = added_cell_of_kind(a, "markdown", before)
    # A new text cell opens in its editor, focused.
    cell.locator("[data-testid=snb-cell-editor] .cm-content").wait_for(state="visible")
    a.page.keyboard.type(XSS)
    a.page.keyboard.press("Escape")
    for page in (a, b):
        rendered = added_cell_of_kind(page, "markdown", before).locator(
            "[data-testid=snb-markdown]"
        )
        rendered.locator("h1").wait_for(state="visible", timeout=15_000)
        assert rendered.locator("h1").inner_text() == "Notes"
        assert rendered.locator("strong").inner_text() == "bold"
        wait_for(
            f"the whole text rendered in {page.name}",
            rendered.locator("a").count,
            lambda n: n >= 1,
        )
        assert rendered.locator("script").count() == 0
        dangerous = rendered.evaluate(
            "(el) => [...el.querySelectorAll('*')].flatMap((n) => [...n.attributes]"
            ".filter((a) => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))"
            ".map((a) => `${n.tagName} ${a.name}=${a.value}`))"
        )
        assert dangerous == []
        assert rendered.locator("img").count() == 1  # kept, without its handler
        link = rendered.locator("a[href='https://example.com']")
        assert link.get_attribute("target") == "_blank"
        assert "noopener" in (link.get_attribute("rel") or "")
        page.page.wait_for_timeout(300)  # an onerror would have fired by now
        assert page.page.evaluate("() => window.__snb_xss") is None
        js_link = rendered.locator("a", has_text="click me")
        if js_link.count():
            js_link.click()
        assert page.page.evaluate("() => window.__snb_xss") is None
    cell.screenshot(path=artifact("markdown-cell.png"))
    # Double-click edits again; the editor holds the source, not the HTML.
    a_rendered = cell.locator("[data-testid=snb-markdown]")
    a_rendered.dblclick()
    cell.locator("[data-testid=snb-cell-editor] .cm-content").wait_for(state="visible")
    assert a_rendered.is_hidden()
    text = next(c.text for c in a.cells() if c.kind == "markdown" and c.id not in before)
    assert text is not None and text.startswith("# Notes") and "<script>" in text


def test_a_chart_cell_renders_and_its_spec_is_shared(marimo_demo, open_page, artifact):
    a, b = pages(open_page, marimo_demo)
    source = a.cell_named("flights_per_month")
    a.run(source)
    wait_for("the result of flights_per_month", lambda: a.rowcount(source), lambda n: n == "12")
    before = a.ids()
    a.root.locator("[data-testid=snb-add-chart]").click()
    chart = added_cell_of_kind(a, "chart", before)
    # The new chart plots the last result: month on x, flights on y, as bars.
    assert chart.locator("[data-testid=snb-chart-source]").input_value() == "flights_per_month"
    assert chart.locator("[data-testid=snb-chart-x]").input_value() == "month"
    assert chart.locator("[data-testid=snb-chart-y]").input_value() == "flights"
    bars = chart.locator("[data-testid=snb-chart] svg .mark-rect path")
    wait_for("12 bars in page A", bars.count, lambda n: n == 12, timeout_s=30)
    width = chart.locator("[data-testid=snb-chart] svg").first.evaluate(
        "(svg) => svg.getBBox().width"
    )
    assert width > 300, f"the chart is {width} px wide"
    chart.screenshot(path=artifact("chart-bars.png"))
    # Page B draws the same chart from the shared spec.
    b_chart = added_cell_of_kind(b, "chart", before)
    b_bars = b_chart.locator("[data-testid=snb-chart] svg .mark-rect path")
    wait_for("12 bars in page B", b_bars.count, lambda n: n == 12, timeout_s=30)
    # B switches to a line: both pages redraw it.
    b_chart.locator("[data-testid=snb-chart-mark]").select_option("line")
    for page, cell in ((a, chart), (b, b_chart)):
        line = cell.locator("[data-testid=snb-chart] svg .mark-line path")
        wait_for(f"a line in {page.name}", line.count, lambda n: n >= 1, timeout_s=30)
    assert chart.locator("[data-testid=snb-chart-mark]").input_value() == "line"
    b_chart.screenshot(path=artifact("chart-line-page-b.png"))
    # An aggregate over a coloured breakdown: the kernel groups, the chart stacks.
    delay = a.cell_named("delay_by_airline")
    a.run(delay)
    wait_for("the result of delay_by_airline", lambda: a.rowcount(delay), lambda n: n == "16")
    chart.locator("[data-testid=snb-chart-source]").select_option("delay_by_airline")
    chart.locator("[data-testid=snb-chart-mark]").select_option("bar")
    chart.locator("[data-testid=snb-chart-x]").select_option("carrier")
    chart.locator("[data-testid=snb-chart-y]").select_option("flights")
    chart.locator("[data-testid=snb-chart-aggregate]").select_option("sum")
    wait_for("16 carrier bars", bars.count, lambda n: n == 16, timeout_s=30)
    chart.screenshot(path=artifact("chart-sum.png"))
    assert chart.locator("[data-testid=snb-chart] svg").inner_html().count("sum of flights")


def test_an_input_set_in_one_page_reruns_the_cells_reading_it_in_the_other(
    marimo_demo, open_page, artifact
):
    a, b = pages(open_page, marimo_demo)
    source = a.cell_named("flights_per_month")  # reads $origin, the demo's input ('JFK')
    a.run(source)
    for page in (a, b):
        cell = page.cell_named("flights_per_month")
        wait_for(
            f"JFK's flights per month in {page.name}",
            lambda cell=cell: (
                cell.locator("[data-testid=snb-result]").first.inner_text()
                if cell.locator("[data-testid=snb-result]").count()
                else ""
            ),
            lambda text: "9161" in text,
            timeout_s=60,
        )
        # The demo's chart plots that result: one bar per month.
        chart = page.root.locator("[data-testid=snb-cell][data-cell-kind=chart]").first
        bars = chart.locator("[data-testid=snb-chart] svg .mark-rect path")
        wait_for(f"12 bars in {page.name}", bars.count, lambda n: n == 12, timeout_s=30)
    a_select = a.cell_named("origin").locator("select[data-testid=snb-input]")
    wait_for(
        "the airports as options in page A",
        lambda: a_select.locator("option").all_inner_texts(),
        lambda options: options == ["EWR", "JFK", "LGA"],
    )
    assert a_select.input_value() == "JFK"
    b.root.first.screenshot(path=artifact("demo-intro-input-chart.png"))
    a_select.select_option("LGA")
    b_cell = b.cell_named("flights_per_month")
    wait_for(
        "LGA's flights per month in page B (re-run by the input change)",
        lambda: b_cell.locator("[data-testid=snb-result]").first.inner_text(),
        lambda text: "7950" in text and "9161" not in text,
        timeout_s=60,
    )
    b_select = b.cell_named("origin").locator("select[data-testid=snb-input]")
    wait_for("LGA picked in page B", b_select.input_value, lambda v: v == "LGA")
    b.root.first.screenshot(path=artifact("demo-input-lga-page-b.png"))
    b.cell_named("origin").screenshot(path=artifact("demo-input-cell-page-b.png"))
    b_chart = b.root.locator("[data-testid=snb-cell][data-cell-kind=chart]").first
    b_chart.scroll_into_view_if_needed()
    b_chart.screenshot(path=artifact("demo-chart-page-b.png"))
