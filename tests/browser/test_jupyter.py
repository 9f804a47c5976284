"""The demo in JupyterLab, driven in Chromium: it renders, runs a cell, and an edit survives a
kernel restart.

JupyterLab commands are run through ``window.jupyterapp`` (the server fixture sets
``LabApp.expose_app_in_browser``); their confirmation dialogs are accepted by clicking.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page

from .widget_page import DEMO_NAMES, WIDGET_TIMEOUT_S, WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

STARTER = DEMO_NAMES  # every cell's name: "" for the intro and the chart

_KERNEL_STATUS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = widget && widget.sessionContext && widget.sessionContext.session;
  return session && session.kernel ? session.kernel.status : null;
}"""


def command(page: Page, name: str) -> None:
    """Start a JupyterLab command (not awaited: some open a dialog first)."""
    page.evaluate("(name) => { window.jupyterapp.commands.execute(name); }", name)


def accept_dialog(page: Page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()


def kernel_idle(page: Page) -> None:
    wait_for(
        "an idle kernel",
        lambda: page.evaluate(_KERNEL_STATUS),
        lambda status: status == "idle",
        timeout_s=WIDGET_TIMEOUT_S,
    )


def test_widget_renders_runs_and_an_edit_survives_a_kernel_restart(jupyter_demo, open_page):
    page = open_page("jupyterlab", f"{jupyter_demo.url}/lab/tree/demo.ipynb")
    kernel_idle(page)
    # demo.ipynb names its kernel: no "Select Kernel" dialog.
    assert page.locator(".jp-Dialog").count() == 0
    command(page, "notebook:run-all-cells")
    view = WidgetPage(page, "JupyterLab")
    view.wait_ready(cells=len(STARTER))
    assert [c.name for c in view.cells()] == STARTER

    view.run(view.cell_named("flights_per_month"))
    wait_for(
        "12 rows of flights_per_month",
        lambda: view.rowcount(view.cell_named("flights_per_month")),
        lambda n: n == "12",
        timeout_s=60,
    )

    cell = view.cell_named("delay_by_airline")
    view.type_at_end(cell, "\n-- survives a kernel restart")
    before = [(c.id, c.name, c.text) for c in view.cells()]
    typed = next(text for _, name, text in before if name == "delay_by_airline")
    assert typed is not None and typed.endswith("\n-- survives a kernel restart")
    view.wait_saved()

    command(page, "notebook:restart-clear-output")
    accept_dialog(page)
    wait_for("the old outputs to be cleared", lambda: view.root.count(), lambda n: n == 0)
    kernel_idle(page)
    command(page, "notebook:run-all-cells")
    view.wait_ready(cells=len(before))
    assert [(c.id, c.name, c.text) for c in view.cells()] == before


def test_two_outputs_of_one_room_and_python_edits_stay_in_sync(jupyter_demo, open_page, tmp_path):
    """Two outputs of one room share one widget model, each its own view (own Loro peer);
    edits made in Python (the API and room.doc directly) reach both."""
    notebook = json.loads((tmp_path / "jupyter" / "demo.ipynb").read_text())
    notebook["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["room  # the same room, displayed a second time"],
        }
    )
    (tmp_path / "jupyter" / "twice.ipynb").write_text(json.dumps(notebook))
    page = open_page("jupyterlab", f"{jupyter_demo.url}/lab/tree/twice.ipynb")
    kernel_idle(page)
    command(page, "notebook:run-all-cells")
    first, second = WidgetPage(page, "first output", 0), WidgetPage(page, "second output", 1)
    first.wait_ready(cells=len(STARTER))
    second.wait_ready(cells=len(STARTER))

    first.type_at_end(first.cell_named("flights_per_month"), "\n-- typed in the first output")
    cid = first.sql_ids()[2]
    wait_for(
        "the first output's typing in the second",
        lambda: second.text_of(cid),
        lambda text: text is not None and text.endswith("\n-- typed in the first output"),
    )
    second.run(second.cell_named("delay_by_airline"))
    for view in (first, second):
        wait_for(
            f"16 airlines in the {view.name}",
            lambda view=view: view.rowcount(view.cell_named("delay_by_airline")),
            lambda n: n == "16",
            timeout_s=60,
        )
    first.wait_saved()
    second.wait_saved()
    assert first.cells() == second.cells()

    # Edits made in Python, through the API and directly on room.doc, reach both outputs.
    status = page.evaluate(_EXECUTE, _PYTHON_EDITS)
    assert status == "ok"
    ids = first.sql_ids()
    for view in (first, second):
        wait_for(
            f"the Python edits in the {view.name}",
            lambda view=view: [view.text_of(ids[0]), (view.text_of(ids[1]) or "")[:16]],
            lambda seen: seen == ["select 'edited from python' as origin", "-- via room.doc\n"],
        )


_EXECUTE = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const reply = await kernel.requestExecute({code}).done;
  return reply.content.status;
}"""

_PYTHON_EDITS = """
from sqlrooms_nb import notebook as _nb
_sql = [c for c in room.cells if c.kind == "sql"]
room.update_cell(_sql[0].id, source="select 'edited from python' as origin")
_nb.cell_text(_nb.find_cell(room.doc, _sql[1].id)[1]).insert(0, "-- via room.doc\\n")
room.doc.commit()
"""


def test_history_panel_opens_and_previews_in_jupyterlab(jupyter_demo, open_page, artifact):
    page = open_page("jupyterlab", f"{jupyter_demo.url}/lab/tree/demo.ipynb")
    kernel_idle(page)
    command(page, "notebook:run-all-cells")
    view = WidgetPage(page, "JupyterLab")
    view.wait_ready(cells=len(STARTER))
    view.type_at_end(view.cell_named("worst_routes"), "\n-- looked at in the history panel")
    view.wait_saved()
    view.root.locator("[data-testid=snb-history-toggle]").click()
    items = view.root.locator("[data-testid=snb-history-item]")
    wait_for("a session in the history panel", items.count, lambda n: n >= 1)
    items.last.click()
    banner = view.root.locator("[data-testid=snb-preview-banner]")
    banner.wait_for(state="visible", timeout=15_000)
    assert view.root.locator("[data-testid=snb-status]").first.is_visible()
    view.root.first.screenshot(path=artifact("jupyterlab-history-preview.png"))
    view.root.locator("[data-testid=snb-exit-preview]").click()
    wait_for("the preview to close", banner.count, lambda n: n == 0)
    assert [c.name for c in view.cells()] == STARTER
