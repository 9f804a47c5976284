"""The kernel dies (SIGKILL) at random moments while two pages type: nothing is lost or doubled.

One ``marimo edit`` server on an embedded lake, two Chromium pages (two people: page A opened the
notebook and owns the session, page B joined it as a reader). Both type unique tokens (``a001 ...``
into cell ``a``, ``b001 ...`` into cell ``b``) at a human-ish rate; a timer SIGKILLs the kernel
process (not the marimo server) at a random moment, and the pages go on typing while it is gone.
Then the restart a user of marimo 0.25 does: marimo shows A a "Kernel stopped" banner, A clicks its
Restart and confirms (marimo closes the session and reloads page A, which starts a new kernel: the
cells re-run and the room recovers from the lake); B, shown "kernel not found", clicks "Try again"
once A is back (B's widget is re-rendered from the new kernel's model, without a page reload).
Either way the old view's replica is gone: the edits the kernel had not saved, and everything
typed while it was down, survive only in the browser-side outbox (js/outbox.ts).

After every restart both pages must show every token typed so far exactly once, in typing order;
at the end, so must the lake, read by a fresh SqlRoom after the server stopped.
CI: 5 kill points on one server and two pages; ``--slow``: 50.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import sqlrooms_nb as snb

from .kill import Killer, kernel_pid, token_report
from .servers import Server, marimo_server
from .widget_page import WidgetPage, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3600)]

ROOM = "crash-room"
PREFIX = {"a": "-- A:", "b": "-- B:"}
NOTEBOOK = """
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import os
    import pathlib

    import sqlrooms_nb as snb

    # The test SIGKILLs this process: say which one it is (atomically).
    pid_file = pathlib.Path(os.environ["SNB_TEST_PID_FILE"])
    pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
    pid_file.with_suffix(".tmp").replace(pid_file)
    room = snb.SqlRoom("crash-room")
    if not room.cells:
        room.add_cell("-- A:", name="a")
        room.add_cell("-- B:", name="b")
    room
    return (room,)


if __name__ == "__main__":
    app.run()
"""
KILLS_CI = 5
KILLS_SLOW = 50
TYPE_DELAY_MS = 25
"""Pause between keystrokes: a fast typist (the throttle, the outbox and the kill race it)."""
KILL_AFTER_S = (0.2, 2.5)
"""The kill lands uniformly in this window after the pages start typing (seconds)."""
TOKENS_WHILE_DOWN = (1, 3)
"""Tokens each page types after the kill, before the restart (inclusive range)."""
OFFLINE_TIMEOUT_S = 30.0
RESTART_TIMEOUT_S = 90.0
RETRY_CLICK_S = 3.0

TOKEN = re.compile(r"\b[ab]\d{3}\b")


@pytest.fixture
def crash_server(tmp_path: Path, artifact: Callable[[str], Path]) -> Iterator[Server]:
    """A running ``marimo edit crash.py`` with a private lake; its log goes to test-artifacts/."""
    folder = tmp_path / "marimo"
    folder.mkdir()
    (folder / "crash.py").write_text(NOTEBOOK)
    server = marimo_server(
        folder,
        "crash.py",
        tmp_path / "lake",
        tmp_path / "marimo.log",
        SNB_TEST_PID_FILE=str(tmp_path / "kernel.pid"),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.copyfile(server.log_path, artifact("marimo.log"))


@dataclass
class Typist:
    """One page typing tokens into its own cell; remembers what it typed."""

    page: WidgetPage
    cell: str  # the cell's name: "a" or "b"
    typed: list[str] = field(default_factory=list)

    def focus(self) -> None:
        self.page.focus_end(self.page.cell_named(self.cell))

    def type_token(self) -> str:
        token = f"{self.cell}{len(self.typed) + 1:03d}"
        self.typed.append(token)  # before typing: a kill mid-token still counts it
        self.page.page.keyboard.type(f" {token}", delay=TYPE_DELAY_MS)
        return token

    def expected(self) -> str:
        return " ".join([PREFIX[self.cell], *self.typed])

    def text(self) -> str:
        return next((c.text or "" for c in self.page.cells() if c.name == self.cell), "")


def view_id(page: WidgetPage) -> str | None:
    """The widget's view id (a re-rendered widget has a new one); None while none is shown."""
    root = page.root.first
    return root.get_attribute("data-view") if page.root.count() else None


