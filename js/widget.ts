/**
 * The anywidget entry: `export default { render }`.
 *
 * Each `render({ model, el })` is one view: its own Loro replica (random peer id), sync client,
 * editors and one AbortController; the returned cleanup function tears all of it down.
 * Kernel messages arrive as `msg:custom` (content, buffers as DataViews); messages go out with
 * `model.send(content, undefined, buffers)` — buffers are the third argument.
 *
 * Traits read: `room_id` (str), `branch` (str), `author` (str, may be ""; also the display name
 * in presence, else a per-browser name kept in localStorage).
 */
import "./widget.css";
import { decodeFrontiers } from "loro-crdt";
import { fromBase64Url } from "./history";
import { LOG_PREFIX, type ErrorMessage, type RawBuffer, type RequestId, type VersionId, type VersionInfo } from "./protocol";
import { Presence } from "./presence";
import { SyncClient } from "./sync";
import { CellList, type CellOutcome } from "./ui/cells";
import { h } from "./ui/dom";
import { UndoScopes } from "./ui/editor";
import { CLOCK_ICON, HistoryPanel, PreviewView } from "./ui/history";
import { PresenceBar, displayName } from "./ui/presence";
import { StatusBadge } from "./ui/status";

type Handler = (...args: never[]) => void;

/** The part of anywidget's model this widget uses (marimo and Jupyter both provide it). */
export interface AnyModel {
  get(name: string): unknown;
  on(event: string, handler: Handler): void;
  off(event?: string | null, handler?: Handler | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
}

function trait(model: AnyModel, name: string): string {
  const value = model.get(name);
  return typeof value === "string" ? value : "";
}

/** A dismissable message strip above the cells (errors not tied to a cell). */
class Banner {
  readonly el = h("div", { class: "snb-banners" });

  constructor(private readonly signal: AbortSignal) {}

