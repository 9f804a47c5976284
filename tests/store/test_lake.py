from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest
from loro import ExportMode, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import StorageError
from sqlrooms_nb.store import Lake, Persister, StoredRoom, connect, recover, retrying
from sqlrooms_nb.store.lake import LAKE_ENV, is_transient
from tests.store.store_helpers import new_notebook_into, type_into


@pytest.mark.timeout(60)
def test_open_creates_catalog_data_path_and_tables(fresh_lake_dir: Path) -> None:
    lake = Lake.open(fresh_lake_dir)
    try:
        assert (fresh_lake_dir / "catalog.sqlite").is_file()
        assert (fresh_lake_dir / "data").is_dir()
        cur = lake.cursor()
        tables = {
            row[0]
            for row in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' "
                "AND schema_name = 'sqlrooms_nb'"
            ).fetchall()
        }
        meta = cur.execute(f"SELECT key, value FROM {lake.table('lake_meta')}").fetchall()
        inline = {
            row[0]: row[1]
            for row in cur.execute(
                "SELECT scope_entry, value FROM lake.options() WHERE option_name = "
                "'data_inlining_row_limit'"
            ).fetchall()
        }
        cur.close()
    finally:
        lake.release()
    assert tables == {"updates", "changes", "snapshots", "tags", "branches", "runs", "lake_meta"}
    assert ("schema_version", "5") in meta
    assert inline["sqlrooms_nb.snapshots"] == "0"
    assert int(inline["sqlrooms_nb.updates"]) >= 100
    journal = sqlite3.connect(fresh_lake_dir / "catalog.sqlite").execute("PRAGMA journal_mode")
    assert journal.fetchone()[0] == "wal"


@pytest.mark.timeout(60)
def test_one_lake_per_folder_per_process_with_a_refcount(fresh_lake_dir: Path) -> None:
    first = Lake.open(fresh_lake_dir)
    second = Lake.open(str(fresh_lake_dir / "." / ""))
    assert second is first
    first.release()
    assert not first.closed
    second.release()
    assert first.closed
    with pytest.raises(StorageError, match="closed"):
        first.cursor()
    first.release()  # extra releases do nothing
    third = Lake.open(fresh_lake_dir)
    try:
        assert third is not first
    finally:
        third.release()


@pytest.mark.timeout(60)
def test_default_location_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(LAKE_ENV, str(tmp_path / "from-env"))
    lake = Lake.open()
    try:
        assert lake.location == (tmp_path / "from-env").resolve()
    finally:
        lake.release()
    monkeypatch.delenv(LAKE_ENV)
    monkeypatch.chdir(tmp_path)
    lake = Lake.open()
    try:
        assert lake.location == (tmp_path / ".sqlrooms").resolve()
    finally:
        lake.release()


@pytest.mark.timeout(60)
def test_a_newer_lake_layout_is_refused_and_left_untouched(fresh_lake_dir: Path) -> None:
    lake = Lake.open(fresh_lake_dir)
    cur = lake.cursor()
    cur.execute(f"UPDATE {lake.table('lake_meta')} SET value = '99' WHERE key = 'schema_version'")
    cur.close()
    lake.release()
    with pytest.raises(StorageError, match="layout version 99"):
        Lake.open(fresh_lake_dir)
    con = connect()
    try:
        con.execute(f"ATTACH 'ducklake:sqlite:{fresh_lake_dir}/catalog.sqlite' AS l (READ_ONLY)")
        kept = con.execute(
            "SELECT value FROM l.sqlrooms_nb.lake_meta WHERE key = 'schema_version'"
        ).fetchall()
    finally:
        con.close()
    assert kept == [("99",)]


@pytest.mark.timeout(60)
def test_a_version_1_lake_gains_the_branches_table_and_keeps_its_rows(
    fresh_lake_dir: Path,
) -> None:
    lake = Lake.open(fresh_lake_dir)
    cur = lake.cursor()
    cur.execute(f"DROP TABLE {lake.table('branches')}")
    cur.execute(f"DROP TABLE {lake.table('runs')}")
    cur.execute(f"UPDATE {lake.table('lake_meta')} SET value = '1' WHERE key = 'schema_version'")
    cur.execute(
        f"INSERT INTO {lake.table('tags')} VALUES ('r', 'main', 'v1', 'AAAA', 'ana', now())"
    )
    cur.close()
    lake.release()

    lake = Lake.open(fresh_lake_dir)
    try:
        cur = lake.cursor()
        version = cur.execute(
            f"SELECT value FROM {lake.table('lake_meta')} WHERE key = 'schema_version'"
        ).fetchall()
        branches = cur.execute(f"SELECT count(*) FROM {lake.table('branches')}").fetchone()
        tags = cur.execute(f"SELECT name FROM {lake.table('tags')}").fetchall()
        cur.close()
    finally:
        lake.release()
    assert version == [("5",)]
    assert branches == (0,)
    assert tags == [("v1",)]


@pytest.mark.timeout(60)
def test_a_version_2_lake_gains_the_runs_table(fresh_lake_dir: Path) -> None:
    lake = Lake.open(fresh_lake_dir)
    cur = lake.cursor()
    cur.execute(f"DROP TABLE {lake.table('runs')}")
    cur.execute(f"UPDATE {lake.table('lake_meta')} SET value = '2' WHERE key = 'schema_version'")
    cur.close()
    lake.release()

    lake = Lake.open(fresh_lake_dir)
    try:
        cur = lake.cursor()
        version = cur.execute(
            f"SELECT value FROM {lake.table('lake_meta')} WHERE key = 'schema_version'"
        ).fetchall()
        runs = cur.execute(f"SELECT count(*) FROM {lake.table('runs')}").fetchone()
        cur.close()
    finally:
        lake.release()
    assert version == [("5",)]
    assert runs == (0,)


