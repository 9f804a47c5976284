/**
 * The virtualized result grid of one run (`snb-grid`).
 *
 * Only the rows in view (plus an overscan) exist in the DOM; `@tanstack/virtual-core` works out
 * which, from the scroll container's offset and size (it works inside marimo's shadow root: it
 * only needs the element and a ResizeObserver). The grid is built before it is in the page, where
 * it would measure 0x0: until the page reports its real size, the virtualizer keeps the size the
 * grid will have, so the rows in view exist in the first frame that shows it. Rows come in pages of {@link PAGE_ROWS} from the
 * kernel (`page` requests through a {@link ResultSource}), which sorts and pages the cell's
 * stored result; the run's preview rows seed the cache, so an unsorted grid shows its first rows
 * without asking. The total row count is the run's, never recounted. Pages are cached (at most
 * {@link MAX_CACHED_PAGES}, the ones farthest from view dropped first); a sort change empties the
 * cache, and replies for an older sort are dropped.
 *
 * Interaction: a header click sorts by that column in the kernel (ascending -> descending ->
 * none); a click selects a cell, Ctrl/Cmd-C copies it (exact value, not the grouped display),
 * arrow keys move the selection; the row number's copy button copies the row as TSV.
 */
import { tableFromIPC, type Field, type Table, type Vector } from "apache-arrow";
import { Virtualizer, elementScroll, observeElementOffset, observeElementRect, type VirtualizerOptions } from "@tanstack/virtual-core";
import { LOG_PREFIX, type Column, type ExportFormat, type ExportReply, type PageReply, type RequestId, type SortKey } from "../protocol";
import type { SyncClient } from "../sync";
import { h } from "./dom";
import { displayValue, formatValue, isNumeric, shortType, toTsv } from "./format";
import "./grid.css";

/** Rows asked for per page request. */
export const PAGE_ROWS = 500;
/** Pages kept in memory per grid (each {@link PAGE_ROWS} rows). */
export const MAX_CACHED_PAGES = 64;
/** Row height in px (fixed: the virtualizer never measures). */
export const ROW_PX = 26;
const HEADER_PX = 38;
const MAX_BODY_PX = 26 * 14;
const REQUEST_TIMEOUT_MS = 60000;

/** Where a grid gets its pages and exports (the kernel, through the sync client). */
export interface ResultSource {
  page(cell: string, offset: number, limit: number, sort: SortKey[]): Promise<PageReply>;
  exportResult(cell: string, format: ExportFormat, sort: SortKey[]): Promise<ExportReply>;
}

/** A {@link ResultSource} over a sync client: requests become promises settled by their reply. */
export class ResultRequests implements ResultSource {
  private readonly waiting = new Map<RequestId, { resolve: (m: never) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();
  private readonly unsubscribes: (() => void)[];
  /** Ids of the latest requests made here (newest last), to recognise their error replies. */
  private readonly recent: string[] = [];

  constructor(private readonly sync: SyncClient) {
    this.unsubscribes = [
      sync.on("page", (m) => this.settle(m.id, m)),
      sync.on("export", (m) => this.settle(m.id, m)),
      sync.on("error", (m) => {
        if (m.id !== undefined) this.settle(m.id as RequestId, null, new Error(m.message));
      }),
    ];
  }

  page(cell: string, offset: number, limit: number, sort: SortKey[]): Promise<PageReply> {
    return this.wait(this.sync.page(cell, offset, limit, sort));
  }

  exportResult(cell: string, format: ExportFormat, sort: SortKey[]): Promise<ExportReply> {
    return this.wait(this.sync.exportResult(cell, format, sort));
  }

  /** Whether `id` is one of this object's (recent) requests: its error is the grid's to show. */
  answered(id: string): boolean {
    return this.recent.includes(id);
  }

  dispose(): void {
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    for (const [id] of this.waiting) this.settle(id, null, new Error("the view was closed"));
  }

  private wait<T>(id: RequestId): Promise<T> {
    this.recent.push(id);
    if (this.recent.length > 256) this.recent.shift();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(id, null, new Error("the kernel did not answer")), REQUEST_TIMEOUT_MS);
      this.waiting.set(id, { resolve: resolve as (m: never) => void, reject, timer });
    });
  }

  private settle(id: RequestId, reply: unknown, error?: Error): void {
    const entry = this.waiting.get(id);
    if (!entry) return;
    this.waiting.delete(id);
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(reply as never);
  }
}

/** One cached page: its Arrow columns. */
interface PageData {
  rows: number;
  vectors: (Vector | null)[];
  fields: Field[];
}

