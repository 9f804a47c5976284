from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from loro import ID, ExportMode, Frontiers, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import StorageError, ValidationError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister
from tests.store.lake_checks import count_rows
from tests.store.store_helpers import FakeClock, Saved, new_notebook_into, type_into

NEVER_S = 1e9


def rows(lake: Lake, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cur = lake.cursor()
    try:
        return cur.execute(sql, params).fetchall()
    finally:
        cur.close()


def start(
    lake: Lake, room: str, policy: FlushPolicy | None = None, **kwargs: Any
) -> tuple[LoroDoc, Persister, Saved]:
    doc = nb.new_doc()
    saved = Saved()
    persister = Persister(
        lake,
        room,
        "main",
        doc,
        writer=str(doc.peer_id),
        start_seq=0,
        policy=policy or FlushPolicy(),
        on_saved=saved,
        **kwargs,
    )
    return doc, persister, saved


# --- FlushPolicy ---------------------------------------------------------------------------------


def test_policy_is_not_due_with_nothing_pending() -> None:
    policy = FlushPolicy(max_delay_s=0.2, max_changes=10, max_bytes=100)
    assert not policy.due(5.0, None, 0, 0)
    assert not policy.due(5.0, None, 50, 500)


def test_policy_is_due_by_change_count() -> None:
    policy = FlushPolicy(max_delay_s=0.2, max_changes=10, max_bytes=100)
    assert not policy.due(5.0, 5.0, 9, 0)
    assert policy.due(5.0, 5.0, 10, 0)


def test_policy_is_due_by_bytes() -> None:
    policy = FlushPolicy(max_delay_s=0.2, max_changes=10, max_bytes=100)
    assert not policy.due(5.0, 5.0, 1, 99)
    assert policy.due(5.0, 5.0, 1, 100)


def test_policy_is_due_when_the_first_pending_change_is_old_enough() -> None:
    policy = FlushPolicy(max_delay_s=0.2, max_changes=10, max_bytes=100)
    assert not policy.due(5.19, 5.0, 1, 1)
    assert policy.due(5.2, 5.0, 1, 1)


def test_policy_rejects_non_positive_thresholds() -> None:
    with pytest.raises(ValidationError, match="max_changes"):
        FlushPolicy(max_changes=0)
    with pytest.raises(ValueError, match="max_delay_s"):
        FlushPolicy(max_delay_s=-1)


# --- thresholds ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_flushes_when_max_changes_are_pending(lake: Lake, room: str) -> None:
    clock = FakeClock()
    doc, persister, saved = start(
        lake, room, FlushPolicy(max_delay_s=NEVER_S, max_changes=5, max_bytes=1 << 30), clock=clock
    )
    new_notebook_into(doc)
    for i in range(4):
        type_into(doc, nb.read_cells(doc)[0].id, str(i), "ana")
        persister.notify()
    assert not saved.wait(1, timeout=0.3)
    persister.notify()
    assert saved.wait(1)
    assert count_rows(lake, "updates", room) == 1
    persister.close()


@pytest.mark.timeout(60)
def test_flushes_when_max_bytes_are_pending(lake: Lake, room: str) -> None:
    clock = FakeClock()
    doc, persister, saved = start(
        lake,
        room,
        FlushPolicy(max_delay_s=NEVER_S, max_changes=10_000, max_bytes=1000),
        clock=clock,
    )
    new_notebook_into(doc)
    persister.notify(1, 999)
    assert not saved.wait(1, timeout=0.3)
    persister.notify(1, 1)
    assert saved.wait(1)
    assert count_rows(lake, "updates", room) == 1
    persister.close()


@pytest.mark.timeout(60)
def test_flushes_when_the_first_change_waited_max_delay(lake: Lake, room: str) -> None:
    clock = FakeClock()
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=0.2), clock=clock)
    new_notebook_into(doc)
    persister.notify()
    clock.advance(0.1)
    assert not saved.wait(1, timeout=0.5)
    clock.advance(0.1)
    assert saved.wait(1, timeout=5)
    assert saved.versions[-1] == doc.oplog_vv
    persister.close()


