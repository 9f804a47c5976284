/**
 * The cell list: one {@link CellView} per cell of the Loro doc, re-rendered from the doc on every
 * doc event (coalesced to one render per microtask). Existing editors are kept for cells that
 * still exist, and reordering moves DOM nodes instead of rebuilding editors.
 */
import type { EditorView } from "@codemirror/view";
import type { ContainerID, LoroDoc, LoroEventBatch, LoroText } from "loro-crdt";
import {
  CellError,
  addCell,
  cellHandles,
  deleteCell,
  isValidCellName,
  moveCell,
  renameCell,
  type CellHandle,
  type CellKind,
} from "../notebook";
import type { Presence } from "../presence";
import { LOG_PREFIX, type ChartData, type ErrorMessage, type InputOptions, type RequestId, type Result } from "../protocol";
import { ChartView, pickColumns, type ChartSource } from "./chart";
import { h } from "./dom";
import { InputView } from "./input";
import { RunStatus, type RunState } from "./run_status";
import { MarkdownMode } from "./markdown";
import { createCellEditor, type CellUndo, type UndoScopes } from "./editor";
import { LAZY_CLASS, LazyEditors, useLazyEditors, type LazyTarget } from "./lazy";
import type { SqlCompletions } from "./complete";
import { renderCellError, renderResult, type ResultSource, type ResultView } from "./result";

/** What a cell last showed: results persist per cell id while the view lives. */
export interface CellOutcome extends RunState {
  running: boolean;
  result?: Result;
  error?: ErrorMessage;
}

export interface CellsContext {
  doc: LoroDoc;
  undo: UndoScopes;
  /** Who is here: editors draw other views' carets and report their own selection. */
  presence?: Presence;
  signal: AbortSignal;
  outcomes: Map<string, CellOutcome>;
  run(cellId: string): void;
  /** Cancel the cell's run (running or queued). */
  cancel?(cellId: string): void;
  /** Ids of the cells the kernel says are stale. */
  stale?: Set<string>;
  /** Show a message in the widget's banner (e.g. an invalid cell name). */
  notify(message: string): void;
  /** Ask the kernel for a chart cell's data (replies go to {@link CellList.showChartData}). */
  chartData?(cellId: string): RequestId;
  /** Where result grids get pages beyond the preview, and exports (the kernel). */
  results?: ResultSource;
  /** Names SQL editors complete from (the kernel's catalog, the cells' result names). */
  completions?: SqlCompletions;
  /** The latest options of each select input cell, by cell id (see {@link CellList.showInputOptions}). */
  inputOptions?: Map<string, InputOptions>;
  /** A read-only view: editors take no input; rename, chart and input controls are inert. */
  readOnly?: boolean;
}

const KIND_LABELS: Record<CellKind, string> = { sql: "SQL", markdown: "MD", chart: "CHART", input: "INPUT" };
const stamps = new WeakMap<object, number>();
let nextStamp = 1;

/** A number that changes whenever a cell's outcome (result or error) is replaced. */
function outcomeStamp(outcome: CellOutcome | undefined): number {
  const key = outcome?.result ?? outcome?.error;
  if (!key) return 0;
  let stamp = stamps.get(key);
  if (stamp === undefined) stamps.set(key, (stamp = nextStamp++));
  return stamp;
}

const ICONS = {
  cancel: '<svg viewBox="0 0 16 16" aria-hidden="true"><rect x="4" y="4" width="8" height="8" rx="1"/></svg>',
  run: '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M4.5 3.2v9.6a.5.5 0 0 0 .77.42l7.4-4.8a.5.5 0 0 0 0-.84l-7.4-4.8a.5.5 0 0 0-.77.42z"/></svg>',
  up: '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M8 3.5 3.5 8l1 1L7.3 6.2V12.5h1.4V6.2L11.5 9l1-1z"/></svg>',
  down: '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M8 12.5 12.5 8l-1-1-2.8 2.8V3.5H7.3v6.3L4.5 7l-1 1z"/></svg>',
  delete:
    '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M6 2h4l.5 1H13v1.3H3V3h2.5zM4 5.3h8l-.6 8.2a1 1 0 0 1-1 .9H5.6a1 1 0 0 1-1-.9z"/></svg>',
};

