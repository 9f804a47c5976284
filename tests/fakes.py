"""Test doubles: a browser view speaking the wire protocol, on Python's Loro.

``FakeView`` follows the same steps as js/sync.ts (hello, welcome, relay, saved), so room tests
exercise the real encode/decode path without a browser.
"""

from __future__ import annotations

import time
from typing import Any

from loro import EphemeralStore, ExportMode, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb

RATE_LIMIT_BACKOFF_S = 1.5
"""After a ``rate_limited`` error, the pause before the resync hello (js/sync.ts's
``rateLimitBackoffMs``: the kernel lets a limited view in again once its budget has refilled
halfway, after 1.25 s)."""


class FakeView:
    """One browser view attached to a room through an in-memory transport.

    Messages from the kernel are queued in ``inbox`` and applied by :meth:`pump` (so a test
    can model delay by pumping late). ``received`` keeps every decoded message for asserts.
    """

    def __init__(self, room: Any, name: str, branch: str | None = None, *, queued: bool = False):
        self.room = room
        self.queued = queued  # send as the widget does: room.enqueue (handled on its inbox)
        self.view = name
        self.branch = branch  # None: the kernel's checked-out branch (learnt from welcome)
        self.doc = nb.new_doc()
        self.inbox: list[tuple[dict[str, Any], list[bytes]]] = []
        self.received: list[dict[str, Any]] = []
        self.saved = VersionVector()
        self.welcomed = False
        self.resync_at: float | None = None  # a hello is due then (after a rate limit)
        self.presence = EphemeralStore(30_000)  # everyone's presence, as js/presence.ts keeps it
        self.disconnect = room.connect(
            lambda content, buffers: self.inbox.append((content, buffers))
        )

    def send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        branch = {"branch": self.branch} if self.branch else {}
        deliver = self.room.enqueue if self.queued else self.room.receive
        deliver({"view": self.view, **branch, **content}, buffers or [])

    def hello(self) -> None:
        self.send({"kind": "hello"}, [self.doc.oplog_vv.encode()])

    def pump(self) -> None:
        if self.resync_at is not None and time.monotonic() >= self.resync_at:
            self.resync_at = None
            self.hello()  # re-sends whatever the kernel refused meanwhile
        while self.inbox:
            content, buffers = self.inbox.pop(0)
            self.received.append(content)
            kind = content["kind"]
            if content.get("to") not in (None, self.view):
                continue
            if kind == "error" and content.get("code") == "resync":
                self.hello()  # as js/sync.ts does: the handshake re-sends what the kernel lacks
            if kind == "error" and content.get("code") == "rate_limited":
                # As js/sync.ts does: updates sent during the refusal spell were dropped; a
                # handshake after a pause re-sends them.
                self.resync_at = time.monotonic() + RATE_LIMIT_BACKOFF_S
            if kind in ("update", "saved") and content["branch"] != self.branch:
                continue  # another branch's document, as js/sync.ts ignores it
            if kind == "welcome":
                self.branch = content["branch"]
                if buffers[0]:
                    self.doc.import_(buffers[0])
                self.saved = VersionVector.decode(buffers[2])
                self.welcomed = True
                ahead = self.doc.export(ExportMode.Updates(VersionVector.decode(buffers[1])))
                if LoroDoc.decode_import_blob_meta(ahead, False).change_num:
                    self.send({"kind": "update"}, [ahead])
            elif kind == "update" and content["origin"] != self.view:
                self.doc.import_batch(list(buffers))
            elif kind == "saved":
                self.saved = VersionVector.decode(buffers[0])
            elif kind == "awareness" and content["origin"] != self.view:
                self.presence.apply(bytes(buffers[0]))

    def edit(self, fn) -> None:
        """Apply ``fn(doc)`` locally, commit, and send the update like the browser does."""
        before = self.doc.oplog_vv
        fn(self.doc)
        self.doc.commit()
        self.send({"kind": "update"}, [self.doc.export(ExportMode.Updates(before))])

    def set_presence(self, value: dict[str, Any]) -> None:
        """Set this view's presence entry and send it like the browser does."""
        self.presence.set(self.view, value)
        self.send({"kind": "awareness"}, [self.presence.encode(self.view)])

    def wait_for(
        self, kind: str, request: str | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Pump until a message of ``kind`` for this view (answering ``request``, if given)
        arrives — replies to history reads come from the room's reader thread; return the
        newest one."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump()
            found = [
                m
                for m in self.received
                if m["kind"] == kind
                and m.get("to") in (None, self.view)
                and (request is None or m.get("id") == request)
            ]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind!r} for view {self.view} within {timeout_s} s")
            time.sleep(0.01)

    def kinds(self) -> list[str]:
        return [m["kind"] for m in self.received]

    def cells(self) -> list[tuple[str, str]]:
        return [(c.name, c.source) for c in nb.read_cells(self.doc)]

    def is_saved(self) -> bool:
        return self.saved.includes_vv(self.doc.oplog_vv)
