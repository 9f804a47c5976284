import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, mock } from "node:test";
import {
  CLIENT_KINDS,
  SERVER_KINDS,
  ProtocolError,
  decodeClient,
  decodeServer,
  encodeClient,
  encodeServer,
  randomId,
  type CellId,
  type ClientMessage,
  type RequestId,
  type ServerMessage,
  type VersionId,
  type ViewId,
} from "./protocol";

const view = "view_1" as ViewId;
const id = "req-1" as RequestId;
const cell = "abcDEF123_-x" as CellId;
const version = "AQKQTg" as VersionId;
const bytes = (...xs: number[]) => new Uint8Array(xs);
/** What anywidget gives the browser: DataViews, here over a larger buffer at an offset. */
const asDataViews = (buffers: Uint8Array[]) =>
  buffers.map((b) => {
    const big = new Uint8Array(b.byteLength + 8);
    big.set(b, 4);
    return new DataView(big.buffer, 4, b.byteLength);
  });

describe("protocol", () => {
  it("declares the same kinds as protocol.py", () => {
    const py = readFileSync(join(process.cwd(), "src/sqlrooms_nb/protocol.py"), "utf8");
    const tuple = (name: string) => {
      const m = new RegExp(`^${name} = \\(([^)]*)\\)`, "m").exec(py);
      assert.ok(m, `${name} not found in protocol.py`);
      return [...(m[1] ?? "").matchAll(/"([a-z_]+)"/g)].map((x) => x[1]);
    };
    assert.deepEqual([...CLIENT_KINDS], tuple("CLIENT_KINDS"));
    assert.deepEqual([...SERVER_KINDS], tuple("SERVER_KINDS"));
  });

  it("keeps each kinds array on one line in the form the Python test parses", () => {
    const ts = readFileSync(join(process.cwd(), "js/protocol.ts"), "utf8");
    assert.match(ts, /^export const CLIENT_KINDS = \[[^\]\n]*\] as const;$/m);
    assert.match(ts, /^export const SERVER_KINDS = \[[^\]\n]*\] as const;$/m);
  });

  it("round-trips every client message through encode and decode", () => {
    const messages: ClientMessage[] = [
      { kind: "hello", view, version: bytes(1, 2, 3) },
      { kind: "update", view, updates: [bytes(4), bytes(5, 6)] },
      { kind: "run", view, id, cell },
      { kind: "ping", view, id },
      { kind: "awareness", view, update: bytes(1, 2) },
      { kind: "history", view, id },
      { kind: "history", view, id, offset: 50, limit: 200 },
      { kind: "preview", view, id, version },
      { kind: "restore", view, id, version },
      { kind: "restore", view, id, version, author: "Ana" },
      { kind: "page", view, id, cell, offset: 500, limit: 500 },
      { kind: "page", view, id, cell, offset: 0, limit: 5000, sort: [{ column: 'odd "col"', desc: true }], branch: "what-if" },
      { kind: "export", view, id, cell, format: "parquet" },
      { kind: "export", view, id, cell, format: "csv", sort: [{ column: "x", desc: false }] },
    ];
    for (const message of messages) {
      const wire = encodeClient(message);
      assert.equal(wire.content["kind"], message.kind);
      assert.equal(JSON.parse(JSON.stringify(wire.content))["view"], view, "content is plain JSON");
      assert.deepEqual(decodeClient(wire.content, asDataViews(wire.buffers)), message);
    }
  });

  it("sends buffers that own their whole ArrayBuffer", () => {
    const big = new Uint8Array([9, 9, 1, 2, 3, 9]);
    const wire = encodeClient({ kind: "update", view, updates: [big.subarray(2, 5)] });
    const [buf] = wire.buffers;
    assert.ok(buf);
    assert.equal(buf.byteOffset, 0);
    assert.equal(buf.buffer.byteLength, 3);
    assert.deepEqual([...buf], [1, 2, 3]);
  });

  it("round-trips every server message, buffers arriving as DataViews", () => {
    const messages: ServerMessage[] = [
      {
        kind: "welcome",
        to: view,
        room: "r",
        branch: "main",
        protocol: 1,
        missing: bytes(1),
        version: bytes(2),
        saved: bytes(),
      },
      { kind: "update", origin: view, updates: [bytes(1, 2), bytes(3)], branch: "main" },
      { kind: "update", origin: null, updates: [bytes(7)], branch: "what-if" },
      { kind: "saved", version: bytes(8, 9), branch: "main" },
      { kind: "run_started", id, cell, view: null, branch: "main" },
      {
        kind: "result",
        id: null,
        cell,
        name: "q1",
        rows: 336776,
        columns: [{ name: "x", type: "INTEGER" }],
        shown: 100,
        elapsed_ms: 12.5,
        arrow: bytes(0xff, 0xff),
        branch: "main",
        author: "ana",
      },
      { kind: "page", to: view, id, cell, branch: "main", offset: 500, rows: 336776, sort: [{ column: "dep_delay", desc: true }], arrow: bytes(1, 2) },
      { kind: "export", to: view, id, cell, format: "csv", filename: "q1.csv", data: bytes(97, 44, 98) },
      { kind: "error", code: "query", message: "Parser Error", cell, line: 0, column: 7 },
      { kind: "error", code: "protocol", message: "bad", to: view },
      { kind: "pong", to: view, id },
      { kind: "awareness", origin: view, update: bytes(4, 5) },
      { kind: "awareness", origin: null, update: bytes(6) },
      {
        kind: "history",
        to: view,
        id,
        offset: 0,
        versions: [
          {
            id: version,
            time: "2024-05-01T10:00:00+00:00",
            start: "2024-05-01T09:58:00+00:00",
            author: "ana",
            summary: "ana edited 1 cell (+3 -0 chars)",
            cells: ["c1"],
            added: 3,
            removed: 0,
            changes: 2,
          },
        ],
        more: true,
        tags: [{ name: "v1", version }],
        current: version,
      },
      {
        kind: "preview",
        to: view,
        id,
        version,
        cells: [{ id: cell, kind: "sql", name: "q1", source: "select 1" }],
        diff: [
          { id: cell, name: "q1", status: "changed", index_a: 0, index_b: 1, diff: "-select 1\n+select 2" },
          { id: cell, name: "q2", status: "added", index_a: null, index_b: 0, diff: "" },
        ],
      },
      { kind: "restored", to: view, id, version, current: version },
      {
        kind: "branches",
        branches: [
          { name: "main", parent: null, fork_version: null, created_by: "", created_at: null, merged_into: null, merged_at: null },
          {
            name: "what-if",
            parent: "main",
            fork_version: version,
            created_by: "ana",
            created_at: "2024-05-01T10:00:00+00:00",
            merged_into: "main",
            merged_at: "2024-05-02T10:00:00+00:00",
          },
        ],
        current: "main",
      },
      { kind: "branch_created", to: view, id, name: "what-if" },
      { kind: "merge_preview", to: view, id, source: "what-if", into: "main", cells: [], diff: [] },
      { kind: "merged", to: view, id, source: "what-if", into: "main", current: version },
      { kind: "error", code: "storage", message: "lake down", branch: "what-if" },
    ];
    for (const message of messages) {
      const wire = encodeServer(message);
      const content = JSON.parse(JSON.stringify(wire.content)) as unknown;
      assert.deepEqual(decodeServer(content, asDataViews(wire.buffers)), message);
    }
  });

  it("decodes kernel messages exactly as protocol.py encodes them", () => {
    // Shapes copied from protocol.encode_server (None fields stay null; error omits them).
    assert.deepEqual(decodeServer({ kind: "run_started", id: null, cell: "c1", view: null, branch: "main" }, []), {
      kind: "run_started",
      id: null,
      cell: "c1",
      view: null,
      branch: "main",
    });
    assert.deepEqual(decodeServer({ kind: "update", origin: null, branch: "b" }, [new DataView(new ArrayBuffer(2))]), {
      kind: "update",
      origin: null,
      updates: [bytes(0, 0)],
      branch: "b",
    });
  });

  it("logs an unknown kind instead of throwing", () => {
    const warn = mock.method(console, "warn", () => undefined);
    try {
      assert.equal(decodeServer({ kind: "presence", x: 1 }, []), null);
      assert.equal(warn.mock.callCount(), 1);
      assert.match(String(warn.mock.calls[0]?.arguments[0]), /\[sqlrooms_nb\] unknown message kind/);
    } finally {
      warn.mock.restore();
    }
  });

  it("rejects malformed known messages with ProtocolError", () => {
    assert.throws(() => decodeServer({ kind: "welcome", to: view, room: "r", branch: "b", protocol: 1 }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "result", cell: 3 }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "export", to: view, id, cell, format: "xlsx", filename: "f" }, [bytes(1)]), ProtocolError);
    assert.throws(() => decodeClient({ kind: "page", view, id, cell, offset: 0, limit: 5001 }, []), ProtocolError);
    assert.throws(() => decodeServer("hello", []), ProtocolError);
    assert.throws(() => decodeClient({ kind: "update", view }, []), ProtocolError);
    assert.throws(() => decodeClient({ kind: "awareness", view }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "awareness", origin: null }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "history", to: view, id, offset: 0, versions: {}, more: false, tags: [], current: "x" }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "history", to: view, id, offset: 0, versions: [], more: "no", tags: [], current: "x" }, []), ProtocolError);
    assert.throws(
      () => decodeServer({ kind: "preview", to: view, id, version, cells: [], diff: [{ id: "c", name: "n", status: "exploded", index_a: 0, index_b: 0, diff: "" }] }, []),
      ProtocolError,
    );
    assert.throws(() => decodeServer({ kind: "restored", to: view, id }, []), ProtocolError);
    assert.throws(() => decodeClient({ kind: "history", view, id, limit: 0 }, []), ProtocolError);
    assert.throws(() => decodeClient({ kind: "history", view, id, offset: -1 }, []), ProtocolError);
    assert.throws(() => decodeServer({ kind: "update", origin: null }, [new DataView(new ArrayBuffer(1))]), ProtocolError);
    assert.throws(() => decodeClient({ kind: "merge", view, id, source: "b", into: "main" }, []), ProtocolError);
  });

  it("sends the branch with every document message and omits it when unknown", () => {
    const hello = encodeClient({ kind: "hello", view, version: bytes(), branch: "what-if" });
    assert.deepEqual(hello.content, { kind: "hello", view, branch: "what-if" });
    assert.deepEqual(encodeClient({ kind: "update", view, updates: [bytes(1)] }).content, { kind: "update", view });
    const branch = encodeClient({ kind: "branch", view, id, name: "b", source: "main", at: version, author: "ana" });
    assert.deepEqual(decodeClient(branch.content, branch.buffers), { kind: "branch", view, id, name: "b", source: "main", at: version, author: "ana" });
    const merge = encodeClient({ kind: "merge", view, id, source: "b", into: "main", preview: false });
    assert.deepEqual(merge.content, { kind: "merge", view, id, source: "b", into: "main", preview: false });
  });

  it("makes URL-safe random ids of 12 characters", () => {
    const ids = new Set(Array.from({ length: 200 }, () => randomId()));
    assert.equal(ids.size, 200);
    for (const x of ids) assert.match(x, /^[A-Za-z0-9_-]{12}$/);
  });
});

