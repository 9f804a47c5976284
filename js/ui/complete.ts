/**
 * SQL autocompletion for cell editors, with `@codemirror/lang-sql`'s own completion sources.
 *
 * - **Names**: tables, views and their columns from the kernel connection's catalog (the
 *   `catalog` message, sent after each welcome and each run), plus the other cells' result names
 *   from the document (so cells not run yet complete too). Objects of the current database's
 *   `main` schema complete unqualified, other schemas as `schema.table`, other databases as
 *   `db.schema.table`; `table.` completes its columns (lang-sql's schema completion).
 * - **Columns in scope**: an unqualified word also completes the columns of the tables and
 *   cells the cell's text names (`select dep_… from flights`), which lang-sql alone does not.
 * - **Keywords**: lang-sql's PostgreSQL list (DuckDB's SQL is close to it) plus DuckDB's own
 *   ({@link DuckDB}), lower-case.
 *
 * One {@link SqlCompletions} per mount holds the catalog and the cell names; each SQL editor
 * takes {@link SqlCompletions.extension} and swaps it through a compartment when they change.
 */
import { autocompletion, type Completion, type CompletionContext, type CompletionResult, type CompletionSource } from "@codemirror/autocomplete";
import { syntaxTree } from "@codemirror/language";
import { PostgreSQL, SQLDialect, schemaCompletionSource, sql, type SQLNamespace } from "@codemirror/lang-sql";
import { Compartment, type Extension } from "@codemirror/state";
import { ViewPlugin, type EditorView } from "@codemirror/view";
import { LOG_PREFIX, type CatalogTable } from "../protocol";

/** DuckDB keywords PostgreSQL's list lacks. */
export const DUCKDB_KEYWORDS =
  "qualify pivot unpivot pivot_wider pivot_longer asof positional summarize describe exclude replace columns " +
  "anti semi struct map list union_by_name by_name sample using_sample reservoir bernoulli system " +
  "install load attach detach pragma macro try_cast arg_min arg_max list_agg string_agg read_csv read_parquet read_json";

/** Underscored words of PostgreSQL's list worth offering; the rest are information-schema
 * column names (`user_defined_type_code`, ...) that crowd the completion list. */
const KEPT_UNDERSCORED = new Set([
  "current_date", "current_time", "current_timestamp", "current_user", "session_user",
  "current_schema", "current_catalog", "current_role", "local_time", "localtimestamp",
]);

/** PostgreSQL's keywords without the information-schema noise (see {@link KEPT_UNDERSCORED}). */
export function postgresKeywords(list: string = PostgreSQL.spec.keywords ?? ""): string {
  return list.split(/\s+/).filter((w) => w && (!w.includes("_") || KEPT_UNDERSCORED.has(w))).join(" ");
}

/** PostgreSQL's dialect with DuckDB's keywords and case-insensitive identifiers. */
export const DuckDB = SQLDialect.define({
  ...PostgreSQL.spec,
  keywords: `${postgresKeywords()} ${DUCKDB_KEYWORDS}`,
  caseInsensitiveIdentifiers: true,
});

/** A name a cell can read at top level: a main-schema table or view, or a cell's result. */
interface TopName {
  name: string;
  columns: readonly string[];
}

/**
 * The lang-sql schema for completion: the catalog's objects (see the module doc for how they
 * nest) plus `cellNames` not in the catalog (no columns known yet); `exclude` (the editing
 * cell's own name) is left out of the top level.
 */
export function catalogNamespace(tables: readonly CatalogTable[], cellNames: readonly string[], exclude?: string): SQLNamespace {
  const top: Record<string, SQLNamespace> = {};
  const nested = (into: Record<string, SQLNamespace>, key: string, detail: string): Record<string, SQLNamespace> => {
    const found = into[key];
    if (found && !Array.isArray(found) && !("self" in found)) return found as Record<string, SQLNamespace>;
    const level: Record<string, SQLNamespace> = {};
    into[key] = { self: { label: key, type: "namespace", detail }, children: level };
    return level;
  };
  for (const t of tables) {
    const entry: SQLNamespace = { self: { label: t.name, type: "type", detail: t.kind }, children: t.columns };
    if (t.database === "" && t.schema === "main") {
      if (t.name !== exclude) top[t.name] = entry;
      continue;
    }
    const db = t.database === "" ? top : nested(top, t.database, "database");
    nested(db, t.schema, "schema")[t.name] = entry;
  }
  for (const name of cellNames) {
    if (name && name !== exclude && !(name in top)) top[name] = { self: { label: name, type: "type", detail: "cell" }, children: [] };
  }
  return top;
}

