"""Checks the fault tests make on a lake: each Loro change stored exactly once, row counts."""

from __future__ import annotations

from loro import LoroDoc, VersionVector

from sqlrooms_nb.store import Lake


def count_rows(lake: Lake, table: str, room: str) -> int:
    """Rows of ``room`` in one of the project's tables."""
    cur = lake.cursor()
    try:
        row = cur.execute(
            f"SELECT count(*) FROM {lake.table(table)} WHERE room = ?", [room]
        ).fetchone()
    finally:
        cur.close()
    return int(row[0]) if row else 0


def assert_each_change_once(lake: Lake, room: str, doc: LoroDoc | None = None) -> int:
    """Every Loro change of ``room`` is in exactly one ``changes`` row: per peer, the rows'
    counter spans neither overlap nor leave gaps, and (with ``doc``) they end where ``doc``'s
    version vector does. The ``updates`` rows' change counts agree. Returns the ops covered."""
    cur = lake.cursor()
    try:
        spans = cur.execute(
            f"SELECT peer, counter_start, counter_end FROM {lake.table('changes')} "
            "WHERE room = ? ORDER BY peer, counter_start",
            [room],
        ).fetchall()
        counted = cur.execute(
            f"SELECT coalesce(sum(change_count), 0) FROM {lake.table('updates')} WHERE room = ?",
            [room],
        ).fetchone()
    finally:
        cur.close()
    ends: dict[str, int] = {}
    for peer, start, end in spans:
        assert ends.get(peer, 0) == start, f"peer {peer}: ops {ends.get(peer, 0)}..{start} " + (
            "stored twice" if start < ends.get(peer, 0) else "missing"
        )
        ends[peer] = end
    assert counted is not None and int(counted[0]) == len(spans)
    if doc is not None:
        empty = VersionVector()  # type: ignore[no-untyped-call]
        expected = {str(span.peer): span.counter.end for span in doc.oplog_vv.sub_iter(empty)}
        assert ends == expected, f"stored ops {ends} != the document's {expected}"
    return sum(ends.values())
