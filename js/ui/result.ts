/**
 * A cell's result grid (`snb-result`) and error box (`snb-cell-error`).
 *
 * The result holds the first `shown` rows as an Arrow IPC stream, decoded with apache-arrow's
 * `tableFromIPC`; the header shows each column's name and DuckDB type (from the message's
 * `columns`), nulls show as a dim `null`, numbers are right-aligned, and `snb-result-rowcount`
 * holds the total row count as digits only.
 */
import { DataType, tableFromIPC, type Field, type Table } from "apache-arrow";
import { LOG_PREFIX, type Column, type ErrorMessage, type Result } from "../protocol";
import { h } from "./dom";

const NUMERIC_DUCKDB = /^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC)\b/i;
const MAX_CELL_CHARS = 500;

function isNumeric(field: Field | undefined, column: Column | undefined): boolean {
  if (column && NUMERIC_DUCKDB.test(column.type)) return true;
  if (!field) return false;
  return DataType.isInt(field.type) || DataType.isFloat(field.type) || DataType.isDecimal(field.type);
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** A value as grid text; `null` for SQL NULL. */
export function formatValue(value: unknown, field?: Field): string | null {
  if (value === null || value === undefined) return null;
  if (field && DataType.isTimestamp(field.type) && typeof value === "number") {
    return new Date(value).toISOString().replace("T", " ").replace(/\.000Z$|Z$/, "");
  }
  if (field && DataType.isDate(field.type) && (typeof value === "number" || value instanceof Date)) {
    const d = new Date(value);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }
  if (field && DataType.isTime(field.type) && (typeof value === "bigint" || typeof value === "number")) {
    return formatTime(value, (field.type as { unit: number }).unit);
  }
  if (field && DataType.isInterval(field.type) && ArrayBuffer.isView(value)) {
    return formatInterval(value as Int32Array);
  }
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Math.round(value * 1e10) / 1e10);
  if (typeof value === "string") return value.length > MAX_CELL_CHARS ? `${value.slice(0, MAX_CELL_CHARS)}…` : value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (typeof value === "object" && value !== null && "toJSON" in value && typeof value.toJSON === "function") {
    return stringify(value.toJSON());
  }
  return stringify(value);
}

/** Arrow time of day (unit 0 s, 1 ms, 2 us, 3 ns) as `HH:MM:SS[.fff]`. */
function formatTime(value: bigint | number, unit: number): string {
  const perSecond = [1n, 1000n, 1000000n, 1000000000n][unit] ?? 1n;
  const v = BigInt(value);
  const seconds = Number(v / perSecond);
  const frac = v % perSecond;
  const hms = `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
  if (frac === 0n) return hms;
  return `${hms}.${frac.toString().padStart(perSecond.toString().length - 1, "0").replace(/0+$/, "")}`;
}

/** Arrow MONTH_DAY_NANO (or YEAR_MONTH / DAY_TIME) interval words, as DuckDB prints them. */
function formatInterval(words: Int32Array): string {
  const parts: string[] = [];
  const months = words[0] ?? 0;
  const days = words.length > 1 ? (words[1] ?? 0) : 0;
  if (months) parts.push(`${months} month${Math.abs(months) === 1 ? "" : "s"}`);
  if (days) parts.push(`${days} day${Math.abs(days) === 1 ? "" : "s"}`);
  if (words.length >= 4) {
    const nanos = (BigInt(words[3] ?? 0) << 32n) | BigInt((words[2] ?? 0) >>> 0);
    if (nanos !== 0n) parts.push(formatTime(nanos, 3));
  }
  return parts.length > 0 ? parts.join(" ") : "00:00:00";
}

function stringify(value: unknown): string {
  try {
    const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    return text === undefined ? String(value) : text;
  } catch {
    return String(value);
  }
}

/** An Arrow decimal (little-endian 32-bit words, two's complement) at the field's scale. */
export function formatDecimal(value: unknown, field: Field): string | null {
  if (value === null || value === undefined) return null;
  const scale = (field.type as { scale?: number }).scale ?? 0;
  // apache-arrow gives decimals as a little-endian word array; BigInt of its words is exact.
  const words = value as Uint32Array;
  if (!(words instanceof Uint32Array)) return formatValue(value, field);
  let big = 0n;
  for (let i = words.length - 1; i >= 0; i--) big = (big << 32n) | BigInt(words[i] ?? 0);
  const bits = BigInt(words.length * 32);
  if (words.length > 0 && ((words[words.length - 1] ?? 0) & 0x80000000) !== 0) big -= 1n << bits;
  const negative = big < 0n;
  const digits = (negative ? -big : big).toString().padStart(scale + 1, "0");
  const text = scale > 0 ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}

function decode(arrow: Uint8Array): Table | null {
  try {
    return tableFromIPC(arrow);
  } catch (err) {
    console.error(`${LOG_PREFIX} could not decode the result's Arrow IPC stream`, err);
    return null;
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The result block: a meta line (row count, elapsed ms) and a scrollable table. */
export function renderResult(result: Result): HTMLElement {
  const table = decode(result.arrow);
  const fields = table?.schema.fields ?? [];
  const names = result.columns.length > 0 ? result.columns : fields.map((f) => ({ name: f.name, type: String(f.type) }));
  const numeric = names.map((c, i) => isNumeric(fields[i], c));

  const head = h("tr", {});
  names.forEach((col, i) => {
    head.append(
      h("th", { class: numeric[i] ? "snb-num" : undefined, title: `${col.name} ${col.type}` },
        h("span", { class: "snb-col-name" }, col.name),
        h("span", { class: "snb-col-type" }, col.type),
      ),
    );
  });
  head.append(h("th", { class: "snb-fill", "aria-hidden": "true" }));
  const body = h("tbody", {});
  const shown = table ? Math.min(table.numRows, result.shown || table.numRows) : 0;
  if (table) {
    const vectors = fields.map((_f, i) => table.getChildAt(i));
    for (let r = 0; r < shown; r++) {
      const tr = h("tr", {});
      fields.forEach((field, i) => {
        const raw: unknown = vectors[i]?.get(r);
        const text = DataType.isDecimal(field.type) ? formatDecimal(raw, field) : formatValue(raw, field);
        tr.append(
          text === null
            ? h("td", { class: numeric[i] ? "snb-num snb-null" : "snb-null" }, "null")
            : h("td", { class: numeric[i] ? "snb-num" : undefined }, text),
        );
      });
      tr.append(h("td", { class: "snb-fill", "aria-hidden": "true" }));
      body.append(tr);
    }
  }

  const meta = h("div", { class: "snb-result-meta" },
    h("span", { class: "snb-result-count" },
      h("span", { testid: "snb-result-rowcount" }, String(result.rows)),
      ` ${result.rows === 1 ? "row" : "rows"}`,
    ),
    shown < result.rows ? h("span", { class: "snb-dim" }, `first ${shown} shown`) : null,
    h("span", { class: "snb-dim" }, plural(names.length, "column")),
    h("span", { class: "snb-dim snb-elapsed" }, `${Math.round(result.elapsed_ms)} ms`),
  );
  const grid = h("div", { class: "snb-grid" }, h("table", {}, h("thead", {}, head), body));
  if (names.length === 0) grid.append(h("div", { class: "snb-empty" }, "No columns"));
  return h("div", { class: "snb-result", testid: "snb-result", "data-rows": result.rows }, meta, grid);
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
