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
