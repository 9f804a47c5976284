/**
 * The notebook document schema on Loro, and the operations the UI makes on it.
 *
 * Mirrors `src/sqlrooms_nb/notebook.py` (schema version 1):
 *
 *     meta   LoroMap          {"schema": 1, "title": str}
 *     cells  LoroMovableList  of LoroMap, one per cell, in display order:
 *              id      str       stable id, [A-Za-z0-9_-]{1,64}; never changes
 *              kind    str       "sql" | "markdown" | "chart" | "input"
 *              name    str       result name of a SQL cell (see validateCellName); parameter name of an input
 *                                cell (SQL reads it as `$name`); "" for markdown and chart
 *              source  LoroText  the cell's text (positions in UTF-16 units here)
 *              chart   LoroMap   chart cells only: source, mark, x, y, color, aggregate (strings; see ChartSpec)
 *              input   LoroMap   input cells only: type, value, options_sql (see InputSpec)
 *
 * Unlike the Python helpers, each operation here is one user action and ends with exactly one
 * `doc.commit()`, tagged with the origin {@link STRUCTURE_ORIGIN} (kept out of the editors' undo
 * stacks: Ctrl-Z in a cell undoes typing, not the add / move / delete buttons). Nothing here
 * touches the DOM.
 */
import { LoroMap, LoroText, type LoroDoc, type LoroMovableList } from "loro-crdt";
import { randomId, type CellId } from "./protocol";

export const SCHEMA_VERSION = 1;
export type CellKind = "sql" | "markdown" | "chart" | "input";
export const CELL_KINDS: readonly CellKind[] = ["sql", "markdown", "chart", "input"];

export type InputType = "text" | "number" | "select";
export const INPUT_TYPES: readonly InputType[] = ["text", "number", "select"];

/**
 * An input cell's spec (the entries of its `input` map). `value` is a string for text and
 * select inputs, a number for number inputs, `null` when unset (binds NULL); last writer wins.
 * `optionsSql` (stored as `options_sql`) is a select input's options query (first column).
 */
export interface InputSpec {
  type: InputType;
  value: string | number | null;
  optionsSql: string;
}

export const DEFAULT_INPUT: Readonly<InputSpec> = { type: "text", value: "", optionsSql: "" };

export type ChartMark = "bar" | "line" | "point" | "area";
export const CHART_MARKS: readonly ChartMark[] = ["bar", "line", "point", "area"];
export type ChartAggregate = "none" | "sum" | "mean" | "count" | "min" | "max";
export const CHART_AGGREGATES: readonly ChartAggregate[] = ["none", "sum", "mean", "count", "min", "max"];

/** A chart cell's spec (the entries of its `chart` map); `""` means unset. Mirrors notebook.py. */
export interface ChartSpec {
  /** Result name of the SQL cell plotted. */
  source: string;
  mark: ChartMark;
  x: string;
  y: string;
  color: string;
  aggregate: ChartAggregate;
}

export const DEFAULT_CHART: Readonly<ChartSpec> = { source: "", mark: "bar", x: "", y: "", color: "", aggregate: "none" };

/** Commit origin of structural edits (add, delete, move, rename); an undo-manager exclude prefix. */
export const STRUCTURE_ORIGIN = "snb:structure";

const CELL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const CELL_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** One cell as plain values (a read, not a live handle). */
export interface Cell {
  id: CellId;
  kind: CellKind;
  name: string;
  source: string;
}

/** A live handle on one cell: its map and `source` text in the document. */
export interface CellHandle {
  id: CellId;
  kind: CellKind;
  name: string;
  /** 0-based position in display order. */
  index: number;
  map: LoroMap;
  /** `undefined` only for a malformed cell without a `source` text. */
  text: LoroText | undefined;
}

/** A user-facing validation failure (bad name, index out of range, unknown cell). */
export class CellError extends Error {
  override name = "CellError";
}

/** The root `cells` movable list. */
export function cellsList(doc: LoroDoc): LoroMovableList {
  return doc.getMovableList("cells");
}

