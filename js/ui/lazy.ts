/**
 * Lazy cells for big notebooks: every cell is in the DOM (`snb-cell` with its id, in order), but
 * only the few dozen near the viewport are rendered and have a CodeMirror editor; the others show
 * a light placeholder with their text and are skipped by the browser (`content-visibility:
 * hidden`, see widget.css) until they come near.
 *
 * Why: every editor costs DOM, listeners and a Loro undo manager, and each cell's undo manager
 * excludes every other cell's commit origin (see `UndoScopes` in editor.ts), so building all
 * editors at once is quadratic: 1,000 cells kept a page's main thread busy for 7 minutes here.
 *
 * How: on scroll (of any scrollable ancestor, across shadow roots) and after each render, once
 * per animation frame, a binary search over the cells' positions finds those within
 * {@link NEAR_PX} of the visible band (they get an editor, at most {@link EDITORS_PER_FRAME} per
 * frame) and within {@link FAR_PX} (they are rendered: class {@link NEAR_CLASS}); cells that move
 * beyond {@link FAR_PX} lose their editor. Intersection observers were tried first: with 5,000
 * targets (and `content-visibility: auto`, one more internal observer per cell) computing the
 * intersections took ~45 ms of every scrolling frame.
 */

/** A cell whose editor comes and goes. */
export interface LazyTarget {
  readonly el: HTMLElement;
  /** Build the editor if it has none (idempotent). */
  materialise(): void;
  /** Drop the editor and show the placeholder, unless the cell is in use (idempotent); returns
   * whether it did (a cell in use stays rendered). */
  dematerialise(): boolean;
}

/** Notebooks with at least this many cells get lazy cells; smaller ones build every editor. */
export const LAZY_EDITORS_FROM = 100;
/** A cell this close to the visible band (px, above or below) gets its editor. */
export const NEAR_PX = 400;
/** A cell further than this from the visible band loses its editor and is not rendered. Every
 * live editor listens to scrolling and measures itself on each scroll event: fewer is smoother. */
export const FAR_PX = 1200;
/** Class of every lazy cell. */
export const LAZY_CLASS = "snb-lazy-cell";
/** Class of the lazy cells that are rendered (within {@link FAR_PX}); widget.css hides the rest. */
export const NEAR_CLASS = "snb-near";
/** Editors built per animation frame at most: each one makes the browser lay out the page, so a
 * fast scroll that brings many cells near at once spreads their editors over the next frames
 * (the placeholders show the text meanwhile). */
export const EDITORS_PER_FRAME = 2;

/**
 * Whether new cells of a notebook with `cells` cells are lazy. The global
 * `sqlroomsNbEagerEditors = true` (set before the widget loads) turns laziness off: benchmarks
 * compare the two (benchmarks/big_doc.py).
 */
export function useLazyEditors(cells: number): boolean {
  if ((globalThis as { sqlroomsNbEagerEditors?: unknown }).sqlroomsNbEagerEditors === true) return false;
  return cells >= LAZY_EDITORS_FROM;
}

/** The lazy cells of one cell list (`list`: their parent element). */
export class LazyEditors {
  /** The lazy cells, in document order (see {@link setCells}). */
  private cells: LazyTarget[] = [];
  /** Rendered cells (class {@link NEAR_CLASS}). */
  private readonly rendered = new Set<LazyTarget>();
  /** Cells near the band still waiting for their editor. */
  private readonly waiting = new Set<LazyTarget>();
  private frame: number | null = null;
  private watching: EventTarget[] = [];
  private readonly onScroll = () => this.schedule();

  constructor(private readonly list: HTMLElement) {}

  /** The lazy cells now, in document order (call after each render). */
  setCells(cells: LazyTarget[]): void {
    this.cells = cells;
    const present = new Set(cells);
    for (const cell of this.rendered) if (!present.has(cell)) this.rendered.delete(cell);
    for (const cell of this.waiting) if (!present.has(cell)) this.waiting.delete(cell);
    this.schedule();
  }

  /** Look again at the next animation frame (after scrolling, resizing, rendering). */
  schedule(): void {
    if (this.frame !== null || this.cells.length === 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.update();
    });
  }

  disconnect(): void {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    for (const target of this.watching) target.removeEventListener("scroll", this.onScroll);
    globalThis.removeEventListener?.("resize", this.onScroll);
    this.watching = [];
    this.cells = [];
    this.rendered.clear();
    this.waiting.clear();
  }

  private update(): void {
    if (!this.list.isConnected || this.cells.length === 0) return;
    this.watch();
    const band = this.visibleBand();
    const cells = this.cells;
    const far = this.range(band.top - FAR_PX, band.bottom + FAR_PX);
    const near = this.range(band.top - NEAR_PX, band.bottom + NEAR_PX);
    const keep = new Set(cells.slice(far.first, far.last + 1));
    let changed = false;
    for (const cell of this.rendered) {
      if (keep.has(cell) || !cell.dematerialise()) continue; // far, or in use (focused)
      this.rendered.delete(cell);
      this.waiting.delete(cell);
      cell.el.classList.remove(NEAR_CLASS);
      changed = true;
    }
    for (const cell of keep) {
      if (this.rendered.has(cell)) continue;
      this.rendered.add(cell);
      cell.el.classList.add(NEAR_CLASS);
      changed = true;
    }
    for (let i = near.first; i <= near.last; i++) this.waiting.add(cells[i]!);
    let built = 0;
    for (const cell of this.waiting) {
      if (built++ >= EDITORS_PER_FRAME) break;
      this.waiting.delete(cell);
      cell.materialise();
    }
    // Rendering cells and building editors changes heights: look again until it settles.
    if (this.waiting.size > 0 || changed) this.schedule();
  }

  /** Indexes of the first and last cell overlapping [top, bottom] (viewport px; binary search:
   * cells are stacked in document order). */
  private range(top: number, bottom: number): { first: number; last: number } {
    const cells = this.cells;
    let lo = 0, hi = cells.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cells[mid]!.el.getBoundingClientRect().bottom < top) lo = mid + 1;
      else hi = mid;
    }
    const first = lo;
    lo = first;
    hi = cells.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cells[mid]!.el.getBoundingClientRect().top > bottom) hi = mid - 1;
      else lo = mid;
    }
    return { first, last: Math.max(first, lo) };
  }

  /** The part of the window the list can show: the window clipped by its scrolling ancestors. */
  private visibleBand(): { top: number; bottom: number } {
    let top = 0;
    let bottom = globalThis.innerHeight ?? 0;
    for (const target of this.watching) {
      if (!(target instanceof Element)) continue;
      const box = target.getBoundingClientRect();
      top = Math.max(top, box.top);
      bottom = Math.min(bottom, box.bottom);
    }
    return bottom > top ? { top, bottom } : { top, bottom: top };
  }

  /** Listen to scrolling of every scrollable ancestor (across shadow roots) and to resizes. */
  private watch(): void {
    if (this.watching.length > 0) return;
    const found: EventTarget[] = [];
    for (let node: Node | null = this.list.parentNode; node; node = node.parentNode ?? (node as ShadowRoot).host ?? null) {
      if (!(node instanceof Element)) continue;
      const { overflowY } = getComputedStyle(node);
      if (overflowY === "auto" || overflowY === "scroll" || overflowY === "overlay") found.push(node);
    }
    found.push(document);
    for (const target of found) target.addEventListener("scroll", this.onScroll, { passive: true });
    globalThis.addEventListener?.("resize", this.onScroll, { passive: true });
    this.watching = found;
  }
}
