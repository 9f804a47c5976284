/**
 * The browser-side outbox of one view: what its replica holds beyond the kernel's saved version,
 * kept in `localStorage`, so that edits outlive a kernel that dies before saving them — and the
 * page reload or widget re-render that restarting the kernel brings.
 *
 * One entry per view (Loro peer), key `sqlrooms_nb.outbox/<room>/<branch>/<peer>` (room and
 * branch ids never contain "/"), value the JSON of {@link OutboxEntry}: one Loro update blob
 * exported from the kernel's saved version vector. The blob holds every op beyond that version,
 * this view's own and the others' it received, so it imports without a gap into any replica that
 * holds the saved version — which a restarted kernel, recovering from the lake, does. Each write
 * replaces the entry (never appends), so an entry is as small as what is unsaved; it is removed
 * once a `saved` version covers it.
 *
 * Life of an outbox:
 * - {@link Outbox.restore}, before the sync client's hello: imports every entry of this
 *   room/branch left by earlier views (a reloaded page, a re-rendered widget, a tab that is
 *   gone). The hello then carries their ops in its version vector, so the handshake sends the
 *   kernel whatever it lacks. Import is idempotent: ops the kernel already has change nothing.
 * - After each change of the replica (a local edit, or an import of others' edits), in a
 *   microtask: the entry is rewritten. Nothing is written before the kernel reports a non-empty
 *   saved version (the welcome brings it): the export would be the whole document, and could
 *   then add its cells to a room of the same name in another lake served on the same origin.
 *   Built on saved ops, an entry imported there stays pending (Loro waits for ops it will never
 *   get) and changes nothing.
 * - {@link Outbox.saved} on every saved version (welcome, `saved`): rewrites or removes this
 *   view's entry, and removes restored entries the saved version now covers.
 *
 * Storage may be blocked (sandboxed frame, privacy settings: `storage` is null) or full (quota,
 * ~5 MB per origin): the outbox then keeps nothing, says so once through `onProblem`, and sync
 * goes on as before. Entries whose ops never reach a saved version (their lake was wiped) stay
 * until storage is cleared: the outbox never deletes what it cannot prove saved.
 */
import { type LoroDoc, VersionVector } from "loro-crdt";
import { LOG_PREFIX } from "./protocol";

/** localStorage key prefix of every outbox entry. */
export const OUTBOX_PREFIX = "sqlrooms_nb.outbox/";
const FORMAT = 1;

/** What one outbox entry holds (stored as JSON). */
export interface OutboxEntry {
  /** Format version (1). */
  v: number;
  /** When the entry was written, ms since the epoch. */
  at: number;
  /** The writer's oplog version vector when it wrote: peer id -> counter end (exclusive). */
  vv: Record<string, number>;
  /** Standard base64 of a Loro update blob (every op beyond the saved version then known). */
  blob: string;
}

/** The part of the Web Storage API the outbox uses. */
export type OutboxStorage = Pick<Storage, "getItem" | "setItem" | "removeItem" | "key" | "length">;

export interface OutboxOptions {
  /** Where entries live (`localStorage`); `null` when storage is blocked: the outbox is inert. */
  storage: OutboxStorage | null;
  room: string;
  branch: string;
  /** The view's replica (its peer id names this view's entry). */
  doc: LoroDoc;
  /** Called once per run of failures (storage full or refusing), with a message for people. */
  onProblem?: (message: string) => void;
  /** Where `storage` events arrive (another tab removing this view's entry); default `globalThis`. */
  events?: Pick<EventTarget, "addEventListener" | "removeEventListener"> | null;
}

/** Counters for tests and diagnostics; times in ms. */
export interface OutboxStats {
  /** Entries written by this view, and their total / largest cost (export + encode + setItem). */
  writes: number;
  writeMs: number;
  maxWriteMs: number;
  /** Characters of the last entry written. */
  lastChars: number;
  /** Entries removed (this view's own when saved, and restored ones the saved version covers). */
  removed: number;
  /** Earlier views' entries imported by {@link Outbox.restore}. */
  restored: number;
  /** Writes that storage refused. */
  failures: number;
}

