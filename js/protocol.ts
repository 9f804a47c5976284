/**
 * Messages between a browser view and the kernel, and their encoding (one place).
 *
 * Mirrors `src/sqlrooms_nb/protocol.py` kind for kind (a Python test parses the two `*_KINDS`
 * lines below and compares them with the Python tuples: keep each on one line). `content` is a
 * JSON object with a `kind`; binary payloads (Loro updates, version vectors, Arrow IPC) travel in
 * `buffers`, never inside JSON. Buffers arrive from anywidget as `DataView`s (or `ArrayBuffer`s)
 * and are normalised to `Uint8Array` here, because Loro imports only `Uint8Array`.
 *
 * Kernel messages reach every view of a widget: one meant for a single view carries `to` = that
 * view's id, and the others ignore it (see {@link isForView}). A room has one document per
 * branch; messages about a document carry `branch`, and a view ignores other branches' messages.
 */

export const CLIENT_KINDS = ["hello", "update", "run", "ping", "awareness", "history", "preview", "restore", "branch", "merge", "chart_data", "page", "export", "cancel", "run_all"] as const;
export const SERVER_KINDS = ["welcome", "update", "saved", "run_started", "result", "error", "pong", "awareness", "history", "preview", "restored", "branches", "branch_created", "merge_preview", "merged", "chart_data", "page", "export", "run_progress", "cancelled", "stale", "queued", "catalog", "input_options"] as const;

/** Bumped with `PROTOCOL_VERSION` in protocol.py whenever a message changes shape. */
export const PROTOCOL_VERSION = 2;

export const LOG_PREFIX = "[sqlrooms_nb]";

export type ClientKind = (typeof CLIENT_KINDS)[number];
export type ServerKind = (typeof SERVER_KINDS)[number];

/** A view's id: 1-64 URL-safe characters, random per rendered view. */
export type ViewId = string & { readonly __brand: "ViewId" };
/** A request id, echoed by the replies to `run` and `ping`. */
export type RequestId = string & { readonly __brand: "RequestId" };
/** A cell's stable id, `[A-Za-z0-9_-]{1,64}`. */
export type CellId = string & { readonly __brand: "CellId" };
/** A version id: URL-safe base64 (unpadded) of encoded Loro frontiers. */
export type VersionId = string & { readonly __brand: "VersionId" };

// --- client messages (view -> kernel) --------------------------------------------------------

/** The view's opening message (and again after any gap): its oplog version vector. */
export interface Hello {
  kind: "hello";
  view: ViewId;
  /** `VersionVector.encode()` of the view's oplog. */
  version: Uint8Array;
  /** The branch this view shows (absent: the kernel's checked-out branch). */
  branch?: string;
}

/** Loro update blobs made in this view (one or more, each non-empty). */
export interface ClientUpdate {
  kind: "update";
  view: ViewId;
  updates: Uint8Array[];
  branch?: string;
}

/** Run the SQL cell `cell`; `id` is echoed in `run_started` / `result` / `error`. */
export interface Run {
  kind: "run";
  view: ViewId;
  id: RequestId;
  cell: CellId;
  branch?: string;
  /** Re-run the cells that read this one after it (absent: true). */
  cascade?: boolean;
}

/** Cancel the cell's run (running: interrupted; queued: dropped) and the rest of its cascade. */
export interface Cancel {
  kind: "cancel";
  view: ViewId;
  id: RequestId;
  cell: CellId;
  branch?: string;
}

/** Run every SQL cell of the branch in dependency order. */
export interface RunAll {
  kind: "run_all";
  view: ViewId;
  id: RequestId;
  branch?: string;
}

/** Liveness probe, answered by `pong`. */
export interface Ping {
  kind: "ping";
  view: ViewId;
  id: RequestId;
}

/** This view's presence: one encoded Loro `EphemeralStore` update (its own entry only). */
export interface ClientAwareness {
  kind: "awareness";
  view: ViewId;
  update: Uint8Array;
}

/** Ask for edit sessions newest first, skipping `offset` (>= 0) and at most `limit` (1-200). */
export interface HistoryRequest {
  kind: "history";
  view: ViewId;
  id: RequestId;
  offset?: number;
  limit?: number;
  branch?: string;
}

/** Ask for the cells at `version` and their diff against the current state. */
export interface PreviewRequest {
  kind: "preview";
  view: ViewId;
  id: RequestId;
  version: VersionId;
  branch?: string;
}

/** Make `version` current again as a new change; `author` (optional) is who restores. */
export interface RestoreRequest {
  kind: "restore";
  view: ViewId;
  id: RequestId;
  version: VersionId;
  author?: string;
  branch?: string;
}

/** Create branch `name` from `source` (default: the kernel's checked-out one) at version `at`. */
export interface BranchRequest {
  kind: "branch";
  view: ViewId;
  id: RequestId;
  name: string;
  source?: string;
  at?: VersionId;
  author?: string;
}

/** Merge branch `source` into `into`; with `preview` only say what it would change. */
export interface MergeRequest {
  kind: "merge";
  view: ViewId;
  id: RequestId;
  source: string;
  into: string;
  preview: boolean;
}

