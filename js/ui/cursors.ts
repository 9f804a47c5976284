/**
 * Other views' carets and selections in one cell's editor, and this editor's selection reported
 * to {@link Presence}.
 *
 * Remote positions come from Loro cursors (see presence.ts), resolved in this view's doc; they
 * are recomputed when presence changes and after document changes (deferred to the next task,
 * when Loro and the editor agree), and mapped through edits in between. A caret is a
 * `span.snb-remote-caret` widget (coloured bar, the name shown on hover); a selection is a
 * `snb-remote-selection` mark tinted with the peer's colour.
 *
 * Not the loro-codemirror ephemeral plugin: it keys entries by Loro peer and one text per store,
 * whereas here one store per view covers every cell (key = view id, value names the cell).
 */
import { StateEffect, type Extension, type Range } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, WidgetType, type DecorationSet, type ViewUpdate } from "@codemirror/view";
import type { LoroDoc, LoroText } from "loro-crdt";
import { resolveSelection, type Peer, type Presence } from "../presence";
import type { CellId } from "../protocol";

const refresh = StateEffect.define<null>();

class CaretWidget extends WidgetType {
  constructor(
    readonly view: string,
    readonly name: string,
    readonly color: string,
  ) {
    super();
  }

  override eq(other: CaretWidget): boolean {
    return other.view === this.view && other.name === this.name && other.color === this.color;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement("span");
    caret.className = "snb-remote-caret";
    caret.style.borderLeftColor = this.color;
    caret.dataset["view"] = this.view;
    caret.title = this.name;
    caret.setAttribute("aria-label", `${this.name}'s cursor`);
    const label = document.createElement("span");
    label.className = "snb-remote-caret-label";
    label.style.backgroundColor = this.color;
    label.textContent = this.name;
    caret.append(label);
    return caret;
  }

  override ignoreEvent(): boolean {
    return true;
  }
}

function tint(color: string): string {
  return `${color}33`; // #rrggbb + alpha 0.2
}

const theme = EditorView.baseTheme({
  ".snb-remote-caret": {
    position: "relative",
    display: "inline-block",
    width: "0",
    height: "1.2em",
    verticalAlign: "text-bottom",
    borderLeft: "2px solid",
    marginLeft: "-1px",
    marginRight: "-1px",
    pointerEvents: "auto",
  },
  ".snb-remote-caret::before": {
    // a wider invisible hover target
    content: '""',
    position: "absolute",
    left: "-4px",
    right: "-4px",
    top: "0",
    bottom: "0",
  },
  // Beside the caret on its own line, so that the editor's scroller never clips it.
  ".snb-remote-caret-label": {
    position: "absolute",
    left: "1px",
    top: "0",
    padding: "0 4px",
    borderRadius: "0 3px 3px 0",
    color: "#fff",
    fontSize: "10px",
    lineHeight: "14px",
    fontFamily: "system-ui, sans-serif",
    whiteSpace: "nowrap",
    opacity: "0",
    transition: "opacity 0.15s",
    pointerEvents: "none",
    zIndex: "10",
  },
  ".snb-remote-caret:hover .snb-remote-caret-label": { opacity: "1" },
});

/**
 * The extension for the editor of cell `cellId` (whose source is `text` in `doc`): draws the
 * other views' carets there, and reports this editor's selection while it has focus.
 */
export function presenceExtension(presence: Presence, doc: LoroDoc, cellId: CellId, text: LoroText): Extension {
  const plugin = ViewPlugin.fromClass(
    class {
      decorations: DecorationSet;
      private shown = false;
      private timer: ReturnType<typeof setTimeout> | null = null;
      private readonly unsubscribe: () => void;

      constructor(readonly view: EditorView) {
        this.decorations = this.build();
        this.unsubscribe = presence.onChange(() => {
          // Only editors that show, or are about to show, a remote caret need a new pass.
          if (this.shown || presence.peers().some((p) => sameCell(p, presence, cellId))) this.schedule();
        });
      }

      update(update: ViewUpdate): void {
        if (update.transactions.some((tr) => tr.effects.some((e) => e.is(refresh)))) {
          this.decorations = this.build();
          return;
        }
        if (update.docChanged) {
          this.decorations = this.decorations.map(update.changes);
          if (this.shown) this.schedule();
        }
      }

      /** Recompute from the Loro cursors once the current update (and Loro's import) is done. */
      schedule(): void {
        if (this.timer !== null) return;
        this.timer = setTimeout(() => {
          this.timer = null;
          this.view.dispatch({ effects: refresh.of(null) });
        }, 0);
      }

      build(): DecorationSet {
        const length = this.view.state.doc.length;
        const ranges: Range<Decoration>[] = [];
        const here = presence.peers().filter((p: Peer) => sameCell(p, presence, cellId));
        for (const peer of here) {
          const sel = resolveSelection(doc, peer);
          if (!sel) continue;
          const anchor = Math.min(sel.anchor, length);
          const head = Math.min(sel.head, length);
          const from = Math.min(anchor, head);
          const to = Math.max(anchor, head);
          if (from < to) {
            const attributes = { style: `background-color: ${tint(peer.color)}` };
            ranges.push(Decoration.mark({ class: "snb-remote-selection", attributes }).range(from, to));
          }
          const widget = new CaretWidget(peer.view, peer.name, peer.color);
          ranges.push(Decoration.widget({ widget, side: head === to ? 1 : -1 }).range(head));
        }
        this.shown = ranges.length > 0;
        return Decoration.set(ranges, true);
      }

      destroy(): void {
        this.unsubscribe();
        if (this.timer !== null) clearTimeout(this.timer);
      }
    },
    { decorations: (v) => v.decorations },
  );

  // This editor's selection, reported while it has focus (after the sync plugin has put the
  // edit into Loro, hence the microtask).
  let queued = false;
  const report = EditorView.updateListener.of((update) => {
    if (!(update.selectionSet || update.focusChanged) || !update.view.hasFocus || queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      const view = update.view;
      if (!view.hasFocus) return;
      const { anchor, head } = view.state.selection.main;
      presence.setSelection(cellId, text, anchor, head);
    });
  });

  return [plugin, report, theme];
}

/** Whether another view's selection is in this cell of this branch (ids repeat across branches). */
function sameCell(peer: Peer, presence: Presence, cellId: CellId): boolean {
  return !peer.self && peer.cell === cellId && (peer.branch ?? presence.branch) === presence.branch;
}
