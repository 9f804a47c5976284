/**
 * The history panel (`snb-history-toggle` opens it): an activity chart of the edit sessions over
 * time and the sessions newest first (`snb-history-item`, `data-version`), tags as chips, "Load
 * more" while older ones exist. Refreshed when it opens and, while open, at most once per
 * {@link REFRESH_MS} when the document changes.
 *
 * Picking a session shows {@link PreviewView}: the notebook as it was, read-only, rendered from
 * the kernel's `preview` reply (plain `<pre>` blocks with SQL highlighting, never bound to the
 * live document), with a `snb-preview-banner` holding `snb-restore` and `snb-exit-preview`.
 */
import { PostgreSQL } from "@codemirror/lang-sql";
import { classHighlighter, highlightTree } from "@lezer/highlight";
import { activityBuckets, changedOldLines, diffBody, displaySummary, placeTags, relativeTime, type CompareVersions } from "../history";
import { colorFor, type Presence } from "../presence";
import type { HistoryReply, PreviewDiff, PreviewReply, RequestId, TagInfo, VersionId, VersionInfo } from "../protocol";
import { h } from "./dom";

/** Refresh the open panel at most this often while the document changes, ms. */
export const REFRESH_MS = 1000;
/** A history request unanswered this long is taken as lost (automatic refreshes resume), ms. */
const LOST_MS = 30_000;
/** Sessions asked for per page. */
export const PAGE_SIZE = 50;
/** Bars in the activity chart. */
const BARS = 48;

export const CLOCK_ICON =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M8 1.5a6.5 6.5 0 1 0 0 13 6.5 6.5 0 0 0 0-13zm0 1.4a5.1 5.1 0 1 1 0 10.2A5.1 5.1 0 0 1 8 2.9zM7.3 4.5v4l3.2 1.9.7-1.2-2.5-1.5V4.5z"/></svg>';

/** What the panel needs from the sync client. */
export interface HistorySource {
  history(offset: number, limit: number): RequestId;
}

export interface HistoryPanelOptions {
  source: HistorySource;
  signal: AbortSignal;
  /** Known people's colours (presence); others get their name's colour. */
  presence?: Presence;
  /** Orders two versions (for tags that sit between sessions). */
  compare?: CompareVersions;
  /** A session was picked. */
  onPick(version: VersionInfo): void;
  now?: () => number;
}

function colourOf(name: string, presence: Presence | undefined): string {
  const peer = presence?.peers().find((p) => p.name === name);
  return peer?.color ?? colorFor(name || "someone");
}

