/**
 * A deterministic clock for tests: timers fire only when {@link FakeClock.advance} passes their
 * due time, in due-time order (ties in scheduling order), like the browser's `setTimeout`.
 */
import type { Timers } from "../sync";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeClock implements Timers {
  private time = 0;
  private nextId = 1;
  private timers: Timer[] = [];

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { id: this.nextId++, at: this.time + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Number of timers waiting to fire. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Move time forward by `ms`, firing every timer that falls due on the way (and microtasks). */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.timers) if (t.at <= end && (next === undefined || t.at < next.at)) next = t;
      if (next === undefined) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.time = next.at;
      next.fn();
      await Promise.resolve();
    }
    this.time = end;
    await Promise.resolve();
  }
}
