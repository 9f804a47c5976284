import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CompletionContext, type CompletionResult, type CompletionSource } from "@codemirror/autocomplete";
import { schemaCompletionSource } from "@codemirror/lang-sql";
import { EditorState } from "@codemirror/state";
import type { CatalogTable } from "../protocol";
import { DuckDB, SqlCompletions, catalogNamespace, columnsInScope, postgresKeywords } from "./complete";
import { newestRun } from "../widget";

const table = (name: string, columns: string[], extra: Partial<CatalogTable> = {}): CatalogTable =>
  ({ database: "", schema: "main", name, columns, kind: "table", ...extra });

const catalog: CatalogTable[] = [
  table("flights", ["dep_delay", "arr_delay", "carrier"]),
  table("late", ["carrier"], { kind: "view" }),
  table("changes", ["author", "time"], { schema: "sqlrooms_history", kind: "view" }),
  table("updates", ["seq"], { database: "sqlrooms_lake", schema: "sqlrooms" }),
  table("o", ["a"], { database: "other" }),
];

/** Labels a completion source offers with the cursor at the end of `text`. */
function labels(source: CompletionSource, text: string): string[] {
  const state = EditorState.create({ doc: text, extensions: [DuckDB.extension] });
  const result = source(new CompletionContext(state, text.length, false)) as CompletionResult | null;
  return result ? result.options.map((o) => o.label) : [];
}

describe("SQL completion names", () => {
  it("nests the catalog: main tables at top level, other schemas and databases qualified", () => {
    const ns = catalogNamespace(catalog, ["delays", "late"], "mine") as Record<string, unknown>;
    assert.deepEqual(Object.keys(ns).sort(), ["delays", "flights", "late", "other", "sqlrooms_history", "sqlrooms_lake"]);
    assert.deepEqual(ns["flights"], { self: { label: "flights", type: "type", detail: "table" }, children: ["dep_delay", "arr_delay", "carrier"] });
    assert.deepEqual(ns["delays"], { self: { label: "delays", type: "type", detail: "cell" }, children: [] });
    const history = ns["sqlrooms_history"] as { children: Record<string, unknown> };
    assert.deepEqual(Object.keys(history.children), ["changes"]);
    const lake = ns["sqlrooms_lake"] as { children: Record<string, { children: Record<string, unknown> }> };
    assert.deepEqual(Object.keys(lake.children["sqlrooms"]!.children), ["updates"]);
    const other = ns["other"] as { children: Record<string, { children: Record<string, unknown> }> };
    assert.deepEqual(Object.keys(other.children["main"]!.children), ["o"]);
  });

  it("leaves the editing cell's own name out", () => {
    const ns = catalogNamespace([table("mine", ["x"])], ["mine", "other_cell"], "mine") as Record<string, unknown>;
    assert.deepEqual(Object.keys(ns), ["other_cell"]);
  });

  it("completes table names, qualified columns and schema members through lang-sql", () => {
    const source = schemaCompletionSource({ dialect: DuckDB, schema: catalogNamespace(catalog, ["delays"]) });
    assert.ok(labels(source, "select * from fli").includes("flights"));
    assert.ok(labels(source, "select * from fli").includes("delays"));
    assert.deepEqual(labels(source, "select flights.").sort(), ["arr_delay", "carrier", "dep_delay"]);
    assert.deepEqual(labels(source, "select * from sqlrooms_history."), ["changes"]);
  });

  it("completes unqualified columns of the tables the text names", () => {
    const names = new Map([["flights", { name: "flights", columns: ["dep_delay", "carrier"] }], ["late", { name: "late", columns: ["carrier", "n"] }]]);
    const source = columnsInScope(names);
    assert.deepEqual(labels(source, "from flights select dep_"), ["dep_delay", "carrier"]);
    assert.deepEqual(labels(source, "from Late join flights select c"), ["dep_delay", "carrier", "n"]);
    assert.deepEqual(labels(source, "from nothing select c"), []);
    assert.deepEqual(labels(source, "from flights select 'c"), []);
  });

  it("has DuckDB keywords besides PostgreSQL's", () => {
    const text = "select * from t qual";
    const state = EditorState.create({ doc: text, extensions: [DuckDB.extension] });
    assert.ok(state.languageDataAt("autocomplete", text.length).length >= 0);
    assert.ok((DuckDB.spec.keywords ?? "").split(" ").includes("qualify"));
    assert.ok((DuckDB.spec.keywords ?? "").split(" ").includes("select"));
  });

  it("notifies editors when the catalog or the cell names change, not when names stay", () => {
    const completions = new SqlCompletions();
    let calls = 0;
    completions.subscribe(() => calls++);
    completions.setCellNames(new Map([["c1", "a"]]));
    completions.setCellNames(new Map([["c1", "a"]]));
    completions.setCatalog(catalog);
    assert.equal(calls, 2);
    completions.setCatalog(JSON.parse(JSON.stringify(catalog)) as typeof catalog); // resent, same
    assert.equal(calls, 2);
  });
});

describe("results echo", () => {
  it("finds the newest run, optionally of one view's runs", () => {
    const results = { a: { run: 3, view: "v1" }, b: { run: 5, view: null }, c: { run: 4, view: "v2" } };
    assert.equal(newestRun(results), 5);
    assert.equal(newestRun(results, "v1"), 3);
    assert.equal(newestRun(results, "v9"), 0);
    assert.equal(newestRun(null), 0);
  });
});

describe("DuckDB keywords", () => {
  it("drop PostgreSQL's information-schema words but keep current_date and DuckDB's own", () => {
    const words = new Set(postgresKeywords("select user_defined_type_code current_date from").split(" "));
    assert.deepEqual([...words], ["select", "current_date", "from"]);
    const all = postgresKeywords();
    assert.ok(!all.split(" ").some((w) => w.startsWith("user_defined")));
    assert.ok(all.split(" ").includes("select"));
  });
});