/** One sort key of a result page (nulls always last). */
export interface SortKey {
  column: string;
  desc: boolean;
}

/** Largest `limit` of a `page` request (rows). */
export const MAX_PAGE_ROWS = 5000;

/** Ask for rows `offset` .. `offset + limit - 1` (0-based; limit 1-5000) of cell `cell`'s last result, sorted. */
export interface PageRequest {
  kind: "page";
  view: ViewId;
  id: RequestId;
  cell: CellId;
  offset: number;
  limit: number;
  sort?: SortKey[];
  branch?: string;
}

export type ExportFormat = "csv" | "parquet";

/** Ask for cell `cell`'s whole last result as a file. */
export interface ExportRequest {
  kind: "export";
  view: ViewId;
  id: RequestId;
  cell: CellId;
  format: ExportFormat;
  sort?: SortKey[];
  branch?: string;
}

/** Ask for the data of chart cell `cell` as the kernel's replica specifies it. */
export interface ChartDataRequest {
  kind: "chart_data";
  view: ViewId;
  id: RequestId;
  cell: CellId;
  branch?: string;
}

export type ClientMessage =
  | Cancel
  | RunAll
  | Hello
  | ClientUpdate
  | Run
  | Ping
  | ClientAwareness
  | HistoryRequest
  | PreviewRequest
  | RestoreRequest
  | BranchRequest
  | MergeRequest
  | ChartDataRequest
  | PageRequest
  | ExportRequest;

// --- server messages (kernel -> views) -------------------------------------------------------

/** Answer to `hello`: what the view lacks, what the kernel has, and what it has saved. */
export interface Welcome {
  kind: "welcome";
  to: ViewId;
  room: string;
  branch: string;
  protocol: number;
  /** Loro updates the view lacks (may be empty). */
  missing: Uint8Array;
  /** `VersionVector.encode()` of the kernel's oplog. */
  version: Uint8Array;
  /** `VersionVector.encode()` of what is durable in the lake. */
  saved: Uint8Array;
}

/** Updates the kernel imported or made; `origin` is the view they came from (`null`: kernel). */
export interface ServerUpdate {
  kind: "update";
  origin: ViewId | null;
  updates: Uint8Array[];
  branch: string;
}

/**
 * Everything up to `version` (an encoded version vector) is durable in the lake. With
 * `lake: "unreachable"` the lake cannot be written now: `kept` changes beyond `version` are fsynced in
 * the kernel's spill file, `unkept` are in its memory only (a `saved` without `lake` ends that).
 */
export interface Saved {
  kind: "saved";
  version: Uint8Array;
  branch: string;
  lake?: "unreachable";
  kept?: number;
  unkept?: number;
}

/** A cell run began; `view` is who asked (`null` when Python did). */
export interface RunStarted {
  kind: "run_started";
  id: RequestId | null;
  cell: CellId;
  view: ViewId | null;
  branch: string;
}

/** One result column: its name and DuckDB type name. */
export interface Column {
  name: string;
  type: string;
}

/** A cell's result: `rows` in total, the first `shown` of them as an Arrow IPC stream. */
export interface Result {
  kind: "result";
  id: RequestId | null;
  cell: CellId;
  name: string;
  rows: number;
  columns: Column[];
  shown: number;
  elapsed_ms: number;
  arrow: Uint8Array;
  branch: string;
  /** Who ran it ("" when unknown, or from an older kernel). */
  author?: string;
}

/** A running cell, every ~250 ms: elapsed ms and DuckDB's progress (0-100, null: unknown). */
export interface RunProgress {
  kind: "run_progress";
  cell: CellId;
  branch: string;
  elapsed_ms: number;
  percent: number | null;
}

/** A run ended because it was cancelled (not an error); `elapsed_ms` 0 if it never started. */
export interface Cancelled {
  kind: "cancelled";
  id: RequestId | null;
  cell: CellId;
  branch: string;
  elapsed_ms: number;
}

/** The full current set of stale cells of `branch`. */
export interface Stale {
  kind: "stale";
  branch: string;
  cells: CellId[];
}

/** The options of a select input cell (first column of its options query), or why it failed. */
export interface InputOptions {
  kind: "input_options";
  cell: CellId;
  branch: string;
  options: string[];
  error: string | null;
}

/** A run waits behind another run. */
export interface Queued {
  kind: "queued";
  id: RequestId | null;
  cell: CellId;
  branch: string;
}

/** One table or view of the kernel's connection (`database` "" = the current database). */
export interface CatalogTable {
  database: string;
  schema: string;
  name: string;
  /** Column names, in order. */
  columns: string[];
  kind: "table" | "view";
}

/** The connection's tables and views, for SQL autocompletion (after welcome and each run). */
export interface Catalog {
  kind: "catalog";
  /** The branch whose run prompted it (the catalog is the connection's, for every branch). */
  branch: string;
  tables: CatalogTable[];
}

