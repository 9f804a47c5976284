/**
 * Input cells: a labelled control (`snb-input`: a text box, a number box or a dropdown) whose
 * value lives in the cell's `input` map. SQL cells read it as the parameter `$name` (the cell's
 * name); the kernel binds it as a DuckDB prepared-statement parameter and re-runs the cells that
 * read it when it changes.
 *
 * Typing in a text or number box writes the value after a pause of {@link TYPING_PAUSE_MS} (and at
 * once on Enter or when the box loses focus); picking from a dropdown writes at once. A small
 * settings row (the gear) picks the type and edits a dropdown's options query; the options
 * themselves come from the kernel (`input_options`: the first column of that query).
 */
import type { LoroDoc } from "loro-crdt";
import { CellError, INPUT_TYPES, readInput, setInput, type InputSpec, type InputType } from "../notebook";
import { LOG_PREFIX, type InputOptions } from "../protocol";
import { h } from "./dom";

/** Pause after the last keystroke before a typed value is written to the doc, ms. */
export const TYPING_PAUSE_MS = 300;

export interface InputContext {
  doc: LoroDoc;
  cellId: string;
  signal: AbortSignal;
  /** The cell's parameter name (shown as `$name`). */
  name(): string;
  notify(message: string): void;
}

const TYPE_LABELS: Record<InputType, string> = { text: "Text", number: "Number", select: "Dropdown" };
const GEAR =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M8 5.5a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0 0 0-5zm5.9 3.3-.1-1.6 1.3-1-1.4-2.4-1.6.5a5 5 0 0 0-1.4-.8L10.4 2H7.6l-.3 1.5c-.5.2-1 .5-1.4.8l-1.6-.5-1.4 2.4 1.3 1a5 5 0 0 0 0 1.6l-1.3 1 1.4 2.4 1.6-.5c.4.3.9.6 1.4.8l.3 1.5h2.8l.3-1.5c.5-.2 1-.5 1.4-.8l1.6.5 1.4-2.4z"/></svg>';

/** Text of a value for a text box or an option (numbers as JS prints them). */
function shown(value: InputSpec["value"]): string {
  return value === null ? "" : String(value);
}

/** One input cell's control and settings. */
export class InputView {
  readonly el: HTMLElement;
  private readonly label: HTMLLabelElement;
  private readonly box: HTMLInputElement;
  private readonly select: HTMLSelectElement;
  private readonly settings: HTMLElement;
  private readonly typeSelect: HTMLSelectElement;
  private readonly optionsField: HTMLElement;
  private readonly optionsSql: HTMLInputElement;
  private readonly messageEl: HTMLElement;
  private spec: InputSpec | undefined;
  private options: InputOptions | undefined;
  /** A typed value not written yet (and its timer). */
  private typing: ReturnType<typeof setTimeout> | null = null;
  private destroyed = false;

