import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addCell } from "./notebook";
import { decodeServer, encodeServer } from "./protocol";
import { SyncClient, type SyncStatus } from "./sync";
import { FakeClock } from "./testing/fake_clock";
import { FakeKernel } from "./testing/fake_kernel";
import { statusLabel } from "./ui/status";

/** One view on a kernel whose persister never saves on its own (`kernel.save()` does). */
async function setup() {
  const clock = new FakeClock();
  const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: null });
  let client: SyncClient | undefined;
  const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
  client = new SyncClient({ send: (content, buffers) => conn.send(content, buffers), timers: clock });
  const statuses: SyncStatus[] = [];
  client.on("status", (s) => void statuses.push(s));
  client.start();
  await clock.advance(20);
  /** What the kernel's replica broadcasts after a failed flush or a spill append. */
  const outage = (kept: number, unkept = 0) => {
    const wire = encodeServer({ kind: "saved", version: kernel.doc.oplogVersion().encode().slice(0, 0), branch: "main", lake: "unreachable", kept, unkept });
    client?.handle(wire.content, wire.buffers);
  };
  return { clock, kernel, client, statuses, outage };
}

describe("lake outage", () => {
  it("round-trips the outage fields of saved, and leaves a plain saved plain", () => {
    const plain = encodeServer({ kind: "saved", version: new Uint8Array([1]), branch: "main" });
    assert.deepEqual(plain.content, { kind: "saved", branch: "main" });
    const down = encodeServer({ kind: "saved", version: new Uint8Array([1]), branch: "main", lake: "unreachable", kept: 4, unkept: 1 });
    assert.deepEqual(down.content, { kind: "saved", branch: "main", lake: "unreachable", kept: 4, unkept: 1 });
    const decoded = decodeServer(down.content, down.buffers);
    assert.ok(decoded?.kind === "saved");
    assert.equal(decoded.lake, "unreachable");
    assert.equal(decoded.kept, 4);
    const back = decodeServer(plain.content, plain.buffers);
    assert.ok(back?.kind === "saved" && back.lake === undefined);
  });

  it("is offline with the kernel's spill counts while edits are unsaved, and saved once written", async () => {
    const { clock, kernel, client, statuses, outage } = await setup();
    assert.equal(client.getStatus(), "saved");
    addCell(client.doc);
    await clock.advance(50);
    assert.equal(client.getStatus(), "saving");
    outage(1);
    assert.equal(client.getStatus(), "offline"); // at once, not after the 10 s unsaved timeout
    assert.deepEqual(client.getLakeOutage(), { kept: 1, unkept: 0 });
    const shown = statuses.length;
    addCell(client.doc);
    await clock.advance(50);
    outage(2); // more kept: the badge is told again although the status is the same
    assert.equal(statuses.length, shown + 1);
    assert.equal(statuses.at(-1), "offline");
    kernel.save(); // the lake is back and the kernel wrote everything
    await clock.advance(50);
    assert.equal(client.getStatus(), "saved");
    assert.equal(client.getLakeOutage(), null);
  });

  it("stays saved when the lake is down but nothing of this view is unsaved", async () => {
    const { client, outage } = await setup();
    outage(0);
    assert.equal(client.getStatus(), "saved");
  });

  it("labels the badge Offline with the reason and the counts", () => {
    assert.equal(statusLabel("offline", null).text, "Offline");
    const one = statusLabel("offline", { kept: 1, unkept: 0 });
    assert.equal(one.text, "Offline — lake unreachable, 1 change kept on the kernel's disk");
    const mixed = statusLabel("offline", { kept: 12, unkept: 3 });
    assert.match(mixed.text, /^Offline — lake unreachable, 12 changes kept on the kernel's disk, 3 only in its memory$/);
    assert.match(mixed.title, /keep this kernel running/);
    assert.equal(statusLabel("saved", { kept: 1, unkept: 0 }).text, "Saved");
  });
});
