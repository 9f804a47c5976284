/**
 * A cell's CodeMirror 6 editor, bound to the cell's `source` LoroText with loro-codemirror
 * (`LoroSyncPlugin` + `LoroUndoPlugin`, each given a getter returning the cell's text).
 *
 * What loro-codemirror 0.3.3 does not do for a document with many texts, handled here:
 *
 * - Its sync and undo plugins walk an event batch and `return` at the first event that is not
 *   their text, so a batch touching several containers (a cell's name and source changed in one
 *   commit, edits in two cells relayed together) skipped this editor's text and left editor and
 *   document diverged. Each editor gets a view of the doc ({@link textScopedDoc}) whose
 *   `subscribe` only passes events targeting this cell's text.
 * - A Loro undo manager covers the whole doc. Each cell gets its own, excluding the other
 *   cells' edits by commit origin ({@link UndoScopes}), so Ctrl-Z undoes this cell's edits only;
 *   the toolbar's Undo / Redo take the newest step over all cells and the notebook's structure.
 * - Its keymap undoes from inside a CodeMirror state-field update, so the undo's own dispatch is
 *   nested in another: @codemirror/view 6.43 throws "Cannot destructure property 'tile'" / "No
 *   tile at position N" and redo is lost. Ctrl-Z / Ctrl-Y / Ctrl-Shift-Z here call the undo
 *   manager directly from the key handler (a higher-precedence keymap).
 * - Its init check skips the first editor update even when nothing needed syncing, which would
 *   drop the first keystroke: an empty transaction is dispatched right after it.
 *
 * There is no CodeMirror `history()`: with it, Ctrl-Z also reverted remote inserts and the editor
 * diverged from the doc. Undo is Loro's (own peer's ops only).
 */
import { EditorState, Prec, type Extension } from "@codemirror/state";
import { EditorSelection } from "@codemirror/state";
import { EditorView, drawSelection, highlightSpecialChars, keymap, placeholder } from "@codemirror/view";
import { defaultKeymap } from "@codemirror/commands";
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { markdown } from "@codemirror/lang-markdown";
import { LoroSyncPlugin, LoroUndoPlugin } from "loro-codemirror";
import { UndoManager, type Cursor, type LoroDoc, type LoroEventBatch, type LoroText } from "loro-crdt";
import type { Presence } from "../presence";
import { LOG_PREFIX, type CellId } from "../protocol";
import { presenceExtension } from "./cursors";
import { sqlSupport, type SqlCompletions } from "./complete";
import { STRUCTURE_ORIGIN, type CellKind } from "../notebook";

/** Merge consecutive local edits into one undo step when closer than this (ms). */
export const UNDO_MERGE_INTERVAL_MS = 500;

/**
 * A view of `doc` for one editor: `subscribe` only delivers the events that target `text`
 * (batches with none are dropped), and `commit()` without an origin commits with `origin`;
 * every other member is the doc's own, bound to it.
 */
