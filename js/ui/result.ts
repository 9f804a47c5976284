/**
 * A cell's result (`snb-result`) and error box (`snb-cell-error`).
 *
 * The result block is a summary line (`snb-result-summary`: "336,776 rows · 19 columns · 412 ms ·
 * run by ana"; `snb-result-rowcount` inside holds the total as digits only), export buttons
 * (`snb-export-csv`, `snb-export-parquet`: the whole result, in the grid's sort order, made by
 * the kernel) and the virtualized {@link Grid}. The result message carries the first rows as an
 * Arrow IPC stream; the grid asks the kernel for the rest. When the first rows are on screen
 * (just after the frame that painted them) the block gets `data-first-rows-at` (epoch ms,
 * `performance.timeOrigin + performance.now()`), so "time from Run to rows on screen" can be
 * measured from outside.
 */
import { tableFromIPC, type Table } from "apache-arrow";
import { LOG_PREFIX, type ErrorMessage, type ExportFormat, type Result } from "../protocol";
import { h } from "./dom";
import { Grid, download, type ResultSource } from "./grid";

export { displayValue, formatDecimal, formatValue } from "./format";
export type { ResultSource } from "./grid";

const counts = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

function decode(arrow: Uint8Array): Table | null {
  try {
    return tableFromIPC(arrow);
  } catch (err) {
    console.error(`${LOG_PREFIX} could not decode the result's Arrow IPC stream`, err);
    return null;
  }
}

function plural(n: number, word: string): string {
  return `${counts.format(n)} ${word}${n === 1 ? "" : "s"}`;
}

function elapsed(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** A rendered result and how to let go of it (the grid holds observers and listeners). */
export interface ResultView {
  el: HTMLElement;
  destroy(): void;
}

/** The result block of a run; `source` (the kernel) serves pages beyond the preview and exports. */
export function renderResult(result: Result, source?: ResultSource): ResultView {
  const preview = decode(result.arrow);
  const columns = result.columns.length > 0 ? result.columns : (preview?.schema.fields ?? []).map((f) => ({ name: f.name, type: String(f.type) }));
  const status = h("span", { class: "snb-grid-status", "aria-live": "polite" });
  const setStatus = (text: string, tone?: "error") => {
    status.textContent = text;
    status.classList.toggle("snb-bad", tone === "error");
  };
  const summary = h("span", { class: "snb-result-summary", testid: "snb-result-summary" },
    h("span", { class: "snb-result-count" }, plural(result.rows, "row")),
    h("span", { testid: "snb-result-rowcount", hidden: true }, String(result.rows)),
    h("span", { class: "snb-sep" }, " · "),
    plural(columns.length, "column"),
    h("span", { class: "snb-sep" }, " · "),
    h("span", { class: "snb-elapsed" }, elapsed(result.elapsed_ms)),
    result.author ? h("span", { class: "snb-sep" }, " · ") : null,
    result.author ? h("span", { class: "snb-run-by" }, `run by ${result.author}`) : null,
  );
  const block = h("div", { class: "snb-result", testid: "snb-result", "data-rows": result.rows });
  const grid = new Grid({
    cell: result.cell,
    rows: result.rows,
    columns,
    preview,
    source,
    onStatus: setStatus,
    onFirstRows: () => block.setAttribute("data-first-rows-at", String(Math.round(performance.timeOrigin + performance.now()))),
  });
  const exportButton = (format: ExportFormat, label: string) => {
    const button = h("button", {
      type: "button",
      class: "snb-btn snb-export",
      testid: `snb-export-${format}`,
      title: `Download the whole result as ${label}`,
      disabled: !source || columns.length === 0,
    }, label);
    button.addEventListener("click", () => {
      if (!source) return;
      button.disabled = true;
      setStatus(`Preparing ${label}…`);
      source.exportResult(result.cell, format, grid.getSort()).then(
        (reply) => {
          download(reply.data, reply.filename, format, block);
          setStatus(`Downloaded ${reply.filename}`);
        },
        (err: unknown) => setStatus(`Export failed: ${err instanceof Error ? err.message : String(err)}`, "error"),
      ).finally(() => void (button.disabled = false));
    });
    return button;
  };
  block.append(
    h("div", { class: "snb-result-meta" }, summary, status, h("span", { class: "snb-spacer" }),
      exportButton("csv", "CSV"), exportButton("parquet", "Parquet")),
    grid.el,
  );
  return { el: block, destroy: () => grid.destroy() };
}

/** The error box of a cell: DuckDB's message, with 1-based line/column when known. */
export function renderCellError(error: ErrorMessage): HTMLElement {
  const where =
    error.line !== undefined ? `line ${error.line + 1}${error.column !== undefined ? `, column ${error.column + 1}` : ""}` : null;
  return h("div", { class: "snb-cell-error", testid: "snb-cell-error", role: "alert", "data-code": error.code },
    where ? h("div", { class: "snb-error-where" }, where) : null,
    h("pre", { class: "snb-error-message" }, error.message),
  );
}
