/**
 * A cell's run status in its header: "queued", elapsed time plus DuckDB's progress bar while it
 * runs (`snb-progress`, its `aria-valuenow` the percent when DuckDB reports one), "Cancelled"
 * after a cancel (`snb-cancelled`, not an error), and a "stale" badge (`snb-stale`) when the
 * kernel says the cell's result is out of date.
 */
import { h } from "./dom";

export interface RunState {
  running: boolean;
  queued?: boolean;
  cancelled?: boolean;
  /** `Date.now()` when the run started here (for the ticking elapsed time). */
  startedAt?: number;
  /** The kernel said the run started (`running` alone may be this view's optimistic guess). */
  confirmed?: boolean;
  /** Last progress from the kernel. */
  progress?: { elapsed_ms: number; percent: number | null };
}

/** Seconds as `1.2 s` or `1:05`. */
export function formatElapsed(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

export class RunStatus {
  readonly el: HTMLElement;
  private readonly text: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly fill: HTMLElement;
  private readonly staleBadge: HTMLElement;
  private timer: ReturnType<typeof setInterval> | null = null;
  private state: RunState | undefined;

  constructor() {
    this.text = h("span", { class: "snb-run-text" });
    this.fill = h("span", { class: "snb-progress-fill" });
    this.bar = h("span", { class: "snb-progress", testid: "snb-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, this.fill);
    this.staleBadge = h("span", { class: "snb-stale-badge", testid: "snb-stale", title: "Its text, or a cell it reads, changed since it last ran" }, "stale");
    this.el = h("span", { class: "snb-run-state", "aria-live": "polite" }, this.staleBadge, this.text, this.bar);
    this.bar.hidden = true;
    this.staleBadge.hidden = true;
  }

  setStale(stale: boolean): void {
    this.staleBadge.hidden = !stale;
  }

  set(state: RunState | undefined): void {
    this.state = state;
    const running = state?.running === true;
    this.bar.hidden = !running;
    if (running && this.timer === null) this.timer = setInterval(() => this.render(), 100);
    if (!running && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.render();
  }

  private render(): void {
    const state = this.state;
    this.text.removeAttribute("data-testid");
    this.text.className = "snb-run-text";
    if (state?.running) {
      const local = state.startedAt !== undefined ? Date.now() - state.startedAt : 0;
      const elapsed = Math.max(local, state.progress?.elapsed_ms ?? 0);
      const percent = state.progress?.percent ?? null;
      this.text.textContent = `${state.queued ? "Running, then queued again" : "Running"} ${formatElapsed(elapsed)}`;
      this.bar.classList.toggle("snb-indeterminate", percent === null);
      this.fill.style.width = percent === null ? "" : `${percent}%`;
      if (percent === null) this.bar.removeAttribute("aria-valuenow");
      else this.bar.setAttribute("aria-valuenow", String(Math.round(percent)));
    } else if (state?.queued) {
      this.text.textContent = "queued";
      this.text.dataset["testid"] = "snb-queued";
    } else if (state?.cancelled) {
      this.text.textContent = "Cancelled";
      this.text.classList.add("snb-cancelled");
      this.text.dataset["testid"] = "snb-cancelled";
    } else {
      this.text.textContent = "";
    }
  }

  destroy(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
