import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc, type LoroText } from "loro-crdt";
import { addCell, findCell, readCells } from "./notebook";
import { OUTBOX_PREFIX, Outbox, type OutboxStorage, covers, fromBase64, outboxPrefix, parseEntry, toBase64 } from "./outbox";
import { SyncClient } from "./sync";
import { FakeClock } from "./testing/fake_clock";
import { FakeKernel, type Connection } from "./testing/fake_kernel";

/** An in-memory Web Storage, optionally with a quota in characters (keys + values), like a browser's. */
class MemoryStorage implements OutboxStorage {
  readonly map = new Map<string, string>();
  refuse = false;

  constructor(private readonly quotaChars = Infinity) {}

  get length(): number {
    return this.map.size;
  }

  key(index: number): string | null {
    return [...this.map.keys()][index] ?? null;
  }

  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    let used = key.length + value.length;
    for (const [k, v] of this.map) if (k !== key) used += k.length + v.length;
    if (this.refuse || used > this.quotaChars) throw new Error("QuotaExceededError");
    this.map.set(key, value);
  }

  removeItem(key: string): void {
    this.map.delete(key);
  }

  /** Keys of outbox entries. */
  entries(): string[] {
    return [...this.map.keys()].filter((k) => k.startsWith(OUTBOX_PREFIX));
  }
}

const ROOM = "test-room";

/** A browser view as widget.ts wires it: sync client + outbox on one storage (one browser). */
interface View {
  client: SyncClient;
  outbox: Outbox;
  conn: Connection;
  problems: string[];
}

function openView(kernel: FakeKernel, clock: FakeClock, storage: OutboxStorage | null): View {
  let client: SyncClient | undefined;
  const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
  client = new SyncClient({ send: (content, buffers) => conn.send(content, buffers), branch: "main", timers: clock });
  const problems: string[] = [];
  const outbox = new Outbox({ storage, room: ROOM, branch: "main", doc: client.doc, onProblem: (m) => void problems.push(m), events: null });
  client.on("saved", (v) => outbox.saved(v));
  outbox.restore();
  client.start();
  return { client, outbox, conn, problems };
}

/** The kernel dies: nothing reaches it or comes from it any more (its doc is what it held in memory). */
function kill(...views: View[]): void {
  for (const v of views) v.conn.close();
}

/** A kernel restarted on the lake: it holds exactly what `lake` (a snapshot at the last save) holds. */
function restart(lake: Uint8Array, clock: FakeClock): FakeKernel {
  const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: 30 });
  kernel.doc.import(lake);
  kernel.savedVersion = kernel.doc.oplogVersion();
  return kernel;
}

function text(doc: LoroDoc, cellId: string): LoroText {
  const t = findCell(doc, cellId)?.text;
  assert.ok(t, `cell ${cellId} has a source text`);
  return t;
}

function type(view: View, cellId: string, chars: string): void {
  const t = text(view.client.doc, cellId);
  for (const ch of chars) {
    t.insert(t.length, ch);
    view.client.doc.commit();
  }
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

/** A kernel whose saves are manual, with one cell, and a snapshot of the lake at its last save. */
async function started(clock: FakeClock) {
  const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: null });
  let cid = "";
  kernel.edit((doc) => void (cid = addCell(doc, { source: "--" })));
  kernel.save();
  return { kernel, cid, lake: () => kernel.doc.export({ mode: "snapshot" }) };
}

