"""Checksums on stored blobs: a flipped byte in an ``updates`` row or a snapshot is detected,
named, and the room opens from the rest, never silently wrong (issue 6, part 4).

The damage is done where it would happen: an ``updates`` row is flipped inside the SQLite
catalog that holds it (DuckLake inlines small inserts there), a snapshot inside its parquet
file (a flipped data byte there reads back silently different: only the checksum notices).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loro import ExportMode, LoroDoc

from sqlrooms_nb import SqlRoom
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.cli import main as cli
from sqlrooms_nb.errors import CorruptionError
from sqlrooms_nb.store import FlushPolicy, Lake, Persister, recover, recover_room
from sqlrooms_nb.store.checksums import SNAPSHOT_BLOBS, UPDATE_BLOBS, blob_checksum
from tests.fakes import FakeView
from tests.store.store_helpers import new_notebook_into, type_into

ROOM = "damaged"
NO_FLUSH = FlushPolicy(max_delay_s=1e9, poll_s=None)


# --- building a lake and damaging it ----------------------------------------------------------


def _persister(lake: Lake, doc: LoroDoc, start_seq: int) -> Persister:
    return Persister(
        lake, ROOM, "main", doc, writer=str(doc.peer_id), start_seq=start_seq, policy=NO_FLUSH
    )


def build(folder: Path, *, final_snapshot: bool = True) -> tuple[LoroDoc, list[str]]:
    """A room with snapshot S1 (after seq 1), updates seq 2 and 3 (3 builds on 2: same
    cell) and, with ``final_snapshot``, snapshot S2 covering them. Returns the writer's doc
    and cell ids; the lake is released."""
    lake = Lake.open(folder)
    try:
        doc = nb.new_doc()
        first = _persister(lake, doc, 0)
        _, cells = new_notebook_into(doc)
        first.close()  # seq 1 + snapshot S1
        second = _persister(lake, doc, 1)
        type_into(doc, cells[0], " -- two", "ana")
        second.flush()  # seq 2
        type_into(doc, cells[0], " -- three", "bob")
        second.flush()  # seq 3
        second.close()  # snapshot S2
        if not final_snapshot:  # as if the kernel died before its final snapshot
            cur = lake.cursor()
            cur.execute(f"DELETE FROM {lake.table('snapshots')} WHERE room = ? AND seq = 3", [ROOM])
            cur.close()
    finally:
        lake.release()
    return doc, cells


def flip_update(folder: Path, seq: int, column: str = "bytes", at: float = 0.5) -> None:
    """Flip one bit of ``column`` of the ``updates`` row ``seq`` where DuckLake inlined it
    (the SQLite catalog). The lake must be released."""
    con = sqlite3.connect(folder / "catalog.sqlite")
    try:
        names = [
            row[0]
            for row in con.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE 'ducklake_inlined_data_%'"
            )
        ]
        for name in names:
            columns = {row[1] for row in con.execute(f'PRAGMA table_info("{name}")')}
            if not {"vv_from", "seq", column} <= columns:
                continue
            row = con.execute(
                f'SELECT rowid, "{column}" FROM "{name}" '
                "WHERE room = ? AND seq = ? AND end_snapshot IS NULL",
                [ROOM, seq],
            ).fetchone()
            if row is None:
                continue
            blob = bytearray(row[1])
            assert blob, f"{column} of seq {seq} is empty"
            blob[int(len(blob) * at)] ^= 0x04
            con.execute(
                f'UPDATE "{name}" SET "{column}" = ? WHERE rowid = ?', [bytes(blob), row[0]]
            )
            con.commit()
            return
    finally:
        con.close()
    raise AssertionError(f"updates row seq {seq} is not inlined in the catalog")


def snapshot_blob(folder: Path, seq: int) -> bytes:
    lake = Lake.open(folder)
    try:
        cur = lake.cursor()
        row = cur.execute(
            f"SELECT bytes FROM {lake.table('snapshots')} WHERE room = ? AND seq = ?", [ROOM, seq]
        ).fetchone()
        cur.close()
    finally:
        lake.release()
    assert row is not None
    return bytes(row[0])


def flip_snapshot(folder: Path, seq: int, at: float = 0.5) -> None:
    """Flip one bit inside the snapshot ``seq``'s blob, in its parquet file. The lake must be
    released."""
    path, where = _stored_at(folder, snapshot_blob(folder, seq), at)
    data = bytearray(path.read_bytes())
    data[where + 6] ^= 0x04
    path.write_bytes(bytes(data))


def _stored_at(
    folder: Path, blob: bytes, at: float = 0.5, lake_snapshot: int | None = None
) -> tuple[Path, int]:
    """The parquet file holding ``blob`` and where a piece of it sits there. The files are
    snappy-compressed: literal runs hold the blob's bytes verbatim, copies do not; this takes
    the first 12-byte piece from ``at`` on that occurs exactly once on disk (in the file that
    DuckLake snapshot ``lake_snapshot`` added, when given: a fork's first snapshot has the
    same bytes as its parent's)."""
    files = {path: path.read_bytes() for path in (folder / "data").rglob("*.parquet")}
    if lake_snapshot is not None:
        con = sqlite3.connect(folder / "catalog.sqlite")
        added = {
            Path(row[0]).name
            for row in con.execute(
                "SELECT path FROM ducklake_data_file WHERE begin_snapshot = ?", [lake_snapshot]
            )
        }
        con.close()
        files = {path: data for path, data in files.items() if path.name in added}
    start = int((len(blob) - 12) * at)
    for offset in [*range(start, len(blob) - 12), *range(0, start)]:
        probe = bytes(blob[offset : offset + 12])
        found = [path for path, data in files.items() if probe in data]
        if len(found) == 1 and files[found[0]].count(probe) == 1:
            return found[0], files[found[0]].find(probe)
    raise AssertionError("no piece of the blob is stored verbatim")


def cells_of(doc: LoroDoc) -> list[tuple[str, str]]:
    return [(c.id, c.source) for c in nb.read_cells(doc)]


@dataclass(frozen=True)
class Built:
    """A lake made by :func:`build` (kept as a template): the writer's id, the room's
    cells as ``(id, source)``, its cell ids, and a snapshot of the full document."""

    template: Path
    writer: str
    expected: list[tuple[str, str]]
    cells: list[str]
    full: bytes

    def copy(self, folder: Path) -> Path:
        shutil.copytree(self.template, folder)
        return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Built]:
    """Both layouts of :func:`build`, made once per module (~2 s each): ``True`` with the
    final snapshot S2, ``False`` without."""
    out = {}
    for final in (True, False):
        folder = tmp_path_factory.mktemp("template") / "lake"
        doc, cells = build(folder, final_snapshot=final)
        out[final] = Built(
            folder, str(doc.peer_id), cells_of(doc), cells, doc.export(ExportMode.Snapshot())
        )
    return out