@pytest.mark.timeout(60)
def test_flushes_on_a_real_clock_without_being_asked(lake: Lake, room: str) -> None:
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=0.05))
    new_notebook_into(doc)
    persister.notify()
    assert saved.wait(1, timeout=5)
    persister.close()


# --- flush / close -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_flush_waits_until_everything_is_in_the_lake(lake: Lake, room: str) -> None:
    doc, persister, _ = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc)
    type_into(doc, cells[0], " -- note", "ana")  # never notified: flush still takes it
    persister.flush()
    assert persister.saved_version == doc.oplog_vv
    assert count_rows(lake, "updates", room) == 1
    persister.flush()  # nothing new: no empty row
    assert count_rows(lake, "updates", room) == 1
    persister.close()


@pytest.mark.timeout(60)
def test_flush_from_many_threads_writes_each_change_once(lake: Lake, room: str) -> None:
    doc, persister, _ = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc)
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(20):
            with lock:
                type_into(doc, cells[i % 2], f"{i}.{j} ", f"user{i}")
            persister.notify()
            if j % 5 == 0:
                persister.flush()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    persister.close()
    spans = rows(
        lake,
        f"SELECT peer, counter_start, counter_end FROM {lake.table('changes')} WHERE room = ? "
        "ORDER BY counter_start",
        [room],
    )
    ends = [s[2] for s in spans]
    starts = [s[1] for s in spans]
    assert starts[0] == 0 and starts[1:] == ends[:-1]  # contiguous, no overlap, no gap
    assert ends[-1] == doc.oplog_vv.get_last(doc.peer_id) + 1


@pytest.mark.timeout(60)
def test_close_flushes_pending_changes_and_writes_a_snapshot(lake: Lake, room: str) -> None:
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc)
    type_into(doc, cells[1], " where x > 1", "bob")
    persister.notify(2)
    persister.close()
    assert persister.closed
    assert saved.versions[-1] == doc.oplog_vv
    snaps = rows(
        lake,
        f"SELECT seq, version, frontiers, change_count, byte_length, octet_length(bytes) "
        f"FROM {lake.table('snapshots')} WHERE room = ?",
        [room],
    )
    assert len(snaps) == 1
    seq, version, frontiers, changes, byte_length, length = snaps[0]
    assert seq == 1
    assert VersionVector.decode(version) == doc.oplog_vv
    assert Frontiers.decode(frontiers).encode() == doc.oplog_frontiers.encode()
    assert changes == doc.len_changes
    assert byte_length == length > 0
    persister.close()  # idempotent
    assert count_rows(lake, "snapshots", room) == 1


@pytest.mark.timeout(60)
def test_close_without_changes_writes_no_snapshot(lake: Lake, room: str) -> None:
    _, persister, _ = start(lake, room)
    persister.close()
    assert count_rows(lake, "snapshots", room) == 0
    assert count_rows(lake, "updates", room) == 0


@pytest.mark.timeout(60)
def test_flush_after_close_raises_only_if_something_is_unsaved(lake: Lake, room: str) -> None:
    doc, persister, _ = start(lake, room)
    _, cells = new_notebook_into(doc)
    persister.close()
    persister.flush()  # everything saved: fine
    type_into(doc, cells[0], "!", "ana")
    with pytest.raises(StorageError, match="closed"):
        persister.flush()


@pytest.mark.timeout(60)
def test_writes_a_snapshot_every_n_changes(lake: Lake, room: str) -> None:
    doc, persister, _ = start(
        lake, room, FlushPolicy(max_delay_s=NEVER_S, snapshot_every_changes=5)
    )
    _, cells = new_notebook_into(doc)
    for i in range(3):
        type_into(doc, cells[0], str(i), f"u{i}")
        persister.notify()
    persister.flush()
    assert count_rows(lake, "snapshots", room) == 0
    for i in range(3):
        type_into(doc, cells[1], str(i), f"v{i}")
        persister.notify()
    persister.flush()
    assert count_rows(lake, "snapshots", room) == 1
    persister.close()  # nothing since the last snapshot
    assert count_rows(lake, "snapshots", room) == 1