/** A tagged error; `line` / `column` are 0-based when present. */
export interface ErrorMessage {
  kind: "error";
  code: string;
  message: string;
  to?: ViewId;
  id?: RequestId;
  cell?: CellId;
  /** Set for errors about one branch's document (a cell's run, that branch's writer). */
  branch?: string;
  line?: number;
  column?: number;
}

/** Answer to `ping`. */
export interface Pong {
  kind: "pong";
  to: ViewId;
  id: RequestId;
}

/**
 * Presence (an encoded `EphemeralStore` update): a view's, relayed (`origin` = that view), or
 * everyone's current presence right after a welcome (`origin` = `null`).
 */
export interface ServerAwareness {
  kind: "awareness";
  origin: ViewId | null;
  update: Uint8Array;
}

/** One edit session (times ISO 8601 UTC; `added` / `removed` in code points). */
export interface VersionInfo {
  id: VersionId;
  time: string;
  start: string;
  author: string;
  summary: string;
  cells: string[];
  added: number;
  removed: number;
  changes: number;
}

/** A named version. */
export interface TagInfo {
  name: string;
  version: VersionId;
}

/** Answer to `history`: one page of sessions, newest first; `more`: older ones exist. */
export interface HistoryReply {
  kind: "history";
  to: ViewId;
  id: RequestId;
  offset: number;
  versions: VersionInfo[];
  more: boolean;
  tags: TagInfo[];
  current: VersionId;
}

/** A cell as it was at a version. */
export interface PreviewCell {
  id: CellId;
  kind: string;
  name: string;
  source: string;
}

export type DiffStatus = "added" | "removed" | "moved" | "changed";

/** How a cell changed from the previewed version to now (0-based indexes, null where absent). */
export interface PreviewDiff {
  id: CellId;
  name: string;
  status: DiffStatus;
  index_a: number | null;
  index_b: number | null;
  /** Unified diff of the source, "" when equal. */
  diff: string;
}

/** Answer to `preview`. */
export interface PreviewReply {
  kind: "preview";
  to: ViewId;
  id: RequestId;
  version: VersionId;
  cells: PreviewCell[];
  diff: PreviewDiff[];
}

/** Answer to `restore`: `current` is the version after the restore. */
export interface Restored {
  kind: "restored";
  to: ViewId;
  id: RequestId;
  version: VersionId;
  current: VersionId;
}

/** One branch and its lineage (times ISO 8601 UTC, null where unknown). */
export interface BranchInfo {
  name: string;
  parent: string | null;
  fork_version: VersionId | null;
  created_by: string;
  created_at: string | null;
  merged_into: string | null;
  merged_at: string | null;
}

/** Every branch of the room, `main` first; `current` is the kernel's checked-out branch. */
export interface BranchesMessage {
  kind: "branches";
  branches: BranchInfo[];
  current: string;
}

/** Answer to `branch`: the branch exists. */
export interface BranchCreated {
  kind: "branch_created";
  to: ViewId;
  id: RequestId;
  name: string;
}

/** Answer to a previewing `merge`: `into`'s cells after the merge and the diff to them. */
export interface MergePreviewReply {
  kind: "merge_preview";
  to: ViewId;
  id: RequestId;
  source: string;
  into: string;
  cells: PreviewCell[];
  diff: PreviewDiff[];
}

/** Answer to a `merge` that merged: `current` is `into`'s new version. */
export interface Merged {
  kind: "merged";
  to: ViewId;
  id: RequestId;
  source: string;
  into: string;
  current: VersionId;
}

/** Answer to `chart_data`: `rows` rows as an Arrow IPC stream (columns x, y, then colour if any). */
export interface ChartData {
  kind: "chart_data";
  to: ViewId;
  id: RequestId;
  cell: CellId;
  branch: string;
  rows: number;
  arrow: Uint8Array;
}

/** Answer to `page`: the rows as an Arrow IPC stream; `rows` is the result's total (from its run). */
export interface PageReply {
  kind: "page";
  to: ViewId;
  id: RequestId;
  cell: CellId;
  branch: string;
  offset: number;
  rows: number;
  sort: SortKey[];
  arrow: Uint8Array;
}

/** Answer to `export`: the file's bytes and a suggested file name. */
export interface ExportReply {
  kind: "export";
  to: ViewId;
  id: RequestId;
  cell: CellId;
  format: ExportFormat;
  filename: string;
  data: Uint8Array;
}

export type ServerMessage =
  | Catalog
  | InputOptions
  | RunProgress
  | Cancelled
  | Stale
  | Queued
  | PageReply
  | ExportReply
  | Welcome
  | ServerUpdate
  | Saved
  | RunStarted
  | Result
  | ErrorMessage
  | Pong
  | ServerAwareness
  | HistoryReply
  | PreviewReply
  | Restored
  | BranchesMessage
  | BranchCreated
  | MergePreviewReply
  | Merged
  | ChartData;

/** What anywidget hands over: JSON content plus binary buffers. */
export interface Wire {
  content: Record<string, unknown>;
  buffers: Uint8Array[];
}

