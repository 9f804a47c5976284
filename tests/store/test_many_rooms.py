"""10,000 rooms in one lake: opening one costs what that room costs (issue 5).

The lakes are built as benchmarks/many_rooms.py builds them (which prints the figures); here
the check is correctness at that size plus a generous bound on the open-time ratio."""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import pytest

import sqlrooms_nb as snb
from sqlrooms_nb.store import Lake

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "many_rooms.py"
spec = importlib.util.spec_from_file_location("many_rooms", BENCH)
assert spec is not None and spec.loader is not None
many_rooms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(many_rooms)

ROOMS = 10_000


def median_load_ms(lake: str, room: str) -> float:
    opened = Lake.open(lake)
    try:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            stored = opened.load(room, "main")
            times.append((time.perf_counter() - t0) * 1000)
            assert stored.snapshot is not None
        return statistics.median(times)
    finally:
        opened.release()


@pytest.mark.timeout(300)
def test_one_room_among_10000_opens_like_a_room_alone(tmp_path: Path) -> None:
    one, many = str(tmp_path / "one"), str(tmp_path / "many")
    many_rooms.seed_room(one, "room-00000")
    many_rooms.seed_room(many, "room-00000")
    many_rooms.copy_room(many, "room-00000", ROOMS)
    lake = Lake.open(many)
    try:
        cur = lake.cursor()
        count = cur.execute(
            f"SELECT count(DISTINCT room) FROM {lake.table('snapshots')}"
        ).fetchone()
        cur.close()
    finally:
        lake.release()
    assert count == (ROOMS,)
    with snb.SqlRoom(f"room-{ROOMS - 1:05d}", lake=many) as last:
        assert [c.name for c in last.cells][:2] == ["one", "two"]
        last.add_cell("select 3", name="three")
    with snb.SqlRoom("room-00000", lake=many) as first:  # untouched by the edit above
        assert "three" not in [c.name for c in first.cells]
    alone, among = median_load_ms(one, "room-00000"), median_load_ms(many, "room-00000")
    print(f"Lake.load of one room: alone {alone:.1f} ms, among {ROOMS:,}: {among:.1f} ms")
    assert among < 3 * alone + 50, (alone, among)
