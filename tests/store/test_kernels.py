"""Three kernel processes on one room of a shared lake (PostgreSQL catalog + S3 data) replay
the ``clownschool`` concurrent trace, one agent each: every document, and a fourth kernel
that opens the room afterwards, end equal to the trace's ``endContent``.

Each agent's transaction is applied only after its parents arrived through the lake (see
tests/store/trace_agent.py), so the replay crosses kernels ~1,300 times on its critical path.
With LISTEN/NOTIFY the whole trace is replayed (~3 min here); the poll-only mode replays a
prefix (the default 500 ms poll makes each crossing cost ~0.25-0.5 s). Each test prints its
latency figures (run with ``pytest -s``); benchmarks/kernels_convergence.py prints both modes
side by side. The agents' views send through the browser's 20 ms throttle."""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sqlrooms_nb as snb

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO.parent / "shared" / "data" / "editing-traces" / "clownschool.json.gz"


def replay(
    lake: str, room: str, agents: int, txns: int | None, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Run one agent process per agent on ``room`` and return their result lines."""
    with snb.SqlRoom(room, lake=lake) as setup:
        cell = setup.add_cell("", name="trace")
    args = [str(TRACE)] + ([str(txns)] if txns else [])
    environ = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.trace_agent", lake, room, cell, str(k), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=environ,
        )
        for k in range(agents)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        for proc in procs:  # all start together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        done = [proc.communicate(timeout=900) for proc in procs]
        failed = [
            f"agent {k} (exit {proc.returncode}): {err[-2000:]}"
            for k, (proc, (_out, err)) in enumerate(zip(procs, done, strict=True))
            if proc.returncode != 0
        ]
        assert not failed, "\n".join(failed)
        return [json.loads(out.strip().splitlines()[-1]) for out, _err in done]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def latencies_ms(results: list[dict[str, Any]]) -> list[float]:
    """For every transaction and every other agent: arrival time minus send time, ms."""
    sent = {int(i): t for r in results for i, t in r["sent"].items()}
    return [(t - sent[int(i)]) * 1000 for r in results for i, t in r["seen"].items()]


def check_converged(lake: str, room: str, results: list[dict[str, Any]], end: str) -> None:
    for result in results:
        assert result["text"] == end, f"agent {result['agent']}'s view diverged"
        assert result["kernel_text"] == end, f"agent {result['agent']}'s kernel diverged"
    with snb.SqlRoom(room, lake=lake) as reader:  # a fresh fourth kernel
        assert [c.source for c in reader.cells] == [end]


def report(mode: str, results: list[dict[str, Any]]) -> str:
    lat = sorted(latencies_ms(results))
    p95 = lat[int(len(lat) * 0.95)]
    wall = max(r["elapsed_s"] for r in results)
    line = (
        f"{mode}: {len(lat)} arrivals, latency median {statistics.median(lat):.0f} ms, "
        f"p95 {p95:.0f} ms, max {lat[-1]:.0f} ms; replay took {wall:.1f} s"
    )
    print(line)
    return line


@pytest.mark.timeout(900)
def test_three_kernels_replay_clownschool_with_listen_notify(shared: str) -> None:
    """The whole trace: 23,136 transactions, ~1,300 kernel-to-kernel hand-offs on its
    critical path."""
    end = json.load(gzip.open(TRACE))["endContent"]
    results = replay(shared, "clownschool", 3, None, {})
    check_converged(shared, "clownschool", results, end)
    report("LISTEN/NOTIFY", results)


@pytest.mark.timeout(600)
def test_three_kernels_converge_by_polling_alone(shared: str) -> None:
    """Without NOTIFY (``SQLROOMS_NB_LISTEN=0``) the 500 ms poll alone carries the edits."""
    txns = 400
    results = replay(shared, "clownschool-poll", 3, txns, {"SQLROOMS_NB_LISTEN": "0"})
    expected = prefix_text(txns)
    check_converged(shared, "clownschool-poll", results, expected)
    report("poll 500 ms", results)


def prefix_text(txns: int) -> str:
    """The text after the first ``txns`` transactions, computed by one Loro document that
    replays them with fork/merge (independent of kernels and lakes)."""
    from loro import ID, Frontiers, LoroDoc

    from tests.store.trace_agent import PEER_BASE, load

    trace = load(str(TRACE), txns)
    doc = LoroDoc()
    text = doc.get_text("t")
    doc.set_detached_editing(True)
    base = doc.oplog_frontiers
    for txn in trace:
        parents = [trace[p] for p in txn["parents"]]
        frontiers = (
            Frontiers.from_ids([ID(PEER_BASE + p["agent"], p["end"] - 1) for p in parents])
            if parents
            else base
        )
        doc.checkout(frontiers)
        doc.peer_id = PEER_BASE + txn["agent"]
        for pos, deleted, inserted in txn["patches"]:
            if deleted:
                text.delete(pos, deleted)
            if inserted:
                text.insert(pos, inserted)
        doc.commit()
    doc.checkout_to_latest()
    return text.to_string()


REMOTE_KERNEL = r"""
import sys, time
import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from tests.fakes import FakeView

lake, room_id, cell = sys.argv[1:4]
with snb.SqlRoom(room_id, lake=lake, author="bob") as room:
    view = FakeView(room, "bob-view")
    view.hello()
    while not view.welcomed:
        view.pump()
        time.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()
    view.set_presence({"name": "bob", "color": "#0a0", "branch": "main"})
    view.edit(lambda d: nb.cell_text(nb.find_cell(d, cell)[1]).insert(0, "-- bob was here\n"))
    sys.stdin.readline()  # until the test is done
"""


@pytest.mark.timeout(120)
def test_another_kernels_edits_and_presence_arrive_at_once_with_notify(shared: str) -> None:
    """Polling is set to 60 s here: what arrives within seconds came through NOTIFY."""
    import time

    from sqlrooms_nb.store import FlushPolicy
    from tests.fakes import FakeView

    slow_poll = FlushPolicy(max_delay_s=0.01, poll_s=60.0)
    with snb.SqlRoom("notify", lake=shared, flush_policy=slow_poll, author="ana") as room:
        cell = room.add_cell("select 1", name="one")
        room.flush()
        view = FakeView(room, "ana-view")
        view.hello()
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
        remote = subprocess.Popen(
            [sys.executable, "-c", REMOTE_KERNEL, shared, "notify", cell],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=environ,
        )
        try:
            assert remote.stdout is not None and remote.stdin is not None
            assert remote.stdout.readline().strip() == "ready"
            assert room._lake.notifier is not None and room._lake.notifier.listening.is_set()
            started = time.monotonic()
            remote.stdin.write("go\n")
            remote.stdin.flush()
            text = "-- bob was here\nselect 1"
            while view.cells() != [("one", text)] or "bob-view" not in view.presence.keys():
                assert time.monotonic() - started < 20, (view.cells(), view.presence.keys())
                view.pump()
                time.sleep(0.01)
            arrived = time.monotonic() - started
            assert arrived < 20  # well under the 60 s poll
            assert [c.source for c in room.cells] == [text]
            assert view.presence.get("bob-view")["name"] == "bob"
            print(f"edit + presence from another kernel arrived in {arrived * 1000:.0f} ms")
        finally:
            if remote.stdin is not None:
                remote.stdin.write("done\n")
                remote.stdin.flush()
            _, err = remote.communicate(timeout=60)
            assert remote.returncode == 0, err[-2000:]