def counts(folder: Path) -> dict[str, int]:
    lake = Lake.open(folder)
    try:
        cur = lake.cursor()
        out = {
            t: int(cur.execute(f"SELECT count(*) FROM {lake.table(t)}").fetchone()[0])
            for t in ("updates", "changes", "snapshots")
        }
        cur.close()
    finally:
        lake.release()
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "lake"


# --- what is stored ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_every_stored_blob_carries_the_checksum_of_its_bytes(built: dict[bool, Built]) -> None:
    lake = Lake.open(built[True].template)
    try:
        cur = lake.cursor()
        updates = cur.execute(
            f"SELECT {', '.join(UPDATE_BLOBS)}, checksum FROM {lake.table('updates')}"
        ).fetchall()
        snapshots = cur.execute(
            f"SELECT {', '.join(SNAPSHOT_BLOBS)}, checksum FROM {lake.table('snapshots')}"
        ).fetchall()
        cur.close()
    finally:
        lake.release()
    assert len(updates) == 3 and len(snapshots) == 2
    for *blobs, checksum in [*updates, *snapshots]:
        assert checksum is not None and checksum == blob_checksum(blobs)
        assert checksum != blob_checksum([blobs[0]])  # the version blobs count too


def test_the_checksum_sees_a_flipped_bit_anywhere_and_bytes_moving_between_blobs() -> None:
    blobs = [b"loro update bytes", b"\x01\x02", b"\x03", b""]
    base = blob_checksum(blobs)
    for i in range(len(blobs[0])):
        for bit in range(8):
            flipped = bytearray(blobs[0])
            flipped[i] ^= 1 << bit
            assert blob_checksum([bytes(flipped), *blobs[1:]]) != base
    assert blob_checksum([b"loro update byte", b"s\x01\x02", b"\x03", b""]) != base
    assert blob_checksum([*blobs[:3], None]) != base  # NULL is not empty