/** Anything anywidget may deliver as a buffer. */
export type RawBuffer = DataView | ArrayBuffer | ArrayBufferView;

/** A malformed kernel message (it is logged and dropped, never thrown out of a handler). */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

// --- helpers ---------------------------------------------------------------------------------

/** Log a message kind this build does not know (a newer kernel); never throws. */
export function logUnknownKind(kind: unknown): void {
  console.warn(`${LOG_PREFIX} unknown message kind`, kind);
}

/**
 * The never-check at the end of every `switch` over message kinds: fails the type-check when a
 * kind is added without a case, and logs (instead of throwing) if one still arrives.
 */
export function assertNever(value: never, kind?: unknown): void {
  logUnknownKind(kind ?? (value as { kind?: unknown } | undefined)?.kind);
}

/** A buffer as a `Uint8Array` over the same bytes (no copy). */
export function toBytes(raw: RawBuffer): Uint8Array {
  if (raw instanceof Uint8Array) return raw;
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
}

/**
 * A buffer that owns all of its `ArrayBuffer` (copied when it is a view into a larger one).
 * Some comm serialisers send `view.buffer` whole, ignoring the view's offset and length.
 */
export function tightBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  return bytes.slice();
}

/** Whether a kernel message concerns this view: no `to`, or `to` equal to `view`. */
export function isForView(message: ServerMessage, view: ViewId): boolean {
  return !("to" in message) || message.to === undefined || message.to === view;
}

// --- encoding (view -> kernel) ---------------------------------------------------------------

/** `{ branch }` when set, else nothing (the kernel then uses its checked-out branch). */
function branchField(branch: string | undefined): { branch?: string } {
  return branch === undefined ? {} : { branch };
}

/** Encode a client message as anywidget `content` plus `buffers`. */
export function encodeClient(message: ClientMessage): Wire {
  switch (message.kind) {
    case "hello":
      return { content: { kind: "hello", view: message.view, ...branchField(message.branch) }, buffers: [tightBytes(message.version)] };
    case "update":
      return { content: { kind: "update", view: message.view, ...branchField(message.branch) }, buffers: message.updates.map(tightBytes) };
    case "run": {
      const content: Record<string, unknown> = { kind: "run", view: message.view, id: message.id, cell: message.cell, ...branchField(message.branch) };
      if (message.cascade !== undefined) content["cascade"] = message.cascade;
      return { content, buffers: [] };
    }
    case "cancel":
      return { content: { kind: "cancel", view: message.view, id: message.id, cell: message.cell, ...branchField(message.branch) }, buffers: [] };
    case "run_all":
      return { content: { kind: "run_all", view: message.view, id: message.id, ...branchField(message.branch) }, buffers: [] };
    case "ping":
      return { content: { kind: "ping", view: message.view, id: message.id }, buffers: [] };
    case "awareness":
      return { content: { kind: "awareness", view: message.view }, buffers: [tightBytes(message.update)] };
    case "history": {
      const content: Record<string, unknown> = { kind: "history", view: message.view, id: message.id, ...branchField(message.branch) };
      if (message.offset !== undefined) content["offset"] = message.offset;
      if (message.limit !== undefined) content["limit"] = message.limit;
      return { content, buffers: [] };
    }
    case "preview":
      return {
        content: { kind: "preview", view: message.view, id: message.id, version: message.version, ...branchField(message.branch) },
        buffers: [],
      };
    case "restore": {
      const content: Record<string, unknown> = {
        kind: "restore",
        view: message.view,
        id: message.id,
        version: message.version,
        ...branchField(message.branch),
      };
      if (message.author) content["author"] = message.author;
      return { content, buffers: [] };
    }
    case "branch": {
      const content: Record<string, unknown> = { kind: "branch", view: message.view, id: message.id, name: message.name };
      if (message.source !== undefined) content["source"] = message.source;
      if (message.at !== undefined) content["at"] = message.at;
      if (message.author) content["author"] = message.author;
      return { content, buffers: [] };
    }
    case "merge":
      return {
        content: { kind: "merge", view: message.view, id: message.id, source: message.source, into: message.into, preview: message.preview },
        buffers: [],
      };
    case "chart_data":
      return { content: { kind: "chart_data", view: message.view, id: message.id, cell: message.cell, ...branchField(message.branch) }, buffers: [] };
    case "page": {
      const content: Record<string, unknown> = {
        kind: "page", view: message.view, id: message.id, cell: message.cell, offset: message.offset, limit: message.limit, ...branchField(message.branch),
      };
      if (message.sort && message.sort.length > 0) content["sort"] = message.sort.map((k) => ({ column: k.column, desc: k.desc }));
      return { content, buffers: [] };
    }
    case "export": {
      const content: Record<string, unknown> = {
        kind: "export", view: message.view, id: message.id, cell: message.cell, format: message.format, ...branchField(message.branch),
      };
      if (message.sort && message.sort.length > 0) content["sort"] = message.sort.map((k) => ({ column: k.column, desc: k.desc }));
      return { content, buffers: [] };
    }
    default:
      assertNever(message);
      throw new ProtocolError(`cannot encode a message of kind ${String((message as { kind?: unknown }).kind)}`);
  }
}

