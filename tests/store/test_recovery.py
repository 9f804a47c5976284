from __future__ import annotations

import pytest
from loro import ExportMode, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import CorruptionError, RecoveryError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover, recover_room
from tests.store.store_helpers import new_notebook_into, type_into


def persist(lake: Lake, room: str, doc: LoroDoc, start_seq: int, **policy: float) -> Persister:
    return Persister(
        lake,
        room,
        "main",
        doc,
        writer=str(doc.peer_id),
        start_seq=start_seq,
        policy=FlushPolicy(max_delay_s=1e9, **policy),  # type: ignore[arg-type]
    )


def insert_update(lake: Lake, room: str, seq: int, blob: bytes) -> None:
    cur = lake.cursor()
    try:
        cur.execute(
            f"INSERT INTO {lake.table('updates')} (room, branch, writer, seq, byte_length, bytes) "
            "VALUES (?, 'main', 'test', ?, ?, ?)",
            [room, seq, len(blob), blob],
        )
    finally:
        cur.close()


@pytest.mark.timeout(60)
def test_recovery_from_snapshot_and_tail_equals_the_original(lake: Lake, room: str) -> None:
    doc = nb.new_doc()
    writer = persist(lake, room, doc, 0, snapshot_every_changes=10)
    _, cells = new_notebook_into(doc, cells=3)
    browser = LoroDoc()  # a second peer, as a browser view would be
    browser.import_(doc.export(ExportMode.Snapshot()))
    for i in range(40):
        type_into(doc, cells[i % 3], f"k{i} ", "kernel")
        type_into(browser, cells[(i + 1) % 3], f"b{i} ", "browser")
        doc.import_(browser.export(ExportMode.Updates(from_=doc.oplog_vv)))
        writer.notify(2)
        if i % 4 == 0:
            writer.flush()
    nb.move_cell(doc, cells[2], 0)
    nb.delete_cell(doc, cells[1])
    doc.commit()
    writer.flush()  # no close: the tail after the last snapshot stays as updates rows
    stored = lake.load(room, "main")
    assert stored.snapshot is not None and stored.updates, "want a snapshot and a tail"

    restored = nb.new_doc()
    last_seq = recover(lake, room, "main", restored)
    assert last_seq == writer.last_seq
    assert restored.get_deep_value() == doc.get_deep_value()
    assert restored.oplog_vv == doc.oplog_vv
    assert [c.source for c in nb.read_cells(restored)] == [c.source for c in nb.read_cells(doc)]
    writer.close()


@pytest.mark.timeout(60)
def test_a_recovered_room_keeps_writing_after_the_last_seq(lake: Lake, room: str) -> None:
    doc = nb.new_doc()
    writer = persist(lake, room, doc, 0)
    _, cells = new_notebook_into(doc)
    writer.close()

    again = nb.new_doc()
    start_seq = recover(lake, room, "main", again)
    writer = persist(lake, room, again, start_seq)
    type_into(again, cells[0], " -- later", "bob")
    writer.close()

    third = nb.new_doc()
    assert recover(lake, room, "main", third) == 2
    assert third.get_deep_value() == again.get_deep_value()
    cur = lake.cursor()
    seqs = cur.execute(
        f"SELECT seq FROM {lake.table('updates')} WHERE room = ? ORDER BY seq", [room]
    ).fetchall()
    cur.close()
    assert seqs == [(1,), (2,)]


@pytest.mark.timeout(60)
def test_recovering_an_unknown_room_leaves_the_doc_empty(lake: Lake, room: str) -> None:
    doc = nb.new_doc()
    assert recover(lake, room, "main", doc) == 0
    assert doc.oplog_vv == VersionVector()


@pytest.mark.timeout(60)
def test_an_update_row_loro_refuses_is_passed_over_named_and_never_taken_as_complete(
    lake: Lake, room: str
) -> None:
    doc = nb.new_doc()
    writer = persist(lake, room, doc, 0)
    new_notebook_into(doc)
    writer.close()
    insert_update(lake, room, 7, b"\x00not a loro update")
    restored = nb.new_doc()
    recovered = recover_room(lake, room, "main", restored, warm=False)
    assert [(e.table, e.writer, e.seq) for e in recovered.problems] == [("updates", "test", 7)]
    assert "Loro refuses it" in str(recovered.problems[0])
    # The row has no changes rows: what it held cannot be told, so the room is not complete.
    assert not recovered.complete and "lists nothing for writer test seq 7" in recovered.report
    assert nb.read_cells(restored) == nb.read_cells(doc)  # the rest is there
    with pytest.raises(CorruptionError, match="seq 7"):
        recover(lake, room, "main", nb.new_doc())


@pytest.mark.timeout(60)
def test_a_gap_in_the_stored_updates_is_a_recovery_error(lake: Lake, room: str) -> None:
    source, cells = new_notebook_into(nb.new_doc())
    middle = source.oplog_vv
    type_into(source, cells[0], " -- depends on the first change", "ana")
    insert_update(lake, room, 1, source.export(ExportMode.Updates(from_=middle)))
    with pytest.raises(RecoveryError, match="gap"):
        recover(lake, room, "main", nb.new_doc())


@pytest.mark.timeout(60)
def test_a_snapshot_loro_refuses_is_passed_over_and_named(lake: Lake, room: str) -> None:
    cur = lake.cursor()
    cur.execute(
        f"INSERT INTO {lake.table('snapshots')} (room, branch, writer, seq, bytes) "
        "VALUES (?, 'main', 'test', 3, ?)",
        [room, b"garbage"],
    )
    cur.close()
    recovered = recover_room(lake, room, "main", nb.new_doc(), warm=False)
    assert [(e.table, e.writer, e.seq) for e in recovered.problems] == [("snapshots", "test", 3)]
    assert "snapshot of" in recovered.report and "Loro refuses it" in recovered.report
    # The lake lists no change of the room (no changes rows, no fork): nothing is missing.
    assert recovered.complete and "Nothing is missing" in recovered.report
    assert recover(lake, room, "main", nb.new_doc()) == 3  # logged, not raised
