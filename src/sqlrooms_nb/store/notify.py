"""Wake-ups between kernels through a PostgreSQL catalog's LISTEN/NOTIFY.

Kernels sharing a lake find each other's rows by tailing the ``updates`` table (see
:meth:`~sqlrooms_nb.store.lake.Lake.tail`); polling that costs latency (default 500 ms). With a
PostgreSQL catalog a writer instead announces each flush commit with ``NOTIFY`` on the channel
:data:`CHANNEL`, and every other kernel's listener wakes the writers of that room/branch at
once. Presence (who is here, carets) travels the same way, since it is never stored.

Messages are JSON text (PostgreSQL caps a payload at 8000 bytes; bigger ones are dropped, the
poll still finds rows): ``{"topic": str, "from": <kernel id>, ...}``. Topics used:
``rows/<room>/<branch>`` (new rows, no body) and ``presence/<room>`` (``"update"``: a base64
Loro ephemeral-store update). A kernel ignores its own messages.

Uses ``psycopg`` (the ``shared`` extra); without it :func:`notifier_for` returns ``None`` and
kernels poll. Credentials come from libpq's own sources (``PGPASSWORD``, ``~/.pgpass``), as
for the catalog. Threads: one daemon listener thread per :class:`Notifier`; ``publish`` and
``subscribe`` are safe from any thread; callbacks run on the listener thread (keep them short).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger("sqlrooms_nb")

CHANNEL = "sqlrooms_nb"
"""The PostgreSQL notification channel every sqlrooms_nb kernel of a catalog listens on."""
MAX_PAYLOAD = 7900
"""Largest payload sent, bytes (PostgreSQL's limit is 8000)."""
LISTEN_WAIT_S = 0.2
"""How long the listener blocks for notifications before checking whether it should stop."""
RECONNECT_DELAY_S = 1.0
"""Wait before the listener reconnects after losing its connection, seconds."""

LISTEN_ENV = "SQLROOMS_NB_LISTEN"
"""Set to ``0`` to turn LISTEN/NOTIFY off (kernels then poll only; benchmarks compare both)."""

Callback = Callable[[dict[str, Any]], None]


class Notifier:
    """LISTEN/NOTIFY on one PostgreSQL catalog for this process.

    Args:
        dsn: libpq keyword DSN of the catalog database (no password: libpq finds it).

    Raises nothing at construction: the listener connects in its thread and reconnects after
    failures (logged); meanwhile kernels rely on polling.
    """

    def __init__(self, dsn: str) -> None:
        self.kernel = uuid.uuid4().hex[:16]
        self._dsn = dsn
        self._subscribers: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()  # guards _subscribers
        self._send_lock = threading.Lock()  # guards _sender
        self._sender: Any = None
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in effect
        self._thread = threading.Thread(target=self._listen, name="sqlrooms_nb-listen", daemon=True)
        self._thread.start()

    def subscribe(self, topic: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(message)`` for other kernels' messages on ``topic``; returns the
        function that unsubscribes."""
        with self._lock:
            self._subscribers.setdefault(topic, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._subscribers.get(topic, [])
                if callback in callbacks:
                    callbacks.remove(callback)

        return unsubscribe

    def publish(self, topic: str, **body: Any) -> bool:
        """Send ``{"topic", "from", **body}`` to every other kernel; ``True`` if sent.

        Never raises: a failure is logged and the next call reconnects (kernels still poll).
        """
        payload = json.dumps({"topic": topic, "from": self.kernel, **body}, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD:
            LOG.debug("[sqlrooms_nb] notification on %s too large (%d bytes)", topic, len(payload))
            return False
        with self._send_lock:
            for attempt in range(2):
                try:
                    if self._sender is None:
                        self._sender = _connect(self._dsn)
                    self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return True
                except Exception as exc:
                    self._close_sender()
                    if attempt:
                        LOG.debug("[sqlrooms_nb] NOTIFY failed: %s", exc)
        return False

    def close(self) -> None:
        """Stop listening and close both connections (waits at most ~1 s)."""
        self._stop.set()
        self._thread.join(timeout=LISTEN_WAIT_S * 5)
        with self._send_lock:
            self._close_sender()

    def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close()
            except Exception:
                pass

    def _listen(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = _connect(self._dsn)
                conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=LISTEN_WAIT_S):
                        self._dispatch(note.payload)
            except Exception as exc:
                self.listening.clear()
                if not self._stop.is_set():
                    LOG.warning("[sqlrooms_nb] LISTEN on the catalog failed (polling): %s", exc)
                    self._stop.wait(RECONNECT_DELAY_S)
            finally:
                self.listening.clear()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def _dispatch(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            topic = message["topic"]
            if message.get("from") == self.kernel:
                return
        except (ValueError, KeyError, TypeError):
            LOG.debug("[sqlrooms_nb] ignored a malformed notification: %.200s", payload)
            return
        with self._lock:
            callbacks = list(self._subscribers.get(topic, ()))
        for callback in callbacks:
            try:
                callback(message)
            except Exception:
                LOG.exception("[sqlrooms_nb] notification callback failed")


def _connect(dsn: str) -> Any:
    import psycopg  # the ``shared`` extra; checked by notifier_for

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def notifier_for(dsn: str | None) -> Notifier | None:
    """A :class:`Notifier` for a PostgreSQL catalog, or ``None`` (no DSN, psycopg missing, or
    ``$SQLROOMS_NB_LISTEN=0``: kernels then find each other's rows by polling only)."""
    if dsn is None or os.environ.get(LISTEN_ENV, "1").lower() in ("0", "off", "false", "no"):
        return None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        LOG.info("[sqlrooms_nb] psycopg is not installed: kernels poll the catalog for changes")
        return None
    return Notifier(dsn)


def wait_listening(notifier: Notifier, timeout_s: float = 10.0) -> bool:
    """Block until ``notifier`` listens (tests and benchmarks); ``True`` if it does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if notifier.listening.wait(0.05):
            return True
    return False