// --- decoding (kernel -> view) ---------------------------------------------------------------

/** The `tables` of a `catalog` message. */
function catalogTables(content: Record<string, unknown>): CatalogTable[] {
  const tables = content["tables"];
  if (!Array.isArray(tables)) throw new ProtocolError("field tables must be a list");
  return tables.map((t: unknown) => {
    if (typeof t !== "object" || t === null) throw new ProtocolError("each catalog table must be an object");
    const item = t as Record<string, unknown>;
    const columns = item["columns"];
    if (!Array.isArray(columns) || !columns.every((x) => typeof x === "string")) throw new ProtocolError("field columns must be a list of strings");
    const kind = item["kind"] === "view" ? "view" : "table";
    return { database: optStr(item, "database") ?? "", schema: str(item, "schema"), name: str(item, "name"), columns: columns as string[], kind };
  });
}

function str(content: Record<string, unknown>, name: string): string {
  const value = content[name];
  if (typeof value !== "string") throw new ProtocolError(`field ${name} must be a string, got ${typeof value}`);
  return value;
}

function optStr(content: Record<string, unknown>, name: string): string | undefined {
  const value = content[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ProtocolError(`field ${name} must be a string, got ${typeof value}`);
  return value;
}

function num(content: Record<string, unknown>, name: string): number {
  const value = content[name];
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new ProtocolError(`field ${name} must be a number, got ${typeof value}`);
  }
  return value;
}

function optNum(content: Record<string, unknown>, name: string): number | undefined {
  const value = content[name];
  if (value === undefined || value === null) return undefined;
  return num(content, name);
}

function buffer(buffers: Uint8Array[], index: number, what: string): Uint8Array {
  const got = buffers[index];
  if (got === undefined) throw new ProtocolError(`missing buffer ${index} (${what})`);
  return got;
}

function columns(content: Record<string, unknown>): Column[] {
  const value = content["columns"];
  if (!Array.isArray(value)) throw new ProtocolError("field columns must be a list");
  return value.map((c: unknown) => {
    if (typeof c !== "object" || c === null) throw new ProtocolError("a column must be an object");
    const col = c as Record<string, unknown>;
    return { name: str(col, "name"), type: str(col, "type") };
  });
}

function bool(content: Record<string, unknown>, name: string): boolean {
  const value = content[name];
  if (typeof value !== "boolean") throw new ProtocolError(`field ${name} must be a boolean, got ${typeof value}`);
  return value;
}

function list(content: Record<string, unknown>, name: string): Record<string, unknown>[] {
  const value = content[name];
  if (!Array.isArray(value)) throw new ProtocolError(`field ${name} must be a list`);
  return value.map((item: unknown) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new ProtocolError(`each item of ${name} must be an object`);
    }
    return item as Record<string, unknown>;
  });
}

function nullableNum(content: Record<string, unknown>, name: string): number | null {
  return optNum(content, name) ?? null;
}

const DIFF_STATUSES: readonly DiffStatus[] = ["added", "removed", "moved", "changed"];

function versionInfo(v: Record<string, unknown>): VersionInfo {
  const cells = v["cells"];
  if (!Array.isArray(cells) || !cells.every((c) => typeof c === "string")) {
    throw new ProtocolError("field cells must be a list of strings");
  }
  return {
    id: str(v, "id") as VersionId,
    time: str(v, "time"),
    start: str(v, "start"),
    author: str(v, "author"),
    summary: str(v, "summary"),
    cells: cells as string[],
    added: num(v, "added"),
    removed: num(v, "removed"),
    changes: num(v, "changes"),
  };
}

function previewDiff(d: Record<string, unknown>): PreviewDiff {
  const status = str(d, "status");
  if (!(DIFF_STATUSES as readonly string[]).includes(status)) throw new ProtocolError(`unknown diff status ${status}`);
  return {
    id: str(d, "id") as CellId,
    name: str(d, "name"),
    status: status as DiffStatus,
    index_a: nullableNum(d, "index_a"),
    index_b: nullableNum(d, "index_b"),
    diff: str(d, "diff"),
  };
}

function previewCell(x: Record<string, unknown>): PreviewCell {
  return { id: str(x, "id") as CellId, kind: str(x, "kind"), name: str(x, "name"), source: str(x, "source") };
}

function branchInfo(b: Record<string, unknown>): BranchInfo {
  return {
    name: str(b, "name"),
    parent: optStr(b, "parent") ?? null,
    fork_version: (optStr(b, "fork_version") ?? null) as VersionId | null,
    created_by: optStr(b, "created_by") ?? "",
    created_at: optStr(b, "created_at") ?? null,
    merged_into: optStr(b, "merged_into") ?? null,
    merged_at: optStr(b, "merged_at") ?? null,
  };
}

function sortKeys(content: Record<string, unknown>): SortKey[] {
  if (content["sort"] === undefined || content["sort"] === null) return [];
  return list(content, "sort").map((k) => ({ column: str(k, "column"), desc: bool(k, "desc") }));
}