def test_the_checksum_is_crc32_of_length_prefixed_blobs() -> None:
    """The algorithm is documented (lake docstring, checksums module): keep it stable."""
    assert blob_checksum([b"abc"]) == zlib.crc32(b"abc", zlib.crc32((3).to_bytes(8, "little")))


def test_checksum_speed_on_a_5_mb_snapshot() -> None:
    blob = random.Random(5).randbytes(5 * 1024 * 1024)
    runs = 10
    started = time.perf_counter()
    for _ in range(runs):
        blob_checksum([blob, b"version", b"frontiers"])
    per_run = (time.perf_counter() - started) / runs
    mb_s = 5 / per_run
    print(f"\ncrc32 checksum of a 5 MiB snapshot: {per_run * 1000:.2f} ms ({mb_s:.0f} MiB/s)")
    assert mb_s > 100  # ~3000 MiB/s measured on an idle machine; a parquet write takes ~23 ms


# --- a damaged snapshot ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_flipped_byte_in_the_latest_snapshot_is_named_and_the_room_opens_from_the_rest(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[True]
    flip_snapshot(made.copy(folder), 3)
    lake = Lake.open(folder)
    try:
        stored = lake.load(ROOM, "main")
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
    finally:
        lake.release()
    # The damaged S2 is named; S1 + seq 2 and 3 are read instead.
    (problem,) = stored.problems
    assert (problem.table, problem.room, problem.branch) == ("snapshots", ROOM, "main")
    assert (problem.writer, problem.seq) == (made.writer, 3) and problem.lake_snapshot
    message = str(problem)
    assert f"writer {made.writer} with seq 3 (lake snapshot {problem.lake_snapshot})" in message
    assert "snapshot of room 'damaged' branch 'main'" in message and "checksum" in message
    assert stored.snapshot_seq == 1 and stored.update_seqs == [2, 3]
    assert cells_of(restored) == made.expected
    assert recovered.complete and [e.key for e in recovered.problems] == [problem.key]
    assert "Nothing is missing" in recovered.report


