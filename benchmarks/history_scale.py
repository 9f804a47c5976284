"""How history browsing scales with the number of Loro changes (seed for the benchmarks issue).

Builds a room whose one cell receives N single-character edits from the automerge-paper trace,
each its own change (commit timestamps 11 s apart, beyond the 10 s merge interval; authors
alternate every 50 edits so sessions are short), then times, median of --repeat runs:

- ``history(limit=50)`` cold (no cached change stats) and warm (cached),
- ``at(version)`` at 10 %, 50 % and 90 % of the history vs Loro's plain ``fork_at`` (baseline).

Usage: .venv/bin/python benchmarks/history_scale.py [--changes 100000] [--repeat 3]
Prints one table; figures are wall-clock milliseconds on this machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import statistics
import tempfile
import time

import sqlrooms_nb as snb
from sqlrooms_nb import history
from sqlrooms_nb import notebook as nb

TRACE = (
    pathlib.Path(__file__).resolve().parents[2]
    / "shared/data/editing-traces/automerge-paper.json.gz"
)


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trace = json.load(gzip.open(TRACE))
    patches = [p for txn in trace["txns"] for p in txn["patches"]][: args.changes]
    with tempfile.TemporaryDirectory() as tmp, snb.SqlRoom("bench", lake=f"{tmp}/lake") as room:
        cid = room.add_cell("", name="paper")
        text = nb.cell_text(nb.find_cell(room.doc, cid)[1])
        t0 = int(time.time()) + 60
        versions = []
        build = time.perf_counter()
        for i, (pos, deleted, inserted) in enumerate(patches):
            if deleted:
                text.delete(pos, deleted)
            if inserted:
                text.insert(pos, inserted)
            room.doc.set_next_commit_timestamp(t0 + 11 * i)
            room.doc.set_next_commit_message("ana" if (i // 50) % 2 else "bo")
            room.doc.commit()
            if i in {len(patches) // 10, len(patches) // 2, len(patches) * 9 // 10}:
                versions.append((i, room.version))
        build_s = time.perf_counter() - build
        n_changes = len(history.changes(room.doc))
        cold = timed(lambda: (room._change_stats.clear(), room.history(limit=50)), args.repeat)
        warm = timed(lambda: room.history(limit=50), args.repeat)
        rows = [("history(limit=50), cold", cold, None), ("history(limit=50), warm", warm, None)]
        for i, vid in versions:
            frontiers = history.parse_version(room.doc, vid)
            ours = timed(lambda vid=vid: room.at(vid), args.repeat)
            base = timed(lambda f=frontiers: nb.read_cells(room.doc.fork_at(f)), args.repeat)
            rows.append((f"at() at {100 * i // len(patches)}% (vs fork_at)", ours, base))
        room.flush()
    print(f"{len(patches)} edits -> {n_changes} Loro changes (built in {build_s:.1f} s)")
    print(f"{'measure':<36}{'ms':>10}{'baseline ms':>14}{'ratio':>8}")
    for name, ms, base in rows:
        ratio = f"{ms / base:.2f}" if base else ""
        print(f"{name:<36}{ms:>10.1f}{(f'{base:.1f}' if base else ''):>14}{ratio:>8}")


if __name__ == "__main__":
    main()