function exportFormat(content: Record<string, unknown>): ExportFormat {
  const format = str(content, "format");
  if (format !== "csv" && format !== "parquet") throw new ProtocolError(`unknown export format ${format}`);
  return format;
}

function isServerKind(kind: unknown): kind is ServerKind {
  return typeof kind === "string" && (SERVER_KINDS as readonly string[]).includes(kind);
}

/**
 * Decode one kernel -> view message.
 *
 * Returns `null` (after logging `[sqlrooms_nb] unknown message kind`) for a kind this build does
 * not know, so that a newer kernel does not break an older page. Throws {@link ProtocolError}
 * for a known kind with missing or ill-typed fields.
 */
export function decodeServer(content: unknown, rawBuffers: readonly RawBuffer[] | undefined): ServerMessage | null {
  if (typeof content !== "object" || content === null || Array.isArray(content)) {
    throw new ProtocolError("a message must be a JSON object");
  }
  const c = content as Record<string, unknown>;
  const kind = c["kind"];
  if (!isServerKind(kind)) {
    logUnknownKind(kind);
    return null;
  }
  const buffers = (rawBuffers ?? []).map(toBytes);
  switch (kind) {
    case "welcome":
      return {
        kind,
        to: str(c, "to") as ViewId,
        room: str(c, "room"),
        branch: str(c, "branch"),
        protocol: num(c, "protocol"),
        missing: buffer(buffers, 0, "missing updates"),
        version: buffer(buffers, 1, "kernel version vector"),
        saved: buffer(buffers, 2, "saved version vector"),
      };
    case "update":
      return { kind, origin: (optStr(c, "origin") ?? null) as ViewId | null, updates: buffers, branch: str(c, "branch") };
    case "saved": {
      const saved: Saved = { kind, version: buffer(buffers, 0, "saved version vector"), branch: str(c, "branch") };
      if (c["lake"] === "unreachable") Object.assign(saved, { lake: "unreachable", kept: optNum(c, "kept") ?? 0, unkept: optNum(c, "unkept") ?? 0 });
      return saved;
    }
    case "run_started":
      return {
        kind,
        id: (optStr(c, "id") ?? null) as RequestId | null,
        cell: str(c, "cell") as CellId,
        view: (optStr(c, "view") ?? null) as ViewId | null,
        branch: str(c, "branch"),
      };
    case "result":
      return {
        kind,
        id: (optStr(c, "id") ?? null) as RequestId | null,
        cell: str(c, "cell") as CellId,
        name: str(c, "name"),
        rows: num(c, "rows"),
        columns: columns(c),
        shown: num(c, "shown"),
        elapsed_ms: num(c, "elapsed_ms"),
        arrow: buffer(buffers, 0, "arrow IPC stream"),
        branch: str(c, "branch"),
        author: optStr(c, "author") ?? "",
      };
    case "error": {
      const message: ErrorMessage = { kind, code: str(c, "code"), message: str(c, "message") };
      const to = optStr(c, "to");
      const id = optStr(c, "id");
      const cell = optStr(c, "cell");
      const branch = optStr(c, "branch");
      const line = optNum(c, "line");
      const column = optNum(c, "column");
      if (to !== undefined) message.to = to as ViewId;
      if (id !== undefined) message.id = id as RequestId;
      if (cell !== undefined) message.cell = cell as CellId;
      if (branch !== undefined) message.branch = branch;
      if (line !== undefined) message.line = line;
      if (column !== undefined) message.column = column;
      return message;
    }
    case "pong":
      return { kind, to: str(c, "to") as ViewId, id: str(c, "id") as RequestId };
    case "awareness":
      return { kind, origin: (optStr(c, "origin") ?? null) as ViewId | null, update: buffer(buffers, 0, "awareness update") };
    case "history":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        offset: num(c, "offset"),
        versions: list(c, "versions").map(versionInfo),
        more: bool(c, "more"),
        tags: list(c, "tags").map((t) => ({ name: str(t, "name"), version: str(t, "version") as VersionId })),
        current: str(c, "current") as VersionId,
      };
    case "preview":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        version: str(c, "version") as VersionId,
        cells: list(c, "cells").map(previewCell),
        diff: list(c, "diff").map(previewDiff),
      };
    case "restored":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        version: str(c, "version") as VersionId,
        current: str(c, "current") as VersionId,
      };
    case "branches":
      return { kind, branches: list(c, "branches").map(branchInfo), current: str(c, "current") };
    case "branch_created":
      return { kind, to: str(c, "to") as ViewId, id: str(c, "id") as RequestId, name: str(c, "name") };
    case "merge_preview":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        source: str(c, "source"),
        into: str(c, "into"),
        cells: list(c, "cells").map(previewCell),
        diff: list(c, "diff").map(previewDiff),
      };
    case "merged":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        source: str(c, "source"),
        into: str(c, "into"),
        current: str(c, "current") as VersionId,
      };
    case "chart_data":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        cell: str(c, "cell") as CellId,
        branch: str(c, "branch"),
        rows: num(c, "rows"),
        arrow: buffer(buffers, 0, "arrow IPC stream"),
      };
    case "page":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        cell: str(c, "cell") as CellId,
        branch: str(c, "branch"),
        offset: num(c, "offset"),
        rows: num(c, "rows"),
        sort: sortKeys(c),
        arrow: buffer(buffers, 0, "arrow IPC stream"),
      };
    case "export":
      return {
        kind,
        to: str(c, "to") as ViewId,
        id: str(c, "id") as RequestId,
        cell: str(c, "cell") as CellId,
        format: exportFormat(c),
        filename: str(c, "filename"),
        data: buffer(buffers, 0, "file bytes"),
      };
    case "run_progress":
      return { kind, cell: str(c, "cell") as CellId, branch: str(c, "branch"), elapsed_ms: num(c, "elapsed_ms"), percent: optNum(c, "percent") ?? null };
    case "cancelled":
      return { kind, id: (optStr(c, "id") ?? null) as RequestId | null, cell: str(c, "cell") as CellId, branch: str(c, "branch"), elapsed_ms: num(c, "elapsed_ms") };
    case "stale": {
      const cells = c["cells"];
      if (!Array.isArray(cells) || !cells.every((x) => typeof x === "string")) throw new ProtocolError("field cells must be a list of strings");
      return { kind, branch: str(c, "branch"), cells: cells as CellId[] };
    }
    case "queued":
      return { kind, id: (optStr(c, "id") ?? null) as RequestId | null, cell: str(c, "cell") as CellId, branch: str(c, "branch") };
    case "catalog":
      return { kind, branch: str(c, "branch"), tables: catalogTables(c) };
    case "input_options": {
      const options = c["options"];
      if (!Array.isArray(options) || !options.every((x) => typeof x === "string")) throw new ProtocolError("field options must be a list of strings");
      return { kind, cell: str(c, "cell") as CellId, branch: str(c, "branch"), options: options as string[], error: optStr(c, "error") ?? null };
    }
    default:
      assertNever(kind, kind);
      return null;
  }
}