  constructor(private readonly ctx: InputContext) {
    const { signal } = ctx;
    this.label = h("label", { class: "snb-input-label" });
    this.box = h("input", { class: "snb-input-control", testid: "snb-input", type: "text", spellcheck: "false" });
    this.select = h("select", { class: "snb-input-control", testid: "snb-input" });
    this.box.addEventListener("input", () => this.onTyping(), { signal });
    this.box.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.writeTyped();
    }, { signal });
    this.box.addEventListener("blur", () => this.writeTyped(), { signal });
    this.select.addEventListener("change", () => this.write({ value: this.select.value }), { signal });

    const gear = h("button", {
      type: "button", class: "snb-btn snb-input-settings-toggle", testid: "snb-input-settings-toggle",
      title: "Input settings: type and dropdown options", "aria-label": "Input settings", "aria-expanded": "false",
    });
    gear.innerHTML = GEAR;
    this.typeSelect = h("select", { class: "snb-chart-select", testid: "snb-input-type", "aria-label": "Input type" },
      ...INPUT_TYPES.map((t) => h("option", { value: t }, TYPE_LABELS[t])),
    );
    this.typeSelect.addEventListener("change", () => this.write({ type: this.typeSelect.value as InputType }), { signal });
    this.optionsSql = h("input", {
      class: "snb-input-options-sql", testid: "snb-input-options-sql", type: "text", spellcheck: "false",
      placeholder: "select distinct origin from flights order by 1", "aria-label": "Options query",
    });
    const writeOptions = () => {
      if (this.spec && this.optionsSql.value !== this.spec.optionsSql) this.write({ optionsSql: this.optionsSql.value });
    };
    this.optionsSql.addEventListener("keydown", (e) => {
      if (e.key === "Enter") writeOptions();
    }, { signal });
    this.optionsSql.addEventListener("blur", writeOptions, { signal });
    this.optionsField = h("label", { class: "snb-chart-field snb-input-options-field" }, h("span", {}, "Options query"), this.optionsSql);
    this.settings = h("div", { class: "snb-input-settings", testid: "snb-input-settings", hidden: true },
      h("label", { class: "snb-chart-field" }, h("span", {}, "Type"), this.typeSelect),
      this.optionsField,
    );
    gear.addEventListener("click", () => {
      this.settings.hidden = !this.settings.hidden;
      gear.setAttribute("aria-expanded", String(!this.settings.hidden));
      gear.classList.toggle("snb-active", !this.settings.hidden);
    }, { signal });
    this.messageEl = h("div", { class: "snb-input-message", role: "status" });
    this.el = h("div", { class: "snb-input-cell" },
      h("div", { class: "snb-input-row" }, this.label, this.box, this.select, gear),
      this.settings,
      this.messageEl,
    );
    this.update();
  }

  /** Bring the control in line with the doc (a value being typed here is left alone). */
  update(): void {
    if (this.destroyed) return;
    const spec = readInput(this.ctx.doc, this.ctx.cellId);
    if (!spec) return;
    this.spec = spec;
    const name = this.ctx.name();
    this.label.textContent = `$${name}`;
    this.label.title = `SQL cells read this value as $${name}`;
    const id = `snb-input-${this.ctx.cellId}`;
    const isSelect = spec.type === "select";
    this.box.hidden = isSelect;
    this.select.hidden = !isSelect;
    (isSelect ? this.select : this.box).id = id;
    (isSelect ? this.box : this.select).removeAttribute("id");
    this.label.htmlFor = id;
    this.box.type = spec.type === "number" ? "number" : "text";
    this.box.setAttribute("aria-label", `Value of ${name}`);
    this.select.setAttribute("aria-label", `Value of ${name}`);
    if (this.typing === null && this.box.value !== shown(spec.value)) this.box.value = shown(spec.value);
    this.typeSelect.value = spec.type;
    this.optionsField.hidden = !isSelect;
    if (document.activeElement !== this.optionsSql) this.optionsSql.value = spec.optionsSql;
    this.renderOptions();
  }

  /** The kernel's options for this dropdown. */
  setOptions(message: InputOptions): void {
    this.options = message;
    this.renderOptions();
  }

  destroy(): void {
    this.destroyed = true;
    if (this.typing !== null) clearTimeout(this.typing);
    this.typing = null;
  }

  private renderOptions(): void {
    const spec = this.spec;
    if (!spec) return;
    const message = spec.type === "select" ? this.options?.error ?? (spec.optionsSql.trim() ? "" : "Set the options query in the settings (gear).") : "";
    this.messageEl.textContent = message;
    this.messageEl.classList.toggle("snb-input-error", spec.type === "select" && !!this.options?.error);
    this.messageEl.hidden = message === "";
    if (spec.type !== "select") return;
    const value = shown(spec.value);
    const values = [...(this.options?.options ?? [])];
    if (!values.includes(value)) values.unshift(value);
    const same = this.select.options.length === values.length && values.every((v, i) => this.select.options[i]?.value === v);
    if (!same) this.select.replaceChildren(...values.map((v) => h("option", { value: v }, v === "" ? "(none)" : v)));
    this.select.value = value;
  }

  private onTyping(): void {
    if (this.typing !== null) clearTimeout(this.typing);
    this.typing = setTimeout(() => this.writeTyped(), TYPING_PAUSE_MS);
  }

  /** Write what is typed in the box now (if anything is pending). */
  private writeTyped(): void {
    if (this.typing === null) return;
    clearTimeout(this.typing);
    this.typing = null;
    if (!this.spec) return;
    if (this.spec.type === "number") {
      const text = this.box.value.trim();
      const n = text === "" ? null : Number(text);
      if (n !== null && !Number.isFinite(n)) return; // the browser's number box allows half-typed text
      this.write({ value: n });
    } else {
      this.write({ value: this.box.value });
    }
  }

  private write(fields: Partial<InputSpec>): void {
    try {
      setInput(this.ctx.doc, this.ctx.cellId, fields);
    } catch (err) {
      if (err instanceof CellError) this.ctx.notify(err.message);
      else console.error(`${LOG_PREFIX} could not set an input`, err);
    }
  }
}