/** Whether `name` is a valid result name (a plain SQL identifier of at most 63 characters). */
export function isValidCellName(name: string): boolean {
  return CELL_NAME.test(name);
}

/** Return `name` if valid, else throw {@link CellError} saying what a valid name looks like. */
export function validateCellName(name: string): string {
  if (!isValidCellName(name)) {
    throw new CellError(
      `cell name ${JSON.stringify(name)} is not valid: use a letter or '_' followed by letters, digits or '_' ` +
        "(at most 63 characters), e.g. 'flights_per_month'",
    );
  }
  return name;
}

/** A fresh random cell id: 12 URL-safe characters (72 bits). */
export function newCellId(): CellId {
  return randomId(9) as CellId;
}

function handleAt(list: LoroMovableList, index: number): CellHandle | undefined {
  const item: unknown = list.get(index);
  if (!(item instanceof LoroMap)) return undefined;
  const id: unknown = item.get("id");
  const kind: unknown = item.get("kind") ?? "sql";
  if (typeof id !== "string" || !CELL_KINDS.includes(kind as CellKind)) return undefined;
  const name: unknown = item.get("name");
  const source: unknown = item.get("source");
  return {
    id: id as CellId,
    kind: kind as CellKind,
    name: typeof name === "string" ? name : "",
    index,
    map: item,
    text: source instanceof LoroText ? source : undefined,
  };
}

/**
 * Live handles of all well-formed cells, in display order (cheap: no deep value is built).
 * Items that are not well-formed cell maps are skipped, as in notebook.py.
 */
export function cellHandles(doc: LoroDoc): CellHandle[] {
  const list = cellsList(doc);
  const out: CellHandle[] = [];
  const n = list.length;
  for (let i = 0; i < n; i++) {
    const handle = handleAt(list, i);
    if (handle) out.push(handle);
  }
  return out;
}

/** All cells in display order, as plain values. */
export function readCells(doc: LoroDoc): Cell[] {
  return cellHandles(doc).map((h) => ({ id: h.id, kind: h.kind, name: h.name, source: h.text?.toString() ?? "" }));
}

/** The first of `q1`, `q2`... not used as a result name yet. */
export function uniqueName(doc: LoroDoc, prefix = "q"): string {
  const taken = new Set(cellHandles(doc).map((h) => h.name));
  let n = 1;
  while (taken.has(`${prefix}${n}`)) n++;
  return `${prefix}${n}`;
}

/** The live handle of cell `id`, or `undefined`. */
export function findCell(doc: LoroDoc, id: string): CellHandle | undefined {
  const list = cellsList(doc);
  const n = list.length;
  for (let i = 0; i < n; i++) {
    const handle = handleAt(list, i);
    if (handle?.id === id) return handle;
  }
  return undefined;
}

function mustFind(doc: LoroDoc, id: string): CellHandle {
  const handle = findCell(doc, id);
  if (!handle) throw new CellError(`no cell with id ${JSON.stringify(id)} in this notebook`);
  return handle;
}

export interface AddCellOptions {
  source?: string;
  /** Defaults to a fresh `qN` for SQL cells and `""` for markdown. */
  name?: string;
  kind?: CellKind;
  /** 0-based insert position; `undefined` appends. */
  index?: number;
  id?: string;
  /** Chart cells: initial spec fields (the rest take {@link DEFAULT_CHART}). */
  chart?: Partial<ChartSpec>;
  /** Input cells: initial spec fields (the rest take {@link DEFAULT_INPUT}). */
  input?: Partial<InputSpec>;
}

