"""A 5,000-cell notebook in marimo + headless Chromium: load, scroll, edit (issue 6, part 8).

    .venv/bin/python benchmarks/big_doc.py [--cells 5000] [--eager-cells 300]

Seeds a room of small cells (4 SQL : 1 Markdown) in a fresh embedded lake, starts ``marimo edit``
on a notebook showing it and opens it in a fresh Chromium page, three times: ``lazy`` (the widget
as shipped: only cells near the viewport are rendered and have an editor, js/ui/lazy.ts) with
``--cells`` cells, then ``lazy`` and ``eager`` (every cell's CodeMirror editor built at once, as
before) with ``--eager-cells``. Prints side by side: time to the widget, to the first visible cell
and to all cells in the DOM (ms from navigation start), the longest frame while loading, JS heap
and DOM nodes, editors built, a jump to the end and to the top each followed by 60 frames of
scrolling 300 px per frame (frame intervals), the keystroke durations (Event Timing) and the time
until an edit typed into cell n-1 is saved by the kernel. Measurement code:
tests/browser/big_doc_probe.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import big_doc_probe as probe  # noqa: E402
from tests.browser.servers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, marimo_server  # noqa: E402

TIMEOUT_S = 600.0


def flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run(browser: Browser, tmp: Path, mode: str, cells: int) -> dict[str, Any]:
    """Seed a lake with ``cells`` cells, serve it with marimo, measure it in a fresh page."""
    name = f"{mode}-{cells}"
    lake = tmp / f"lake-{name}"
    t0 = time.perf_counter()
    ids = probe.seed_room(lake, cells)
    print(f"[{name}] seeded in {time.perf_counter() - t0:.1f} s", flush=True)
    folder = tmp / f"marimo-{name}"
    folder.mkdir()
    (folder / "big.py").write_text(probe.NOTEBOOK)
    server = marimo_server(folder, "big.py", lake, tmp / f"marimo-{name}.log")
    server.start()
    try:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        if mode == "eager":
            page.add_init_script(probe.EAGER_SCRIPT)
        log = lambda step: print(f"[{name}] {step}", flush=True)  # noqa: E731
        figures = flatten(probe.measure(page, server.url, cells, ids[-2], TIMEOUT_S, log=log))
        context.close()
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument(
        "--eager-cells",
        type=int,
        default=300,
        help="size of the lazy-vs-eager comparison (eager editors are quadratic: 1,000 cells "
        "took over 7 minutes to build)",
    )
    args = parser.parse_args()
    runs = [("lazy", args.cells), ("lazy", args.eager_cells), ("eager", args.eager_cells)]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for mode, cells in runs:
            results[f"{mode} {cells}"] = run(browser, Path(tmp_name), mode, cells)
        browser.close()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f}")
    names = list(results)
    print(f"  {'':<32}" + "".join(f"{n:>14}" for n in names))
    for key in results[names[0]]:
        print(f"  {key:<32}" + "".join(f"{results[n].get(key)!s:>14}" for n in names))


if __name__ == "__main__":
    main()
