"""The demo in `marimo edit` (one kernel, two pages = two people), driven in Chromium.

marimo 0.25 runs the cells on open only when the project config says so
(`runtime.auto_instantiate`, default false); the server fixture writes that config beside the
copied notebook. The second page joins the same kernel as a reader, and its widget still talks
to the kernel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page

import sqlrooms_nb as snb

from .servers import Server, read_lake
from .widget_page import DEMO_CELLS, DEMO_NAMES, WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

STARTER = DEMO_NAMES  # every cell's name: "" for the intro and the chart
ROOM = "flights-demo"


def two_pages(
    open_page: Callable[[str, str], Page], server: Server
) -> tuple[WidgetPage, WidgetPage]:
    a = WidgetPage(open_page("page-a", server.url), "page A")
    a.wait_ready(cells=len(STARTER))
    b = WidgetPage(open_page("page-b", server.url), "page B")
    b.wait_ready(cells=len(STARTER))
    assert [(c.kind, c.name) for c in a.cells()] == DEMO_CELLS
    return a, b


def same_everywhere(
    a: WidgetPage, b: WidgetPage, what: str
) -> list[tuple[str, str | None, str | None]]:
    """Wait until both pages show the same cells (ids, names, texts, in order); return them."""

    def both() -> tuple[list[tuple[str, str | None, str | None]], ...]:
        return tuple([(c.id, c.name, c.text) for c in p.cells()] for p in (a, b))

    seen = wait_for(what, both, lambda v: v[0] == v[1])
    return seen[0]


def test_text_typed_in_one_page_appears_in_the_other(marimo_demo, open_page):
    a, b = two_pages(open_page, marimo_demo)
    cell_id = a.sql_ids()[2]
    before = a.text_of(cell_id)
    assert before and b.text_of(cell_id) == before
    a.type_at_end(a.cell(cell_id), "\n-- typed in page A")
    wait_for(
        "page A's text in page B",
        lambda: b.text_of(cell_id),
        lambda t: t == before + "\n-- typed in page A",
    )
    b.type_at_end(b.cell(cell_id), " and B")
    wait_for(
        "page B's text in page A",
        lambda: a.text_of(cell_id),
        lambda t: t == before + "\n-- typed in page A and B",
    )


def test_concurrent_typing_in_one_cell_converges_to_the_kernels_text(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    cell_id = a.ids()[2]
    a.type_at_end(a.cell(cell_id), "\n-- ")
    start = wait_for(
        "the comment line in page B",
        lambda: b.text_of(cell_id),
        lambda t: t is not None and t.endswith("\n-- "),
    )
    assert "Q" not in start and "Z" not in start
    a.focus_end(a.cell(cell_id))
    b.focus_end(b.cell(cell_id))
    for _ in range(25):  # interleaved keystrokes, no waiting: neither page has the other's yet
        a.page.keyboard.type("Q")
        b.page.keyboard.type("Z")
    final = wait_for(
        "both pages to agree on all 50 characters",
        lambda: (a.text_of(cell_id), b.text_of(cell_id)),
        lambda v: v[0] == v[1] and v[0] is not None and v[0].count("Q") == v[0].count("Z") == 25,
    )[0]
    assert final is not None
    assert final.replace("Q", "").replace("Z", "") == start
    a.wait_saved()
    b.wait_saved()
    expected = same_everywhere(a, b, "both pages to show the same notebook")
    for page in (a, b):
        page.root.first.screenshot(path=artifact(f"{page.name.replace(' ', '-')}-converged.png"))
    marimo_demo.stop()
    # The kernel's view, as it saved it: read the lake once the server is gone.
    with snb.SqlRoom(ROOM, lake=str(marimo_demo.lake)) as room:
        assert [(c.id, c.name, c.source) for c in room.cells] == expected


@pytest.mark.parametrize(
    ("name", "rows", "shown"),
    [
        pytest.param("delay_by_airline", "16", "Frontier Airlines Inc.", id="delay_by_airline"),
        pytest.param("worst_routes", "10", "Newark Liberty Intl", id="worst_routes"),
        pytest.param("flights_per_month", "12", "9161", id="flights_per_month"),  # JFK
    ],
)
def test_run_shows_the_real_row_count_in_every_page(marimo_demo, open_page, name, rows, shown):
    a, b = two_pages(open_page, marimo_demo)
    a.run(a.cell_named(name))
    for page in (a, b):
        cell = page.cell_named(name)
        wait_for(
            f"{rows} rows of {name} in {page.name}",
            lambda cell=cell, page=page: page.rowcount(cell),
            lambda n: n == rows,
            timeout_s=60,
        )
        assert shown in cell.locator("[data-testid=snb-result]").first.inner_text()


def test_add_move_delete_in_one_page_show_in_the_other(marimo_demo, open_page):
    a, b = two_pages(open_page, marimo_demo)
    start = a.ids()
    a.add_cell()
    ids = wait_for("the added cell in page B", b.ids, lambda ids: len(ids) == len(start) + 1)
    assert ids[:-1] == start
    new = ids[-1]
    a.type_at_end(a.cell(new), "SELECT 42 AS answer")
    wait_for(
        "the new cell's text in page B",
        lambda: b.text_of(new),
        lambda t: t is not None and "SELECT 42 AS answer" in t,
    )

    a.click(a.cell(new), "snb-move-up")
    wait_for("the moved cell in page B", b.ids, lambda ids: ids == [*start[:-1], new, start[-1]])
    b.click(b.cell(new), "snb-move-up")
    wait_for(
        "the cell moved by page B in page A",
        a.ids,
        lambda ids: ids == [*start[:-2], new, *start[-2:]],
    )
    b.click(b.cell(new), "snb-move-down")
    wait_for(
        "the cell moved down by page B in page A",
        a.ids,
        lambda ids: ids == [*start[:-1], new, start[-1]],
    )

    a.click(a.cell(new), "snb-delete-cell")
    wait_for("the deletion in page B", b.ids, lambda ids: ids == start)
    assert same_everywhere(a, b, "both pages to agree after the deletion")


def test_everything_is_back_after_a_server_restart_and_reload(marimo_demo, open_page):
    a, b = two_pages(open_page, marimo_demo)
    a.type_at_end(a.cell_named("worst_routes"), "\n-- kept across a restart")
    a.add_cell()
    new = wait_for("the added cell", a.ids, lambda ids: len(ids) == len(STARTER) + 1)[-1]
    b.type_at_end(b.cell(new), "SELECT count(*) AS planes FROM planes")
    a.click(a.cell(new), "snb-move-up")
    before = same_everywhere(a, b, "both pages to agree before the restart")
    assert [c[0] for c in before][-2] == new
    a.wait_saved()
    b.wait_saved()
    # Another process reads the lake while the kernel holds it.
    stats = json.loads(read_lake(marimo_demo.lake, "--json"))
    assert stats["rooms"][f"{ROOM}/main"]["updates"] > 0

    marimo_demo.stop()
    # Pages left open would reconnect on their own as soon as the server is back (an old page
    # can take the new session over without running its cells, leaving the reloaded one a
    # reader of an empty notebook): park them, then load them again, A first.
    for page in (a, b):
        page.page.goto("about:blank")
    marimo_demo.start()
    for page in (a, b):
        page.page.goto(marimo_demo.url)
        page.wait_ready(cells=len(before))
    after = same_everywhere(a, b, "both pages to agree after the restart")
    assert after == before


def test_presence_shows_both_pages_and_a_caret_in_the_same_cell(marimo_demo, open_page, artifact):
    a, b = two_pages(open_page, marimo_demo)
    start = time.monotonic()
    for page in (a, b):
        wait_for(
            f"two entries in {page.name}'s presence",
            lambda page=page: page.presence(),
            lambda peers: len(peers) == 2 and sum(p["self"] for p in peers) == 1,
        )
    appeared_s = time.monotonic() - start
    a_name = next(p["name"] for p in a.presence() if p["self"])
    assert a_name in [p["name"] for p in b.presence() if not p["self"]]

    cell_id = a.ids()[1]
    a.cell(cell_id).locator("[data-testid=snb-cell-editor] .cm-content").click()
    a.page.keyboard.press("Control+Home")
    a.page.keyboard.press("Shift+End")  # select the first line: a caret and a selection
    start = time.monotonic()
    carets = b.cell(cell_id).locator(".snb-remote-caret")
    wait_for("page A's caret in page B's cell", carets.count, lambda n: n == 1)
    caret_s = time.monotonic() - start
    assert carets.first.get_attribute("title") == a_name
    wait_for(
        "page A's selection in page B",
        b.cell(cell_id).locator(".snb-remote-selection").count,
        lambda n: n >= 1,
    )
    for other in b.ids():
        if other != cell_id:
            assert b.cell(other).locator(".snb-remote-caret").count() == 0
    b.root.first.screenshot(path=artifact("page-B-presence.png"))
    print(f"presence in both pages after {appeared_s:.2f} s; caret in page B after {caret_s:.2f} s")


SESSION_GAP_S = 62
"""Longer than history.IDLE_GAP_S: the next edit by the same author starts a new session (the
demo's kernel and its pages all record the same author, the kernel's user)."""


def test_preview_in_one_page_while_the_other_edits_live_then_restore(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    starter = [(c.id, c.text) for c in a.cells()]
    sql = a.sql_ids()
    target, other = sql[2], sql[1]
    time.sleep(SESSION_GAP_S)  # so page A's edit is a session of its own
    a.type_at_end(a.cell(target), "\n-- edited by page A")
    edited = wait_for(
        "page A's edit in page B",
        lambda: b.text_of(target),
        lambda t: t is not None and t.endswith("\n-- edited by page A"),
    )
    a.wait_saved()

    a.root.locator("[data-testid=snb-history-toggle]").click()
    items = a.root.locator("[data-testid=snb-history-item]")
    wait_for("two sessions in page A's history", items.count, lambda n: n >= 2)
    newest, older = items.nth(0).get_attribute("data-version"), items.nth(1)
    assert newest and older.get_attribute("data-version") not in (None, newest)
    banner = a.root.locator("[data-testid=snb-preview-banner]")

    def preview_text() -> str | None:
        sources = a.root.locator(
            f'[data-testid=snb-preview-cell][data-cell-id="{target}"] '
            "[data-testid=snb-preview-source]"
        )
        return sources.first.inner_text() if sources.count() else None

    def open_older() -> None:
        older.click()
        banner.wait_for(state="visible", timeout=15_000)
        text = wait_for("the old text in page A's preview", preview_text, lambda t: t is not None)
        assert "edited by page A" not in text.replace("\u200b", "")
        assert text.replace("\u200b", "").strip() == (dict(starter)[target] or "").strip()

    open_older()
    assert a.root.locator("[data-testid=snb-cell]").first.is_hidden()  # live cells are hidden
    assert a.root.locator("[data-testid=snb-status]").first.is_visible()
    assert a.root.locator("[data-testid=snb-presence]").first.is_visible()
    # Page B keeps editing live meanwhile; its text reaches the kernel (and page A's live doc).
    b.type_at_end(b.cell(other), "\n-- typed by page B during the preview")
    wait_for(
        "page B's text in page A's (hidden) live cells",
        lambda: a.text_of(other),
        lambda t: t is not None and t.endswith("-- typed by page B during the preview"),
    )
    b.wait_saved()
    assert b.root.locator("[data-testid=snb-preview-banner]").count() == 0
    assert a.text_of(target) == edited  # the live doc was never checked out
    a.root.first.screenshot(path=artifact("page-A-preview.png"))

    # Leaving the preview shows the live cells again, editors intact.
    a.root.locator("[data-testid=snb-exit-preview]").click()
    wait_for("the preview to close", banner.count, lambda n: n == 0)
    assert a.root.locator("[data-testid=snb-cell]").first.is_visible()
    a.type_at_end(a.cell(target), " (still editable)")
    wait_for(
        "page A's live edit after the preview in page B",
        lambda: b.text_of(target),
        lambda t: t is not None and t.endswith("(still editable)"),
    )

    open_older()
    a.root.locator("[data-testid=snb-restore]").click()
    wait_for("the preview to close after restoring", banner.count, lambda n: n == 0)
    for page in (a, b):
        wait_for(
            f"the restored notebook in {page.name}",
            lambda page=page: [(c.id, c.text) for c in page.cells()],
            lambda cells: cells == starter,
        )
    wait_for(
        "the restore at the top of page A's history",
        lambda: a.root.locator("[data-testid=snb-history-item]").first.inner_text(),
        lambda text: "restored the version of" in text,
    )
    a.wait_saved()
    b.wait_saved()
    a.root.first.screenshot(path=artifact("page-A-after-restore.png"))
    marimo_demo.stop()
    with snb.SqlRoom(ROOM, lake=str(marimo_demo.lake)) as room:
        assert [(c.id, c.source) for c in room.cells] == starter
        assert "restored version" in room.history()[0].summary


def test_undo_in_one_page_undoes_only_its_own_edits_text_and_cells(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    ids = a.ids()
    a_cell, b_cell = a.sql_ids()[:2]
    start = {c.id: c.text or "" for c in a.cells()}
    assert b.toolbar("snb-undo").is_disabled(), "nothing of page B's own to undo yet"
    assert b.toolbar("snb-redo").is_disabled()
    a.type_at_end(a.cell(a_cell), "\n-- typed by A")
    b.type_at_end(b.cell(b_cell), "\n-- typed by B")
    typed = {a_cell: start[a_cell] + "\n-- typed by A", b_cell: start[b_cell] + "\n-- typed by B"}
    for page in (a, b):
        wait_for(
            f"both pages' typing in {page.name}",
            lambda page=page: {i: page.text_of(i) for i in typed},
            lambda texts: texts == typed,
        )
    assert b.toolbar("snb-undo").is_enabled()

    # Ctrl-Z in page B's editor undoes page B's typing (in as many steps as Loro merged it).
    b_text = lambda: b.text_of(b_cell)  # noqa: E731
    for _ in range(20):
        if b_text() == start[b_cell]:
            break
        b.page.keyboard.press("Control+z")
        time.sleep(0.1)
    undone = {a_cell: typed[a_cell], b_cell: start[b_cell]}
    for page in (a, b):
        wait_for(
            f"page B's typing undone in {page.name}",
            lambda page=page: {i: page.text_of(i) for i in typed},
            lambda texts: texts == undone,
        )
    # ... and never page A's, even in page A's cell.
    b.focus_end(b.cell(a_cell))
    for _ in range(5):
        b.page.keyboard.press("Control+z")
    time.sleep(1.0)
    for page in (a, b):
        assert {i: page.text_of(i) for i in typed} == undone, page.name

    # Page B deletes the cell page A typed in; Undo brings it back everywhere, with A's text.
    b.click(b.cell(a_cell), "snb-delete-cell")
    for page in (a, b):
        wait_for(f"the deletion in {page.name}", page.ids, lambda now: a_cell not in now)
    assert b.toolbar("snb-redo").is_disabled(), "a fresh edit drops what could be redone"
    b.undo()
    restored = same_everywhere(a, b, "the deleted cell back in both pages")
    assert [c[0] for c in restored] == ids
    assert {c[0]: c[2] for c in restored}[a_cell] == typed[a_cell]
    assert b.toolbar("snb-redo").is_enabled()
    b.redo()
    for page in (a, b):
        wait_for(f"the cell gone again in {page.name}", page.ids, lambda now: a_cell not in now)
    # Ctrl-Z outside the editors (the focus stays in the widget as Redo turns disabled) does
    # what Undo does.
    b.page.keyboard.press("Control+z")
    for page in (a, b):
        wait_for(f"the cell back again in {page.name}", page.ids, lambda now: now == ids)
    final = same_everywhere(a, b, "the cell back again in both pages")
    assert final == restored
    assert {i: a.text_of(i) for i in typed} == undone
    a.wait_saved()
    b.wait_saved()
    b.root.first.screenshot(path=artifact("page-B-after-undo.png"))
    marimo_demo.stop()
    with snb.SqlRoom(ROOM, lake=str(marimo_demo.lake)) as room:
        assert [(c.id, c.name, c.source) for c in room.cells] == final


def test_page_b_on_a_branch_while_page_a_stays_on_main_then_merge_from_the_ui(
    marimo_demo, open_page, artifact
):
    a, b = two_pages(open_page, marimo_demo)
    ids = a.ids()
    target = a.sql_ids()[1]
    main_texts = {c.id: c.text for c in a.cells()}
    picker_b = b.toolbar("snb-branch-picker")
    assert picker_b.input_value() == "main"
    assert b.toolbar("snb-merge").is_disabled(), "nothing to merge with a single branch"

    # Page B makes a branch from the current state (the form suggests a name; B picks one).
    b.toolbar("snb-branch-new").click()
    name = b.toolbar("snb-branch-name")
    name.fill("what-if")
    name.press("Enter")
    wait_for("page B on the new branch", picker_b.input_value, lambda v: v == "what-if")
    b.wait_ready(cells=len(STARTER))
    assert {c.id: c.text for c in b.cells()} == main_texts  # a fork of main as it was
    wait_for(
        "the new branch listed in page A's picker",
        lambda: a.toolbar("snb-branch-picker").locator("option").all_inner_texts(),
        lambda names: "what-if" in names,
    )
    assert a.toolbar("snb-branch-picker").input_value() == "main"  # page A stays on main

    # Each page edits its own branch; neither sees the other's edit.
    b.type_at_end(b.cell(target), "\n-- only on what-if")
    a.add_cell()
    wait_for("page A's new cell", a.ids, lambda now: len(now) == len(ids) + 1)
    a.wait_saved()
    b.wait_saved()
    time.sleep(1.0)
    assert a.text_of(target) == main_texts[target]
    assert len(b.ids()) == len(ids)
    assert b.text_of(target) == f"{main_texts[target]}\n-- only on what-if"

    # Page B merges its branch into main after the preview.
    b.toolbar("snb-merge").click()
    items = b.root.first.locator("[data-testid=snb-merge-item]")
    wait_for("the merge preview in page B", items.count, lambda n: n == 1)
    assert items.first.get_attribute("data-cell-id") == target
    assert items.first.get_attribute("data-status") == "changed"
    assert "-- only on what-if" in items.first.inner_text()
    assert b.toolbar("snb-merge-into").input_value() == "main"
    b.root.first.screenshot(path=artifact("page-B-merge-preview.png"))
    b.toolbar("snb-merge-confirm").click()
    wait_for(
        "the merged edit in page A (main)",
        lambda: a.text_of(target),
        lambda t: t == f"{main_texts[target]}\n-- only on what-if",
    )
    assert len(a.ids()) == len(ids) + 1  # main's own new cell is still there
    wait_for(
        "the merge noted in page B",
        lambda: b.root.first.locator("[data-testid=snb-banner]").all_inner_texts(),
        lambda texts: any("Merged what-if into main" in t for t in texts),
    )
    assert len(b.ids()) == len(ids)  # the branch itself did not change

    # Page B switches back to main with the picker and sees the merged notebook.
    picker_b.select_option("main")
    b.wait_ready(cells=len(ids) + 1)
    same_everywhere(a, b, "main in both pages after the merge")
    a.wait_saved()
    b.wait_saved()
    a.root.first.screenshot(path=artifact("page-A-after-merge.png"))
    marimo_demo.stop()
    with snb.SqlRoom(ROOM, lake=str(marimo_demo.lake)) as room:
        branches = {br.name: br for br in room.branches()}
        assert branches["what-if"].parent == "main"
        assert branches["what-if"].merged_into == "main"
        assert next(c.source for c in room.cells if c.id == target).endswith("-- only on what-if")
        room.checkout_branch("what-if")
        assert len(room.cells) == len(ids)
