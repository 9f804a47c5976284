/**
 * Result values as grid text: what a cell shows (numbers grouped and rounded for reading) and
 * what copying it gives (the exact value, ungrouped). Pure, so node tests cover it.
 */
import { DataType, type Field } from "apache-arrow";
import type { Column } from "../protocol";

const NUMERIC_DUCKDB = /^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC)\b/i;
const MAX_CELL_CHARS = 500;
/** Integers below this magnitude are not grouped (years, flight numbers, small counts). */
const GROUP_FROM = 10000;

const grouped = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const floatFormats = new Map<string, Intl.NumberFormat>();

function floatFormat(fraction: number, grouping: boolean): Intl.NumberFormat {
  const key = `${fraction}:${grouping}`;
  let format = floatFormats.get(key);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { maximumFractionDigits: fraction, useGrouping: grouping });
    floatFormats.set(key, format);
  }
  return format;
}

/** Whether a column holds numbers (right-aligned, formatted). */
export function isNumeric(field: Field | undefined, column: Column | undefined): boolean {
  if (column && NUMERIC_DUCKDB.test(column.type)) return true;
  if (!field) return false;
  return DataType.isInt(field.type) || DataType.isFloat(field.type) || DataType.isDecimal(field.type);
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** A value as exact text (what copying gives); `null` for SQL NULL. */
export function formatValue(value: unknown, field?: Field): string | null {
  if (value === null || value === undefined) return null;
  if (field && DataType.isDecimal(field.type)) return formatDecimal(value, field);
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
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (typeof value === "object" && value !== null && "toJSON" in value && typeof value.toJSON === "function") {
    return stringify(value.toJSON());
  }
  return stringify(value);
}

/**
 * A value as the grid shows it; `null` for SQL NULL. Integers of 10,000 and more are grouped
 * (`336,776`; smaller ones such as years stay `2013`), floats keep about seven significant
 * digits (exponent form when tiny or huge), long text is cut at 500 characters.
 */
export function displayValue(value: unknown, field?: Field): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return (value >= GROUP_FROM || value <= -GROUP_FROM) ? grouped.format(value) : value.toString();
  if (typeof value === "number" && !(field && (DataType.isTimestamp(field.type) || DataType.isDate(field.type)))) {
    return formatNumber(value, field !== undefined && DataType.isFloat(field.type));
  }
  const text = formatValue(value, field);
  if (text === null) return null;
  if (field && DataType.isDecimal(field.type)) return groupDecimal(text);
  return text.length > MAX_CELL_CHARS ? `${text.slice(0, MAX_CELL_CHARS)}…` : text;
}

function formatNumber(value: number, float: boolean): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  const abs = Math.abs(value);
  if (!float && Number.isInteger(value)) return abs >= GROUP_FROM ? grouped.format(value) : String(value);
  if (abs !== 0 && (abs >= 1e15 || abs < 1e-4)) return value.toExponential(4).replace(/\.?0+e/, "e");
  const digits = abs === 0 ? 0 : Math.floor(Math.log10(abs)) + 1;
  const fraction = Math.max(0, Math.min(6, 7 - Math.max(digits, 1)));
  return floatFormat(fraction, abs >= GROUP_FROM).format(value);
}

/** `1234567.50` -> `1,234,567.50` (exact: the digits come from the decimal's own text). */
function groupDecimal(text: string): string {
  const match = /^(-?)(\d+)(\.\d+)?$/.exec(text);
  if (!match || (match[2] ?? "").length < 5) return text;
  return `${match[1] ?? ""}${grouped.format(BigInt(match[2] ?? "0"))}${match[3] ?? ""}`;
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
  if (!(words instanceof Uint32Array)) return typeof value === "number" || typeof value === "bigint" ? String(value) : stringify(value);
  let big = 0n;
  for (let i = words.length - 1; i >= 0; i--) big = (big << 32n) | BigInt(words[i] ?? 0);
  const bits = BigInt(words.length * 32);
  if (words.length > 0 && ((words[words.length - 1] ?? 0) & 0x80000000) !== 0) big -= 1n << bits;
  const negative = big < 0n;
  const digits = (negative ? -big : big).toString().padStart(scale + 1, "0");
  const text = scale > 0 ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}

/** A short DuckDB type for the header (`TIMESTAMP WITH TIME ZONE` -> `timestamptz`). */
export function shortType(type: string): string {
  return type
    .replace(/^TIMESTAMP WITH TIME ZONE$/i, "TIMESTAMPTZ")
    .replace(/^TIME WITH TIME ZONE$/i, "TIMETZ")
    .toLowerCase();
}

/** Rows as tab-separated text (tabs and newlines inside values become spaces; NULL is empty). */
export function toTsv(rows: (string | null)[][]): string {
  return rows.map((row) => row.map((v) => (v ?? "").replace(/[\t\r\n]+/g, " ")).join("\t")).join("\n");
}
