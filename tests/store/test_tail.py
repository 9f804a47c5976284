"""Several writers on one room/branch: each writes its own rows and tails the others'.

In one process two persisters stand for two kernels (the real several-process case, on
PostgreSQL + S3, is tests/store/test_kernels.py)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
from loro import ExportMode, LoroDoc

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover, recover_room

from .store_helpers import new_notebook_into, type_into

FAST = FlushPolicy(max_delay_s=0.02, poll_s=0.02)

pytestmark = pytest.mark.timeout(60)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def kernel(
    lake: Lake, room: str, remote: list[list[bytes]] | None = None
) -> tuple[LoroDoc, Persister]:
    """A document recovered from the lake and its writer, as a kernel opens a room."""
    doc = nb.new_doc()
    got = recover_room(lake, room, "main", doc)
    persister = Persister(
        lake,
        room,
        "main",
        doc,
        writer=str(doc.peer_id),
        start_seq=got.last_seq,
        lake_version=got.lake_version,
        policy=FAST,
        on_remote=remote.append if remote is not None else None,
    )
    return doc, persister


def sources(doc: LoroDoc) -> list[str]:
    return [c.source for c in nb.read_cells(doc)]


def test_two_writers_converge_and_never_write_each_others_changes(lake: Lake, room: str) -> None:
    doc_a, a = kernel(lake, room)
    _, cells = new_notebook_into(doc_a)
    a.flush()
    remote: list[list[bytes]] = []
    doc_b, b = kernel(lake, room, remote)
    for i in range(5):
        type_into(doc_a, cells[0], f" a{i}", "ana")
        type_into(doc_b, cells[1], f" b{i}", "bob")
        a.notify()
        b.notify()
    wait_until(lambda: sources(doc_a) == sources(doc_b) and a.lake_version == b.lake_version)
    a.close()
    b.close()
    assert sources(doc_a) == ["select 0 a0 a1 a2 a3 a4", "select 1 b0 b1 b2 b3 b4"]
    assert remote, "b relays what it imported from a's rows"
    # Every Loro change is in the lake once: neither writer wrote the other's changes again.
    cur = lake.cursor()
    spans = cur.execute(
        f"SELECT peer, counter_start, counter_end, writer FROM {lake.table('changes')} "
        "WHERE room = ? AND branch = 'main' ORDER BY peer, counter_start",
        [room],
    ).fetchall()
    cur.close()
    for (peer, _, end, _), (next_peer, start, _, _) in itertools.pairwise(spans):
        assert peer != next_peer or start >= end, "a change was written twice"
    writers = {(peer, writer) for peer, _, _, writer in spans}
    assert writers == {
        (str(doc_a.peer_id), str(doc_a.peer_id)),
        (str(doc_b.peer_id), str(doc_b.peer_id)),
    }
    again = nb.new_doc()
    recover(lake, room, "main", again)
    assert sources(again) == sources(doc_a)


def test_a_snapshot_by_one_writer_covers_the_others_rows(lake: Lake, room: str) -> None:
    doc_a, a = kernel(lake, room)
    _, cells = new_notebook_into(doc_a)
    a.flush()
    doc_b, b = kernel(lake, room)
    for i in range(3):
        type_into(doc_a, cells[0], f" a{i}", "ana")
        a.flush()
    wait_until(lambda: sources(doc_b) == sources(doc_a))
    wait_until(lambda: b.lake_version >= a.lake_version)
    b.close()  # b's final snapshot holds a's rows: lake_version says up to where
    stored = lake.load(room, "main")
    assert stored.snapshot is not None
    assert stored.updates == [], "every row of a and b is covered by b's snapshot"
    type_into(doc_a, cells[1], " later", "ana")
    a.flush()
    stored = lake.load(room, "main")
    assert len(stored.updates) == 1  # only a's row written after b's snapshot
    a.close()
    again = nb.new_doc()
    recover(lake, room, "main", again)
    assert sources(again) == sources(doc_a)
    snap_only = LoroDoc()
    snap_only.import_(stored.snapshot)
    assert sources(snap_only) == ["select 0 a0 a1 a2", "select 1"]
    assert doc_a.export(ExportMode.Snapshot())  # the document is still usable
