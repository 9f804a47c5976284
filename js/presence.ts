/**
 * Who is here, and where their caret is: this view's entry in a Loro `EphemeralStore` shared
 * with the other views through the kernel (`awareness` messages). Pure of DOM: the toolbar
 * avatars (`ui/presence.ts`) and the editors' remote carets (`ui/cursors.ts`) read it.
 *
 * - Key: this view's id. Value: {@link PresenceState} — display name, colour, and the editor
 *   selection as Loro `Cursor` encodings (`LoroText.getCursor(pos).encode()`), which keep their
 *   place in the text under concurrent edits (resolve with `doc.getCursorPos(Cursor.decode(b))`).
 * - Local changes are sent throttled like document updates: the first at once, later ones within
 *   {@link PresenceOptions.throttleMs} coalesced into one (only the latest state matters).
 * - The entry is re-sent every {@link PresenceOptions.refreshMs} so that others (whose stores drop
 *   entries older than {@link PresenceOptions.timeoutMs}) keep it; a closed page just expires.
 * - Nothing is sent before the first welcome; each welcome re-sends the whole entry.
 *
 * Loro stamps entries with the sender's clock: a browser whose clock is off by more than the
 * timeout is not shown to others.
 */
import { Cursor, EphemeralStore, type LoroDoc, type LoroText } from "loro-crdt";
import { LOG_PREFIX, type CellId, type ServerAwareness, type ViewId } from "./protocol";
import { realTimers, type Timers } from "./sync";

/** One view's presence as stored under its view id. */
export type PresenceState = {
  name: string;
  /** A CSS colour from {@link PALETTE}. */
  color: string;
  /** The branch this view shows (cell ids repeat across branches: cursors only show within one). */
  branch?: string;
  /** The cell whose editor last had this view's selection (absent: none yet). */
  cell?: string;
  /** `Cursor.encode()` of the selection's anchor in that cell's source text. */
  anchor?: Uint8Array;
  /** `Cursor.encode()` of the selection's head (the caret). */
  head?: Uint8Array;
};

/** A view's presence as the UI shows it. */
export interface Peer {
  view: ViewId;
  name: string;
  color: string;
  /** This view. */
  self: boolean;
  branch?: string;
  cell?: CellId;
  anchor?: Uint8Array;
  head?: Uint8Array;
}

/** Readable on white, distinguishable from each other (Tableau 10, darkened where needed). */
export const PALETTE = ["#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#f28e2b", "#76b7b2", "#9c755f", "#d4a017"] as const;

/** A stable colour for a name (FNV-1a hash into {@link PALETTE}). */
export function colorFor(name: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return PALETTE[hash % PALETTE.length]!;
}

/** Up to two initials of a name ("Ana Lopez" -> "AL", "guest 123" -> "G1"). */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => [...w][0] ?? "");
  return letters.join("").toUpperCase() || "?";
}

export interface PresenceOptions {
  viewId: ViewId;
  name: string;
  /** The branch this view shows. */
  branch?: string;
  /** Sends one encoded EphemeralStore update as an `awareness` message. */
  send: (update: Uint8Array) => void;
  timers?: Timers;
  /** Coalescing window for local changes, ms (default 50). */
  throttleMs?: number;
  /** Re-send this view's entry this often, ms (default 10000). */
  refreshMs?: number;
  /** Entries not updated for this long are dropped, ms (default 30000; the kernel's too). */
  timeoutMs?: number;
}

type Listener = () => void;

export class Presence {
  readonly viewId: ViewId;
  readonly store: EphemeralStore<Record<string, PresenceState>>;

  private readonly sendRaw: PresenceOptions["send"];
  private readonly timers: Timers;
  private readonly throttleMs: number;
  private readonly refreshMs: number;
  private readonly listeners = new Set<Listener>();
  private readonly unsubscribes: (() => void)[] = [];
  private state: PresenceState;
  private welcomed = false;
  private stopped = false;
  /** A local change came within the throttle window and is not sent yet. */
  private dirty = false;
  /** Set while re-stamping the entry to send it: its local update goes out at once. */
  private flushing = false;
  private windowTimer: unknown = null;
  private refreshTimer: unknown = null;

  /** Counters for tests and diagnostics. */
  readonly stats = { sent: 0, applied: 0 };

  constructor(options: PresenceOptions) {
    this.viewId = options.viewId;
    this.sendRaw = options.send;
    this.timers = options.timers ?? realTimers;
    this.throttleMs = options.throttleMs ?? 50;
    this.refreshMs = options.refreshMs ?? 10_000;
    this.store = new EphemeralStore(options.timeoutMs ?? 30_000);
    this.state = { name: options.name, color: colorFor(options.name) };
    if (options.branch !== undefined) this.state.branch = options.branch;
    this.unsubscribes.push(this.store.subscribeLocalUpdates((bytes) => this.onLocalUpdate(bytes)));
    this.unsubscribes.push(this.store.subscribe(() => this.emit()));
    this.store.set(this.viewId, this.state);
  }

  // --- this view ----------------------------------------------------------------------------

  get name(): string {
    return this.state.name;
  }

  /** The branch this view shows (`undefined`: not said). */
  get branch(): string | undefined {
    return this.state.branch;
  }

  /** Change this view's display name (its colour follows the name). */
  setName(name: string): void {
    const clean = name.trim().slice(0, 64);
    if (!clean || clean === this.state.name) return;
    this.put({ ...this.state, name: clean, color: colorFor(clean) });
  }