/** The key prefix of a room/branch's entries. */
export function outboxPrefix(room: string, branch: string): string {
  return `${OUTBOX_PREFIX}${room}/${branch}/`;
}

/** Standard base64 of `bytes` (chunked: `String.fromCharCode` takes a bounded argument list). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes of standard base64 `text`; throws on bad input. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Decode a stored entry; `null` when it is not one this code wrote. */
export function parseEntry(raw: string | null): OutboxEntry | null {
  if (raw === null) return null;
  try {
    const value = JSON.parse(raw) as Partial<OutboxEntry> | null;
    if (value === null || value.v !== FORMAT || typeof value.blob !== "string") return null;
    if (typeof value.vv !== "object" || value.vv === null) return null;
    for (const counter of Object.values(value.vv)) if (typeof counter !== "number") return null;
    return { v: FORMAT, at: Number(value.at) || 0, vv: value.vv, blob: value.blob };
  } catch {
    return null;
  }
}

/** Whether `saved` holds every op counted in `vv`. */
export function covers(saved: VersionVector, vv: Record<string, number>): boolean {
  for (const [peer, counter] of Object.entries(vv)) {
    if (counter > (saved.get(peer as `${number}`) ?? 0)) return false;
  }
  return true;
}

/** `globalThis` where it takes event listeners (a window), else `null` (node). */
function defaultEvents(): OutboxOptions["events"] {
  const g = globalThis as Partial<EventTarget>;
  return typeof g.addEventListener === "function" ? (globalThis as unknown as EventTarget) : null;
}

function clock(): number {
  return globalThis.performance?.now() ?? Date.now();
}

export class Outbox {
  readonly key: string;
  readonly stats: OutboxStats = { writes: 0, writeMs: 0, maxWriteMs: 0, lastChars: 0, removed: 0, restored: 0, failures: 0 };

  private readonly storage: OutboxStorage | null;
  private readonly prefix: string;
  private readonly doc: LoroDoc;
  private readonly onProblem: (message: string) => void;
  private readonly events: OutboxOptions["events"];
  private readonly unsubscribes: (() => void)[] = [];
  /** The kernel's saved version vector; `null` until the first welcome. */
  private savedVersion: VersionVector | null = null;
  /** Keys of earlier views' entries imported by restore(), kept until saved covers them. */
  private readonly restoredKeys = new Map<string, Record<string, number>>();
  private scheduled = false;
  private stored = false; // this view's entry exists (as far as this view knows)
  private failing = false;
  private stopped = false;

  constructor(options: OutboxOptions) {
    this.storage = options.storage;
    this.doc = options.doc;
    this.prefix = outboxPrefix(options.room, options.branch);
    this.key = this.prefix + this.doc.peerIdStr;
    this.onProblem = options.onProblem ?? (() => undefined);
    this.events = options.events !== undefined ? options.events : defaultEvents();
    if (this.storage === null) return;
    this.unsubscribes.push(this.doc.subscribeLocalUpdates(() => this.schedule()));
    const sub = this.doc.subscribe((batch) => {
      if (batch.by === "import") this.schedule();
    });
    this.unsubscribes.push(() => sub());
    if (this.events) {
      this.events.addEventListener("storage", this.onStorage);
      this.unsubscribes.push(() => this.events?.removeEventListener("storage", this.onStorage));
    }
  }

