"""P6, sync latency in a real browser: a keystroke in page A -> the character rendered in page B.

One ``marimo edit`` server runs a small notebook with two widgets:

- ours: a :class:`sqlrooms_nb.SqlRoom` with one SQL cell (``js/sync.ts`` in each page, the
  kernel's hub relaying Loro updates to every view);
- the floor: a minimal anywidget written here (:data:`RELAY_ESM`): on every ``input`` event of
  a text box its view sends the box's value with ``model.send``; the kernel side sends that
  message back to every view (``self.send``), which writes it into a ``<div>``. That is
  marimo's bare tab-to-tab comm relay, with nothing of ours in it.

Two Chromium pages (two browser contexts: two people) open the notebook. Page A types
characters at a fixed pace into the cell's editor (ours) or the floor's text box; page A
records each keystroke's ``keydown`` time, page B a ``MutationObserver`` on the cell editor's
content (or on the floor's ``<div>``) that records the time and the text's length at every
DOM change. Both clocks are ``performance.timeOrigin + performance.now()``: epoch ms, the same
machine's clock. Latency of keystroke *i* = first time B shows the text's length reaching
``start + i + 1`` minus the keydown time of keystroke *i*. Ours and the floor type in
alternating blocks, so the machine's load falls on both alike.

Reports p50 / p99 for ours and the floor, and their ratio. Targets: p50 ≤ 15 ms, p99 ≤ 50 ms.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.suite import REPO, Row, median, percentile, pick, save_plot

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NAME = "sync"

# The floor's view: a text box whose every input is sent to the kernel, and a <div> showing
# what the kernel relays back to every view.
RELAY_ESM = """
function render({ model, el }) {
  const input = document.createElement("input");
  input.setAttribute("data-testid", "relay-input");
  input.style.width = "40em";
  const out = document.createElement("div");
  out.setAttribute("data-testid", "relay-out");
  out.style.whiteSpace = "pre";
  input.addEventListener("input", () => model.send({ text: input.value }));
  model.on("msg:custom", (msg) => { out.textContent = msg.text; });
  el.append(input, out);
}
export default { render };
"""

NOTEBOOK = '''
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import time

    import anywidget
    import duckdb

    import sqlrooms_nb as snb

    kernel_log = open("kernel_times.txt", "a", buffering=1)  # noqa: SIM115
    return anywidget, duckdb, kernel_log, snb, time


@app.cell
def _(duckdb, kernel_log, snb, time):
    room = snb.SqlRoom("sync-bench", connection=duckdb.connect(), author="bench")
    if not room.cells:
        room.add_cell("-- ", name="typing")
    _handle = room.widget._on_message

    def _timed(content, buffers):
        # epoch ms when our handler got an update and when it had relayed it to every view
        start = time.time() * 1000
        _handle(content, buffers)
        if isinstance(content, dict) and content.get("kind") == "update":
            kernel_log.write(f"ours {start:.3f} {time.time() * 1000:.3f}\\n")

    room.widget._on_message = _timed
    room
    return (room,)


@app.cell
def _(anywidget, kernel_log, time):
    class Relay(anywidget.AnyWidget):
        """The floor: every custom message from a view goes back to every view."""

        _esm = RELAY_ESM

        def __init__(self):
            super().__init__()
            self.on_msg(self._relay)

        def _relay(self, _widget, content, buffers):
            start = time.time() * 1000
            self.send(content, buffers or None)
            kernel_log.write(f"floor {start:.3f} {time.time() * 1000:.3f}\\n")

    relay = Relay()
    relay
    return


if __name__ == "__main__":
    app.run()
'''

# Page A: the time of every printable keydown (capture phase, so inside shadow roots too).
RECORD_KEYS = """
() => {
  window.__benchKeys = [];
  if (window.__benchKeysOn) return;
  window.__benchKeysOn = true;
  document.addEventListener('keydown', (e) => {
    if (e.key.length === 1) window.__benchKeys.push(performance.timeOrigin + performance.now());
  }, true);
}
"""

# Page B: observe `el` (the cell editor's .cm-content, or the floor's <div>); at every DOM
# change record [epoch ms, text length]. For the editor the length is CodeMirror's document's
# (remote carets are widgets in the same DOM). Returns the length now.
OBSERVE = """
(el) => {
  const view = (el.cmTile && el.cmTile.root && el.cmTile.root.view)
    || (el.cmView && el.cmView.rootView && el.cmView.rootView.view);
  const length = view ? () => view.state.doc.length : () => el.textContent.length;
  if (window.__benchObserver) window.__benchObserver.disconnect();
  window.__benchSeen = [];
  window.__benchObserver = new MutationObserver(() => {
    window.__benchSeen.push([performance.timeOrigin + performance.now(), length()]);
  });
  window.__benchObserver.observe(el, {subtree: true, childList: true, characterData: true});
  return length();
}
"""

# Both pages, before any script: when each widget message leaves (marimo posts every
# ``model.send`` to ``/api/kernel/set_model_value``) and when each WebSocket message from the
# server arrives (before marimo's own handler sees it). Used to split a keystroke's latency.
RECORD_NET = """
(() => {
  window.__benchNet = {sends: [], recvs: []};
  const now = () => performance.timeOrigin + performance.now();
  // our protocol's message kind ("update", "awareness", ...), "" for anything else
  const kind = (body) => {
    const found = typeof body === 'string' && body.match(/\\\\?"kind\\\\?":\\s*\\\\?"(\\w+)/);
    return found ? found[1] : '';
  };
  const fetch0 = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    if (url.includes('set_model_value')) {
      const entry = [now(), kind(init && init.body)];
      window.__benchNet.sends.push(entry);
      if (!entry[1] && input instanceof Request) {
        input.clone().text().then((body) => { entry[1] = kind(body); }, () => {});
      }
    }
    return fetch0.apply(this, arguments);
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => window.__benchNet.recvs.push([now(), kind(e.data)]));
    }
  };
})();
"""

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Params:
    keystrokes: int  # per side
    block: int  # keystrokes per block; the sides alternate blocks
    pace_ms: int  # between keystrokes in page A


def params(size: str) -> Params:
    return pick(  # type: ignore[no-any-return]
        size,
        smoke=Params(20, 20, 50),
        medium=Params(150, 50, 50),
        full=Params(500, 50, 50),
    )


def latencies(keys: list[float], seen: list[list[float]], start: int) -> list[float]:
    """For keystroke ``i`` (keydown at ``keys[i]``), ms until ``seen`` ([time, length] pairs,
    in order) first shows a length ≥ ``start + i + 1``. Raises if a keystroke never arrived."""
    out = []
    j = 0
    for i, t in enumerate(keys):
        want = start + i + 1
        while j < len(seen) and seen[j][1] < want:
            j += 1
        if j == len(seen):
            last = seen[-1][1] if seen else start
            raise AssertionError(
                f"keystroke {i + 1} of {len(keys)} never reached page B (length {last}, "
                f"wanted {want})"
            )
        out.append(seen[j][0] - t)
    return out


def shown_at(keys: list[float], seen: list[list[float]], start: int) -> list[float]:
    """Epoch ms at which keystroke ``i`` showed in page B (see :func:`latencies`)."""
    return [t + lag for t, lag in zip(keys, latencies(keys, seen, start), strict=True)]


def split(
    keys: list[float],
    shown: list[float],
    sends: list[list[Any]],
    recvs: list[list[Any]],
    kind: str | None,
    kernel: list[tuple[float, float]],
) -> list[tuple[float, ...]]:
    """Per keystroke, ms: page A keydown -> the first widget message A posted after it -> the
    kernel's handler starts on it -> has sent its relay -> the last WebSocket message page B
    received before the character showed -> shown. ``sends`` and ``recvs`` are [epoch ms, our
    protocol's message kind] pairs; only messages of ``kind`` count (``None``: any);
    ``kernel``: (start, end) epoch ms of the kernel's handler (the notebook logs them).
    Keystrokes whose messages are not found (coalesced into an earlier one) are left out."""
    sent_at = [t for t, k in sends if kind is None or k == kind]
    got_at = [t for t, k in recvs if kind is None or k == kind]
    out = []
    for t, done in zip(keys, shown, strict=True):
        sent = next((x for x in sent_at if x >= t), None)
        got = max((x for x in got_at if x <= done), default=None)
        if sent is None or got is None or not t <= sent <= got <= done:
            continue
        handled = next(((a, b) for a, b in kernel if sent - 1 <= a and b <= got + 1), None)
        if handled is None:
            continue
        out.append(
            (sent - t, handled[0] - sent, handled[1] - handled[0], got - handled[1], done - got)
        )
    return out


def kernel_times(path: Path, side: str) -> list[tuple[float, float]]:
    """(start, end) epoch ms of every message ``side``'s kernel handler took (the notebook's
    log; 1 ms slack in :func:`split` for the two clocks' rounding)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        name, start, end = line.split()
        if name == side:
            out.append((float(start), float(end)))
    return out


class Side:
    """One side (ours or the floor): where page A types and what page B observes."""

    def __init__(
        self, name: str, a_target: Any, b_target: Any, kind: str | None, log: Path
    ) -> None:
        self.name = name
        self.log = log  # the kernel's handler times (see NOTEBOOK)
        self.kind = kind  # the message kind that carries a keystroke (None: any)
        self.a_target = a_target  # Locator in page A to type into
        self.b_target = b_target  # Locator in page B to observe
        self.lags: list[float] = []
        self.parts: list[tuple[float, ...]] = []
        self.keys = self.sends = self.recvs = 0  # messages per keystroke, from the pages

    def block(self, page_a: Any, page_b: Any, text: str, pace_ms: int) -> None:
        from tests.browser.widget_page import wait_for

        self.a_target.click()
        page_a.keyboard.press("Control+End")
        page_a.evaluate(RECORD_KEYS)
        start = self.b_target.evaluate(OBSERVE)
        for page in (page_a, page_b):
            page.evaluate("() => { window.__benchNet.sends = []; window.__benchNet.recvs = []; }")
        page_a.keyboard.type(text, delay=pace_ms)
        wait_for(
            f"{self.name}: the last keystroke in page B",
            lambda: page_b.evaluate("() => window.__benchSeen.at(-1)?.[1] ?? -1"),
            lambda n: n >= start + len(text),
            timeout_s=30,
        )
        keys = page_a.evaluate("() => window.__benchKeys")
        seen = page_b.evaluate("() => window.__benchSeen")
        assert len(keys) == len(text), f"{self.name}: {len(keys)} keydowns for {len(text)} keys"
        self.lags.extend(latencies(keys, seen, start))
        sends = page_a.evaluate("() => window.__benchNet.sends")
        recvs = page_b.evaluate("() => window.__benchNet.recvs")
        self.parts.extend(
            split(
                keys,
                shown_at(keys, seen, start),
                sends,
                recvs,
                self.kind,
                kernel_times(self.log, self.name),
            )
        )
        self.keys += len(keys)
        self.sends += len(sends)
        self.recvs += len(recvs)


def measure(p: Params, workdir: Path) -> tuple[Side, Side, dict[str, Any]]:
    from playwright.sync_api import sync_playwright
    from tests.browser.servers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, marimo_server
    from tests.browser.widget_page import WidgetPage, wait_for

    folder = workdir / "marimo"
    folder.mkdir()
    source = NOTEBOOK.replace("_esm = RELAY_ESM", f"_esm = {RELAY_ESM!r}")
    (folder / "sync_bench.py").write_text(textwrap.dedent(source).lstrip())
    server = marimo_server(folder, "sync_bench.py", workdir / "lake", workdir / "marimo.log")
    server.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                pages = []
                for name in ("page A", "page B"):
                    context = browser.new_context(viewport=VIEWPORT)
                    context.add_init_script(RECORD_NET)
                    page = context.new_page()
                    page.goto(server.url)
                    widget = WidgetPage(page, name)
                    widget.wait_ready(cells=1, timeout_s=90)
                    pages.append(widget)
                a, b = pages
                cell_id = a.ids()[0]
                for w in (a, b):
                    w.page.locator("[data-testid=relay-input]").wait_for(timeout=60_000)
                    wait_for(f"the cell in {w.name}", lambda w=w: w.text_of(cell_id), bool)
                editor = "[data-testid=snb-cell-editor] .cm-content"
                ours = Side(
                    "ours",
                    a.cell(cell_id).locator(editor),
                    b.cell(cell_id).locator(editor),
                    "update",
                    folder / "kernel_times.txt",
                )
                floor = Side(
                    "floor",
                    a.page.locator("[data-testid=relay-input]"),
                    b.page.locator("[data-testid=relay-out]"),
                    None,
                    folder / "kernel_times.txt",
                )
                # Warm-up: both paths once, untimed (first messages build caches, JIT).
                for side in (ours, floor):
                    side.block(a.page, b.page, "warmup ", p.pace_ms)
                    side.lags.clear()
                    side.parts.clear()
                    side.keys = side.sends = side.recvs = 0
                typed = 0
                while typed < p.keystrokes:
                    n = min(p.block, p.keystrokes - typed)
                    text = "".join(ALPHABET[(typed + i) % 26] for i in range(n))
                    for side in (ours, floor):
                        side.block(a.page, b.page, text, p.pace_ms)
                    typed += n
                final = b.text_of(cell_id) or ""
                assert final.endswith(text), f"page B's cell ends {final[-40:]!r}"
                assert a.text_of(cell_id) == final, "pages A and B disagree on the cell"
                info = {"final_length": len(final)}
            finally:
                browser.close()
    finally:
        server.stop()
    return ours, floor, info


def run(size: str, out: Path) -> list[Row]:
    """P6 rows: keystroke A -> rendered in B, p50 and p99, ours vs marimo's bare relay."""
    p = params(size)
    with tempfile.TemporaryDirectory(prefix="snb-sync-bench-") as tmp:
        started = time.perf_counter()
        ours, floor, _info = measure(p, Path(tmp))
        seconds = time.perf_counter() - started
    series = {}
    for side in (ours, floor):
        ordered = sorted(side.lags)
        qs = (
            [i / (len(ordered) - 1) * 100 for i in range(len(ordered))] if len(ordered) > 1 else [0]
        )
        label = "ours (sqlrooms_nb)" if side is ours else "floor (bare anywidget relay)"
        series[label] = (qs, ordered)
    plot = save_plot(
        out,
        "sync.png",
        f"P6 keystroke in page A -> rendered in page B ({p.keystrokes} keys, {p.pace_ms} ms pace)",
        "percentile",
        "latency (ms)",
        series,
        target=15.0,
    )
    note = (
        f"{p.keystrokes} keystrokes per side at one per {p.pace_ms} ms, blocks of {p.block} "
        f"alternating ours/floor; one marimo edit server, 2 Chromium pages; {seconds:.0f} s"
    )
    rows = []
    for q, goal in ((50, 15.0), (99, 50.0)):
        o = percentile(ours.lags, q)
        f = percentile(floor.lags, q)
        rows.append(
            Row(
                NAME,
                f"P6 keystroke A -> B p{q}",
                "ms",
                o,
                "marimo relay",
                f,
                f"≤ {goal:.0f} ms",
                o <= goal,
                note,
                plot,
                extra={"ours_ms": sorted(ours.lags), "floor_ms": sorted(floor.lags)},
            )
        )
    stages = (
        "page A: keydown -> widget message posted",
        "marimo: posted -> kernel handler starts",
        "kernel handler (ours: hub import + relay)",
        "marimo: relay sent -> page B receives it",
        "page B: received -> character in the DOM",
    )
    for k, stage in enumerate(stages):
        if not ours.parts or not floor.parts:
            break
        o = median(part[k] for part in ours.parts)
        f = median(part[k] for part in floor.parts)
        rows.append(
            Row(
                NAME,
                f"P6 p50 split, {stage}",
                "ms",
                o,
                "marimo relay",
                f,
                note=(
                    f"median over the keystrokes whose message was found: ours "
                    f"{len(ours.parts)}, floor {len(floor.parts)} of {p.keystrokes}; per "
                    f"keystroke A posted {ours.sends / ours.keys:.2f} widget messages, B got "
                    f"{ours.recvs / ours.keys:.2f} WebSocket messages (floor "
                    f"{floor.sends / floor.keys:.2f}, {floor.recvs / floor.keys:.2f})"
                ),
                extra={
                    q: {
                        "ours": percentile([part[k] for part in ours.parts], pct),
                        "floor": percentile([part[k] for part in floor.parts], pct),
                    }
                    for q, pct in (("p90_ms", 90), ("p99_ms", 99))
                },
            )
        )
    return rows
