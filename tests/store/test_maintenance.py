"""Maintenance of a lake (store/maintenance.py), on lakes of the tests' own: many small flushes,
then flush inlined rows, merge files, expire lake snapshots, clean files, compact old updates.
Every test checks that no notebook version is lost."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loro import LoroDoc

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import StorageError, ValidationError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover, saved_versions
from sqlrooms_nb.store import maintenance as mt
from sqlrooms_nb.store.maintenance import (
    MaintenanceJob,
    MaintenancePolicy,
    MaintenanceStep,
    compact,
    maintain,
)
from tests.store.store_helpers import new_notebook_into, type_into

from .servers import HOST, S3_KEY_ID, S3_SECRET, Postgres, S3Server

pytestmark = pytest.mark.timeout(120)

TABLES = ("updates", "changes", "snapshots", "tags", "branches", "runs", "lake_meta")
F, T = False, True
NOTHING_EXPIRES = MaintenancePolicy(
    expire_snapshots_older_than_s=None,
    cleanup_files_older_than_s=None,
    delete_orphaned_files_older_than_s=None,
)
EVERYTHING_EXPIRES = MaintenancePolicy(
    expire_snapshots_older_than_s=0,
    cleanup_files_older_than_s=0,
    delete_orphaned_files_older_than_s=0,
)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def own_lake(tmp_path: Path) -> Iterator[Lake]:
    """A lake of the test's own (maintenance acts on the whole lake)."""
    lake = Lake.open(tmp_path / "lake")
    yield lake
    lake.release()


def q(lake: Lake, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    cur = lake.cursor()
    try:
        return cur.execute(sql, params or []).fetchall()
    finally:
        cur.close()


def data_files(lake: Lake) -> int:
    """Data files of the project's tables in the current lake snapshot (ducklake_list_files)."""
    return sum(
        q(
            lake,
            "SELECT count(*) FROM ducklake_list_files('lake', ?, schema => 'sqlrooms_nb')",
            [t],
        )[0][0]
        for t in TABLES
    )


def snapshot_ids(lake: Lake) -> list[int]:
    return [
        int(r[0]) for r in q(lake, "SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1")
    ]


def inlined_rows(lake: Lake) -> int:
    """Live rows in DuckLake's inlined-data catalog tables."""
    names = q(lake, "SELECT table_name FROM __ducklake_metadata_lake.ducklake_inlined_data_tables")
    return sum(
        q(
            lake,
            f'SELECT count(*) FROM __ducklake_metadata_lake."{name}" WHERE end_snapshot IS NULL',
        )[0][0]
        for (name,) in names
    )


def count(lake: Lake, table: str, room: str) -> int:
    return int(q(lake, f"SELECT count(*) FROM {lake.table(table)} WHERE room = ?", [room])[0][0])


def parquet_on_disk(folder: Path) -> int:
    return len(list((folder / "data").rglob("*.parquet")))


def recovered(lake: Lake, room: str, branch: str = "main") -> LoroDoc:
    doc = nb.new_doc()
    recover(lake, room, branch, doc, warm=False)
    return doc


def sources(doc: LoroDoc) -> list[str]:
    return [cell.source for cell in nb.read_cells(doc)]


def write_small_flushes(
    lake: Lake, room: str, flushes: int, *, snapshot_every: int = 10_000
) -> tuple[LoroDoc, Persister]:
    """A document written as ``flushes`` one-change flushes (each an inlined ``updates`` row);
    a snapshot (a parquet file) every ``snapshot_every`` changes (whatever their size: the
    policy's size rule is switched off). Returns the open persister."""
    doc = nb.new_doc()
    persister = Persister(
        lake,
        room,
        "main",
        doc,
        writer=str(doc.peer_id),
        start_seq=0,
        policy=FlushPolicy(snapshot_every_changes=snapshot_every, snapshot_growth=1e-9),
    )
    new_notebook_into(doc)
    persister.notify()
    persister.flush()
    cell = nb.read_cells(doc)[0].id
    for i in range(flushes - 1):
        type_into(doc, cell, f" {i}", "ana")
        persister.notify()
        persister.flush()
    return doc, persister


def step(steps: list[MaintenanceStep], name: str) -> MaintenanceStep:
    found = [s for s in steps if s.name == name or s.name.startswith(name)]
    assert found, [s.name for s in steps]
    return found[0]


# --- policy and job ------------------------------------------------------------------------------


def test_policy_defaults_are_documented_values() -> None:
    policy = MaintenancePolicy()
    assert (policy.every_flushes, policy.every_s) == (500, 600.0)
    assert policy.flush_inlined_data and policy.merge_adjacent_files
    assert policy.expire_snapshots_older_than_s == 7 * 86_400
    assert policy.cleanup_files_older_than_s == 3600
    assert policy.delete_orphaned_files_older_than_s == 86_400
    assert policy.compact_updates_older_than_s is None  # compaction is opt-in


def test_policy_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="every_flushes"):
        MaintenancePolicy(every_flushes=0)
    with pytest.raises(ValidationError, match="expire_snapshots_older_than_s"):
        MaintenancePolicy(expire_snapshots_older_than_s=-1)
    with pytest.raises(ValueError, match="rewrite_delete_threshold"):
        MaintenancePolicy(rewrite_delete_threshold=2)


