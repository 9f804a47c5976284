"""Several processes on one SQLite-catalog lake: two writers, and a plain DuckDB reader."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sqlrooms_nb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import Lake, connect, recover

WRITER = r"""
import sys
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover

path, room, flushes = sys.argv[1], sys.argv[2], int(sys.argv[3])
lake = Lake.open(path)
doc = nb.new_doc()
writer = Persister(lake, room, "main", doc, writer=str(doc.peer_id),
                   start_seq=recover(lake, room, "main", doc),
                   policy=FlushPolicy(max_delay_s=1e9))
nb.ensure_schema(doc)
cell = nb.add_cell(doc, "", cell_id="c1")
doc.commit()
print("ready", flush=True)
for i in range(flushes):
    nb.update_cell(doc, cell, source=nb.read_cells(doc)[0].source + f"{i};")
    doc.commit()
    writer.flush()
writer.close()
lake.release()
print("done", writer.last_seq, flush=True)
"""


def run_writer(lake_dir: Path, room: str, flushes: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    src = str(Path(sqlrooms_nb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(lake_dir), room, str(flushes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def expected_source(flushes: int) -> str:
    return "".join(f"{i};" for i in range(flushes))


@pytest.mark.timeout(120)
def test_two_processes_write_different_rooms_to_one_lake(tmp_path: Path) -> None:
    lake_dir = tmp_path / "shared"
    flushes = 30
    writers = [run_writer(lake_dir, f"room-{i}", flushes) for i in range(2)]
    outputs = [w.communicate(timeout=100) for w in writers]
    for w, (out, err) in zip(writers, outputs, strict=True):
        assert w.returncode == 0, err
        assert out.splitlines()[-1] == f"done {flushes}", (out, err)
    lake = Lake.open(lake_dir)
    try:
        for i in range(2):
            doc = nb.new_doc()
            assert recover(lake, f"room-{i}", "main", doc) == flushes
            assert nb.read_cells(doc)[0].source == expected_source(flushes)
    finally:
        lake.release()


@pytest.mark.timeout(120)
def test_a_plain_duckdb_session_reads_the_lake_while_a_writer_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_dir = tmp_path / ".sqlrooms"
    Lake.open(lake_dir).release()  # create it; the writer below runs in another process
    flushes = 60
    writer = run_writer(lake_dir, "live", flushes)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"

    con = connect()  # a DuckDB with ducklake + sqlite, as `duckdb` CLI users have them
    counts: list[int] = []
    try:
        # The SQL documented for readers, run from the folder that holds .sqlrooms.
        monkeypatch.chdir(tmp_path)
        con.execute("ATTACH 'ducklake:sqlite:.sqlrooms/catalog.sqlite' AS lake (READ_ONLY)")
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            row = con.execute(
                "SELECT count(*) FROM lake.sqlrooms_nb.updates WHERE room = 'live'"
            ).fetchone()
            counts.append(int(row[0]) if row else 0)
            time.sleep(0.01)
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        final = con.execute(
            "SELECT count(*), max(seq) FROM lake.sqlrooms_nb.updates WHERE room = 'live'"
        ).fetchone()
    finally:
        con.close()
    assert final == (flushes, flushes)
    assert counts == sorted(counts)  # the reader saw the log grow, never shrink
    assert len(set(counts)) > 2, f"reader should see intermediate states, saw {sorted(set(counts))}"
