"""Run the benchmark suite: one table, plots and JSON under ``benchmarks/results/``.

    .venv/bin/python benchmarks/run.py                      # every benchmark, full size
    .venv/bin/python benchmarks/run.py --smoke              # seconds each (what CI runs)
    .venv/bin/python benchmarks/run.py --size medium --only persist,storage

Each benchmark is a module ``benchmarks/<module>.py`` with ``run(size, out) -> list[Row]`` (see
:mod:`benchmarks.suite`); :data:`BENCHMARKS` lists them in run order. The browser ones
(``sync``, ``results``) start a ``marimo edit`` server and Chromium. When a module named
here does not exist yet the table says so and the run goes on. A benchmark that raises is
reported (traceback on stderr, a row saying it failed) and the others still run; the exit
status is then 1.

Writes into ``--out`` (default ``benchmarks/results``): ``results.json`` (machine, size, load
average before and after each benchmark, every row), ``table.md`` (the table as markdown) and
the benchmarks' PNG plots. Rows of benchmarks not run this time are kept from an earlier
``results.json`` of the same size, so ``--only`` refreshes part of a full run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.suite import (  # noqa: E402
    SIZES,
    Row,
    describe_machine,
    load_average,
    machine,
    markdown_table,
    text_table,
)

BENCHMARKS: dict[str, str] = {
    "persist": "persist",  # P1
    "durability": "durability",  # P2
    "storage": "storage",  # P3 (reads persist's runs when both run)
    "open": "open",  # P4
    "time_travel": "time_travel",  # P5
    "room_view": "room_view",  # P4 first render + P5 preview to pixels, browser
    "sync": "sync_latency",  # P6, browser: marimo edit + 2 Chromium pages
    "trace_views": "trace_views",  # P6 part 2: 3 views replay clownschool at 10x vs a bare relay
    "results": "results_grid",  # P7, browser: marimo edit + Chromium, our grid vs mo.sql
    "scaling": "scaling",  # P8
}
"""Benchmark name (for ``--only``) -> module in ``benchmarks/``, in run order."""

DEFAULT_OUT = REPO / "benchmarks" / "results"


def _module_exists(module: str) -> bool:
    return (REPO / "benchmarks" / f"{module}.py").exists()


def load_benchmark(module: str) -> Any:
    """The module ``benchmarks.<module>`` (it has ``run(size, out) -> list[Row]``)."""
    return importlib.import_module(f"benchmarks.{module}")


def run_one(name: str, size: str, out: Path) -> tuple[list[Row], dict[str, Any]]:
    """Run benchmark ``name``: its rows and a record (load before/after, seconds, error)."""
    module = BENCHMARKS[name]
    record: dict[str, Any] = {"module": module, "load_before": round(load_average(), 2)}
    if not _module_exists(module):
        record["status"] = "not built"
        row = Row(name, f"{name}: benchmarks/{module}.py is not written yet", "", None)
        return [row], record
    print(f"== {name} ({size}), load average {record['load_before']:.2f}", flush=True)
    started = time.perf_counter()
    try:
        rows = list(load_benchmark(module).run(size, out))
        record["status"] = "ok"
    except Exception as exc:
        traceback.print_exc()
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        rows = [Row(name, f"{name}: FAILED ({type(exc).__name__}: {exc})"[:160], "", None)]
    record["seconds"] = round(time.perf_counter() - started, 2)
    record["load_after"] = round(load_average(), 2)
    print(text_table(rows), flush=True)
    print(
        f"   ({record['seconds']:.1f} s; load average {record['load_before']:.2f} -> "
        f"{record['load_after']:.2f})",
        flush=True,
    )
    return rows, record


def _previous(out: Path, size: str) -> dict[str, Any]:
    try:
        data = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if data.get("size") == size else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--smoke", action="store_true", help="same as --size smoke")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    size = "smoke" if args.smoke else args.size
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"sqlrooms_nb benchmarks, size {size}: {describe_machine(info)}", flush=True)

    previous = _previous(out, size)
    records: dict[str, Any] = dict(previous.get("benchmarks", {}))
    kept = [r for r in previous.get("rows", []) if r.get("benchmark") not in names]
    rows: list[Row] = []
    for name in names:
        got, record = run_one(name, size, out)
        rows.extend(got)
        records[name] = record
    failed = [n for n in names if records[n].get("status") == "failed"]

    all_rows = [Row(**{k: v for k, v in r.items() if k != "ratio"}) for r in kept] + rows
    order = list(BENCHMARKS)
    all_rows.sort(key=lambda r: order.index(r.benchmark) if r.benchmark in order else len(order))
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(
        json.dumps(
            {
                "size": size,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": info,
                "benchmarks": records,
                "rows": [r.as_json() for r in all_rows],
            },
            indent=1,
            ensure_ascii=False,
        )
    )
    header = f"Size {size}; {describe_machine(info)}. Ratio = ours / baseline."
    (out / "table.md").write_text(f"{header}\n\n{markdown_table(all_rows)}\n")
    print()
    print(f"== all benchmarks ({size}); ratio = ours / baseline")
    print(text_table(all_rows))
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and the plots in {out}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
