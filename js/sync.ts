/**
 * The sync client of one browser view: owns the view's Loro replica and speaks the protocol of
 * `protocol.ts` through an injected `send`. Pure of DOM and of anywidget, so node tests drive it
 * against an in-memory kernel.
 *
 * Handshake: `start()` sends `hello` with the oplog version vector. On `welcome` (addressed to
 * this view) it imports buffer 0, then sends as one `update` whatever it has beyond the kernel's
 * version vector (buffer 1) — this also carries every local edit made before the welcome, which
 * was queued meanwhile — and records the saved version vector (buffer 2). An import that leaves
 * `pending` ops (a gap) triggers a new `hello`; import is idempotent, so resyncing is always safe.
 *
 * Branches: a client shows one branch of the room. Every document message it sends names that
 * branch, and it drops the kernel's messages about other branches (updates, saved versions, cell
 * runs), so a replica never imports another branch's changes. Switching branch means a new
 * client with a new, empty replica.
 *
 * Local updates are throttled, not debounced: the first goes at once, and those arriving within
 * the next {@link SyncOptions.throttleMs} are coalesced into one `update` sent when the window
 * closes.
 *
 * Status: `saved` when the kernel's saved version vector covers this replica's whole oplog;
 * `saving` while something is not saved yet (or before the first welcome); `offline` when no
 * welcome came {@link SyncOptions.welcomeTimeoutMs} after hello (hello is retried with backoff up
 * to every {@link SyncOptions.retryMaxMs}), when a `ping` went unanswered, or when ops stayed unsaved for
 * {@link SyncOptions.unsavedTimeoutMs} (then a `ping` checks the kernel and `hello` resyncs), and
 * while the kernel reports the lake unreachable (a `saved` with `lake: "unreachable"`) and this
 * replica has unsaved ops: {@link SyncClient.getLakeOutage} then says how many changes the kernel
 * keeps on its disk, and `status` is emitted again whenever those counts change.
 */
import { LoroDoc, VersionVector, type LoroEventBatch } from "loro-crdt";
import {
  LOG_PREFIX,
  assertNever,
  type BranchCreated,
  type BranchesMessage,
  type ExportFormat,
  type ExportReply,
  type PageReply,
  type SortKey,
  type ChartData,
  decodeServer,
  encodeClient,
  isForView,
  randomId,
  type CellId,
  type ClientMessage,
  type ErrorMessage,
  type HistoryReply,
  type MergePreviewReply,
  type Merged,
  type PreviewReply,
  type RawBuffer,
  type RequestId,
  type Restored,
  type Result,
  type RunStarted,
  type RunProgress,
  type Cancelled,
  type Queued,
  type Stale,
  type Catalog,
  type InputOptions,
  type ServerAwareness,
  type ServerMessage,
  type VersionId,
  type ViewId,
  type Welcome,
} from "./protocol";

export type SyncStatus = "saved" | "saving" | "offline";

/** The kernel cannot write the lake: Loro changes it keeps in its spill file / only in memory. */
export interface LakeOutage {
  kept: number;
  unkept: number;
}

/** Timer functions, injectable so tests run on a fake clock. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface SyncOptions {
  /** Sends one client message (JSON content plus binary buffers) to the kernel. */
  send: (content: Record<string, unknown>, buffers: Uint8Array[]) => void;
  /** Display name stored as the commit message of every local change ("" = none). */
  author?: string;
  /** The branch this client shows and edits (default: the kernel's checked-out branch, as its
   * welcome names it; give it explicitly whenever it is known). */
  branch?: string;
  /** Defaults to a random 12-character id. */
  viewId?: string;
  /** Defaults to a fresh doc (random peer id) with timestamps recorded. */
  doc?: LoroDoc;
  timers?: Timers;
  /** Coalescing window for local updates, ms (default 20). */
  throttleMs?: number;
  /** No welcome after this long means offline, ms (default 3000). */
  welcomeTimeoutMs?: number;
  /** Longest wait between hello retries, ms (default 5000). */
  retryMaxMs?: number;
  /** Ops unsaved for this long mean offline, ms (default 10000). */
  unsavedTimeoutMs?: number;
  /** A ping unanswered for this long means the kernel is not answering, ms (default 5000). */
  pingTimeoutMs?: number;
  /** After a `rate_limited` error, wait this long before the resync hello, ms (default 1500: the
   * kernel lets a limited view in again once its budget has refilled halfway, after 1.25 s). */
  rateLimitBackoffMs?: number;
  /**
   * A read-only view: it never sends document updates (the kernel, which decides who may edit,
   * would refuse them with `read_only`). Default false.
   */
  readOnly?: boolean;
}

