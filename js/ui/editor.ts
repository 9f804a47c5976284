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
 *   cells' edits by commit origin ({@link UndoScopes}), so Ctrl-Z undoes this cell's edits only.
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
import { PostgreSQL, sql } from "@codemirror/lang-sql";
import { LoroSyncPlugin, LoroUndoPlugin } from "loro-codemirror";
import { UndoManager, type Cursor, type LoroDoc, type LoroEventBatch, type LoroText } from "loro-crdt";
import type { Presence } from "../presence";
import { LOG_PREFIX, type CellId } from "../protocol";
import { presenceExtension } from "./cursors";
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

/** Commit origin of a cell editor's edits; `;` ends it so no id is a prefix of another. */
export function cellOrigin(cellId: string): string {
  return `snb:cell:${cellId};`;
}

/** Origin of the commits Loro's undo manager makes when it undoes or redoes. */
const UNDO_ORIGIN = "undo";

/**
 * Per-cell undo for one view: each editor gets its own Loro undo manager, and every manager
 * excludes the other cells' edits (by commit origin, see {@link cellOrigin}), structural edits
 * ({@link STRUCTURE_ORIGIN}) and undo commits. So Ctrl-Z in a cell undoes that cell's last local
 * edit only; other peers' edits are never undone (Loro's managers only undo their own peer).
 */
export class UndoScopes {
  private readonly cells = new Map<string, CellUndo>();

  constructor(private readonly doc: LoroDoc) {}

  /** Create the undo scope of a cell (one per editor). */
  open(cellId: string, text: LoroText): CellUndo {
    this.cells.get(cellId)?.free();
    const others = [...this.cells.keys()].filter((id) => id !== cellId).map(cellOrigin);
    const manager = new UndoManager(this.doc, {
      mergeInterval: UNDO_MERGE_INTERVAL_MS,
      excludeOriginPrefixes: [STRUCTURE_ORIGIN, UNDO_ORIGIN, ...others],
    });
    for (const [id, other] of this.cells) if (id !== cellId) other.manager.addExcludeOriginPrefix(cellOrigin(cellId));
    const scope = new CellUndo(this.doc, manager, text);
    this.cells.set(cellId, scope);
    return scope;
  }

  /** Drop a cell's scope (its editor was destroyed). */
  close(cellId: string): void {
    this.cells.get(cellId)?.free();
    this.cells.delete(cellId);
  }

  free(): void {
    for (const scope of this.cells.values()) scope.free();
    this.cells.clear();
  }
}

/** One cell's undo manager, with selection restore into the cell's editor after undo / redo. */
export class CellUndo {
  private view: EditorView | null = null;

  constructor(
    private readonly doc: LoroDoc,
    readonly manager: UndoManager,
    private readonly text: LoroText,
  ) {}

  /** Bind the editor and take over the manager's push / pop hooks from LoroUndoPlugin. */
  attach(view: EditorView): void {
    this.view = view;
    this.manager.setOnPush(() => {
      const cursors: Cursor[] = [];
      const sel = view.state.selection.main;
      for (const pos of [sel.anchor, sel.head]) {
        const cursor = this.text.getCursor(Math.min(pos, this.text.length));
        if (cursor) cursors.push(cursor);
      }
      return { value: null, cursors };
    });
    this.manager.setOnPop((_isUndo, meta) => {
      const [anchor, head] = meta.cursors;
      if (anchor) setTimeout(() => this.restoreSelection(anchor, head), 0);
    });
  }

  undo(): boolean {
    if (!this.manager.canUndo()) return false;
    this.manager.undo();
    return true;
  }

  redo(): boolean {
    if (!this.manager.canRedo()) return false;
    this.manager.redo();
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
  if (options.kind === "sql") extensions.push(sql({ dialect: PostgreSQL, upperCaseKeywords: false }));
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