def wait_same_text(typists: list[Typist], pages: list[WidgetPage], what: str) -> None:
    """Wait until every page shows every typist's cell exactly as typed."""

    def texts() -> list[list[str]]:
        return [
            [next((c.text or "" for c in p.cells() if c.name == t.cell), "") for t in typists]
            for p in pages
        ]

    want = [t.expected() for t in typists]
    try:
        wait_for(what, texts, lambda seen: all(row == want for row in seen), RESTART_TIMEOUT_S)
    except AssertionError:
        rows = texts()
        report = [
            f"{p.name} cell {t.cell}: "
            f"{token_report(row[i], t.typed, TOKEN) or 'tokens ok'} | {row[i]!r}"
            for p, row in zip(pages, rows, strict=True)
            for i, t in enumerate(typists)
        ]
        raise AssertionError(f"{what}:\n" + "\n".join(report)) from None


def visible(locator: Locator) -> bool:
    return locator.count() > 0 and locator.first.is_visible()


def connected(page: WidgetPage, old_view: str | None) -> bool:
    """A widget other than ``old_view`` is shown and has the notebook's two cells (welcomed)."""
    view = view_id(page)
    return view is not None and view != old_view and len(page.cells()) == 2


def restart_like_a_user(a: WidgetPage, b: WidgetPage) -> tuple[dict[str, float], int]:
    """A restarts the kernel from marimo's "Kernel stopped" banner; B clicks "Try again" (again
    after a few seconds if it still says so) once A's widget is back. Should the new kernel die
    as well before both are back, A restarts again.

    Returns seconds from A's first confirm click to each page's widget being back (``a``,
    ``b``), and how many extra restarts were needed."""
    button = a.page.locator("[data-testid=restart-session-button]")
    confirm = a.page.get_by_role("button", name="Confirm Restart")
    again = b.page.get_by_text("Try again", exact=True)
    button.first.wait_for(state="visible", timeout=RESTART_TIMEOUT_S * 1000)
    start = time.monotonic()
    deadline = start + RESTART_TIMEOUT_S
    restarts = 0
    clicked = -RETRY_CLICK_S
    times: dict[str, float] = {}
    old: dict[str, str | None] = {}
    while True:
        now = time.monotonic()
        if visible(button):  # the kernel stopped (first time, or the new one died too)
            old = {"a": view_id(a), "b": view_id(b)}  # marimo re-renders both widgets
            button.first.click()
            try:
                confirm.click(timeout=5000)
            except PlaywrightTimeout:  # the click landed while the banner re-rendered: again
                continue
            restarts += 1
            times.clear()
            deadline = time.monotonic() + RESTART_TIMEOUT_S
        elif "a" not in times:
            if connected(a, old["a"]):
                times["a"] = now - start
        elif connected(b, old["b"]):
            times["b"] = now - start
            return times, restarts - 1
        elif now - clicked >= RETRY_CLICK_S and visible(again):
            again.first.click()
            clicked = now
        if now > deadline:
            raise AssertionError(
                f"both widgets not back {RESTART_TIMEOUT_S} s after the restart: A "
                f"{view_id(a)} (was {old['a']}), B {view_id(b)} (was {old['b']}), "
                f"back so far: {times}"
            )
        time.sleep(0.2)


def outbox_stats(page: WidgetPage) -> dict[str, float]:
    """The outbox's counters of the page's current widget (js/widget.ts test hook)."""
    stats: dict[str, float] = page.root.first.evaluate("(el) => ({...el.sqlroomsNbOutbox})")
    return stats


def outbox_keys(page: WidgetPage) -> list[str]:
    """The page's localStorage keys of outbox entries."""
    keys: list[str] = page.page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.startsWith('sqlrooms_nb.outbox/'))"
    )
    return keys


