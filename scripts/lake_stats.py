"""Print what a sqlrooms_nb lake holds: rows per room and table, and parquet files on disk.

Usage: `.venv/bin/python scripts/lake_stats.py [LAKE_FOLDER] [--json]` (default: $SQLROOMS_NB_LAKE
or `.sqlrooms`). Safe while a kernel writes to the lake: it attaches the SQLite catalog
read-only from this separate process, as the README's "Reading the lake from another process"
describes.

Output (text, or with --json one object): `rooms` maps "room/branch" to row counts of the
`updates`, `changes` and `snapshots` tables; `parquet_files` maps each table folder under
`data/` to its number of parquet files (rows still inlined in the catalog have none).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TABLES = ("updates", "changes", "snapshots")


def lake_stats(lake: Path) -> dict[str, Any]:
    """Row counts per room/branch and table, and parquet file counts per table folder."""
    from sqlrooms_nb.store.extensions import connect

    catalog = lake / "catalog.sqlite"
    if not catalog.is_file():
        raise SystemExit(f"no lake at {lake} (missing {catalog})")
    con = connect()
    try:
        path = str(catalog).replace("'", "''")
        con.execute(f"ATTACH 'ducklake:sqlite:{path}' AS lake (READ_ONLY)")
        rooms: dict[str, dict[str, int]] = {}
        for table in TABLES:
            rows = con.execute(
                f"SELECT room, branch, count(*) FROM lake.sqlrooms_nb.{table} GROUP BY ALL"
            ).fetchall()
            for room, branch, n in rows:
                rooms.setdefault(f"{room}/{branch}", dict.fromkeys(TABLES, 0))[table] = int(n)
    finally:
        con.close()
    data = lake / "data"
    parquet = {
        str(folder.relative_to(data)): len(list(folder.glob("*.parquet")))
        for folder in sorted(p for p in data.rglob("*") if p.is_dir())
        if any(folder.glob("*.parquet"))
    }
    return {"lake": str(lake), "rooms": rooms, "parquet_files": parquet}


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    lake = Path(args[0] if args else os.environ.get("SQLROOMS_NB_LAKE", ".sqlrooms"))
    stats = lake_stats(lake)
    if "--json" in argv:
        print(json.dumps(stats))
        return 0
    print(f"lake {stats['lake']}")
    for room, counts in sorted(stats["rooms"].items()):
        print(f"  {room}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    for folder, n in stats["parquet_files"].items():
        print(f"  data/{folder}: {n} parquet files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
