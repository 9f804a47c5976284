import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoroDoc } from "loro-crdt";
import {
  CellError,
  STRUCTURE_ORIGIN,
  addCell,
  cellHandles,
  deleteCell,
  findCell,
  isValidCellName,
  moveCell,
  readCells,
  readInput,
  renameCell,
  setInput,
  uniqueName,
} from "./notebook";

function docWithLog() {
  const doc = new LoroDoc();
  const updates: Uint8Array[] = [];
  const origins: string[] = [];
  doc.subscribeLocalUpdates((u) => void updates.push(u));
  doc.subscribe((e) => void (e.by === "local" && origins.push(e.origin ?? "")));
  return { doc, updates, origins };
}

describe("notebook cells", () => {
  it("adds SQL cells named q1, q2... with 12-character URL-safe ids and a LoroText source", () => {
    const { doc } = docWithLog();
    const a = addCell(doc, { source: "select 1" });
    const b = addCell(doc);
    assert.match(a, /^[A-Za-z0-9_-]{12}$/);
    assert.notEqual(a, b);
    assert.deepEqual(readCells(doc), [
      { id: a, kind: "sql", name: "q1", source: "select 1" },
      { id: b, kind: "sql", name: "q2", source: "" },
    ]);
    assert.equal(uniqueName(doc), "q3");
    assert.equal(findCell(doc, a)?.text?.toString(), "select 1");
  });

  it("commits each action exactly once, with the structure origin", () => {
    const { doc, updates, origins } = docWithLog();
    const a = addCell(doc, { source: "x" });
    const b = addCell(doc, { index: 0 });
    moveCell(doc, a, 0);
    renameCell(doc, b, "renamed");
    deleteCell(doc, a);
    assert.equal(updates.length, 5);
    assert.deepEqual(origins, Array(5).fill(STRUCTURE_ORIGIN));
  });

  it("moves cells with the movable list (same containers, new order)", () => {
    const { doc } = docWithLog();
    const ids = [addCell(doc), addCell(doc), addCell(doc)];
    const textBefore = findCell(doc, ids[2]!)?.text?.id;
    moveCell(doc, ids[2]!, 0);
    assert.deepEqual(
      readCells(doc).map((c) => c.id),
      [ids[2], ids[0], ids[1]],
    );
    assert.equal(findCell(doc, ids[2]!)?.text?.id, textBefore, "the cell keeps its identity");
    moveCell(doc, ids[2]!, 2);
    assert.deepEqual(
      readCells(doc).map((c) => c.id),
      [ids[0], ids[1], ids[2]],
    );
  });

  it("deletes and renames, validating names", () => {
    const { doc } = docWithLog();
    const a = addCell(doc);
    const b = addCell(doc);
    renameCell(doc, a, "flights_per_month");
    assert.equal(findCell(doc, a)?.name, "flights_per_month");
    assert.throws(() => renameCell(doc, a, "1bad"), CellError);
    assert.throws(() => renameCell(doc, a, "has space"), CellError);
    assert.equal(isValidCellName("_x".padEnd(63, "a")), true);
    assert.equal(isValidCellName("_x".padEnd(64, "a")), false);
    deleteCell(doc, a);
    assert.deepEqual(
      readCells(doc).map((c) => c.id),
      [b],
    );
    assert.throws(() => deleteCell(doc, a), CellError);
    assert.throws(() => moveCell(doc, b, 5), CellError);
  });

  it("reads the shape notebook.py writes and skips malformed items", () => {
    const { doc } = docWithLog();
    addCell(doc, { source: "select 2", name: "two", id: "fixed_id-1" });
    cellsInsertJunk(doc);
    const handles = cellHandles(doc);
    assert.deepEqual(
      handles.map((h) => [h.id, h.name, h.index]),
      [["fixed_id-1", "two", 0]],
    );
    const deep = doc.getMovableList("cells").toJSON() as unknown[];
    assert.deepEqual(deep[0], { id: "fixed_id-1", kind: "sql", name: "two", source: "select 2" });
  });
});

function cellsInsertJunk(doc: LoroDoc) {
  doc.getMovableList("cells").insert(1, "not a cell");
  doc.commit();
}

describe("input cells", () => {
  it("store a typed value that a type change converts, and refuse what does not fit", () => {
    const doc = new LoroDoc();
    const id = addCell(doc, { kind: "input", name: "carrier" });
    assert.deepEqual(readInput(doc, id), { type: "text", value: "", optionsSql: "" });
    setInput(doc, id, { value: "O'Hare" });
    assert.equal(readInput(doc, id)?.value, "O'Hare");
    setInput(doc, id, { value: "12" });
    setInput(doc, id, { type: "number" });
    assert.equal(readInput(doc, id)?.value, 12);
    assert.throws(() => setInput(doc, id, { value: "many" }), CellError);
    assert.throws(() => addCell(doc, { kind: "input", name: "not a name" }), CellError);
    setInput(doc, id, { type: "select", optionsSql: "select 1" });
    assert.deepEqual(readInput(doc, id), { type: "select", value: "12", optionsSql: "select 1" });
  });
});
