"""A read-only view next to an editable one, in one marimo page (``marimo edit``): the read-only
editors take no keyboard input and show no edit controls, while edits typed in the editable view
appear in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import _running
from .servers import Server, marimo_server
from .widget_page import WIDGET_TIMEOUT_S, WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = """
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import sqlrooms_nb as snb

    room = snb.SqlRoom("readonly-probe", author="probe")
    if not room.cells:
        room.add_cell("select 1 as x", name="one")
    return (room,)


@app.cell
def _(room):
    room.widget
    return


@app.cell
def _(room):
    room.view(readonly=True)
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture
def marimo_readonly(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    folder = tmp_path / "marimo"
    folder.mkdir()
    (folder / "readonly.py").write_text(NOTEBOOK)
    server = marimo_server(folder, "readonly.py", tmp_path / "lake", tmp_path / "marimo.log")
    yield from _running(server, request)


def test_a_read_only_view_takes_no_input_but_shows_the_editors_typing(marimo_readonly, open_page):
    page = open_page("page", marimo_readonly.url)
    wait_for(
        "two widgets",
        lambda: page.locator("[data-testid=snb-root]").count(),
        lambda n: n == 2,
        WIDGET_TIMEOUT_S,
    )
    roots = page.locator("[data-testid=snb-root]")
    badges = [roots.nth(i).locator("[data-testid=snb-readonly]").count() for i in range(2)]
    assert sorted(badges) == [0, 1], badges
    editor = WidgetPage(page, "editable view", badges.index(0))
    reader = WidgetPage(page, "read-only view", badges.index(1))
    for view in (editor, reader):
        view.wait_ready(cells=1)
    cell_id = editor.ids()[0]
    assert reader.ids() == [cell_id] and reader.text_of(cell_id) == "select 1 as x"
    assert reader.root.locator("[data-testid=snb-readonly]").inner_text() == "Read-only"

    # No edit controls are shown in the read-only view; the editable one has them.
    for testid in ("snb-add-cell", "snb-run", "snb-delete-cell", "snb-run-all", "snb-branch-new"):
        assert not reader.root.locator(f"[data-testid={testid}]").first.is_visible(), testid
        assert editor.root.locator(f"[data-testid={testid}]").first.is_visible(), testid
    content = reader.cell(cell_id).locator(".cm-content")
    assert content.get_attribute("contenteditable") == "false"

    # Keyboard input into the read-only editor changes nothing, here or in the editable view.
    reader.root.click(position={"x": 5, "y": 5})  # focus leaves marimo's own code editors
    content.click()
    focus_inside = "r => r.contains(r.getRootNode().activeElement)"
    assert reader.root.evaluate(focus_inside), "the keys below must go to the read-only view"
    page.keyboard.press("Control+End")
    page.keyboard.type(" -- typed in the read-only view")
    page.keyboard.press("Enter")
    page.keyboard.press("Backspace")
    page.wait_for_timeout(500)
    assert reader.root.evaluate(focus_inside)
    assert reader.text_of(cell_id) == "select 1 as x"
    assert editor.text_of(cell_id) == "select 1 as x"

    # The editable view's typing appears in the read-only one.
    editor.type_at_end(editor.cell(cell_id), " -- typed in the editable view")
    expected = "select 1 as x -- typed in the editable view"
    wait_for(
        "the edit in the read-only view", lambda: reader.text_of(cell_id), lambda t: t == expected
    )
    editor.wait_saved()
    assert reader.text_of(cell_id) == expected