// --- encoding (kernel -> view), for test doubles of the kernel -------------------------------

/** Encode a kernel message the way protocol.py's `encode_server` does (used by fake kernels). */
export function encodeServer(message: ServerMessage): Wire {
  switch (message.kind) {
    case "welcome":
      return {
        content: { kind: "welcome", to: message.to, room: message.room, branch: message.branch, protocol: message.protocol },
        buffers: [message.missing, message.version, message.saved],
      };
    case "update":
      return { content: { kind: "update", origin: message.origin, branch: message.branch }, buffers: message.updates };
    case "saved": {
      const outage = message.lake === undefined ? {} : { lake: message.lake, kept: message.kept ?? 0, unkept: message.unkept ?? 0 };
      return { content: { kind: "saved", branch: message.branch, ...outage }, buffers: [message.version] };
    }
    case "run_started":
      return { content: { kind: "run_started", id: message.id, cell: message.cell, view: message.view, branch: message.branch }, buffers: [] };
    case "result":
      return {
        content: {
          kind: "result",
          id: message.id,
          cell: message.cell,
          name: message.name,
          rows: message.rows,
          columns: message.columns.map((col) => ({ name: col.name, type: col.type })),
          shown: message.shown,
          elapsed_ms: message.elapsed_ms,
          branch: message.branch,
          author: message.author ?? "",
        },
        buffers: [message.arrow],
      };
    case "error": {
      const content: Record<string, unknown> = { kind: "error", code: message.code, message: message.message };
      for (const key of ["to", "id", "cell", "branch", "line", "column"] as const) {
        if (message[key] !== undefined) content[key] = message[key];
      }
      return { content, buffers: [] };
    }
    case "pong":
      return { content: { kind: "pong", to: message.to, id: message.id }, buffers: [] };
    case "awareness":
      return { content: { kind: "awareness", origin: message.origin }, buffers: [message.update] };
    case "chart_data":
      return {
        content: { kind: "chart_data", to: message.to, id: message.id, cell: message.cell, branch: message.branch, rows: message.rows },
        buffers: [message.arrow],
      };
    case "page":
      return {
        content: {
          kind: "page", to: message.to, id: message.id, cell: message.cell, branch: message.branch,
          offset: message.offset, rows: message.rows, sort: message.sort.map((k) => ({ column: k.column, desc: k.desc })),
        },
        buffers: [message.arrow],
      };
    case "export":
      return {
        content: { kind: "export", to: message.to, id: message.id, cell: message.cell, format: message.format, filename: message.filename },
        buffers: [message.data],
      };
    case "run_progress":
    case "cancelled":
    case "stale":
    case "queued":
    case "catalog":
    case "input_options":
    case "history":
    case "preview":
    case "restored":
    case "branches":
    case "branch_created":
    case "merge_preview":
    case "merged": {
      // Plain JSON, the shape protocol.py writes (nested objects copied as they are).
      const content: Record<string, unknown> = { ...message };
      return { content: JSON.parse(JSON.stringify(content)) as Record<string, unknown>, buffers: [] };
    }
    default:
      assertNever(message);
      throw new ProtocolError("cannot encode an unknown server message");
  }
}

