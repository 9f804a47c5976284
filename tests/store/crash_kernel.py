"""A kernel for the crash tests, run as a subprocess: a SqlRoom that edits a numbered sequence
of edits until it is killed, telling the test on stdout what it did and what the writer did.

Usage: ``python -m tests.store.crash_kernel LAKE ROOM START [--pause-at-flush N] [--rate N]
[--max-delay S] [--max-changes N]``. Edits are numbered from START (the count the lake already
holds); edit ``i`` appends ``"{i};"`` to cell ``a``, ``b`` or ``c`` (``i % 3``), except every tenth
(``i % 10 == 9``), which adds a cell ``n{i}`` holding ``"-- {i};"``. :func:`expected_cells` gives
the notebook after the first ``k`` edits, :func:`edits_in` counts the edits a notebook holds.

Lines printed (one per event, flushed; vv = hex of an encoded version vector)::

    ready <vv> <k>      recovered: the lake (and any spill replayed) holds edits 0..k-1
    e <i> <vv>          edit i made and committed; the document's version after it
    x <vv>              a flush began writing a batch that ends at this version
    c <seq> <n>         that flush's INSERTs ran; COMMIT is next. ``n`` counts the flushes
                        since ``ready`` (0 before); with --pause-at-flush N, flush n = N sleeps
                        here for a minute first, so that a kill lands mid-transaction
    w <vv>              that flush committed
    s <vv> <kept>       an outage spill append: the spill (with the lake) covers this version
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from typing import Any

from sqlrooms_nb.store import persister as persister_module
from sqlrooms_nb.store.persister import FlushPolicy, Persister

BASE = ("a", "b", "c")
TOKEN = re.compile(r"(\d+);")


def expected_cells(k: int) -> list[tuple[str, str]]:
    """``(name, source)`` of every cell after edits ``0..k-1``, in order."""
    sources = {name: "" for name in BASE}
    added: list[tuple[str, str]] = []
    for i in range(k):
        if i % 10 == 9:
            added.append((f"n{i}", f"-- {i};"))
        else:
            sources[BASE[i % 3]] += f"{i};"
    return [(name, sources[name]) for name in BASE] + added


def edits_in(cells: list[tuple[str, str]]) -> list[int]:
    """The edit numbers found in a notebook's cells, sorted (with repeats, if any)."""
    return sorted(int(t) for _, source in cells for t in TOKEN.findall(source))


_SAY = threading.Lock()


def say(*parts: object) -> None:
    """Print one whole line (the writer thread and the editing thread both report)."""
    line = " ".join(str(part) for part in parts) + "\n"
    with _SAY:
        sys.stdout.write(line)
        sys.stdout.flush()


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("lake")
    args.add_argument("room")
    args.add_argument("start", type=int)
    args.add_argument("--pause-at-flush", type=int, default=0)
    args.add_argument("--rate", type=float, default=100.0, help="edits per second")
    args.add_argument("--max-delay", type=float, default=0.05)
    args.add_argument("--max-changes", type=int, default=20)
    opts = args.parse_args()
    instrument(opts.pause_at_flush)

    from sqlrooms_nb import SqlRoom

    room = SqlRoom(
        opts.room,
        lake=opts.lake,
        author="crash-kernel",
        flush_policy=FlushPolicy(
            max_delay_s=opts.max_delay, max_changes=opts.max_changes, poll_s=None
        ),
    )
    ids = {cell.name: cell.id for cell in room.cells}
    if not ids:  # first life: the three base cells, saved before the edits start
        for name in BASE:
            ids[name] = room.add_cell("", name=name)
        room.flush()
    cells = [(c.name, c.source) for c in room.cells]
    k = len(edits_in(cells))
    STARTED.set()
    say("ready", room.doc.oplog_vv.encode().hex(), k)
    if k != opts.start:
        say("mismatch", k, opts.start)
    gap = 1.0 / opts.rate
    i = k
    while True:
        if i % 10 == 9:
            room.add_cell(f"-- {i};", name=f"n{i}")
        else:
            cell = ids[BASE[i % 3]]
            source = next(c.source for c in room.cells if c.id == cell)
            room.update_cell(cell, source=source + f"{i};")
        say("e", i, room.doc.oplog_vv.encode().hex())
        i += 1
        time.sleep(gap)


STARTED = threading.Event()
"""Set once ``ready`` is printed: flushes are counted from there."""


def instrument(pause_at: int) -> None:
    """Report the writer's flushes and spill appends on stdout (test instrumentation only);
    sleep inside the ``pause_at``-th flush transaction after ``ready`` (0: never)."""
    flushes = [0]
    insert = Persister._insert
    spill_unsaved = Persister._spill_unsaved

    def reporting_insert(self: Persister, cur: Any, tables: Any, what: str, seq: int) -> None:
        updates = tables.get("updates")
        vv = bytes(updates.column("vv_to")[0].as_py()).hex() if updates is not None else None
        if vv is not None:
            say("x", vv)
        insert(self, cur, tables, what, seq)
        if vv is not None:
            say("w", vv)

    def reporting_spill(self: Persister) -> None:
        spill_unsaved(self)
        outage = self.outage
        say("s", self._spilled_vv.encode().hex(), outage.kept_changes if outage else 0)

    def before_commit(seq: int) -> None:
        if STARTED.is_set():
            flushes[0] += 1
        say("c", seq, flushes[0])
        if pause_at and flushes[0] == pause_at:
            time.sleep(60)  # the test kills the kernel meanwhile

    Persister._insert = reporting_insert  # type: ignore[method-assign]
    Persister._spill_unsaved = reporting_spill  # type: ignore[method-assign]
    persister_module.before_commit_hook = before_commit


if __name__ == "__main__":
    sys.exit(main())
