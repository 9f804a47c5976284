import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc, LoroMap, LoroText, type LoroEventBatch } from "loro-crdt";
import { STRUCTURE_ORIGIN, addCell, deleteCell, findCell, moveCell, readCells, renameCell } from "../notebook";
import { SyncClient } from "../sync";
import { FakeClock } from "../testing/fake_clock";
import { FakeKernel } from "../testing/fake_kernel";
import { UndoScopes, cellOrigin, textScopedDoc } from "./editor";

function twoCells() {
  const doc = new LoroDoc();
  const a = addCell(doc, { id: "cellA" });
  const b = addCell(doc, { id: "cellB" });
  const ta = findCell(doc, a)?.text as LoroText;
  const tb = findCell(doc, b)?.text as LoroText;
  return { doc, ta, tb };
}

/** Type into a cell the way the editor does: insert, then commit with the cell's origin. */
function type(doc: LoroDoc, text: LoroText, cellId: string, at: number, s: string) {
  text.insert(at, s);
  doc.commit({ origin: cellOrigin(cellId) });
}

describe("cell editor plumbing", () => {
  it("scopes doc events to the cell's text and tags commits with the cell's origin", () => {
    const { doc, ta } = twoCells();
    const seen: LoroEventBatch[] = [];
    const origins: (string | undefined)[] = [];
    const scoped = textScopedDoc(doc, ta, cellOrigin("cellA"));
    scoped.subscribe((e) => void seen.push(e));
    doc.subscribe((e) => void origins.push(e.origin));
    // A remote commit that changes the cell's name (map) and source (text) at once: the map
    // event comes first in the batch, which made loro-codemirror stop before the text event.
    const remote = new LoroDoc();
    remote.import(doc.export({ mode: "snapshot" }));
    const map = remote.getMovableList("cells").get(0) as LoroMap;
    map.set("name", "renamed");
    (map.get("source") as LoroText).insert(0, "select 1");
    remote.commit();
    doc.import(remote.export({ mode: "update", from: doc.oplogVersion() }));
    assert.equal(seen.length, 1);
    assert.deepEqual(
      seen[0]?.events.map((e) => e.target),
      [ta.id],
    );
    ta.insert(0, "-- ");
    scoped.commit();
    assert.equal(origins.at(-1), cellOrigin("cellA"));
    assert.equal(scoped.peerIdStr, doc.peerIdStr, "other members are the doc's own");
  });

  it("undoes only the cell's own local edits, keeping other cells and other peers", () => {
    const { doc, ta, tb } = twoCells();
    const scopes = new UndoScopes(doc);
    const ua = scopes.open("cellA", ta);
    const ub = scopes.open("cellB", tb);
    type(doc, ta, "cellA", 0, "select a");
    type(doc, tb, "cellB", 0, "select b");
    // a remote peer edits cell A too
    const remote = new LoroDoc();
    remote.import(doc.export({ mode: "snapshot" }));
    const rt = findCell(remote, "cellA")?.text as LoroText;
    rt.insert(rt.length, " -- remote");
    remote.commit();
    doc.import(remote.export({ mode: "update", from: doc.oplogVersion() }));
    addCell(doc, { id: "cellC" }); // structural: not undoable from an editor

    assert.equal(ua.undo(), true);
    assert.equal(ta.toString(), " -- remote");
    assert.equal(tb.toString(), "select b", "cell B untouched by cell A's undo");
    assert.equal(findCell(doc, "cellC")?.id, "cellC", "structural edit kept");
    assert.equal(ub.undo(), true, "cell B's undo is not confused by cell A's undo commit");
    assert.equal(tb.toString(), "");
    assert.equal(ua.redo(), true);
    assert.equal(ta.toString(), "select a -- remote");
    assert.equal(ub.redo(), true);
    assert.equal(tb.toString(), "select b");
    scopes.free();
  });

  it("gives a cell opened later the same isolation", () => {
    const { doc, ta, tb } = twoCells();
    const scopes = new UndoScopes(doc);
    const ua = scopes.open("cellA", ta);
    type(doc, ta, "cellA", 0, "a");
    const ub = scopes.open("cellB", tb); // e.g. a cell added by someone else
    type(doc, tb, "cellB", 0, "b");
    ua.undo();
    assert.deepEqual([ta.toString(), tb.toString()], ["", "b"]);
    ub.undo();
    assert.deepEqual([ta.toString(), tb.toString()], ["", ""]);
    assert.equal(STRUCTURE_ORIGIN.startsWith("snb:"), true);
    scopes.free();
  });
});