@pytest.mark.timeout(180)
def test_a_room_whose_snapshot_was_damaged_reports_it_then_heals_with_a_fresh_snapshot(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[True]
    flip_snapshot(made.copy(folder), 3)
    before = counts(folder)
    room = SqlRoom(ROOM, lake=folder)
    try:
        assert [(c.id, c.source) for c in room.cells] == made.expected
        assert [(e.table, e.seq) for e in room.problems] == [("snapshots", 3)]
        view = FakeView(room, "v1")
        view.hello()
        view.pump()
        errors = [m for m in view.received if m["kind"] == "error"]
        assert [e["code"] for e in errors] == ["corrupt"]
        assert "seq 3" in errors[0]["message"] and "Nothing is missing" in errors[0]["message"]
    finally:
        room.close()
    assert counts(folder)["snapshots"] == before["snapshots"] + 1  # the fresh one
    again = SqlRoom(ROOM, lake=folder)
    try:
        assert again.problems == []  # the fresh snapshot covers everything: sound rows only
        assert [(c.id, c.source) for c in again.cells] == made.expected
    finally:
        again.close()


@pytest.mark.timeout(120)
def test_an_unreadable_snapshot_file_is_passed_over_and_the_room_opens_from_the_updates(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[True]
    made.copy(folder)
    path, _ = _stored_at(folder, snapshot_blob(folder, 3))  # break S2's file footer
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x40  # the footer length: DuckDB can no longer read the file
    path.write_bytes(bytes(data))
    lake = Lake.open(folder)
    try:
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
    finally:
        lake.release()
    assert recovered.problems and "cannot be read" in str(recovered.problems[0])
    assert recovered.problems[0].table == "snapshots"
    assert cells_of(restored) == made.expected  # every update row is still there
    assert recovered.complete


@pytest.mark.timeout(120)
def test_a_branch_whose_fork_snapshot_is_damaged_is_incomplete_not_empty_and_fine(
    folder: Path,
) -> None:
    """A fork's first snapshot is the only row holding what came before the fork: without it
    the branch would open empty, so its lineage's fork version must be in the document."""
    with SqlRoom(ROOM, lake=folder) as room:
        room.add_cell("select 1 as x", name="one")
        room.branch("what-if")
    lake = Lake.open(folder)
    try:
        cur = lake.cursor()
        row = cur.execute(
            f"SELECT bytes, snapshot_id FROM {lake.table('snapshots')} WHERE branch = 'what-if'"
        ).fetchone()
        cur.close()
    finally:
        lake.release()
    path, where = _stored_at(folder, bytes(row[0]), lake_snapshot=int(row[1]))
    data = bytearray(path.read_bytes())
    data[where + 6] ^= 0x04
    path.write_bytes(bytes(data))
    lake = Lake.open(folder)
    try:
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "what-if", restored, warm=False)
    finally:
        lake.release()
    assert [(e.table, e.branch, e.seq) for e in recovered.problems] == [("snapshots", "what-if", 0)]
    assert nb.read_cells(restored) == []
    assert not recovered.complete and "forked at" in recovered.report


# --- a damaged updates row ---------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_flipped_byte_in_an_update_row_covered_by_a_sound_snapshot_costs_nothing(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[True]
    flip_update(made.copy(folder), 2)
    lake = Lake.open(folder)
    try:
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
    finally:
        lake.release()
    assert recovered.problems == ()  # S2 covers seq 2: the row is not read at all
    assert cells_of(restored) == made.expected


@pytest.mark.timeout(180)
def test_a_flipped_byte_in_an_update_row_nothing_covers_is_reported_never_silent(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[False]
    expected_before = [(made.cells[0], "select 0"), (made.cells[1], "select 1")]
    flip_update(made.copy(folder), 2)
    lake = Lake.open(folder)
    try:
        stored = lake.load(ROOM, "main")
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
        with pytest.raises(CorruptionError, match="seq 2") as raised:
            recover(lake, ROOM, "main", nb.new_doc())
    finally:
        lake.release()
    (problem,) = stored.problems
    assert (problem.table, problem.writer, problem.seq) == ("updates", made.writer, 2)
    assert (
        f"updates row of room 'damaged' branch 'main' written by writer {made.writer} with seq 2"
        in str(problem)
    )
    assert stored.update_seqs == [3]  # seq 2 left out
    # seq 3 builds on seq 2: it waits inside Loro; the room holds S1 only, and says so.
    assert cells_of(restored) == expected_before
    assert not recovered.complete and recovered.missing
    assert "INCOMPLETE" in recovered.report and "INCOMPLETE" in str(raised.value)
    assert raised.value.seq == 2 and raised.value.table == "updates"

    before = counts(folder)
    room = SqlRoom(ROOM, lake=folder)
    try:
        assert [(c.id, c.source) for c in room.cells] == expected_before
        assert [(e.table, e.seq) for e in room.problems] == [("updates", 2)]
        assert "INCOMPLETE" in room.problem_report
        view = FakeView(room, "v1")
        view.hello()
        view.pump()
        errors = [m for m in view.received if m["kind"] == "error"]
        assert [e["code"] for e in errors] == ["corrupt"]
        assert "seq 2" in errors[0]["message"] and "INCOMPLETE" in errors[0]["message"]
        with pytest.raises(CorruptionError, match="INCOMPLETE"):
            room.at_saved(room.saved_versions()[0].snapshot_id)
    finally:
        room.close()
    assert counts(folder) == before  # no snapshot hides the damage
    again = SqlRoom(ROOM, lake=folder)
    try:
        assert [(e.table, e.seq) for e in again.problems] == [("updates", 2)]  # at every open
    finally:
        again.close()


@pytest.mark.timeout(240)
def test_a_view_that_still_holds_the_changes_repairs_the_room(
    built: dict[bool, Built], folder: Path
) -> None:
    """A view that still holds the lost changes sends them after its hello: they are written
    again, the next open finds nothing missing and writes a fresh snapshot, and the open
    after that reads sound rows only."""
    made = built[False]
    flip_update(made.copy(folder), 2)
    room = SqlRoom(ROOM, lake=folder)
    try:
        assert room.problems
        holder = FakeView(room, "holder")
        holder.doc.import_(made.full)  # the whole document, as a tab open all along has it
        holder.hello()
        holder.pump()  # welcome: it sends what the kernel lacks
        assert [(c.id, c.source) for c in room.cells] == made.expected
        room.flush()
    finally:
        room.close()
    second = SqlRoom(ROOM, lake=folder)
    try:
        assert [(e.table, e.seq) for e in second.problems] == [("updates", 2)]  # still there
        assert "Nothing is missing" in second.problem_report
        assert [(c.id, c.source) for c in second.cells] == made.expected
    finally:
        second.close()  # writes the fresh snapshot
    third = SqlRoom(ROOM, lake=folder)
    try:
        assert third.problems == []
        assert [(c.id, c.source) for c in third.cells] == made.expected
    finally:
        third.close()


@pytest.mark.timeout(120)
def test_the_cli_refuses_to_export_an_incomplete_room_and_names_the_row(
    built: dict[bool, Built], folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_update(built[False].copy(folder), 2)
    code = cli(["--lake", str(folder), "export", ROOM, "--format", "json"])
    err = capsys.readouterr().err
    assert code == 2
    assert "seq 2" in err and "INCOMPLETE" in err
    assert err.startswith("sqlrooms-nb: error:")


@pytest.mark.timeout(120)
def test_a_damaged_version_vector_is_named_and_the_sound_update_beside_it_still_used(
    built: dict[bool, Built], folder: Path
) -> None:
    """One checksum covers a row's blobs; the damage here is in ``vv_to``, which recovery
    does not need: the update passes Loro's own check of its body and is used."""
    made = built[False]
    flip_update(made.copy(folder), 3, column="vv_to")
    lake = Lake.open(folder)
    try:
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
    finally:
        lake.release()
    assert [(e.table, e.seq) for e in recovered.problems] == [("updates", 3)]
    assert "passes Loro's own checksum, so it was used" in str(recovered.problems[0])
    assert recovered.complete and cells_of(restored) == made.expected


# --- other writers' rows -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_tailing_a_damaged_row_of_another_writer_names_it_once_and_stays_before_it(
    built: dict[bool, Built], folder: Path
) -> None:
    flip_update(built[False].copy(folder), 2)
    lake = Lake.open(folder)
    errors: list[Exception] = []
    try:
        cur = lake.cursor()
        with pytest.raises(CorruptionError, match="seq 2") as raised:
            lake.tail(cur, ROOM, "main", after=0, writer="someone-else")
        cur.close()
        assert raised.value.table == "updates" and raised.value.seq == 2
        follower = Persister(
            lake,
            ROOM,
            "main",
            nb.new_doc(),
            writer="follower",
            start_seq=3,
            policy=FlushPolicy(max_delay_s=1e9, poll_s=0.05),
            on_error=errors.append,
        )
        time.sleep(1.0)  # ~20 polls
        assert follower.lake_version == 0  # it stays before the damaged row
        follower.close()
    finally:
        lake.release()
    assert [type(e) for e in errors] == [CorruptionError]  # reported once, not every poll
    assert "seq 2" in str(errors[0])


# --- old lakes -----------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_layout_4_lake_gains_checksum_columns_and_its_rows_read_as_before(
    built: dict[bool, Built], folder: Path
) -> None:
    made = built[False]
    lake = Lake.open(made.copy(folder))
    cur = lake.cursor()
    for table in ("updates", "snapshots"):
        cur.execute(f"ALTER TABLE {lake.table(table)} DROP COLUMN checksum")
    cur.execute(f"UPDATE {lake.table('lake_meta')} SET value = '4' WHERE key = 'schema_version'")
    layout_4 = int(cur.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])
    cur.close()
    lake.release()

    lake = Lake.open(folder)  # upgrades to layout 5
    try:
        cur = lake.cursor()
        version = cur.execute(
            f"SELECT value FROM {lake.table('lake_meta')} WHERE key = 'schema_version'"
        ).fetchall()
        nulls = cur.execute(
            f"SELECT count(*), count(checksum) FROM {lake.table('updates')}"
        ).fetchone()
        cur.close()
        restored = nb.new_doc()
        recovered = recover_room(lake, ROOM, "main", restored, warm=False)
        then = nb.new_doc()  # time travel to before the upgrade: tables without checksums
        recover_room(lake, ROOM, "main", then, warm=False, at_snapshot=layout_4)
        writer = _persister(lake, restored, recovered.last_seq)
        type_into(restored, made.cells[1], " -- new", "cy")
        writer.flush()
        writer.close()
        cur = lake.cursor()
        fresh = cur.execute(
            f"SELECT checksum, {', '.join(UPDATE_BLOBS)} FROM {lake.table('updates')} WHERE seq = 4"
        ).fetchone()
        cur.close()
    finally:
        lake.release()
    assert version == [("5",)]
    assert nulls == (3, 0)  # old rows: NULL checksums
    assert recovered.problems == () and cells_of(restored)[0] == made.expected[0]
    assert cells_of(then) == made.expected  # (restored got an edit since)
    assert fresh is not None and fresh[0] == blob_checksum(fresh[1:])  # new rows: checked

    # An old row has no checksum of ours, but Loro's own catches a flipped byte in its body.
    flip_update(folder, 2)
    lake = Lake.open(folder)
    try:
        cur = lake.cursor()
        cur.execute(f"DELETE FROM {lake.table('snapshots')} WHERE room = ? AND seq > 1", [ROOM])
        cur.close()
        again = recover_room(lake, ROOM, "main", nb.new_doc(), warm=False)
    finally:
        lake.release()
    assert [(e.table, e.seq) for e in again.problems] == [("updates", 2)]
    assert "Loro refuses it" in str(again.problems[0]) and not again.complete


