"""SQL autocompletion in a cell editor, and marimo re-running Python cells that read the
widget's ``results`` value when a SQL cell runs from the widget (``marimo edit``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from .conftest import _running
from .servers import Server, marimo_server
from .widget_page import WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = """
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import duckdb
    import marimo as mo

    import sqlrooms_nb as snb

    con = duckdb.connect()
    con.execute(
        "create table flights as select range as id, range % 7 as dep_delay, "
        "range % 5 as arr_delay from range(1000)"
    )
    room = snb.SqlRoom("results-probe", connection=con, author="probe")
    if not room.cells:
        room.add_cell("select * from flights where dep_delay > 3", name="late")
    return mo, room


@app.cell
def _(mo, room):
    w = mo.ui.anywidget(room.widget)
    w
    return (w,)


@app.cell
def _(mo, w):
    _late = w.value["results"].get("late")
    mo.md(f"late rows: {_late['rows'] if _late else 'none'}")
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture
def marimo_probe(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``marimo edit`` on a small notebook: a room shown through ``mo.ui.anywidget`` and a
    Python cell reading its value."""
    folder = tmp_path / "marimo"
    folder.mkdir()
    (folder / "probe.py").write_text(NOTEBOOK)
    lake = tmp_path / "lake"
    server = marimo_server(folder, "probe.py", lake, tmp_path / "marimo.log")
    yield from _running(server, request)


def completions(page: Page) -> list[str]:
    popup = page.locator(".cm-tooltip-autocomplete")
    if not popup.count():
        return []
    return popup.first.locator("li .cm-completionLabel").all_inner_texts()


def settled(page: Page, label: str, quiet_s: float = 0.3) -> None:
    """Wait until the completion list shows ``label`` and has not changed for ``quiet_s``:
    CodeMirror ignores Enter for 75 ms after the options change (``interactionDelay``), and the
    kernel's catalog answer can change them late on a loaded machine (Enter then typed a
    newline in CI)."""
    last, since = completions(page), time.monotonic()
    deadline = since + 15
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = completions(page)
        if now != last:
            last, since = now, time.monotonic()
        elif label in now and time.monotonic() - since >= quiet_s:
            return
    raise AssertionError(f"the completion list did not settle with {label!r}: {last}")


def test_completion_offers_tables_and_columns_and_runs_rerun_python_cells(
    marimo_probe: Server, open_page: Callable[[str, str], Page], artifact: Callable[[str], Path]
) -> None:
    a = WidgetPage(open_page("page-a", marimo_probe.url), "page A")
    a.wait_ready(cells=1)
    page = a.page
    page.get_by_text("late rows: none").first.wait_for(timeout=60_000)

    # --- autocompletion: a table name, then a column of the table the text reads
    a.add_cell()
    new = wait_for("the added cell", a.ids, lambda ids: len(ids) == 2)[-1]
    a.type_at_end(a.cell(new), "select * from fli")
    labels = wait_for("table completions", lambda: completions(page), lambda ls: "flights" in ls)
    settled(page, "flights")
    page.screenshot(path=str(artifact("completion-table.png")))
    assert "flights" in labels
    page.keyboard.press("Enter")  # accept
    wait_for("the accepted name", lambda: a.text_of(new), lambda t: t == "select * from flights")
    page.keyboard.press("Control+a")
    page.keyboard.type("select  from flights")
    page.keyboard.press("Home")
    for _ in range(len("select ")):
        page.keyboard.press("ArrowRight")
    page.keyboard.type("dep_")
    labels = wait_for("column completions", lambda: completions(page), lambda ls: "dep_delay" in ls)
    page.screenshot(path=str(artifact("completion-column.png")))
    page.keyboard.press("Escape")

    # --- running a SQL cell from the widget re-runs the Python cell reading w.value
    a.run(a.cell_named("late"))
    page.get_by_text("late rows: 428").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifact("python-cell-reran.png")))
