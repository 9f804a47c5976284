"""Which cells a SQL cell reads, from DuckDB's own parser; the cells' dependency graph.

:func:`table_refs` parses a cell's text with DuckDB's ``json_serialize_sql`` (the parser only:
nothing is bound, so the tables need not exist) and walks the syntax tree for ``BASE_TABLE``
references: in ``FROM`` and joins, in subqueries anywhere (``IN``, ``EXISTS``, scalar), in
set operations, and inside CTE bodies. Names a CTE defines are not dependencies where the CTE
is in scope (``WITH a AS (...) SELECT * FROM a`` reads nothing named ``a``); quoted names keep
their exact text; schema- and catalog-qualified names keep their qualifiers. Table functions
(``read_csv(...)``) are not references.

``json_serialize_sql`` serialises ``SELECT`` statements only; other statements in a cell
(``CREATE TABLE ... AS``, ``INSERT``, ``PRAGMA``) contribute no dependencies.

:func:`parameter_names` finds the named prepared-statement parameters (``$name``) a statement
uses: from the same syntax tree (``VALUE_PARAMETER`` nodes) for ``SELECT`` statements, and from
DuckDB's tokenizer (a ``$`` operator token immediately followed by a word token; strings
and comments are tokens of their own, so ``'$x'`` and ``-- $x`` are not parameters) for
statements the serialiser refuses. The runner binds them from input cells.

:func:`build_graph` matches references to cells by result name (case-insensitive, as DuckDB
resolves unquoted identifiers; qualified names match only in schema ``main`` of the default
catalog), and :class:`Graph` gives upstream/downstream sets, a topological order (ties broken
by notebook order) and the cells caught in cycles. Pure: no widgets, no lake; the parser runs
on a private in-memory DuckDB, from any thread.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

DEFAULT_SCHEMA = "main"
"""Schema where cell results live (the connection's default)."""

_parser_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None
_cache: dict[str, tuple[TableRef, ...]] = {}
_CACHE_MAX = 4096


@dataclass(frozen=True, order=True)
class TableRef:
    """A table name as written in SQL: ``catalog`` and ``schema`` are ``""`` when absent."""

    name: str
    schema: str = ""
    catalog: str = ""

    def __str__(self) -> str:
        return ".".join(part for part in (self.catalog, self.schema, self.name) if part)


def _parse(sql: str) -> list[dict[str, Any]]:
    """Serialised ``SELECT`` statements of ``sql`` (others are skipped one by one)."""
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect()
        cur = _parser.cursor()
    try:
        try:
            statements = [s.query for s in cur.extract_statements(sql)]
        except duckdb.Error:
            return []  # a syntax error: running the cell reports it with its position
        out: list[dict[str, Any]] = []
        for stmt in statements:
            row = cur.execute("SELECT json_serialize_sql(?)", [stmt]).fetchone()
            tree = json.loads(row[0]) if row else {}
            if not tree.get("error"):
                out.extend(tree.get("statements", []))
        return out
    finally:
        cur.close()


def table_refs(sql: str) -> tuple[TableRef, ...]:
    """Tables and views ``sql`` reads (sorted, without duplicates), CTE names excluded.

    Never raises: text DuckDB cannot parse has no references (its run reports the error).
    Results are cached by text.
    """
    found = _cache.get(sql)
    if found is not None:
        return found
    refs: set[TableRef] = set()
    for statement in _parse(sql):
        _walk(statement, frozenset(), refs)
    result = tuple(sorted(refs))
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[sql] = result
    return result


def _walk(node: Any, ctes: frozenset[str], out: set[TableRef]) -> None:
    """Collect ``BASE_TABLE`` nodes under ``node``; ``ctes``: CTE names in scope (lower case)."""
    if isinstance(node, list):
        for item in node:
            _walk(item, ctes, out)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        names = {
            str(e.get("key", "")).lower() for e in cte_map.get("map", []) if isinstance(e, dict)
        }
        if names:
            ctes = ctes | names  # visible to the CTE bodies (recursive ones) and the node
    if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
        name, schema = node["table_name"], node.get("schema_name") or ""
        catalog = node.get("catalog_name") or ""
        if schema or catalog or name.lower() not in ctes:
            out.add(TableRef(name, schema, catalog))
    for key, value in node.items():
        if key != "cte_map" and isinstance(value, (dict, list)):
            _walk(value, ctes, out)
    if isinstance(cte_map, dict):
        _walk(cte_map.get("map", []), ctes, out)


_param_cache: dict[str, tuple[str, ...]] = {}


def parameter_names(sql: str) -> tuple[str, ...]:
    """Named parameters (``$name``, without the ``$``) that ``sql`` uses, sorted, without
    duplicates. Positional ones (``?``, ``$1``) are not included (DuckDB reports them unbound).

    Never raises: text DuckDB cannot parse has none. Results are cached by text.
    """
    found = _param_cache.get(sql)
    if found is not None:
        return found
    names: set[str] = set()
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect()
        cur = _parser.cursor()
    try:
        try:
            statements = [s.query for s in cur.extract_statements(sql)]
        except duckdb.Error:
            statements = []
        for stmt in statements:
            row = cur.execute("SELECT json_serialize_sql(?)", [stmt]).fetchone()
            tree = json.loads(row[0]) if row else {}
            if tree.get("error"):
                names |= _token_parameters(stmt)
            else:
                _walk_parameters(tree.get("statements", []), names)
    finally:
        cur.close()
    result = tuple(sorted(n for n in names if n and not n.isdigit()))
    if len(_param_cache) >= _CACHE_MAX:
        _param_cache.clear()
    _param_cache[sql] = result
    return result


def _walk_parameters(node: Any, out: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk_parameters(item, out)
    elif isinstance(node, dict):
        if node.get("type") == "VALUE_PARAMETER" and isinstance(node.get("identifier"), str):
            out.add(node["identifier"])
        for value in node.values():
            if isinstance(value, (dict, list)):
                _walk_parameters(value, out)


def _token_parameters(statement: str) -> set[str]:
    """``$name`` parameters of a statement the serialiser refuses, from DuckDB's tokenizer."""
    try:
        tokens = duckdb.tokenize(statement)
    except duckdb.Error:
        return set()
    out: set[str] = set()
    for (at, kind), nxt in itertools.pairwise(tokens):
        if (
            kind == duckdb.token_type.operator
            and statement[at : at + 1] == "$"
            and nxt[1] in (duckdb.token_type.identifier, duckdb.token_type.keyword)
            and nxt[0] == at + 1
        ):
            end = at + 1
            while end < len(statement) and (statement[end].isalnum() or statement[end] == "_"):
                end += 1
            out.add(statement[at + 1 : end])
    return out


@dataclass(frozen=True)
class CellSql:
    """What the graph needs of a SQL cell: its id, result name and text."""

    id: str
    name: str
    source: str


@dataclass
class Graph:
    """Dependencies between SQL cells, in notebook order.

    ``upstream[c]``: ids of the cells ``c`` reads; ``downstream[c]``: ids of cells reading ``c``;
    ``unresolved[c]``: unqualified names ``c`` reads that no cell defines (they may still be
    the user's own tables); ``order``: every cell id in notebook order.
    """

    order: list[str]
    upstream: dict[str, set[str]] = field(default_factory=dict)
    downstream: dict[str, set[str]] = field(default_factory=dict)
    unresolved: dict[str, set[str]] = field(default_factory=dict)

    def ancestors(self, cell: str) -> set[str]:
        """Every cell ``cell`` reads, directly or not (itself only through a cycle)."""
        return _reach(cell, self.upstream)

    def descendants(self, cell: str) -> set[str]:
        """Every cell that reads ``cell``, directly or not (itself only through a cycle)."""
        return _reach(cell, self.downstream)

    def cycles(self) -> set[str]:
        """Ids of the cells that are part of a dependency cycle."""
        return {c for c in self.order if c in self.ancestors(c)}

    def cycle_of(self, cell: str) -> list[str]:
        """The cells of ``cell``'s cycle, in notebook order (empty when it is in none)."""
        if cell not in self.ancestors(cell):
            return []
        both = self.ancestors(cell) & self.descendants(cell)
        return [c for c in self.order if c in both]

    def topological(self, cells: Iterable[str]) -> list[str]:
        """``cells`` ordered so that every cell comes after the cells it reads (Kahn's
        algorithm; ties in notebook order). Cells in a cycle come last, in notebook order."""
        wanted = set(cells)
        position = {c: i for i, c in enumerate(self.order)}
        pending = {c: {u for u in self.upstream.get(c, set()) if u in wanted} for c in wanted}
        done: list[str] = []
        ready = sorted((c for c, ups in pending.items() if not ups), key=position.__getitem__)
        while ready:
            cell = ready.pop(0)
            done.append(cell)
            del pending[cell]
            for other, ups in pending.items():
                if cell in ups:
                    ups.discard(cell)
                    if not ups and other not in ready:
                        ready.append(other)
            ready.sort(key=position.__getitem__)
        return done + sorted(pending, key=position.__getitem__)


def _reach(start: str, edges: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        cell = todo.pop()
        if cell not in seen:
            seen.add(cell)
            todo.extend(edges.get(cell, ()))
    return seen


def build_graph(cells: Sequence[CellSql], default_catalog: str = "") -> Graph:
    """The dependency graph of ``cells`` (SQL cells in notebook order).

    A reference names a cell when its name equals the cell's result name (case-insensitive)
    and it has no schema, or schema ``main`` with no catalog or ``default_catalog``. When two
    cells share a name, references go to the first. A cell never depends on itself through its
    own name unless it really reads it (``SELECT * FROM me`` in cell ``me`` is a cycle).
    """
    by_name: dict[str, str] = {}
    for cell in cells:
        by_name.setdefault(cell.name.lower(), cell.id)
    graph = Graph(order=[c.id for c in cells])
    for cell in cells:
        ups: set[str] = set()
        missing: set[str] = set()
        for ref in table_refs(cell.source):
            local = not ref.schema or (
                ref.schema.lower() == DEFAULT_SCHEMA
                and ref.catalog.lower() in ("", default_catalog.lower())
            )
            target = by_name.get(ref.name.lower()) if local else None
            if target is not None:
                ups.add(target)
            elif not ref.schema and not ref.catalog:
                missing.add(ref.name)
        graph.upstream[cell.id] = ups
        graph.unresolved[cell.id] = missing
        graph.downstream.setdefault(cell.id, set())
        for up in ups:
            graph.downstream.setdefault(up, set()).add(cell.id)
    return graph
