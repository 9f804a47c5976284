/**
 * Markdown cells as shown when not being edited (`snb-markdown`): the source rendered with
 * markdown-it (CommonMark plus tables, strikethrough and linkified URLs), then sanitized with
 * DOMPurify, so a `<script>`, an `onerror=` handler or a `javascript:` link in a cell's text
 * never runs in the readers' pages. Links open in a new tab with `rel="noopener noreferrer"`.
 */
import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";
import { h } from "./dom";

const md = new MarkdownIt({ html: true, linkify: true, typographer: false });

type Purifier = ReturnType<typeof DOMPurify>;
let purifier: Purifier | null = null;

/** One DOMPurify instance for this bundle, with the link hook (hooks are per instance). */
function purify(): Purifier {
  if (purifier) return purifier;
  purifier = DOMPurify(window);
  purifier.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  return purifier;
}

/** `source` as sanitized HTML (no scripts, event handlers, forms, frames or `javascript:` URLs). */
export function renderMarkdown(source: string): string {
  return purify().sanitize(md.render(source), {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    ADD_ATTR: ["target"],
  });
}

/** The rendered view of one markdown cell; {@link set} re-renders only when the text changed. */
export class MarkdownView {
  readonly el: HTMLElement;
  private shown: string | null = null;

  constructor() {
    this.el = h("div", { class: "snb-markdown", testid: "snb-markdown", title: "Double-click to edit" });
  }

  set(source: string): void {
    if (source === this.shown) return;
    this.shown = source;
    if (source.trim() === "") {
      this.el.replaceChildren(h("span", { class: "snb-markdown-empty" }, "Empty text cell: double-click to write Markdown."));
      return;
    }
    this.el.innerHTML = renderMarkdown(source);
  }
}

export interface MarkdownModeOptions {
  /** The cell's element (focus moving inside it does not end editing). */
  cell: HTMLElement;
  /** The editor's host: hidden while the rendered view shows. */
  editorHost: HTMLElement;
  /** Where the Edit / Done button goes. */
  actions: HTMLElement;
  /** The cell's current text. */
  source(): string;
  /** Focus the cell's editor. */
  focusEditor(): void;
  signal: AbortSignal;
}

/**
 * A markdown cell's two faces: rendered (the default once it has text) and editing (the
 * CodeMirror editor). Double-click on the rendered text or the Edit button edits; Escape,
 * Shift-Enter, the Done button or focus leaving the cell shows it rendered again.
 */
export class MarkdownMode {
  readonly view = new MarkdownView();
  private readonly button: HTMLButtonElement;
  private editing: boolean;

  constructor(private readonly options: MarkdownModeOptions) {
    const { signal, editorHost, cell } = options;
    if (!cell.hasAttribute("tabindex")) cell.setAttribute("tabindex", "-1"); // focusable when rendered
    this.button = h("button", { type: "button", class: "snb-btn snb-markdown-toggle", testid: "snb-markdown-edit" });
    this.button.addEventListener("click", () => (this.editing ? this.done() : this.edit()), { signal });
    options.actions.prepend(this.button);
    editorHost.after(this.view.el);
    this.view.el.addEventListener("dblclick", () => this.edit(), { signal });
    this.view.el.addEventListener("click", (e) => {
      if (!(e.target instanceof Element) || !e.target.closest("a")) cell.focus({ preventScroll: true });
    }, { signal });
    // Capture: before CodeMirror's own keymap sees the keys.
    editorHost.addEventListener("keydown", (e) => {
      if (e.key === "Escape" || (e.key === "Enter" && e.shiftKey)) {
        e.preventDefault();
        e.stopPropagation();
        this.done();
      }
    }, { capture: true, signal });
    cell.addEventListener("focusout", (e) => {
      const next = e.relatedTarget;
      if (!this.editing || (next instanceof Node && cell.contains(next))) return;
      if (next === null && !document.hasFocus()) return; // the window lost focus: keep editing
      this.done(false);
    }, { signal });
    this.editing = false; // a cell made here is opened for editing by the cell list (focus)
    this.apply();
  }

  isEditing(): boolean {
    return this.editing;
  }

  /** Show the editor and focus it. */
  edit(): void {
    this.editing = true;
    this.apply();
    this.options.focusEditor();
  }

  /** Show the rendered text; `keepFocus` moves the focus to the cell (keys keep working). */
  done(keepFocus = true): void {
    if (!this.editing) return;
    this.editing = false;
    this.apply();
    if (keepFocus) this.options.cell.focus({ preventScroll: true });
  }

  /** Re-render from the cell's text (call on doc changes; cheap when the text is unchanged). */
  update(): void {
    if (!this.editing) this.view.set(this.options.source());
  }

  private apply(): void {
    this.options.editorHost.hidden = !this.editing;
    this.view.el.hidden = this.editing;
    this.button.textContent = this.editing ? "Done" : "Edit";
    this.button.title = this.editing ? "Show the rendered text (Esc or Shift+Enter)" : "Edit the Markdown (or double-click the text)";
    this.options.cell.classList.toggle("snb-editing", this.editing);
    if (!this.editing) this.view.set(this.options.source());
  }
}