/** Insert a cell and commit; returns its id. Throws {@link CellError} for a bad name/id/index. */
export function addCell(doc: LoroDoc, options: AddCellOptions = {}): CellId {
  const kind = options.kind ?? "sql";
  if (!CELL_KINDS.includes(kind)) throw new CellError(`cell kind ${JSON.stringify(kind)} is not one of ${CELL_KINDS.join(", ")}`);
  const name = options.name ?? (kind === "sql" ? uniqueName(doc) : kind === "input" ? uniqueName(doc, "p") : "");
  if (name !== "" || kind === "sql" || kind === "input") validateCellName(name);
  const id = options.id ?? newCellId();
  if (!CELL_ID.test(id)) throw new CellError(`cell id ${JSON.stringify(id)} is not valid: 1-64 of [A-Za-z0-9_-]`);
  const list = cellsList(doc);
  const index = options.index ?? list.length;
  if (!Number.isInteger(index) || index < 0 || index > list.length) {
    throw new CellError(`index ${index} is out of range 0..${list.length}`);
  }
  const map = list.insertContainer(index, new LoroMap());
  map.set("id", id);
  map.set("kind", kind);
  map.set("name", name);
  const text = map.setContainer("source", new LoroText());
  if (options.source) text.insert(0, options.source);
  if (kind === "chart") {
    // Made with the cell, so people setting fields later never race to create the map.
    const chart = map.setContainer("chart", new LoroMap());
    for (const [key, value] of Object.entries({ ...DEFAULT_CHART, ...options.chart })) chart.set(key, value);
  }
  if (kind === "input") {
    const spec = { ...DEFAULT_INPUT, ...options.input };
    const input = map.setContainer("input", new LoroMap());
    input.set("type", spec.type);
    input.set("value", spec.value);
    input.set("options_sql", spec.optionsSql);
  }
  doc.commit({ origin: STRUCTURE_ORIGIN });
  return id as CellId;
}

/** Delete cell `id` and commit. Throws {@link CellError} if there is none. */
export function deleteCell(doc: LoroDoc, id: string): void {
  const { index } = mustFind(doc, id);
  cellsList(doc).delete(index, 1);
  doc.commit({ origin: STRUCTURE_ORIGIN });
}

/**
 * Move cell `id` to `index` (0-based position after the move) with the movable list's `move`
 * (never delete + insert) and commit. Throws {@link CellError} for an unknown cell or bad index.
 */
export function moveCell(doc: LoroDoc, id: string, index: number): void {
  const from = mustFind(doc, id).index;
  const n = cellsList(doc).length;
  if (!Number.isInteger(index) || index < 0 || index >= n) throw new CellError(`index ${index} is out of range 0..${n - 1}`);
  if (from !== index) {
    cellsList(doc).move(from, index);
    doc.commit({ origin: STRUCTURE_ORIGIN });
  }
}

/** Set the result name of cell `id` and commit. Throws {@link CellError} for a bad name. */
export function renameCell(doc: LoroDoc, id: string, name: string): void {
  const handle = mustFind(doc, id);
  if (name !== "" || handle.kind === "sql" || handle.kind === "input") validateCellName(name);
  if (handle.name === name) return;
  handle.map.set("name", name);
  doc.commit({ origin: STRUCTURE_ORIGIN });
}

/** The spec of chart cell `id` (defaults for missing or ill-typed entries); `undefined` if none. */
export function readChart(doc: LoroDoc, id: string): ChartSpec | undefined {
  const handle = findCell(doc, id);
  if (handle?.kind !== "chart") return undefined;
  const got: unknown = handle.map.get("chart");
  const spec: ChartSpec = { ...DEFAULT_CHART };
  if (!(got instanceof LoroMap)) return spec;
  const value = got.toJSON() as Record<string, unknown>;
  for (const key of Object.keys(spec) as (keyof ChartSpec)[]) {
    const v = value[key];
    if (typeof v === "string") (spec as unknown as Record<string, string>)[key] = v;
  }
  if (!CHART_MARKS.includes(spec.mark)) spec.mark = DEFAULT_CHART.mark;
  if (!CHART_AGGREGATES.includes(spec.aggregate)) spec.aggregate = DEFAULT_CHART.aggregate;
  return spec;
}

/**
 * Set fields of chart cell `id`'s spec and commit (only changed entries are written, one map
 * entry per field, so concurrent changes to different fields merge). Throws {@link CellError}.
 */
