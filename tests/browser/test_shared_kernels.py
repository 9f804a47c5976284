"""Two kernels on one shared lake (PostgreSQL catalog + S3 data path), one page each.

Two `marimo edit` servers run the demo on the same lake URI, so each page talks to its own
kernel; the kernels meet only through the lake (rows tailed on NOTIFY, presence over NOTIFY).
Each page must show the other page's person and caret, and each page's typing must reach the
other page.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.store.conftest import credentials, postgres, prefix, s3_server, shared  # noqa: F401

from .conftest import REPO, _running
from .servers import Server, marimo_server
from .widget_page import DEMO_CELLS, WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _demo_server(tmp_path: Path, name: str, lake: str) -> Server:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(REPO / "notebooks" / "demo.py", folder / "demo.py")
    server = marimo_server(folder, "demo.py", tmp_path / name, tmp_path / f"{name}.log")
    server.env["SQLROOMS_NB_LAKE"] = lake  # a URI: Path() would fold its "//"
    server.name = name
    return server


@pytest.fixture
def two_kernels(
    tmp_path: Path, shared: str, request: pytest.FixtureRequest  # noqa: F811 (the fixture)
) -> Iterator[tuple[Server, Server]]:
    """Two marimo servers (two kernels) on one shared lake; the second starts on demand."""
    first = _demo_server(tmp_path, "marimo-a", shared)
    second = _demo_server(tmp_path, "marimo-b", shared)
    running_a = _running(first, request)
    next(running_a)
    try:
        yield first, second
    finally:
        second.stop()
        shutil.copyfile(second.log_path, tmp_path / "marimo-b.copy.log")
        next(running_a, None)


def test_each_page_sees_the_other_kernels_person_caret_and_typing(
    two_kernels: tuple[Server, Server], open_page: Callable[[str, str], Page], artifact
) -> None:
    server_a, server_b = two_kernels
    a = WidgetPage(open_page("page-a", server_a.url), "page A (kernel A)")
    a.wait_ready(cells=len(DEMO_CELLS))
    a.wait_saved()  # the starter cells are in the lake before kernel B opens the room
    server_b.start()
    b = WidgetPage(open_page("page-b", server_b.url), "page B (kernel B)")
    b.wait_ready(cells=len(DEMO_CELLS))
    assert b.ids() == a.ids(), "kernel B recovered other cells than kernel A wrote"

    start = time.monotonic()
    for page in (a, b):
        wait_for(
            f"two people in {page.name}'s presence",
            page.presence,
            lambda peers: len(peers) == 2 and sum(p["self"] for p in peers) == 1,
        )
    presence_s = time.monotonic() - start
    b_view = next(p["view"] for p in b.presence() if p["self"])
    assert b_view in [p["view"] for p in a.presence() if not p["self"]]

    cell_id = a.sql_ids()[0]
    a.cell(cell_id).locator("[data-testid=snb-cell-editor] .cm-content").click()
    a.page.keyboard.press("Control+Home")
    a.page.keyboard.press("Shift+End")
    start = time.monotonic()
    carets = b.cell(cell_id).locator(".snb-remote-caret")
    wait_for("page A's caret in page B (across kernels)", carets.count, lambda n: n == 1)
    caret_s = time.monotonic() - start

    before = a.text_of(cell_id)
    assert before is not None and b.text_of(cell_id) == before
    a.type_at_end(a.cell(cell_id), "\n-- from kernel A")
    start = time.monotonic()
    wait_for(
        "page A's typing in page B",
        lambda: b.text_of(cell_id),
        lambda t: t == before + "\n-- from kernel A",
    )
    a_to_b_s = time.monotonic() - start
    b.type_at_end(b.cell(cell_id), " and B")
    start = time.monotonic()
    wait_for(
        "page B's typing in page A",
        lambda: a.text_of(cell_id),
        lambda t: t == before + "\n-- from kernel A and B",
    )
    b_to_a_s = time.monotonic() - start
    for page in (a, b):
        page.wait_saved()
    b.root.first.screenshot(path=artifact("page-B-sees-kernel-A.png"))
    print(
        f"across kernels: presence {presence_s:.2f} s, caret {caret_s:.2f} s, "
        f"typing A->B {a_to_b_s:.2f} s, B->A {b_to_a_s:.2f} s (after the last key)"
    )
