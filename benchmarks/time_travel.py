"""P5, time travel: preview the versions at 10 %, 50 % and 90 % of the paper trace's history,
vs Loro's plain ``fork_at`` on the same document.

The room is :func:`benchmarks.rooms.built_room` (the ``persist`` run's lake), re-opened from
the lake as a kernel would after a restart. Per version, interleaved, median of the repeats:

- ours: ``room.at(version)`` (the Python API: the cells at that version);
- ours, preview reply: the history panel's request (``room.handle(PreviewRequest)``: the cells,
  their diff to now, the reply message) — what a view waits for, less the comm;
- baseline: ``read_cells(doc.fork_at(frontiers))`` on a plain Loro document imported from the
  room's newest snapshot (the same history).

The first call after opening (Loro decodes the history lazily) is reported in the note: it
is also the cold cost of a preview, since the room keeps a few detached forks checked out
near the versions previewed (:class:`sqlrooms_nb.history.Previews`) and the repeats of one
version then cost only reading the cells. Each preview's text is checked against the trace.
Target: ≤ 50 ms kernel side.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import persist, rooms, traces
from benchmarks.suite import Row, median, pick, save_plot
from loro import LoroDoc

import sqlrooms_nb as snb
from sqlrooms_nb import history as hist
from sqlrooms_nb import notebook as nb
from sqlrooms_nb import protocol as p

NAME = "time_travel"
TARGET_MS = 50.0


def _repeats(size: str) -> int:
    return pick(size, smoke=2, medium=5, full=9)  # type: ignore[no-any-return]


def measure(
    built: rooms.BuiltRoom, repeats: int, marks: tuple[int, ...] = rooms.MARKS
) -> dict[int, dict[str, float]]:
    """Per mark (percent): ``at``, ``preview``, ``fork_at`` medians and ``first`` (the first
    ``at`` after opening), all ms. Raises ``AssertionError`` on a wrong preview."""
    snapshot = rooms.latest_snapshot(built.lake, built.room)
    plain = nb.configure(LoroDoc())  # type: ignore[no-untyped-call]
    plain.import_(snapshot)
    out: dict[int, dict[str, float]] = {}
    with snb.SqlRoom(built.room, lake=built.lake) as room:
        for mark in marks:
            version = built.versions[mark]
            expected = traces.expected_text(max(1, built.edits * mark // 100))
            frontiers = hist.parse_version(plain, version)
            start = time.perf_counter()
            cells = room.at(version)
            first = (time.perf_counter() - start) * 1000
            if next(c.source for c in cells if c.id == built.cell) != expected:
                raise AssertionError(f"room.at() at {mark}% differs from the trace")
            if (
                next(
                    c.source for c in nb.read_cells(plain.fork_at(frontiers)) if c.id == built.cell
                )
                != expected
            ):
                raise AssertionError(f"fork_at at {mark}% differs from the trace")
            at, preview, fork = [], [], []
            request = p.PreviewRequest(view=p.ViewId("bench"), id=p.RequestId("1"), version=version)
            for _ in range(repeats):
                start = time.perf_counter()
                room.at(version)
                at.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                replies = room.handle(request)
                preview.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                nb.read_cells(plain.fork_at(frontiers))
                fork.append((time.perf_counter() - start) * 1000)
            if not any(isinstance(r, p.Preview) for r in replies):
                raise AssertionError(f"no preview reply at {mark}%: {replies!r:.200}")
            out[mark] = {
                "at": median(at),
                "preview": median(preview),
                "fork_at": median(fork),
                "first": first,
            }
    return out


def run(size: str, out: Path) -> list[Row]:
    """P5 rows: ``room.at`` and the preview reply at 10/50/90 %, vs plain ``fork_at``."""
    n = persist.params(size).edits
    built = rooms.built_room(n, 0)
    repeats = _repeats(size)
    got = measure(built, repeats)
    marks = sorted(got)
    plot = save_plot(
        out,
        "time_travel.png",
        f"P5 preview of a version, {n:,}-edit paper room (median of {repeats})",
        "version at % of the history",
        "ms",
        {
            "room.at()": (marks, [got[m]["at"] for m in marks]),
            "preview reply (at + diff)": (marks, [got[m]["preview"] for m in marks]),
            "Loro fork_at + read cells": (marks, [got[m]["fork_at"] for m in marks]),
        },
        target=TARGET_MS,
    )
    rows = []
    for mark in marks:
        g = got[mark]
        note = f"{n:,} edits, median of {repeats}; first call after open {g['first']:.0f} ms"
        rows.append(
            Row(
                NAME,
                f"P5 room.at() at {mark}% of the history",
                "ms",
                g["at"],
                "fork_at",
                g["fork_at"],
                f"≤ {TARGET_MS:.0f} ms",
                g["at"] <= TARGET_MS,
                note,
                plot,
            )
        )
        rows.append(
            Row(
                NAME,
                f"P5 preview reply at {mark}%",
                "ms",
                g["preview"],
                "fork_at",
                g["fork_at"],
                f"≤ {TARGET_MS:.0f} ms",
                g["preview"] <= TARGET_MS,
                note,
                plot,
            )
        )
    return rows