/** Parsed icons, cloned per button: parsing SVG markup 4 times a cell cost ~0.1 ms a cell. */
const iconNodes = new Map<string, DocumentFragment>();

function iconButton(testid: string, icon: string, label: string, text?: string): HTMLButtonElement {
  const button = h("button", { type: "button", class: `snb-btn snb-${testid.slice(4)}`, testid, title: label, "aria-label": label });
  let parsed = iconNodes.get(icon);
  if (!parsed) {
    const template = document.createElement("template");
    template.innerHTML = icon;
    iconNodes.set(icon, (parsed = template.content));
  }
  button.append(parsed.cloneNode(true));
  if (text) button.append(h("span", {}, text));
  return button;
}

/**
 * One cell: header (name, run, move, delete), editor, and its last result or error. A lazy cell
 * (big notebooks, see lazy.ts) shows a placeholder with its text until it comes near the viewport.
 */
class CellView implements LazyTarget {
  readonly el: HTMLElement;
  readonly id: string;
  readonly kind: CellKind;
  readonly text: LoroText;
  private readonly nameEl: HTMLElement;
  private readonly stateEl: HTMLElement;
  private readonly runStatus = new RunStatus();
  private readonly cancelButton: HTMLButtonElement | null;
  private readonly output: HTMLElement;
  private readonly runButton: HTMLButtonElement | null;
  private readonly upButton: HTMLButtonElement;
  private readonly downButton: HTMLButtonElement;
  /** `null` while a lazy cell shows its placeholder. */
  private editor: EditorView | null = null;
  /** Kept while the editor comes and goes once it holds undo steps (see {@link dematerialise}). */
  private undoScope: CellUndo | null = null;
  private placeholder: HTMLElement | null = null;
  private readonly editorHost: HTMLElement;
  private readonly newEditor: (undo: CellUndo) => EditorView;
  /** Markdown cells: rendered / editing faces. */
  private readonly markdown: MarkdownMode | null = null;
  /** Chart cells: builder and chart. */
  readonly chart: ChartView | null = null;
  /** Input cells: the control bound to `$name`. */
  readonly input: InputView | null = null;
  private name = "";
  private shownOutcome: CellOutcome | undefined;
  private resultView: ResultView | null = null;