function pageData(table: Table): PageData {
  return { rows: table.numRows, fields: table.schema.fields, vectors: table.schema.fields.map((_f, i) => table.getChildAt(i)) };
}

export interface GridOptions {
  cell: string;
  rows: number;
  columns: Column[];
  /** The run's first rows (Arrow table of the preview), or `null` if it could not be decoded. */
  preview: Table | null;
  source?: ResultSource;
  /** Grid state (e.g. "Loading rows…", "Copied", an error) for the result's meta line. */
  onStatus(text: string, tone?: "error"): void;
  /** The first rows are on screen (called once, just after the first frame that painted them). */
  onFirstRows?(): void;
}

const COPY_ICON =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M5 2.5h6.5A1.5 1.5 0 0 1 13 4v7.5h-1.3V4a.2.2 0 0 0-.2-.2H5z"/><path d="M3 5.5A1.5 1.5 0 0 1 4.5 4h5A1.5 1.5 0 0 1 11 5.5v7A1.5 1.5 0 0 1 9.5 14h-5A1.5 1.5 0 0 1 3 12.5zm1.5-.2a.2.2 0 0 0-.2.2v7c0 .1.1.2.2.2h5a.2.2 0 0 0 .2-.2v-7a.2.2 0 0 0-.2-.2z"/></svg>';

/** The grid element and its behaviour; call {@link Grid.destroy} when it is removed. */
export class Grid {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly headers: HTMLElement[] = [];
  private readonly numeric: boolean[];
  private readonly controller = new AbortController();
  private readonly virtualizer: Virtualizer<HTMLElement, HTMLElement>;
  private readonly unmount: () => void;
  private readonly rowEls = new Map<number, HTMLElement>();
  /** Row elements out of view, kept for reuse: scrolling refills rows instead of building them. */
  private readonly spare: HTMLElement[] = [];
  private pages = new Map<number, PageData>();
  private readonly inflight = new Set<number>();
  private readonly failedAt = new Map<number, number>();
  private sort: SortKey[] = [];
  private generation = 0;
  private selected: { row: number; col: number } | null = null;
  private frame = 0;
  private firstRowsShown = false;
  /** What {@link Grid.newRow} clones (built on first use). */
  private rowTemplate: HTMLElement | null = null;
  private destroyed = false;

  constructor(private readonly options: GridOptions) {
    const { columns, preview } = options;
    const fields = preview?.schema.fields ?? [];
    this.numeric = columns.map((c, i) => isNumeric(fields[i], c));
    const widths = columnWidths(columns, preview, this.numeric);
    const gutter = Math.max(44, String(options.rows).length * 8 + 30);
    const template = [`${gutter}px`, ...widths.map((w) => `${w}px`)].join(" ");

    const head = h("div", { class: "snb-grid-head", role: "row" }, h("div", { class: "snb-grid-gutter", role: "columnheader", "aria-label": "Row" }, "#"));
    columns.forEach((col, i) => {
      const header = h("div", {
        class: `snb-grid-header${this.numeric[i] ? " snb-num" : ""}`,
        testid: "snb-grid-header",
        role: "columnheader",
        "data-column": col.name,
        "data-sort": "none",
        "aria-sort": "none",
        title: `${col.name} (${col.type}) — click to sort`,
      },
        h("span", { class: "snb-col-name" }, h("span", { class: "snb-col-label" }, col.name), h("span", { class: "snb-sort-mark", "aria-hidden": "true" })),
        h("span", { class: "snb-col-type" }, shortType(col.type)),
      );
      header.addEventListener("click", () => this.cycleSort(col.name), { signal: this.controller.signal });
      this.headers.push(header);
      head.append(header);
    });
    this.body = h("div", { class: "snb-grid-body", style: `height:${options.rows * ROW_PX}px` });
    const bodyPx = Math.min(MAX_BODY_PX, Math.max(1, options.rows) * ROW_PX);
    this.el = h("div", {
      class: "snb-grid",
      testid: "snb-grid",
      role: "grid",
      tabindex: "0",
      "aria-rowcount": options.rows + 1,
      "aria-colcount": columns.length,
      style: `--snb-grid-cols:${template};max-height:${HEADER_PX + bodyPx + 2}px`,
    }, head, this.body);
    if (columns.length === 0) this.el.append(h("div", { class: "snb-empty" }, "No columns"));

    if (preview) this.seed(preview);
    const { signal } = this.controller;
    this.el.addEventListener("click", (e) => this.onClick(e), { signal });
    this.el.addEventListener("keydown", (e) => this.onKey(e), { signal });

    const settings: VirtualizerOptions<HTMLElement, HTMLElement> = {
      count: options.rows,
      getScrollElement: () => this.el,
      estimateSize: () => ROW_PX,
      overscan: 12,
      scrollMargin: HEADER_PX,
      initialRect: { width: 960, height: HEADER_PX + bodyPx },
      scrollToFn: elementScroll,
      observeElementRect: observeRectOnceInPage,
      observeElementOffset,
      onChange: () => this.schedule(),
    };
    // The virtualizer lays out every row when it learns the count (336,776 rows: 6-17 ms), and
    // the first frame needs only the rows in view: it starts with those (no overscan), the rest
    // follow after that frame (the body already has the full height: the scrollbar is right).
    const firstRows = Math.min(options.rows, Math.ceil(bodyPx / ROW_PX));
    this.virtualizer = new Virtualizer<HTMLElement, HTMLElement>({ ...settings, count: firstRows, overscan: 0 });
    this.unmount = this.virtualizer._didMount();
    this.virtualizer._willUpdate();
    this.render();
    if (firstRows < options.rows) {
      requestAnimationFrame(() => afterFrame(() => {
        if (this.destroyed) return;
        this.virtualizer.setOptions(settings);
        this.schedule();
      }));
    }
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.controller.abort();
    cancelAnimationFrame(this.frame);
    this.unmount();
  }