/** Bring each doc up to date with the other (as the kernel relay would). */
function exchange(a: LoroDoc, b: LoroDoc) {
  b.import(a.export({ mode: "update", from: b.oplogVersion() }));
  a.import(b.export({ mode: "update", from: a.oplogVersion() }));
}

/** Two replicas of a notebook made by B (so A starts with nothing to undo), A's cells opened. */
function twoReplicas() {
  const b = new LoroDoc();
  addCell(b, { id: "cellA", name: "first", source: "select 1" });
  addCell(b, { id: "cellB", name: "second", source: "select 2" });
  const a = new LoroDoc();
  a.import(b.export({ mode: "snapshot" }));
  const scopes = new UndoScopes(a);
  for (const id of ["cellA", "cellB"]) scopes.open(id, findCell(a, id)?.text as LoroText);
  return { a, b, scopes };
}

const sources = (doc: LoroDoc) => readCells(doc).map((c) => `${c.id}:${c.name}:${c.source}`);

describe("undo scopes: structure and newest step first", () => {
  it("brings a deleted cell back with its id, name and text, on the other replica too", () => {
    const { a, b, scopes } = twoReplicas();
    assert.equal(scopes.canUndo(), false, "B's edits are not A's to undo");
    type(a, findCell(a, "cellA")?.text as LoroText, "cellA", 8, " -- A typed");
    const oldIds = [findCell(a, "cellA")?.map.id, findCell(a, "cellA")?.text?.id];
    deleteCell(a, "cellA");
    scopes.close("cellA"); // the UI drops the editor with the cell
    exchange(a, b);
    (findCell(b, "cellB")?.text as LoroText).insert(0, "-- B\n");
    b.commit();
    exchange(a, b);

    assert.equal(scopes.undo(), true);
    exchange(a, b);
    const expected = ["cellA:first:select 1 -- A typed", "cellB:second:-- B\nselect 2"];
    assert.deepEqual(sources(a), expected);
    assert.deepEqual(sources(b), expected, "B sees the cell back, and keeps its own edit");
    // Loro recreates the deleted containers: same content, new container ids (the UI rebuilds
    // the cell's editor on the new text).
    const restored = findCell(b, "cellA");
    assert.notDeepEqual([restored?.map.id, restored?.text?.id], oldIds);
    assert.equal(restored?.text?.toString(), "select 1 -- A typed");

    assert.equal(scopes.redo(), true);
    exchange(a, b);
    assert.deepEqual(sources(b), ["cellB:second:-- B\nselect 2"]);
    assert.equal(scopes.undo(), true);
    exchange(a, b);
    assert.deepEqual(sources(b), expected);
    scopes.free();
  });

  it("undoes add, move and rename in reverse order, never another peer's edits", () => {
    const { a, b, scopes } = twoReplicas();
    addCell(a, { id: "cellC", name: "third" });
    moveCell(a, "cellC", 0);
    renameCell(a, "cellB", "renamed");
    exchange(a, b);
    addCell(b, { id: "cellD", name: "fromB" }); // a remote add: not A's to undo
    exchange(a, b);
    const ids = () => readCells(a).map((c) => `${c.id}:${c.name}`);
    assert.deepEqual(ids(), ["cellC:third", "cellA:first", "cellB:renamed", "cellD:fromB"]);
    scopes.undo();
    assert.deepEqual(ids(), ["cellC:third", "cellA:first", "cellB:second", "cellD:fromB"]);
    scopes.undo();
    assert.deepEqual(ids(), ["cellA:first", "cellB:second", "cellC:third", "cellD:fromB"]);
    scopes.undo();
    assert.deepEqual(ids(), ["cellA:first", "cellB:second", "cellD:fromB"]);
    assert.equal(scopes.canUndo(), false);
    assert.equal(scopes.undo(), false);
    exchange(a, b);
    assert.deepEqual(readCells(b), readCells(a));
    scopes.free();
  });

  it("undoes the newest step over all scopes and redoes in reverse", () => {
    const { a, scopes } = twoReplicas();
    const ta = findCell(a, "cellA")?.text as LoroText;
    const tb = findCell(a, "cellB")?.text as LoroText;
    type(a, ta, "cellA", 0, "-- 1\n");
    addCell(a, { id: "cellC", name: "third" });
    scopes.open("cellC", findCell(a, "cellC")?.text as LoroText);
    type(a, tb, "cellB", 0, "-- 3\n");
    moveCell(a, "cellA", 1);
    const state = () => readCells(a).map((c) => `${c.id}:${c.source}`);
    const states = [state()];
    while (scopes.undo()) states.push(state());
    assert.deepEqual(states, [
      ["cellB:-- 3\nselect 2", "cellA:-- 1\nselect 1", "cellC:"],
      ["cellA:-- 1\nselect 1", "cellB:-- 3\nselect 2", "cellC:"],
      ["cellA:-- 1\nselect 1", "cellB:select 2", "cellC:"],
      ["cellA:-- 1\nselect 1", "cellB:select 2"],
      ["cellA:select 1", "cellB:select 2"],
    ]);
    assert.equal(scopes.canUndo(), false);
    const redone = [state()];
    while (scopes.redo()) redone.push(state());
    // cellC's scope went with its editor in the UI; here it stays open, so its (empty) text
    // steps are gone and the redo order is the undo order reversed.
    assert.deepEqual(redone, [...states].reverse());
    scopes.free();
  });

  it("keeps Ctrl-Z in an editor to its cell, and a fresh edit drops every scope's redo", async () => {
    const { a, scopes } = twoReplicas();
    const cellA = scopes.open("cellA", findCell(a, "cellA")?.text as LoroText);
    const ta = findCell(a, "cellA")?.text as LoroText;
    const tb = findCell(a, "cellB")?.text as LoroText;
    type(a, ta, "cellA", 0, "a");
    deleteCell(a, "cellB");
    let notified = 0;
    scopes.subscribe(() => void notified++);
    assert.equal(cellA.undo(), true, "the editor undoes its own cell, not the newer delete");
    assert.equal(ta.toString(), "select 1");
    assert.equal(findCell(a, "cellB"), undefined);
    await Promise.resolve();
    assert.equal(notified, 1, "listeners told once per task");
    assert.equal(scopes.undo(), true, "the toolbar undoes the delete");
    assert.equal(findCell(a, "cellB")?.text?.toString(), "select 2");
    assert.equal(scopes.canRedo(), true);
    type(a, ta, "cellA", 0, "b"); // a fresh edit
    assert.equal(scopes.canRedo(), false, "redo dropped in every scope");
    assert.equal(tb.toString(), "select 2");
    scopes.free();
  });

  it("sends an undo to the kernel like any local edit, with the author", async () => {
    const clock = new FakeClock();
    const kernel = new FakeKernel({ timers: clock, delayMs: 5, saveDelayMs: 30 });
    let client: SyncClient | undefined;
    const conn = kernel.connect((content, buffers) => client?.handle(content, buffers));
    client = new SyncClient({ send: (c, bufs) => conn.send(c, bufs), author: "ana", timers: clock });
    client.start();
    kernel.edit((doc) => void addCell(doc, { id: "cellA", source: "select 1" }));
    await clock.advance(50);
    const scopes = new UndoScopes(client.doc);
    deleteCell(client.doc, "cellA");
    await clock.advance(50);
    assert.deepEqual(readCells(kernel.doc), []);
    scopes.undo();
    await clock.advance(50);
    assert.deepEqual(readCells(kernel.doc), [{ id: "cellA", kind: "sql", name: "q1", source: "select 1" }]);
    const peer = client.doc.peerIdStr;
    const last = kernel.doc.getChangeAt({ peer, counter: (kernel.doc.oplogVersion().get(peer) ?? 1) - 1 });
    assert.equal(last.message, "ana", "the undo commit carries the author like other local commits");
    assert.equal(client.getStatus(), "saved");
    scopes.free();
    client.stop();
    kernel.destroy();
  });
});
