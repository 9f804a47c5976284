"""The editing traces the benchmarks replay (``shared/data/editing-traces``, see its README).

``automerge-paper``: one author writing a LaTeX paper, 259,778 single-character edits
(182,315 inserts, 77,463 deletes); positions are Unicode code points, as Python Loro's text
positions are.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.suite import SHARED
from loro import LoroDoc, LoroText

TRACES = SHARED / "data" / "editing-traces"
PAPER = TRACES / "automerge-paper.json.gz"

Patch = tuple[int, int, str]
"""``(position, deleted code points, inserted text)``, applied in order."""


@functools.cache
def _paper() -> dict[str, Any]:
    if not PAPER.exists():
        raise FileNotFoundError(f"the editing trace {PAPER} is missing (see shared/data)")
    with gzip.open(PAPER) as f:
        return json.load(f)  # type: ignore[no-any-return]


@functools.cache
def _all_paper_patches() -> tuple[Patch, ...]:
    return tuple(
        (int(p[0]), int(p[1]), str(p[2])) for txn in _paper()["txns"] for p in txn["patches"]
    )


def paper_patches(n: int | None = None) -> Sequence[Patch]:
    """The first ``n`` edits of the paper trace (``None``: all 259,778). Raises
    ``ValueError`` when the trace has fewer than ``n``."""
    patches = _all_paper_patches()
    if n is None:
        return patches
    if n > len(patches):
        raise ValueError(f"the paper trace has {len(patches)} edits, not {n}")
    return patches[:n]


def paper_end_content() -> str:
    """The paper's final text (after every edit)."""
    return str(_paper()["endContent"])


@functools.cache
def expected_text(n: int | None = None) -> str:
    """The text after the first ``n`` edits (``None``: all), replayed on a plain Loro text
    and, for the whole trace, checked against the trace's own ``endContent``: the reference
    every benchmark checks its own result against. Raises ``AssertionError`` on a mismatch."""
    doc = LoroDoc()  # type: ignore[no-untyped-call]
    text = doc.get_text("text")
    for pos, deleted, inserted in paper_patches(n):
        if deleted:
            text.delete(pos, deleted)
        if inserted:
            text.insert(pos, inserted)
    out = text.to_string()
    if n is None or n == len(_all_paper_patches()):
        if out != paper_end_content():
            raise AssertionError("replaying the paper trace does not give its endContent")
    return out


def replay_loro(
    doc: LoroDoc,
    text: LoroText,
    patches: Sequence[Patch],
    after_edit: Callable[[int], object] | None = None,
) -> None:
    """Apply ``patches`` to ``text``, one ``doc.commit()`` per edit (each edit its own
    transaction, as a keystroke is); ``after_edit(i)`` runs after commit ``i`` (0-based)."""
    for i, (pos, deleted, inserted) in enumerate(patches):
        if deleted:
            text.delete(pos, deleted)
        if inserted:
            text.insert(pos, inserted)
        doc.commit()
        if after_edit is not None:
            after_edit(i)