  constructor(
    handle: CellHandle & { text: LoroText },
    private readonly ctx: CellsContext,
    readonly lazy = false,
  ) {
    this.id = handle.id;
    this.kind = handle.kind;
    this.text = handle.text;
    const { signal } = ctx;
    const named = (handle.kind === "sql" || handle.kind === "input") && ctx.readOnly !== true;

    this.nameEl = h("span", {
      class: "snb-cell-name",
      testid: "snb-cell-name",
      contenteditable: named ? "plaintext-only" : false,
      spellcheck: "false",
      role: named ? "textbox" : undefined,
      "aria-label": handle.kind === "input" ? "Parameter name" : "Result name",
      title: handle.kind === "sql"
        ? "Result name: later cells can query it as a table. Click to rename."
        : handle.kind === "input" ? "Parameter name: SQL cells read the value as $name. Click to rename." : undefined,
    });
    this.nameEl.addEventListener("keydown", (e) => this.onNameKey(e), { signal });
    this.nameEl.addEventListener("blur", () => this.commitName(), { signal });

    this.stateEl = this.runStatus.el;
    this.cancelButton = handle.kind === "sql" ? iconButton("snb-cancel", ICONS.cancel, "Cancel the run", "Cancel") : null;
    this.cancelButton?.addEventListener("click", () => ctx.cancel?.(this.id), { signal });
    if (this.cancelButton) this.cancelButton.hidden = true;
    this.runButton = handle.kind === "sql" ? iconButton("snb-run", ICONS.run, "Run cell (Shift+Enter)", "Run") : null;
    this.runButton?.addEventListener("click", () => ctx.run(this.id), { signal });
    this.upButton = iconButton("snb-move-up", ICONS.up, "Move cell up");
    this.downButton = iconButton("snb-move-down", ICONS.down, "Move cell down");
    const deleteButton = iconButton("snb-delete-cell", ICONS.delete, "Delete cell");
    this.upButton.addEventListener("click", () => this.move(-1), { signal });
    this.downButton.addEventListener("click", () => this.move(1), { signal });
    deleteButton.addEventListener("click", () => this.act(() => deleteCell(ctx.doc, this.id)), { signal });

    const editorHost = h("div", { class: "snb-cell-editor", testid: "snb-cell-editor" });
    const actions = h("span", { class: "snb-cell-actions" }, this.upButton, this.downButton, deleteButton);
    this.output = h("div", { class: "snb-output" });
    this.el = h("div", { class: "snb-cell", testid: "snb-cell", "data-cell-id": handle.id, "data-cell-kind": handle.kind },
      h("div", { class: "snb-cell-header" },
        h("span", { class: "snb-kind" }, KIND_LABELS[handle.kind]),
        this.nameEl,
        this.stateEl,
        h("span", { class: "snb-spacer" }),
        actions,
        this.runButton,
        this.cancelButton,
      ),
      editorHost,
      this.output,
    );
    this.editorHost = editorHost;
    // A placeholder clicked before the observer built the editor (a fast scroll): build it now.
    editorHost.addEventListener("mousedown", (e) => {
      if (!this.placeholder || !this.placeholder.contains(e.target as Node)) return;
      e.preventDefault();
      this.materialise().focus();
    }, { signal });
    this.newEditor = (undo) => createCellEditor({
      parent: editorHost,
      cellId: handle.id,
      kind: handle.kind,
      doc: ctx.doc,
      text: handle.text,
      undo,
      presence: ctx.presence,
      onRun: () => handle.kind === "sql" && ctx.readOnly !== true && ctx.run(this.id),
      completions: ctx.completions,
      label: handle.kind === "sql" ? "SQL" : "Markdown",
      readOnly: ctx.readOnly === true,
    });
    if (lazy) {
      this.el.classList.add(LAZY_CLASS);
      this.dematerialise();
    } else {
      this.materialise();
    }
    if (handle.kind === "markdown") {
      this.markdown = new MarkdownMode({
        cell: this.el, editorHost, actions, signal, source: () => handle.text.toString(), focusEditor: () => this.materialise().focus(),
      });
    } else if (handle.kind === "chart") {
      editorHost.hidden = true; // a chart cell's text is a note, not shown (yet)
      this.chart = new ChartView({
        doc: ctx.doc,
        cellId: handle.id,
        signal,
        sources: () => chartSources(ctx),
        requestData: () => ctx.chartData?.(handle.id),
        notify: (message) => ctx.notify(message),
      });
      editorHost.after(this.chart.el);
    } else if (handle.kind === "input") {
      editorHost.hidden = true; // an input cell's text is a note, not shown (yet)
      this.input = new InputView({ doc: ctx.doc, cellId: handle.id, signal, name: () => this.name, notify: (m) => ctx.notify(m) });
      const options = ctx.inputOptions?.get(handle.id);
      if (options) this.input.setOptions(options);
      editorHost.after(this.input.el);
    }
    // Read-only: chart builders and input controls write the document; look, don't touch.
    if (ctx.readOnly) {
      for (const part of [this.chart?.el.querySelector(".snb-chart-builder"), this.input?.el]) part?.setAttribute("inert", "");
    }
    this.update(handle, false, false);
  }

  /** Its text changed (typing, here or in another view): refresh what shows the text. */
  textChanged(): void {
    this.markdown?.update();
    if (this.placeholder) this.placeholder.textContent = this.text.toString();
  }

  /** Refresh from the doc: name, and whether it can move up / down. */
  update(handle: CellHandle, first: boolean, last: boolean): void {
    if (handle.name !== this.name) {
      this.name = handle.name;
      this.labelEditor();
      if (document.activeElement !== this.nameEl) this.nameEl.textContent = handle.name;
    }
    this.upButton.disabled = first;
    this.downButton.disabled = last;
    this.markdown?.update();
    this.chart?.update();
    this.input?.update();
  }

