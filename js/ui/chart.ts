/**
 * Chart cells: a small builder (which SQL cell's result, mark, x, y, colour, aggregate) whose
 * choices live in the cell's `chart` map (collaborative, one entry per field), and the chart
 * drawn with vega-embed + Vega-Lite as SVG (`snb-chart`).
 *
 * The data comes from the kernel: the view sends `chart_data` for the cell and the kernel runs
 * the chart's query on DuckDB (charts.py) and answers with an Arrow IPC stream whose columns are
 * x, y, then colour. It is fetched again whenever the spec changes or the plotted cell's result
 * does (a new `result` for it). Column choices come from that result's columns.
 */
import { DataType, tableFromIPC, type Table } from "apache-arrow";
import type { LoroDoc } from "loro-crdt";
import {
  CHART_AGGREGATES,
  CHART_MARKS,
  CellError,
  readChart,
  setChart,
  type ChartAggregate,
  type ChartMark,
  type ChartSpec,
} from "../notebook";
import { LOG_PREFIX, type ChartData, type Column, type ErrorMessage, type RequestId } from "../protocol";
import { h } from "./dom";

/** A SQL cell a chart can plot: its result name, its result's columns (if it ran), and a stamp
 * that changes with every new result or error of that cell. */
export interface ChartSource {
  name: string;
  columns: Column[] | undefined;
  stamp: number;
}

export interface ChartContext {
  doc: LoroDoc;
  cellId: string;
  signal: AbortSignal;
  /** The SQL cells of the notebook, in display order. */
  sources(): ChartSource[];
  /** Ask the kernel for this chart's data; `undefined` when no kernel is connected. */
  requestData(): RequestId | undefined;
  notify(message: string): void;
}

const MARK_LABELS: Record<ChartMark, string> = { bar: "Bar", line: "Line", point: "Point", area: "Area" };
const AGGREGATE_LABELS: Record<ChartAggregate, string> = {
  none: "none (rows)",
  sum: "sum",
  mean: "mean",
  count: "count",
  min: "min",
  max: "max",
};
const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC)\b/i;

/** Whether a DuckDB type name is numeric. */
export function isNumericType(type: string): boolean {
  return NUMERIC.test(type);
}

/** A sensible x and y for a result: the first column, and the first numeric column after it. */
export function pickColumns(columns: readonly Column[]): { x: string; y: string } {
  const x = columns[0]?.name ?? "";
  const y = columns.find((c) => c.name !== x && isNumericType(c.type))?.name ?? columns[1]?.name ?? "";
  return { x, y };
}

/** Whether `spec` says enough to be drawn. */
export function isComplete(spec: ChartSpec): boolean {
  return spec.source !== "" && spec.x !== "" && (spec.y !== "" || spec.aggregate === "count");
}

type Row = Record<string, unknown>;
type FieldType = "quantitative" | "temporal" | "ordinal" | "nominal";

/** The Arrow table's rows as plain objects keyed `x`, `y`, `color` (numbers as numbers). */
export function chartRows(table: Table): Row[] {
  const names = ["x", "y", "color"];
  const columns = table.schema.fields.slice(0, 3).map((_, i) => table.getChildAt(i));
  const rows: Row[] = [];
  for (let r = 0; r < table.numRows; r++) {
    const row: Row = {};
    columns.forEach((col, i) => {
      let value: unknown = col?.get(r) ?? null;
      if (typeof value === "bigint") value = Number(value);
      else if (value instanceof Date) value = value.getTime();
      row[names[i]!] = value;
    });
    rows.push(row);
  }
  return rows;
}

function fieldType(table: Table, index: number, mark: ChartMark, axis: "x" | "y" | "color"): FieldType {
  const type = table.schema.fields[index]?.type;
  if (!type) return "nominal";
  if (DataType.isTimestamp(type) || DataType.isDate(type)) return "temporal";
  const numeric = DataType.isInt(type) || DataType.isFloat(type) || DataType.isDecimal(type);
  if (!numeric) return "nominal";
  // Bars over a numeric x (months, years...) read best as one bar per value.
  if (axis === "x" && mark === "bar") return "ordinal";
  return "quantitative";
}