/** Top-level names (main-schema objects and cell results) by lower-cased name. */
function topNames(tables: readonly CatalogTable[], cellNames: readonly string[], exclude?: string): Map<string, TopName> {
  const names = new Map<string, TopName>();
  for (const t of tables) {
    if (t.database === "" && t.schema === "main" && t.name !== exclude) names.set(t.name.toLowerCase(), { name: t.name, columns: t.columns });
  }
  for (const name of cellNames) {
    if (name && name !== exclude && !names.has(name.toLowerCase())) names.set(name.toLowerCase(), { name, columns: [] });
  }
  return names;
}

const WORD = /[A-Za-z_][\w$]*/g;
const NOT_HERE = new Set(["String", "QuotedIdentifier", "LineComment", "BlockComment"]);

/**
 * Completes an unqualified word with the columns of the top-level names the cell's text
 * mentions (its FROM / JOIN tables, usually), e.g. `select dep_` + `from flights`.
 */
export function columnsInScope(names: Map<string, TopName>): CompletionSource {
  return (context: CompletionContext): CompletionResult | null => {
    const word = context.matchBefore(/[\w$]*/);
    if (!word || (word.from === word.to && !context.explicit)) return null;
    const before = context.state.sliceDoc(Math.max(0, word.from - 1), word.from);
    if (before === "." || before === '"') return null;
    if (NOT_HERE.has(syntaxTree(context.state).resolveInner(context.pos, -1).name)) return null;
    const mentioned = new Set((context.state.doc.toString().match(WORD) ?? []).map((w) => w.toLowerCase()));
    const options: Completion[] = [];
    const seen = new Set<string>();
    for (const [key, table] of names) {
      if (!mentioned.has(key)) continue;
      for (const column of table.columns) {
        if (seen.has(column)) continue;
        seen.add(column);
        options.push({ label: column, type: "property", detail: table.name, boost: 1 });
      }
    }
    return options.length ? { from: word.from, options, validFor: /^[\w$]*$/ } : null;
  };
}

/** A completion source built by `build` when first asked for completions, then kept. */
function onFirstUse(build: () => CompletionSource): CompletionSource {
  let source: CompletionSource | null = null;
  return (context) => (source ??= build())(context);
}

/** The catalog and cell names every SQL editor of a mount completes from. */
export class SqlCompletions {
  private tables: readonly CatalogTable[] = [];
  private names = new Map<string, string>(); // cell id -> result name
  private readonly listeners = new Set<() => void>();

  private catalogKey = "[]";

  /** The kernel sent its catalog (notifies only when it changed: the kernel resends it after
   * every run, and swapping the completion sources closes an open popup). */
  setCatalog(tables: readonly CatalogTable[]): void {
    const key = JSON.stringify(tables);
    if (key === this.catalogKey) return;
    this.catalogKey = key;
    this.tables = tables;
    this.notify();
  }

  /** The SQL cells' result names, by cell id (notifies only when they changed). */
  setCellNames(names: Map<string, string>): void {
    const same = names.size === this.names.size && [...names].every(([id, name]) => this.names.get(id) === name);
    if (same) return;
    this.names = new Map(names);
    this.notify();
  }

  /**
   * Completion for cell `cellId`'s editor (its own name left out). The sources are built on the
   * editor's first completion request, not here: building them walks every name, and a
   * 5,000-cell notebook spent 20-40 ms per editor on it (1.2 s to open, again on each rename).
   */
  extension(cellId: string): Extension {
    const { tables, names } = this;
    const own = names.get(cellId);
    const others = () => [...names].filter(([id]) => id !== cellId).map(([, name]) => name);
    return [
      DuckDB.language.data.of({ autocomplete: onFirstUse(() => schemaCompletionSource({ dialect: DuckDB, schema: catalogNamespace(tables, others(), own) })) }),
      DuckDB.language.data.of({ autocomplete: onFirstUse(() => columnsInScope(topNames(tables, others(), own))) }),
    ];
  }

  /** Call `listener` whenever the catalog or the names change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private notify(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        console.error(`${LOG_PREFIX} completion listener failed`, err);
      }
    }
  }
}

/**
 * The SQL language for a cell editor: DuckDB highlighting and keywords, the completion popup,
 * and (with `completions`) names from the catalog and the cells, swapped in a compartment.
 */
export function sqlSupport(cellId: string, completions?: SqlCompletions): Extension {
  const base = [sql({ dialect: DuckDB, upperCaseKeywords: false }), autocompletion({ icons: false })];
  if (!completions) return base;
  const names = new Compartment();
  const follow = ViewPlugin.define((view: EditorView) => {
    const unsubscribe = completions.subscribe(() => {
      view.dispatch({ effects: names.reconfigure(completions.extension(cellId)) });
    });
    return { destroy: unsubscribe };
  });
  return [base, names.of(completions.extension(cellId)), follow];
}