  /** Show the cell's run state, result and error (re-renders only when the outcome changed). */
  setOutcome(outcome: CellOutcome | undefined): void {
    this.el.classList.toggle("snb-is-running", outcome?.running === true);
    const busy = outcome?.running === true || outcome?.queued === true;
    this.runStatus.set(outcome);
    if (this.runButton) this.runButton.hidden = busy;
    if (this.cancelButton) this.cancelButton.hidden = !busy;
    if (outcome?.result === this.shownOutcome?.result && outcome?.error === this.shownOutcome?.error) {
      this.shownOutcome = outcome;
      return;
    }
    this.shownOutcome = outcome;
    this.resultView?.destroy();
    this.resultView = null;
    this.output.replaceChildren();
    if (outcome?.error) this.output.append(renderCellError(outcome.error));
    else if (outcome?.result) {
      this.resultView = renderResult(outcome.result, this.ctx.results);
      this.output.append(this.resultView.el);
    }
  }

  focus(): void {
    if (this.markdown) this.markdown.edit();
    else this.materialise().focus();
  }

  /** Build the editor (lazy cells: when near the viewport, or focused); returns it. */
  materialise(): EditorView {
    if (this.editor) return this.editor;
    this.placeholder?.remove();
    this.placeholder = null;
    this.undoScope ??= this.ctx.undo.open(this.id, this.text);
    const editor = (this.editor = this.newEditor(this.undoScope));
    this.labelEditor();
    this.syncRoot();
    return editor;
  }

  /**
   * Drop the editor for a placeholder showing the text (lazy cells far from the viewport). A cell
   * in use (focused, or a Markdown cell being edited) keeps its editor and returns false. The undo
   * scope stays while it holds steps, so Ctrl-Z after scrolling back (or the toolbar's Undo
   * meanwhile) still undoes this cell's edits.
   */
  dematerialise(): boolean {
    if (this.placeholder) return true;
    if (this.hasFocus() || this.markdown?.isEditing()) return false;
    this.editor?.destroy();
    this.editor = null;
    if (this.undoScope && !this.undoScope.manager.canUndo() && !this.undoScope.manager.canRedo()) {
      this.ctx.undo.close(this.id);
      this.undoScope = null;
    }
    this.placeholder = h("div", { class: "snb-cell-placeholder" }, this.text.toString());
    this.editorHost.append(this.placeholder);
    return true;
  }

  private labelEditor(): void {
    this.editor?.contentDOM.setAttribute("aria-label", `${this.kind === "sql" ? "SQL" : "Markdown"} of ${this.name || "cell"}`);
  }

  /** Whether the focus is in this cell (its editor, name or buttons). */
  hasFocus(): boolean {
    const root = this.el.getRootNode();
    const active = root instanceof Document || root instanceof ShadowRoot ? root.activeElement : null;
    return active !== null && this.el.contains(active);
  }

  /**
   * Point the editor at the document or shadow root it now lives in. CodeMirror mounts its
   * styles into `view.root`, fixed when the view is created: an editor made while detached
   * styles the main document, which a shadow root (marimo renders widgets in one) does not see,
   * and the unstyled editor puts the native caret, and so typed text, in the wrong place.
   */
  syncRoot(): void {
    const root = this.el.getRootNode();
    if (this.editor && (root instanceof Document || root instanceof ShadowRoot) && this.editor.root !== root) {
      this.editor.setRoot(root);
    }
  }

  /** Mark the cell stale (its result is out of date) or not. */
  setStale(stale: boolean): void {
    if (stale) this.el.dataset["stale"] = "true";
    else delete this.el.dataset["stale"];
    this.runStatus.setStale(stale);
  }

  destroy(): void {
    this.runStatus.destroy();
    this.resultView?.destroy();
    this.chart?.destroy();
    this.input?.destroy();
    this.editor?.destroy();
    if (this.undoScope) this.ctx.undo.close(this.id);
    this.el.remove();
  }

