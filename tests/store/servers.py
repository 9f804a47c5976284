"""Real servers for the shared-lake tests, on 127.0.0.1 only: PostgreSQL and an S3 server.

- :class:`Postgres` — Debian's PostgreSQL (``initdb`` / ``pg_ctl`` from
  ``/usr/lib/postgresql/<version>/bin`` or ``PATH``; ``make setup-test`` installs the
  ``postgresql`` package without starting its service) in a fresh temporary directory, on a
  free port, its unix socket in that directory. TCP connections need a password
  (scram-sha-256), socket connections are trusted. PostgreSQL refuses to run as root: when the
  tests run as root, the cluster belongs to ``nobody`` and every server command runs through
  ``runuser -u nobody --``.
- :class:`S3Server` — moto's server mode (``moto[server]``, the ``test`` extra) in a thread,
  with a bucket made by boto3. Any key id / secret is accepted.

Both stop when the test session ends; nothing here is a mock of either protocol.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PG_USER = "snb"
"""Superuser of the test cluster (not the OS user)."""
PG_PASSWORD = "snb-test-password-7f3a"
"""Password of :data:`PG_USER` over TCP; tests pass it through ``PGPASSWORD`` only."""
S3_KEY_ID = "snb-test-key"
S3_SECRET = "snb-test-secret-91c2"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path | None:
    """Folder holding ``initdb`` and ``pg_ctl``: the newest ``/usr/lib/postgresql/*/bin``,
    else the one on ``PATH``; ``None`` if PostgreSQL is not installed."""

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


@dataclass
class Postgres:
    """A running PostgreSQL cluster: ``port``, ``dbname``, ``user``, ``password``; ``dsn``
    (libpq keywords, no password) for TCP on 127.0.0.1."""

    root: Path
    bin_dir: Path
    port: int
    dbname: str = "lake"
    user: str = PG_USER
    password: str = field(default=PG_PASSWORD, repr=False)
    run_as: str | None = None
    start_seconds: float = 0.0
    _log: Path = field(init=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def dsn(self) -> str:
        return f"host={HOST} port={self.port} dbname={self.dbname} user={self.user}"

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str, env: dict[str, str] | None = None) -> None:
        proc = subprocess.run(
            self._cmd(*args),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C", **(env or {})},
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )

    @classmethod
    def start(cls) -> Postgres:
        """initdb a cluster in a new temporary directory, start it, create :attr:`dbname`.

        Raises ``RuntimeError`` with the server's output when a step fails."""
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL is not installed: `make setup-test` installs Debian's postgresql"
            )
        began = time.monotonic()
        run_as = "nobody" if os.geteuid() == 0 else None
        # Not under pytest's tmp dir: that is private to its user (0700), and the server
        # runs as `nobody` when the tests run as root.
        root = Path(tempfile.mkdtemp(prefix="snb-pg-"))
        pg = cls(root=root, bin_dir=bin_dir, port=free_port(), run_as=run_as)
        pg._log = root / "server.log"
        pg.socket_dir.mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(pg.password + "\n")
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (root, pg.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        pg._run(
            str(bin_dir / "initdb"),
            "-D",
            str(pg.data_dir),
            "-U",
            pg.user,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        pg.resume()
        pg.psql(f"CREATE DATABASE {pg.dbname}", dbname="postgres")
        pg.start_seconds = time.monotonic() - began
        return pg

    def psql(self, sql: str, *, dbname: str | None = None) -> str:
        """Run ``sql`` with psql over the unix socket (trusted); returns its unaligned output."""
        psql = self.bin_dir / "psql"
        exe = str(psql) if psql.exists() else (shutil.which("psql") or "psql")
        proc = subprocess.run(
            self._cmd(
                exe,
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname or self.dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-XAtq",
                "-c",
                sql,
            ),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr}")
        return proc.stdout

    def resume(self) -> None:
        """Start the server of this cluster (again, after :meth:`halt`): same port, same data.

        Blocks until it accepts connections; raises ``RuntimeError`` with its output if not."""
        options = (
            f"-c listen_addresses={HOST} -p {self.port} -k {self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self._log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        )

    def halt(self) -> None:
        """Stop the server but keep the cluster (an outage: clients' connections drop and new
        ones are refused); :meth:`resume` brings it back on the same port."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class S3Server:
    """moto's S3-compatible server in a thread: ``endpoint`` (``host:port``), ``bucket``."""

    server: Any
    port: int
    bucket: str = "snb-lake"
    start_seconds: float = 0.0

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    @classmethod
    def start(cls) -> S3Server:
        """Start the server on a free port and create :attr:`bucket`."""
        from moto.server import ThreadedMotoServer

        began = time.monotonic()
        port = free_port()
        server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        server.start()
        s3 = cls(server=server, port=port)
        s3.client().create_bucket(Bucket=s3.bucket)
        s3.start_seconds = time.monotonic() - began
        return s3

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in :attr:`bucket` under ``prefix``."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def halt(self) -> None:
        """Stop serving (an outage: connections are refused); the objects stay in moto's
        in-process backend and :meth:`resume` serves them again on the same port."""
        self.server.stop()

    def resume(self) -> None:
        """Serve again on the same port after :meth:`halt`."""
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
