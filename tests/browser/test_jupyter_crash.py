"""JupyterLab: the kernel dies (SIGKILL) while a page types: nothing typed is lost or doubled.

The Jupyter counterpart of test_crash.py, smaller: one JupyterLab page on a small notebook (one
code cell: write the kernel's pid to a file, open a room on the private embedded lake, display
it). The page types unique tokens (``t001 t002 ...``) into the room's one SQL cell; a timer
SIGKILLs the kernel process (not the Jupyter server) at a random moment, and the page goes on
typing. Then what happens to a Jupyter user: the server's restarter starts a fresh kernel by
itself and JupyterLab says so in a "Kernel Restarting" dialog (OK). The old widget stays on the
page but nothing behind it holds the room: the page types a little more into it. The user then
restarts the kernel and runs the cells again (``notebook:restart-run-all``, dialog accepted):
the cell's output is replaced by a new widget view, whose kernel recovered the room from the lake.
Everything the kernel had not saved, and everything typed while it was gone, survives only in
the browser-side outbox (js/outbox.ts): the old view's entry, imported by the new view.

After every restart the page must show every token typed so far exactly once, in typing order;
at the end so must the lake, read by a fresh SqlRoom after the server stopped.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Page

import sqlrooms_nb as snb

from .kill import Killer, kernel_pid, token_report
from .servers import Server
from .widget_page import WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ROOM = "jupyter-crash-room"
CELL = "t"
PREFIX = "-- typed:"
KILLS = 2
TYPE_DELAY_MS = 25
KILL_AFTER_S = (0.3, 2.0)
"""The kill lands uniformly in this window after the page starts typing (seconds)."""
TOKENS_RIGHT_AFTER_KILL = 1
"""Tokens typed at once after the kill, before Jupyter notices (its restarter polls every 3 s)."""
TOKENS_AFTER_AUTORESTART = (1, 3)
"""Tokens typed into the orphaned widget after the "Kernel Restarting" dialog (inclusive)."""
DIALOG_TIMEOUT_S = 60.0
RESTART_TIMEOUT_S = 120.0

TOKEN = re.compile(r"\bt\d{3}\b")

_CELL_SOURCE = """import os
import pathlib

import sqlrooms_nb as snb

# The test SIGKILLs this process: say which one it is (atomically).
pid_file = pathlib.Path({pid_file!r})
pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
pid_file.with_suffix(".tmp").replace(pid_file)
room = snb.SqlRoom({room!r})
if not room.cells:
    room.add_cell({prefix!r}, name={cell!r})
room"""

_KERNEL_STATUS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = widget && widget.sessionContext && widget.sessionContext.session;
  return session && session.kernel ? session.kernel.status : null;
}"""


def write_notebook(path: Path, pid_file: Path) -> None:
    source = _CELL_SOURCE.format(pid_file=str(pid_file), room=ROOM, prefix=PREFIX, cell=CELL)
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": source.splitlines(keepends=True),
            }
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


def command(page: Page, name: str) -> None:
    """Start a JupyterLab command (not awaited: some open a dialog first)."""
    page.evaluate("(name) => { window.jupyterapp.commands.execute(name); }", name)


def kernel_status(page: Page) -> str | None:
    status: str | None = page.evaluate(_KERNEL_STATUS)
    return status


def dialog_title(page: Page) -> str:
    """The title of the JupyterLab dialog shown, or "" when none is."""
    dialogs = page.locator(".jp-Dialog")
    if not dialogs.count():
        return ""
    return dialogs.first.locator(".jp-Dialog-header").inner_text().strip()


