"""Spill files (store/spill.py): format, damage, claiming, and replay on open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loro import ExportMode, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import SpillError, ValidationError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover_room
from sqlrooms_nb.store.config import spill_root
from sqlrooms_nb.store.spill import (
    CORRUPT_SUFFIX,
    MAGIC,
    SpillDir,
    read_spill,
    read_spill_file,
    spill_key,
)

from .lake_checks import assert_each_change_once, count_rows
from .store_helpers import new_notebook_into, type_into

LAKE_ID = "sqlite:/nowhere/catalog.sqlite?data=/nowhere/data/"


def edits(n: int) -> tuple[LoroDoc, list[bytes]]:
    """A notebook doc and its history as updates: the notebook's creation, then ``n`` edits
    (each one commit, with its own author so that each is its own Loro change)."""
    doc = nb.new_doc()
    _, cells = new_notebook_into(doc)
    blobs = [doc.export(ExportMode.Updates(VersionVector()))]  # type: ignore[no-untyped-call]
    for i in range(n):
        before = doc.oplog_vv
        type_into(doc, cells[i % len(cells)], f" e{i}", f"author{i}")
        blobs.append(doc.export(ExportMode.Updates(before)))
    return doc, blobs


def store(lake: Lake, room: str, blobs: list[bytes]) -> LoroDoc:
    """Write ``blobs`` to the lake as one writer would (flush + snapshot); returns its doc."""
    doc = nb.new_doc()
    writer = Persister(lake, room, "main", doc, writer=str(doc.peer_id), start_seq=0)
    doc.import_batch(blobs)
    writer.close()
    return doc


def spill_with(tmp_path: Path, blobs: list[bytes], writer: str = "42") -> Path:
    spill = SpillDir(tmp_path, LAKE_ID, "room", "main").writer_file(writer)
    for blob in blobs:
        spill.append(blob, 1)
    spill.close()
    return spill.path


# --- format ----------------------------------------------------------------------------------


def test_appended_updates_read_back_in_order_with_their_header(tmp_path: Path) -> None:
    _, blobs = edits(3)
    path = spill_with(tmp_path, blobs)
    assert path.parent == tmp_path / spill_key(LAKE_ID, "room", "main")
    contents = read_spill_file(path)
    assert contents.problem is None and not contents.corrupt
    assert contents.updates == blobs
    assert contents.valid_bytes == path.stat().st_size
    header = contents.header
    assert header is not None
    assert (header["lake"], header["room"], header["branch"], header["writer"]) == (
        LAKE_ID,
        "room",
        "main",
        "42",
    )
    assert path.read_bytes().startswith(MAGIC)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)  # notebook text is private


def test_a_torn_last_record_is_ignored_at_every_cut_and_never_half_read(tmp_path: Path) -> None:
    _, blobs = edits(3)
    data = spill_with(tmp_path, blobs).read_bytes()
    whole = read_spill(data)
    last = len(data) - (len(blobs[-1]) + 1 + 8)  # where the last record starts
    for cut in range(last + 1, len(data)):  # every crash point inside the last append
        contents = read_spill(data[:cut])
        assert contents.torn, cut
        assert not contents.corrupt
        assert contents.updates == blobs[:-1], cut
        assert contents.valid_bytes == last
    assert whole.updates == blobs


def test_a_flipped_byte_anywhere_in_a_record_is_detected(tmp_path: Path) -> None:
    _, blobs = edits(3)
    data = spill_with(tmp_path, blobs).read_bytes()
    start = len(data) - sum(len(b) + 9 for b in blobs[1:])  # record 2 of 3
    end = start + len(blobs[1]) + 9
    for pos in range(start, end):
        damaged = bytearray(data)
        damaged[pos] ^= 0x40
        contents = read_spill(bytes(damaged))
        assert contents.problem is not None, pos
        assert contents.updates == blobs[:1], pos  # stops at the damage, keeps what precedes
        assert contents.valid_bytes == start


def test_an_empty_file_and_garbage_are_not_spills(tmp_path: Path) -> None:
    empty = read_spill(b"")
    assert empty.header is None and empty.updates == [] and empty.problem is None
    torn_magic = read_spill(MAGIC[:3])
    assert torn_magic.torn and torn_magic.updates == []
    garbage = read_spill(b"not a spill file at all")
    assert garbage.corrupt and garbage.updates == []
    header_only = read_spill(MAGIC)
    assert header_only.header is None and header_only.problem is None


def test_writer_ids_are_decimal_and_names_never_reach_the_path(tmp_path: Path) -> None:
    spills = SpillDir(tmp_path, LAKE_ID, "../../etc", "x/../y")
    assert spills.folder.parent == tmp_path
    assert len(spills.folder.name) == 16 and set(spills.folder.name) <= set("0123456789abcdef")
    for bad in ("../1", "1/2", "", "12a", "1" * 21):
        with pytest.raises(ValidationError):
            spills.writer_file(bad)


def test_a_failed_append_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, blobs = edits(2)
    spill = SpillDir(tmp_path, LAKE_ID, "room", "main").writer_file("7")
    spill.append(blobs[0], 1)
    size = spill.path.stat().st_size
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:  # a disk that fills mid-record
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data)[: len(data) // 2])

    def failing(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(SpillError, match="No space left"):
        spill.append(blobs[1], 1)
    monkeypatch.setattr(os, "write", real_write)
    assert spill.path.stat().st_size == size  # the half record was truncated away
    assert (spill.records, spill.size_bytes) == (1, size)
    spill.append(blobs[1], 1)
    assert read_spill_file(spill.path).updates == blobs[:2]


def test_the_spill_root_is_a_state_folder_unless_set() -> None:
    assert spill_root({"SQLROOMS_NB_SPILL_DIR": "/srv/spill"}) == Path("/srv/spill")
    assert spill_root({"XDG_STATE_HOME": "/st"}) == Path("/st/sqlrooms_nb/spill")
    assert spill_root({}) == Path.home() / ".local/state/sqlrooms_nb/spill"


# --- claiming -------------------------------------------------------------------------------


def test_a_live_writers_file_is_not_claimed_and_an_orphan_only_once(tmp_path: Path) -> None:
    _, blobs = edits(1)
    spills = SpillDir(tmp_path, LAKE_ID, "room", "main")
    live = spills.writer_file("1")
    live.append(blobs[0], 1)
    assert spills.claim_orphans() == []  # its writer holds the lock
    live.close()  # the writer is gone (a crash releases the lock the same way)
    first = spills.claim_orphans()
    assert [o.path for o in first] == [live.path]
    assert spills.claim_orphans() == []  # claimed: nobody else replays it
    first[0].release()
    again = spills.claim_orphans()
    assert [o.contents.updates for o in again] == [blobs[:1]]
    again[0].remove()
    assert not live.path.exists()
    assert spills.claim_orphans() == []


def test_a_killed_writer_leaves_a_claimable_file(tmp_path: Path) -> None:
    _, blobs = edits(1)
    spills = SpillDir(tmp_path, LAKE_ID, "room", "main")
    path = spill_with(tmp_path, blobs, writer="5")
    holder = subprocess.Popen(  # holds the lock like a live kernel, then is killed
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert spills.claim_orphans() == []
    finally:
        holder.kill()
        holder.wait()
    claimed = spills.claim_orphans()
    assert [o.contents.updates for o in claimed] == [blobs]
    claimed[0].release()


def test_files_of_other_rooms_and_empty_files_are_left_alone(tmp_path: Path) -> None:
    _, blobs = edits(1)
    other = SpillDir(tmp_path, LAKE_ID, "other", "main").writer_file("3")
    other.append(blobs[0], 1)
    other.close()
    spills = SpillDir(tmp_path, LAKE_ID, "room", "main")
    spills.folder.mkdir(parents=True, exist_ok=True)
    moved = spills.folder / "3.spill"
    other.path.rename(moved)  # e.g. a hash collision or a file copied by hand
    empty = spills.folder / "4.spill"
    empty.write_bytes(b"")
    assert spills.claim_orphans() == []
    assert moved.exists()  # not ours: never touched
    assert not empty.exists()  # a crash while creating it: it held nothing


# --- replay on open ---------------------------------------------------------------------------


def test_recovery_replays_an_orphan_and_the_flush_writes_it_once_then_removes_it(
    lake: Lake, room: str, tmp_path: Path
) -> None:
    doc, blobs = edits(4)
    older = store(lake, room, blobs[:3])  # the lake holds the notebook and two edits
    spills = SpillDir(tmp_path, lake.config.identity, room, "main")
    spill = spills.writer_file("99")  # a crashed kernel spilled edits 1..3 (1 also landed)
    for blob in blobs[2:]:
        spill.append(blob, 1)
    spill.close()

    recovered_doc = nb.new_doc()
    recovered = recover_room(lake, room, "main", recovered_doc, spills=spills, warm=False)
    assert recovered_doc.get_deep_value() == doc.get_deep_value()
    assert recovered.saved_version == older.oplog_vv  # what the lake alone holds
    assert [o.path for o in recovered.spills] == [spill.path]
    assert spill.path.exists()  # not before the lake has it
    writer = Persister(
        lake,
        room,
        "main",
        recovered_doc,
        writer="2",
        start_seq=recovered.last_seq,
        policy=FlushPolicy(max_delay_s=0.01),
        orphans=recovered.spills,
        saved_version=recovered.saved_version,
    )
    writer.flush()
    assert writer.saved_version == doc.oplog_vv
    writer.close()
    assert not spill.path.exists()  # removed once the lake holds it
    assert count_rows(lake, "updates", room) == 2
    assert_each_change_once(lake, room, doc)
    again = nb.new_doc()  # opening again replays nothing
    assert recover_room(lake, room, "main", again, spills=spills, warm=False).spills == ()
    assert again.get_deep_value() == doc.get_deep_value()


def test_replaying_a_spill_the_lake_already_holds_writes_nothing(
    lake: Lake, room: str, tmp_path: Path
) -> None:
    doc, blobs = edits(3)
    store(lake, room, blobs)  # all in the lake
    spills = SpillDir(tmp_path, lake.config.identity, room, "main")
    spill = spills.writer_file("8")  # a kernel that committed, then died before removing it
    for blob in blobs:
        spill.append(blob, 1)
    spill.close()
    rows_before = count_rows(lake, "updates", room)
    for _ in range(2):  # replay is idempotent: twice changes nothing either
        target = nb.new_doc()
        recovered = recover_room(lake, room, "main", target, spills=spills, warm=False)
        assert target.get_deep_value() == doc.get_deep_value()
        writer = Persister(
            lake,
            room,
            "main",
            target,
            writer=str(target.peer_id),
            start_seq=recovered.last_seq,
            orphans=recovered.spills,
            saved_version=recovered.saved_version,
        )
        writer.close()
    assert count_rows(lake, "updates", room) == rows_before
    assert not spill.path.exists()


def test_a_damaged_spill_replays_what_precedes_the_damage_and_is_kept_aside(
    lake: Lake, room: str, tmp_path: Path
) -> None:
    _, blobs = edits(2)
    spills = SpillDir(tmp_path, lake.config.identity, room, "main")
    spill = spills.writer_file("9")
    for blob in blobs:
        spill.append(blob, 1)
    spill.close()
    data = bytearray(spill.path.read_bytes())
    data[-3] ^= 0xFF  # inside the last record, which is complete: damage, not a torn tail
    spill.path.write_bytes(bytes(data))
    target = nb.new_doc()
    recovered = recover_room(lake, room, "main", target, spills=spills, warm=False)
    expected = nb.new_doc()
    expected.import_batch(blobs[:2])
    assert target.get_deep_value() == expected.get_deep_value()
    writer = Persister(
        lake,
        room,
        "main",
        target,
        writer=str(target.peer_id),
        start_seq=recovered.last_seq,
        orphans=recovered.spills,
        saved_version=recovered.saved_version,
    )
    writer.close()
    assert not spill.path.exists()
    assert spill.path.with_name(spill.path.name + CORRUPT_SUFFIX).exists()


def test_a_spill_whose_base_is_missing_is_not_imported(
    lake: Lake, room: str, tmp_path: Path
) -> None:
    _, blobs = edits(3)
    spills = SpillDir(tmp_path, lake.config.identity, room, "main")
    spill = spills.writer_file("11")
    spill.append(blobs[2], 1)  # depends on edits the lake never got
    spill.close()
    target = nb.new_doc()
    recovered = recover_room(lake, room, "main", target, spills=spills, warm=False)
    assert recovered.spills == ()
    assert target.oplog_vv == VersionVector()  # nothing stuck pending in the document
    assert spill.path.exists()  # left for a person to look at
