"""The benchmark suite (benchmarks/run.py) at smoke size: CI keeps every benchmark working.

Each kernel-side benchmark runs as `make bench` runs it (a process of its own, ``--smoke
--only <names>``) and must exit 0, print its rows in the table and write them, with their plots, to
``results.json``. Smoke figures mean little (seconds of work on a shared machine); the
benchmarks themselves check their results (the replayed text equals the trace's, every edit
was acknowledged), so a broken pipeline fails here. The runner's own rules (hooks for modules
not written yet, a failing benchmark, keeping rows of an earlier run) are checked in process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import run as bench_run
from benchmarks.durability import lags_ms
from benchmarks.suite import Row, percentile
from loro import ID, VersionVector

REPO = Path(__file__).resolve().parents[1]
# Benchmarks that read the same rooms run in one process, as in a full run: storage reads
# persist's runs; open, time_travel and scaling's longest history reuse persist's room. The
# browser ones (P6 sync, P7 results: a marimo server and Chromium each, ~20 s apiece at smoke
# size) run together and carry the browser mark.
GROUPS = [
    "persist,storage,open,time_travel,scaling",
    "durability,trace_views",
    pytest.param("sync,results,room_view", marks=pytest.mark.browser, id="sync,results,room_view"),
]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("names", GROUPS)
def test_benchmark_runs_at_smoke_size_and_prints_its_table(names: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--smoke", "--only", names, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["size"] == "smoke"
    table = done.stdout.split("== all benchmarks (smoke)", 1)[1]
    for name in names.split(","):
        assert data["benchmarks"][name]["status"] == "ok"
        assert any(r["benchmark"] == name for r in data["rows"]), f"{name} returned no rows"
    rows = data["rows"]
    for row in rows:
        assert row["measure"] in table, f"{row['measure']!r} missing from the printed table"
        assert row["ours"] is not None and row["ours"] > 0, row
        if row["baseline"]:
            assert row["baseline_value"] is not None and row["baseline_value"] > 0, row
        if row["target"]:
            assert row["met"] in (True, False), row
        if row["plot"]:
            assert (tmp_path / row["plot"]).read_bytes()[:8] == PNG, row["plot"]
    assert f"| {rows[0]['measure']} |" in (tmp_path / "table.md").read_text()


def _stub(monkeypatch: pytest.MonkeyPatch, run: Any) -> None:
    """Make every benchmark module exist and be ``run``."""

    class Module:
        pass

    module = Module()
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setattr(bench_run, "_module_exists", lambda _m: True)
    monkeypatch.setattr(bench_run, "load_benchmark", lambda _m: module)


def test_a_benchmark_not_written_yet_is_reported_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(bench_run.BENCHMARKS, "ghost", "no_such_benchmark_module")
    assert bench_run.main(["--smoke", "--only", "ghost", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["benchmarks"]["ghost"]["status"] == "not built"
    assert "not written yet" in data["rows"][0]["measure"]


def test_a_failing_benchmark_is_reported_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(size: str, out: Path) -> list[Row]:
        raise AssertionError("the replayed text differs")

    _stub(monkeypatch, broken)
    assert bench_run.main(["--smoke", "--only", "persist,open", "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert {data["benchmarks"][n]["status"] for n in ("persist", "open")} == {"failed"}
    assert "the replayed text differs" in capsys.readouterr().err


def test_a_partial_run_keeps_the_other_benchmarks_rows_of_the_same_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake(size: str, out: Path) -> list[Row]:
        calls.append(size)
        return [
            Row(
                "persist",
                f"P1 fake {len(calls)}",
                "edits/s",
                10.0 * len(calls),
                "raw",
                20.0,
                "≥ 0.50x",
                len(calls) > 1,
            )
        ]

    _stub(monkeypatch, fake)
    old = Row("storage", "P3 kept", "B/edit", 1.0)
    (tmp_path / "results.json").write_text(
        json.dumps({"size": "smoke", "rows": [old.as_json()], "benchmarks": {}})
    )
    assert bench_run.main(["--smoke", "--only", "persist", "--out", str(tmp_path)]) == 0
    assert bench_run.main(["--smoke", "--only", "persist", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    # the newer persist rows replace the older ones; storage's row is kept, in suite order
    assert [r["measure"] for r in rows] == ["P1 fake 2", "P3 kept"]
    assert rows[0]["ratio"] == pytest.approx(1.0)
    # another size starts afresh
    assert bench_run.main(["--size", "medium", "--only", "persist", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["measure"] for r in rows] == ["P1 fake 3"]


def test_lag_is_measured_to_the_first_save_that_covers_the_edit() -> None:
    peer = 7

    def vv(last: int) -> VersionVector:
        v = VersionVector()
        v.set_last(ID(peer, last))
        return v

    commits = [(0.000, 0), (0.010, 1), (0.020, 2)]
    saves = [(0.005, vv(0)), (0.015, vv(0)), (0.030, vv(2))]
    assert lags_ms(commits, saves, peer) == pytest.approx([5.0, 20.0, 10.0])
    with pytest.raises(AssertionError, match="never acknowledged"):
        lags_ms([*commits, (0.040, 3)], saves, peer)


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
