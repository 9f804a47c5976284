/**
 * The anywidget entry: `export default { render }`.
 *
 * Each `render({ model, el })` is one view. A view shows one branch of the room: {@link mount}
 * builds its Loro replica (random peer id), sync client, editors and toolbar for that branch, and
 * switching branch tears the mount down and mounts the other branch (same view id, new replica).
 * The view's choice is kept per room in sessionStorage (a reload stays on it); without one it
 * follows the kernel's checked-out branch (trait `branch`). The returned cleanup function tears
 * everything down.
 * Kernel messages arrive as `msg:custom` (content, buffers as DataViews); messages go out with
 * `model.send(content, undefined, buffers)` — buffers are the third argument.
 *
 * Traits read: `room_id` (str), `branch` (str), `author` (str, may be ""; also the display name
 * in presence, else a per-browser name kept in localStorage), `results` (kernel-written run
 * summaries, see {@link ResultsEcho}), `readonly` (bool: a read-only view — non-editable editors,
 * no edit / run / restore / branch / merge controls, a "Read-only" badge; the kernel enforces it per
 * widget and never reads this trait back). Trait written: `results_seen` (an int, only that).
 * Unsaved edits are also kept in localStorage by {@link Outbox} (outbox.ts), per room, branch and
 * view, and imported by the next view of that room/branch.
 */
import "./widget.css";
import { decodeFrontiers } from "loro-crdt";
import { fromBase64Url } from "./history";
import { LOG_PREFIX, randomId, type BranchInfo, type ErrorMessage, type RawBuffer, type RequestId, type VersionId, type VersionInfo } from "./protocol";
import { Presence } from "./presence";
import { SyncClient } from "./sync";
import { Outbox } from "./outbox";
import { CellList, onlyTextEdits, type CellOutcome } from "./ui/cells";
import { ResultRequests } from "./ui/grid";
import { h } from "./ui/dom";
import { UndoScopes } from "./ui/editor";
import { CLOCK_ICON, HistoryPanel, PreviewView } from "./ui/history";
import { PresenceBar, displayName } from "./ui/presence";
import { BranchBar } from "./ui/branches";
import { StatusBadge } from "./ui/status";
import { UndoControls } from "./ui/undo";
import { SqlCompletions } from "./ui/complete";
import { cellHandles } from "./notebook";

type Handler = (...args: never[]) => void;

