import assert from "node:assert/strict";
import { afterEach, describe, it, mock } from "node:test";
import { LoroDoc } from "loro-crdt";
import { addCell, findCell } from "./notebook";
import { PALETTE, Presence, colorFor, initials, resolveSelection, type Peer } from "./presence";
import type { CellId, ViewId } from "./protocol";
import { SyncClient } from "./sync";
import { FakeClock } from "./testing/fake_clock";
import { FakeKernel } from "./testing/fake_kernel";

/** Loro stamps presence in whole ms and ignores an update not newer than what it holds. */
const nextMs = () => new Promise((resolve) => setTimeout(resolve, 2));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every Presence a test made, stopped after it (a live store's expiry timer keeps node up). */
const made: Presence[] = [];
afterEach(() => {
  for (const p of made.splice(0)) p.stop();
});

/** Views whose presence travels through a relay that, like the kernel, tags the sender. */
function relay(names: string[], options: { timeoutMs?: number; refreshMs?: number; clock?: FakeClock } = {}) {
  const cut = new Set<string>();
  const sent: Record<string, number> = {};
  const views: Presence[] = [];
  for (const name of names) {
    const viewId = `view-${name}` as ViewId;
    sent[name] = 0;
    const presence = new Presence({
      viewId,
      name,
      timers: options.clock,
      timeoutMs: options.timeoutMs,
      refreshMs: options.refreshMs,
      send: (update) => {
        sent[name]!++;
        if (cut.has(name)) return;
        for (const other of views) other.apply({ kind: "awareness", origin: viewId, update: update.slice() });
      },
    });
    views.push(presence);
    made.push(presence);
  }
  return { views, sent, cut: (name: string) => void cut.add(name) };
}

const names = (p: Presence) => p.peers().map((x) => `${x.name}${x.self ? " (you)" : ""}`);

describe("presence", () => {
  it("shows every view, this one first, once welcomed", () => {
    const { views, sent } = relay(["Zoe", "Ana"]);
    const [zoe, ana] = views as [Presence, Presence];
    assert.deepEqual(names(zoe), ["Zoe (you)"], "nothing is sent before the welcome");
    assert.equal(sent["Zoe"], 0);
    zoe.onWelcome();
    ana.onWelcome();
    assert.deepEqual(names(zoe), ["Zoe (you)", "Ana"]);
    assert.deepEqual(names(ana), ["Ana (you)", "Zoe"]);
    const other = ana.peers()[1] as Peer;
    assert.equal(other.color, colorFor("Zoe"));
    for (const p of views) p.stop();
  });

  it("sends a view's selection as Loro cursors that survive concurrent edits", async () => {
    const docA = new LoroDoc();
    const cid = addCell(docA, { source: "select 1 as x" }) as CellId;
    docA.commit();
    const docB = new LoroDoc();
    docB.import(docA.export({ mode: "snapshot" }));
    const { views } = relay(["A", "B"]);
    const [a, b] = views as [Presence, Presence];
    a.onWelcome();
    b.onWelcome();
    await sleep(60); // past the throttle window opened by the welcome's send
    a.setSelection(cid, findCell(docA, cid)!.text!, 7, 13); // "1 as x"
    const seen = b.peers().find((p) => !p.self);
    assert.ok(seen && seen.cell === cid);
    assert.deepEqual(resolveSelection(docB, seen), { anchor: 7, head: 13 });
    findCell(docB, cid)!.text!.insert(0, "-- note\n"); // B edits before the caret
    docB.commit();
    assert.deepEqual(resolveSelection(docB, seen), { anchor: 15, head: 21 });
    assert.equal(resolveSelection(new LoroDoc(), seen), null, "unknown text: nothing to draw");
    for (const p of views) p.stop();
  });

  it("throttles local changes: the first at once, the rest coalesced to the latest", async () => {
    const clock = new FakeClock();
    const doc = new LoroDoc();
    const cid = addCell(doc, { source: "select 12345" }) as CellId;
    const text = findCell(doc, cid)!.text!;
    const { views, sent } = relay(["A", "B"], { clock });
    const [a, b] = views as [Presence, Presence];
    a.onWelcome();
    b.onWelcome();
    await clock.advance(100);
    await nextMs();
    const before = sent["A"]!;
    for (let i = 0; i < 6; i++) a.setSelection(cid, text, i, i);
    assert.equal(sent["A"]! - before, 1, "the first change goes at once");
    await nextMs(); // the coalesced send is re-stamped, so it must leave in a later ms
    await clock.advance(50);
    assert.equal(sent["A"]! - before, 2, "the rest leave together when the window closes");
    const peer = b.peers().find((p) => !p.self)!;
    assert.deepEqual(resolveSelection(doc, peer), { anchor: 5, head: 5 }, "the latest state won");
    for (const p of views) p.stop();
  });

  it("refreshes its own entry so others keep it, and drops views that went quiet", async () => {
    const { views, cut } = relay(["A", "B"], { timeoutMs: 200, refreshMs: 40 });
    const [a, b] = views as [Presence, Presence];
    let changes = 0;
    a.onChange(() => void changes++);
    a.onWelcome();
    b.onWelcome();
    await sleep(350);
    assert.deepEqual(names(a), ["A (you)", "B"], "refreshes keep both alive past the timeout");
    cut("B"); // B's page froze: nothing of it arrives any more
    const before = changes;
    await sleep(450);
    assert.deepEqual(names(a), ["A (you)"]);
    assert.ok(changes > before, "expiry is reported as a change");
    for (const p of views) p.stop();
  });

  it("withdraws its entry when stopped, and renaming changes name and colour", async () => {
    const { views } = relay(["A", "B"]);
    const [a, b] = views as [Presence, Presence];
    a.onWelcome();
    b.onWelcome();
    await sleep(60);
    a.setName("  Ana Lopez ");
    assert.deepEqual(names(b), ["B (you)", "Ana Lopez"]);
    assert.equal(b.peers()[1]?.color, colorFor("Ana Lopez"));
    await nextMs();
    a.stop();
    assert.deepEqual(names(b), ["B (you)"]);
    b.stop();
  });

  it("ignores its own relayed bytes and survives malformed ones", () => {
    const p = new Presence({ viewId: "me" as ViewId, name: "Me", send: () => undefined });
    made.push(p);
    const warn = mock.method(console, "warn", () => undefined);
    try {
      p.apply({ kind: "awareness", origin: null, update: new Uint8Array([9, 9, 9]) });
      assert.equal(warn.mock.callCount(), 1);
      assert.deepEqual(names(p), ["Me (you)"]);
    } finally {
      warn.mock.restore();
      p.stop();
    }
  });

  it("travels through the sync client and the kernel; a newcomer gets everyone at once", async () => {
    const clock = new FakeClock();
    const kernel = new FakeKernel({ timers: clock, delayMs: 5 });
    const views: { client: SyncClient; presence: Presence }[] = [];
    const make = (name: string) => {
      let client: SyncClient | undefined;
      const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
      client = new SyncClient({ send: conn.send, timers: clock });
      const c = client;
      const presence = new Presence({ viewId: c.viewId, name, timers: clock, send: (u) => c.sendAwareness(u) });
      c.on("awareness", (m) => presence.apply(m));
      c.on("welcome", () => presence.onWelcome());
      c.start();
      views.push({ client: c, presence });
      return presence;
    };
    try {
      const a = make("A");
      await clock.advance(30);
      await nextMs();
      const b = make("B");
      await clock.advance(30);
      assert.deepEqual(names(b), ["B (you)", "A"], "the welcome was followed by A's presence");
      assert.deepEqual(names(a), ["A (you)", "B"]);
    } finally {
      for (const v of views) {
        v.presence.stop();
        v.client.stop();
      }
      kernel.destroy();
    }
  });
});

describe("names and colours", () => {
  it("gives a name one stable palette colour", () => {
    assert.equal(colorFor("Ana"), colorFor("Ana"));
    assert.ok((PALETTE as readonly string[]).includes(colorFor("Guest 123")));
    const spread = new Set(Array.from({ length: 40 }, (_, i) => colorFor(`Guest ${100 + i}`)));
    assert.ok(spread.size >= 6, `40 names use ${spread.size} colours`);
  });

  it("makes initials from up to two words", () => {
    assert.equal(initials("Ana Lopez"), "AL");
    assert.equal(initials("guest 123"), "G1");
    assert.equal(initials("  "), "?");
    assert.equal(initials("émile"), "É");
  });
});