  /**
   * Import every entry of this room/branch but this view's own into the replica; returns how many
   * were imported. Call once, before the sync client's `start()`. Entries that cannot be read or
   * imported are left in storage (with a console warning), never deleted.
   */
  restore(): number {
    const storage = this.storage;
    if (storage === null || this.stopped) return 0;
    let keys: string[];
    try {
      keys = [];
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i);
        if (key !== null && key.startsWith(this.prefix) && key !== this.key) keys.push(key);
      }
    } catch (err) {
      console.warn(`${LOG_PREFIX} could not list the outbox`, err);
      return 0;
    }
    for (const key of keys) {
      let entry: OutboxEntry | null = null;
      try {
        entry = parseEntry(storage.getItem(key));
        if (entry === null) throw new Error("not an outbox entry");
        this.doc.import(fromBase64(entry.blob));
      } catch (err) {
        console.warn(`${LOG_PREFIX} left an unreadable outbox entry in place (${key})`, err);
        continue;
      }
      this.restoredKeys.set(key, entry.vv);
      this.stats.restored++;
    }
    return this.stats.restored;
  }

  /**
   * The kernel reports `version` saved (its welcome, or a `saved` message): rewrite this view's
   * entry with what is still unsaved (or remove it), and remove restored entries now covered.
   */
  saved(version: VersionVector): void {
    if (this.storage === null || this.stopped) return;
    this.savedVersion = version;
    this.write();
    for (const [key, vv] of this.restoredKeys) {
      if (!covers(version, vv)) continue;
      this.restoredKeys.delete(key);
      // Re-read: another tab of this browser may have written a newer entry under this key.
      const now = parseEntry(this.safeGet(key));
      if (now !== null && !covers(version, now.vv)) continue;
      if (this.safeRemove(key)) this.stats.removed++;
    }
  }

  /** Write a scheduled change now (teardown: a view re-rendered in this task must find it). */
  flush(): void {
    if (this.scheduled) this.write();
  }

  /** Write what is pending and stop listening. The entry stays until a saved version covers it. */
  stop(): void {
    if (this.stopped) return;
    this.flush();
    this.stopped = true;
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    // A microtask: after Loro's commit returns (exporting inside its callback is not allowed),
    // yet before anything else can run — a reload or re-render right after typing finds it.
    queueMicrotask(() => {
      if (this.scheduled) this.write();
    });
  }

  /** Rewrite this view's entry from the saved version (or remove it when nothing is unsaved). */
  private write(): void {
    this.scheduled = false;
    const storage = this.storage;
    const saved = this.savedVersion;
    // Nothing saved yet (a new room's first moments): such an entry would carry the document's
    // first ops, and would add them to any room of the same name in another lake. Every entry
    // written builds on saved ops instead, so elsewhere it stays pending and changes nothing.
    if (storage === null || saved === null || saved.length() === 0 || this.stopped) return;
    const start = clock();
    const vv = this.doc.oplogVersion();
    let unsaved = false;
    for (const [peer, counter] of vv.toJSON()) if (counter > (saved.get(peer) ?? 0)) unsaved = true;
    if (!unsaved) {
      if (this.stored && this.safeRemove(this.key)) this.stats.removed++;
      this.stored = false;
      return;
    }
    let value: string;
    try {
      const blob = this.doc.export({ mode: "update", from: saved });
      const entry: OutboxEntry = { v: FORMAT, at: Date.now(), vv: Object.fromEntries(vv.toJSON()), blob: toBase64(blob) };
      value = JSON.stringify(entry);
      storage.setItem(this.key, value);
    } catch (err) {
      this.stats.failures++;
      if (!this.failing) {
        this.failing = true;
        console.warn(`${LOG_PREFIX} could not keep unsaved edits in browser storage`, err);
        this.onProblem(
          "This browser refused to keep a copy of your unsaved edits (storage full or blocked): " +
            "if the kernel stops before it saves them, they may be lost.",
        );
      }
      return;
    }
    this.failing = false;
    this.stored = true;
    const ms = clock() - start;
    this.stats.writes++;
    this.stats.writeMs += ms;
    this.stats.maxWriteMs = Math.max(this.stats.maxWriteMs, ms);
    this.stats.lastChars = value.length;
  }

  /** Another tab changed storage: if it removed this view's entry while edits are unsaved, rewrite. */
  private readonly onStorage = (event: Event): void => {
    const { key, newValue } = event as StorageEvent;
    if (this.stopped || newValue !== null || (key !== null && key !== this.key)) return;
    this.stored = false;
    this.write();
  };

  private safeGet(key: string): string | null {
    try {
      return this.storage?.getItem(key) ?? null;
    } catch {
      return null;
    }
  }

  private safeRemove(key: string): boolean {
    try {
      this.storage?.removeItem(key);
      return true;
    } catch {
      return false;
    }
  }
}