def test_the_job_is_due_every_n_flushes_or_every_s_seconds(own_lake: Lake) -> None:
    job = MaintenanceJob(MaintenancePolicy(every_flushes=3, every_s=100), lake=own_lake)
    start = time.monotonic()
    assert [job.due(n, start) for n in range(1, 8)] == [F, F, T, F, F, T, F]
    assert not job.due(7, start + 99)
    assert job.due(7, start + 101)  # by time, without new flushes
    assert not job.due(8, start + 102)  # the interval restarted


def test_the_job_does_nothing_on_release(own_lake: Lake) -> None:
    job = MaintenanceJob(lake=own_lake)
    cur = own_lake.cursor()
    try:
        started = time.perf_counter()
        job.run(cur, final=True)
        assert time.perf_counter() - started < 0.01
    finally:
        cur.close()
    assert job.runs == 0


def test_every_lake_gets_a_maintenance_job(own_lake: Lake) -> None:
    jobs = [j for j in own_lake._jobs if isinstance(j, MaintenanceJob)]
    assert len(jobs) == 1 and jobs[0].policy == MaintenancePolicy()


# --- the steps -----------------------------------------------------------------------------------


def test_maintain_flushes_inlined_rows_and_merges_files(own_lake: Lake, tmp_path: Path) -> None:
    room = "many-flushes"
    doc, persister = write_small_flushes(own_lake, room, 40, snapshot_every=4)
    persister.close()
    timeline = saved_versions(own_lake, room, "main")
    updates, changes = count(own_lake, "updates", room), count(own_lake, "changes", room)
    files_before, inlined_before = data_files(own_lake), inlined_rows(own_lake)
    assert updates == 40 and inlined_before >= 80  # updates + changes rows, all inlined
    assert files_before >= 10  # one parquet file per snapshot

    messages: list[str] = []
    started = time.perf_counter()
    steps = maintain(own_lake, policy=NOTHING_EXPIRES, progress=messages.append)
    elapsed = time.perf_counter() - started

    assert [s.name for s in steps] == ["flush inlined data", "merge adjacent files"]
    assert all(s.done for s in steps)
    assert inlined_rows(own_lake) == 0
    assert f"updates {updates}" in step(steps, "flush inlined data").detail
    files_after = data_files(own_lake)
    assert files_after < files_before
    assert files_after <= len(TABLES)  # one file per table with rows
    print(f"files {files_before} -> {files_after}, maintenance {elapsed:.3f} s")
    # Every row is still there, with its lake timeline, and the room recovers the same.
    assert (count(own_lake, "updates", room), count(own_lake, "changes", room)) == (
        updates,
        changes,
    )
    assert saved_versions(own_lake, room, "main") == timeline
    assert sources(recovered(own_lake, room)) == sources(doc)
    assert len(messages) == 2 * len(steps)
    # Time travel to a lake snapshot before the maintenance still reads its rows.
    first = timeline[-1].snapshot_id
    at_first = nb.new_doc()
    recover(own_lake, room, "main", at_first, warm=False, at_snapshot=first)
    assert len(nb.read_cells(at_first)) == 2


