"""Convergence latency between kernels on one shared lake: LISTEN/NOTIFY vs polling alone.

    .venv/bin/python benchmarks/kernels_convergence.py [--txns 400] [--agents 3]

Starts a PostgreSQL catalog and an S3 server (tests/store/servers.py), then replays the first
``--txns`` transactions of the ``clownschool`` editing trace with ``--agents`` kernel
processes (tests/store/trace_agent.py: each agent applies a transaction once its parents
arrived through the lake) twice, side by side: with NOTIFY (the default on a PostgreSQL
catalog) and with ``SQLROOMS_NB_LISTEN=0`` (the 500 ms poll alone). Prints, per mode, the
view-to-view latency across kernels (median / p95 / max, ms) and the replay's wall time, and
the ratio poll / NOTIFY. Both runs check the final text against a one-document replay.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.store.servers import HOST, S3_KEY_ID, S3_SECRET, Postgres, S3Server  # noqa: E402
from tests.store.test_kernels import (  # noqa: E402
    check_converged,
    latencies_ms,
    prefix_text,
    replay,
)

MODES = {"LISTEN/NOTIFY": {}, "poll 500 ms": {"SQLROOMS_NB_LISTEN": "0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txns", type=int, default=400)
    parser.add_argument("--agents", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    pg, s3 = Postgres.start(), S3Server.start()
    os.environ.update(
        PGPASSWORD=pg.password, AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET
    )
    try:
        expected = prefix_text(args.txns)
        rows = {}
        for i, (mode, env) in enumerate(MODES.items()):
            name = f"convergence_{i}"
            pg.psql(f"CREATE DATABASE {name}", dbname="postgres")
            lake = (
                f"postgresql://{pg.user}@{HOST}:{pg.port}/{name}?data=s3://{s3.bucket}/{name}"
                f"&s3_endpoint={s3.endpoint}&s3_url_style=path&s3_use_ssl=false"
                "&s3_region=us-east-1"
            )
            results = replay(lake, "trace", args.agents, args.txns, env)
            check_converged(lake, "trace", results, expected)
            lat = sorted(latencies_ms(results))
            wall = max(r["elapsed_s"] for r in results)
            rows[mode] = (statistics.median(lat), lat[int(len(lat) * 0.95)], lat[-1], wall)
            print(f"  {mode} done: {len(lat)} arrivals", flush=True)
        load = os.getloadavg()[0]
        print(
            f"{args.agents} kernels, first {args.txns} transactions of clownschool, "
            f"PostgreSQL + S3, load average {load:.1f} on {os.cpu_count()} CPUs"
        )
        print(f"  {'mode':<15} {'median':>8} {'p95':>8} {'max':>8} {'replay':>9}")
        for mode, (med, p95, top, wall) in rows.items():
            print(f"  {mode:<15} {med:6.0f}ms {p95:6.0f}ms {top:6.0f}ms {wall:8.1f}s")
        notify, poll = rows["LISTEN/NOTIFY"], rows["poll 500 ms"]
        print(
            f"  poll / NOTIFY: median x{poll[0] / notify[0]:.1f}, p95 x{poll[1] / notify[1]:.1f},"
            f" replay x{poll[3] / notify[3]:.1f}"
        )
    finally:
        s3.stop()
        pg.stop()


if __name__ == "__main__":
    main()