/** Decode a client message (for test doubles of the kernel); throws {@link ProtocolError}. */
export function decodeClient(content: unknown, rawBuffers: readonly RawBuffer[] | undefined): ClientMessage {
  if (typeof content !== "object" || content === null) throw new ProtocolError("a message must be a JSON object");
  const c = content as Record<string, unknown>;
  const kind = c["kind"];
  const buffers = (rawBuffers ?? []).map(toBytes);
  if (typeof kind !== "string" || !(CLIENT_KINDS as readonly string[]).includes(kind)) {
    throw new ProtocolError(`unknown message kind ${String(kind)}`);
  }
  const k = kind as ClientKind;
  const view = str(c, "view") as ViewId;
  const branch = branchField(optStr(c, "branch"));
  switch (k) {
    case "hello":
      if (buffers.length !== 1) throw new ProtocolError("hello needs exactly one buffer");
      return { kind: k, view, version: buffer(buffers, 0, "version vector"), ...branch };
    case "update":
      if (buffers.length === 0 || buffers.some((b) => b.byteLength === 0)) {
        throw new ProtocolError("update needs one or more non-empty buffers");
      }
      return { kind: k, view, updates: buffers, ...branch };
    case "run": {
      const message: Run = { kind: k, view, id: str(c, "id") as RequestId, cell: str(c, "cell") as CellId, ...branch };
      if (c["cascade"] !== undefined) message.cascade = bool(c, "cascade");
      return message;
    }
    case "cancel":
      return { kind: k, view, id: str(c, "id") as RequestId, cell: str(c, "cell") as CellId, ...branch };
    case "run_all":
      return { kind: k, view, id: str(c, "id") as RequestId, ...branch };
    case "ping":
      return { kind: k, view, id: str(c, "id") as RequestId };
    case "awareness":
      if (buffers.length !== 1 || buffers[0]!.byteLength === 0) {
        throw new ProtocolError("awareness needs exactly one non-empty buffer");
      }
      return { kind: k, view, update: buffer(buffers, 0, "awareness update") };
    case "history": {
      const message: HistoryRequest = { kind: k, view, id: str(c, "id") as RequestId, ...branch };
      const offset = optNum(c, "offset");
      const limit = optNum(c, "limit");
      if (offset !== undefined) {
        if (!Number.isInteger(offset) || offset < 0) throw new ProtocolError("offset must be an integer >= 0");
        message.offset = offset;
      }
      if (limit !== undefined) {
        if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new ProtocolError("limit must be an integer from 1 to 200");
        message.limit = limit;
      }
      return message;
    }
    case "preview":
      return { kind: k, view, id: str(c, "id") as RequestId, version: str(c, "version") as VersionId, ...branch };
    case "restore": {
      const message: RestoreRequest = { kind: k, view, id: str(c, "id") as RequestId, version: str(c, "version") as VersionId, ...branch };
      const author = optStr(c, "author");
      if (author) message.author = author;
      return message;
    }
    case "branch": {
      const message: BranchRequest = { kind: k, view, id: str(c, "id") as RequestId, name: str(c, "name") };
      const source = optStr(c, "source");
      const at = optStr(c, "at");
      const author = optStr(c, "author");
      if (source !== undefined) message.source = source;
      if (at !== undefined) message.at = at as VersionId;
      if (author) message.author = author;
      return message;
    }
    case "merge":
      return { kind: k, view, id: str(c, "id") as RequestId, source: str(c, "source"), into: str(c, "into"), preview: bool(c, "preview") };
    case "chart_data":
      return { kind: k, view, id: str(c, "id") as RequestId, cell: str(c, "cell") as CellId, ...branch };
    case "page": {
      const offset = optNum(c, "offset") ?? 0;
      const limit = optNum(c, "limit") ?? 500;
      if (!Number.isInteger(offset) || offset < 0) throw new ProtocolError("offset must be an integer >= 0");
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_ROWS) throw new ProtocolError(`limit must be an integer from 1 to ${MAX_PAGE_ROWS}`);
      const message: PageRequest = { kind: k, view, id: str(c, "id") as RequestId, cell: str(c, "cell") as CellId, offset, limit, ...branch };
      const sort = sortKeys(c);
      if (sort.length > 0) message.sort = sort;
      return message;
    }
    case "export": {
      const message: ExportRequest = { kind: k, view, id: str(c, "id") as RequestId, cell: str(c, "cell") as CellId, format: exportFormat(c), ...branch };
      const sort = sortKeys(c);
      if (sort.length > 0) message.sort = sort;
      return message;
    }
    default:
      assertNever(k, k);
      throw new ProtocolError(`unknown message kind ${String(kind)}`);
  }
}

/** A random URL-safe id of `bytes * 4 / 3` characters (12 for the default 9 bytes). */
export function randomId(bytes = 9): string {
  const raw = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(raw);
  let binary = "";
  for (const b of raw) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
