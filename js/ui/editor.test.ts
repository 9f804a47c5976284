import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc, LoroMap, LoroText, type LoroEventBatch } from "loro-crdt";
import { STRUCTURE_ORIGIN, addCell, findCell } from "../notebook";
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