def accept_dialog(page: Page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    wait_for("the dialog to close", lambda: dialog_title(page), lambda t: t == "")


def view_id(view: WidgetPage) -> str | None:
    """The widget's view id (a re-rendered widget has a new one); None while none is shown."""
    return view.root.first.get_attribute("data-view") if view.root.count() else None


def new_view_shown(seen: tuple[str | None, int], old_view: str | None) -> bool:
    """``seen`` (view id, cells shown) is a widget other than ``old_view``, with the cell."""
    return seen[0] is not None and seen[0] != old_view and seen[1] == 1


def outbox_keys(page: Page) -> dict[str, str]:
    """The page's localStorage outbox entries: key -> value."""
    entries: dict[str, str] = page.evaluate(
        "() => Object.fromEntries(Object.keys(localStorage)"
        ".filter((k) => k.startsWith('sqlrooms_nb.outbox/'))"
        ".map((k) => [k, localStorage.getItem(k)]))"
    )
    return entries


class Typist:
    """The page typing tokens into the room's cell; remembers what it typed."""

    def __init__(self, view: WidgetPage) -> None:
        self.view = view
        self.typed: list[str] = []

    def focus(self) -> None:
        self.view.focus_end(self.view.cell_named(CELL))

    def type_token(self) -> str:
        token = f"t{len(self.typed) + 1:03d}"
        self.typed.append(token)  # before typing: a kill mid-token still counts it
        self.view.page.keyboard.type(f" {token}", delay=TYPE_DELAY_MS)
        return token

    def expected(self) -> str:
        return " ".join([PREFIX, *self.typed])

    def text(self) -> str:
        return next((c.text or "" for c in self.view.cells() if c.name == CELL), "")

    def wait_text(self, what: str) -> None:
        try:
            wait_for(what, self.text, lambda t: t == self.expected(), RESTART_TIMEOUT_S)
        except AssertionError:
            text = self.text()
            report = token_report(text, self.typed, TOKEN) or "tokens ok, order or spacing differs"
            raise AssertionError(
                f"{what}: {report}\n  shown:    {text!r}\n  expected: {self.expected()!r}\n"
                f"  outbox entries in localStorage: {list(outbox_keys(self.view.page))}"
            ) from None


def test_jupyter_kernel_killed_while_typing_loses_and_doubles_nothing(
    jupyter_demo: Server,
    open_page: Callable[[str, str], Page],
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("SNB_TEST_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill points: {KILLS}, seed {seed} (SNB_TEST_SEED={seed} replays the kill times)")
    pid_file = tmp_path / "kernel.pid"
    write_notebook(tmp_path / "jupyter" / "crash.ipynb", pid_file)
    page = open_page("jupyterlab", f"{jupyter_demo.url}/lab/tree/crash.ipynb")
    wait_for("an idle kernel", lambda: kernel_status(page), lambda s: s == "idle", 90)
    assert dialog_title(page) == "", "crash.ipynb names its kernel: no dialog expected"
    command(page, "notebook:run-all-cells")
    view = WidgetPage(page, "JupyterLab")
    view.wait_ready(cells=1)
    typist = Typist(view)
    view.wait_saved()

    pid: int | None = None
    down_tokens = 0
    dialog_s: list[float] = []  # kill -> "Kernel Restarting" dialog
    widget_s: list[float] = []  # restart command -> a new widget view with the cell
    back_s: list[float] = []  # restart command -> the new widget shows every token
    restored: list[float] = []  # entries the new view imported from the old one's outbox
    for k in range(KILLS):
        pid = kernel_pid(pid_file, jupyter_demo, pid, RESTART_TIMEOUT_S)
        typist.focus()
        killer = Killer(pid, rng.uniform(*KILL_AFTER_S))
        try:
            while not killer.done.is_set():
                typist.type_token()
        finally:
            killer.cancel()
        # The kernel is gone; Jupyter does not know yet (its restarter polls every 3 s).
        for _ in range(TOKENS_RIGHT_AFTER_KILL):
            typist.type_token()
            down_tokens += 1
        # The server's restarter starts a fresh kernel (without the room) and JupyterLab says so.
        title = wait_for(
            "JupyterLab's 'Kernel Restarting' dialog",
            lambda: dialog_title(page),
            lambda t: t != "",
            DIALOG_TIMEOUT_S,
        )
        dialog_s.append(time.monotonic() - killer.at)
        assert title == "Kernel Restarting", f"unexpected dialog {title!r}"
        accept_dialog(page)
        # The old widget is still on the page, orphaned: typing goes on into it.
        typist.focus()
        for _ in range(rng.randint(*TOKENS_AFTER_AUTORESTART)):
            typist.type_token()
            down_tokens += 1
        assert typist.text() == typist.expected(), "the orphaned widget kept every keystroke"
        old_view = view_id(view)
        entries = outbox_keys(page)
        assert entries, "the orphaned view keeps its unsaved edits in localStorage"

        # What a Jupyter user does then: restart the kernel and run the cells again.
        start = time.monotonic()
        command(page, "notebook:restart-run-all")
        title = wait_for("the restart dialog", lambda: dialog_title(page), lambda t: t != "", 30)
        assert "Restart" in title, f"unexpected dialog {title!r}"
        accept_dialog(page)
        wait_for(
            f"a new widget view (not {old_view}) with the cell",
            lambda: (view_id(view), len(view.cells()) if view.root.count() else 0),
            partial(new_view_shown, old_view=old_view),
            RESTART_TIMEOUT_S,
        )
        widget_s.append(time.monotonic() - start)
        typist.wait_text(f"kill point {k + 1}: every token exactly once in the new widget")
        back_s.append(time.monotonic() - start)
        restored.append(view.root.first.evaluate("(el) => el.sqlroomsNbOutbox.restored"))
        view.wait_saved(timeout_s=RESTART_TIMEOUT_S)
        print(
            f"kill point {k + 1}/{KILLS}: {len(typist.typed)} tokens so far; dialog "
            f"{dialog_s[-1]:.1f} s after the kill; after the restart command: new widget "
            f"{widget_s[-1]:.1f} s, every token shown {back_s[-1]:.1f} s; outbox entries "
            f"before the restart {len(entries)}, imported by the new view {restored[-1]:.0f}",
            flush=True,
        )

    # A little more typing on the last kernel, then everything saved.
    typist.focus()
    for _ in range(2):
        typist.type_token()
    typist.wait_text("the final text")
    view.wait_saved(timeout_s=RESTART_TIMEOUT_S)
    wait_for("no outbox entry left", lambda: list(outbox_keys(page)), lambda keys: keys == [])
    jupyter_demo.stop()  # SIGTERM: the server shuts its kernel down, which closes the lake

    with snb.SqlRoom(ROOM, lake=str(jupyter_demo.lake)) as room:
        stored = {c.name: c.source for c in room.cells}
    assert stored[CELL] == typist.expected(), (
        f"lake: {token_report(stored[CELL], typist.typed, TOKEN) or 'order differs'}\n"
        f"  stored:   {stored[CELL]!r}\n  expected: {typist.expected()!r}"
    )
    print(
        f"\n{KILLS} kernel kills survived in JupyterLab (seed {seed}); {len(typist.typed)} "
        f"tokens checked in the page and the lake, {down_tokens} of them typed while the "
        f"kernel was down. Kill -> 'Kernel Restarting' dialog: "
        f"{', '.join(f'{s:.1f}' for s in dialog_s)} s. Restart command -> new widget: "
        f"{', '.join(f'{s:.1f}' for s in widget_s)} s; -> every token shown: median "
        f"{statistics.median(back_s):.1f} s, max {max(back_s):.1f} s. "
        f"Load average {os.getloadavg()[0]:.1f}."
    )