/** The Vega-Lite spec drawing `rows` of `table` as `spec` says. */
export function vegaLiteSpec(spec: ChartSpec, table: Table, rows: Row[]): Record<string, unknown> {
  const yTitle = spec.aggregate === "count" ? "count" : spec.aggregate === "none" ? spec.y : `${spec.aggregate} of ${spec.y}`;
  const encoding: Record<string, unknown> = {
    x: { field: "x", type: fieldType(table, 0, spec.mark, "x"), title: spec.x },
    y: { field: "y", type: fieldType(table, 1, spec.mark, "y"), title: yTitle },
    tooltip: [
      { field: "x", type: fieldType(table, 0, spec.mark, "x"), title: spec.x },
      { field: "y", type: fieldType(table, 1, spec.mark, "y"), title: yTitle },
    ],
  };
  if (spec.color && table.numCols > 2) {
    const color = { field: "color", type: fieldType(table, 2, spec.mark, "color"), title: spec.color };
    encoding["color"] = color;
    (encoding["tooltip"] as unknown[]).push(color);
  }
  const x = encoding["x"] as Record<string, unknown>;
  if (x["type"] === "quantitative" && rows.every((r) => Number.isInteger(r["x"]) || r["x"] === null)) {
    x["axis"] = { tickMinStep: 1, format: "d" }; // whole numbers (months, years): no 1.5 ticks
  }
  if (spec.mark === "bar" && fieldType(table, 0, spec.mark, "x") === "nominal") {
    (encoding["x"] as Record<string, unknown>)["sort"] = "-y"; // categories by value, largest first
  }
  const mark: Record<string, unknown> = { type: spec.mark, tooltip: true };
  if (spec.mark === "line") mark["point"] = rows.length <= 60;
  if (spec.mark === "point") mark["filled"] = true;
  if (spec.mark === "area") mark["opacity"] = 0.8;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    height: 260,
    autosize: { type: "fit", contains: "padding" },
    data: { values: rows },
    mark,
    encoding,
    config: {
      view: { stroke: null },
      font: "system-ui, -apple-system, 'Segoe UI', sans-serif",
      axis: { labelColor: "#59636e", titleColor: "#1f2328", gridColor: "#e8ecf0", domainColor: "#d1d9e0", tickColor: "#d1d9e0" },
      legend: { labelColor: "#59636e", titleColor: "#1f2328" },
      range: { category: { scheme: "tableau10" } },
      mark: { color: "#0969da" },
    },
  };
}

interface Embedded {
  finalize(): void;
}

/** The builder and chart of one chart cell; call {@link update} on doc or result changes. */
export class ChartView {
  readonly el: HTMLElement;
  private readonly selects: Record<keyof ChartSpec, HTMLSelectElement>;
  private readonly chartEl: HTMLElement;
  private readonly messageEl: HTMLElement;
  private pending: RequestId | null = null;
  /** What the last request was for (spec + source stamp); a change means fetch again. */
  private fetchedKey = "";
  private spec: ChartSpec | undefined;
  private embedded: Embedded | null = null;
  private drawSeq = 0;
  private destroyed = false;

  constructor(private readonly ctx: ChartContext) {
    const { signal } = ctx;
    const select = (field: keyof ChartSpec, label: string) => {
      const el = h("select", { class: "snb-chart-select", "data-field": field, testid: `snb-chart-${field}`, "aria-label": label });
      el.addEventListener("change", () => this.onPick(field, el.value), { signal });
      return el;
    };
    this.selects = {
      source: select("source", "Result to plot"),
      mark: select("mark", "Mark"),
      x: select("x", "X column"),
      y: select("y", "Y column"),
      color: select("color", "Colour column"),
      aggregate: select("aggregate", "Aggregate of y"),
    };
    setOptions(this.selects.mark, CHART_MARKS.map((m) => [m, MARK_LABELS[m]]));
    setOptions(this.selects.aggregate, CHART_AGGREGATES.map((a) => [a, AGGREGATE_LABELS[a]]));
    const field = (label: string, el: HTMLElement) => h("label", { class: "snb-chart-field" }, h("span", {}, label), el);
    this.chartEl = h("div", { class: "snb-chart", testid: "snb-chart" });
    this.messageEl = h("div", { class: "snb-chart-message", role: "status" });
    this.el = h("div", { class: "snb-chart-cell" },
      h("div", { class: "snb-chart-builder" },
        field("Data", this.selects.source),
        field("Mark", this.selects.mark),
        field("X", this.selects.x),
        field("Y", this.selects.y),
        field("Aggregate", this.selects.aggregate),
        field("Colour", this.selects.color),
      ),
      this.messageEl,
      this.chartEl,
    );
  }