  /** The current sort (most significant first). */
  getSort(): SortKey[] {
    return this.sort;
  }

  /** The run's preview rows become the first pages of the unsorted grid. */
  private seed(preview: Table): void {
    const shown = preview.numRows;
    for (let p = 0; p * PAGE_ROWS < shown; p++) {
      const end = Math.min(shown, (p + 1) * PAGE_ROWS);
      if (end - p * PAGE_ROWS < PAGE_ROWS && end < this.options.rows) break; // a partial page: ask
      this.pages.set(p, pageData(preview.slice(p * PAGE_ROWS, end)));
    }
  }

  private schedule(): void {
    if (this.frame || this.destroyed) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Bring the row elements in line with the virtualizer's range, and ask for missing pages. */
  private render(): void {
    if (this.destroyed) return;
    this.virtualizer._willUpdate();
    const items = this.virtualizer.getVirtualItems();
    const keep = new Set<number>();
    let anyData = false;
    for (const item of items) keep.add(item.index);
    // Rows that left the range become spares first, so the rows entering it reuse them.
    for (const [index, row] of this.rowEls) {
      if (!keep.has(index)) {
        this.rowEls.delete(index);
        this.spare.push(row);
      }
    }
    for (const item of items) {
      const data = this.pages.get(Math.floor(item.index / PAGE_ROWS));
      anyData ||= data !== undefined;
      let row = this.rowEls.get(item.index);
      if (row && row.dataset["filled"] === (data ? "1" : "0")) continue;
      if (!row) {
        row = this.spare.pop() ?? this.body.appendChild(this.newRow());
        this.rowEls.set(item.index, row);
      }
      this.fillRow(row, item.index, item.start - HEADER_PX, data);
    }
    for (const row of this.spare.splice(0)) row.remove(); // more rows than the range needs
    const first = items[0]?.index ?? 0;
    const last = items[items.length - 1]?.index ?? -1;
    this.fetch(first, last);
    if (anyData && !this.firstRowsShown) {
      this.firstRowsShown = true;
      // A rAF callback runs before its frame's style, layout and paint; a message posted from it
      // is handled after them, when the rows have been painted.
      requestAnimationFrame(() => afterFrame(() => this.options.onFirstRows?.()));
    }
  }

  /** An empty row: the gutter (number + copy button) and one cell per column. Rows are clones
   * of one built per grid: parsing the icon's SVG markup for every row cost ~0.15 ms a row. */
  private newRow(): HTMLElement {
    if (!this.rowTemplate) {
      const copy = h("button", { type: "button", class: "snb-copy-row", testid: "snb-copy-row", title: "Copy row (TSV)" });
      copy.innerHTML = COPY_ICON;
      const row = h("div", { class: "snb-grid-row", testid: "snb-grid-row", role: "row" },
        h("div", { class: "snb-grid-gutter", role: "rowheader" }, h("span", {}), copy));
      this.options.columns.forEach((_col, c) => row.append(h("div", { role: "gridcell", "data-col": c })));
      this.rowTemplate = row;
    }
    return this.rowTemplate.cloneNode(true) as HTMLElement;
  }

  /** Show row `index` of the result in `row` (placeholders while its page is not loaded). */
  private fillRow(row: HTMLElement, index: number, top: number, data: PageData | undefined): void {
    row.className = `snb-grid-row${index % 2 ? " snb-odd" : ""}${data ? "" : " snb-loading-row"}`;
    row.setAttribute("aria-rowindex", String(index + 2));
    row.dataset["row"] = String(index);
    row.dataset["filled"] = data ? "1" : "0";
    row.style.transform = `translateY(${top}px)`;
    const gutter = row.firstElementChild as HTMLElement;
    (gutter.firstElementChild as HTMLElement).textContent = String(index + 1);
    gutter.lastElementChild?.setAttribute("aria-label", `Copy row ${index + 1}`);
    const at = index % PAGE_ROWS;
    let cell = gutter.nextElementSibling as HTMLElement | null;
    for (let c = 0; cell; c++, cell = cell.nextElementSibling as HTMLElement | null) {
      const base = this.numeric[c] ? "snb-grid-cell snb-num" : "snb-grid-cell";
      const selected = this.selected?.row === index && this.selected.col === c ? " snb-selected" : "";
      if (!data) {
        cell.className = `${base} snb-placeholder`;
        cell.textContent = "";
        cell.removeAttribute("title");
        continue;
      }
      const text = displayValue(data.vectors[c]?.get(at), data.fields[c]);
      cell.className = `${base}${text === null ? " snb-null" : ""}${selected}`;
      cell.textContent = text ?? "NULL";
      if (text !== null && text.length > 24) cell.title = text;
      else cell.removeAttribute("title");
    }
  }

  private fetch(first: number, last: number): void {
    const source = this.options.source;
    if (!source || last < first) return;
    const lo = Math.floor(first / PAGE_ROWS);
    // One page ahead of the view, so steady scrolling rarely shows empty rows.
    const hi = Math.min(Math.floor((this.options.rows - 1) / PAGE_ROWS), Math.floor(last / PAGE_ROWS) + 1);
    let waiting = false;
    for (let p = lo; p <= hi; p++) {
      if (this.pages.has(p)) continue;
      waiting = true;
      if (this.inflight.has(p) || Date.now() - (this.failedAt.get(p) ?? -Infinity) < 3000) continue;
      this.inflight.add(p);
      const generation = this.generation;
      const sort = this.sort;
      source.page(this.options.cell, p * PAGE_ROWS, PAGE_ROWS, sort).then(
        (reply) => {
          if (generation !== this.generation || this.destroyed) return;
          this.inflight.delete(p);
          this.failedAt.delete(p);
          this.pages.set(p, pageData(tableFromIPC(reply.arrow)));
          this.evict(lo);
          this.options.onStatus(this.inflight.size > 0 ? "Loading rows…" : "");
          this.schedule();
        },
        (err: unknown) => {
          if (generation !== this.generation || this.destroyed) return;
          this.inflight.delete(p);
          this.failedAt.set(p, Date.now());
          const message = err instanceof Error ? err.message : String(err);
          console.warn(`${LOG_PREFIX} could not load rows ${p * PAGE_ROWS}-${(p + 1) * PAGE_ROWS}`, err);
          this.options.onStatus(message, "error");
        },
      );
    }
    if (waiting && this.inflight.size > 0) this.options.onStatus("Loading rows…");
  }

  /** Drop the cached pages farthest from page `near` beyond {@link MAX_CACHED_PAGES}. */
  private evict(near: number): void {
    if (this.pages.size <= MAX_CACHED_PAGES) return;
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - near) - Math.abs(a - near));
    for (const p of far.slice(0, this.pages.size - MAX_CACHED_PAGES)) this.pages.delete(p);
  }

  private cycleSort(column: string): void {
    const current = this.sort[0]?.column === column ? this.sort[0] : null;
    this.sort = current === null ? [{ column, desc: false }] : current.desc ? [] : [{ column, desc: true }];
    this.generation++;
    this.pages = new Map();
    this.inflight.clear();
    this.failedAt.clear();
    if (this.sort.length === 0 && this.options.preview) this.seed(this.options.preview);
    for (const header of this.headers) {
      const mine = this.sort[0]?.column === header.dataset["column"];
      const state = !mine ? "none" : this.sort[0]?.desc ? "desc" : "asc";
      header.dataset["sort"] = state;
      header.setAttribute("aria-sort", state === "none" ? "none" : state === "asc" ? "ascending" : "descending");
    }
    for (const row of this.rowEls.values()) row.remove();
    this.rowEls.clear();
    this.el.scrollTop = 0;
    this.render();
  }

  // --- selection and copy ---------------------------------------------------------------------

  private onClick(e: MouseEvent): void {
    const target = e.target as HTMLElement | null;
    const copy = target?.closest(".snb-copy-row");
    const rowEl = target?.closest<HTMLElement>(".snb-grid-row");
    if (!rowEl) return;
    const row = Number(rowEl.dataset["row"]);
    if (copy) {
      const values = this.rowValues(row);
      if (values) void this.copy(toTsv([values]), "Row copied");
      return;
    }
    const cellEl = target?.closest<HTMLElement>(".snb-grid-cell");
    if (!cellEl || cellEl.dataset["col"] === undefined) return;
    this.select(row, Number(cellEl.dataset["col"]));
    this.el.focus({ preventScroll: true });
  }

  private select(row: number, col: number): void {
    this.selected = { row, col };
    for (const el of this.el.querySelectorAll(".snb-selected")) el.classList.remove("snb-selected");
    this.rowEls.get(row)?.querySelector(`[data-col="${col}"]`)?.classList.add("snb-selected");
  }

  private onKey(e: KeyboardEvent): void {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === "c" && this.selected) {
      e.preventDefault();
      e.stopPropagation();
      if (e.shiftKey) {
        const values = this.rowValues(this.selected.row);
        if (values) void this.copy(toTsv([values]), "Row copied");
      } else {
        const value = this.rowValues(this.selected.row)?.[this.selected.col];
        if (value !== undefined) void this.copy(value ?? "", "Cell copied");
      }
      return;
    }
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = moves[e.key];
    if (!move || !this.selected || mod) return;
    e.preventDefault();
    const row = Math.max(0, Math.min(this.options.rows - 1, this.selected.row + move[0]));
    const col = Math.max(0, Math.min(this.options.columns.length - 1, this.selected.col + move[1]));
    this.select(row, col);
    this.virtualizer.scrollToIndex(row, { align: "auto" });
  }

  /** A row's exact values (null for NULL), or `null` when its page is not loaded. */
  private rowValues(row: number): (string | null)[] | null {
    const data = this.pages.get(Math.floor(row / PAGE_ROWS));
    if (!data) return null;
    const at = row % PAGE_ROWS;
    return this.options.columns.map((_c, i) => formatValue(data.vectors[i]?.get(at), data.fields[i]));
  }

  private async copy(text: string, done: string): Promise<void> {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (insecure context, denied): the old way, through a selected textarea.
      const area = h("textarea", { class: "snb-copy-buffer", "aria-hidden": "true" });
      area.value = text;
      this.el.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      this.el.focus({ preventScroll: true });
    }
    this.el.dataset["copied"] = text;
    this.options.onStatus(done);
    setTimeout(() => {
      if (!this.destroyed) this.options.onStatus("");
    }, 1500);
  }
}

