"""Small document helpers shared by the store tests."""

from __future__ import annotations

import threading

from loro import LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb


def new_notebook(cells: int = 2, author: str = "ana") -> tuple[LoroDoc, list[str]]:
    """A new document with the schema and ``cells`` SQL cells, committed as one change."""
    return new_notebook_into(nb.new_doc(), cells, author)


def new_notebook_into(
    doc: LoroDoc, cells: int = 2, author: str = "ana"
) -> tuple[LoroDoc, list[str]]:
    """Add the schema and ``cells`` SQL cells to ``doc``, committed as one change."""
    nb.ensure_schema(doc)
    ids = [nb.add_cell(doc, f"select {i}") for i in range(cells)]
    doc.set_next_commit_message(author)
    doc.commit()
    return doc, ids


def type_into(doc: LoroDoc, cell_id: str, text: str, author: str) -> None:
    """Append ``text`` to a cell's source as one commit with ``author`` as its message."""
    _, cell = nb.find_cell(doc, cell_id)
    source = nb.cell_text(cell)
    source.insert(len(source.to_string()), text)
    doc.set_next_commit_message(author)
    doc.commit()


class Saved:
    """Records ``on_saved`` calls; ``wait(n)`` blocks until at least ``n`` arrived."""

    def __init__(self) -> None:
        self.versions: list[VersionVector] = []
        self._cond = threading.Condition()

    def __call__(self, version: VersionVector) -> None:
        with self._cond:
            self.versions.append(version)
            self._cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.versions) >= n, timeout)


class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
