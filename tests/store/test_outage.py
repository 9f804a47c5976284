"""The lake becomes unavailable while people edit (issue 6, part 3).

The catalog database stopped, the object store stopped, the disk full: editing goes on, views
are told the lake is unreachable and how many changes the kernel keeps on its disk, unsaved
changes go to the spill file (write-ahead, fsynced), and when the lake is back everything is
written exactly once and the spill removed. A kernel killed during the outage loses nothing it
had spilled: the next kernel replays the spill.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loro import LoroDoc, VersionVector

from sqlrooms_nb import SqlRoom
from sqlrooms_nb import notebook as nb
from sqlrooms_nb import protocol as p
from sqlrooms_nb.errors import StorageError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister
from sqlrooms_nb.store import persister as persister_module
from sqlrooms_nb.store.config import spill_root
from sqlrooms_nb.store.spill import SpillDir, read_spill_file
from tests.fakes import FakeView

from .crash_kernel import edits_in, expected_cells
from .lake_checks import assert_each_change_once
from .servers import Postgres, S3Server
from .store_helpers import new_notebook_into, type_into
from .test_crash_flush import kill, start_kernel

FAST = FlushPolicy(max_delay_s=0.05)


# --- helpers ----------------------------------------------------------------------------------


def append(view: FakeView, cell_id: str, token: str) -> None:
    """Append ``token`` to a cell as its own Loro change (its own commit message)."""

    def edit(doc: LoroDoc) -> None:
        _, cell = nb.find_cell(doc, cell_id)
        text = nb.cell_text(cell)
        text.insert(len(text.to_string()), token)
        doc.set_next_commit_message(f"view {token}")

    view.edit(edit)


def outages(view: FakeView) -> list[dict[str, Any]]:
    """The ``saved`` messages saying the lake is unreachable that ``view`` received."""
    return [m for m in view.received if m["kind"] == "saved" and m.get("lake") == "unreachable"]


def wait(views: list[FakeView], ok: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for view in views:
            view.pump()
        if ok():
            return
        if time.monotonic() > deadline:
            seen = [m for m in views[0].received if m["kind"] in ("saved", "error")][-3:]
            raise AssertionError(f"not within {timeout_s} s: {what} (last seen: {seen})")
        time.sleep(0.02)


def back_to_saved(view: FakeView) -> bool:
    last = [m for m in view.received if m["kind"] == "saved"]
    return view.is_saved() and bool(last) and "lake" not in last[-1]


def spill_files(room: SqlRoom, branch: str = "main") -> list[Path]:
    return SpillDir(spill_root(), room._lake.config.identity, room.room_id, branch).files()


def spill_covers_kernel(room: SqlRoom, view: FakeView) -> bool:
    """Whether the lake's saved version (as the view was told) plus the spill file hold every
    change the kernel has: nothing unsaved lives only in memory."""
    files = spill_files(room)
    if len(files) != 1:
        return False
    covered = VersionVector.decode(view.saved.encode())
    covered.merge(read_spill_file(files[0]).version())
    return covered.includes_vv(room.doc.oplog_vv)


def told_kept(view: FakeView) -> bool:
    """The view was told the lake is unreachable and the kernel keeps changes on disk, all of
    them (none in memory only)."""
    last = outages(view)[-1:]
    return bool(last) and last[0]["kept"] > 0 and last[0]["unkept"] == 0


def reopen_and_check(lake: str, room_id: str, view: FakeView) -> None:
    """A fresh kernel reads exactly what the view shows, each change stored once."""
    fresh = SqlRoom(room_id, lake=lake)
    try:
        assert [(c.name, c.source) for c in fresh.cells] == view.cells()
        assert_each_change_once(fresh._lake, room_id, fresh.doc)
    finally:
        fresh.close()


def start_room(lake: str, room_id: str, policy: FlushPolicy = FAST) -> tuple[SqlRoom, str]:
    room = SqlRoom(room_id, lake=lake, flush_policy=policy)
    cell = room.add_cell("", name="shared")
    room.flush()
    return room, cell


def edit_through_outage(
    room: SqlRoom, cell: str, edits: int, *, gap_s: float = 0.01, pad: int = 0
) -> tuple[FakeView, list[int]]:
    """A view makes ``edits`` edits during an outage (each ``pad`` dashes longer than its
    token); returns it and the spill sizes seen."""
    view = FakeView(room, "v1")
    view.hello()
    wait([view], lambda: view.welcomed, "welcome", 10)
    sizes = []
    for i in range(edits):
        append(view, cell, f"{i};" + "-" * pad)
        time.sleep(gap_s)
        view.pump()
        files = spill_files(room)
        sizes.append(files[0].stat().st_size if files else 0)
    return view, sizes


# --- the writer's failure path, without servers ------------------------------------------------


def test_a_saved_message_carries_the_outage_only_while_the_lake_is_down() -> None:
    plain = p.encode_server(p.Saved(version=b"v", branch="main"))
    assert plain.content == {"kind": "saved", "branch": "main"}  # unchanged for old views
    down = p.encode_server(p.Saved(b"v", "main", lake="unreachable", kept=3, unkept=1))
    assert down.content == {
        "kind": "saved",
        "branch": "main",
        "lake": "unreachable",
        "kept": 3,
        "unkept": 1,
    }
    assert down.buffers == [b"v"]


@pytest.mark.timeout(60)
def test_a_failed_flush_is_spilled_before_it_is_reported_and_removed_after_the_commit(
    lake: Lake, room: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = [True]
    real = Persister._insert

    def insert(self: Persister, *args: Any) -> None:
        if failing[0]:
            raise StorageError("could not write: the lake is unreachable (simulated)")
        real(self, *args)

    monkeypatch.setattr(Persister, "_insert", insert)
    monkeypatch.setattr(persister_module, "RETRY_FIRST_DELAY_S", 3600.0)  # no retry by itself
    spills = SpillDir(tmp_path, lake.config.identity, room, "main")
    doc = nb.new_doc()
    spill = spills.writer_file(str(doc.peer_id))
    on_disk_when_reported: list[int] = []
    outages: list[persister_module.Outage] = []

    def on_error(error: StorageError) -> None:  # write-ahead: the spill is there already
        on_disk_when_reported.append(len(read_spill_file(spill.path).updates))

    writer = Persister(
        lake,
        room,
        "main",
        doc,
        writer=str(doc.peer_id),
        start_seq=0,
        policy=FlushPolicy(max_delay_s=0.05),
        spill=spill,
        on_error=on_error,
        on_outage=outages.append,
    )
    _, cells = new_notebook_into(doc)
    with pytest.raises(StorageError, match="unreachable"):
        writer.flush()
    assert on_disk_when_reported == [1]
    assert writer.outage is not None and writer.outage.kept_changes == 1
    assert writer.outage.spill_path == str(spill.path)
    # The outage goes on (no retry for an hour): new changes are spilled every max_delay_s.
    for i in range(5):
        type_into(doc, cells[0], f" {i}", f"author{i}")
        writer.notify()
    deadline = time.monotonic() + 10
    while writer.outage is None or writer.outage.kept_changes < 6:
        assert time.monotonic() < deadline, f"not spilled: {writer.outage}"
        time.sleep(0.02)
    assert [o.kept_changes for o in outages][-1] == 6
    assert all(o.unkept_changes == 0 for o in outages)
    replay = nb.new_doc()
    replay.import_batch(read_spill_file(spill.path).updates)
    assert replay.get_deep_value() == doc.get_deep_value()  # the spill alone restores it all
    failing[0] = False  # the lake is back
    writer.flush()
    assert writer.outage is None
    assert not spill.path.exists()
    writer.close()
    assert_each_change_once(lake, room, doc)


@pytest.mark.timeout(60)
def test_a_writer_whose_lake_is_closed_during_an_outage_stops_and_keeps_its_spill(
    room: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``close()`` raised (the lake unreachable), then the lake was released: retrying a
    closed connection can never succeed, so the writer thread ends; the spill stays for the
    next open."""

    def insert(self: Persister, *args: Any) -> None:
        raise StorageError("could not write: the lake is unreachable (simulated)")

    monkeypatch.setattr(Persister, "_insert", insert)
    monkeypatch.setattr(persister_module, "RETRY_FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(persister_module, "RETRY_MAX_DELAY_S", 0.05)
    own = Lake.open(tmp_path / "lake")
    spills = SpillDir(tmp_path / "spills", own.config.identity, room, "main")
    doc = nb.new_doc()
    spill = spills.writer_file(str(doc.peer_id))
    writer = Persister(
        own, room, "main", doc, writer=str(doc.peer_id), start_seq=0, policy=FAST, spill=spill
    )
    new_notebook_into(doc)
    with pytest.raises(StorageError, match="unreachable"):
        writer.close(timeout=2)
    assert writer._thread.is_alive()  # close() raised: the thread keeps retrying
    own.release()
    writer._thread.join(timeout=10)
    assert not writer._thread.is_alive()
    replay = nb.new_doc()
    replay.import_batch(read_spill_file(spill.path).updates)
    assert replay.get_deep_value() == doc.get_deep_value()


# --- the catalog database stopped --------------------------------------------------------------


@pytest.mark.timeout(180)
def test_editing_goes_on_while_the_postgres_catalog_is_stopped(
    shared: str, postgres: Postgres, room: str, slow: bool
) -> None:
    edits = 300 if slow else 40
    room_obj, cell = start_room(shared, room)
    try:
        postgres.halt()
        began = time.monotonic()
        try:
            view, sizes = edit_through_outage(room_obj, cell, edits, gap_s=0.1 if slow else 0.02)
            # Editing went on: the kernel holds every edit, and says the lake is unreachable.
            assert edits_in([("", room_obj.cells[0].source)]) == list(range(edits))
            wait(
                [view],
                lambda: told_kept(view) and spill_covers_kernel(room_obj, view),
                "every edit in the spill, and the views told so",
                15,
            )
            kept = [m["kept"] for m in outages(view)]
            assert kept == sorted(kept), "the count of kept changes only grows"
            assert not view.is_saved()
            files = spill_files(room_obj)
            assert len(files) == 1
            assert sizes[-1] > sizes[len(sizes) // 2] > 0, "the spill grows as edits arrive"
            with pytest.raises(StorageError):
                room_obj.flush(timeout=30)
            late = FakeView(room_obj, "late")  # a view joining now is told at once
            late.hello()
            wait([late], lambda: bool(outages(late)), "the outage state after welcome", 10)
            kinds = [m["kind"] for m in late.received]
            assert kinds.index("welcome") < kinds.index("saved")
        finally:
            postgres.resume()
        down_s = time.monotonic() - began
        wait([view], lambda: back_to_saved(view), "saved once the catalog is back", 30)
        back_s = time.monotonic() - began - down_s
        assert spill_files(room_obj) == []
        print(
            f"\n[outage] postgres stopped {down_s:.1f} s, {edits} edits, spill "
            f"{sizes[-1]} bytes; saved {back_s:.1f} s after it was back"
        )
    finally:
        room_obj.close()
    reopen_and_check(shared, room, view)


# --- the object store stopped ------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_batch_that_needs_the_object_store_is_spilled_while_it_is_stopped(
    shared: str, s3_server: S3Server, room: str
) -> None:
    # Batches of up to 500 rows are inlined in the catalog and never touch the object store;
    # a flush of more changes writes a parquet file there. Batch them by hand to see both.
    policy = FlushPolicy(max_delay_s=3600, max_changes=1_000_000, max_bytes=1 << 30)
    room_obj, cell = start_room(shared, room, policy)
    view = FakeView(room_obj, "v1")
    view.hello()
    wait([view], lambda: view.welcomed, "welcome", 10)
    big = 600
    try:
        s3_server.halt()
        began = time.monotonic()
        try:
            append(view, cell, "small;")
            room_obj.flush(timeout=30)  # inlined in PostgreSQL: the object store is not needed
            for i in range(big):
                append(view, cell, f"{i};")
                time.sleep(0.003)  # within the per-view rate limit (ratelimit.py)
            with pytest.raises(StorageError, match=r"HTTP|connect|s3"):
                room_obj.flush(timeout=60)
            wait(
                [view],
                lambda: told_kept(view) and spill_covers_kernel(room_obj, view),
                f"the {big} edits kept in the spill",
                15,
            )
            size = spill_files(room_obj)[0].stat().st_size
        finally:
            s3_server.resume()
        down_s = time.monotonic() - began
        room_obj.flush(timeout=60)
        wait([view], lambda: back_to_saved(view), "saved once the object store is back", 30)
        assert spill_files(room_obj) == []
        print(f"\n[outage] object store stopped {down_s:.1f} s, {big} edits, spill {size} bytes")
    finally:
        room_obj.close()
    reopen_and_check(shared, room, view)


# --- the disk full ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (we run as root in a VM); skipped only when mounting
    is really impossible here."""
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0777", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` up to the last byte; returns the filler file."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.timeout(120)
@pytest.mark.parametrize("spill_on", ["another disk", "the full disk"])
def test_a_full_disk_under_an_embedded_lake(
    small_disk: Path, tmp_path: Path, room: str, spill_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill_dir = tmp_path / "spill" if spill_on == "another disk" else small_disk / "spill"
    monkeypatch.setenv("SQLROOMS_NB_SPILL_DIR", str(spill_dir))
    lake = str(small_disk / "lake")
    room_obj, cell = start_room(lake, room)
    room_obj.flush()  # (history views made too: no write of ours is left in flight)
    filler = fill(small_disk)
    began = time.monotonic()
    try:
        edits = 20
        # 8 KiB each: more than the space SQLite's WAL may already hold (8 frames, 33 KB, were
        # seen), which takes small writes without a new block even on a full disk.
        view, _ = edit_through_outage(room_obj, cell, edits, pad=8192)
        if spill_on == "another disk":
            wait(
                [view],
                lambda: told_kept(view) and spill_covers_kernel(room_obj, view),
                "every change kept on the kernel's disk",
                15,
            )
        else:  # nowhere to put it: the views are told the changes are in memory only
            wait(
                [view],
                lambda: bool(outages(view)) and outages(view)[-1]["unkept"] > 0,
                "changes reported as held in memory only",
                15,
            )
            outage = room_obj._replica("main").persister.outage
            assert outage is not None and outage.spill_error is not None
            assert "No space left" in outage.spill_error
        assert edits_in([("", room_obj.cells[0].source)]) == list(range(edits))
        with pytest.raises(StorageError):
            room_obj.flush(timeout=30)
        files = spill_files(room_obj)
        size = files[0].stat().st_size if files else 0
    finally:
        filler.unlink()  # space again
    down_s = time.monotonic() - began
    try:
        wait([view], lambda: back_to_saved(view), "saved once there is space", 30)
        assert spill_files(room_obj) == []
        print(f"\n[outage] disk full {down_s:.1f} s, {edits} edits, spill on {spill_on}: {size} B")
    finally:
        room_obj.close()
    reopen_and_check(lake, room, view)


# --- a crash during the outage -----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_kernel_killed_during_an_outage_loses_nothing_it_spilled(
    shared: str, postgres: Postgres, room: str, slow: bool
) -> None:
    rounds = 5 if slow else 1
    k = 0
    for _ in range(rounds):
        life = start_kernel(shared, room, k)
        try:
            life.wait_for("ready")
            life.wait_for("w", 2)  # writing fine
            postgres.halt()
            try:
                first = life.wait_for("s", 1)  # flushes fail: the spill takes over
                spilled = life.wait_for("s", 4, timeout_s=60)
                assert int(spilled[2]) > 0 and first
            finally:
                killed_at = kill(life)
                postgres.resume()
        finally:
            if life.proc.poll() is None:
                kill(life)
        spilled = life.last("s") or spilled  # the last append before the kill
        spilled_vv = VersionVector.decode(bytes.fromhex(spilled[1]))
        kept = [
            int(parts[1])
            for _, parts in life.lines
            if parts[:1] == ["e"]
            and spilled_vv.includes_vv(VersionVector.decode(bytes.fromhex(parts[2])))
        ]
        room_obj = SqlRoom(room, lake=shared)  # replays the spill, then flushes it
        try:
            room_obj.flush(timeout=60)
            cells = [(c.name, c.source) for c in room_obj.cells]
            found = edits_in(cells)
            assert found == list(range(len(found))), "each edit once, a prefix"
            assert cells == expected_cells(len(found))
            assert len(found) >= max(kept) + 1, "every spilled edit is back"
            assert room_obj.doc.oplog_vv.includes_vv(spilled_vv)
            deadline = time.monotonic() + 10
            while spill_files(room_obj):
                assert time.monotonic() < deadline, "the replayed spill was not removed"
                time.sleep(0.05)
            assert_each_change_once(room_obj._lake, room, room_obj.doc)
        finally:
            room_obj.close()
        made = max(int(p[1]) for _, p in life.lines if p[:1] == ["e"])
        print(
            f"\n[outage crash] {len(found)} edits in the lake after the replay; spilled up to "
            f"edit {max(kept)}, lost {made + 1 - len(found)} unspilled edits of the last "
            f"{(killed_at - life.lines[0][0]):.1f} s life"
        )
        k = len(found)
