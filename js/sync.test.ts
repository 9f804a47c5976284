import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc, VersionVector, type LoroText } from "loro-crdt";
import { addCell, findCell, readCells } from "./notebook";
import { SyncClient, type SyncStatus } from "./sync";
import { FakeClock } from "./testing/fake_clock";
import { FakeKernel, type Connection, type FakeKernelOptions } from "./testing/fake_kernel";

interface View {
  client: SyncClient;
  conn: Connection;
  /** Kinds of the messages this view sent, in order. */
  sent: { kind: string; buffers: number; at: number }[];
  statuses: SyncStatus[];
}

function setup(n: number, kernelOptions: FakeKernelOptions = {}) {
  const clock = new FakeClock();
  const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: 30, ...kernelOptions });
  const views: View[] = [];
  const addView = (start = true): View => {
    const sent: View["sent"] = [];
    const statuses: SyncStatus[] = [];
    let client: SyncClient | undefined;
    const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
    client = new SyncClient({
      send: (content, buffers) => {
        sent.push({ kind: String(content["kind"]), buffers: buffers.length, at: clock.now() });
        conn.send(content, buffers);
      },
      author: `user${views.length}`,
      timers: clock,
    });
    client.on("status", (s) => void statuses.push(s));
    if (start) client.start();
    const view = { client, conn, sent, statuses };
    views.push(view);
    return view;
  };
  for (let i = 0; i < n; i++) addView();
  return { clock, kernel, views, addView };
}

function text(client: SyncClient, cellId: string): LoroText {
  const t = findCell(client.doc, cellId)?.text;
  assert.ok(t, `cell ${cellId} has a source text`);
  return t;
}

const updatesSent = (v: View) => v.sent.filter((m) => m.kind === "update");

