import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc, VersionVector } from "loro-crdt";
import { SyncClient } from "./sync";
import { FakeClock } from "./testing/fake_clock";

/** A client whose sent messages are recorded, welcomed by an empty kernel. */
function welcomed(options: { readOnly?: boolean } = {}) {
  const clock = new FakeClock();
  const sent: { content: Record<string, unknown>; buffers: Uint8Array[] }[] = [];
  const client = new SyncClient({ send: (content, buffers) => void sent.push({ content, buffers }), timers: clock, branch: "main", ...options });
  client.start();
  const empty = new VersionVector(null).encode();
  client.handle({ kind: "welcome", to: client.viewId, room: "r", branch: "main", protocol: 2 }, [new Uint8Array(), empty, empty]);
  const kinds = () => sent.map((m) => m.content["kind"]);
  return { clock, client, sent, kinds };
}

function type(client: SyncClient, text: string): void {
  const t = client.doc.getText("t");
  t.insert(t.length, text);
  client.doc.commit();
}

describe("sync client: errors the kernel asks it to act on", () => {
  it("re-handshakes at once on a resync error, and the handshake re-sends the refused ops", async () => {
    const { clock, client, sent, kinds } = welcomed();
    type(client, "a"); // refused by the kernel (it says resync)
    await clock.advance(50);
    client.handle({ kind: "error", to: client.viewId, code: "resync", message: "gap", branch: "main" }, []);
    assert.deepEqual(kinds(), ["hello", "update", "hello"]);
    const kernel = new LoroDoc(); // never imported the refused update
    const empty = new VersionVector(null).encode();
    client.handle({ kind: "welcome", to: client.viewId, room: "r", branch: "main", protocol: 2 }, [new Uint8Array(), empty, empty]);
    const last = sent.at(-1);
    assert.equal(last?.content["kind"], "update");
    for (const blob of last?.buffers ?? []) kernel.import(blob);
    assert.equal(kernel.getText("t").toString(), "a");
    client.stop();
  });

  it("stops sending after rate_limited and resyncs after the back-off, losing nothing", async () => {
    const { clock, client, sent, kinds } = welcomed();
    client.handle({ kind: "error", to: client.viewId, code: "rate_limited", message: "slow down" }, []);
    type(client, "x");
    await clock.advance(100);
    type(client, "y");
    await clock.advance(100);
    assert.deepEqual(kinds(), ["hello"], "nothing sent while limited");
    await clock.advance(1500);
    assert.deepEqual(kinds(), ["hello", "hello"], "one resync hello after the back-off");
    const empty = new VersionVector(null).encode();
    client.handle({ kind: "welcome", to: client.viewId, room: "r", branch: "main", protocol: 2 }, [new Uint8Array(), empty, empty]);
    const kernel = new LoroDoc();
    for (const blob of sent.at(-1)?.buffers ?? []) kernel.import(blob);
    assert.equal(kernel.getText("t").toString(), "xy");
    client.stop();
  });

  it("ignores errors addressed to another view", async () => {
    const { client, kinds } = welcomed();
    client.handle({ kind: "error", to: "someone-else", code: "resync", message: "gap" }, []);
    assert.deepEqual(kinds(), ["hello"]);
    client.stop();
  });

  it("a read-only client never sends document updates", async () => {
    const { clock, client, kinds } = welcomed({ readOnly: true });
    type(client, "typed anyway");
    await clock.advance(100);
    const empty = new VersionVector(null).encode();
    client.handle({ kind: "welcome", to: client.viewId, room: "r", branch: "main", protocol: 2 }, [new Uint8Array(), empty, empty]);
    assert.deepEqual(kinds(), ["hello"]);
    client.stop();
  });
});