# --- random damage -------------------------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("final_snapshot", [True, False])
def test_random_flips_are_never_silently_wrong(
    built: dict[bool, Built], tmp_path: Path, slow: bool, final_snapshot: bool
) -> None:
    """A bit flipped at a random place of a random stored blob: the room either opens with
    exactly the right content, or says what is wrong; never the wrong content in silence."""
    made = built[final_snapshot]
    rng = random.Random(6 if final_snapshot else 7)
    trials = 30 if slow else 2
    outcomes = {"right": 0, "reported, complete": 0, "reported, incomplete": 0}
    for trial in range(trials):
        folder = made.copy(tmp_path / f"t{trial}")
        where = rng.choice(["update", "snapshot"] if final_snapshot else ["update"])
        at = rng.random()
        if where == "update":
            flip_update(folder, rng.choice([1, 2, 3]), rng.choice(UPDATE_BLOBS), at)
        else:
            flip_snapshot(folder, rng.choice([1, 3]), at)
        lake = Lake.open(folder)
        try:
            restored = nb.new_doc()
            recovered = recover_room(lake, ROOM, "main", restored, warm=False)
        finally:
            lake.release()
        if not recovered.problems:
            outcomes["right"] += 1
            assert cells_of(restored) == made.expected, (trial, where)
        elif recovered.complete:
            outcomes["reported, complete"] += 1
            assert cells_of(restored) == made.expected, (trial, where, recovered.report)
        else:
            outcomes["reported, incomplete"] += 1
            assert "INCOMPLETE" in recovered.report
        shutil.rmtree(folder)
    print(f"\n{trials} random flips ({'with' if final_snapshot else 'without'} S2): {outcomes}")
    assert sum(outcomes.values()) == trials