export function setChart(doc: LoroDoc, id: string, fields: Partial<ChartSpec>): void {
  const handle = mustFind(doc, id);
  if (handle.kind !== "chart") throw new CellError(`cell ${JSON.stringify(id)} is not a chart cell`);
  if (fields.mark !== undefined && !CHART_MARKS.includes(fields.mark)) throw new CellError(`unknown chart mark ${fields.mark}`);
  if (fields.aggregate !== undefined && !CHART_AGGREGATES.includes(fields.aggregate)) {
    throw new CellError(`unknown chart aggregate ${fields.aggregate}`);
  }
  let chart: unknown = handle.map.get("chart");
  if (!(chart instanceof LoroMap)) chart = handle.map.setContainer("chart", new LoroMap());
  const map = chart as LoroMap;
  let changed = false;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || map.get(key) === value) continue;
    map.set(key, value);
    changed = true;
  }
  if (changed) doc.commit({ origin: STRUCTURE_ORIGIN });
}

/** A stored value read as an input's type (numbers for number inputs, strings otherwise); mirrors notebook.py. */
function inputValue(value: unknown, type: InputType): string | number | null {
  if (value === null || value === undefined || typeof value === "boolean") return null;
  if (type === "number") {
    if (typeof value === "number") return Number.isFinite(value) ? value : null;
    if (typeof value === "string" && value.trim() !== "") {
      const n = Number(value);
      return Number.isFinite(n) ? n : null;
    }
    return null;
  }
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  return null;
}

/** The spec of input cell `id` (defaults for missing or ill-typed entries); `undefined` if none. */
export function readInput(doc: LoroDoc, id: string): InputSpec | undefined {
  const handle = findCell(doc, id);
  if (handle?.kind !== "input") return undefined;
  const got: unknown = handle.map.get("input");
  if (!(got instanceof LoroMap)) return { ...DEFAULT_INPUT };
  const value = got.toJSON() as Record<string, unknown>;
  const type = INPUT_TYPES.includes(value["type"] as InputType) ? (value["type"] as InputType) : "text";
  const optionsSql = value["options_sql"];
  return { type, value: inputValue(value["value"], type), optionsSql: typeof optionsSql === "string" ? optionsSql : "" };
}

/**
 * Set fields of input cell `id` and commit (only changed entries are written; a type change alone
 * converts the value, as notebook.py does). Throws {@link CellError} for an unknown cell or type,
 * or a value that does not fit the type.
 */
export function setInput(doc: LoroDoc, id: string, fields: Partial<InputSpec>): void {
  const handle = mustFind(doc, id);
  if (handle.kind !== "input") throw new CellError(`cell ${JSON.stringify(id)} is not an input cell`);
  const current = readInput(doc, id) ?? { ...DEFAULT_INPUT };
  if (fields.type !== undefined && !INPUT_TYPES.includes(fields.type)) throw new CellError(`unknown input type ${String(fields.type)}`);
  const type = fields.type ?? current.type;
  const entries: [string, unknown][] = [];
  if (fields.type !== undefined) entries.push(["type", fields.type]);
  if (fields.optionsSql !== undefined) entries.push(["options_sql", fields.optionsSql]);
  if (fields.value !== undefined) {
    if (type === "number" && fields.value !== null && typeof fields.value !== "number") {
      throw new CellError("a number input's value must be a number");
    }
    if (type === "number" && typeof fields.value === "number" && !Number.isFinite(fields.value)) {
      throw new CellError("a number input's value must be a finite number");
    }
    entries.push(["value", type === "number" ? fields.value : inputValue(fields.value, type)]);
  } else if (fields.type !== undefined && fields.type !== current.type) {
    entries.push(["value", inputValue(current.value, type)]);
  }
  let input: unknown = handle.map.get("input");
  if (!(input instanceof LoroMap)) input = handle.map.setContainer("input", new LoroMap());
  const map = input as LoroMap;
  let changed = false;
  for (const [key, value] of entries) {
    const old: unknown = map.get(key);
    if (old === value) continue;
    map.set(key, value as string | number | null);
    changed = true;
  }
  if (changed) doc.commit({ origin: STRUCTURE_ORIGIN });
}