/** The part of anywidget's model this widget uses (marimo and Jupyter both provide it). */
export interface AnyModel {
  get(name: string): unknown;
  on(event: string, handler: Handler): void;
  off(event?: string | null, handler?: Handler | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
  set?(name: string, value: unknown): void;
  save_changes?(): void;
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

  show(message: string, code?: string, tone: "error" | "info" = "error"): void {
    const close = h("button", { type: "button", class: "snb-btn snb-banner-close", "aria-label": "Dismiss", title: "Dismiss" }, "×");
    const item = h("div", { class: `snb-banner snb-banner-${tone}`, testid: "snb-banner", role: tone === "error" ? "alert" : "status", "data-code": code },
      h("span", { class: "snb-banner-text" }, message),
      close,
    );
    close.addEventListener("click", () => item.remove(), { signal: this.signal });
    this.el.append(item);
    while (this.el.children.length > 3) this.el.firstElementChild?.remove();
  }
}

/** What a mount needs from the view around it. */
interface MountOptions {
  /** The branch to show. */
  branch: string;
  viewId: string;
  /** The room's branches as last reported (a new mount shows them before its welcome). */
  branches: BranchInfo[];
  /** Show another branch (`null`: forget this view's choice and follow the kernel's). */
  switchTo(branch: string | null): void;
  /** The kernel reported its branches (kept for the next mount). */
  onBranches(branches: BranchInfo[]): void;
}

/** Build one branch's view into `el`; returns its teardown. */
function mount(model: AnyModel, el: HTMLElement, options: MountOptions): () => void {
  const controller = new AbortController();
  const { signal } = controller;
  const cleanups: (() => void)[] = [];

  const readOnly = model.get("readonly") === true;
  const sync = new SyncClient({
    author: trait(model, "author"),
    readOnly,
    branch: options.branch,
    viewId: options.viewId,
    send: (content, buffers) => model.send(content, undefined, buffers),
  });
  const undo = new UndoScopes(sync.doc);
  const who = displayName(trait(model, "author"));
  const presence = new Presence({ viewId: sync.viewId, name: who.name, branch: options.branch, send: (update) => sync.sendAwareness(update) });
  const presenceBar = new PresenceBar({ presence, signal, fixedName: who.fixed });
  const outcomes = new Map<string, CellOutcome>();
  const stale = new Set<string>();
  const banner = new Banner(signal);
  const undoControls = new UndoControls({ scopes: undo, signal });

  const results = new ResultRequests(sync); // result grids' page and export requests
  const completions = new SqlCompletions(); // SQL editors complete from the catalog and cell names
  // Names only: reading every cell's text here cost O(notebook) per keystroke in big notebooks.
  const cellNames = () => new Map(cellHandles(sync.doc).filter((c) => c.kind === "sql").map((c) => [c.id as string, c.name]));
  completions.setCellNames(cellNames());
  let namesQueued = false;
  cleanups.push(() => results.dispose());
  const cells = new CellList({
    results,
    doc: sync.doc,
    undo,
    presence,
    signal,
    outcomes,
    run: (cellId) => {
      const was = outcomes.get(cellId);
      if (was?.running) outcomes.set(cellId, { ...was, queued: true });
      else outcomes.set(cellId, { ...was, running: true, cancelled: false, startedAt: Date.now(), progress: undefined });
      cells.showOutcome(cellId);
      sync.run(cellId);
    },
    cancel: (cellId) => void sync.cancel(cellId),
    stale,
    notify: (message) => banner.show(message),
    chartData: (cellId) => sync.chartData(cellId),
    completions,
    inputOptions: new Map(),
    readOnly,
  });

  const status = new StatusBadge(sync.getStatus());
  const room = h("span", { class: "snb-room", title: "Room" }, trait(model, "room_id") || "notebook");
  // --- branches: picker, new branch (from now or from the previewed version), merge
  let branchRequest: RequestId | null = null;
  let mergeRequest: RequestId | null = null;
  const branchBar = new BranchBar({
    signal,
    origin: () => (previewing ? "the version you are previewing" : `the current state of ${options.branch}`),
    onSwitch: (name) => options.switchTo(name),
    onCreate: (name) => void (branchRequest = sync.createBranch(name, previewing?.version.id, presence.name)),
    onMergePreview: (into) => void (mergeRequest = sync.merge(options.branch, into, true)),
    onMerge: (into) => void (mergeRequest = sync.merge(options.branch, into, false)),
  });
  branchBar.setShown(options.branch);
  branchBar.setBranches(options.branches);
  const addButton = h("button", { type: "button", class: "snb-btn snb-add", testid: "snb-add-cell", title: "Add a SQL cell at the end" },
    "+ SQL cell",
  );
  addButton.addEventListener("click", () => cells.addCell(), { signal });
  const runAllButton = h("button", { type: "button", class: "snb-btn snb-run-all", testid: "snb-run-all", title: "Run every SQL cell in dependency order" }, "Run all");
  runAllButton.addEventListener("click", () => void sync.runAll(), { signal });
  const addText = h("button", { type: "button", class: "snb-btn snb-add", testid: "snb-add-markdown", title: "Add a Markdown text cell at the end" }, "+ Text");
  addText.addEventListener("click", () => cells.addCell("markdown"), { signal });
  const addChart = h("button", { type: "button", class: "snb-btn snb-add", testid: "snb-add-chart", title: "Add a chart of a SQL cell's result at the end" }, "+ Chart");
  addChart.addEventListener("click", () => cells.addCell("chart"), { signal });
  const addInput = h("button", { type: "button", class: "snb-btn snb-add", testid: "snb-add-input", title: "Add an input at the end: SQL cells read its value as $name" }, "+ Input");
  addInput.addEventListener("click", () => cells.addCell("input"), { signal });

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
  const footer = h("div", { class: "snb-footer" }, addButton, addText, addChart, addInput);
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

  // Focusable (tabindex -1), so a click anywhere in the widget keeps its undo keys here.
  // Read-only: the edit controls are hidden by CSS (.snb-readonly); the kernel refuses edits anyway.
  const readOnlyBadge = readOnly
    ? h("span", { class: "snb-readonly-badge", testid: "snb-readonly", title: "This view is read-only: you see live edits, history and results, but cannot change the notebook or run cells" }, "Read-only")
    : null;
  const root = h("div", { class: readOnly ? "snb-root snb-readonly" : "snb-root", testid: "snb-root", "data-view": sync.viewId, tabindex: "-1" },
    h("div", { class: "snb-toolbar" }, room, readOnlyBadge, branchBar.el, historyButton, runAllButton, undoControls.el, h("span", { class: "snb-spacer" }), presenceBar.el, status.el),
    branchBar.panel,
    history.el,
    banner.el,
    previewHost,
    cells.el,
    footer,
  );
  el.append(root);
  undoControls.bindKeys(root);

  const onMessage = (content: unknown, buffers?: readonly RawBuffer[]) => sync.handle(content, buffers);
  model.on("msg:custom", onMessage);
  cleanups.push(() => model.off("msg:custom", onMessage));

  const finish = (cellId: string, outcome: CellOutcome) => {
    outcomes.set(cellId, outcome);
    cells.showOutcome(cellId);
  };
  cleanups.push(
    sync.on("status", (s) => status.set(s, sync.getLakeOutage())),
    sync.on("change", (batch) => {
      cells.schedule(batch);
      if (!namesQueued && !onlyTextEdits(batch)) {
        namesQueued = true; // not from inside an editor's update: editors reconfigure on change
        queueMicrotask(() => {
          namesQueued = false;
          if (!signal.aborted) completions.setCellNames(cellNames());
        });
      }
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
    }),
    sync.on("branches", (m) => {
      options.onBranches(m.branches);
      branchBar.setBranches(m.branches);
    }),
    sync.on("branch_created", (m) => {
      if (m.id === branchRequest) options.switchTo(m.name);
    }),
    sync.on("merge_preview", (m) => {
      if (m.id === mergeRequest) branchBar.showMergePreview(m);
    }),
    sync.on("merged", (m) => {
      if (m.id !== mergeRequest) return;
      mergeRequest = null;
      branchBar.closeForms();
      banner.show(`Merged ${m.source} into ${m.into}.`, "merged", "info");
    }),
    sync.on("run_started", (m) => {
      const was = outcomes.get(m.cell);
      const fresh = !was?.running || was.queued || !was.startedAt; // else this view's own optimistic start
      finish(m.cell, { ...was, running: true, confirmed: true, queued: false, cancelled: false, ...(fresh ? { startedAt: Date.now(), progress: undefined } : {}) });
    }),
    sync.on("run_progress", (m) => {
      const was = outcomes.get(m.cell);
      finish(m.cell, { ...was, running: true, confirmed: true, progress: { elapsed_ms: m.elapsed_ms, percent: m.percent }, startedAt: was?.startedAt ?? Date.now() - m.elapsed_ms });
    }),
    sync.on("queued", (m) => {
      const was = outcomes.get(m.cell);
      finish(m.cell, { ...was, running: was?.confirmed === true, queued: true });
    }),
    sync.on("cancelled", (m) => finish(m.cell, { ...outcomes.get(m.cell), running: false, confirmed: false, queued: false, cancelled: true })),
    sync.on("stale", (m) => {
      const before = new Set(stale);
      stale.clear();
      for (const id of m.cells) stale.add(id);
      for (const id of new Set([...before, ...stale])) cells.showOutcome(id);
    }),
    sync.on("result", (m) => finish(m.cell, { running: false, result: m })),
    sync.on("chart_data", (m) => cells.showChartData(m)),
    sync.on("catalog", (m) => completions.setCatalog(m.tables)),
    sync.on("input_options", (m) => cells.showInputOptions(m)),
    sync.on("error", (m: ErrorMessage) => {
      if (m.id !== undefined && results.answered(m.id)) return; // shown by the grid
      if (cells.chartError(m)) return;
      if (m.cell !== undefined) finish(m.cell, { running: false, error: m });
      else banner.show(m.message, m.code);
      if (m.code === "branch_not_found" && !sync.isWelcomed()) {
        options.switchTo(null); // the branch this view remembered is gone
        return;
      }
      if (m.id !== undefined && m.id === mergeRequest) {
        mergeRequest = null;
        branchBar.closeForms();
      }
      if (previewing && m.id === previewing.id) {
        previewing = null;
        previewHost.classList.remove("snb-loading");
        history.select(null);
      }
    }),
  );

  // Edits that earlier views of this room/branch kept unsaved (the kernel died; the page was
  // reloaded or the widget re-rendered to restart it) go into the replica before the hello, so the
  // handshake sends the kernel whatever it lacks of them.
  const roomId = trait(model, "room_id");
  const outbox = new Outbox({
    storage: roomId && !readOnly ? localStore() : null, // a read-only view has nothing to keep
    room: roomId,
    branch: options.branch,
    doc: sync.doc,
    onProblem: (message) => banner.show(message, "outbox"),
  });
  cleanups.push(sync.on("saved", (version) => outbox.saved(version)), () => outbox.stop());
  outbox.restore();
  // Test hook: browser tests read the outbox's write counters (cost per keystroke) here.
  Object.defineProperty(root, "sqlroomsNbOutbox", { value: outbox.stats });

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

const MAIN = "main";

/** sessionStorage key of the branch this tab shows for a room. */
function branchKey(model: AnyModel): string {
  return `sqlrooms_nb.branch.${trait(model, "room_id")}`;
}

/** localStorage, or `null` where it is blocked (the outbox then keeps nothing). */
function localStore(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

function storage(): Storage | null {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // blocked storage (sandboxed iframe, privacy settings)
  }
}

/** Newest `run` in the kernel-written `results` trait (entries asked for by `view` only, if given). */
export function newestRun(results: unknown, view?: string): number {
  let newest = 0;
  if (typeof results !== "object" || results === null) return 0;
  for (const entry of Object.values(results as Record<string, unknown>)) {
    if (typeof entry !== "object" || entry === null) continue;
    const { run, view: by } = entry as { run?: unknown; view?: unknown };
    if (typeof run === "number" && (view === undefined || by === view)) newest = Math.max(newest, run);
  }
  return newest;
}

/**
 * marimo re-runs the cells reading `mo.ui.anywidget(room.widget).value` only when a view changes
 * the widget's state (a kernel-side trait change is not enough). So when the kernel's `results`
 * trait reports a run this view asked for, the view writes the client-only trait `results_seen`
 * (the newest such run): one small update, never the results themselves, never CRDT state.
 * Runs asked for from Python (`view` null) are not echoed, so a Python cell that reads the value
 * and runs cells cannot loop.
 */
class ResultsEcho {
  private seen: number;

  constructor(private readonly model: AnyModel, private readonly viewId: string) {
    this.seen = newestRun(model.get("results"));
  }

  readonly onChange = (): void => {
    const newest = newestRun(this.model.get("results"), this.viewId);
    if (newest <= this.seen || !this.model.set || !this.model.save_changes) return;
    this.seen = newest;
    this.model.set("results_seen", newest);
    this.model.save_changes();
  };
}

function render({ model, el }: RenderProps): () => void {
  const viewId = randomId();
  let branches: BranchInfo[] = [];
  let unmount: (() => void) | null = null;
  const show = (branch: string) => {
    unmount?.();
    unmount = mount(model, el, {
      branch,
      viewId,
      branches,
      switchTo: (name) => {
        if (name === null) storage()?.removeItem(branchKey(model));
        else storage()?.setItem(branchKey(model), name);
        // Not from inside the handler that asked: the mount being replaced is still on the stack.
        queueMicrotask(() => show(name ?? (trait(model, "branch") || MAIN)));
      },
      onBranches: (list) => void (branches = list),
    });
  };
  // A change of the kernel's checked-out branch moves the views that never picked one.
  const onBranch = () => {
    if (!storage()?.getItem(branchKey(model))) show(trait(model, "branch") || MAIN);
  };
  model.on("change:branch", onBranch);
  const results = new ResultsEcho(model, viewId);
  model.on("change:results", results.onChange);
  show(storage()?.getItem(branchKey(model)) || trait(model, "branch") || MAIN);
  return () => {
    model.off("change:results", results.onChange);
    model.off("change:branch", onBranch);
    unmount?.();
    unmount = null;
  };
}

export default { render };