describe("outbox", () => {
  it("keeps an edit the kernel never saved, and the next view sends it to the restarted kernel exactly once", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid, lake } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    type(a, cid, " saved");
    await clock.advance(100);
    kernel.save();
    const atSave = lake();
    await clock.advance(20);
    type(a, cid, " lost-by-kernel");
    await clock.advance(100);
    assert.ok(text(kernel.doc, cid).toString().includes("lost-by-kernel"), "the kernel had it in memory");
    kill(a);
    type(a, cid, " typed-while-down");
    await Promise.resolve(); // the outbox writes in a microtask
    a.outbox.stop(); // the page reloads (the restart): the old view is gone

    const kernel2 = restart(atSave, clock);
    assert.equal(text(kernel2.doc, cid).toString(), "-- saved", "the lake lacks the unsaved edits");
    const a2 = openView(kernel2, clock, storage);
    assert.equal(a2.outbox.stats.restored, 1);
    await clock.advance(200);
    const source = text(kernel2.doc, cid).toString();
    assert.equal(source, "-- saved lost-by-kernel typed-while-down");
    assert.deepEqual(readCells(a2.client.doc), readCells(kernel2.doc));
    assert.equal(a2.client.getStatus(), "saved");
    assert.deepEqual(storage.entries(), [], "every entry is gone once the restarted kernel saved it");
    kernel.destroy();
    kernel2.destroy();
  });

  it("backs up the other views' unsaved edits too, so one page coming back is enough", async () => {
    const clock = new FakeClock();
    const storageA = new MemoryStorage(); // two people: two browsers, two storages
    const storageB = new MemoryStorage();
    const { kernel, cid, lake } = await started(clock);
    const a = openView(kernel, clock, storageA);
    const b = openView(kernel, clock, storageB);
    await clock.advance(20);
    const atSave = lake();
    type(b, cid, " from-B");
    await clock.advance(30); // relayed to A, never saved
    assert.ok(text(a.client.doc, cid).toString().includes("from-B"));
    kill(a, b);
    a.outbox.stop();
    b.outbox.stop(); // B's browser is gone for good

    const kernel2 = restart(atSave, clock);
    openView(kernel2, clock, storageA);
    await clock.advance(200);
    assert.equal(text(kernel2.doc, cid).toString(), "-- from-B");
    kernel.destroy();
    kernel2.destroy();
  });

  it("writes the entry in the same task as the keystroke, before any timer runs", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    type(a, cid, "x");
    await Promise.resolve();
    const entry = parseEntry(storage.getItem(a.outbox.key));
    assert.ok(entry, "entry written without advancing the clock");
    const probe = new LoroDoc();
    probe.import(kernel.doc.export({ mode: "snapshot" }));
    probe.import(fromBase64(entry.blob));
    assert.equal(text(probe, cid).toString(), "--x");
    kernel.destroy();
  });

  it("replaces its entry rather than growing it, and removes it when the kernel saved everything", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    const sizes: number[] = [];
    for (let round = 0; round < 20; round++) {
      type(a, cid, " select 1;");
      await clock.advance(100);
      sizes.push(storage.getItem(a.outbox.key)?.length ?? 0);
      kernel.save();
      await clock.advance(20);
      assert.equal(storage.getItem(a.outbox.key), null, `round ${round}: entry removed once saved`);
    }
    assert.equal(storage.entries().length, 0);
    assert.ok(Math.max(...sizes) < 2 * Math.min(...sizes), `entry size stays flat: ${sizes.join(", ")}`);
    assert.equal(text(kernel.doc, cid).toString(), "--" + " select 1;".repeat(20));
    kernel.destroy();
  });

  it("removes a gone view's entry only once the saved version covers it", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const old = openView(kernel, clock, storage);
    await clock.advance(20);
    kill(old);
    type(old, cid, " old");
    old.outbox.stop();
    const oldKey = old.outbox.key;
    assert.ok(storage.getItem(oldKey));
    // The same kernel (say the comm came back) and a new view that restores the old entry; saves are manual.
    const fresh = openView(kernel, clock, storage);
    await clock.advance(30);
    assert.equal(text(kernel.doc, cid).toString(), "-- old", "the restored edit reached the kernel");
    assert.ok(storage.getItem(oldKey), "kept while the kernel has not saved it");
    assert.ok(storage.getItem(fresh.outbox.key), "the new view backs the restored edit up too");
    kernel.save();
    await clock.advance(20);
    assert.equal(storage.getItem(oldKey), null);
    assert.equal(storage.getItem(fresh.outbox.key), null);
    assert.equal(fresh.outbox.stats.removed, 2);
    kernel.destroy();
  });

  it("imports an entry whose edits the kernel already has without adding anything", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    type(a, cid, " once");
    await clock.advance(100); // reached the kernel, not saved: the entry stays
    kill(a);
    a.outbox.stop();
    const before = kernel.doc.oplogVersion();
    for (let i = 0; i < 3; i++) openView(kernel, clock, storage); // three reloads, each restoring it
    await clock.advance(200);
    assert.equal(text(kernel.doc, cid).toString(), "-- once");
    assert.equal(kernel.doc.oplogVersion().compare(before), 0, "no new op: import is idempotent");
    kernel.destroy();
  });

  it("keeps syncing when storage is full, says so once, and writes again when there is room", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    storage.refuse = true;
    type(a, cid, " abc");
    await clock.advance(100);
    type(a, cid, " def");
    await clock.advance(100);
    assert.equal(a.problems.length, 1, "one message for a run of failures");
    assert.ok(a.outbox.stats.failures >= 2);
    assert.equal(text(kernel.doc, cid).toString(), "-- abc def", "sync is unaffected");
    storage.refuse = false;
    type(a, cid, "!");
    await Promise.resolve();
    assert.ok(parseEntry(storage.getItem(a.outbox.key)), "written again once storage takes it");
    kernel.destroy();
  });

  it("refuses an entry over the quota without throwing into the editor", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage(600);
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    kill(a);
    assert.doesNotThrow(() => type(a, cid, "x".repeat(2000)));
    await Promise.resolve();
    assert.equal(a.problems.length, 1);
    assert.equal(text(a.client.doc, cid).toString().length, 2002, "the edit stays in the page");
    kernel.destroy();
  });

  it("is inert when storage is blocked", async () => {
    const clock = new FakeClock();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, null);
    await clock.advance(20);
    type(a, cid, " fine");
    await clock.advance(100);
    assert.equal(a.outbox.restore(), 0);
    assert.equal(a.outbox.stats.writes, 0);
    assert.equal(text(kernel.doc, cid).toString(), "-- fine");
    kernel.destroy();
  });

  it("leaves unreadable entries and other rooms' and branches' entries alone", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid, lake } = await started(clock);
    const other = new LoroDoc();
    other.import(lake());
    text(other, cid).insert(2, " other-branch");
    const blob = toBase64(other.export({ mode: "update", from: kernel.doc.oplogVersion() }));
    const entry = JSON.stringify({ v: 1, at: 0, vv: Object.fromEntries(other.oplogVersion().toJSON()), blob });
    storage.setItem(`${outboxPrefix(ROOM, "what-if")}123`, entry);
    storage.setItem(`${outboxPrefix("other-room", "main")}123`, entry);
    storage.setItem(`${outboxPrefix(ROOM, "main")}999`, "{not json");
    storage.setItem(`${outboxPrefix(ROOM, "main")}998`, JSON.stringify({ v: 1, at: 0, vv: {}, blob: "!!!" }));
    const warn = console.warn;
    console.warn = () => undefined;
    try {
      const a = openView(kernel, clock, storage);
      assert.equal(a.outbox.stats.restored, 0);
      await clock.advance(50);
      kernel.save();
      await clock.advance(50);
    } finally {
      console.warn = warn;
    }
    assert.equal(text(kernel.doc, cid).toString(), "--");
    assert.equal(storage.entries().length, 4, "nothing it could not prove saved was deleted");
    kernel.destroy();
  });

  it("rewrites its entry when another tab removed it while edits are unsaved", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const events = new EventTarget();
    let client: SyncClient | undefined;
    const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
    client = new SyncClient({ send: (content, buffers) => conn.send(content, buffers), branch: "main", timers: clock });
    const outbox = new Outbox({ storage, room: ROOM, branch: "main", doc: client.doc, events });
    client.on("saved", (v) => outbox.saved(v));
    client.start();
    await clock.advance(20);
    conn.close();
    text(client.doc, cid).insert(2, " mine");
    client.doc.commit();
    await Promise.resolve();
    const written = storage.getItem(outbox.key);
    assert.ok(written);
    storage.removeItem(outbox.key);
    const event = new Event("storage") as Event & { key: string; newValue: null };
    Object.assign(event, { key: outbox.key, newValue: null });
    events.dispatchEvent(event);
    assert.equal(storage.getItem(outbox.key)?.length, written.length);
    outbox.stop();
    kernel.destroy();
  });

  it("writes nothing while the kernel has saved nothing yet", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: null });
    let cid = "";
    kernel.edit((doc) => void (cid = addCell(doc, { source: "--" })));
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    type(a, cid, " early");
    await clock.advance(50);
    assert.deepEqual(storage.entries(), [], "no entry carrying the document's first ops");
    kernel.save();
    await clock.advance(20);
    kill(a);
    type(a, cid, " later");
    await Promise.resolve();
    assert.equal(storage.entries().length, 1, "written once something is saved");
    kernel.destroy();
  });

  it("changes nothing in a room of the same name in another lake", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage(); // one browser origin, two lakes over time
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    kill(a);
    type(a, cid, " for-lake-1");
    a.outbox.stop();
    const elsewhere = await started(clock); // same room and branch names, its own history
    const before = readCells(elsewhere.kernel.doc);
    const b = openView(elsewhere.kernel, clock, storage);
    assert.equal(b.outbox.stats.restored, 1, "imported, but it builds on ops this lake lacks");
    await clock.advance(200);
    assert.deepEqual(readCells(elsewhere.kernel.doc), before);
    assert.deepEqual(readCells(b.client.doc), before);
    assert.equal(b.client.getStatus(), "saved");
    assert.equal(storage.entries().length, 1, "left for its own lake");
    kernel.destroy();
    elsewhere.kernel.destroy();
  });

  it("checks coverage per peer", () => {
    const doc = new LoroDoc();
    doc.setPeerId(7);
    doc.getText("t").insert(0, "abc");
    doc.commit();
    const vv = Object.fromEntries(doc.oplogVersion().toJSON());
    assert.equal(covers(doc.oplogVersion(), vv), true);
    const less = new LoroDoc();
    assert.equal(covers(less.oplogVersion(), vv), false);
    assert.equal(covers(less.oplogVersion(), {}), true);
  });

  it("costs little per keystroke while the kernel is gone (figures printed)", async () => {
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    const { kernel, cid } = await started(clock);
    const a = openView(kernel, clock, storage);
    await clock.advance(20);
    kill(a);
    const keystrokes = 2000;
    const t = text(a.client.doc, cid);
    for (let i = 0; i < keystrokes; i++) {
      t.insert(t.length, String.fromCharCode(97 + (i % 26)));
      a.client.doc.commit();
      await Promise.resolve(); // one microtask per keystroke, as typing gives
    }
    const { writes, writeMs, maxWriteMs, lastChars } = a.outbox.stats;
    assert.equal(writes, keystrokes, "one write per keystroke");
    console.log(
      `outbox (node, in-memory storage): ${(writeMs / writes).toFixed(3)} ms per keystroke on average, ` +
        `${maxWriteMs.toFixed(2)} ms max, last entry ${lastChars} chars after ${keystrokes} unsaved keystrokes`,
    );
    assert.ok(lastChars < 40 * keystrokes, `entry stays proportional to what is unsaved (${lastChars} chars)`);
    kernel.destroy();
  });
});
