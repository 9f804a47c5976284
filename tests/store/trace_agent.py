"""One agent of a concurrent editing trace, as one kernel process with one view.

Run by tests/store/test_kernels.py and benchmarks/kernels_convergence.py::

    python -m tests.store.trace_agent LAKE ROOM CELL_ID AGENT TRACE [TXNS]

The process opens ``ROOM`` on ``LAKE`` as a kernel (:class:`sqlrooms_nb.SqlRoom`) with one view
(:class:`tests.fakes.FakeView`, the wire protocol a browser speaks, sending through the
browser's 20 ms throttle) whose Loro peer id is
``PEER_BASE + AGENT``. After printing ``ready`` it waits for a line on stdin, then applies its
agent's transactions of the trace (the first ``TXNS`` of the trace, default all): each one only
once every parent transaction has arrived (through the kernels' shared lake), on the document
as its parents left it (Loro detached editing at the parents' frontiers). A transaction's
Loro ids are known in advance (one counter per Unicode character inserted or deleted), so
every agent can tell when another's transaction has arrived without reading the text.

When all transactions of all agents have arrived it prints one JSON line: ``agent``, ``text``
(the view's final text), ``kernel_text`` (the kernel's), ``sent`` (txn index -> wall time the
view sent it), ``seen`` (txn index -> wall time it arrived, other agents' txns), ``elapsed_s``.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from typing import Any

from loro import ID, ExportMode, Frontiers

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb.store import FlushPolicy
from tests.fakes import FakeView

PEER_BASE = 1000
WAIT_S = 300.0
"""Seconds without progress (no transaction sent or arrived) after which an agent gives up."""
THROTTLE_S = 0.02
"""Sends are throttled as js/sync.ts throttles them: a commit is sent at once unless an update
went out less than this long ago; then it waits, with the others made meanwhile, for the
window's end. (Unthrottled, the trace's runs of ~400 transactions typed without waiting for
anyone tripped the kernel's per-view rate limit.)"""


def load(path: str, limit: int | None) -> list[dict[str, Any]]:
    """The trace's transactions (the first ``limit``), each with its Loro counter span."""
    trace = json.load(gzip.open(path))
    txns: list[dict[str, Any]] = trace["txns"][:limit] if limit else trace["txns"]
    counters: dict[int, int] = {}
    for txn in txns:
        start = counters.get(txn["agent"], 0)
        ops = sum(len(inserted) + deleted for _, deleted, inserted in txn["patches"])
        txn["start"], txn["end"] = start, start + ops
        counters[txn["agent"]] = start + ops
    return txns


def arrived(view: FakeView, txn: dict[str, Any]) -> bool:
    last = view.doc.oplog_vv.get_last(PEER_BASE + txn["agent"])
    return txn["end"] == txn["start"] or (last is not None and last >= txn["end"] - 1)


def main(argv: list[str]) -> None:
    lake, room_id, cell_id, agent = argv[0], argv[1], argv[2], int(argv[3])
    txns = load(argv[4], int(argv[5]) if len(argv) > 5 else None)
    peer = PEER_BASE + agent
    policy = FlushPolicy(max_delay_s=0.005)
    with snb.SqlRoom(room_id, lake=lake, author=f"agent{agent}", flush_policy=policy) as room:
        view = FakeView(room, f"agent{agent}")
        view.doc.peer_id = peer
        view.hello()
        while not view.welcomed:
            view.pump()
            time.sleep(0.001)
        text = nb.cell_text(nb.find_cell(view.doc, cell_id)[1])
        base = view.doc.oplog_frontiers  # the room before any transaction
        view.doc.set_detached_editing(True)
        print("ready", flush=True)
        sys.stdin.readline()

        started = time.time()
        sent: dict[int, float] = {}
        seen: dict[int, float] = {}
        others = [i for i, t in enumerate(txns) if t["agent"] != agent]
        next_other = 0

        unsent: list[bytes] = []  # committed, waiting for the throttle window to end
        window_end = 0.0

        def send_due() -> None:
            nonlocal window_end
            now = time.monotonic()
            if unsent and now >= window_end:
                view.send({"kind": "update"}, unsent[:])
                unsent.clear()
                window_end = now + THROTTLE_S

        def pump() -> None:
            nonlocal next_other, deadline
            send_due()
            view.pump()
            now = time.time()
            while next_other < len(others) and arrived(view, txns[others[next_other]]):
                seen[others[next_other]] = now
                next_other += 1
                deadline = time.monotonic() + WAIT_S

        deadline = time.monotonic() + WAIT_S
        for index, txn in enumerate(txns):
            if txn["agent"] != agent:
                continue
            parents = [txns[p] for p in txn["parents"]]
            while not all(arrived(view, p) for p in parents):
                if time.monotonic() > deadline:
                    raise SystemExit(f"agent {agent}: txn {index} still waits for its parents")
                pump()
                time.sleep(0.0005)
            frontiers = (
                Frontiers.from_ids([ID(PEER_BASE + p["agent"], p["end"] - 1) for p in parents])
                if parents
                else base
            )
            if view.doc.state_frontiers != frontiers:
                view.doc.checkout(frontiers)
                view.doc.peer_id = peer  # detached editing picks a new peer id: keep ours
            before = view.doc.oplog_vv
            for pos, deleted, inserted in txn["patches"]:
                if deleted:
                    text.delete(pos, deleted)
                if inserted:
                    text.insert(pos, inserted)
            view.doc.commit()
            sent[index] = time.time()
            deadline = time.monotonic() + WAIT_S
            unsent.append(view.doc.export(ExportMode.Updates(before)))
            pump()
        while next_other < len(others) or unsent:
            if time.monotonic() > deadline:
                raise SystemExit(f"agent {agent}: {len(others) - next_other} txns never arrived")
            pump()
            time.sleep(0.001)
        elapsed = time.time() - started
        view.doc.checkout_to_latest()
        room.flush()
        kernel_text = next(c.source for c in room.cells if c.id == cell_id)
        result = {
            "agent": agent,
            "text": text.to_string(),
            "kernel_text": kernel_text,
            "sent": sent,
            "seen": seen,
            "elapsed_s": elapsed,
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
