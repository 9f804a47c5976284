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
from .widget_page import WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

STARTER = ["delay_by_airline", "worst_routes", "flights_per_month"]
ROOM = "flights-demo"


def two_pages(
    open_page: Callable[[str, str], Page], server: Server
) -> tuple[WidgetPage, WidgetPage]:
    a = WidgetPage(open_page("page-a", server.url), "page A")
    a.wait_ready(cells=len(STARTER))
    b = WidgetPage(open_page("page-b", server.url), "page B")
    b.wait_ready(cells=len(STARTER))
    assert [c.name for c in a.cells()] == STARTER
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
    cell_id = a.ids()[2]
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
        pytest.param("flights_per_month", "12", "27004", id="flights_per_month"),
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
    ids = wait_for("a fourth cell in page B", b.ids, lambda ids: len(ids) == 4)
    assert ids[:3] == start
    new = ids[3]
    a.type_at_end(a.cell(new), "SELECT 42 AS answer")
    wait_for(
        "the new cell's text in page B",
        lambda: b.text_of(new),
        lambda t: t is not None and "SELECT 42 AS answer" in t,
    )

    a.click(a.cell(new), "snb-move-up")
    wait_for("the moved cell in page B", b.ids, lambda ids: ids == [*start[:2], new, start[2]])
    b.click(b.cell(new), "snb-move-up")
    wait_for(
        "the cell moved by page B in page A", a.ids, lambda ids: ids == [start[0], new, *start[1:]]
    )
    b.click(b.cell(new), "snb-move-down")
    wait_for(
        "the cell moved down by page B in page A",
        a.ids,
        lambda ids: ids == [*start[:2], new, start[2]],
    )

    a.click(a.cell(new), "snb-delete-cell")
    wait_for("the deletion in page B", b.ids, lambda ids: ids == start)
    assert same_everywhere(a, b, "both pages to agree after the deletion")


def test_everything_is_back_after_a_server_restart_and_reload(marimo_demo, open_page):
    a, b = two_pages(open_page, marimo_demo)
    a.type_at_end(a.cell_named("worst_routes"), "\n-- kept across a restart")
    a.add_cell()
    new = wait_for("the added cell", a.ids, lambda ids: len(ids) == 4)[3]
    b.type_at_end(b.cell(new), "SELECT count(*) AS planes FROM planes")
    a.click(a.cell(new), "snb-move-up")
    before = same_everywhere(a, b, "both pages to agree before the restart")
    assert [c[0] for c in before][2] == new
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