export function formatTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export class HistoryPanel {
  readonly el: HTMLElement;
  private readonly chart: HTMLElement;
  private readonly list: HTMLElement;
  private readonly more: HTMLButtonElement;
  private readonly count: HTMLElement;
  private versions: VersionInfo[] = [];
  private tags: TagInfo[] = [];
  private hasMore = false;
  private pending: { id: RequestId; offset: number; at: number } | null = null;
  /** The document changed while a request was out: refresh once its reply is in. */
  private dirty = false;
  /** How long the last reply took, ms (automatic refreshes wait at least twice that). */
  private lastReplyMs = 0;
  private selected: VersionId | null = null;
  private opened = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastRefresh = -Infinity;
  private ticker: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly options: HistoryPanelOptions) {
    const { signal } = options;
    this.count = h("span", { class: "snb-history-count" });
    this.chart = h("div", { class: "snb-history-chart", "aria-hidden": "true" });
    this.list = h("ol", { class: "snb-history-list", testid: "snb-history-list", "aria-label": "Edit sessions, newest first" });
    this.more = h("button", { type: "button", class: "snb-btn snb-history-more", testid: "snb-history-more" }, "Load more");
    this.more.hidden = true;
    this.more.addEventListener("click", () => this.request(this.versions.length), { signal });
    this.el = h("section", { class: "snb-history", testid: "snb-history", "aria-label": "History" },
      h("div", { class: "snb-history-head" }, h("span", { class: "snb-history-title" }, "History"), this.count),
      this.chart,
      this.list,
      this.more,
    );
    this.el.hidden = true;
    this.list.addEventListener(
      "click",
      (e) => {
        const item = (e.target as Element | null)?.closest<HTMLElement>("[data-version]");
        const version = this.versions.find((v) => v.id === item?.dataset["version"]);
        if (version) options.onPick(version);
      },
      { signal },
    );
    signal.addEventListener("abort", () => this.stopTimers());
  }

  get isOpen(): boolean {
    return this.opened;
  }

  /** Open or close; returns whether it is open now. */
  toggle(): boolean {
    this.opened = !this.opened;
    this.el.hidden = !this.opened;
    if (this.opened) {
      this.refresh();
      this.ticker = setInterval(() => this.render(), 30_000);
    } else {
      this.stopTimers();
    }
    return this.opened;
  }

  /** Reload the first page (as many sessions as are shown, at most 200). */
  refresh(): void {
    this.lastRefresh = Date.now();
    this.request(0, Math.min(200, Math.max(PAGE_SIZE, this.versions.length)));
  }

  /**
   * The document changed: refresh soon if open. At most one request is out at a time, and an
   * automatic refresh never replaces one the user made (opening, Load more): it waits for the
   * reply, then at least {@link REFRESH_MS} and twice the last reply's time, so a slow kernel
   * (a long history) is asked less often instead of piling requests up.
   */
  docChanged(): void {
    if (!this.opened || this.timer !== null) return;
    if (this.pending !== null && Date.now() - this.pending.at < LOST_MS) {
      this.dirty = true;
      return;
    }
    const gap = Math.max(REFRESH_MS, 2 * this.lastReplyMs);
    const wait = Math.max(0, this.lastRefresh + gap - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.opened || this.options.signal.aborted) return;
      if (this.pending !== null) this.dirty = true;
      else this.refresh();
    }, wait);
  }

  /** Handle a `history` reply for this view (stale ones are ignored). */
  onReply(reply: HistoryReply): void {
    if (this.pending?.id !== reply.id) return;
    this.lastReplyMs = Date.now() - this.pending.at;
    this.pending = null;
    if (this.dirty) {
      this.dirty = false;
      this.docChanged();
    }
    this.versions = reply.offset === 0 ? reply.versions : [...this.versions.slice(0, reply.offset), ...reply.versions];
    this.tags = reply.tags;
    this.hasMore = reply.more;
    this.render();
  }

  /** Mark the previewed session (`null`: none). */
  select(version: VersionId | null): void {
    this.selected = version;
    for (const item of this.list.querySelectorAll<HTMLElement>("[data-version]")) {
      const on = item.dataset["version"] === version;
      item.classList.toggle("snb-selected", on);
      item.setAttribute("aria-current", on ? "true" : "false");
    }
  }

  /** The listed session with this id, if loaded. */
  find(version: VersionId): VersionInfo | undefined {
    return this.versions.find((v) => v.id === version);
  }

  private request(offset: number, limit = PAGE_SIZE): void {
    const id = this.options.source.history(offset, limit);
    this.pending = { id, offset, at: Date.now() };
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private render(): void {
    const now = this.now();
    this.count.textContent = this.versions.length
      ? `${this.versions.length}${this.hasMore ? "+" : ""} session${this.versions.length === 1 && !this.hasMore ? "" : "s"}`
      : "";
    this.renderChart(now);
    const placed = placeTags(this.versions, this.tags, this.options.compare);
    const items = this.versions.map((v) => this.item(v, placed.get(v.id) ?? [], now));
    if (items.length === 0) items.push(h("li", { class: "snb-history-empty" }, "No edits yet."));
    this.list.replaceChildren(...items);
    this.more.hidden = !this.hasMore;
    this.select(this.selected);
  }

  private item(v: VersionInfo, tags: TagInfo[], now: number): HTMLElement {
    const end = Date.parse(v.time);
    const who = v.author || "someone";
    const dot = h("span", { class: "snb-history-dot", "aria-hidden": "true" });
    dot.style.backgroundColor = colourOf(v.author, this.options.presence);
    const chars = v.added || v.removed ? h("span", { class: "snb-history-chars" },
      h("span", { class: "snb-plus" }, `+${v.added}`), " ", h("span", { class: "snb-minus" }, `−${v.removed}`)) : null;
    return h("li", { class: "snb-history-row" },
      h("button", {
        type: "button",
        class: "snb-history-item",
        testid: "snb-history-item",
        "data-version": v.id,
        title: `${formatTime(Date.parse(v.start))} – ${formatTime(end)} · ${v.changes} change${v.changes === 1 ? "" : "s"}`,
      },
        h("span", { class: "snb-history-line" },
          dot,
          h("span", { class: "snb-history-author" }, who),
          ...tags.map((t) => h("span", { class: "snb-tag", testid: "snb-tag", title: `Tag ${t.name}` }, t.name)),
          h("span", { class: "snb-spacer" }),
          chars,
          h("time", { class: "snb-history-time", datetime: v.time }, relativeTime(end, now)),
        ),
        h("span", { class: "snb-history-summary", title: v.summary }, displaySummary(v.summary, (id) => {
          const found = this.find(id as VersionId);
          return found ? formatTime(Date.parse(found.time)) : undefined;
        })),
      ),
    );
  }

  private renderChart(now: number): void {
    const buckets = activityBuckets(this.versions, BARS, now);
    if (buckets.length === 0) {
      this.chart.replaceChildren();
      return;
    }
    const max = Math.max(...buckets.map((b) => b.weight));
    const W = 480;
    const H = 36;
    const step = W / buckets.length;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "snb-history-svg");
    const base = document.createElementNS(ns, "line");
    for (const [k, val] of [["x1", 0], ["x2", W], ["y1", H - 0.5], ["y2", H - 0.5]] as const) base.setAttribute(k, String(val));
    base.setAttribute("class", "snb-history-axis");
    svg.append(base);
    buckets.forEach((b, i) => {
      if (b.sessions === 0) return;
      const height = Math.max(3, (Math.sqrt(b.weight) / Math.sqrt(max)) * (H - 4));
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(i * step + 1));
      rect.setAttribute("y", String(H - height));
      rect.setAttribute("width", String(Math.max(1, step - 2)));
      rect.setAttribute("height", String(height));
      rect.setAttribute("rx", "1.5");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${b.sessions} session${b.sessions === 1 ? "" : "s"} · ${formatTime(b.from)} – ${formatTime(b.to)}`;
      rect.append(title);
      svg.append(rect);
    });
    const first = buckets[0]!.from;
    this.chart.replaceChildren(
      svg,
      h("div", { class: "snb-history-axis-labels" },
        h("span", {}, relativeTime(first, now)),
        h("span", {}, "now"),
      ),
    );
  }

  private stopTimers(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.ticker !== null) clearInterval(this.ticker);
    this.timer = this.ticker = null;
  }
}

// --- preview ---------------------------------------------------------------------------------

/** `text` as SQL-highlighted lines (`<span class="tok-…">` inside one `<div>` per line). */
export function highlightedLines(text: string, sql: boolean): HTMLElement[] {
  const segments: { from: number; to: number; cls: string }[] = [];
  if (sql) {
    let at = 0;
    try {
      const tree = PostgreSQL.language.parser.parse(text);
      highlightTree(tree, classHighlighter, (from, to, cls) => {
        if (from > at) segments.push({ from: at, to: from, cls: "" });
        segments.push({ from, to, cls });
        at = to;
      });
    } catch {
      segments.length = 0;
      at = 0;
    }
    if (at < text.length) segments.push({ from: at, to: text.length, cls: "" });
  } else {
    segments.push({ from: 0, to: text.length, cls: "" });
  }
  const lines: HTMLElement[] = [h("div", { class: "snb-preview-line" })];
  for (const seg of segments) {
    const parts = text.slice(seg.from, seg.to).split("\n");
    parts.forEach((part, i) => {
      if (i > 0) lines.push(h("div", { class: "snb-preview-line" }));
      if (part) lines[lines.length - 1]!.append(seg.cls ? h("span", { class: seg.cls }, part) : part);
    });
  }
  for (const line of lines) if (!line.firstChild) line.append("\u200b");
  return lines;
}

const BADGES: Record<PreviewDiff["status"], { text: string; title: string }> = {
  changed: { text: "changed since", title: "Its text or name is different now" },
  moved: { text: "moved since", title: "It is in another place now" },
  removed: { text: "deleted since", title: "This cell has been deleted since this version" },
  added: { text: "added since", title: "This cell was added after this version" },
};

export interface PreviewOptions {
  reply: PreviewReply;
  /** The session being previewed, when listed (for the banner's author and time). */
  version: VersionInfo | undefined;
  signal: AbortSignal;
  onRestore(): void;
  onExit(): void;
  now?: () => number;
}

/** The notebook at an old version, read-only, with what changed since marked on each cell. */
export class PreviewView {
  readonly el: HTMLElement;

  constructor(options: PreviewOptions) {
    const { reply, version, signal } = options;
    const now = options.now?.() ?? Date.now();
    const restore = h("button", { type: "button", class: "snb-btn snb-restore", testid: "snb-restore", title: "Make this version current again (as a new change everyone sees)" }, "Restore this version");
    const exit = h("button", { type: "button", class: "snb-btn snb-exit-preview", testid: "snb-exit-preview", title: "Back to the live notebook" }, "Back to live");
    restore.addEventListener("click", () => options.onRestore(), { signal });
    exit.addEventListener("click", () => options.onExit(), { signal });
    const what = version
      ? [h("strong", {}, `${version.author || "someone"}'s`), " version of ", h("strong", {}, formatTime(Date.parse(version.time))), h("span", { class: "snb-dim" }, ` (${relativeTime(Date.parse(version.time), now)})`)]
      : ["an earlier version"];
    const icon = h("span", { class: "snb-preview-icon", "aria-hidden": "true" });
    icon.innerHTML = CLOCK_ICON;
    const diffs = new Map(reply.diff.map((d) => [d.id, d]));
    const counts = reply.diff.reduce<Record<string, number>>((acc, d) => ((acc[d.status] = (acc[d.status] ?? 0) + 1), acc), {});
    const since = Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ");
    const banner = h("div", { class: "snb-preview-banner", testid: "snb-preview-banner", role: "status" },
      icon,
      h("span", { class: "snb-preview-text" }, "Viewing ", ...what, h("span", { class: "snb-preview-note" }, since ? `Since then: ${since}. Read-only.` : "Same as now. Read-only.")),
      restore,
      exit,
    );
    const cells = reply.cells.map((cell) => {
      const d = diffs.get(cell.id);
      const changed = d?.status === "changed" || d?.status === "removed" ? changedOldLines(d.diff) : new Set<number>();
      const lines = highlightedLines(cell.source, cell.kind === "sql");
      lines.forEach((line, i) => changed.has(i) && line.classList.add("snb-line-changed"));
      const badge = d ? h("span", { class: `snb-diff-badge snb-diff-${d.status}`, testid: "snb-diff-badge", "data-status": d.status, title: BADGES[d.status].title }, BADGES[d.status].text) : null;
      const details = d?.status === "changed" && d.diff
        ? h("details", { class: "snb-preview-diff" },
            h("summary", {}, "Changes since this version"),
            h("pre", {}, ...diffBody(d.diff).map((row) => h("div", { class: row.startsWith("+") ? "snb-diff-add" : row.startsWith("-") ? "snb-diff-del" : row.startsWith("@@") ? "snb-diff-hunk" : "" }, row || "\u200b"))))
        : null;
      return h("div", { class: `snb-cell snb-preview-cell${d ? ` snb-preview-${d.status}` : ""}`, testid: "snb-preview-cell", "data-cell-id": cell.id, "data-status": d?.status },
        h("div", { class: "snb-cell-header" },
          h("span", { class: "snb-kind" }, cell.kind === "sql" ? "SQL" : "MD"),
          h("span", { class: "snb-cell-name" }, cell.name),
          badge,
        ),
        h("pre", { class: "snb-preview-source", testid: "snb-preview-source" }, ...lines),
        details,
      );
    });
    const added = reply.diff.filter((d) => d.status === "added");
    const addedNote = added.length
      ? h("div", { class: "snb-preview-added" }, `Added after this version: ${added.map((d) => d.name || d.id).join(", ")}`)
      : null;
    const body = cells.length ? cells : [h("div", { class: "snb-empty-notebook" }, "The notebook had no cells at this version.")];
    this.el = h("div", { class: "snb-preview", testid: "snb-preview", "data-version": reply.version },
      banner,
      h("div", { class: "snb-cells snb-preview-cells" }, ...body),
      addedNote,
    );
  }
}