def test_snapshot_due_needs_the_changes_and_the_bytes() -> None:
    policy = FlushPolicy(snapshot_every_changes=10, snapshot_growth=2.0)
    assert not policy.snapshot_due(9, 10**9, 0)  # too few changes, whatever the bytes
    assert policy.snapshot_due(10, 0, 0)  # no snapshot yet: the changes decide
    assert not policy.snapshot_due(10, 199, 100)  # updates < 2x the last snapshot
    assert policy.snapshot_due(10, 200, 100)
    with pytest.raises(ValidationError, match="snapshot_growth"):
        FlushPolicy(snapshot_growth=0)


@pytest.mark.timeout(60)
def test_commits_merged_into_one_loro_change_count_once(lake: Lake, room: str) -> None:
    # The paper trace's case: one commit per keystroke, which Loro merges into a few changes.
    # Counting notify() calls (commits) wrote a full snapshot every N keystrokes.
    doc, persister, _ = start(
        lake, room, FlushPolicy(max_delay_s=NEVER_S, snapshot_every_changes=5)
    )
    _, cells = new_notebook_into(doc)
    persister.flush()
    text = nb.cell_text(nb.find_cell(doc, cells[0])[1])
    for i in range(50):  # no commit message: Loro merges them into one change
        text.insert(0, str(i % 10))
        doc.commit()
        persister.notify()
        if i % 25 == 24:
            persister.flush()
    assert count_rows(lake, "changes", room) < 5  # 50 notify() calls
    assert count_rows(lake, "snapshots", room) == 0
    persister.close()
    assert count_rows(lake, "snapshots", room) == 1


@pytest.mark.timeout(60)
def test_a_new_snapshot_waits_for_updates_as_big_as_the_last_one(lake: Lake, room: str) -> None:
    doc, persister, _ = start(
        lake,
        room,
        FlushPolicy(max_delay_s=NEVER_S, snapshot_every_changes=1, snapshot_growth=1.0),
    )
    _, cells = new_notebook_into(doc)
    persister.flush()
    assert count_rows(lake, "snapshots", room) == 1  # the first one: no size to compare with
    first = rows(lake, f"SELECT byte_length FROM {lake.table('snapshots')} WHERE room = ?", [room])
    snapshot_bytes = int(first[0][0])
    written = 0
    flushes = 0
    while written < snapshot_bytes:
        type_into(doc, cells[flushes % 2], "x" * 40, f"u{flushes}")  # its own change
        persister.notify()
        persister.flush()
        flushes += 1
        got = rows(
            lake,
            f"SELECT coalesce(sum(byte_length), 0) FROM {lake.table('updates')} "
            "WHERE room = ? AND seq > 1",
            [room],
        )
        written = int(got[0][0])
        expected = 2 if written >= snapshot_bytes else 1
        assert count_rows(lake, "snapshots", room) == expected, (flushes, written, snapshot_bytes)
    assert flushes > 1  # the rule held some snapshots back
    persister.close()


