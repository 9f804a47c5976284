"""The other sides of the comparisons: the same paper-trace edits without our persister.

- :func:`raw_loro`: Loro alone, one commit per edit, nothing persisted (the limit).
- :func:`naive_ducklake`: one DuckLake INSERT (one commit) per Loro update.
- :func:`pycrdt_store`: what JupyterLab RTC does — a ``pycrdt`` Yjs text edited one
  transaction per edit, each Yjs update written by ``pycrdt-store``'s ``SQLiteYStore``.
- :func:`snapshot_debounce`: the SQLRooms approach — the whole document snapshot written over
  the previous one in a DuckDB table, 500 ms after the first unsaved change (a debounce whose
  wait is also its longest wait: typing never postpones a save for ever).

Each returns a :class:`Side`: edits per second until everything is durable, and what that
left on disk. The two slow baselines (one commit per edit) stop after ``max_edits`` edits or
``max_s`` seconds: their rate is measured on that prefix (where the document is small, which
flatters them) and the rows say so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from benchmarks import traces
from benchmarks.suite import folder_size
from loro import ExportMode, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import Lake

DEBOUNCE_S = 0.5
"""The SQLRooms approach's save delay, seconds."""


@dataclass(frozen=True)
class Side:
    """One run of one side: ``edits`` edits in ``seconds`` (until durable), ``disk_bytes``
    and ``files`` on disk afterwards (0 when nothing is persisted), ``writes`` durable writes."""

    name: str
    edits: int
    seconds: float
    disk_bytes: int = 0
    files: int = 0
    writes: int = 0

    @property
    def edits_per_s(self) -> float:
        return self.edits / self.seconds

    @property
    def bytes_per_edit(self) -> float:
        return self.disk_bytes / self.edits


def _plain_doc() -> tuple[LoroDoc, object]:
    doc = nb.new_doc()  # the replicas' settings: timestamps recorded, 10 s change merging
    return doc, doc.get_text("text")


def raw_loro(patches: Sequence[traces.Patch]) -> Side:
    """Loro alone: ``patches`` applied one commit each, no persistence, no subscriber."""
    doc, text = _plain_doc()
    start = time.perf_counter()
    traces.replay_loro(doc, text, patches)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    if text.to_string() != traces.expected_text(len(patches)):  # type: ignore[attr-defined]
        raise AssertionError("raw Loro replay differs from the trace")
    return Side("raw Loro", len(patches), seconds)


def loro_updates_bytes(patches: Sequence[traces.Patch]) -> int:
    """Bytes of Loro's own full ``Updates`` export of the history ``patches`` make (one
    commit per edit)."""
    doc, text = _plain_doc()
    traces.replay_loro(doc, text, patches)  # type: ignore[arg-type]
    everything = VersionVector()  # type: ignore[no-untyped-call]
    return len(doc.export(ExportMode.Updates(from_=everything)))


def naive_ducklake(
    patches: Sequence[traces.Patch], folder: Path, max_edits: int, max_s: float
) -> Side:
    """One row (room, seq, update bytes) INSERTed into a DuckLake table per edit, each its own
    commit, on an embedded lake like ours (SQLite catalog, local data files)."""
    lake = Lake.open(folder)
    cur = lake.cursor()
    table = f"{lake.alias}.{lake.schema}.naive_updates"
    cur.execute(f"CREATE TABLE {table} (room VARCHAR, seq BIGINT, bytes BLOB)")
    doc, text = _plain_doc()
    updates: list[bytes] = []

    def on_update(update: bytes) -> bool:
        updates.append(bytes(update))
        return True

    sub = doc.subscribe_local_update(on_update)
    done = 0
    try:
        start = time.perf_counter()
        deadline = start + max_s
        for pos, deleted, inserted in patches[:max_edits]:
            if deleted:
                text.delete(pos, deleted)  # type: ignore[attr-defined]
            if inserted:
                text.insert(pos, inserted)  # type: ignore[attr-defined]
            doc.commit()
            cur.execute(f"INSERT INTO {table} VALUES ('paper', ?, ?)", [done, updates.pop()])
            done += 1
            if time.perf_counter() > deadline:
                break
        seconds = time.perf_counter() - start
        stored = cur.execute(f"SELECT count(*) FROM {table}").fetchone()
    finally:
        sub.unsubscribe()
        cur.close()
        lake.release()
    if stored is None or stored[0] != done:
        raise AssertionError(f"naive DuckLake baseline stored {stored} rows, not {done}")
    size, files = folder_size(folder)
    return Side("naive DuckLake", done, seconds, size, files, done)


