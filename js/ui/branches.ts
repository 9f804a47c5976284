/**
 * Branch controls of one view: the branch picker (`snb-branch-picker`, a `<select>` with one
 * option per branch), "New branch" (`snb-branch-new`: an inline form naming the branch, made
 * from the current state or from the version being previewed) and "Merge" (`snb-merge`: pick
 * the branch to merge into, see the merge preview, confirm).
 *
 * Pure UI: the widget wires the callbacks to the sync client and feeds back the kernel's
 * `branches`, `merge_preview` and `merged` messages. Branch names follow the kernel's rule.
 */
import { diffBody } from "../history";
import type { BranchInfo, MergePreviewReply, PreviewDiff } from "../protocol";
import { h } from "./dom";

/** The kernel's rule for branch names (protocol.py `_NAME`). */
export const BRANCH_NAME = /^(?!\.+$)[A-Za-z0-9_.-]{1,128}$/;

const BRANCH_ICON =
  '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><path fill="currentColor" d="M5 3.25a.75.75 0 1 1-1.5 0 .75.75 0 0 1 1.5 0Zm0 2.122a2.25 2.25 0 1 0-1.5 0v5.256a2.25 2.25 0 1 0 1.5 0V9.5c0-.414.336-.75.75-.75h4a2.25 2.25 0 0 0 2.25-2.25v-1.128a2.25 2.25 0 1 0-1.5 0V6.5a.75.75 0 0 1-.75.75h-4c-.264 0-.516.044-.75.126V5.372ZM4.25 12a.75.75 0 1 0 0 1.5.75.75 0 0 0 0-1.5Zm7.5-9.5a.75.75 0 1 0 0 1.5.75.75 0 0 0 0-1.5Z"/></svg>';

/** A free name like `main-2` for a branch made from `from` (`taken`: existing names). */
export function suggestBranchName(from: string, taken: readonly string[]): string {
  const base = from === "main" ? "what-if" : from;
  for (let i = base === from ? 2 : 1; ; i++) {
    const name = i === 1 ? base : `${base}-${i}`;
    if (!taken.includes(name)) return name;
  }
}

/** Why `name` cannot be a new branch ("" when it can). */
export function branchNameProblem(name: string, taken: readonly string[]): string {
  if (!BRANCH_NAME.test(name)) return "Use 1-128 letters, digits, '_', '.' or '-'.";
  if (taken.includes(name)) return `There is already a branch named ${name}.`;
  return "";
}

export interface BranchBarOptions {
  signal: AbortSignal;
  /** Show another branch in this view. */
  onSwitch(name: string): void;
  /** Create a branch (from the previewed version when one is shown, else the current state). */
  onCreate(name: string): void;
  /** Ask for the preview of merging the shown branch into `into`. */
  onMergePreview(into: string): void;
  /** Merge the shown branch into `into`. */
  onMerge(into: string): void;
  /** What "New branch" starts from, for its label: "the current state" or a version. */
  origin(): string;
}

export class BranchBar {
  /** Toolbar part: picker and the two actions. */
  readonly el: HTMLElement;
  /** The forms (new branch, merge) shown below the toolbar. */
  readonly panel: HTMLElement;

  private readonly picker: HTMLSelectElement;
  private readonly newButton: HTMLButtonElement;
  private readonly mergeButton: HTMLButtonElement;
  private branches: BranchInfo[] = [];
  private shown = "main";
  private form: { close(): void } | null = null;
  private merging: { into: HTMLSelectElement; body: HTMLElement; confirm: HTMLButtonElement } | null = null;

  constructor(private readonly options: BranchBarOptions) {
    const { signal } = options;
    this.picker = h("select", { class: "snb-branch-picker", testid: "snb-branch-picker", title: "Branch shown and edited in this view", "aria-label": "Branch" });
    this.picker.addEventListener("change", () => {
      if (this.picker.value !== this.shown) options.onSwitch(this.picker.value);
    }, { signal });
    this.newButton = h("button", { type: "button", class: "snb-btn snb-branch-new", testid: "snb-branch-new", title: "New branch from the current state (or from the version you preview)" }, "+ Branch");
    this.newButton.addEventListener("click", () => this.openNew(), { signal });
    this.mergeButton = h("button", { type: "button", class: "snb-btn snb-merge", testid: "snb-merge", title: "Merge this branch into another, after a preview" }, "Merge…");
    this.mergeButton.addEventListener("click", () => this.openMerge(), { signal });
    const icon = h("span", { class: "snb-branch-icon", "aria-hidden": "true" });
    icon.innerHTML = BRANCH_ICON;
    this.el = h("span", { class: "snb-branches" }, icon, this.picker, this.newButton, this.mergeButton);
    this.panel = h("div", { class: "snb-branch-panel" });
    this.render();
  }

  /** The branch this view shows. */
  get current(): string {
    return this.shown;
  }

  /** The kernel's list of branches (`main` first). */
  setBranches(branches: BranchInfo[]): void {
    this.branches = branches;
    this.render();
  }

  /** This view now shows `name` (after a switch, or the first welcome). */
  setShown(name: string): void {
    this.shown = name;
    this.closeForms();
    this.render();
  }

  /** A merge preview arrived (ignored unless the merge form still asks for that target). */
  showMergePreview(reply: MergePreviewReply): void {
    const m = this.merging;
    if (!m || reply.source !== this.shown || reply.into !== m.into.value) return;
    m.body.replaceChildren(...mergeSummary(reply));
    m.body.classList.remove("snb-loading");
    m.confirm.disabled = false;
  }