describe("run status messages", () => {
  it("round-trips cancel, run_all and run with cascade", () => {
    const view = "v" as ViewId;
    const id = "r" as RequestId;
    const cell = "c" as CellId;
    for (const message of [
      { kind: "cancel", view, id, cell, branch: "b" },
      { kind: "run_all", view, id },
      { kind: "run", view, id, cell, cascade: false },
    ] as const) {
      const wire = encodeClient(message);
      assert.deepEqual(decodeClient(wire.content, wire.buffers), message);
    }
  });

  it("decodes run_progress, cancelled, stale and queued", () => {
    assert.deepEqual(decodeServer({ kind: "run_progress", cell: "c", branch: "main", elapsed_ms: 250, percent: null }, []), {
      kind: "run_progress", cell: "c", branch: "main", elapsed_ms: 250, percent: null,
    });
    assert.deepEqual(decodeServer({ kind: "stale", branch: "main", cells: ["a", "b"] }, []), { kind: "stale", branch: "main", cells: ["a", "b"] });
    assert.deepEqual(decodeServer({ kind: "cancelled", id: "r", cell: "c", branch: "main", elapsed_ms: 3 }, []), {
      kind: "cancelled", id: "r", cell: "c", branch: "main", elapsed_ms: 3,
    });
    assert.deepEqual(decodeServer({ kind: "queued", id: null, cell: "c", branch: "main" }, []), { kind: "queued", id: null, cell: "c", branch: "main" });
    assert.throws(() => decodeServer({ kind: "stale", branch: "main", cells: [1] }, []), ProtocolError);
  });
});