def test_kernel_killed_while_two_pages_type_loses_and_doubles_nothing(
    crash_server: Server, open_page: Callable[[str, str], Page], slow: bool, tmp_path: Path
) -> None:
    kills = KILLS_SLOW if slow else KILLS_CI
    seed = int(os.environ.get("SNB_TEST_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill points: {kills}, seed {seed} (SNB_TEST_SEED={seed} replays the kill times)")
    pid_file = tmp_path / "kernel.pid"
    a = WidgetPage(open_page("page-a", crash_server.url), "page A")
    a.wait_ready(cells=2)
    b = WidgetPage(open_page("page-b", crash_server.url), "page B")
    b.wait_ready(cells=2)
    pages = [a, b]
    typists = [Typist(a, "a"), Typist(b, "b")]
    a.wait_saved()

    pid: int | None = None
    down_tokens = 0
    reconnect: list[dict[str, float]] = []
    banner_s: list[float] = []
    costs: list[dict[str, float]] = []  # outbox counters of every widget that typed
    offline_checked = 0
    died_alone = 0  # kernels that died by themselves (not by this test's SIGKILL)
    for k in range(kills):
        pid = kernel_pid(pid_file, crash_server, pid, RESTART_TIMEOUT_S)
        for t in typists:
            t.focus()
        killer = Killer(pid, rng.uniform(*KILL_AFTER_S))
        try:
            while not killer.done.is_set():  # alternate keystroke runs until the kill lands
                for t in typists:
                    t.type_token()
        finally:
            killer.cancel()
        # The kernel is gone: each page goes on typing (only its outbox can keep this).
        for t in typists:
            for _ in range(rng.randint(*TOKENS_WHILE_DOWN)):
                t.type_token()
                down_tokens += 1
        for t in typists:
            assert t.text() == t.expected(), f"{t.page.name} kept every keystroke locally"
        a.page.locator("[data-testid=restart-session-button]").first.wait_for(
            state="visible", timeout=RESTART_TIMEOUT_S * 1000
        )
        banner_s.append(time.monotonic() - killer.at)  # at most: it may have come during typing
        if k == 0 or (slow and k % 10 == 0):
            # Unsaved edits and no kernel: the badge says Offline while typing goes on.
            for t in typists:
                wait_for(
                    f"Offline in {t.page.name}",
                    t.page.status,
                    lambda s: "Offline" in s,
                    OFFLINE_TIMEOUT_S,
                )
                t.focus()
                t.type_token()
                down_tokens += 1
            offline_checked += 1
        costs += [outbox_stats(p) for p in pages]
        times, extra = restart_like_a_user(a, b)
        reconnect.append(times)
        died_alone += extra + killer.already_dead
        print(
            f"kill point {k + 1}/{kills}: {sum(len(t.typed) for t in typists)} tokens so far; "
            f"widgets back {reconnect[-1]['a']:.1f} s (A) / {reconnect[-1]['b']:.1f} s (B) "
            "after the restart click",
            flush=True,
        )
        wait_same_text(
            typists, pages, f"kill point {k + 1}: every token exactly once in both pages"
        )
        for page in pages:
            page.wait_saved(timeout_s=RESTART_TIMEOUT_S)

    # A little more typing on the last kernel, then everything saved.
    for t in typists:
        t.focus()
        for _ in range(2):
            t.type_token()
    wait_same_text(typists, pages, "the final text in both pages")
    for page in pages:
        page.wait_saved(timeout_s=RESTART_TIMEOUT_S)
    costs += [outbox_stats(p) for p in pages]
    for page in pages:  # every entry, the gone views' too, removed once saved
        wait_for(
            f"no outbox entry left in {page.name}",
            lambda page=page: outbox_keys(page),
            lambda keys: keys == [],
        )
    crash_server.stop()  # SIGTERM: the last kernel flushes and closes the lake

    with snb.SqlRoom(ROOM, lake=str(crash_server.lake)) as room:
        stored = {c.name: c.source for c in room.cells}
    for t in typists:
        assert stored[t.cell] == t.expected(), (
            f"lake, cell {t.cell}: "
            f"{token_report(stored[t.cell], t.typed, TOKEN) or 'order differs'}"
        )

    tokens = sum(len(t.typed) for t in typists)
    a_s = [r["a"] for r in reconnect]
    b_s = [r["b"] for r in reconnect]
    writes = sum(c["writes"] for c in costs)
    print(
        f"\n{kills} kernel kills survived (seed {seed}); {tokens} tokens checked in both pages "
        f"and the lake, {down_tokens} of them typed while the kernel was down; Offline shown "
        f"{offline_checked}x; {died_alone} kernel(s) died by themselves on the way. "
        f"Kill -> marimo banner: median {statistics.median(banner_s):.1f} s. "
        f"Restart click -> page A's widget back: median {statistics.median(a_s):.1f} s, "
        f"max {max(a_s):.1f} s; -> page B's: median {statistics.median(b_s):.1f} s, "
        f"max {max(b_s):.1f} s. Outbox: {writes:.0f} writes, "
        f"{sum(c['writeMs'] for c in costs) / max(writes, 1):.2f} ms per write on average, "
        f"{max(c['maxWriteMs'] for c in costs):.1f} ms max. Load average "
        f"{os.getloadavg()[0]:.1f}."
    )
