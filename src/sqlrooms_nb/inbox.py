"""The room's inbox: views' messages handed off the comm thread and handled in batches.

marimo and Jupyter deliver a widget's custom messages one at a time on one kernel thread. If the
room handled each there, a backlog would wait in the host's queue where the room cannot see it,
and every queued ``update`` would be imported on its own. A Loro import that is concurrent with
other peers' edits costs time linear in the text (measured with ten peers ten updates behind:
6 / 17 / 31 ms per import after 500 / 1,000 / 1,500 updates), while ``import_batch`` of ten costs
about as much as one import; so under load one-by-one imports fall further behind the more they
fall behind. Here the comm thread only queues (microseconds); one worker thread takes everything
queued so far and hands it to the room as one batch, in arrival order, so a backlog of updates
becomes one import (see :meth:`SqlRoom._process <sqlrooms_nb.room.SqlRoom>`).

Order is kept: the worker handles a batch's messages in arrival order (a ``run`` sent after an
edit runs the edited text). When idle, a message is handled as soon as it is queued.

Threads: :meth:`Inbox.put` from any thread (the comm thread); the handler runs on the worker
thread ``sqlrooms_nb-inbox:<room>``; :meth:`Inbox.settle` and :meth:`Inbox.close` from any
other thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

LOG = logging.getLogger("sqlrooms_nb")

Item = tuple[object, Sequence[Any] | None, bool]
"""One message as the comm delivered it: ``(content, buffers, readonly)``."""


class Inbox:
    """A queue of view messages and the worker thread that hands them to ``handle`` in batches.

    ``handle(items)`` receives every item queued since the previous call, oldest first (a list
    of :data:`Item`); it must not raise (an exception is logged and the batch dropped, so a bug
    cannot stop the worker). The worker starts with the first :meth:`put`.
    """

    def __init__(self, name: str, handle: Callable[[list[Item]], None]) -> None:
        self._name = name
        self._handle = handle
        self._cond = threading.Condition()
        self._items: list[Item] = []
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, content: object, buffers: Sequence[Any] | None, readonly: bool) -> bool:
        """Queue one message; returns ``False`` (and queues nothing) once closed."""
        with self._cond:
            if self._closed:
                return False
            self._items.append((content, buffers, readonly))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"sqlrooms_nb-inbox:{self._name}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

    @property
    def backlog(self) -> int:
        """Messages queued and not yet taken by the worker."""
        with self._cond:
            return len(self._items)

    def settle(self, timeout: float | None = 60) -> bool:
        """Wait until every message queued before the call has been handled (at most
        ``timeout`` seconds; ``None``: no limit). Returns whether it was. On the worker thread
        itself it returns at once (the caller is the handler)."""
        if threading.current_thread() is self._thread:
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float | None = 60) -> bool:
        """Handle what is queued, then stop the worker; later :meth:`put` calls are refused.
        Returns whether the queue was emptied within ``timeout`` seconds."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closed)
                if not self._items:
                    self._cond.notify_all()
                    return  # closed and empty
                batch, self._items = self._items, []
                self._busy = True
            try:
                self._handle(batch)
            except BaseException:  # the worker must survive a bug in one batch
                LOG.exception("[sqlrooms_nb] failed to handle %d view message(s)", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