  show(message: string, code?: string): void {
    const close = h("button", { type: "button", class: "snb-btn snb-banner-close", "aria-label": "Dismiss", title: "Dismiss" }, "×");
    const item = h("div", { class: "snb-banner", testid: "snb-banner", role: "alert", "data-code": code },
      h("span", { class: "snb-banner-text" }, message),
      close,
    );
    close.addEventListener("click", () => item.remove(), { signal: this.signal });
    this.el.append(item);
    while (this.el.children.length > 3) this.el.firstElementChild?.remove();
  }
}

function render({ model, el }: RenderProps): () => void {
  const controller = new AbortController();
  const { signal } = controller;
  const cleanups: (() => void)[] = [];

  const sync = new SyncClient({
    author: trait(model, "author"),
    send: (content, buffers) => model.send(content, undefined, buffers),
  });
  const undo = new UndoScopes(sync.doc);
  const who = displayName(trait(model, "author"));
  const presence = new Presence({ viewId: sync.viewId, name: who.name, send: (update) => sync.sendAwareness(update) });
  const presenceBar = new PresenceBar({ presence, signal, fixedName: who.fixed });
  const outcomes = new Map<string, CellOutcome>();
  const banner = new Banner(signal);

  const cells = new CellList({
    doc: sync.doc,
    undo,
    presence,
    signal,
    outcomes,
    run: (cellId) => {
      outcomes.set(cellId, { ...outcomes.get(cellId), running: true });
      cells.showOutcome(cellId);
      sync.run(cellId);
    },
    notify: (message) => banner.show(message),
  });

  const status = new StatusBadge(sync.getStatus());
  const room = h("span", { class: "snb-room", title: "Room" }, trait(model, "room_id") || "notebook");
  const branch = h("span", { class: "snb-branch", title: "Branch" }, trait(model, "branch") || "main");
  const addButton = h("button", { type: "button", class: "snb-btn snb-add", testid: "snb-add-cell", title: "Add a SQL cell at the end" },
    "+ SQL cell",
  );
  addButton.addEventListener("click", () => cells.addCell(), { signal });

  // --- history panel and preview (the live cells are hidden, never rebuilt, while previewing)
  const frontiersOf = (v: VersionId) => decodeFrontiers(fromBase64Url(v));
  const history = new HistoryPanel({
    source: sync,
    signal,
    presence,
    compare: (a, b) => sync.doc.cmpFrontiers(frontiersOf(a), frontiersOf(b)),
    onPick: (v) => openPreview(v),
  });
  const historyButton = h("button", {
    type: "button",
    class: "snb-btn snb-history-toggle",
    testid: "snb-history-toggle",
    title: "History: edit sessions, preview and restore",
    "aria-pressed": "false",
  });
  historyButton.innerHTML = CLOCK_ICON;
  historyButton.append(h("span", {}, "History"));
  historyButton.addEventListener("click", () => {
    const open = history.toggle();
    historyButton.setAttribute("aria-pressed", String(open));
    historyButton.classList.toggle("snb-active", open);
  }, { signal });
  const previewHost = h("div", { class: "snb-preview-host" });
  const footer = h("div", { class: "snb-footer" }, addButton);
  let previewing: { id: RequestId; version: VersionInfo } | null = null;
  let previewAbort: AbortController | null = null;

  function openPreview(version: VersionInfo): void {
    previewing = { id: sync.preview(version.id), version };
    history.select(version.id);
    previewHost.classList.add("snb-loading");
  }

  function exitPreview(): void {
    previewing = null;
    previewAbort?.abort();
    previewAbort = null;
    previewHost.replaceChildren();
    previewHost.classList.remove("snb-loading");
    cells.el.hidden = false;
    footer.hidden = false;
    history.select(null);
    cells.schedule();
    cells.syncRoots();
  }

  const root = h("div", { class: "snb-root", testid: "snb-root", "data-view": sync.viewId },
    h("div", { class: "snb-toolbar" }, room, branch, historyButton, h("span", { class: "snb-spacer" }), presenceBar.el, status.el),
    history.el,
    banner.el,
    previewHost,
    cells.el,
    footer,
  );
  el.append(root);

  const onBranch = () => void (branch.textContent = trait(model, "branch") || "main");
  model.on("change:branch", onBranch);
  cleanups.push(() => model.off("change:branch", onBranch));

  const onMessage = (content: unknown, buffers?: readonly RawBuffer[]) => sync.handle(content, buffers);
  model.on("msg:custom", onMessage);
  cleanups.push(() => model.off("msg:custom", onMessage));

  const finish = (cellId: string, outcome: CellOutcome) => {
    outcomes.set(cellId, outcome);
    cells.showOutcome(cellId);
  };
  cleanups.push(
    sync.on("status", (s) => status.set(s)),
    sync.on("change", () => {
      cells.schedule();
      history.docChanged();
    }),
    sync.on("history", (m) => history.onReply(m)),
    sync.on("preview", (m) => {
      if (previewing?.id !== m.id) return; // a newer pick, or the preview was left meanwhile
      previewAbort?.abort();
      previewAbort = new AbortController();
      const view = new PreviewView({
        reply: m,
        version: history.find(m.version) ?? previewing.version,
        signal: previewAbort.signal,
        onRestore: () => {
          sync.restore(m.version, presence.name);
          exitPreview();
        },
        onExit: () => exitPreview(),
      });
      previewHost.classList.remove("snb-loading");
      previewHost.replaceChildren(view.el);
      cells.el.hidden = true;
      footer.hidden = true;
    }),
    sync.on("restored", () => history.docChanged()),
    sync.on("awareness", (m) => presence.apply(m)),
    sync.on("welcome", (w) => {
      presence.onWelcome();
      cells.setConnected();
      room.textContent = w.room;
      branch.textContent = w.branch;
    }),
    sync.on("run_started", (m) => finish(m.cell, { ...outcomes.get(m.cell), running: true })),
    sync.on("result", (m) => finish(m.cell, { running: false, result: m })),
    sync.on("error", (m: ErrorMessage) => {
      if (m.cell !== undefined) finish(m.cell, { running: false, error: m });
      else banner.show(m.message, m.code);
      if (previewing && m.id === previewing.id) {
        previewing = null;
        previewHost.classList.remove("snb-loading");
        history.select(null);
      }
    }),
  );

  cells.render();
  sync.start();
  // anywidget may attach `el` after render returns; editors must style the root they end up in.
  const frame = requestAnimationFrame(() => cells.syncRoots());
  cleanups.push(() => cancelAnimationFrame(frame));

  let cleaned = false;
  return () => {
    if (cleaned) return;
    cleaned = true;
    controller.abort();
    previewAbort?.abort();
    for (const cleanup of cleanups.splice(0)) {
      try {
        cleanup();
      } catch (err) {
        console.error(`${LOG_PREFIX} cleanup failed`, err);
      }
    }
    presenceBar.destroy();
    presence.stop(); // withdraws this view's entry while the comm still works
    sync.stop();
    cells.destroy();
    undo.free();
    root.remove();
  };
}

export default { render };
