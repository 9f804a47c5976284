"""Updates exchanged between Node's loro-crdt (the browser's library) and Python's loro."""

import base64
import json
import pathlib
import shutil
import subprocess

import pytest
from loro import ExportMode, VersionVector

from sqlrooms_nb import notebook as nb

ROOT = pathlib.Path(__file__).resolve().parent.parent

NODE_SCRIPT = r"""
const { LoroDoc, LoroMap, LoroText, VersionVector } = require("loro-crdt");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const doc = new LoroDoc();
if (input.kernel) doc.import(Buffer.from(input.kernel, "base64"));
const cells = doc.getMovableList("cells");
const cell = cells.insertContainer(cells.length, new LoroMap());
cell.set("id", "fromjs1"); cell.set("kind", "sql"); cell.set("name", "js_cell");
const text = cell.setContainer("source", new LoroText());
text.insert(0, "select 'héllo 👋' as greeting");
doc.commit();
const kernelVv = input.kernel_vv
  ? VersionVector.decode(Buffer.from(input.kernel_vv, "base64"))
  : undefined;
const update = doc.export(kernelVv ? { mode: "update", from: kernelVv } : { mode: "update" });
process.stdout.write(JSON.stringify({
  update: Buffer.from(update).toString("base64"),
  vv: Buffer.from(doc.oplogVersion().encode()).toString("base64"),
  sources: cells.toJSON().map((c) => c.source),
}));
"""


def run_node(payload: dict) -> dict:
    out = subprocess.run(
        ["node", "-e", NODE_SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(autouse=True)
def _node_modules():
    if shutil.which("node") is None or not (ROOT / "node_modules" / "loro-crdt").exists():
        pytest.fail("node and node_modules/loro-crdt are required: run `npm ci` (make test does)")


def test_a_js_cell_imports_into_python_and_python_edits_return_to_js():
    kernel = nb.new_doc()
    nb.ensure_schema(kernel)
    first = nb.add_cell(kernel, "select 1", name="py_cell")
    kernel.commit()
    reply = run_node(
        {
            "kernel": base64.b64encode(kernel.export(ExportMode.Snapshot())).decode(),
            "kernel_vv": base64.b64encode(kernel.oplog_vv.encode()).decode(),
        }
    )
    status = kernel.import_(base64.b64decode(reply["update"]))
    assert status.pending is None
    cells = nb.read_cells(kernel)
    assert [(c.id, c.name, c.source) for c in cells] == [
        (first, "py_cell", "select 1"),
        ("fromjs1", "js_cell", "select 'héllo 👋' as greeting"),
    ]
    assert VersionVector.decode(base64.b64decode(reply["vv"])) == kernel.oplog_vv
    assert reply["sources"] == ["select 1", "select 'héllo 👋' as greeting"]