  /**
   * Record this view's selection in `cell`, from editor positions (UTF-16 offsets into `text`).
   * Positions beyond the text are clamped.
   */
  setSelection(cell: CellId, text: LoroText, anchor: number, head: number): void {
    const at = (pos: number) => text.getCursor(Math.max(0, Math.min(pos, text.length)))?.encode();
    const next: PresenceState = { name: this.state.name, color: this.state.color, cell };
    if (this.state.branch !== undefined) next.branch = this.state.branch;
    const a = at(anchor);
    const h = anchor === head ? a : at(head);
    if (a) next.anchor = a;
    if (h) next.head = h;
    this.put(next);
  }

  private put(state: PresenceState): void {
    if (this.stopped) return;
    this.state = state;
    this.store.set(this.viewId, state);
  }

  // --- wire ---------------------------------------------------------------------------------

  /** The kernel welcomed this view: send the whole entry now and keep it fresh from then on. */
  onWelcome(): void {
    if (this.stopped) return;
    this.welcomed = true;
    this.dirty = false;
    this.restamp();
    if (this.windowTimer === null) this.openWindow();
    this.scheduleRefresh();
  }

  /** Apply a kernel `awareness` message (this view's own relayed bytes are skipped). */
  apply(message: ServerAwareness): void {
    if (this.stopped || message.origin === this.viewId) return;
    try {
      this.store.apply(message.update);
      this.stats.applied++;
    } catch (err) {
      console.warn(`${LOG_PREFIX} dropped a malformed awareness update`, err);
    }
  }

  private onLocalUpdate(bytes: Uint8Array): void {
    if (this.stopped || !this.welcomed) return;
    if (this.flushing || this.windowTimer === null) {
      this.sendNow(bytes);
      if (this.windowTimer === null) this.openWindow();
    } else {
      this.dirty = true;
    }
  }

  private openWindow(): void {
    this.windowTimer = this.timers.setTimeout(() => this.closeWindow(), this.throttleMs);
  }

  private closeWindow(): void {
    this.windowTimer = null;
    if (!this.dirty || this.stopped) return;
    this.dirty = false;
    this.restamp();
    this.openWindow();
  }

  /**
   * Set the entry again and send it at once. Loro stamps entries in whole milliseconds and
   * receivers ignore one not newer than what they hold, so the coalesced state is re-stamped
   * when it leaves rather than sent with the stamp of a change made in the same millisecond as
   * the previous send.
   */
  private restamp(): void {
    this.flushing = true;
    try {
      this.store.set(this.viewId, this.state);
    } finally {
      this.flushing = false;
    }
  }

  private sendNow(bytes: Uint8Array): void {
    this.stats.sent++;
    try {
      this.sendRaw(bytes);
    } catch (err) {
      console.error(`${LOG_PREFIX} could not send presence`, err);
    }
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer !== null) this.timers.clearTimeout(this.refreshTimer);
    this.refreshTimer = this.timers.setTimeout(() => {
      this.refreshTimer = null;
      if (this.stopped) return;
      this.store.set(this.viewId, this.state); // a new stamp; sent like any local change
      this.scheduleRefresh();
    }, this.refreshMs);
  }

  // --- reading ------------------------------------------------------------------------------

  /** Every live view, this one first, then by name and view id. */
  peers(): Peer[] {
    const out: Peer[] = [];
    const states = this.store.getAllStates() as Record<string, unknown>;
    for (const [view, raw] of Object.entries(states)) {
      const peer = toPeer(view as ViewId, raw, view === this.viewId);
      if (peer) out.push(peer);
    }
    return out.sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name) || a.view.localeCompare(b.view));
  }

  /** Called after any change (local, remote, expiry); returns the unsubscribe function. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private emit(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        console.error(`${LOG_PREFIX} presence listener failed`, err);
      }
    }
  }

  /** Withdraw this view's entry (sent at once if possible), stop timers, free the store. */
  stop(): void {
    if (this.stopped) return;
    if (this.welcomed) {
      this.store.delete(this.viewId);
      this.sendNow(this.store.encode(this.viewId));
    }
    this.stopped = true;
    if (this.windowTimer !== null) this.timers.clearTimeout(this.windowTimer);
    if (this.refreshTimer !== null) this.timers.clearTimeout(this.refreshTimer);
    this.windowTimer = this.refreshTimer = null;
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    this.listeners.clear();
    this.store.destroy();
  }
}

const COLOR = /^#[0-9a-fA-F]{6}$/;

/** A stored value as a {@link Peer}, or `null` when it is not shaped like a presence state. */
function toPeer(view: ViewId, raw: unknown, self: boolean): Peer | null {
  if (typeof raw !== "object" || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const name = typeof r["name"] === "string" && r["name"].trim() ? r["name"].trim().slice(0, 64) : "Guest";
  const color = typeof r["color"] === "string" && COLOR.test(r["color"]) ? r["color"] : colorFor(name);
  const peer: Peer = { view, name, color, self };
  if (typeof r["branch"] === "string") peer.branch = r["branch"];
  if (typeof r["cell"] === "string") peer.cell = r["cell"] as CellId;
  if (r["anchor"] instanceof Uint8Array) peer.anchor = r["anchor"];
  if (r["head"] instanceof Uint8Array) peer.head = r["head"];
  return peer;
}

/**
 * A peer's selection resolved in `doc` (UTF-16 offsets), or `null` when it has none or its
 * cursors point into text this replica has not received yet.
 */
export function resolveSelection(doc: LoroDoc, peer: Peer): { anchor: number; head: number } | null {
  const pos = (bytes: Uint8Array | undefined) => {
    if (!bytes) return undefined;
    try {
      return doc.getCursorPos(Cursor.decode(bytes))?.offset;
    } catch {
      return undefined;
    }
  };
  const head = pos(peer.head) ?? pos(peer.anchor);
  if (head === undefined) return null;
  return { anchor: pos(peer.anchor) ?? head, head };
}