export interface SyncEvents {
  status: SyncStatus;
  /** The kernel's saved version vector (from each welcome and each `saved`); outbox.ts uses it. */
  saved: VersionVector;
  /** The replica changed (local edit, import, undo); fired synchronously by Loro. */
  change: LoroEventBatch;
  welcome: Welcome;
  run_started: RunStarted;
  result: Result;
  error: ErrorMessage;
  /** Run status of this branch's cells: progress, cancelled, waiting, and the stale set. */
  run_progress: RunProgress;
  cancelled: Cancelled;
  queued: Queued;
  stale: Stale;
  /** The kernel connection's tables and views, for SQL autocompletion (any branch's). */
  catalog: Catalog;
  /** The options of a select input cell (after each welcome, and when they change). */
  input_options: InputOptions;
  /** Presence from other views (or everyone's, after a welcome); see presence.ts. */
  awareness: ServerAwareness;
  /** Replies to this view's `history` / `preview` / `restore` requests. */
  history: HistoryReply;
  preview: PreviewReply;
  restored: Restored;
  /** The room's branches (after each welcome, and whenever they change). */
  branches: BranchesMessage;
  /** Replies to this view's `branch` / `merge` requests. */
  branch_created: BranchCreated;
  merge_preview: MergePreviewReply;
  merged: Merged;
  /** Replies to this view's result `page` / `export` requests. */
  page: PageReply;
  export: ExportReply;
  /** Replies to this view's `chart_data` requests. */
  chart_data: ChartData;
}

type Listener<T> = (value: T) => void;

/** Ops in `have` that `base` lacks, per peer (`true` if `have` is not covered by `base`). */
export function hasOpsBeyond(have: VersionVector, base: VersionVector): boolean {
  for (const [peer, counter] of have.toJSON()) {
    if (counter > (base.get(peer) ?? 0)) return true;
  }
  return false;
}

/** Decode an encoded version vector; empty bytes mean the empty version vector. */
export function decodeVersion(bytes: Uint8Array): VersionVector {
  return bytes.byteLength === 0 ? new VersionVector(null) : VersionVector.decode(bytes);
}

/** Consecutive local commits within this many seconds merge into one Loro change. */
export const CHANGE_MERGE_INTERVAL_S = 10;
const TICK_MS = 500;

export class SyncClient {
  readonly doc: LoroDoc;
  readonly viewId: ViewId;
  readonly author: string;
  /** The branch shown; `null` until the first welcome when none was given. */
  private branchName: string | null;

  private readonly sendRaw: SyncOptions["send"];
  private readonly timers: Timers;
  private readonly throttleMs: number;
  private readonly welcomeTimeoutMs: number;
  private readonly retryMaxMs: number;
  private readonly unsavedTimeoutMs: number;
  private readonly pingTimeoutMs: number;
  private readonly rateLimitBackoffMs: number;
  readonly readOnly: boolean;

  private readonly listeners = new Map<keyof SyncEvents, Set<Listener<never>>>();
  private readonly unsubscribes: (() => void)[] = [];

  private started = false;
  private stopped = false;
  /** A welcome answered our latest hello and no gap was seen since. */
  private welcomed = false;
  /** When the outstanding hello was first sent (ms), `null` once welcomed. */
  private helloSince: number | null = null;
  private helloAttempts = 0;
  private nextHelloAt = 0;
  /** Local updates coalesced in the current throttle window. */
  private pending: Uint8Array[] = [];
  private windowTimer: unknown = null;
  private tickTimer: unknown = null;
  private savedVersion = new VersionVector(null);
  /** Since when (ms) the oplog has had ops the kernel has not reported saved; `null` if none. */
  private unsavedSince: number | null = null;
  private lastResyncAt = -Infinity;
  private pingOut: { id: RequestId; at: number } | null = null;
  private kernelAnswering = true;
  private status: SyncStatus = "saving";
  /** The kernel's latest report that the lake is unreachable; `null` once it saves again. */
  private lakeOutage: LakeOutage | null = null;
  private shownOutage = "";

  /** Counters for tests and diagnostics. */
  readonly stats = { hellos: 0, updatesSent: 0, updateBuffersSent: 0, imports: 0, resyncs: 0 };

