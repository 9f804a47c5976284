"""The anywidget: traits and comm wiring only; everything else lives in the room.

Traits are small, kernel-written facts the browser needs before the handshake (room id,
branch, default author name). CRDT state never goes into traits: marimo merges
client-written traits last-write-wins and re-runs cells on trait changes. The document
travels as custom messages (see :mod:`sqlrooms_nb.protocol`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import traitlets

from .errors import SqlRoomsError

STATIC = pathlib.Path(__file__).parent / "static"

MessageHandler = Callable[[object, Sequence[Any] | None], None]


class SqlRoomWidget(anywidget.AnyWidget):
    """The browser view of a :class:`~sqlrooms_nb.room.SqlRoom`.

    ``on_message(content, buffers)`` receives every custom message from any view of this
    widget (on the kernel's comm thread); :meth:`deliver` sends one to all views. Made by
    :meth:`SqlRoom.view <sqlrooms_nb.room.SqlRoom.view>` (``room.widget`` for editing views).

    Raises :class:`SqlRoomsError` if the JS bundle was not built (``npm run build``).
    """

    # Class attributes, not constructor arguments: anywidget reads a Path here (and watches it
    # in development); passed to __init__ a Path fails marimo's trait validation.
    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    room_id = traitlets.Unicode("").tag(sync=True)
    branch = traitlets.Unicode("main").tag(sync=True)
    author = traitlets.Unicode("").tag(sync=True)
    # Kernel-written: result name -> {"cell", "branch", "rows", "run", "view"} of its latest
    # successful run (see SqlRoom._summarise_results). In marimo, `mo.ui.anywidget(w).value`.
    results = traitlets.Dict().tag(sync=True)
    # View-written, never read by the kernel: the newest `run` the asking view has seen. Setting
    # it from the browser is how a marimo UI element value changes (cells reading it re-run).
    results_seen = traitlets.Int(0).tag(sync=True)
    # Kernel-written, for the UI only (non-editable editors, no edit controls, a "Read-only"
    # badge). The kernel never reads it back: a browser may rewrite a synced trait, so whether
    # this widget's views may edit is fixed in the room's message handler for this widget (see
    # SqlRoom.view), never taken from here.
    readonly = traitlets.Bool(False).tag(sync=True)

    def __init__(self, *, on_message: MessageHandler, **traits: Any) -> None:
        for bundle in (STATIC / "widget.js", STATIC / "widget.css"):
            if not bundle.exists():
                raise SqlRoomsError(
                    f"the sqlrooms_nb browser bundle is missing ({bundle}); build it with "
                    "`npm ci && npm run build` in the source tree (or `make demo`)"
                )
        super().__init__(**traits)
        self._on_message = on_message
        self.on_msg(self._receive)

    def _receive(self, _widget: object, content: object, buffers: Sequence[Any] | None) -> None:
        self._on_message(content, buffers)

    def deliver(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Send one custom message (JSON ``content`` plus binary ``buffers``) to every view."""
        self.send(content, buffers or None)