/**
 * `@tanstack/virtual-core`'s element-size observer, minus the sizes it reads while the element is
 * not in the page (0x0: no rows would render). Until the ResizeObserver reports the laid-out
 * size, the virtualizer keeps its `initialRect`.
 */
const observeRectOnceInPage: typeof observeElementRect = (instance, cb) =>
  observeElementRect(instance, (rect) => {
    if (instance.scrollElement?.isConnected) cb(rect);
  });

/** Call `fn` in a task after the current animation frame's rendering (call it from a
 * `requestAnimationFrame` callback, which runs before the frame's style, layout and paint). */
function afterFrame(fn: () => void): void {
  const channel = new MessageChannel();
  channel.port1.onmessage = () => {
    channel.port1.close();
    fn();
  };
  channel.port2.postMessage(null);
}

/** Column widths in px from the header and the preview's text (clamped to 64-360). */
function columnWidths(columns: Column[], preview: Table | null, numeric: boolean[]): number[] {
  const sample = Math.min(preview?.numRows ?? 0, 200);
  return columns.map((col, i) => {
    let chars = Math.max(col.name.length + 2, shortType(col.type).length);
    const vector = preview?.getChildAt(i);
    const field = preview?.schema.fields[i];
    if (vector && field) {
      for (let r = 0; r < sample; r++) {
        const text = displayValue(vector.get(r), field);
        if (text !== null && text.length > chars) chars = text.length;
      }
    }
    const px = chars * (numeric[i] ? 7.4 : 7.2) + 26;
    return Math.round(Math.max(64, Math.min(360, px)));
  });
}

/** Save bytes as a file download (a Blob behind an object URL, freed a minute later). */
export function download(bytes: Uint8Array, filename: string, format: ExportFormat, parent: HTMLElement): void {
  const type = format === "csv" ? "text/csv" : "application/vnd.apache.parquet";
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type }));
  const link = h("a", { href: url, download: filename, hidden: true });
  parent.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