@pytest.mark.timeout(60)
def test_a_version_3_lake_gains_snapshot_lake_versions_and_its_snapshots_still_cover_by_seq(
    fresh_lake_dir: Path,
) -> None:
    """Layout 3 snapshots cover every row with seq <= theirs (one writer at a time)."""
    doc = nb.new_doc()
    nb.ensure_schema(doc)
    cell = nb.add_cell(doc, "a", cell_id="c1")
    doc.commit()
    first = doc.export(ExportMode.Updates(VersionVector()))
    snap = doc.export(ExportMode.Snapshot())
    before = doc.oplog_vv
    nb.update_cell(doc, cell, source="ab")
    doc.commit()
    second = doc.export(ExportMode.Updates(before))

    lake = Lake.open(fresh_lake_dir)
    cur = lake.cursor()
    cur.execute(f"ALTER TABLE {lake.table('snapshots')} DROP COLUMN lake_version")
    cur.execute(f"UPDATE {lake.table('lake_meta')} SET value = '3' WHERE key = 'schema_version'")
    for seq, blob in ((1, first), (2, second)):
        cur.execute(
            f"INSERT INTO {lake.table('updates')} (room, branch, writer, seq, bytes) "
            "VALUES ('old', 'main', 'w1', ?, ?)",
            [seq, blob],
        )
    cur.execute(
        f"INSERT INTO {lake.table('snapshots')} (room, branch, writer, seq, change_count, bytes) "
        "VALUES ('old', 'main', 'w1', 1, 1, ?)",
        [snap],
    )
    cur.close()
    lake.release()

    lake = Lake.open(fresh_lake_dir)
    try:
        stored = lake.load("old", "main")
        again = nb.new_doc()
        assert recover(lake, "old", "main", again) == 2
    finally:
        lake.release()
    assert stored.snapshot_seq == 1 and stored.update_seqs == [2]  # seq 1 is in the snapshot
    assert [c.source for c in nb.read_cells(again)] == ["ab"]


@pytest.mark.timeout(60)
def test_load_of_an_unknown_room_is_empty(lake: Lake, room: str) -> None:
    stored = lake.load(room, "main")
    assert stored == StoredRoom(None, 0, [], 0, [], lake_version=stored.lake_version)
    assert stored.lake_version > 0  # the lake's current DuckLake snapshot


@pytest.mark.timeout(60)
def test_load_returns_latest_snapshot_and_only_later_updates(lake: Lake, room: str) -> None:
    doc = nb.new_doc()
    writer = Persister(lake, room, "main", doc, writer="w1", start_seq=0)
    doc, cells = new_notebook_into(doc)
    writer.flush()  # seq 1
    type_into(doc, cells[0], " + 1", "ana")
    writer.flush()  # seq 2
    writer.close()  # snapshot covering seq 2
    doc2 = nb.new_doc()
    doc2.import_(doc.export(ExportMode.Snapshot()))
    writer2 = Persister(lake, room, "main", doc2, writer="w2", start_seq=2)
    writer2.flush()  # nothing beyond the recovered state: no row
    type_into(doc2, cells[1], " + 2", "bob")
    writer2.flush()  # seq 3
    stored = lake.load(room, "main")
    other = lake.load(room, "other-branch")
    writer2.close()
    assert stored.snapshot is not None
    assert stored.snapshot_seq == 2
    assert stored.update_seqs == [3]
    assert len(stored.updates) == 1
    assert stored.last_seq == 3
    assert other == StoredRoom(None, 0, [], 0, [], lake_version=other.lake_version)


@pytest.mark.timeout(60)
def test_a_moved_lake_folder_still_opens_and_reads(tmp_path: Path) -> None:
    old = tmp_path / "old"
    lake = Lake.open(old)
    doc = nb.new_doc()
    writer = Persister(lake, "moved", "main", doc, writer="w", start_seq=0)
    doc, cells = new_notebook_into(doc)
    for i in range(20):
        type_into(doc, cells[i % 2], "y" * 50, "ana")
    writer.close()  # the snapshot is a parquet file under data/
    lake.release()
    shutil.move(old, tmp_path / "new")
    lake = Lake.open(tmp_path / "new")
    try:
        stored = lake.load("moved", "main")
        restored = nb.new_doc()
        restored.import_(stored.snapshot or b"")
    finally:
        lake.release()
    assert stored.last_seq == 1
    assert restored.get_deep_value() == doc.get_deep_value()


def test_retrying_retries_transient_errors_with_growing_delays() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise duckdb.TransactionException("Failed to commit: database is locked")
        return "done"

    assert retrying(flaky, what="write", sleep=sleeps.append, first_delay_s=0.01) == "done"
    assert len(calls) == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2] * 2  # exponential with jitter
    assert sleeps[2] >= 0.02


def test_retrying_gives_up_after_its_attempts_with_a_storage_error() -> None:
    def locked() -> None:
        raise duckdb.IOException("database is locked")

    with pytest.raises(StorageError, match="could not write x after 3 attempts"):
        retrying(locked, what="write x", attempts=3, sleep=lambda s: None)


def test_retrying_does_not_retry_other_errors() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise duckdb.CatalogException("Table with name nope does not exist")

    with pytest.raises(StorageError, match="does not exist"):
        retrying(broken, what="read", sleep=lambda s: None)
    assert len(calls) == 1


def test_transient_errors_are_locks_and_conflicts() -> None:
    assert is_transient(duckdb.Error("Failed to flush changes into DuckLake: database is locked"))
    assert is_transient(duckdb.TransactionException("Transaction conflict: cannot commit"))
    assert not is_transient(duckdb.Error("disk I/O error: read-only file system"))
