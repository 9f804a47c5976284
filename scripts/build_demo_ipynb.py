"""Write notebooks/demo.ipynb from notebooks/demo.py, so the two demos never drift apart.

Usage: `.venv/bin/python scripts/build_demo_ipynb.py` (rewrites the file), or
`--check` (exit status 1 when demo.ipynb is stale). Needs `marimo` and `nbformat`
(both come with the `demo` extra).

The marimo app is exported with `marimo export ipynb` (top-down order), then made a plain
Jupyter notebook: no `marimo` import or metadata (hidden code stays collapsed), outputs
cleared, a `python3` kernelspec (without one JupyterLab opens a "Select Kernel" dialog) and its
own room id, so a marimo kernel and a Jupyter kernel on the same default lake never write the
same room.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARIMO_APP = REPO / "notebooks" / "demo.py"
JUPYTER_NOTEBOOK = REPO / "notebooks" / "demo.ipynb"
MARIMO_ROOM = 'snb.SqlRoom("flights-demo",'
JUPYTER_ROOM = 'snb.SqlRoom("flights-demo-jupyter",'
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def render() -> str:
    """Return the text of demo.ipynb as generated from demo.py (JSON, trailing newline)."""
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "demo.ipynb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "marimo",
                "export",
                "ipynb",
                str(MARIMO_APP),
                "--sort",
                "top-down",
                "-o",
                str(exported),
            ],
            check=True,
            capture_output=True,
        )
        nb = json.loads(exported.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            lines = [line for line in source.splitlines() if line != "import marimo as mo"]
            source = "\n".join(lines).replace(MARIMO_ROOM, JUPYTER_ROOM)
            cells.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": cell["id"],
                    # marimo's hide_code becomes a collapsed source (a click shows it)
                    "metadata": {k: v for k, v in cell["metadata"].items() if k == "jupyter"},
                    "outputs": [],
                    "source": source,
                }
            )
        else:
            cells.append(
                {"cell_type": cell["cell_type"], "id": cell["id"], "metadata": {}, "source": source}
            )
    if not any(JUPYTER_ROOM in c["source"] for c in cells):
        raise SystemExit(f"{MARIMO_APP} no longer contains {MARIMO_ROOM!r}: update this script")
    out = {
        "cells": cells,
        "metadata": {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python", "pygments_lexer": "ipython3"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    import nbformat

    nbformat.validate(nbformat.from_dict(out))
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = JUPYTER_NOTEBOOK.read_text(encoding="utf-8") if JUPYTER_NOTEBOOK.exists() else ""
        if current != text:
            print(f"{JUPYTER_NOTEBOOK} is stale: run scripts/build_demo_ipynb.py", file=sys.stderr)
            return 1
        return 0
    JUPYTER_NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {JUPYTER_NOTEBOOK}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