  /** The merge form failed or finished: close it. */
  closeForms(): void {
    this.form?.close();
    this.form = null;
    this.merging = null;
    this.panel.replaceChildren();
  }

  private names(): string[] {
    return this.branches.map((b) => b.name);
  }

  private render(): void {
    const names = this.names();
    if (!names.includes(this.shown)) names.push(this.shown);
    this.picker.replaceChildren(...names.map((name) => {
      const info = this.branches.find((b) => b.name === name);
      const label = info?.merged_into ? `${name} (merged into ${info.merged_into})` : name;
      return h("option", { value: name, selected: name === this.shown }, label);
    }));
    this.picker.value = this.shown;
    this.mergeButton.disabled = names.length < 2;
  }

  private openNew(): void {
    this.closeForms();
    const { signal } = this.options;
    const taken = this.names();
    const input = h("input", { type: "text", class: "snb-input", testid: "snb-branch-name", "aria-label": "New branch name", spellcheck: "false", autocomplete: "off" });
    input.value = suggestBranchName(this.shown, taken);
    const problem = h("span", { class: "snb-form-problem", role: "alert" });
    const create = h("button", { type: "submit", class: "snb-btn snb-primary", testid: "snb-branch-create" }, "Create and switch");
    const cancel = h("button", { type: "button", class: "snb-btn" }, "Cancel");
    const form = h("form", { class: "snb-form", testid: "snb-branch-form" },
      h("label", { class: "snb-form-label" }, `New branch from ${this.options.origin()}:`),
      input, create, cancel, problem,
    );
    const check = () => {
      const why = branchNameProblem(input.value.trim(), taken);
      problem.textContent = why;
      create.disabled = why !== "";
      return why === "";
    };
    input.addEventListener("input", check, { signal });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!check()) return;
      this.options.onCreate(input.value.trim());
      this.closeForms();
    }, { signal });
    form.addEventListener("keydown", (e) => e.key === "Escape" && this.closeForms(), { signal });
    cancel.addEventListener("click", () => this.closeForms(), { signal });
    this.panel.replaceChildren(form);
    this.form = { close: () => form.remove() };
    check();
    input.focus();
    input.select();
  }

  private openMerge(): void {
    this.closeForms();
    const { signal } = this.options;
    const targets = this.names().filter((n) => n !== this.shown);
    if (targets.length === 0) return;
    const parent = this.branches.find((b) => b.name === this.shown)?.parent;
    const into = h("select", { class: "snb-merge-into", testid: "snb-merge-into", "aria-label": "Merge into" },
      ...targets.map((name) => h("option", { value: name, selected: name === (parent ?? "main") }, name)));
    const body = h("div", { class: "snb-merge-preview snb-loading", testid: "snb-merge-preview" }, "Computing what the merge would change…");
    const confirm = h("button", { type: "button", class: "snb-btn snb-primary", testid: "snb-merge-confirm", disabled: true }, "Merge");
    const cancel = h("button", { type: "button", class: "snb-btn", testid: "snb-merge-cancel" }, "Cancel");
    const form = h("div", { class: "snb-form snb-merge-form", testid: "snb-merge-form" },
      h("div", { class: "snb-form-row" },
        h("span", { class: "snb-form-label" }, "Merge ", h("strong", {}, this.shown), " into"), into, confirm, cancel),
      body,
    );
    const ask = () => {
      body.classList.add("snb-loading");
      body.replaceChildren("Computing what the merge would change…");
      confirm.disabled = true;
      this.options.onMergePreview(into.value);
    };
    into.addEventListener("change", ask, { signal });
    confirm.addEventListener("click", () => {
      confirm.disabled = true;
      this.options.onMerge(into.value);
    }, { signal });
    cancel.addEventListener("click", () => this.closeForms(), { signal });
    form.addEventListener("keydown", (e) => e.key === "Escape" && this.closeForms(), { signal });
    this.panel.replaceChildren(form);
    this.merging = { into, body, confirm };
    this.form = { close: () => form.remove() };
    ask();
  }
}

const MERGE_BADGES: Record<PreviewDiff["status"], string> = {
  added: "will be added",
  removed: "will be deleted",
  moved: "will move",
  changed: "will change",
};

/** What a merge would do, cell by cell, with the text diff of changed cells. */
function mergeSummary(reply: MergePreviewReply): HTMLElement[] {
  if (reply.diff.length === 0) {
    return [h("div", { class: "snb-merge-nothing" }, `${reply.into} already has everything from ${reply.source}: merging changes nothing.`)];
  }
  const head = h("div", { class: "snb-merge-head" }, `Merging would change ${reply.diff.length} cell${reply.diff.length === 1 ? "" : "s"} of ${reply.into}:`);
  const items = reply.diff.map((d) => {
    const rows = d.diff ? diffBody(d.diff) : [];
    return h("div", { class: `snb-merge-item snb-preview-${d.status}`, testid: "snb-merge-item", "data-cell-id": d.id, "data-status": d.status },
      h("div", { class: "snb-cell-header" },
        h("span", { class: "snb-cell-name" }, d.name || d.id),
        h("span", { class: `snb-diff-badge snb-diff-${d.status}` }, MERGE_BADGES[d.status])),
      rows.length
        ? h("pre", { class: "snb-merge-diff" }, ...rows.map((row) => h("div", { class: row.startsWith("+") ? "snb-diff-add" : row.startsWith("-") ? "snb-diff-del" : row.startsWith("@@") ? "snb-diff-hunk" : "" }, row || "\u200b")))
        : null,
    );
  });
  return [head, ...items];
}
