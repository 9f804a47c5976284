"""Time from Run to rows on screen for ``select * from flights`` (336,776 rows), and scrolling.

Runs the browser test ``tests/browser/test_grid.py`` (marimo + headless Chromium) ``--runs``
times and prints what it measured each time: ``run_to_rows_ms`` (Run click -> the grid's
``data-first-rows-at``, i.e. right after the frame that painted the first rows), the
page's idle frame interval, and frame intervals while scrolling the grid 600 px per frame
(unsorted, then sorted in the kernel by ``dep_delay``) with how many frames showed rows still
waiting for their page.

    .venv/bin/python benchmarks/grid_first_page.py --runs 3
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
NUMBERS = "test_sort_and_scroll_the_336776_row_flights_result-grid-numbers.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.runs):
        test = "tests/browser/test_grid.py::test_sort_and_scroll_the_336776_row_flights_result"
        cmd = [sys.executable, "-m", "pytest", "-c", "pyproject.toml", "--rootdir", ".", test]
        done = subprocess.run([*cmd, "-q", "-p", "no:cacheprovider"], cwd=REPO, check=False)
        if done.returncode != 0:
            sys.exit(f"run {run + 1}: the browser test failed")
        print(f"--- run {run + 1}")
        print((REPO / "test-artifacts" / NUMBERS).read_text().strip())


if __name__ == "__main__":
    main()
