"""A kernel killed (SIGKILL) while it edits and flushes, with no browser (issue 6, part 2).

A subprocess kernel (tests/store/crash_kernel.py) makes numbered edits through the Python API
with a small flush policy and is killed at random moments, half of them deliberately inside a
flush transaction (its INSERTs ran, COMMIT not yet). After each kill the lake must open, and
``recover_room`` must give a document equal to the notebook after some prefix ``k`` of the edit
sequence. The bound: a kill loses only the edits the writer had not committed — the batch in
flight (exported, COMMIT not returned) and the edits made since its export — so the recovered
version is exactly the version of the last committed batch, or of the batch in flight when its
COMMIT landed just before the kill. In time, that is the edits of the last ``max_delay_s`` plus
two flush durations before the kill; nothing a ``saved`` acknowledged is ever lost.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from loro import VersionVector

import sqlrooms_nb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import Lake, recover_room

from .crash_kernel import edits_in, expected_cells

KERNEL = Path(__file__).with_name("crash_kernel.py")
MAX_DELAY_S = 0.05
"""The child's FlushPolicy.max_delay_s."""
CI_KILLS = 5
SLOW_KILLS = 60


@dataclass
class Life:
    """One run of the child kernel: its stdout lines with the time each arrived."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, list[str]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    done: bool = False
    errors: list[str] = field(default_factory=list)
    """The child's stderr lines (read all along: a full pipe would block the child)."""

    def read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                continue  # cut by the kill
            with self.cond:
                self.lines.append((time.monotonic(), line.split()))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(
        self, kind: str, count: int = 1, timeout_s: float = 60.0, match: str | None = None
    ) -> list[str]:
        """The ``count``-th line of ``kind`` (whose last field is ``match``, if given); fails
        with the child's stderr if it never comes."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                found = [
                    parts
                    for _, parts in self.lines
                    if parts and parts[0] == kind and (match is None or parts[-1] == match)
                ]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    break
                self.cond.wait(left)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        tail = [" ".join(parts)[:80] for _, parts in self.lines[-5:]]
        err = "".join(self.errors[-40:])
        raise AssertionError(f"the kernel printed no {kind!r} #{count}; last: {tail}; {err}")

    def last(self, kind: str) -> list[str] | None:
        with self.cond:
            found = [parts for _, parts in self.lines if parts and parts[0] == kind]
        return found[-1] if found else None

    def after(self, kind: str, other: str) -> bool:
        """Whether the last ``kind`` line came after the last ``other`` line."""
        with self.cond:
            kinds = [parts[0] for _, parts in self.lines if parts]
        last = {k: i for i, k in enumerate(kinds)}
        return last.get(kind, -1) > last.get(other, -1)


def start_kernel(lake: str | Path, room: str, start: int, pause_at: int = 0) -> Life:
    """Start crash_kernel.py on ``lake`` (a folder or a lake URI) at edit ``start``; with
    ``pause_at``, its ``pause_at``-th flush after ``ready`` stops inside its transaction."""
    env = dict(os.environ)
    src = str(Path(sqlrooms_nb.__file__).resolve().parent.parent)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, root, env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "tests.store.crash_kernel", str(lake), room, str(start)]
    args += ["--max-delay", str(MAX_DELAY_S), "--pause-at-flush", str(pause_at)]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root
    )
    life = Life(proc)
    threading.Thread(target=life.read, daemon=True).start()
    threading.Thread(target=life.read_errors, daemon=True).start()
    return life


def kill(life: Life) -> float:
    life.proc.send_signal(signal.SIGKILL)
    at = time.monotonic()
    life.proc.wait(timeout=30)
    return at


@dataclass
class Figures:
    kills: int = 0
    mid_commit: int = 0
    edits_checked: int = 0
    lost: list[int] = field(default_factory=list)
    lost_window_ms: list[float] = field(default_factory=list)
    flush_ms: list[float] = field(default_factory=list)


@pytest.mark.timeout(900)
def test_a_killed_kernel_loses_at_most_its_unflushed_window(
    tmp_path: Path, slow: bool, room: str
) -> None:
    lake_dir = tmp_path / "lake"
    rng = random.Random(6)
    kills = SLOW_KILLS if slow else CI_KILLS
    figures = Figures()
    k = 0  # edits the lake holds
    for n in range(kills):
        mid_commit = n % 2 == 1
        pause_at = rng.randint(1, 4) if mid_commit else 0
        life = start_kernel(lake_dir, room, k, pause_at)
        try:
            ready = life.wait_for("ready")
            assert int(ready[2]) == k, "the next kernel recovered what the test recovered"
            if mid_commit:  # kill while the writer waits between its INSERTs and its COMMIT
                life.wait_for("c", match=str(pause_at))
            else:
                life.wait_for("e", 1)
                time.sleep(rng.uniform(0.1, 0.8))
        finally:
            killed_at = kill(life)
        # The lake opens, and holds a prefix of the edit sequence.
        lake = Lake.open(lake_dir)
        try:
            doc = nb.new_doc()
            recover_room(lake, room, "main", doc, warm=False)
        finally:
            lake.release()
        cells = [(c.name, c.source) for c in nb.read_cells(doc)]
        found = edits_in(cells)
        recovered_k = len(found)
        assert found == list(range(recovered_k)), "each edit at most once, and a prefix"
        assert cells == expected_cells(recovered_k), "the notebook after exactly those edits"
        # Only the unflushed window is lost: the recovered version is the last committed batch,
        # or the batch in flight (whose COMMIT may have landed before the kill).
        committed = life.last("w")
        in_flight = life.last("x") if life.after("x", "w") else None
        allowed = [committed[1] if committed else ready[1]]
        if in_flight is not None and not mid_commit:
            allowed.append(in_flight[1])
        # (compared decoded: a version vector's byte encoding is not canonical)
        assert any(doc.oplog_vv == VersionVector.decode(bytes.fromhex(v)) for v in allowed), (
            f"kill {n}: the lake holds neither the last committed batch nor the one in flight"
        )
        made = [int(parts[1]) for _, parts in life.lines if parts and parts[0] == "e"]
        assert recovered_k >= k and recovered_k <= (made[-1] + 1 if made else k)
        figures.kills += 1
        figures.mid_commit += mid_commit
        figures.edits_checked += recovered_k - k
        lost = (made[-1] + 1 if made else k) - recovered_k
        figures.lost.append(lost)
        times = {int(parts[1]): at for at, parts in life.lines if parts and parts[0] == "e"}
        if lost and recovered_k in times:
            figures.lost_window_ms.append((killed_at - times[recovered_k]) * 1000)
        figures.flush_ms += flush_durations(life)
        k = recovered_k
    assert figures.edits_checked > 0
    flush = sorted(figures.flush_ms)
    print(
        f"\n[crash] {figures.kills} kills ({figures.mid_commit} inside a flush transaction), "
        f"{k} edits in the lake, each checked present once and in order after every kill; "
        f"lost per kill: max {max(figures.lost)} edits, mean "
        f"{sum(figures.lost) / len(figures.lost):.1f}; lost window (kill - first lost edit): "
        f"max {max(figures.lost_window_ms, default=0):.0f} ms; flush (x->w) p50 "
        f"{flush[len(flush) // 2] if flush else 0:.0f} ms, max {flush[-1] if flush else 0:.0f} ms "
        f"(lives stopped inside a flush excluded: their pause never ends)"
    )


def flush_durations(life: Life) -> list[float]:
    out = []
    began: float | None = None
    for at, parts in life.lines:
        if parts and parts[0] == "x":
            began = at
        elif parts and parts[0] == "w" and began is not None:
            out.append((at - began) * 1000)
            began = None
    return out