export function textScopedDoc(doc: LoroDoc, text: LoroText, origin: string): LoroDoc {
  const subscribe = (listener: (batch: LoroEventBatch) => void) =>
    doc.subscribe((batch) => {
      const events = batch.events.filter((e) => e.target === text.id);
      if (events.length > 0) listener({ ...batch, events });
    });
  const commit = (options?: Parameters<LoroDoc["commit"]>[0]) => doc.commit({ ...options, origin: options?.origin ?? origin });
  return new Proxy(doc, {
    get(target, prop) {
      if (prop === "subscribe") return subscribe;
      if (prop === "commit") return commit;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Prefix of every cell editor's commit origin (see {@link cellOrigin}). */
export const CELL_ORIGIN_PREFIX = "snb:cell:";

/** Commit origin of a cell editor's edits; `;` ends it so no id is a prefix of another. */
export function cellOrigin(cellId: string): string {
  return `${CELL_ORIGIN_PREFIX}${cellId};`;
}

/** Origin of the commits Loro's undo manager makes when it undoes or redoes. */
const UNDO_ORIGIN = "undo";

/** At most this many no-op steps are skipped by one {@link UndoScopes.undo} / `redo`. */
const MAX_SKIPPED_STEPS = 200;

/** What a scope's manager hooks report to {@link UndoScopes}. */
interface ScopeHooks {
  /** A step was pushed (undo stack if `isUndo`); returns its stamp (higher = newer). */
  pushed(manager: UndoManager, isUndo: boolean): number;
  /** A step was popped. */
  popped(): void;
  /** Run an undo / redo: the steps it pushes are not fresh edits. */
  replay(step: () => boolean): boolean;
}

/**
 * This view's undo scopes: one Loro undo manager per cell editor (its text edits), and one for
 * the notebook's structure (add, delete, move, rename: commits with {@link STRUCTURE_ORIGIN}).
 *
 * Scopes are told apart by commit origin: each cell's manager excludes the other cells' origins
 * (see {@link cellOrigin}), structural edits and undo commits; the structure's manager excludes
 * every cell origin and undo commits. So Ctrl-Z in a cell undoes that cell's last local edit
 * only. Other peers' edits are never undone (Loro's managers only undo their own peer).
 *
 * {@link undo} / {@link redo} (toolbar, keys outside editors) take this view's newest step over
 * all scopes: each pushed step is stamped with a counter kept as the step's meta value, and the
 * manager whose top step has the highest stamp goes first (merged steps keep the stamp of their
 * first edit). A fresh edit in any scope drops what every scope could redo, as one history would.
 *
 * Undoing a cell's deletion (Loro 1.17) recreates its map and text as new containers holding what
 * they held when deleted (edits other peers made concurrently to the deleted cell are not in
 * them): the cell list rebuilds that cell's editor, and the new editor's scope starts empty.
 */
export class UndoScopes {
  private readonly cells = new Map<string, CellUndo>();
  private readonly structure: UndoManager;
  private readonly hooks: ScopeHooks;
  private stamp = 0;
  private replaying = false;
  private readonly listeners = new Set<() => void>();
  private notifyQueued = false;

  constructor(private readonly doc: LoroDoc) {
    this.hooks = {
      pushed: (manager, isUndo) => this.pushed(manager, isUndo),
      popped: () => this.changed(),
      replay: (step) => this.replay(step),
    };
    const structure = new UndoManager(doc, { mergeInterval: 0, excludeOriginPrefixes: [CELL_ORIGIN_PREFIX, UNDO_ORIGIN] });
    structure.setOnPush((isUndo) => ({ value: this.pushed(structure, isUndo), cursors: [] }));
    structure.setOnPop(() => this.changed());
    this.structure = structure;
  }

  /** Create the undo scope of a cell (one per editor). */
  open(cellId: string, text: LoroText): CellUndo {
    this.cells.get(cellId)?.free();
    const others = [...this.cells.keys()].filter((id) => id !== cellId).map(cellOrigin);
    const manager = new UndoManager(this.doc, {
      mergeInterval: UNDO_MERGE_INTERVAL_MS,
      excludeOriginPrefixes: [STRUCTURE_ORIGIN, UNDO_ORIGIN, ...others],
    });
    for (const [id, other] of this.cells) if (id !== cellId) other.manager.addExcludeOriginPrefix(cellOrigin(cellId));
    const scope = new CellUndo(this.doc, manager, text, this.hooks);
    this.cells.set(cellId, scope);
    this.changed();
    return scope;
  }

  /** Drop a cell's scope (its editor was destroyed); its steps go with it. */
  close(cellId: string): void {
    this.cells.get(cellId)?.free();
    this.cells.delete(cellId);
    this.changed();
  }

  canUndo(): boolean {
    return this.managers().some((m) => m.canUndo());
  }

  canRedo(): boolean {
    return this.managers().some((m) => m.canRedo());
  }

  /**
   * Undo this view's newest step over all scopes; steps that turn out empty (e.g. their text was
   * deleted meanwhile) are skipped. Returns whether the doc changed. The undo is a local commit
   * (origin "undo") that syncs and persists like any edit.
   */
  undo(): boolean {
    return this.step(true);
  }

  /** Redo the most recently undone step over all scopes; see {@link undo}. */
  redo(): boolean {
    return this.step(false);
  }

  /** Call `listener` (once per task) when what can be undone or redone may have changed. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  free(): void {
    for (const scope of this.cells.values()) scope.free();
    this.cells.clear();
    this.structure.setOnPush(undefined);
    this.structure.setOnPop(undefined);
    this.structure.free();
    this.listeners.clear();
  }

  private managers(): UndoManager[] {
    return [this.structure, ...[...this.cells.values()].map((c) => c.manager)];
  }

  private step(isUndo: boolean): boolean {
    for (let i = 0; i < MAX_SKIPPED_STEPS; i++) {
      let newest: UndoManager | undefined;
      let newestStamp = -Infinity;
      for (const m of this.managers()) {
        if (!(isUndo ? m.canUndo() : m.canRedo())) continue;
        const value = isUndo ? m.topUndoValue() : m.topRedoValue();
        const stamp = typeof value === "number" ? value : -1;
        if (stamp > newestStamp) [newest, newestStamp] = [m, stamp];
      }
      if (!newest) return false;
      const manager = newest;
      try {
        if (this.replay(() => (isUndo ? manager.undo() : manager.redo()))) return true;
      } catch (err) {
        // Loro drops a step it cannot apply (see UndoManager.undo) and keeps the others.
        console.warn(`${LOG_PREFIX} could not ${isUndo ? "undo" : "redo"} a step`, err);
      }
    }
    return false;
  }

  private replay(step: () => boolean): boolean {
    const outer = this.replaying;
    this.replaying = true;
    try {
      return step();
    } finally {
      this.replaying = outer;
    }
  }

  private pushed(manager: UndoManager, isUndo: boolean): number {
    if (isUndo && !this.replaying) {
      for (const m of this.managers()) if (m !== manager) m.clearRedo();
    }
    this.changed();
    return ++this.stamp;
  }

  private changed(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const listener of this.listeners) {
        try {
          listener();
        } catch (err) {
          console.error(`${LOG_PREFIX} undo listener failed`, err);
        }
      }
    });
  }
}

/** One cell's undo manager, with selection restore into the cell's editor after undo / redo. */
export class CellUndo {
  private view: EditorView | null = null;

  constructor(
    private readonly doc: LoroDoc,
    readonly manager: UndoManager,
    private readonly text: LoroText,
    private readonly hooks: ScopeHooks,
  ) {
    manager.setOnPush((isUndo) => ({ value: hooks.pushed(manager, isUndo), cursors: [] }));
    manager.setOnPop(() => hooks.popped());
  }

  /**
   * Bind the editor and take over the manager's push / pop hooks from LoroUndoPlugin (Loro keeps
   * one of each per manager): they stamp the step for {@link UndoScopes} and keep the selection.
   */
  attach(view: EditorView): void {
    this.view = view;
    this.manager.setOnPush((isUndo) => {
      const cursors: Cursor[] = [];
      const sel = view.state.selection.main;
      for (const pos of [sel.anchor, sel.head]) {
        const cursor = this.text.getCursor(Math.min(pos, this.text.length));
        if (cursor) cursors.push(cursor);
      }
      return { value: this.hooks.pushed(this.manager, isUndo), cursors };
    });
    this.manager.setOnPop((_isUndo, meta) => {
      this.hooks.popped();
      const [anchor, head] = meta.cursors;
      if (anchor) setTimeout(() => this.restoreSelection(anchor, head), 0);
    });
  }

  /** Undo this cell's last local edit; false if there was none. */
  undo(): boolean {
    if (!this.manager.canUndo()) return false;
    this.hooks.replay(() => this.manager.undo());
    return true;
  }

  /** Redo this cell's last undone edit; false if there was none. */
  redo(): boolean {
    if (!this.manager.canRedo()) return false;
    this.hooks.replay(() => this.manager.redo());
    return true;
  }

  free(): void {
    this.view = null;
    this.manager.setOnPush(undefined);
    this.manager.setOnPop(undefined);
    this.manager.free();
  }

  private restoreSelection(anchor: Cursor, head: Cursor | undefined): void {
    const view = this.view;
    if (!view) return;
    try {
      const length = view.state.doc.length;
      const a = Math.min(this.doc.getCursorPos(anchor)?.offset ?? length, length);
      const b = head ? Math.min(this.doc.getCursorPos(head)?.offset ?? a, length) : a;
      const selection = EditorSelection.single(a, b);
      view.dispatch({ selection, effects: EditorView.scrollIntoView(selection.main) });
    } catch (err) {
      console.debug(`${LOG_PREFIX} could not restore the selection after undo`, err);
    }
  }
}

export interface CellEditorOptions {
  parent: HTMLElement;
  cellId: string;
  kind: CellKind;
  doc: LoroDoc;
  text: LoroText;
  undo: CellUndo;
  /** Draws other views' carets in this editor and reports its selection (optional). */
  presence?: Presence | undefined;
  /** Shift-Enter / Ctrl-Enter (Cmd-Enter). */
  onRun: () => void;
  label: string;
  /** Names SQL cells complete from (catalog, other cells); without it, keywords only. */
  completions?: SqlCompletions | undefined;
  /** A read-only view: the editor takes no input (its text still follows remote edits). */
  readOnly?: boolean;
}

const editorTheme = EditorView.theme({
  "&": { fontSize: "13px", backgroundColor: "transparent" },
  "&.cm-focused": { outline: "none" },
  ".cm-scroller": {
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace",
    lineHeight: "1.5",
  },
  ".cm-content": { padding: "8px 0", minHeight: "1.5em" },
  ".cm-line": { padding: "0 12px" },
  ".cm-placeholder": { color: "#9aa0a6" },
});

/** Create the editor in `parent`; destroy it with `view.destroy()`, then close its undo scope. */
export function createCellEditor(options: CellEditorOptions): EditorView {
  const { doc, text, undo, cellId } = options;
  const scoped = textScopedDoc(doc, text, cellOrigin(cellId));
  const getText = () => text;
  const runKeys = Prec.highest(
    keymap.of([
      { key: "Shift-Enter", run: () => (options.onRun(), true) },
      { key: "Mod-Enter", run: () => (options.onRun(), true) },
      { key: "Mod-z", run: () => undo.undo() || true, preventDefault: true },
      { key: "Mod-y", mac: "Mod-Shift-z", run: () => undo.redo() || true, preventDefault: true },
      { key: "Mod-Shift-z", run: () => undo.redo() || true, preventDefault: true },
    ]),
  );
  const extensions: Extension[] = [
    runKeys,
    highlightSpecialChars(),
    drawSelection(),
    indentOnInput(),
    bracketMatching(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    keymap.of(defaultKeymap),
    EditorView.lineWrapping,
    placeholder(options.kind === "sql" ? "select … (Shift+Enter runs)" : "Markdown"),
    EditorView.contentAttributes.of({ "aria-label": options.label }),
    editorTheme,
    LoroSyncPlugin(scoped, getText),
    LoroUndoPlugin(scoped, undo.manager, getText),
  ];
  if (options.presence) extensions.push(presenceExtension(options.presence, doc, cellId as CellId, text));
  if (options.kind === "sql") extensions.push(sqlSupport(cellId, options.completions));
  if (options.kind === "markdown") extensions.push(markdown());
  // Read-only views: no input at all (the kernel also refuses their updates); remote edits still
  // arrive through LoroSyncPlugin, whose dispatches are not user input.
  if (options.readOnly) extensions.push(EditorState.readOnly.of(true), EditorView.editable.of(false));
  const view = new EditorView({
    parent: options.parent,
    state: EditorState.create({ doc: text.toString(), extensions }),
  });
  undo.attach(view); // after LoroUndoPlugin set the manager's hooks in the view's constructor
  // loro-codemirror's sync plugin skips the first update after its init check, even when that
  // check found nothing to change: feed it an empty transaction so the first keystroke counts.
  // (Dispatching to a destroyed view is a no-op.)
  queueMicrotask(() => view.dispatch({}));
  return view;
}
