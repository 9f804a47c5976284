"""Kernel-made commits fanned out on a 20 ms tick, not one callback per commit.

A kernel edits its document through the Python API (which relays at once, see
:meth:`LocalRelay.relay`) or directly on ``room.doc`` (a script committing edit after edit).
Loro's ``subscribe_local_update`` would hand Python an encoded update for every commit: with
single-character commits that alone cost 4.5x the editing (issue 7, P1). Instead one process-wide
thread (:data:`TICK_S`) asks each open document whether its own peer has committed ops not
yet relayed, and exports just those ops (``ExportMode.UpdatesInRange``) as one update.

Only this kernel's peer is relayed here: ops of other peers arrive by import (views, other
kernels) and are fanned out where they are imported. Loro gives a document a new peer id when
it is edited while detached; the per-peer table covers that.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

from loro import CounterSpan, ExportMode, IdSpan, LoroDoc

LOG = logging.getLogger("sqlrooms_nb")

TICK_S = 0.02
"""Seconds between two looks at every open document (the extra delay of a direct ``room.doc``
edit on its way to views and the writer; API edits do not wait for it)."""

FanOut = Callable[[bytes, int], None]
"""``fan_out(update, changes)``: send one update holding ``changes`` Loro changes onwards."""


class LocalRelay:
    """Relays the commits of ``doc``'s own peer(s) to ``fan_out``, once each, in order.

    Args:
        doc: the document (its ops already present when the relay is made count as relayed).
        lock: the room's edit lock, held while exporting (API edits hold it while editing).
        fan_out: called with each update and its change count, on the relaying thread.

    :meth:`relay` is called by the Python API after its commits and by the tick thread;
    :meth:`close` stops the ticks (after a last relay).
    """

    def __init__(self, doc: LoroDoc, lock: threading.RLock, fan_out: FanOut) -> None:
        self._doc = doc
        self._lock = lock
        self._fan_out = fan_out
        last = doc.oplog_vv.get_last(doc.peer_id)
        self._next: dict[int, int] = {doc.peer_id: 0 if last is None else last + 1}
        _TICKER.add(self)

    def relay(self, *, wait: bool = True) -> bool:
        """Fan out this kernel's committed ops not relayed yet; returns whether there were any.

        ``wait=False`` (the tick) gives up at once when the room lock is busy or the document
        has an open transaction (exporting would commit it half-made): the next tick retries.
        """
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            doc = self._doc
            if not wait and doc.get_pending_txn_len():
                return False
            peer = doc.peer_id
            last = doc.oplog_vv.get_last(peer)
            start = self._next.get(peer, 0)
            if last is None or last < start:
                return False
            span = IdSpan(peer, CounterSpan(start, last + 1))
            update = doc.export(ExportMode.UpdatesInRange([span]))
            self._next[peer] = last + 1
            changes = LoroDoc.decode_import_blob_meta(update, False).change_num
        finally:
            self._lock.release()
        self._fan_out(update, changes)
        return True

    def close(self) -> None:
        """Relay what is left, then stop ticking for this document."""
        _TICKER.discard(self)
        self.relay()


class _Ticker:
    """The one thread that ticks every open :class:`LocalRelay` (sleeps while there are none)."""

    def __init__(self) -> None:
        self._relays: weakref.WeakSet[LocalRelay] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, relay: LocalRelay) -> None:
        with self._cond:
            self._relays.add(relay)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sqlrooms_nb-relay", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def discard(self, relay: LocalRelay) -> None:
        with self._cond:
            self._relays.discard(relay)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._relays:
                    self._cond.wait()
                relays = list(self._relays)
            for relay in relays:
                try:
                    relay.relay(wait=False)
                except BaseException:  # (loro panics are BaseExceptions) never stop the tick
                    LOG.exception("[sqlrooms_nb] could not relay a kernel change")
            del relays
            with self._cond:
                self._cond.wait(TICK_S)


_TICKER = _Ticker()