describe("sync client", () => {
  it("names its branch in every document message and ignores other branches' updates", async () => {
    const clock = new FakeClock();
    const sent: Record<string, unknown>[] = [];
    const client = new SyncClient({ send: (content) => void sent.push(content), branch: "what-if", timers: clock });
    client.start();
    const other = new LoroDoc();
    other.getText("t").insert(0, "main's change");
    other.commit();
    const update = (branch: string) => ({ kind: "update", origin: null, branch });
    const welcome = { kind: "welcome", to: client.viewId, room: "r", branch: "what-if", protocol: 2 };
    const empty = new VersionVector(null).encode();
    client.handle(welcome, [new Uint8Array(), empty, empty]);
    client.handle(update("main"), [other.export({ mode: "update" })]);
    assert.equal(client.doc.getText("t").toString(), "", "another branch's update is not imported");
    client.handle(update("what-if"), [other.export({ mode: "update" })]);
    assert.equal(client.doc.getText("t").toString(), "main's change");
    client.run("c1");
    client.history();
    assert.deepEqual(
      sent.map((m) => [m["kind"], m["branch"]]),
      [
        ["hello", "what-if"],
        ["run", "what-if"],
        ["history", "what-if"],
      ],
    );
    client.stop();
  });

  it("joins with hello and receives the kernel's document in the welcome", async () => {
    const { clock, kernel, addView } = setup(0);
    let cid = "";
    kernel.edit((doc) => void (cid = addCell(doc, { source: "select 42" })));
    await clock.advance(100);
    const v = addView();
    assert.deepEqual(
      v.sent.map((m) => m.kind),
      ["hello"],
    );
    assert.equal(v.client.getStatus(), "saving");
    await clock.advance(20);
    assert.equal(v.client.isWelcomed(), true);
    assert.deepEqual(readCells(v.client.doc), [{ id: cid, kind: "sql", name: "q1", source: "select 42" }]);
    assert.equal(v.client.getStatus(), "saved");
    assert.equal(updatesSent(v).length, 0, "nothing to send back");
  });

  it("converges when three views edit the same cell concurrently", async () => {
    const { clock, kernel, views } = setup(3);
    await clock.advance(20);
    const [a, b, c] = views.map((v) => v.client) as [SyncClient, SyncClient, SyncClient];
    const cid = addCell(a.doc, { source: "select 1 as x" });
    await clock.advance(50);
    // Concurrent: all three edit before any of their updates arrive elsewhere.
    text(a, cid).insert(0, "-- A\n");
    a.doc.commit();
    text(b, cid).insert(text(b, cid).length, " -- B");
    b.doc.commit();
    text(c, cid).insert(7, "2, ");
    c.doc.commit();
    addCell(b.doc, { source: "select 2" });
    addCell(c.doc, { source: "select 3" });
    await clock.advance(200);
    const expected = readCells(kernel.doc);
    assert.equal(expected.length, 3);
    for (const client of [a, b, c]) assert.deepEqual(readCells(client.doc), expected);
    const source = expected[0]?.source ?? "";
    for (const part of ["-- A\n", " -- B", "2, "]) assert.ok(source.includes(part), `${part} kept in ${source}`);
    assert.equal(new Set(expected.map((x) => x.id)).size, 3);
    for (const client of [a, b, c]) assert.equal(client.getStatus(), "saved");
  });

  it("holds back edits made before the welcome and sends them once after the handshake", async () => {
    const { clock, kernel, views } = setup(1, { delayMs: 40 });
    const v = views[0]!;
    const cid = addCell(v.client.doc, { source: "select 1" });
    text(v.client, cid).insert(8, " as one");
    v.client.doc.commit();
    await clock.advance(10);
    assert.deepEqual(
      v.sent.map((m) => m.kind),
      ["hello"],
      "nothing but hello before the welcome",
    );
    await clock.advance(200);
    assert.deepEqual(
      v.sent.map((m) => m.kind),
      ["hello", "update"],
    );
    assert.deepEqual(readCells(kernel.doc), readCells(v.client.doc));
    assert.equal(readCells(kernel.doc)[0]?.source, "select 1 as one");
    assert.equal(kernel.stats.duplicateBlobs, 0);
  });

  it("sends the first local update at once and coalesces a burst within 20 ms", async () => {
    const { clock, views } = setup(1);
    await clock.advance(20);
    const v = views[0]!;
    const cid = addCell(v.client.doc);
    assert.equal(updatesSent(v).length, 1, "first update goes out synchronously");
    const t = text(v.client, cid);
    for (const ch of "select") {
      t.insert(t.length, ch);
      v.client.doc.commit();
      await clock.advance(2);
    }
    assert.equal(updatesSent(v).length, 1, "burst held inside the window");
    await clock.advance(20);
    const ups = updatesSent(v);
    assert.equal(ups.length, 2, "burst sent as one message when the window closed");
    assert.equal(ups[1]?.buffers, 6);
    assert.ok((ups[1]?.at ?? 0) - (ups[0]?.at ?? 0) <= 20, "no trailing debounce");
    await clock.advance(100);
    t.insert(0, "-- ");
    v.client.doc.commit();
    assert.equal(updatesSent(v).length, 3, "after a quiet window the next update is immediate again");
  });

  it("sends held-back updates before a run, so the kernel runs the text just typed", async () => {
    const { clock, kernel, views } = setup(1);
    await clock.advance(20);
    const v = views[0]!;
    const cid = addCell(v.client.doc); // first update: sent at once, opens the window
    const t = text(v.client, cid);
    t.insert(0, "select 1");
    v.client.doc.commit(); // held in the window
    v.client.run(cid);
    assert.deepEqual(
      v.sent.map((m) => m.kind),
      ["hello", "update", "update", "run"],
    );
    await clock.advance(10);
    const run = kernel.received.findIndex((m) => m.kind === "run");
    assert.equal(findCell(kernel.doc, cid)?.text?.toString(), "select 1");
    assert.ok(run > 0 && kernel.received.slice(0, run).filter((m) => m.kind === "update").length === 2);
  });

  it("gives a view that says hello again no duplicates", async () => {
    const { clock, kernel, views, addView } = setup(2);
    await clock.advance(20);
    const [a, b] = views as [View, View];
    const cid = addCell(a.client.doc, { source: "select 1" });
    await clock.advance(100);
    const relayed = kernel.stats.relayed;
    const updatesBefore = updatesSent(a).length;
    const importsBefore = b.client.stats.imports;
    a.client.resync();
    await clock.advance(100);
    assert.equal(a.client.isWelcomed(), true);
    assert.equal(updatesSent(a).length, updatesBefore, "nothing re-sent: the kernel already had it");
    assert.equal(kernel.stats.relayed, relayed, "nothing re-broadcast");
    assert.equal(b.client.stats.imports, importsBefore, "other views import nothing new");
    assert.equal(text(a.client, cid).toString(), "select 1");
    // A reloaded page is a new view with a fresh doc: it gets the state exactly once.
    const reloaded = addView();
    await clock.advance(100);
    assert.equal(text(reloaded.client, cid).toString(), "select 1");
    assert.deepEqual(readCells(reloaded.client.doc), readCells(kernel.doc));
    assert.equal(updatesSent(reloaded).length, 0);
    assert.equal(kernel.stats.duplicateBlobs, 0);
  });

  it("resyncs with a new hello when an update arrives with a gap", async () => {
    const { clock, kernel, views } = setup(2);
    await clock.advance(20);
    const [a, b] = views as [View, View];
    const cid = addCell(a.client.doc, { source: "x" });
    await clock.advance(50);
    b.conn.dropIncoming(1); // b misses the next relay
    text(a.client, cid).insert(1, "y");
    a.client.doc.commit();
    await clock.advance(50);
    assert.equal(text(b.client, cid).toString(), "x", "b missed the relay");
    const hellos = b.sent.filter((m) => m.kind === "hello").length;
    text(a.client, cid).insert(2, "z");
    a.client.doc.commit();
    await clock.advance(100);
    assert.equal(b.sent.filter((m) => m.kind === "hello").length, hellos + 1, "pending import -> hello");
    assert.equal(text(b.client, cid).toString(), "xyz");
    assert.deepEqual(readCells(b.client.doc), readCells(kernel.doc));
  });

  it("skips its own relayed updates and records the author on its changes", async () => {
    const { clock, kernel, views } = setup(1);
    await clock.advance(20);
    const v = views[0]!;
    const imports = v.client.stats.imports;
    addCell(v.client.doc, { source: "select 1" });
    await clock.advance(100);
    assert.equal(v.client.stats.imports, imports, "own update not imported back");
    const messages = [...kernel.doc.getAllChanges().values()].flat().map((c) => c.message);
    assert.ok(messages.includes("user0"), `author in ${JSON.stringify(messages)}`);
    const timestamps = [...kernel.doc.getAllChanges().values()].flat().map((c) => c.timestamp);
    assert.ok(timestamps.every((t) => t > 1_600_000_000), "timestamps recorded");
  });

  it("reports saving until the kernel's saved version covers the oplog, then saved", async () => {
    const { clock, views } = setup(1, { saveDelayMs: 300 });
    await clock.advance(20);
    const v = views[0]!;
    assert.equal(v.client.getStatus(), "saved");
    addCell(v.client.doc);
    assert.equal(v.client.getStatus(), "saving");
    await clock.advance(200);
    assert.equal(v.client.getStatus(), "saving");
    await clock.advance(200);
    assert.equal(v.client.getStatus(), "saved");
    assert.deepEqual(v.statuses, ["saved", "saving", "saved"]);
  });

  it("goes offline when no welcome comes within 3 s and retries hello with backoff", async () => {
    const { clock, views } = setup(1);
    const v = views[0]!;
    v.conn.close(); // a kernel that never answers
    await clock.advance(2900);
    assert.equal(v.client.getStatus(), "saving");
    await clock.advance(200);
    assert.equal(v.client.getStatus(), "offline");
    await clock.advance(30_000);
    const hellos = v.sent.filter((m) => m.kind === "hello").map((m) => m.at);
    assert.ok(hellos.length >= 6 && hellos.length <= 9, `hellos at ${hellos.join(",")}`);
    const gaps = hellos.slice(1).map((t, i) => t - (hellos[i] ?? 0));
    assert.ok(gaps.every((g) => g >= 3000 && g <= 5500), `retry gaps ${gaps.join(",")}`);
    assert.ok(gaps.slice(2).every((g) => g >= 5000), "backs off to every 5 s");
  });

  it("goes offline when local edits stay unsaved for 10 s, and back to saved when saved", async () => {
    const { clock, kernel, views } = setup(1, { saveDelayMs: null });
    await clock.advance(20);
    const v = views[0]!;
    addCell(v.client.doc);
    await clock.advance(9000);
    assert.equal(v.client.getStatus(), "saving");
    await clock.advance(1600);
    assert.equal(v.client.getStatus(), "offline");
    assert.ok(v.sent.some((m) => m.kind === "ping"), "pinged the kernel");
    kernel.save(); // the kernel's persister catches up
    await clock.advance(100);
    assert.equal(v.client.getStatus(), "saved");
  });

  it("stops sending after stop()", async () => {
    const { clock, views } = setup(1);
    await clock.advance(20);
    const v = views[0]!;
    v.client.stop();
    const count = v.sent.length;
    addCell(v.client.doc);
    await clock.advance(20_000);
    assert.equal(v.sent.length, count);
    assert.equal(clock.pendingTimers, 0, "no timers left behind");
  });
});