# --- rows ----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_updates_rows_chain_versions_and_describe_their_batch(lake: Lake, room: str) -> None:
    doc, persister, _ = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc)
    before = time.time()
    persister.flush()
    type_into(doc, cells[0], "1", "ana")
    type_into(doc, cells[1], "2", "bob")
    persister.flush()
    persister.close()
    got = rows(
        lake,
        "SELECT u.seq, u.writer, u.vv_from, u.vv_to, u.frontiers, u.change_count, u.byte_length, "
        "u.bytes, epoch(u.first_change_at), epoch(u.last_change_at), epoch(u.written_at), "
        f"(SELECT count(*) FROM {lake.table('changes')} c WHERE c.room = u.room AND c.seq = u.seq) "
        f"FROM {lake.table('updates')} u WHERE u.room = ? AND u.branch = 'main' ORDER BY u.seq",
        [room],
    )
    assert [r[0] for r in got] == [1, 2]
    assert {r[1] for r in got} == {str(doc.peer_id)}
    assert VersionVector.decode(got[0][2]) == VersionVector()
    assert got[1][2] == got[0][3]  # vv_from of a batch is vv_to of the previous one
    assert VersionVector.decode(got[1][3]) == doc.oplog_vv
    assert got[1][4] == doc.oplog_frontiers.encode()
    assert [r[5] for r in got] == [r[11] for r in got] == [1, 2]
    for r in got:
        assert r[6] == len(r[7])
        assert int(before) - 1 <= r[8] <= r[9] <= time.time() + 1
        assert before - 1 <= r[10] <= time.time() + 1


@pytest.mark.timeout(60)
def test_change_rows_carry_author_time_and_cells_touched(lake: Lake, room: str) -> None:
    doc, persister, _ = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc, cells=3, author="ana")
    type_into(doc, cells[1], " -- bob was here", "bob")
    type_into(doc, cells[2], " -- cy too", "cy")
    doc.get_map("meta").insert("title", "renamed")
    doc.set_next_commit_message("dee")
    doc.commit()
    persister.close()
    got = rows(
        lake,
        f"SELECT author, cells, peer, counter_start, counter_end, lamport, epoch(time) "
        f"FROM {lake.table('changes')} WHERE room = ? ORDER BY counter_start",
        [room],
    )
    assert [(r[0], r[1]) for r in got] == [
        ("ana", cells),
        ("bob", [cells[1]]),
        ("cy", [cells[2]]),
        ("dee", []),
    ]
    assert {r[2] for r in got} == {str(doc.peer_id)}
    for author, _, _, start_c, _, lamport, at in got:
        change = doc.get_change(ID(doc.peer_id, start_c))
        assert change is not None and change.message == author
        assert lamport == change.lamport
        assert at == change.timestamp


@pytest.mark.timeout(60)
def test_the_same_update_arriving_twice_is_stored_once(lake: Lake, room: str) -> None:
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    browser = nb.new_doc()
    new_notebook_into(browser)
    blob = browser.export(ExportMode.Updates(from_=VersionVector()))
    doc.import_(blob)
    persister.notify(1, len(blob))
    doc.import_(blob)  # a view re-sends the same bytes
    persister.notify(1, len(blob))
    persister.flush()
    doc.import_(blob)  # and once more after the flush
    persister.notify(1, len(blob))
    persister.flush()
    assert count_rows(lake, "updates", room) == 1
    assert count_rows(lake, "changes", room) == 1
    assert saved.versions[-1] == browser.oplog_vv  # still acknowledged
    persister.close()
    assert count_rows(lake, "updates", room) == 1


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_failed_write_loses_nothing_and_the_next_flush_writes_it(
    lake: Lake, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[StorageError] = []
    doc, persister, saved = start(
        lake, room, FlushPolicy(max_delay_s=NEVER_S), on_error=errors.append
    )
    _, cells = new_notebook_into(doc)
    real = Persister._insert
    failures = [1]

    def failing_once(self: Persister, *args: Any) -> None:
        if failures:
            failures.pop()
            raise StorageError("could not write: disk full (simulated)")
        real(self, *args)

    monkeypatch.setattr(Persister, "_insert", failing_once)
    with pytest.raises(StorageError, match="disk full"):
        persister.flush()
    assert len(errors) == 1 and "disk full" in str(errors[0])
    assert persister.saved_version == VersionVector()  # nothing advanced
    assert saved.versions == []
    type_into(doc, cells[0], " more", "ana")
    persister.flush()
    assert persister.saved_version == doc.oplog_vv
    persister.close()
    assert count_rows(lake, "updates", room) == 1
    restored = nb.new_doc()
    restored.import_(
        rows(lake, f"SELECT bytes FROM {lake.table('updates')} WHERE room = ?", [room])[0][0]
    )
    assert restored.get_deep_value() == doc.get_deep_value()


@pytest.mark.timeout(60)
def test_a_failed_write_is_retried_in_the_background(
    lake: Lake, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[StorageError] = []
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=0.01), on_error=errors.append)
    new_notebook_into(doc)
    real = Persister._insert
    failures = [1, 1]

    def failing_twice(self: Persister, *args: Any) -> None:
        if failures:
            failures.pop()
            raise StorageError("could not write: database is locked (simulated)")
        real(self, *args)

    monkeypatch.setattr(Persister, "_insert", failing_twice)
    persister.notify()
    assert saved.wait(1, timeout=10)  # no further notify or flush needed
    assert len(errors) == 2
    assert saved.versions[-1] == doc.oplog_vv
    persister.close()


