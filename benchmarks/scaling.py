"""P8, scaling curves: how persist throughput (P1), lake bytes per edit (P3) and time travel
(P5) grow with the history's length and with the number of rooms in the lake.

- **History length** (10k, 100k and 260k edits at full size): per length, rooms built by
  :func:`benchmarks.rooms.built_room` (shared with ``persist`` when the lengths match) beside
  raw Loro on the same edits; bytes per edit of the lake; ``room.at()`` at 50 % of the history
  beside plain ``fork_at``.
- **Rooms in the lake** (1, 100 and 10,000 at full size): a lake holding that many rooms
  (``benchmarks/many_rooms.py``'s real seed room, copied in bulk), then a new room of
  ``room_edits`` paper edits persisted into it; its edits/s, the bytes the lake grew by per
  edit, ``room.at()`` at 50 %, and its open time (lake attached).

One PNG per curve: ``scaling_<measure>_vs_<history|rooms>.png``. The rows give the ratio of the
largest point to the smallest (how much it grew).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks import baselines, rooms, time_travel, traces
from benchmarks.many_rooms import copy_room, seed_room
from benchmarks.open import open_ms
from benchmarks.suite import Row, folder_size, median, pick, save_plot

from sqlrooms_nb.store import Lake

NAME = "scaling"


@dataclass(frozen=True)
class Params:
    lengths: tuple[int, ...]
    repeats: int
    rooms: tuple[int, ...]
    room_edits: int
    probes: int  # repeats of each open / room.at() timing


def params(size: str) -> Params:
    full = len(traces.paper_patches())
    return pick(  # type: ignore[no-any-return]
        size,
        smoke=Params((1_000, 3_000), 1, (1, 5), 1_000, 1),
        medium=Params((10_000, 25_000, 50_000), 2, (1, 100, 1_000), 20_000, 3),
        full=Params((10_000, 100_000, full), 3, (1, 100, 10_000), 50_000, 5),
    )


def by_history(p: Params, out: Path) -> list[Row]:
    xs = list(p.lengths)
    ours, raw, bytes_per_edit, at, fork = [], [], [], [], []
    for n in xs:
        patches = traces.paper_patches(n)
        built = [rooms.built_room(n, r) for r in range(p.repeats)]
        ours.append(median(b.edits_per_s for b in built))
        raw.append(median(baselines.raw_loro(patches).edits_per_s for _ in range(p.repeats)))
        bytes_per_edit.append(median(b.lake_bytes / n for b in built))
        travel = time_travel.measure(built[0], p.probes, marks=(50,))[50]
        at.append(travel["at"])
        fork.append(travel["fork_at"])
    plots = {
        "persist": save_plot(
            out,
            "scaling_persist_vs_history.png",
            "P1 persist throughput vs history length",
            "edits",
            "edits/s",
            {"ours": (xs, ours), "raw Loro": (xs, raw)},
            logx=True,
            logy=True,
        ),
        "storage": save_plot(
            out,
            "scaling_storage_vs_history.png",
            "P3 lake bytes per edit vs history length",
            "edits",
            "B/edit",
            {"ours (lake)": (xs, bytes_per_edit)},
            logx=True,
            target=1.3,
        ),
        "travel": save_plot(
            out,
            "scaling_time_travel_vs_history.png",
            "P5 preview at 50 % vs history length",
            "edits",
            "ms",
            {"room.at()": (xs, at), "fork_at": (xs, fork)},
            logx=True,
            target=50.0,
        ),
    }
    span = f"{xs[0]:,} -> {xs[-1]:,} edits"

    def points(values: list[float], unit: str) -> str:
        return ", ".join(f"{x:,}: {v:.3g}" for x, v in zip(xs, values, strict=True)) + f" {unit}"

    return [
        Row(
            NAME,
            f"P8 persist edits/s, {span}",
            "edits/s",
            ours[-1],
            f"at {xs[0]:,}",
            ours[0],
            note=f"ours {points(ours, 'edits/s')}; raw Loro {points(raw, 'edits/s')}",
            plot=plots["persist"],
        ),
        Row(
            NAME,
            f"P8 lake bytes per edit, {span}",
            "B/edit",
            bytes_per_edit[-1],
            f"at {xs[0]:,}",
            bytes_per_edit[0],
            note=points(bytes_per_edit, "B/edit"),
            plot=plots["storage"],
        ),
        Row(
            NAME,
            f"P8 room.at() at 50%, {span}",
            "ms",
            at[-1],
            f"at {xs[0]:,}",
            at[0],
            note=f"ours {points(at, 'ms')}; fork_at {points(fork, 'ms')}",
            plot=plots["travel"],
        ),
    ]


def _many_rooms_lake(count: int) -> Path:
    """A new lake holding ``count`` real rooms (``room-00000`` seeded, the rest copies)."""
    lake = rooms.scratch(f"rooms-{count}-") / "lake"
    seed_room(str(lake), "room-00000")
    if count > 1:
        copy_room(str(lake), "room-00000", count)
    return lake


def by_rooms(p: Params, out: Path) -> list[Row]:
    xs = list(p.rooms)
    rate, grown, at, opened = [], [], [], []
    expected = traces.expected_text(p.room_edits)
    for count in xs:
        lake = _many_rooms_lake(count)
        before, _ = folder_size(lake)
        built = rooms.persist_into(lake, rooms.ROOM, p.room_edits)
        after, _ = folder_size(lake)
        rate.append(built.edits_per_s)
        grown.append((after - before) / p.room_edits)
        at.append(time_travel.measure(built, p.probes, marks=(50,))[50]["at"])
        holder = Lake.open(lake)
        try:
            opened.append(
                median(open_ms(lake, built.room, built.cell, expected) for _ in range(p.probes))
            )
        finally:
            holder.release()
    plots = {
        "persist": save_plot(
            out,
            "scaling_persist_vs_rooms.png",
            f"P1 persist throughput ({p.room_edits:,} edits) vs rooms in the lake",
            "rooms in the lake",
            "edits/s",
            {"ours": (xs, rate)},
            logx=True,
        ),
        "storage": save_plot(
            out,
            "scaling_storage_vs_rooms.png",
            "P3 lake growth per edit vs rooms in the lake",
            "rooms in the lake",
            "B/edit",
            {"ours": (xs, grown)},
            logx=True,
            target=1.3,
        ),
        "travel": save_plot(
            out,
            "scaling_time_travel_vs_rooms.png",
            "P5 room.at() at 50 % (and P4 open) vs rooms in the lake",
            "rooms in the lake",
            "ms",
            {"room.at()": (xs, at), "open (lake attached)": (xs, opened)},
            logx=True,
            target=50.0,
        ),
    }
    span = f"{xs[0]:,} -> {xs[-1]:,} rooms"

    def points(values: list[float], unit: str) -> str:
        return ", ".join(f"{x:,}: {v:.3g}" for x, v in zip(xs, values, strict=True)) + f" {unit}"

    note = f"{p.room_edits:,}-edit room"
    return [
        Row(
            NAME,
            f"P8 persist edits/s, {span}",
            "edits/s",
            rate[-1],
            f"at {xs[0]:,}",
            rate[0],
            note=f"{note}; {points(rate, 'edits/s')}",
            plot=plots["persist"],
        ),
        Row(
            NAME,
            f"P8 lake growth per edit, {span}",
            "B/edit",
            grown[-1],
            f"at {xs[0]:,}",
            grown[0],
            note=f"{note}; {points(grown, 'B/edit')}",
            plot=plots["storage"],
        ),
        Row(
            NAME,
            f"P8 room.at() at 50%, {span}",
            "ms",
            at[-1],
            f"at {xs[0]:,}",
            at[0],
            note=f"{note}; {points(at, 'ms')}",
            plot=plots["travel"],
        ),
        Row(
            NAME,
            f"P8 open (lake attached), {span}",
            "ms",
            opened[-1],
            f"at {xs[0]:,}",
            opened[0],
            note=f"{note}; {points(opened, 'ms')}",
            plot=plots["travel"],
        ),
    ]


def run(size: str, out: Path) -> list[Row]:
    """P8 rows: the last point of each curve beside its first (ratio = growth)."""
    p = params(size)
    return [*by_history(p, out), *by_rooms(p, out)]