  constructor(options: SyncOptions) {
    this.sendRaw = options.send;
    this.author = options.author ?? "";
    this.branchName = options.branch ?? null;
    this.viewId = (options.viewId ?? randomId()) as ViewId;
    this.timers = options.timers ?? realTimers;
    this.throttleMs = options.throttleMs ?? 20;
    this.welcomeTimeoutMs = options.welcomeTimeoutMs ?? 3000;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
    this.unsavedTimeoutMs = options.unsavedTimeoutMs ?? 10000;
    this.pingTimeoutMs = options.pingTimeoutMs ?? 5000;
    this.rateLimitBackoffMs = options.rateLimitBackoffMs ?? 1500;
    this.readOnly = options.readOnly ?? false;
    this.doc = options.doc ?? new LoroDoc();
    this.doc.setRecordTimestamp(true);
    // Finer changes than Loro's 1000 s default: history groups edit sessions by 1-minute pauses
    // (CHANGE_MERGE_INTERVAL_S in notebook.py).
    this.doc.setChangeMergeInterval(CHANGE_MERGE_INTERVAL_S);
    const author = this.author;
    if (author) {
      this.unsubscribes.push(this.doc.subscribePreCommit((e) => void e.modifier.setMessage(author)));
    }
    this.unsubscribes.push(this.doc.subscribeLocalUpdates((bytes) => this.onLocalUpdate(bytes)));
    const sub = this.doc.subscribe((batch) => {
      this.emit("change", batch);
      this.refreshStatus();
    });
    this.unsubscribes.push(() => sub());
  }

  // --- events -------------------------------------------------------------------------------

  /** Subscribe to an event; returns the unsubscribe function. */
  on<K extends keyof SyncEvents>(event: K, listener: Listener<SyncEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => void set.delete(listener as Listener<never>);
  }

  private emit<K extends keyof SyncEvents>(event: K, value: SyncEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        (listener as Listener<SyncEvents[K]>)(value);
      } catch (err) {
        console.error(`${LOG_PREFIX} ${event} listener failed`, err);
      }
    }
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /** Send the first hello and start the status clock. Idempotent. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.sendHello();
    this.scheduleTick();
  }

  /** Stop timers and subscriptions; nothing is sent afterwards. The doc stays usable. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.windowTimer !== null) this.timers.clearTimeout(this.windowTimer);
    if (this.tickTimer !== null) this.timers.clearTimeout(this.tickTimer);
    this.windowTimer = this.tickTimer = null;
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    this.listeners.clear();
  }

  getStatus(): SyncStatus {
    return this.status;
  }

  /** What the kernel keeps while it cannot write the lake; `null` when the lake is fine (or the
   * kernel itself is not answering: then that is the news). */
  getLakeOutage(): LakeOutage | null {
    return this.kernelAnswering ? this.lakeOutage : null;
  }

  /** The branch this client shows (`null` before the first welcome if none was given). */
  get branch(): string | null {
    return this.branchName;
  }

  /** `{ branch }` for document messages, once the branch is known. */
  private branchField(): { branch?: string } {
    return this.branchName === null ? {} : { branch: this.branchName };
  }

  /** Whether the latest hello has been answered. */
  isWelcomed(): boolean {
    return this.welcomed;
  }

  /** The kernel's saved version vector as last reported. */
  getSavedVersion(): VersionVector {
    return this.savedVersion;
  }

  // --- requests -----------------------------------------------------------------------------

  /**
   * Ask the kernel to run SQL cell `cell`; returns the request id its replies echo.
   * Updates still held in the throttle window go first, so the kernel runs the text just typed.
   */
  run(cell: string): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    this.send({ kind: "run", view: this.viewId, id, cell: cell as CellId, ...this.branchField() });
    return id;
  }

  /** Ask the kernel to cancel cell `cell`'s run (it ends as a `cancelled` event). */
  cancel(cell: string): RequestId {
    const id = randomId() as RequestId;
    this.send({ kind: "cancel", view: this.viewId, id, cell: cell as CellId, ...this.branchField() });
    return id;
  }

  /** Ask the kernel to run every SQL cell of this branch, in dependency order. */
  runAll(): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    this.send({ kind: "run_all", view: this.viewId, id, ...this.branchField() });
    return id;
  }

  /** Send a liveness ping; the status logic watches for the pong. */
  ping(): RequestId {
    const id = randomId() as RequestId;
    this.pingOut = { id, at: this.timers.now() };
    this.send({ kind: "ping", view: this.viewId, id });
    return id;
  }

  /** Ask for one page of edit sessions (newest first); the reply comes as a `history` event. */
  history(offset = 0, limit = 50): RequestId {
    const id = randomId() as RequestId;
    this.send({ kind: "history", view: this.viewId, id, offset, limit, ...this.branchField() });
    return id;
  }

  /** Ask for the notebook at `version` and its diff to now; the reply is a `preview` event. */
  preview(version: VersionId): RequestId {
    const id = randomId() as RequestId;
    this.send({ kind: "preview", view: this.viewId, id, version, ...this.branchField() });
    return id;
  }

  /**
   * Ask the kernel to make `version` current as a new change (it reaches every view as an
   * update); pending local updates go first. `author` (default: this client's) is who restores,
   * for the history. The reply is a `restored` event.
   */
  restore(version: VersionId, author: string = this.author): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    const message: ClientMessage = { kind: "restore", view: this.viewId, id, version, ...this.branchField() };
    if (author) message.author = author.slice(0, 64);
    this.send(message);
    return id;
  }

  /**
   * Ask the kernel to create branch `name` from this client's branch, at version `at` (default:
   * the current one); pending local updates go first. The reply is a `branch_created` event (or
   * an `error` echoing the id), then everyone gets `branches`.
   */
  createBranch(name: string, at?: VersionId, author: string = this.author): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    const message: ClientMessage = { kind: "branch", view: this.viewId, id, name };
    if (this.branchName !== null) message.source = this.branchName;
    if (at !== undefined) message.at = at;
    if (author) message.author = author.slice(0, 64);
    this.send(message);
    return id;
  }

  /**
   * Ask the kernel to merge branch `source` into `into`: with `preview`, only what it would change
   * (a `merge_preview` event); otherwise it merges (a `merged` event). Pending updates go first.
   */
  merge(source: string, into: string, preview: boolean): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    this.send({ kind: "merge", view: this.viewId, id, source, into, preview });
    return id;
  }

  /**
   * Ask for the data of chart cell `cell` (the kernel reads its spec from its replica, so pending
   * updates go first). The reply is a `chart_data` event, or an `error` echoing the id.
   */
  chartData(cell: string): RequestId {
    this.flush();
    const id = randomId() as RequestId;
    this.send({ kind: "chart_data", view: this.viewId, id, cell: cell as CellId, ...this.branchField() });
    return id;
  }

  /**
   * Ask for rows `offset` .. `offset + limit - 1` (0-based) of cell `cell`'s last result, sorted
   * in the kernel by `sort`; the reply is a `page` event, or an `error` echoing the id.
   */
  page(cell: string, offset: number, limit: number, sort: SortKey[] = []): RequestId {
    const id = randomId() as RequestId;
    const message: ClientMessage = { kind: "page", view: this.viewId, id, cell: cell as CellId, offset, limit, ...this.branchField() };
    if (sort.length > 0) message.sort = sort;
    this.send(message);
    return id;
  }

  /** Ask for cell `cell`'s whole last result as a file; the reply is an `export` event (or `error`). */
  exportResult(cell: string, format: ExportFormat, sort: SortKey[] = []): RequestId {
    const id = randomId() as RequestId;
    const message: ClientMessage = { kind: "export", view: this.viewId, id, cell: cell as CellId, format, ...this.branchField() };
    if (sort.length > 0) message.sort = sort;
    this.send(message);
    return id;
  }

  /** Send this view's presence (one encoded EphemeralStore update) to the kernel. */
  sendAwareness(update: Uint8Array): void {
    this.send({ kind: "awareness", view: this.viewId, update });
  }

  /** Send a new hello now (e.g. after a gap); the next welcome completes the resync. */
  resync(): void {
    this.stats.resyncs++;
    this.welcomed = false;
    this.helloSince = null;
    this.helloAttempts = 0;
    this.sendHello();
  }

  private send(message: ClientMessage): void {
    if (this.stopped) return;
    const wire = encodeClient(message);
    try {
      this.sendRaw(wire.content, wire.buffers);
    } catch (err) {
      console.error(`${LOG_PREFIX} send failed`, err);
    }
  }

  private sendHello(): void {
    const now = this.timers.now();
    if (this.helloSince === null) this.helloSince = now;
    this.helloAttempts++;
    // Retries after 3 s, 4 s, then every retryMaxMs (5 s).
    const delay = Math.min(this.retryMaxMs, this.welcomeTimeoutMs + 1000 * (this.helloAttempts - 1));
    this.nextHelloAt = now + delay;
    this.stats.hellos++;
    this.doc.commit();
    this.send({ kind: "hello", view: this.viewId, version: this.doc.oplogVersion().encode(), ...this.branchField() });
  }

  // --- local updates ------------------------------------------------------------------------

  private onLocalUpdate(bytes: Uint8Array): void {
    if (this.stopped) return;
    // Before the welcome nothing is sent: the handshake export after it includes these ops.
    if (this.welcomed) {
      if (this.windowTimer === null) {
        this.sendUpdates([bytes]);
        this.openWindow();
      } else {
        this.pending.push(bytes);
      }
    }
    this.refreshStatus();
  }

  private openWindow(): void {
    this.windowTimer = this.timers.setTimeout(() => this.closeWindow(), this.throttleMs);
  }

  /** Send the updates held in the throttle window now (the window stays open). */
  flush(): void {
    if (this.stopped || !this.welcomed || this.pending.length === 0) return;
    this.sendUpdates(this.pending.splice(0));
  }

  private closeWindow(): void {
    this.windowTimer = null;
    if (this.stopped || this.pending.length === 0) return;
    const batch = this.pending.splice(0);
    // Not welcomed (a resync is under way): the handshake export will carry these ops.
    if (this.welcomed) {
      this.sendUpdates(batch);
      this.openWindow();
    }
  }

  private sendUpdates(updates: Uint8Array[]): void {
    if (updates.length === 0 || this.readOnly) return;
    this.stats.updatesSent++;
    this.stats.updateBuffersSent += updates.length;
    this.send({ kind: "update", view: this.viewId, updates, ...this.branchField() });
  }

  // --- incoming -----------------------------------------------------------------------------

  /** Handle one anywidget custom message from the kernel. Never throws. */
  handle(content: unknown, buffers?: readonly RawBuffer[]): void {
    if (this.stopped) return;
    let message: ServerMessage | null;
    try {
      message = decodeServer(content, buffers);
    } catch (err) {
      console.warn(`${LOG_PREFIX} dropped a malformed kernel message`, err);
      return;
    }
    if (message === null || !isForView(message, this.viewId) || !this.isForBranch(message)) return;
    this.kernelAnswering = true;
    try {
      this.dispatch(message);
    } catch (err) {
      console.error(`${LOG_PREFIX} failed to handle ${message.kind}`, err);
    }
  }

  /** Whether a message about a branch's document is about this client's branch. */
  private isForBranch(message: ServerMessage): boolean {
    switch (message.kind) {
      case "update":
      case "saved":
      case "run_started":
      case "result":
      case "error":
      case "run_progress":
      case "cancelled":
      case "queued":
      case "stale":
      case "input_options":
        return message.branch === undefined || message.branch === this.branchName;
      case "welcome":
        return this.branchName === null || message.branch === this.branchName;
      default:
        return true;
    }
  }

  private dispatch(message: ServerMessage): void {
    switch (message.kind) {
      case "welcome":
        this.onWelcome(message);
        break;
      case "update":
        if (message.origin !== this.viewId) this.importUpdates(message.updates);
        break;
      case "saved":
        this.lakeOutage = message.lake === "unreachable" ? { kept: message.kept ?? 0, unkept: message.unkept ?? 0 } : null;
        this.onSaved(decodeVersion(message.version));
        break;
      case "run_started":
        this.emit("run_started", message);
        break;
      case "result":
        this.emit("result", message);
        break;
      case "run_progress":
        this.emit("run_progress", message);
        break;
      case "cancelled":
        this.emit("cancelled", message);
        break;
      case "queued":
        this.emit("queued", message);
        break;
      case "stale":
        this.emit("stale", message);
        break;
      case "catalog":
        this.emit("catalog", message);
        break;
      case "input_options":
        this.emit("input_options", message);
        break;
      case "error":
        this.onError(message);
        this.emit("error", message);
        break;
      case "pong":
        if (this.pingOut?.id === message.id) this.pingOut = null;
        break;
      case "awareness":
        this.emit("awareness", message);
        break;
      case "history":
        this.emit("history", message);
        break;
      case "preview":
        this.emit("preview", message);
        break;
      case "restored":
        this.emit("restored", message);
        break;
      case "branches":
        this.emit("branches", message);
        break;
      case "branch_created":
        this.emit("branch_created", message);
        break;
      case "merge_preview":
        this.emit("merge_preview", message);
        break;
      case "merged":
        this.emit("merged", message);
        break;
      case "page":
        this.emit("page", message);
        break;
      case "export":
        this.emit("export", message);
        break;
      case "chart_data":
        this.emit("chart_data", message);
        break;
      default:
        assertNever(message);
    }
  }

  /**
   * Error codes the sync layer acts on (see protocol.py). `resync`: an update of ours built on
   * changes the kernel lacks and was not imported: a new handshake re-sends everything the kernel
   * lacks. `rate_limited`: we sent too much too fast and messages were refused: stop sending
   * updates (the ops stay in the replica) and resync after a pause.
   */
  private onError(message: ErrorMessage): void {
    if (message.code === "resync") {
      this.resync();
    } else if (message.code === "rate_limited") {
      this.stats.resyncs++;
      this.welcomed = false; // local updates wait for the handshake, which carries them
      this.helloSince = this.timers.now();
      this.helloAttempts = 1;
      this.nextHelloAt = this.timers.now() + this.rateLimitBackoffMs;
    }
  }

  private onWelcome(message: Welcome): void {
    this.branchName = message.branch; // from now on every message names it
    if (message.missing.byteLength > 0) this.importUpdates([message.missing], false);
    const kernel = decodeVersion(message.version);
    // Anything we have beyond the kernel (including what was queued before this welcome).
    this.doc.commit();
    const ours = this.doc.oplogVersion();
    this.pending = [];
    if (hasOpsBeyond(ours, kernel)) {
      this.sendUpdates([this.doc.export({ mode: "update", from: kernel })]);
    }
    this.welcomed = true;
    this.helloSince = null;
    this.helloAttempts = 0;
    this.onSaved(decodeVersion(message.saved));
    this.emit("welcome", message);
  }

  private importUpdates(updates: Uint8Array[], resyncOnGap = true): void {
    let gap = false;
    for (const update of updates) {
      if (update.byteLength === 0) continue;
      this.stats.imports++;
      try {
        const status = this.doc.import(update);
        if (status.pending && status.pending.size > 0) gap = true;
      } catch (err) {
        console.error(`${LOG_PREFIX} could not import an update`, err);
        gap = true;
      }
    }
    if (gap && resyncOnGap && this.welcomed) this.resync();
  }

  private onSaved(version: VersionVector): void {
    const before = this.savedVersion;
    this.savedVersion = version;
    if (hasOpsBeyond(version, before) && this.unsavedSince !== null) {
      // Progress: the kernel is alive and persisting; restart the unsaved clock.
      this.unsavedSince = this.timers.now();
    }
    this.emit("saved", version);
    this.refreshStatus();
  }

  // --- status -------------------------------------------------------------------------------

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = this.timers.setTimeout(() => {
      this.tickTimer = null;
      this.tick();
      this.scheduleTick();
    }, TICK_MS);
  }

  private tick(): void {
    const now = this.timers.now();
    if (!this.welcomed && now >= this.nextHelloAt) this.sendHello();
    if (this.pingOut && now - this.pingOut.at >= this.pingTimeoutMs) {
      this.pingOut = null;
      this.kernelAnswering = false;
    }
    if (this.welcomed && this.isStale(now) && now - this.lastResyncAt >= this.retryMaxMs) {
      // Unsaved for too long: check that the kernel answers, and resync in case a message was lost.
      this.lastResyncAt = now;
      if (this.pingOut === null) this.ping();
      this.resync();
    }
    this.refreshStatus();
  }

  /** Ops have stayed unsaved for longer than `unsavedTimeoutMs`. */
  private isStale(now: number): boolean {
    return this.unsavedSince !== null && now - this.unsavedSince >= this.unsavedTimeoutMs;
  }

  private refreshStatus(): void {
    if (this.stopped) return;
    const now = this.timers.now();
    const unsaved = hasOpsBeyond(this.doc.oplogVersion(), this.savedVersion);
    if (!unsaved) this.unsavedSince = null;
    else if (this.unsavedSince === null) this.unsavedSince = now;
    const noWelcome = !this.welcomed && this.helloSince !== null && now - this.helloSince >= this.welcomeTimeoutMs;
    let next: SyncStatus;
    const lakeDown = this.lakeOutage !== null && unsaved;
    if (!this.kernelAnswering || noWelcome || this.isStale(now) || lakeDown) next = "offline";
    else if (!this.welcomed || unsaved) next = "saving";
    else next = "saved";
    const outage = lakeDown ? `${this.lakeOutage?.kept}/${this.lakeOutage?.unkept}` : "";
    if (next !== this.status || outage !== this.shownOutage) {
      this.status = next;
      this.shownOutage = outage;
      this.emit("status", next);
    }
  }
}