@pytest.mark.timeout(60)
def test_a_write_that_landed_despite_an_error_is_not_written_twice(
    lake: Lake, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, persister, saved = start(lake, room, FlushPolicy(max_delay_s=NEVER_S))
    _, cells = new_notebook_into(doc)
    real = Persister._insert
    failures = [1]

    def lands_then_fails(self: Persister, *args: Any) -> None:
        real(self, *args)
        if failures:
            failures.pop()
            self._unknown_attempt = self._seq + 1
            raise StorageError("could not write: connection lost after COMMIT (simulated)")

    monkeypatch.setattr(Persister, "_insert", lands_then_fails)
    with pytest.raises(StorageError):
        persister.flush()
    persister.flush()  # finds seq 1 in the lake and adopts it
    assert persister.saved_version == doc.oplog_vv
    assert saved.versions[-1] == doc.oplog_vv
    type_into(doc, cells[0], "+", "ana")
    persister.close()
    assert rows(
        lake, f"SELECT seq FROM {lake.table('updates')} WHERE room = ? ORDER BY seq", [room]
    ) == [(1,), (2,)]


@pytest.mark.timeout(60)
def test_a_failing_close_raises_and_a_later_close_finishes(
    lake: Lake, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, persister, _ = start(lake, room, FlushPolicy(max_delay_s=NEVER_S), on_error=lambda e: None)
    new_notebook_into(doc)
    real = Persister._insert
    failing = [True]

    def maybe_fail(self: Persister, *args: Any) -> None:
        if failing[0]:
            raise StorageError("could not write (simulated outage)")
        real(self, *args)

    monkeypatch.setattr(Persister, "_insert", maybe_fail)
    with pytest.raises(StorageError, match="outage"):
        persister.close()
    assert not persister.closed
    failing[0] = False
    persister.close()
    assert persister.closed
    assert count_rows(lake, "updates", room) == 1
    assert count_rows(lake, "snapshots", room) == 1


@pytest.mark.timeout(60)
def test_callbacks_that_raise_do_not_stop_the_writer(lake: Lake, room: str) -> None:
    doc = nb.new_doc()

    def bad_saved(version: VersionVector) -> None:
        raise RuntimeError("boom")

    persister = Persister(lake, room, "main", doc, writer="w", start_seq=0, on_saved=bad_saved)
    _, cells = new_notebook_into(doc)
    persister.flush()
    type_into(doc, cells[0], "x", "ana")
    persister.flush()
    persister.close()
    assert count_rows(lake, "updates", room) == 2


@pytest.mark.timeout(60)
def test_the_writer_thread_is_a_named_daemon(lake: Lake, room: str) -> None:
    _, persister, _ = start(lake, room)
    threads = [t for t in threading.enumerate() if t.name == f"sqlrooms_nb-writer:{room}/main"]
    assert len(threads) == 1 and threads[0].daemon
    persister.close()
    threads[0].join(5)
    assert not threads[0].is_alive()