def pycrdt_store(
    patches: Sequence[traces.Patch], folder: Path, max_edits: int, max_s: float
) -> Side:
    """``pycrdt`` Yjs text edited one transaction per edit, each update awaited into
    ``pycrdt-store``'s ``SQLiteYStore`` (defaults: a checkpoint every 100 updates), as
    jupyter-collaboration stores a document. Checks the stored document's text."""
    import anyio
    from pycrdt import Doc, Text
    from pycrdt.store import SQLiteYStore

    db = folder / "ystore.db"
    folder.mkdir(parents=True, exist_ok=True)

    class Store(SQLiteYStore):
        db_path = str(db)

    result: dict[str, float | int] = {}

    async def main() -> None:
        ydoc: Doc[Any] = Doc()
        text = ydoc.get("text", type=Text)
        updates: list[bytes] = []
        ydoc.observe(lambda event: updates.append(event.update))
        store = Store("paper")
        async with store:
            assert store.db_initialized is not None
            await store.db_initialized.wait()  # creating the database is not a write
            done = 0
            start = time.perf_counter()
            deadline = start + max_s
            for pos, deleted, inserted in patches[:max_edits]:
                with ydoc.transaction():
                    if deleted:
                        del text[pos : pos + deleted]
                    if inserted:
                        text.insert(pos, inserted)
                for update in updates:
                    await store.write(update)
                updates.clear()
                done += 1
                if time.perf_counter() > deadline:
                    break
            result["seconds"] = time.perf_counter() - start
            result["done"] = done
            check: Doc[Any] = Doc()
            await store.apply_updates(check)
            if str(check.get("text", type=Text)) != traces.expected_text(done):
                raise AssertionError("pycrdt-store did not give back the trace's text")

    anyio.run(main)
    size, files = folder_size(folder)
    done = int(result["done"])
    return Side("pycrdt-store", done, float(result["seconds"]), size, files, done)


class SnapshotDebounce:
    """The SQLRooms approach on a Loro document: every local change marks it dirty; a writer
    thread saves the whole snapshot ``DEBOUNCE_S`` seconds after the first unsaved change
    (``INSERT OR REPLACE`` of one row in a DuckDB file, one commit). ``saves`` records
    ``(time.perf_counter() when durable, version vector saved)``. Use as a context manager;
    leaving it makes the final save."""

    def __init__(self, doc: LoroDoc, path: Path, debounce_s: float = DEBOUNCE_S) -> None:
        self.doc = doc
        self.path = path
        self.debounce_s = debounce_s
        self.saves: list[tuple[float, VersionVector]] = []
        self.bytes_written = 0
        self._dirty_since: float | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._con = duckdb.connect(str(path))
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS room_state (id VARCHAR PRIMARY KEY, snapshot BLOB)"
        )
        self._sub = doc.subscribe_local_update(self._changed)
        self._thread = threading.Thread(target=self._run, name="bench-debounce", daemon=True)
        self._thread.start()

    def _changed(self, _update: bytes) -> bool:
        with self._cond:
            if self._dirty_since is None:
                self._dirty_since = time.perf_counter()
                self._cond.notify()
        return True

    def _save(self) -> None:
        version = self.doc.oplog_vv
        blob = self.doc.export(ExportMode.Snapshot())
        self._con.execute("INSERT OR REPLACE INTO room_state VALUES ('paper', ?)", [blob])
        self.bytes_written += len(blob)
        self.saves.append((time.perf_counter(), version))

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._dirty_since is None and not self._stop:
                    self._cond.wait()
                if self._dirty_since is None and self._stop:
                    return
                due = self._dirty_since + self.debounce_s  # type: ignore[operator]
                while not self._stop and time.perf_counter() < due:
                    self._cond.wait(due - time.perf_counter())
                self._dirty_since = None
            self._save()

    def __enter__(self) -> SnapshotDebounce:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the writer after one last save of everything (the final flush)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        self._sub.unsubscribe()
        if not self.saves or not self.saves[-1][1].includes_vv(self.doc.oplog_vv):
            self._save()
        self._con.execute("CHECKPOINT")
        self._con.close()


def snapshot_debounce(patches: Sequence[traces.Patch], folder: Path) -> Side:
    """The SQLRooms approach (:class:`SnapshotDebounce`) replaying ``patches`` at full speed,
    until the final save is durable. Checks the saved snapshot's text."""
    folder.mkdir(parents=True, exist_ok=True)
    doc, text = _plain_doc()
    path = folder / "room_state.duckdb"
    start = time.perf_counter()
    with SnapshotDebounce(doc, path) as saver:
        traces.replay_loro(doc, text, patches)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT snapshot FROM room_state WHERE id = 'paper'").fetchone()
    finally:
        con.close()
    check = LoroDoc()  # type: ignore[no-untyped-call]
    check.import_(bytes(row[0]) if row else b"")
    if check.get_text("text").to_string() != traces.expected_text(len(patches)):
        raise AssertionError("the debounced snapshot does not hold the trace's text")
    size, files = folder_size(folder)
    return Side("SQLRooms snapshot/500 ms", len(patches), seconds, size, files, len(saver.saves))
