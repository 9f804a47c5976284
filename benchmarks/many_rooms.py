"""Open time of one room in a lake holding 1 room vs 10,000 rooms (issue 5, "many rooms").

    .venv/bin/python benchmarks/many_rooms.py [--rooms 10000] [--shared]

Builds two lakes side by side: one with a single room, one with ``--rooms`` rooms. Every room
is a real notebook (a few cells, typed into, closed: one snapshot plus its update and change
rows); the rows of the many rooms are written in bulk (one INSERT per table, as a long-lived
lake's maintenance leaves them: few large files). Then times, in fresh processes' worth of
repetitions, ``Lake.load`` of one room and ``SqlRoom(...)`` open (recovery + history views)
in both lakes, and prints medians and the ratio. ``--shared`` does the same on a PostgreSQL
catalog + S3 data path (the test servers from tests/store/servers.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlrooms_nb as snb  # noqa: E402
from sqlrooms_nb.store import Lake  # noqa: E402


def seed_room(lake: str, room: str) -> None:
    """One real room: three cells, some typing, closed (flushed + snapshot)."""
    with snb.SqlRoom(room, lake=lake, author="ana") as r:
        a = r.add_cell("select 1 as x", name="one")
        r.add_cell("select x + 1 as y from one", name="two")
        r.add_cell("# notes", kind="markdown")
        for i in range(20):
            r.update_cell(a, source=f"select {i} as x")
            r.flush()


def copy_room(lake_uri: str, room: str, rooms: int) -> None:
    """Write ``rooms - 1`` copies of ``room``'s rows under other room ids, one INSERT per
    table (the copies' bytes are the same notebook: Loro blobs carry no room id)."""
    lake = Lake.open(lake_uri)
    cur = lake.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        for table in ("snapshots", "updates", "changes"):
            rows = cur.execute(
                f"SELECT * FROM {lake.table(table)} WHERE room = ? AND branch = 'main'", [room]
            ).to_arrow_table()
            copies = []
            for i in range(1, rooms):
                name = f"room-{i:05d}"
                copies.append(rows.set_column(0, "room", pa.array([name] * rows.num_rows)))
            big = pa.concat_tables(copies)
            cur.register("copies", big)
            cur.execute(f"INSERT INTO {lake.table(table)} BY NAME SELECT * FROM copies")
            cur.unregister("copies")
        cur.execute("COMMIT")
    finally:
        cur.close()
        lake.release()


def time_open(lake_uri: str, room: str, repeats: int) -> tuple[float, float]:
    """Median ms of ``Lake.load`` and of a ``SqlRoom`` open + close of ``room``."""
    lake = Lake.open(lake_uri)  # kept open: the process-wide lake, as in a kernel
    try:
        loads, opens = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            lake.load(room, "main")
            loads.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            with snb.SqlRoom(room, lake=lake_uri) as r:
                assert len(r.cells) == 3
                opens.append((time.perf_counter() - t0) * 1000)
    finally:
        lake.release()
    return statistics.median(loads), statistics.median(opens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shared", action="store_true", help="PostgreSQL + S3 lakes")
    args = parser.parse_args()
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.shared:
            from tests.store.servers import HOST, S3_KEY_ID, S3_SECRET, Postgres, S3Server

            pg, s3 = Postgres.start(), S3Server.start()
            servers = [pg, s3]
            os.environ.update(
                PGPASSWORD=pg.password,
                AWS_ACCESS_KEY_ID=S3_KEY_ID,
                AWS_SECRET_ACCESS_KEY=S3_SECRET,
            )

            def uri(name: str) -> str:
                pg.psql(f"CREATE DATABASE {name}", dbname="postgres")
                return (
                    f"postgresql://{pg.user}@{HOST}:{pg.port}/{name}?data=s3://{s3.bucket}/"
                    f"{name}&s3_endpoint={s3.endpoint}&s3_url_style=path&s3_use_ssl=false"
                    "&s3_region=us-east-1"
                )
        else:

            def uri(name: str) -> str:
                return str(Path(tmp) / name)

        try:
            one, many = uri("one_room"), uri("many_rooms")
            seed_room(one, "room-00000")
            seed_room(many, "room-00000")
            t0 = time.perf_counter()
            copy_room(many, "room-00000", args.rooms)
            print(f"wrote {args.rooms:,} rooms in {time.perf_counter() - t0:.1f} s", flush=True)
            target = "room-00000"
            load1, open1 = time_open(one, target, args.repeats)
            loadn, openn = time_open(many, target, args.repeats)
            kind = "PostgreSQL + S3" if args.shared else "embedded (SQLite + local files)"
            print(f"lake: {kind}; median of {args.repeats}")
            print(
                f"  Lake.load      1 room: {load1:7.1f} ms   {args.rooms:,} rooms: {loadn:7.1f} ms"
                f"   ratio {loadn / load1:.2f}"
            )
            print(
                f"  SqlRoom open   1 room: {open1:7.1f} ms   {args.rooms:,} rooms: {openn:7.1f} ms"
                f"   ratio {openn / open1:.2f}"
            )
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
