/**
 * The toolbar's Undo / Redo buttons, and the same actions on Ctrl/Cmd-Z, Ctrl/Cmd-Shift-Z and
 * Ctrl-Y pressed anywhere in the widget outside an editor or text field. Both act on this view's
 * newest own step over all cells and the notebook's structure ({@link UndoScopes}); inside a cell
 * editor the keys stay with that cell (the editor's keymap handles them first).
 */
import { h } from "./dom";
import type { UndoScopes } from "./editor";

const UNDO_ICON =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M5.8 3 1.8 6.6l4 3.6V7.5h4.1a2.6 2.6 0 0 1 0 5.2H6.5V14h3.4a3.9 3.9 0 0 0 0-7.8H5.8z"/></svg>';
const REDO_ICON =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="m10.2 3 4 3.6-4 3.6V7.5H6.1a2.6 2.6 0 0 0 0 5.2h3.4V14H6.1a3.9 3.9 0 0 1 0-7.8h4.1z"/></svg>';

/** Which action a key press asks for: Mod-Z undo; Mod-Shift-Z and Ctrl-Y redo; else `null`. */
export function undoKeyAction(e: Pick<KeyboardEvent, "key" | "ctrlKey" | "metaKey" | "shiftKey" | "altKey">): "undo" | "redo" | null {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const key = e.key.toLowerCase();
  if (key === "z") return e.shiftKey ? "redo" : "undo";
  if (key === "y" && e.ctrlKey && !e.shiftKey) return "redo";
  return null;
}

/** Whether key presses on `target` belong to a text field (its own undo) or a cell editor. */
function ownsKeys(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || target.closest("input, textarea, select, .cm-editor") !== null;
}

function isFocused(el: HTMLElement): boolean {
  const root = el.getRootNode();
  return (root instanceof Document || root instanceof ShadowRoot) && root.activeElement === el;
}

export interface UndoControlsOptions {
  scopes: UndoScopes;
  signal: AbortSignal;
}

/** Undo / Redo buttons (`snb-undo`, `snb-redo`), disabled while there is nothing to do. */
export class UndoControls {
  readonly el: HTMLElement;
  private readonly undoButton: HTMLButtonElement;
  private readonly redoButton: HTMLButtonElement;
  private root: HTMLElement | null = null;

  constructor(private readonly options: UndoControlsOptions) {
    const { scopes, signal } = options;
    const mac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
    const undoLabel = `Undo your last edit (${mac ? "⌘Z" : "Ctrl+Z"})`;
    const redoLabel = `Redo (${mac ? "⇧⌘Z" : "Ctrl+Shift+Z"})`;
    this.undoButton = this.button("snb-undo", UNDO_ICON, undoLabel);
    this.redoButton = this.button("snb-redo", REDO_ICON, redoLabel);
    this.undoButton.addEventListener("click", () => scopes.undo(), { signal });
    this.redoButton.addEventListener("click", () => scopes.redo(), { signal });
    this.el = h("span", { class: "snb-undo-redo", role: "group", "aria-label": "Undo and redo" }, this.undoButton, this.redoButton);
    const unsubscribe = scopes.subscribe(() => this.refresh());
    signal.addEventListener("abort", unsubscribe, { once: true });
    this.refresh();
  }

  /** Handle the undo / redo keys pressed in `root` outside editors and text fields. */
  bindKeys(root: HTMLElement): void {
    this.root = root;
    root.addEventListener(
      "keydown",
      (e) => {
        const action = undoKeyAction(e);
        if (!action || e.defaultPrevented || e.isComposing || ownsKeys(e.target)) return;
        e.preventDefault();
        e.stopPropagation(); // the host (marimo, JupyterLab) must not undo its own edits too
        if (action === "undo") this.options.scopes.undo();
        else this.options.scopes.redo();
      },
      { signal: this.options.signal },
    );
  }

  refresh(): void {
    const { scopes } = this.options;
    for (const [button, enabled] of [[this.undoButton, scopes.canUndo()], [this.redoButton, scopes.canRedo()]] as const) {
      if (button.disabled === !enabled) continue;
      const focused = !enabled && isFocused(button);
      button.disabled = !enabled;
      // A disabled button drops the focus to the page: keep it in the widget (and its keys).
      if (focused) this.root?.focus({ preventScroll: true });
    }
  }

  private button(testid: string, icon: string, label: string): HTMLButtonElement {
    const button = h("button", { type: "button", class: "snb-btn", testid, title: label, "aria-label": label });
    button.innerHTML = icon;
    return button;
  }
}
