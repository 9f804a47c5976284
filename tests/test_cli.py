"""The ``sqlrooms-nb`` command line (sqlrooms_nb.cli): rooms, history, export, doctor, maintain.

Commands run in-process through ``main([...])``; each also runs once through the installed
``sqlrooms-nb`` executable. The lake is made by real rooms (``SqlRoom``) in a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pytest

import sqlrooms_nb as snb
from sqlrooms_nb.cli import main
from sqlrooms_nb.store import Lake

from .store.servers import S3_KEY_ID, S3_SECRET, S3Server
from .test_export import run_marimo

EXECUTABLE = Path(sys.executable).parent / "sqlrooms-nb"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lake with two rooms: ``alpha`` (two edit sessions, by ana then bob, and a branch) and
    ``chain`` (SQL cells that read each other and two inputs). Returns the folder and the
    texts of ``alpha``'s cell ``two`` before and after bob's edit."""
    folder = tmp_path_factory.mktemp("cli") / "lake"
    with snb.SqlRoom("alpha", lake=str(folder), author="ana") as room:
        room.add_cell("# Alpha\nTwo cells.", kind="markdown")
        room.add_cell("select 1 as x", name="one")
        two = room.add_cell("select x + 1 as y from one", name="two")
    with snb.SqlRoom("alpha", lake=str(folder), author="bob") as room:
        room.update_cell(two, source="select x + 10 as y from one")
        room.branch("what-if")
    with snb.SqlRoom("chain", lake=str(folder), author="cy") as room:
        room.add_cell("select y + $p as z from two", name="three")  # before what it reads
        room.add_cell("select 1 as x", name="one")
        room.add_cell("select x + 1 as y from one", name="two")
        p = room.add_cell(kind="input", name="p")
        room.set_input(p, type="number", value=5)
        who = room.add_cell(kind="input", name="who")
        room.set_input(who, value="O'Hare")
        room.add_cell("select $who as who, z from three", name="four")
    return {
        "dir": str(folder),
        "old": "select x + 1 as y from one",
        "new": "select x + 10 as y from one",
    }


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)``: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_executable(
    *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed ``sqlrooms-nb`` in a new process."""
    assert EXECUTABLE.exists(), "the sqlrooms-nb entry point is missing: pip install -e ."
    return subprocess.run(
        [str(EXECUTABLE), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# --- rooms ------------------------------------------------------------------------------------


def test_rooms_lists_each_rooms_branches_changes_size_and_last_edit(lake, capsys):
    code, out, _ = run(capsys, "rooms", "--lake", lake["dir"], "--json")
    assert code == 0
    rooms = {r["room"]: r for r in json.loads(out)}
    assert sorted(rooms) == ["alpha", "chain"]
    assert rooms["alpha"]["branches"] == ["main", "what-if"]
    assert rooms["chain"]["branches"] == ["main"]
    now = datetime.now(timezone.utc)
    for room in rooms.values():
        assert room["changes"] >= 1
        assert room["stored_bytes"] > 100
        last = datetime.fromisoformat(room["last_edit"])
        assert now - timedelta(minutes=10) < last <= now + timedelta(seconds=5)
    # The table: one aligned row per room with the same numbers.
    code, out, _ = run(capsys, "--lake", lake["dir"], "rooms")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ROOM", "BRANCHES", "CHANGES", "STORED", "LAST", "EDIT"]
    assert [row.split()[0] for row in rows] == ["alpha", "chain"]
    alpha = rows[0].split()
    assert alpha[1:3] == ["2", str(rooms["alpha"]["changes"])]
    assert alpha[4] in ("B", "KiB", "MiB")
    assert alpha[5] == rooms["alpha"]["last_edit"][:10] and alpha[-1] == "UTC"
    assert {row.index("UTC") for row in rows} == {header.index("LAST EDIT") + 20}  # aligned


def test_the_lake_comes_from_the_environment_by_default(lake, capsys, monkeypatch):
    monkeypatch.setenv("SQLROOMS_NB_LAKE", lake["dir"])
    code, out, _ = run(capsys, "rooms", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_a_lake_that_does_not_exist_is_an_error_and_is_not_created(tmp_path, capsys):
    code, out, err = run(capsys, "rooms", "--lake", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err.startswith("sqlrooms-nb: error: there is no lake at ")
    assert "Traceback" not in err
    assert not (tmp_path / "nowhere").exists()


def test_a_malformed_lake_string_is_an_error(capsys):
    code, _, err = run(capsys, "rooms", "--lake", "mysql://db/lake")
    assert code == 2 and "unknown lake scheme 'mysql:'" in err


# --- history ----------------------------------------------------------------------------------


def test_history_lists_edit_sessions_newest_first(lake, capsys):
    code, out, _ = run(capsys, "history", "alpha", "--lake", lake["dir"], "--json")
    assert code == 0
    sessions = json.loads(out)
    assert [s["author"] for s in sessions] == ["bob", "ana"]
    assert sessions[0]["cell_names"] == ["two"]
    assert "bob edited 1 cell" in sessions[0]["summary"]
    assert set(sessions[1]["cell_names"]) >= {"one", "two"}
    code, out, _ = run(capsys, "history", "alpha", "--lake", lake["dir"], "--limit", "1")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["VERSION", "TIME", "AUTHOR", "CELLS", "SUMMARY"]
    assert len(rows) == 1 and rows[0].startswith(sessions[0]["id"] + " ")
    assert "bob" in rows[0] and "two" in rows[0]


def test_history_of_a_branch(lake, capsys):
    code, out, _ = run(capsys, "history", "alpha", "--branch", "what-if", "--lake", lake["dir"])
    assert code == 0 and "bob" in out


def test_an_unknown_room_or_branch_is_an_error_naming_what_exists(lake, capsys):
    code, out, err = run(capsys, "history", "nope", "--lake", lake["dir"])
    assert code == 2 and out == ""
    assert err.strip() == (
        f"sqlrooms-nb: error: the lake {lake['dir']} has no room 'nope' (rooms: alpha, chain)"
    )
    code, _, err = run(capsys, "export", "alpha", "--branch", "x", "--format", "sql",
                       "--lake", lake["dir"])  # fmt: skip
    assert code == 2
    assert "room 'alpha' has no branch 'x' (it has: main, what-if)" in err
    code, _, err = run(capsys, "history", "bad room", "--lake", lake["dir"])
    assert code == 2 and "room id 'bad room' is not valid" in err


# --- export -----------------------------------------------------------------------------------


def test_export_json_to_stdout_and_at_an_old_version(lake, capsys):
    code, out, _ = run(capsys, "export", "alpha", "--format", "json", "--lake", lake["dir"])
    assert code == 0
    now = json.loads(out)
    assert now["room"] == "alpha" and now["branch"] == "main"
    assert {c["name"]: c["source"] for c in now["cells"]}["two"] == lake["new"]
    _, out, _ = run(capsys, "history", "alpha", "--lake", lake["dir"], "--json")
    newest, oldest = json.loads(out)
    assert now["version"] == newest["id"]
    code, out, _ = run(capsys, "export", "alpha", "--format", "json", "--at", oldest["id"],
                       "--lake", lake["dir"])  # fmt: skip
    assert code == 0
    old = json.loads(out)
    assert old["version"] == oldest["id"]
    assert {c["name"]: c["source"] for c in old["cells"]}["two"] == lake["old"]


def test_export_at_an_unknown_version_is_an_error(lake, capsys):
    code, out, err = run(capsys, "export", "alpha", "--format", "sql", "--at", "AAAA",
                         "--lake", lake["dir"])  # fmt: skip
    assert code == 2 and out == ""
    assert "sqlrooms-nb: error: " in err and "sqlrooms-nb history alpha" in err


def test_export_writes_the_sql_script_to_a_file_and_it_runs(lake, capsys, tmp_path):
    target = tmp_path / "chain.sql"
    code, out, err = run(capsys, "export", "chain", "-o", str(target), "--lake", lake["dir"])
    assert code == 0 and out == ""  # the format from the suffix
    assert f"wrote {target}" in err
    con = duckdb.connect()
    con.execute(target.read_text())
    assert con.sql("select * from four").fetchall() == [("O'Hare", 7.0)]


def test_export_ipynb_runs_its_code_cells_in_order(lake, capsys, tmp_path):
    target = tmp_path / "chain.ipynb"
    code, _, _ = run(capsys, "export", "chain", "--format", "ipynb", "-o", str(target),
                     "--lake", lake["dir"])  # fmt: skip
    assert code == 0
    notebook = nbformat.read(target, as_version=4)
    nbformat.validate(notebook)
    namespace: dict[str, Any] = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, f"<cell {cell.id}>", "exec"), namespace)
    assert namespace["two"].fetchall() == [(2,)]
    assert namespace["four"].fetchall() == [("O'Hare", 7.0)]


def test_export_marimo_round_trip_runs_the_app(lake, capsys, tmp_path):
    """The exported app, run by marimo in a new Python: SQL cells that read each other (one
    above the cell it reads), a number and a text input read as $p / $who."""
    target = tmp_path / "chain_app.py"
    code, _, _ = run(capsys, "export", "chain", "--format", "marimo", "-o", str(target),
                     "--lake", lake["dir"])  # fmt: skip
    assert code == 0
    source = target.read_text()
    assert "two = mo.sql(" in source and "p = mo.ui.number(value=5.0" in source
    results = run_marimo(source, tmp_path, ["one", "two", "three", "four", "p", "who"])
    assert results["one"] == [{"x": 1}]
    assert results["two"] == [{"y": 2}]
    assert results["three"] == [{"z": 7.0}]
    assert results["four"] == [{"who": "O'Hare", "z": 7.0}]
    assert (results["p"], results["who"]) == (5.0, "O'Hare")


def test_export_needs_a_format(lake, capsys):
    code, _, err = run(capsys, "export", "alpha", "--lake", lake["dir"])
    assert code == 2 and "--format sql|marimo|ipynb|json" in err
    code, _, err = run(capsys, "export", "alpha", "--format", "pdf", "--lake", lake["dir"])
    assert code == 2 and "invalid choice: 'pdf'" in err


# --- doctor -----------------------------------------------------------------------------------


def test_doctor_checks_duckdb_the_catalog_the_data_path_and_the_lease(lake, capsys):
    code, out, _ = run(capsys, "doctor", "--lake", lake["dir"])
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split(":")[0].split(None, 1) for line in lines] == [
        ["ok", "duckdb"],
        ["ok", "catalog"],
        ["ok", f"data path {lake['dir']}/data/"],
        ["ok", "serverless lease"],
    ]
    assert f"DuckDB {duckdb.__version__}" in lines[0] and "ducklake" in lines[0]
    assert "table layout version" in lines[1]
    assert "not applicable" in lines[3]
    assert not [p for p in Path(lake["dir"], "data").iterdir() if "doctor" in p.name]


def test_doctor_fails_and_says_how_to_fix_it(tmp_path, capsys):
    code, out, _ = run(capsys, "doctor", "--lake", str(tmp_path / "missing"))
    assert code == 1
    assert "FAIL  catalog: there is no lake at" in out and "give the lake with --lake" in out
    assert "fix: a SqlRoom creates a new lake on first use" in out
    assert "skip  data path" in out
    assert not (tmp_path / "missing").exists()


def test_doctor_finds_a_data_path_it_cannot_write(lake, capsys, monkeypatch):
    # (file permissions do not stop root, who runs CI: the write fails as it would for others)
    def refuse(path: Path, data: bytes) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    code, out, _ = run(capsys, "doctor", "--lake", lake["dir"])
    assert code == 1
    assert f"FAIL  data path {lake['dir']}/data/: [Errno 13] Permission denied" in out
    assert "fix: let this user read and write that folder" in out


def test_doctor_and_reads_on_a_serverless_lake_leave_the_lease_to_its_writer(tmp_path, capsys):
    """A serverless lake (moto's S3 server, no mocks) written by an open room: doctor probes
    the bucket and reports the room's lease; reads open as viewers, so the room keeps it."""
    server = S3Server.start()
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    env = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    params = (
        f"s3_endpoint={server.endpoint}&s3_url_style=path&s3_use_ssl=false&s3_region=us-east-1"
        f"&upload_every=1&cache={tmp_path / 'cache'}"
    )
    lake = f"s3://{server.bucket}/{prefix}?{params}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                patch.delenv(name, raising=False)
            with snb.SqlRoom("sv", lake=lake, author="ana") as room:
                room.add_cell("select 1 as x", name="one")
                room.flush()  # (and uploads the catalog copy: upload_every=1)
                code, out, _ = run(capsys, "doctor", "--lake", lake)
                assert code == 0, out
                assert f"ok    data path s3://{server.bucket}/{prefix}/data/: writable" in out
                assert "ok    serverless lease: held by " in out and ", until " in out
                assert not [k for k in server.keys(prefix + "/") if "doctor" in k]
                code, out, _ = run(capsys, "export", "sv", "--format", "json", "--lake", lake)
                assert code == 0
                assert [c["source"] for c in json.loads(out)["cells"]] == ["select 1 as x"]
                room.add_cell("select 2 as y", name="two")  # the room still writes
                room.flush()
            code, out, _ = run(capsys, "doctor", "--lake", lake)
            assert code == 0 and "ok    serverless lease: free" in out
    finally:
        server.stop()


# --- maintain ---------------------------------------------------------------------------------


def lake_state(folder: str) -> tuple[Any, ...]:
    """What maintenance would change: the lake's snapshots and its data files."""
    opened = Lake.open(folder)
    try:
        cur = opened.cursor()
        try:
            snapshots = cur.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')")
            latest = snapshots.fetchone()
        finally:
            cur.close()
    finally:
        opened.release()
    files = sorted(str(p.relative_to(folder)) for p in Path(folder, "data").rglob("*"))
    return latest, files


def test_maintain_dry_run_lists_the_steps_and_changes_nothing(lake, capsys):
    before = lake_state(lake["dir"])
    code, out, _ = run(capsys, "maintain", "--dry-run", "--lake", lake["dir"])
    assert code == 0
    lines = out.splitlines()
    assert lines and all(line.startswith("would do  ") for line in lines)
    assert any("flush inlined data" in line for line in lines)
    assert any("merge adjacent files" in line for line in lines)
    assert lake_state(lake["dir"]) == before


def test_maintain_runs_the_steps(tmp_path, capsys):
    folder = str(tmp_path / "lake")
    with snb.SqlRoom("m", lake=folder) as room:
        room.add_cell("select 1 as x", name="one")
    code, out, _ = run(capsys, "maintain", "--lake", folder)
    assert code == 0
    assert any(line.startswith("done      flush inlined data") for line in out.splitlines())
    code, out, _ = run(capsys, "export", "m", "--format", "json", "--lake", folder)
    assert code == 0 and json.loads(out)["cells"][0]["source"] == "select 1 as x"


# --- the installed executable -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["rooms"], "alpha"),
        (["history", "alpha"], "bob edited 1 cell"),
        (["export", "alpha", "--format", "sql"], 'CREATE OR REPLACE VIEW "two" AS'),
        (["doctor"], "ok    catalog"),
        (["maintain", "--dry-run"], "would do  flush inlined data"),
    ],
)
def test_the_installed_executable_runs_each_command(lake, argv, expect):
    done = run_executable(*argv, env={"SQLROOMS_NB_LAKE": lake["dir"]})
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout


def test_the_installed_executable_reports_errors_without_a_traceback(lake):
    done = run_executable("history", "nope", "--lake", lake["dir"])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("sqlrooms-nb: error: the lake ")
    assert "Traceback" not in done.stderr
    usage = run_executable("export")
    assert usage.returncode == 2 and "the following arguments are required: room" in usage.stderr
