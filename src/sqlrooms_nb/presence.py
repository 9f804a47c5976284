"""Who is here: the kernel's copy of the views' presence (Loro ``EphemeralStore``).

Each browser view keeps one entry in a Loro ephemeral store, keyed by its view id, with its
display name, colour and editor selection (``js/presence.ts`` defines the value). The kernel
does not read the values: it checks each update, keeps the latest state per view so that a view
that joins later gets everyone's presence at once (:meth:`Presence.snapshot`), and the room
relays the update to the other views. Presence is never written to the document or the lake.

Entries expire :data:`PRESENCE_TIMEOUT_MS` after their last update (views refresh theirs well
before that). Loro stamps each entry with the *sender's* clock, so a browser whose clock is off
by more than the timeout is not shown to others.

Pure: no I/O, no widget. Thread-safety: called from the comm thread only (through
``SqlRoom.handle``); a lock guards the store anyway.
"""

from __future__ import annotations

import threading

from loro import EphemeralStore

from .errors import ProtocolError

PRESENCE_TIMEOUT_MS = 30_000
"""An entry not refreshed for this long is dropped (ms); matches js/presence.ts."""


class Presence:
    """The latest presence state of every connected view.

    Args:
        timeout_ms: how long an entry lives without an update (ms).
    """

    def __init__(self, timeout_ms: int = PRESENCE_TIMEOUT_MS) -> None:
        self.timeout_ms = timeout_ms
        self._store = EphemeralStore(timeout_ms)
        self._lock = threading.Lock()

    def apply(self, view: str, update: bytes) -> None:
        """Apply one encoded ``EphemeralStore`` update sent by ``view``.

        The update may only set or delete ``view``'s own entry. Raises :class:`ProtocolError`
        (and changes nothing) when the bytes do not decode or touch another view's entry.
        """
        with self._lock:
            self._store.remove_outdated()
            before = self._store.get_all_states()
            trial = EphemeralStore(self.timeout_ms)
            try:
                if before:
                    trial.apply(self._store.encode_all())
                trial.apply(bytes(update))
            except BaseException as exc:  # loro raises BaseException (and PanicException)
                raise ProtocolError(f"awareness update does not decode: {exc}") from None
            after = trial.get_all_states()
            others = (set(before) | set(after)) - {view}
            if any(before.get(key) != after.get(key) for key in others):
                raise ProtocolError(
                    f"an awareness update from view {view!r} may only change its own entry"
                )
            self._store.apply(bytes(update))

    def apply_remote(self, update: bytes) -> None:
        """Apply an update another kernel relayed (its views' entries, see
        :meth:`~sqlrooms_nb.store.lake.Lake.on_presence`). Raises :class:`ProtocolError` (and
        changes nothing) when the bytes do not decode."""
        with self._lock:
            trial = EphemeralStore(self.timeout_ms)
            try:
                trial.apply(bytes(update))
            except BaseException as exc:  # loro raises BaseException (and PanicException)
                raise ProtocolError(f"awareness update does not decode: {exc}") from None
            self._store.apply(bytes(update))

    def snapshot(self) -> bytes | None:
        """Every live entry, encoded for a view that just joined; ``None`` when there is none."""
        with self._lock:
            self._store.remove_outdated()
            if not self._store.keys():
                return None
            return self._store.encode_all()

    def views(self) -> list[str]:
        """Ids of the views with a live entry, sorted."""
        with self._lock:
            self._store.remove_outdated()
            return sorted(self._store.keys())

    def state(self, view: str) -> object | None:
        """``view``'s current value as Loro decoded it (a dict), or ``None``."""
        with self._lock:
            return self._store.get(view)