def test_a_dry_run_changes_nothing_and_reports_counts(own_lake: Lake, tmp_path: Path) -> None:
    room = "dry-run"
    _, persister = write_small_flushes(own_lake, room, 12, snapshot_every=3)
    persister.close()
    before = (
        data_files(own_lake),
        snapshot_ids(own_lake),
        inlined_rows(own_lake),
        parquet_on_disk(tmp_path / "lake"),
        count(own_lake, "updates", room),
    )
    policy = MaintenancePolicy(
        expire_snapshots_older_than_s=0,
        cleanup_files_older_than_s=0,
        delete_orphaned_files_older_than_s=0,
        compact_updates_older_than_s=0,
        compact_min_rows=1,
    )
    steps = maintain(own_lake, policy=policy, dry_run=True)

    assert [s.name for s in steps] == [
        "flush inlined data",
        "merge adjacent files",
        "expire snapshots",
        "clean up files",
        f"compact updates {room}/main",
    ]
    assert not any(s.done for s in steps)
    after = (
        data_files(own_lake),
        snapshot_ids(own_lake),
        inlined_rows(own_lake),
        parquet_on_disk(tmp_path / "lake"),
        count(own_lake, "updates", room),
    )
    assert after == before
    assert f"would write {before[2]} inlined rows" in step(steps, "flush inlined data").detail
    assert "would merge up to" in step(steps, "merge adjacent files").detail
    expire = step(steps, "expire snapshots").detail
    assert f"would expire {len(before[1]) - 1} of {len(before[1])} lake snapshots" in expire
    assert "would delete 0 files" in step(steps, "clean up files").detail
    assert "and delete its 12 update rows" in step(steps, "compact updates").detail


def test_expiring_every_lake_snapshot_keeps_every_notebook_version(
    own_lake: Lake, tmp_path: Path
) -> None:
    folder = tmp_path / "lake"
    room = "expire-all"
    for author, text in [("ana", "select 1"), ("bob", "select 2"), ("ana", "select 3")]:
        with snb.SqlRoom(room, lake=folder, author=author) as r:
            cell = r.add_cell(text)
            r.update_cell(cell, source=text + " as x")
            r.flush()
    with snb.SqlRoom(room, lake=folder) as r:
        cells = [(c.id, c.source) for c in r.cells]
        versions = r.history()
        at = {v.id: [(c.id, c.source) for c in r.at(v)] for v in versions}
        saved = r.saved_versions()
    assert len(versions) >= 3 and len(saved) >= 3

    steps = maintain(own_lake, policy=EVERYTHING_EXPIRES)

    assert len(snapshot_ids(own_lake)) == 1  # DuckLake never expires the latest one
    assert "expired" in step(steps, "expire snapshots").detail
    # Only the files the last lake snapshot references are left on disk.
    assert parquet_on_disk(folder) == data_files(own_lake)
    with snb.SqlRoom(room, lake=folder) as r:
        assert [(c.id, c.source) for c in r.cells] == cells
        assert [v.id for v in r.history()] == [v.id for v in versions]
        for v in versions:
            assert [(c.id, c.source) for c in r.at(v.id)] == at[v.id]
        # What expiry gives up: the lake's own timeline before the kept snapshot.
        with pytest.raises(StorageError):
            r.at_saved(saved[-1].snapshot_id)