  /** Bring the builder in line with the doc and fetch the data again if it is stale. */
  update(): void {
    if (this.destroyed) return;
    const spec = readChart(this.ctx.doc, this.ctx.cellId);
    if (!spec) return;
    this.spec = spec;
    const sources = this.ctx.sources();
    const source = sources.find((s) => s.name === spec.source);
    const names = sources.map((s) => s.name);
    if (spec.source && !names.includes(spec.source)) names.push(spec.source);
    setOptions(this.selects.source, [["", "choose a result…"], ...names.map((n): [string, string] => [n, n])]);
    const columns = (source?.columns ?? []).map((c) => c.name);
    for (const f of ["x", "y", "color"] as const) {
      const options = [...columns];
      if (spec[f] && !options.includes(spec[f])) options.push(spec[f]);
      const empty = f === "color" ? "none" : f === "y" && spec.aggregate === "count" ? "(rows counted)" : "choose…";
      setOptions(this.selects[f], [["", empty], ...options.map((n): [string, string] => [n, n])]);
    }
    for (const f of Object.keys(this.selects) as (keyof ChartSpec)[]) {
      if (this.selects[f].value !== spec[f]) this.selects[f].value = spec[f];
    }
    this.selects.y.disabled = spec.aggregate === "count";

    if (!isComplete(spec)) {
      this.fetchedKey = "";
      this.pending = null;
      this.clearChart();
      this.showMessage(spec.source ? "Choose the columns to plot." : "Choose the SQL cell whose result to plot.");
      return;
    }
    const key = JSON.stringify([spec, source?.stamp ?? 0]);
    if (key === this.fetchedKey) return;
    this.fetchedKey = key;
    this.pending = this.ctx.requestData() ?? null;
    this.el.classList.add("snb-loading");
  }

  /** A `chart_data` reply for this cell: draw it unless a newer request is out. */
  onData(message: ChartData): void {
    if (message.id !== this.pending || !this.spec) return;
    this.pending = null;
    this.el.classList.remove("snb-loading");
    let table: Table;
    try {
      table = tableFromIPC(message.arrow);
    } catch (err) {
      console.error(`${LOG_PREFIX} could not decode chart data`, err);
      this.showMessage("The chart's data could not be read.");
      return;
    }
    if (table.numRows === 0) {
      this.clearChart();
      this.showMessage("No rows to plot.");
      return;
    }
    this.showMessage("");
    void this.draw(vegaLiteSpec(this.spec, table, chartRows(table)));
  }

  /** An `error` answering this chart's request (returns whether it was one). */
  onError(message: ErrorMessage): boolean {
    if (message.id === undefined || message.id !== this.pending) return false;
    this.pending = null;
    this.el.classList.remove("snb-loading");
    this.clearChart();
    this.showMessage(message.message, true);
    return true;
  }

  destroy(): void {
    this.destroyed = true;
    this.clearChart();
    this.el.remove();
  }

  private async draw(spec: Record<string, unknown>): Promise<void> {
    const seq = ++this.drawSeq;
    try {
      const { default: embed } = await import("vega-embed");
      if (seq !== this.drawSeq || this.destroyed) return;
      // Drawn in the page (width "container" measures it), beside the old chart until done.
      const host = h("div", { class: "snb-chart-canvas" });
      this.chartEl.append(host);
      const result = await embed(host, spec as never, { renderer: "svg", actions: false, tooltip: true });
      if (seq !== this.drawSeq || this.destroyed) {
        result.finalize();
        host.remove();
        return;
      }
      this.embedded?.finalize();
      this.embedded = result;
      this.chartEl.replaceChildren(host);
    } catch (err) {
      console.error(`${LOG_PREFIX} could not draw the chart`, err);
      this.showMessage(`The chart could not be drawn: ${String(err)}`, true);
    }
  }

  private clearChart(): void {
    this.drawSeq++;
    this.embedded?.finalize();
    this.embedded = null;
    this.chartEl.replaceChildren();
  }

  private showMessage(text: string, error = false): void {
    this.messageEl.textContent = text;
    this.messageEl.hidden = text === "";
    this.messageEl.classList.toggle("snb-chart-error", error);
  }

  private onPick(field: keyof ChartSpec, value: string): void {
    const fields: Partial<ChartSpec> = { [field]: value };
    if (field === "source") {
      // A new result: keep the columns it also has, pick sensible ones for the rest.
      const columns = this.ctx.sources().find((s) => s.name === value)?.columns ?? [];
      const names = columns.map((c) => c.name);
      const picked = pickColumns(columns);
      const spec = this.spec;
      if (names.length > 0 && spec) {
        if (!names.includes(spec.x)) fields.x = picked.x;
        if (!names.includes(spec.y)) fields.y = picked.y;
        if (spec.color && !names.includes(spec.color)) fields.color = "";
      }
    }
    try {
      setChart(this.ctx.doc, this.ctx.cellId, fields);
    } catch (err) {
      if (err instanceof CellError) this.ctx.notify(err.message);
      else console.error(`${LOG_PREFIX} could not change the chart`, err);
    }
  }
}

/** Replace a select's options only when they differ (an open select keeps its state). */
function setOptions(select: HTMLSelectElement, options: readonly (readonly [string, string])[]): void {
  const same =
    select.options.length === options.length &&
    options.every(([value, label], i) => select.options[i]?.value === value && select.options[i]?.textContent === label);
  if (same) return;
  const value = select.value;
  select.replaceChildren(...options.map(([v, label]) => h("option", { value: v }, label)));
  select.value = value;
}