  private move(delta: number): void {
    const handles = cellHandles(this.ctx.doc);
    const at = handles.findIndex((c) => c.id === this.id);
    const target = handles[at + delta];
    if (at < 0 || !target) return;
    this.act(() => moveCell(this.ctx.doc, this.id, target.index));
  }

  private act(action: () => void): void {
    try {
      action();
    } catch (err) {
      if (err instanceof CellError) this.ctx.notify(err.message);
      else console.error(`${LOG_PREFIX} cell action failed`, err);
    }
  }

  private onNameKey(e: KeyboardEvent): void {
    if (e.key === "Enter") {
      e.preventDefault();
      this.nameEl.blur();
    } else if (e.key === "Escape") {
      e.preventDefault();
      this.nameEl.textContent = this.name;
      this.nameEl.blur();
    }
  }

  private commitName(): void {
    const value = (this.nameEl.textContent ?? "").trim();
    if (value === this.name) {
      this.nameEl.textContent = this.name;
      return;
    }
    if (!isValidCellName(value)) {
      this.nameEl.textContent = this.name;
      this.nameEl.classList.add("snb-invalid");
      setTimeout(() => this.nameEl.classList.remove("snb-invalid"), 1500);
      this.ctx.notify(
        `"${value}" is not a valid result name: use a letter or _ followed by letters, digits or _ (at most 63 characters).`,
      );
      return;
    }
    this.act(() => renameCell(this.ctx.doc, this.id, value));
  }
}

/** The list of cells plus the empty state; call {@link CellList.schedule} on doc events. */
export class CellList {
  readonly el: HTMLElement;
  private readonly views = new Map<string, CellView>();
  private readonly byText = new Map<ContainerID, CellView>();
  private readonly lazy: LazyEditors;
  /** Texts edited since the last render, while only texts were (see {@link schedule}). */
  private readonly editedTexts = new Set<ContainerID>();
  private fullRender = false;
  private readonly empty: HTMLElement;
  private scheduled = false;
  private focusNext: string | null = null;
  private destroyed = false;

  constructor(private readonly ctx: CellsContext) {
    this.empty = h("div", { class: "snb-empty-notebook" }, "Connecting to the kernel…");
    // Focusable: it takes the focus from a cell that goes away, so the undo keys still work.
    this.el = h("div", { class: "snb-cells", tabindex: "-1" });
    this.lazy = new LazyEditors(this.el);
  }

  /** The handshake completed: an empty list now means the notebook has no cells. */
  setConnected(): void {
    this.empty.textContent = "No cells yet. Add a SQL cell to start.";
  }

  /**
   * Add a cell at the end and focus it once rendered. A chart starts on the last SQL cell that
   * has a result, with its first column as x and its first numeric one as y.
   */
  addCell(kind: CellKind = "sql"): void {
    try {
      if (kind === "chart") {
        const source = chartSources(this.ctx).reverse().find((s) => s.columns !== undefined);
        const chart = source ? { source: source.name, ...pickColumns(source.columns ?? []) } : {};
        addCell(this.ctx.doc, { kind, chart });
      } else if (kind === "input") {
        addCell(this.ctx.doc, { kind });
      } else {
        this.focusNext = addCell(this.ctx.doc, { kind });
      }
    } catch (err) {
      console.error(`${LOG_PREFIX} could not add a cell`, err);
    }
  }

