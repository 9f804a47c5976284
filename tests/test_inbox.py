"""The room's inbox: the widgets' messages are queued off the comm thread and handled in
arrival order, a backlog of updates imported as one batch, nothing dropped on close."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from loro import LoroDoc

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.inbox import Inbox

from .fakes import FakeView


def append(view: FakeView, cell_id: str, token: str) -> None:
    def edit(doc: LoroDoc) -> None:
        text = nb.cell_text(nb.find_cell(doc, cell_id)[1])
        text.insert(len(text.to_string()), token)

    view.edit(edit)


def welcomed(room: snb.SqlRoom, names: list[str]) -> list[FakeView]:
    views = [FakeView(room, name, queued=True) for name in names]
    for view in views:
        view.hello()
    assert room.settle(10)
    for view in views:
        view.pump()
        assert view.welcomed
    return views


@pytest.fixture
def room(tmp_path: Path) -> Any:
    with snb.SqlRoom("inbox", lake=tmp_path / "lake", author="ana") as r:
        yield r


def test_a_backlog_of_updates_from_several_views_is_one_import(room: snb.SqlRoom) -> None:
    cell = room.add_cell("select 1", name="shared")
    views = welcomed(room, ["a", "b", "c"])
    hub = room._replicas["main"].hub
    batches: list[int] = []
    real = hub.handle_updates

    def spy(messages: Any) -> Any:
        batches.append(len(messages))
        return real(messages)

    hub.handle_updates = spy  # type: ignore[method-assign]
    with room._lock:  # the worker blocks on the room's lock with the first update
        append(views[0], cell, " /*a0*/")
        deadline = time.monotonic() + 5
        while room._inbox.backlog:  # taken by the worker, which now waits for the lock
            assert time.monotonic() < deadline
            time.sleep(0.005)
        for n in range(1, 6):
            for view in views:
                append(view, cell, f" /*{view.view}{n}*/")
        assert room._inbox.backlog == 15
    assert room.settle(10)
    assert batches == [1, 15]
    for _ in range(3):
        for view in views:
            view.pump()
    text = room.cells[0].source
    for view in views:
        for n in range(6 if view.view == "a" else 1, 6):
            assert text.count(f"/*{view.view}{n}*/") == 1
        assert view.cells() == [("shared", text)]


def test_a_run_queued_after_an_edit_runs_the_edited_text(room: snb.SqlRoom) -> None:
    cell = room.add_cell("select 1 as x", name="q")
    [view] = welcomed(room, ["a"])

    def rewrite(doc: LoroDoc) -> None:
        text = nb.cell_text(nb.find_cell(doc, cell)[1])
        text.delete(0, len(text.to_string()))
        text.insert(0, "select 42 as x")

    with room._lock:  # both wait in the queue together
        view.edit(rewrite)
        view.send({"kind": "run", "cell": cell, "id": "r1"})
    result = view.wait_for("result", timeout_s=20)
    assert result["cell"] == cell and result["rows"] == 1
    assert room.run(cell).column("x").to_pylist() == [42]


def test_close_handles_what_was_queued_before_it(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    room = snb.SqlRoom("inbox", lake=lake)
    cell = room.add_cell("", name="shared")
    [view] = welcomed(room, ["a"])
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # the room's lock held elsewhere: the worker cannot import yet
        with room._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    for n in range(10):
        append(view, cell, f"{n};")
    threading.Timer(0.3, release.set).start()
    room.close()
    holder.join()
    with snb.SqlRoom("inbox", lake=lake) as again:
        assert again.cells[0].source == "".join(f"{n};" for n in range(10))


def test_the_worker_survives_a_failing_batch_and_settle_waits_for_the_queue() -> None:
    handled: list[list[Any]] = []

    def handle(items: list[Any]) -> None:
        handled.append([content for content, _b, _r in items])
        if items[0][0] == "boom":
            raise RuntimeError("a bug in one batch")

    inbox = Inbox("t", handle)
    assert inbox.put("boom", None, False)
    assert inbox.settle(5)
    for n in range(3):
        inbox.put(n, None, False)
    assert inbox.settle(5)
    assert [c for batch in handled for c in batch] == ["boom", 0, 1, 2]
    assert inbox.close(5)
    assert not inbox.put("late", None, False)
