from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sqlrooms_nb.errors import StorageError
from sqlrooms_nb.store import extensions


@pytest.mark.timeout(60)
def test_connect_loads_ducklake_and_sqlite_from_the_wheels(tmp_path: Path) -> None:
    con = extensions.connect(extension_dir=tmp_path / "ext")
    try:
        loaded = dict(
            con.execute(
                "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded"
            ).fetchall()
        )
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoinstall_known_extensions', 'autoload_known_extensions')"
            ).fetchall()
        )
    finally:
        con.close()
    assert loaded["ducklake"].startswith(str(tmp_path / "ext"))
    assert loaded["sqlite_scanner"].startswith(str(tmp_path / "ext"))
    assert settings == {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    }


@pytest.mark.timeout(60)
def test_connect_twice_reuses_the_installed_extensions(tmp_path: Path) -> None:
    extensions.connect(extension_dir=tmp_path).close()
    installed = sorted(tmp_path.rglob("*.duckdb_extension"))
    before = [p.stat().st_mtime_ns for p in installed]
    extensions.connect(extension_dir=tmp_path).close()
    assert [p.stat().st_mtime_ns for p in installed] == before


def test_a_duckdb_version_without_extension_files_is_a_clear_storage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(duckdb, "__version__", "0.0.1")
    with pytest.raises(StorageError, match=r"no ducklake extension for DuckDB 0\.0\.1.*v1\.5\.5"):
        extensions.connect(extension_dir=tmp_path)


def test_a_missing_extension_wheel_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="pip install 'not-a-wheel=="):
        extensions.extension_file("x", "sqlrooms_nb_no_such_module", "not-a-wheel")


@pytest.mark.timeout(60)
def test_connect_loads_only_the_extensions_asked_for(tmp_path: Path) -> None:
    con = extensions.connect(
        extension_dir=tmp_path, extensions=("ducklake", "postgres_scanner", "httpfs")
    )
    try:
        loaded = {
            row[0]
            for row in con.execute(
                "SELECT extension_name FROM duckdb_extensions() WHERE loaded"
            ).fetchall()
        }
    finally:
        con.close()
    assert {"ducklake", "postgres_scanner", "httpfs"} <= loaded
    assert "sqlite_scanner" not in loaded


def test_an_unknown_extension_name_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="no DuckDB extension named 'nope'"):
        extensions.wheel_file("nope")


_ONE_COPY = """
import collections, pathlib, sys
import duckdb
import sqlrooms_nb as snb

con = duckdb.connect()
with snb.SqlRoom("one-copy", lake=sys.argv[1], author="a", connection=con) as room:
    room.add_cell("select 1", name="one")
    room.branch("b", author="a")
    room.checkout_branch("b")  # history views: the notebook's connection attaches the lake
    room.add_cell("select 2", name="two")
    room.flush()
    assert con.execute("SELECT count(*) FROM sqlrooms_history.changes").fetchone()[0] > 0
    mapped = {
        line.split()[-1]
        for line in open("/proc/self/maps")
        if line.rstrip().endswith(".duckdb_extension")
    }
    copies = collections.Counter(pathlib.Path(path).name for path in mapped)
    print(dict(copies))
    assert all(n == 1 for n in copies.values()), mapped
"""


@pytest.mark.timeout(120)
def test_one_copy_of_each_extension_in_a_process_with_history_views(tmp_path: Path) -> None:
    """Two copies of sqlite_scanner (the wheel's file and the installed one) in one process
    crashed it with SIGBUS: each SQLite truncated the catalog's -shm the other had mapped."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _ONE_COPY, str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'sqlite_scanner.duckdb_extension': 1" in done.stdout


@pytest.mark.timeout(60)
def test_load_into_refuses_a_connection_with_another_copy(tmp_path: Path) -> None:
    con = extensions.connect(extension_dir=tmp_path / "elsewhere")
    try:
        with pytest.raises(StorageError, match="will not load a second one"):
            extensions.load_into(con, ["sqlite_scanner"])
    finally:
        con.close()
