"""P3, storage: what the persist runs left on disk, per edit and per 1,000 edits.

Reads the runs of :mod:`benchmarks.persist` (the same process: run both and they are measured
once). Ours: every file of the lake folder after the room was closed (SQLite catalog, with the
inlined small batches, plus the data files: the parquet of the snapshot and of flushed
batches), per edit; the files per 1,000 edits; and how that splits between the fixed cost of an
empty lake, the ``updates`` blobs and the ``snapshots`` blob. Beside it: Loro's own full
``Updates`` export of the same history (what the bytes could be), ``pycrdt-store``'s SQLite
file (on its prefix of the trace), the SQLRooms approach's DuckDB file (latest state only: no
history), the naive DuckLake (on its prefix). Target: ≤ 1.3 B/edit in the lake.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import baselines, persist, rooms, traces
from benchmarks.suite import Row, median, save_bars

NAME = "storage"
TARGET_B_PER_EDIT = 1.3


def run(size: str, out: Path) -> list[Row]:
    """P3 rows: lake bytes per edit (total, and beside each other side), files per 1,000."""
    m = persist.measure(size)
    n = m.params.edits
    ours = median(b.lake_bytes / b.edits for b in m.ours)
    files = median(b.lake_files * 1000 / b.edits for b in m.ours)
    loro = baselines.loro_updates_bytes(traces.paper_patches(n)) / n
    empty_bytes, empty_files = rooms.empty_lake_bytes()
    content = rooms.lake_content(m.ours[0].lake, m.ours[0].room)
    marginal = (median(b.lake_bytes for b in m.ours) - empty_bytes) / n
    split = (
        f"{n:,} edits: empty lake {empty_bytes / 1024:.0f} KiB ({empty_files} files); "
        f"{content.updates} updates rows {content.update_bytes / n:.2f} B/edit, "
        f"{content.changes} changes rows, {content.snapshots} snapshot(s) "
        f"{content.snapshot_bytes / n:.2f} B/edit"
    )
    others = {
        name: median(s.bytes_per_edit for s in m.sides[name])
        for name in ("pycrdt-store", "SQLRooms snapshot/500 ms", "naive DuckLake")
    }
    plot = save_bars(
        out,
        "storage.png",
        f"P3 bytes on disk per edit, {n:,} paper edits",
        "bytes per edit (log)",
        {"ours (lake)": ours, "Loro Updates export": loro, **others},
        logy=True,
        target=TARGET_B_PER_EDIT,
    )

    def prefix(side: str) -> str:
        return f"{side}: first {median(s.edits for s in m.sides[side]):,.0f} edits"

    return [
        Row(
            NAME,
            "P3 lake bytes per edit vs Loro Updates export",
            "B/edit",
            ours,
            "Loro export",
            loro,
            f"≤ {TARGET_B_PER_EDIT} B/edit",
            ours <= TARGET_B_PER_EDIT,
            split,
            plot,
        ),
        Row(
            NAME,
            "P3 lake bytes per edit beyond an empty lake",
            "B/edit",
            marginal,
            "Loro export",
            loro,
            f"≤ {TARGET_B_PER_EDIT} B/edit",
            marginal <= TARGET_B_PER_EDIT,
            f"without the {empty_bytes / 1024:.0f} KiB an empty lake holds (its catalog), "
            "which every room of the lake shares",
            plot,
        ),
        Row(
            NAME,
            "P3 lake files per 1,000 edits",
            "files/1k edits",
            files,
            note=f"{median(b.lake_files for b in m.ours):.0f} files for {n:,} edits",
            plot=plot,
        ),
        Row(
            NAME,
            "P3 bytes per edit vs pycrdt-store",
            "B/edit",
            ours,
            "pycrdt-store",
            others["pycrdt-store"],
            note=prefix("pycrdt-store"),
            plot=plot,
        ),
        Row(
            NAME,
            "P3 bytes per edit vs SQLRooms snapshot (latest state only)",
            "B/edit",
            ours,
            "SQLRooms",
            others["SQLRooms snapshot/500 ms"],
            note="a DuckDB file holding one snapshot row, overwritten: no history",
            plot=plot,
        ),
        Row(
            NAME,
            "P3 bytes per edit vs naive DuckLake",
            "B/edit",
            ours,
            "naive",
            others["naive DuckLake"],
            note=prefix("naive DuckLake"),
            plot=plot,
        ),
    ]
