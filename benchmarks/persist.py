"""P1, persist throughput: the paper trace committed one edit at a time into a room's cell,
through the real persister into the embedded lake, until everything is saved.

Side by side, in this process, repeat by repeat (raw Loro, ours, the SQLRooms approach; then
the two slow baselines on a prefix): edits per second of

- ours: :func:`benchmarks.rooms.persist_into` (``room.doc``, one commit per edit, then
  ``room.flush()``);
- (a) raw Loro, nothing persisted (the limit); target: ours ≥ 50 % of it;
- (b) a naive DuckLake baseline, one INSERT per update;
- (c) ``pycrdt-store``'s ``SQLiteYStore`` with ``pycrdt`` updates (JupyterLab RTC); target:
  ours ≥ 300x it;
- (d) the SQLRooms approach, whole snapshot saved 500 ms after the first unsaved change.

Figures are medians over the repeats; the ratio is ours / baseline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from benchmarks import baselines, rooms, traces
from benchmarks.suite import Row, median, pick, save_bars

NAME = "persist"


@dataclass(frozen=True)
class Params:
    edits: int
    repeats: int
    slow_edits: int  # the capped baselines (b) and (c): at most this many edits ...
    slow_s: float  # ... or this many seconds per run
    slow_repeats: int


def params(size: str) -> Params:
    full = len(traces.paper_patches())
    return pick(  # type: ignore[no-any-return]
        size,
        smoke=Params(3_000, 1, 100, 1.0, 1),
        medium=Params(50_000, 3, 1_000, 5.0, 2),
        full=Params(full, 5, 3_000, 20.0, 3),
    )


@dataclass(frozen=True)
class Measured:
    """Every side's runs: ``ours`` (:class:`rooms.BuiltRoom`) and the baselines'
    :class:`baselines.Side` lists, by side name."""

    params: Params
    ours: list[rooms.BuiltRoom]
    sides: dict[str, list[baselines.Side]]

    def rate(self, side: str) -> float:
        return median(s.edits_per_s for s in self.sides[side])


@functools.cache
def measure(size: str) -> Measured:
    """Run every side (cached for the process: ``storage`` reads the same runs)."""
    p = params(size)
    patches = traces.paper_patches(p.edits)
    traces.expected_text(p.edits)  # the reference text, built before any timing
    ours: list[rooms.BuiltRoom] = []
    sides: dict[str, list[baselines.Side]] = {}
    for r in range(p.repeats):
        sides.setdefault("raw Loro", []).append(baselines.raw_loro(patches))
        ours.append(rooms.built_room(p.edits, r))
        debounce = baselines.snapshot_debounce(patches, rooms.scratch("debounce-"))
        sides.setdefault("SQLRooms snapshot/500 ms", []).append(debounce)
    for _ in range(p.slow_repeats):
        naive = baselines.naive_ducklake(
            patches, rooms.scratch("naive-") / "lake", p.slow_edits, p.slow_s
        )
        sides.setdefault("naive DuckLake", []).append(naive)
        ystore = baselines.pycrdt_store(
            patches, rooms.scratch("ystore-"), p.slow_edits * 10, p.slow_s
        )
        sides.setdefault("pycrdt-store", []).append(ystore)
    return Measured(p, ours, sides)


def run(size: str, out: Path) -> list[Row]:
    """P1 rows: ours vs each baseline, edits/s."""
    m = measure(size)
    p = m.params
    ours = median(b.edits_per_s for b in m.ours)
    rates = {name: m.rate(name) for name in m.sides}
    plot = save_bars(
        out,
        "persist.png",
        f"P1 persist throughput, {p.edits:,} paper edits (median of {p.repeats})",
        "edits/s (log)",
        {"ours (persister)": ours, **rates},
        logy=True,
    )
    base = f"{p.edits:,} edits, median of {p.repeats}"

    def prefix(side: str) -> str:
        runs = m.sides[side]
        return (
            f"first {median(s.edits for s in runs):,.0f} edits (capped at {p.slow_s:.0f} s), "
            f"median of {len(runs)}"
        )

    def row(side: str, target: str = "", goal: float | None = None, note: str = base) -> Row:
        ratio = ours / rates[side]
        return Row(
            NAME,
            f"P1 persist throughput vs {side}",
            "edits/s",
            ours,
            side,
            rates[side],
            target,
            None if goal is None else ratio >= goal,
            note,
            plot,
        )

    return [
        row("raw Loro", "≥ 0.50x", 0.5),
        row("pycrdt-store", "≥ 300x", 300.0, f"ours: {base}; ystore: {prefix('pycrdt-store')}"),
        row("naive DuckLake", note=f"ours: {base}; naive: {prefix('naive DuckLake')}"),
        row("SQLRooms snapshot/500 ms"),
    ]