def test_a_failing_step_raises_and_keeps_the_earlier_steps(
    own_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, persister = write_small_flushes(own_lake, "failing-step", 5)
    persister.close()
    assert inlined_rows(own_lake) > 0

    def broken(run: Any) -> list[MaintenanceStep]:
        raise StorageError("could not merge: disk full")

    monkeypatch.setattr(mt, "_merge_files", broken)
    with pytest.raises(StorageError, match=r"failed at step 'merge adjacent files'.*disk full"):
        maintain(own_lake, policy=NOTHING_EXPIRES)
    assert inlined_rows(own_lake) == 0  # the flush before it stays done
    assert not own_lake.write_lock.locked()


# --- the job on the writer thread ----------------------------------------------------------------


class RecordingJob(MaintenanceJob):
    """Records where and when each run happened."""

    def __init__(self, policy: MaintenancePolicy, lake: Lake) -> None:
        super().__init__(policy, lake=lake)
        self.calls: list[tuple[str, bool, float, float]] = []
        self.flushes = 0

    def due(self, flushes: int, now: float) -> bool:
        self.flushes = flushes
        return super().due(flushes, now)

    def run(self, cur: Any, final: bool) -> None:
        started = time.perf_counter()
        locked = self._lake.write_lock.locked()
        super().run(cur, final)
        self.calls.append((threading.current_thread().name, locked, started, time.perf_counter()))


def test_the_job_runs_on_the_writer_thread_between_flushes(
    own_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[tuple[float, float]] = []
    for name in ("_insert", "_insert_snapshot"):
        original = getattr(Persister, name)

        def timed(self: Persister, *args: Any, _original: Any = original) -> Any:
            started = time.perf_counter()
            try:
                return _original(self, *args)
            finally:  # only this room's: an earlier test's writer may still be retrying
                if self._room == "job-room":
                    inserts.append((started, time.perf_counter()))

        monkeypatch.setattr(Persister, name, timed)
    job = RecordingJob(MaintenancePolicy(every_flushes=3, every_s=1e9), own_lake)
    own_lake.add_job(job)
    try:
        doc, persister = write_small_flushes(own_lake, "job-room", 10)
        persister.close()
    finally:
        own_lake.remove_job(job)

    runs = list(job.calls)
    # After flushes 3, 6, 9 (and 12 if the close's final flush was the 12th).
    assert job.flushes >= 10 and job.runs == job.flushes // 3 == len(runs)
    assert job.last_error is None
    assert [s.name for s in job.last_steps][:2] == ["flush inlined data", "merge adjacent files"]
    for thread, locked, start, end in runs:
        assert thread.startswith("sqlrooms_nb-writer:job-room/")
        assert locked  # the lake's write_lock was held: no insert of this process ran meanwhile
        assert not any(s < end and start < e for s, e in inserts), "a run overlapped an insert"
    assert sources(recovered(own_lake, "job-room")) == sources(doc)


# --- compaction ----------------------------------------------------------------------------------


def test_compaction_deletes_only_old_covered_updates_and_keeps_every_version(
    own_lake: Lake, tmp_path: Path
) -> None:
    folder = tmp_path / "lake"
    room = "compacted"
    with snb.SqlRoom(room, lake=folder, author="ana") as r:
        cell = r.add_cell("select 1")
        for i in range(5):
            r.update_cell(cell, source=f"select {i}")
            r.flush()
    time.sleep(0.3)
    edge = time.time()  # the window's edge: rows above are older, rows below newer
    time.sleep(0.3)
    with snb.SqlRoom(room, lake=folder, author="bob") as r:
        for i in range(3):
            r.add_cell(f"select 'new {i}'")
            r.flush()
    with snb.SqlRoom("bystander", lake=folder, author="cy") as other:
        other.add_cell("select 'other room'")
    with snb.SqlRoom(room, lake=folder) as r:
        cells = [(c.id, c.source) for c in r.cells]
        versions = r.history()
        at = {v.id: [(c.id, c.source) for c in r.at(v)] for v in versions}
        before_lake = max(s.snapshot_id for s in r.saved_versions())
    updates = q(
        own_lake,
        f"SELECT seq, written_at < to_timestamp(?) FROM {own_lake.table('updates')} "
        "WHERE room = ? ORDER BY seq",
        [edge, room],
    )
    old = sum(1 for _, is_old in updates if is_old)
    changes, other_rows = count(own_lake, "changes", room), count(own_lake, "updates", "bystander")
    assert old >= 5 and len(updates) - old >= 3

    dry = compact(own_lake, room, "main", older_than_s=time.time() - edge, dry_run=True)
    assert not dry.done and f"would write a fresh snapshot of {room}/main" in dry.detail
    assert f"delete its {old} update rows" in dry.detail
    assert count(own_lake, "updates", room) == len(updates)

    done = compact(own_lake, room, "main", older_than_s=time.time() - edge)

    assert done.done and f"deleted {old} of its {old} update rows" in done.detail
    assert "kept: every notebook version" in done.detail and "given up" in done.detail
    left = [
        int(r[0])
        for r in q(
            own_lake,
            f"SELECT seq FROM {own_lake.table('updates')} WHERE room = ? ORDER BY 1",
            [room],
        )
    ]
    assert left == [seq for seq, is_old in updates if not is_old]  # only the old rows went
    assert count(own_lake, "changes", room) == changes  # the history panel's rows stay
    assert count(own_lake, "updates", "bystander") == other_rows
    columns = [str(c[0]) for c in q(own_lake, f"DESCRIBE {own_lake.table('snapshots')}")]
    if "lake_version" in columns:  # the new snapshot says up to where it covers every row
        newest = q(
            own_lake,
            f"SELECT lake_version FROM {own_lake.table('snapshots')} WHERE room = ? "
            "ORDER BY created_at DESC LIMIT 1",
            [room],
        )
        assert newest[0][0] >= before_lake
    with snb.SqlRoom(room, lake=folder) as r:
        assert [(c.id, c.source) for c in r.cells] == cells
        assert [v.id for v in r.history()] == [v.id for v in versions]
        for v in versions:
            assert [(c.id, c.source) for c in r.at(v.id)] == at[v.id]
        # Until the lake snapshots before the compaction expire, time travel still sees them.
        assert [(c.id, c.source) for c in r.at_saved(before_lake)] == cells
        r.add_cell("select 'after compaction'")  # and the room keeps working
    assert len(sources(recovered(own_lake, room))) == len(cells) + 1


def test_maintain_compacts_rooms_only_when_opted_in(own_lake: Lake) -> None:
    room = "opt-in"
    doc, persister = write_small_flushes(own_lake, room, 6)
    persister.close()
    steps = maintain(own_lake, policy=NOTHING_EXPIRES)
    assert not any(s.name.startswith("compact") for s in steps)
    assert count(own_lake, "updates", room) == 6

    policy = MaintenancePolicy(
        expire_snapshots_older_than_s=None,
        cleanup_files_older_than_s=None,
        delete_orphaned_files_older_than_s=None,
        compact_updates_older_than_s=0,
        compact_min_rows=5,
    )
    steps = maintain(own_lake, policy=policy)
    assert step(steps, f"compact updates {room}/main").done
    assert count(own_lake, "updates", room) == 0
    assert sources(recovered(own_lake, room)) == sources(doc)
    again = maintain(own_lake, policy=policy)
    assert "nothing to compact" in step(again, "compact updates").detail


def test_compaction_rejects_a_negative_window(own_lake: Lake) -> None:
    with pytest.raises(ValidationError):
        compact(own_lake, "r", "main", older_than_s=-1)


# --- shared lake ---------------------------------------------------------------------------------


@pytest.fixture
def shared_lake(
    postgres: Postgres, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Lake, str]]:
    """A lake with a PostgreSQL catalog (own database) and its data under a prefix in S3."""
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    prefix = f"maint-{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {prefix.replace('-', '_')}", dbname="postgres")
    uri = (
        f"postgresql://{postgres.user}@{HOST}:{postgres.port}/{prefix.replace('-', '_')}"
        f"?data=s3://{s3_server.bucket}/{prefix}&s3_endpoint={s3_server.endpoint}"
        "&s3_url_style=path&s3_use_ssl=false&s3_region=us-east-1"
    )
    lake = Lake.open(uri)
    yield lake, prefix
    lake.release()


