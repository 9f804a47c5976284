"""The demo notebooks without a browser: they load the flights, open the room with the starter
cells (an intro, three SQL cells, an input and a chart) on first open only, and the starter
queries give the real answers.

(Kept beside the browser tests because they check the same two notebooks; no Chromium here.)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from .servers import REPO

pytestmark = pytest.mark.timeout(180)

STARTER_ROWS = {"delay_by_airline": 16, "worst_routes": 10, "flights_per_month": 12}
"""Rows of the SQL starter cells (flights_per_month reads the input ``$origin``, 'JFK')."""
STARTER_KINDS = ["markdown", "sql", "sql", "input", "sql", "chart"]


@pytest.fixture
def private_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lake = tmp_path / "lake"
    monkeypatch.setenv("SQLROOMS_NB_LAKE", str(lake))
    monkeypatch.chdir(tmp_path)
    return lake


def run_marimo_demo() -> dict[str, Any]:
    """Run notebooks/demo.py as marimo runs a script; return the cells' definitions."""
    spec = importlib.util.spec_from_file_location(
        "sqlrooms_nb_demo", REPO / "notebooks" / "demo.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _outputs, defs = module.app.run()
    return dict(defs)


def run_jupyter_demo() -> dict[str, Any]:
    """Run the code cells of notebooks/demo.ipynb in one namespace, as a kernel would."""
    nb = json.loads((REPO / "notebooks" / "demo.ipynb").read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "demo.ipynb", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("run_demo", [run_marimo_demo, run_jupyter_demo], ids=["marimo", "jupyter"])
def test_demo_loads_the_flights_and_starts_the_room_once(private_lake, run_demo):
    defs = run_demo()
    con, room = defs["con"], defs["room"]
    try:
        counts = {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("flights", "airlines", "airports", "planes", "weather")
        }
        assert counts == {
            "flights": 336_776,
            "airlines": 16,
            "airports": 1_458,
            "planes": 3_322,
            "weather": 26_115,
        }
        # "NA" in the CSV files is NULL, not a string or a failed cast
        assert con.execute("SELECT count(*) FROM flights WHERE dep_delay IS NULL").fetchone() == (
            8_255,
        )
        assert [c.kind for c in room.cells] == STARTER_KINDS
        sql = [c for c in room.cells if c.kind == "sql"]
        assert [c.name for c in sql] == list(STARTER_ROWS)
        assert {c.name: room.run(c.id).num_rows for c in sql} == STARTER_ROWS
        jfk = room.run(sql[2].id).column("flights").to_pylist()
        room.set_input(next(c.id for c in room.cells if c.kind == "input"), value="LGA")
        room._runner.wait_idle()  # the value change re-ran flights_per_month
        assert room.run(sql[2].id, cascade=False).column("flights").to_pylist() != jfk
        chart = next(c.id for c in room.cells if c.kind == "chart")
        assert room.chart_data(chart).num_rows == 12
        room.update_cell(sql[0].id, source="SELECT 'edited' AS what")
    finally:
        room.close()

    again = run_demo()["room"]  # a reopened room shows what people left in it
    try:
        sql = [c for c in again.cells if c.kind == "sql"]
        assert [c.name for c in sql] == list(STARTER_ROWS)
        assert sql[0].source == "SELECT 'edited' AS what"
    finally:
        again.close()


def test_the_jupyter_demo_names_its_kernel():
    nb = json.loads((REPO / "notebooks" / "demo.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
