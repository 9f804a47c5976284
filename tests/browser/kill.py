"""Shared by the kernel-kill browser tests (marimo: test_crash.py, JupyterLab:
test_jupyter_crash.py): the timed SIGKILL, finding the kernel's pid, and the token check."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from .servers import Server
from .widget_page import wait_for


class Killer:
    """SIGKILLs process ``pid`` ``delay_s`` seconds from now, from a timer thread (the test's
    thread is busy typing meanwhile); ``done`` is set and ``at`` (monotonic s) recorded then."""

    def __init__(self, pid: int, delay_s: float) -> None:
        self.pid = pid
        self.done = threading.Event()
        self.at = 0.0
        self.already_dead = False
        self._timer = threading.Timer(delay_s, self._kill)
        self._timer.start()

    def _kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # it died on its own meanwhile: the restart is the same
            self.already_dead = True
        self.at = time.monotonic()
        self.done.set()

    def cancel(self) -> None:
        self._timer.cancel()


def kernel_pid(pid_file: Path, server: Server, not_pid: int | None, timeout_s: float) -> int:
    """The pid the notebook wrote to ``pid_file``, once it is a new (not ``not_pid``), live
    child of ``server``'s process. Raises AssertionError after ``timeout_s``."""

    def read() -> int | None:
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid != not_pid else None

    pid = wait_for("the kernel's pid", read, lambda p: p is not None, timeout_s)
    assert pid is not None and server.proc is not None and pid != server.proc.pid
    status = Path(f"/proc/{pid}/status").read_text()
    ppid = int(re.search(r"^PPid:\s*(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    assert ppid == server.proc.pid, f"pid {pid} is not a kernel of the {server.name} server"
    return pid


def token_report(text: str, typed: list[str], token: re.Pattern[str]) -> str:
    """Which ``typed`` tokens (matches of ``token``) ``text`` lacks or holds more than once
    (empty when each is there exactly once)."""
    seen = Counter(token.findall(text))
    missing = [t for t in typed if seen[t] == 0]
    doubled = [t for t, n in seen.items() if n > 1]
    unknown = [t for t in seen if t not in typed]
    parts = [
        f"{name}: {items}"
        for name, items in (("missing", missing), ("doubled", doubled), ("unknown", unknown))
        if items
    ]
    return "; ".join(parts)