def test_maintenance_of_a_postgres_and_s3_lake(
    shared_lake: tuple[Lake, str], s3_server: S3Server
) -> None:
    lake, prefix = shared_lake
    room = "shared-maintenance"
    doc, persister = write_small_flushes(lake, room, 20, snapshot_every=4)
    persister.close()
    files_before, objects_before = data_files(lake), len(s3_server.keys(prefix + "/"))
    assert inlined_rows(lake) > 0 and files_before >= 5

    dry = maintain(lake, policy=EVERYTHING_EXPIRES, dry_run=True)
    assert not any(s.done for s in dry)
    assert data_files(lake) == files_before and len(s3_server.keys(prefix + "/")) == objects_before

    steps = maintain(lake, policy=EVERYTHING_EXPIRES)

    assert all(s.done for s in steps)
    assert inlined_rows(lake) == 0
    assert data_files(lake) < files_before
    assert len(snapshot_ids(lake)) == 1
    assert len(s3_server.keys(prefix + "/")) == data_files(lake)  # replaced objects deleted
    assert count(lake, "updates", room) == 20
    assert sources(recovered(lake, room)) == sources(doc)
    step_ = compact(lake, room, "main", older_than_s=0)
    assert step_.done and count(lake, "updates", room) == 0
    assert sources(recovered(lake, room)) == sources(doc)