  /** Re-render at the end of the current task (several doc events -> one render). */
  schedule(batch?: LoroEventBatch): void {
    // Typing (a batch of text edits only) refreshes just those cells: a full render walks every
    // cell, ~60 ms a keystroke in a 5,000-cell notebook.
    if (onlyTextEdits(batch)) for (const e of batch.events) this.editedTexts.add(e.target);
    else this.fullRender = true;
    if (this.scheduled || this.destroyed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (this.destroyed) return;
      if (this.fullRender) this.render();
      for (const id of this.editedTexts) this.byText.get(id)?.textChanged();
      this.editedTexts.clear();
    });
  }

  /** Bring the DOM in line with the doc's cells. */
  render(): void {
    this.fullRender = false;
    const handles = cellHandles(this.ctx.doc).filter((c): c is CellHandle & { text: LoroText } => c.text !== undefined);
    const byId = new Map<string, CellHandle & { text: LoroText }>(handles.map((c) => [c.id, c]));
    for (const [id, view] of this.views) {
      const handle = byId.get(id);
      // Gone, or its text container was replaced (then the editor must bind the new one).
      if (!handle || handle.text.id !== view.text.id || handle.kind !== view.kind) {
        const hadFocus = view.hasFocus();
        view.destroy();
        this.views.delete(id);
        this.byText.delete(view.text.id);
        if (hadFocus && handle) this.focusNext = id; // rebuilt (e.g. restored by undo): refocus
        else if (hadFocus) this.el.focus({ preventScroll: true });
      }
    }
    const lazy = useLazyEditors(handles.length);
    // Walk the children alongside: `children[i]` after insertions re-scans the list (quadratic).
    let at: Element | null = this.el.firstElementChild;
    handles.forEach((handle, i) => {
      let view = this.views.get(handle.id);
      if (!view) {
        view = new CellView(handle, this.ctx, lazy);
        this.views.set(handle.id, view);
        this.byText.set(view.text.id, view);
      }
      view.update(handle, i === 0, i === handles.length - 1);
      view.setOutcome(this.ctx.outcomes.get(handle.id));
      view.setStale(this.ctx.stale?.has(handle.id) === true);
      if (at === view.el) at = at.nextElementSibling;
      else this.el.insertBefore(view.el, at);
      view.syncRoot();
    });
    this.lazy.setCells(handles.map((c) => this.views.get(c.id)).filter((v): v is CellView => v?.lazy === true));
    if (handles.length === 0) this.el.append(this.empty);
    else this.empty.remove();
    if (this.focusNext !== null) {
      this.views.get(this.focusNext)?.focus();
      this.focusNext = null;
    }
  }

  /** Re-check every editor's root (call once the widget is attached to the page). */
  syncRoots(): void {
    for (const view of this.views.values()) view.syncRoot();
  }

  /** Refresh one cell's outcome (run state, result, error), and the charts (one may plot it). */
  showOutcome(cellId: string): void {
    this.views.get(cellId)?.setOutcome(this.ctx.outcomes.get(cellId));
    this.views.get(cellId)?.setStale(this.ctx.stale?.has(cellId) === true);
    for (const view of this.views.values()) view.chart?.update();
  }

  /** An `input_options` message: kept, and shown by its input cell. */
  showInputOptions(message: InputOptions): void {
    this.ctx.inputOptions?.set(message.cell, message);
    this.views.get(message.cell)?.input?.setOptions(message);
  }

  /** A `chart_data` reply: to its chart cell. */
  showChartData(message: ChartData): void {
    this.views.get(message.cell)?.chart?.onData(message);
  }

  /** An `error`: whether it answered a chart's data request (then that chart shows it). */
  chartError(message: ErrorMessage): boolean {
    for (const view of this.views.values()) if (view.chart?.onError(message)) return true;
    return false;
  }

  destroy(): void {
    this.destroyed = true;
    this.lazy.disconnect();
    for (const view of this.views.values()) view.destroy();
    this.views.clear();
    this.el.remove();
  }
}

/** Whether a doc event batch only edited texts (typing): no cell was added, moved, renamed... */
export function onlyTextEdits(batch: LoroEventBatch | undefined): batch is LoroEventBatch {
  return batch !== undefined && batch.events.length > 0 && batch.events.every((e) => e.diff.type === "text");
}

/** The SQL cells a chart can plot, with their last result's columns. */
function chartSources(ctx: CellsContext): ChartSource[] {
  return cellHandles(ctx.doc)
    .filter((c) => c.kind === "sql" && c.name !== "")
    .map((c) => {
      const outcome = ctx.outcomes.get(c.id);
      return { name: c.name, columns: outcome?.result?.columns, stamp: outcomeStamp(outcome) };
    });
}
