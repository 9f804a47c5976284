"""Server processes for the browser tests: start on a free port, wait until ready, stop.

A server runs in its own process group. ``stop`` sends SIGTERM first (so the server shuts its
kernels down and they flush), then SIGKILL to whatever of the group is left after
``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Debian's chromium with the flags this machine needs (no sandbox, no network side traffic).
CHROMIUM = Path(os.environ.get("SQLROOMS_NB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1000}
# A project config beside a copied notebook: marimo runs the cells on open (the repo's own
# pyproject.toml says the same for `make demo`; copies live outside the repo).
MARIMO_PROJECT_CONFIG = "[tool.marimo.runtime]\nauto_instantiate = true\n"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(lake: Path, **extra: str) -> dict[str, str]:
    """Environment for a server process: this environment's, with this venv first on PATH and
    ``SQLROOMS_NB_LAKE`` set to the test's private lake."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SQLROOMS_NB_LAKE"] = str(lake)
    env.update(extra)
    return env


def marimo_server(folder: Path, notebook: str, lake: Path, log_path: Path, **env: str) -> Server:
    """A (not yet started) ``marimo edit <notebook>`` headless server on a free port of
    127.0.0.1, serving ``folder`` with a private ``lake``. Writes
    :data:`MARIMO_PROJECT_CONFIG` beside the notebook so its cells run on open; ``env`` adds
    variables for the kernel."""
    (folder / "pyproject.toml").write_text(MARIMO_PROJECT_CONFIG)
    port = free_port()
    argv = [sys.executable, "-m", "marimo", "edit", notebook, "--headless", "--no-token"]
    argv += ["--no-sandbox", "--skip-update-check", "--host", "127.0.0.1", "--port", str(port)]
    return Server(
        name="marimo",
        argv=argv,
        cwd=folder,
        env=server_env(lake, **env),
        port=port,
        ready_path="/health",
        log_path=log_path,
        lake=lake,
    )


@dataclass
class Server:
    """A web server process (marimo or JupyterLab) that can be stopped and started again on the
    same port, folder and lake."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int
    ready_path: str
    log_path: Path
    lake: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until ``ready_path`` answers 200 (raises with the server's
        log when it exits or times out first)."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode} before it was "
                    f"ready:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"{self.name} not ready after {START_TIMEOUT_S} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM the server, wait for its whole process group to end, SIGKILL what is left."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            time.sleep(0.1)
        if proc.poll() is None or _group_alive(proc.pid):
            with self.log_path.open("ab") as log:
                log.write(b"\n==== did not stop in time: SIGKILL to the process group\n")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lake(lake: Path, *args: str) -> str:
    """Run scripts/lake_stats.py on ``lake`` in a separate process (a reader beside the kernel)
    and return its output; raises CalledProcessError with its stderr when it fails."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lake_stats.py"), str(lake), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout
