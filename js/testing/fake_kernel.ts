/**
 * An in-memory kernel that speaks the protocol of protocol.py, for node tests and the browser
 * harness: it holds the authoritative LoroDoc, answers `hello` with `welcome` (the updates the
 * view lacks, its oplog version vector, its saved version vector), imports every `update` and
 * relays it to all views with `origin`, reports `saved` after a delay, and answers `run` / `ping`.
 * Presence (`awareness`) is kept in an EphemeralStore and relayed; a welcome is followed by
 * everyone's presence, as presence.py does. Call {@link FakeKernel.destroy} when done.
 * Every message in either direction is delivered after `delayMs` on the given timers.
 */
import { EphemeralStore, LoroDoc, VersionVector } from "loro-crdt";
import {
  PROTOCOL_VERSION,
  decodeClient,
  encodeServer,
  type CellId,
  type Column,
  type RawBuffer,
  type ServerMessage,
} from "../protocol";
import { findCell } from "../notebook";
import { decodeVersion, realTimers, type Timers } from "../sync";

/** View -> kernel: what `SyncClient` is given as `send`. */
export type Deliver = (content: Record<string, unknown>, buffers: Uint8Array[]) => void;
/** Kernel -> view: buffers arrive as `DataView`s, as anywidget delivers them. */
export type DeliverToView = (content: Record<string, unknown>, buffers: DataView[]) => void;

/** What a run produces: a result page, or a SQL error (0-based line/column). */
export type RunOutcome =
  | { rows: number; columns: Column[]; shown: number; arrow: Uint8Array }
  | { code: string; message: string; line?: number; column?: number };

export interface FakeKernelOptions {
  timers?: Timers;
  /** One-way delay of every message, ms (default 0: next timer turn). */
  delayMs?: number;
  /** Delay before a `saved` covering an import is sent, ms; `null` never saves (default 50). */
  saveDelayMs?: number | null;
  room?: string;
  branch?: string;
  /** Runs a SQL cell; default: an error saying there is no SQL engine. */
  runner?: (source: string, cell: CellId) => RunOutcome;
}

/** One view's link to the kernel. */
export interface Connection {
  /** The view's `send(content, buffers)`. */
  send: Deliver;
  /** Drop the next `n` messages the kernel sends to this view (to simulate a gap). */
  dropIncoming(n: number): void;
  /** Stop delivering in both directions. */
  close(): void;
}

export class FakeKernel {
  readonly doc = new LoroDoc();
  readonly presence = new EphemeralStore(30_000);
  savedVersion = new VersionVector(null);
  /** Every client message the kernel handled, in order (decoded). */
  readonly received: ReturnType<typeof decodeClient>[] = [];
  /** Number of blobs the kernel imported, and of those that were already known. */
  readonly stats = { imported: 0, duplicateBlobs: 0, relayed: 0 };

  private readonly timers: Timers;
  private readonly delayMs: number;
  private readonly saveDelayMs: number | null;
  private readonly room: string;
  private readonly branch: string;
  private readonly runner: NonNullable<FakeKernelOptions["runner"]>;
  private readonly views = new Set<{ deliver: DeliverToView; drop: number; open: boolean }>();
  private saveTimer: unknown = null;

  constructor(options: FakeKernelOptions = {}) {
    this.timers = options.timers ?? realTimers;
    this.delayMs = options.delayMs ?? 0;
    this.saveDelayMs = options.saveDelayMs === undefined ? 50 : options.saveDelayMs;
    this.room = options.room ?? "test-room";
    this.branch = options.branch ?? "main";
    this.runner = options.runner ?? (() => ({ code: "query", message: "no SQL engine in the fake kernel" }));
    this.doc.setRecordTimestamp(true);
  }

  /** Attach a view: `deliver` receives kernel messages; returns the view's side of the link. */
  connect(deliver: DeliverToView): Connection {
    const view = { deliver, drop: 0, open: true };
    this.views.add(view);
    return {
      send: (content, buffers) => {
        const copy = buffers.map((b) => b.slice());
        this.timers.setTimeout(() => view.open && this.receive(content, copy), this.delayMs);
      },
      dropIncoming: (n) => void (view.drop += n),
      close: () => {
        view.open = false;
        this.views.delete(view);
      },
    };
  }

  /** Make a change on the kernel's doc (like Python code editing `room.doc`) and broadcast it. */
  edit(change: (doc: LoroDoc) => void): void {
    const before = this.doc.oplogVersion();
    change(this.doc);
    this.doc.commit();
    const update = this.doc.export({ mode: "update", from: before });
    this.broadcast({ kind: "update", origin: null, updates: [update], branch: this.branch });
    this.scheduleSave();
  }

  private receive(content: Record<string, unknown>, buffers: RawBuffer[]): void {
    const message = decodeClient(content, buffers);
    this.received.push(message);
    switch (message.kind) {
      case "hello":
        this.broadcast({
          kind: "welcome",
          to: message.view,
          room: this.room,
          branch: this.branch,
          protocol: PROTOCOL_VERSION,
          missing: this.doc.export({ mode: "update", from: decodeVersion(message.version) }),
          version: this.doc.oplogVersion().encode(),
          saved: this.savedVersion.encode(),
        });
        if (this.presence.keys().length > 0) {
          this.broadcast({ kind: "awareness", origin: null, update: this.presence.encodeAll() });
        }
        break;
      case "update": {
        const imported: Uint8Array[] = [];
        for (const blob of message.updates) {
          const before = this.doc.oplogVersion();
          const status = this.doc.import(blob);
          this.stats.imported++;
          if (status.success.size === 0 && !status.pending) this.stats.duplicateBlobs++;
          if (before.compare(this.doc.oplogVersion()) !== 0 || status.pending) imported.push(blob);
        }
        if (imported.length > 0) {
          this.stats.relayed += imported.length;
          this.broadcast({ kind: "update", origin: message.view, updates: imported, branch: this.branch });
          this.scheduleSave();
        }
        break;
      }
      case "run": {
        this.broadcast({ kind: "run_started", id: message.id, cell: message.cell, view: message.view, branch: this.branch });
        const source = findCell(this.doc, message.cell)?.text?.toString() ?? "";
        const started = this.timers.now();
        const outcome = this.runner(source, message.cell);
        const name = findCell(this.doc, message.cell)?.name ?? "";
        if ("rows" in outcome) {
          this.broadcast({
            kind: "result",
            id: message.id,
            cell: message.cell,
            name,
            elapsed_ms: this.timers.now() - started,
            branch: this.branch,
            ...outcome,
          });
        } else {
          this.broadcast({ kind: "error", id: message.id, cell: message.cell, branch: this.branch, ...outcome });
        }
        break;
      }
      case "ping":
        this.broadcast({ kind: "pong", to: message.view, id: message.id });
        break;
      case "awareness":
        // The real kernel also checks that a view only touches its own entry (presence.py).
        this.presence.apply(message.update);
        this.broadcast({ kind: "awareness", origin: message.view, update: message.update });
        break;
    }
  }

  /** Stop the presence store's expiry timer. */
  destroy(): void {
    this.presence.destroy();
  }

  /** Mark everything durable now and tell every view (`saved`). */
  save(): void {
    this.savedVersion = this.doc.oplogVersion();
    this.broadcast({ kind: "saved", version: this.savedVersion.encode(), branch: this.branch });
  }

  private scheduleSave(): void {
    if (this.saveDelayMs === null || this.saveTimer !== null) return;
    this.saveTimer = this.timers.setTimeout(() => {
      this.saveTimer = null;
      this.save();
    }, this.saveDelayMs);
  }

  /** Like anywidget, every view receives every message; `to` tells the others to ignore it. */
  private broadcast(message: ServerMessage): void {
    const wire = encodeServer(message);
    for (const view of this.views) {
      if (view.drop > 0) {
        view.drop--;
        continue;
      }
      // anywidget hands buffers to the browser as DataViews.
      const buffers = wire.buffers.map((b) => new DataView(b.slice().buffer));
      this.timers.setTimeout(() => view.open && view.deliver(wire.content, buffers), this.delayMs);
    }
  }
}
