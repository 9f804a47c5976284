"""The notebook document schema on Loro, and the operations on it.

Schema version 1 (:data:`SCHEMA_VERSION`)::

    meta   LoroMap          {"schema": 1, "title": str}
    cells  LoroMovableList  of LoroMap, one per cell, in display order:
             id      str         stable id, [A-Za-z0-9_-]{1,64}; never changes
             kind    str         "sql" | "markdown" | "chart" | "input"
             name    str         result name of a SQL cell (a SQL identifier, see
                                 :func:`validate_cell_name`); the parameter name of an input
                                 cell (SQL cells read it as ``$name``); "" for markdown and chart
             source  LoroText    the cell's text, edited character by character (a chart
                                 cell's may hold a note; it is not drawn)
             chart   LoroMap     chart cells only (see :class:`ChartSpec`), one entry per
                                 field so concurrent changes to different fields merge:
                       source     str  result name of the SQL cell plotted ("" = none yet)
                       mark       str  "bar" | "line" | "point" | "area"
                       x, y       str  column names ("" = none)
                       color      str  column name ("" = no colour)
                       aggregate  str  "none" | "sum" | "mean" | "count" | "min" | "max"
             input   LoroMap     input cells only (see :class:`InputSpec`), one entry per field:
                       type         str  "text" | "number" | "select"
                       value        str (text, select) | float (number) | None (unset); last
                                    writer wins, as for a form field
                       options_sql  str  select only: a query whose first column gives the
                                    options ("" = none)

Cells are reordered with the movable list's ``mov`` (never delete + insert, which would fork
the cell's identity under concurrency). Results, run state and presence are not in the
document. Text positions in Python are Unicode code points (JS uses UTF-16 units).

These helpers change the document but do not commit: the caller commits, so that one user
action is one Loro change. Nothing here knows about DuckDB or widgets.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NewType, cast

from loro import LoroDoc, LoroMap, LoroMovableList, LoroText

from .errors import CellNotFoundError, ValidationError

SCHEMA_VERSION = 1
CHANGE_MERGE_INTERVAL_S = 10
"""Consecutive commits of a peer within this many seconds merge into one Loro change."""
CellId = NewType("CellId", str)
CellKind = Literal["sql", "markdown", "chart", "input"]
CELL_KINDS: tuple[CellKind, ...] = ("sql", "markdown", "chart", "input")
CHART_MARKS = ("bar", "line", "point", "area")
"""Vega-Lite marks a chart cell can draw."""
CHART_AGGREGATES = ("none", "sum", "mean", "count", "min", "max")
"""Aggregates of a chart's y (``"none"`` plots rows as they are; ``"count"`` ignores y)."""
CHART_FIELDS = ("source", "mark", "x", "y", "color", "aggregate")
"""The entries of a chart cell's ``chart`` map, all strings."""

INPUT_TYPES = ("text", "number", "select")
"""What an input cell shows: a text box, a number box, or a dropdown."""
MAX_INPUT_TEXT = 10_000
"""Longest text value (and options query) an input cell holds, characters."""

InputValue = str | float | None
"""An input cell's value: a string (text, select), a number (number), ``None`` (unset)."""

# \Z, not $: "$" also matches before a trailing newline ("q1\n" passed).
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_CELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


@dataclass(frozen=True)
class Cell:
    """One cell as plain values (a read, not a live handle)."""

    id: CellId
    kind: CellKind
    name: str
    source: str


@dataclass(frozen=True)
class ChartSpec:
    """A chart cell's spec as plain values (see the schema above); ``""`` means unset."""

    source: str = ""
    mark: str = "bar"
    x: str = ""
    y: str = ""
    color: str = ""
    aggregate: str = "none"


@dataclass(frozen=True)
class InputSpec:
    """An input cell's spec as plain values (see the schema above).

    ``value`` is ``None`` when unset; a number input's value is a float (an int stored by
    another replica reads as a float too).
    """

    type: str = "text"
    value: InputValue = ""
    options_sql: str = ""


def new_doc() -> LoroDoc:
    """A Loro document configured the way every replica here is: timestamps recorded.

    The peer id is Loro's random one; never reuse a peer id across sessions (replicas would
    diverge silently after a stale snapshot).
    """
    return configure(LoroDoc())  # type: ignore[no-untyped-call]  # loro's stubs: untyped __new__


def configure(doc: LoroDoc) -> LoroDoc:
    """Apply the per-replica settings (not part of the document, so a ``fork`` lacks them):
    record commit timestamps, and merge a peer's commits into one change only within
    :data:`CHANGE_MERGE_INTERVAL_S`. Returns ``doc``."""
    doc.set_record_timestamp(True)
    # Loro merges a peer's consecutive commits into one change for up to 1000 s by default;
    # history groups edit sessions by pauses of a minute, so changes must be finer than that.
    doc.set_change_merge_interval(CHANGE_MERGE_INTERVAL_S)
    return doc


def ensure_schema(doc: LoroDoc, title: str = "") -> bool:
    """Write ``meta.schema`` (and ``title``) if the document has none yet.

    Returns ``True`` when it wrote something. Raises :class:`ValidationError` if the document
    declares a newer schema than this package understands.
    """
    meta = doc.get_map("meta")
    schema = _value(meta.get("schema"))
    if schema is None:
        meta.insert("schema", SCHEMA_VERSION)
        meta.insert("title", title)
        return True
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ValidationError(
            f"this notebook uses document schema {schema!r}, newer than the {SCHEMA_VERSION} "
            "this sqlrooms_nb understands: upgrade sqlrooms_nb"
        )
    return False


def change_message(author: str, note: str = "") -> str:
    """The Loro change message for a commit: the author's display name, then optionally a
    newline and a note saying what the change was (e.g. ``"restored <version>"``).

    Loro never merges consecutive commits whose messages differ, so a noted change (a
    restore) stays a change of its own.
    """
    return f"{author}\n{note}" if note else author


def split_change_message(message: str | None) -> tuple[str, str]:
    """``(author, note)`` from a change message written by :func:`change_message`."""
    author, _, note = (message or "").partition("\n")
    return author, note


def validate_cell_name(name: str) -> str:
    """Return ``name`` if it is a valid result name, else raise :class:`ValidationError`.

    A result name becomes a DuckDB view name, so it must be a plain identifier:
    a letter or ``_`` then letters, digits or ``_``, at most 63 characters.
    """
    if not isinstance(name, str) or not _CELL_NAME.match(name):
        raise ValidationError(
            f"cell name {name!r} is not valid: use a letter or '_' followed by letters, digits "
            "or '_' (at most 63 characters), e.g. 'flights_per_month'"
        )
    return name


def validate_kind(kind: str) -> CellKind:
    """Return ``kind`` if it is a known cell kind, else raise :class:`ValidationError`."""
    if kind not in CELL_KINDS:
        raise ValidationError(f"cell kind {kind!r} is not one of {CELL_KINDS}")
    return kind


def new_cell_id() -> CellId:
    """A fresh random cell id (12 URL-safe characters, 72 bits)."""
    return CellId(secrets.token_urlsafe(9))


def cells_list(doc: LoroDoc) -> LoroMovableList:
    """The root ``cells`` movable list."""
    return doc.get_movable_list("cells")


def read_cells(doc: LoroDoc) -> list[Cell]:
    """All cells in display order. Items that are not well-formed cell maps are skipped."""
    out: list[Cell] = []
    value = cells_list(doc).get_deep_value()
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        cid, kind = item.get("id"), item.get("kind", "sql")
        if not isinstance(cid, str) or kind not in CELL_KINDS:
            continue
        name, source = item.get("name", ""), item.get("source", "")
        out.append(
            Cell(
                id=CellId(cid),
                kind=kind,
                name=name if isinstance(name, str) else "",
                source=source if isinstance(source, str) else "",
            )
        )
    return out


def unique_name(doc: LoroDoc, prefix: str = "q") -> str:
    """The first of ``q1``, ``q2``... not used as a result name yet."""
    taken = {c.name for c in read_cells(doc)}
    n = 1
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def add_cell(
    doc: LoroDoc,
    source: str = "",
    *,
    name: str | None = None,
    kind: str = "sql",
    index: int | None = None,
    cell_id: str | None = None,
) -> CellId:
    """Insert a cell at ``index`` (0-based; ``None`` appends) and return its id.

    ``name`` defaults to a fresh ``qN`` for SQL cells, a fresh ``pN`` for input cells (their
    parameter name) and ``""`` for markdown and chart cells (a chart cell also gets its
    ``chart`` map, with :class:`ChartSpec` defaults; an input cell its ``input`` map, a text
    input with an empty value).
    Raises :class:`ValidationError` for a bad kind, name, id or index.
    """
    kind = validate_kind(kind)
    if name is None:
        prefix = {"sql": "q", "input": "p"}.get(kind)
        name = unique_name(doc, prefix) if prefix else ""
    elif name or kind in ("sql", "input"):
        validate_cell_name(name)
    cid = CellId(cell_id) if cell_id is not None else new_cell_id()
    if not _CELL_ID.match(cid):
        raise ValidationError(f"cell id {cid!r} is not valid: 1-64 of [A-Za-z0-9_-]")
    cells = cells_list(doc)
    n = len(cells)
    if index is None:
        index = n
    if not isinstance(index, int) or not 0 <= index <= n:
        raise ValidationError(f"index {index!r} is out of range 0..{n}")
    new_map = LoroMap()  # type: ignore[no-untyped-call]
    item = cast(LoroMap, cells.insert_container(index, new_map))
    item.insert("id", cid)
    item.insert("kind", kind)
    item.insert("name", name)
    text = _new_text(item)
    if source:
        text.insert(0, source)
    if kind == "chart":
        # Made with the cell, so two people setting fields later never race to create it.
        chart = cast(LoroMap, item.insert_container("chart", LoroMap()))  # type: ignore[no-untyped-call]
        for key, value in vars(ChartSpec()).items():
            chart.insert(key, value)
    if kind == "input":
        spec = cast(LoroMap, item.insert_container("input", LoroMap()))  # type: ignore[no-untyped-call]
        for key, value in vars(InputSpec()).items():
            spec.insert(key, value)
    return cid


def find_cell(doc: LoroDoc, cell_id: str) -> tuple[int, LoroMap]:
    """``(index, cell map)`` of the cell with id ``cell_id``.

    Raises :class:`CellNotFoundError` if there is none.
    """
    cells = cells_list(doc)
    for i in range(len(cells)):
        item = cells.get(i)
        container = getattr(item, "container", None)
        if isinstance(container, LoroMap) and _value(container.get("id")) == cell_id:
            return i, container
    raise CellNotFoundError(f"no cell with id {cell_id!r} in this notebook")


def cell_text(cell: LoroMap) -> LoroText:
    """The ``source`` LoroText of a cell map (created if a malformed cell lacks one)."""
    got = cell.get("source")
    container = getattr(got, "container", None)
    if isinstance(container, LoroText):
        return container
    return _new_text(cell)


def _new_text(cell: LoroMap) -> LoroText:
    text = LoroText()  # type: ignore[no-untyped-call]  # the loro stubs leave __new__ untyped
    return cast(LoroText, cell.insert_container("source", text))


def update_cell(
    doc: LoroDoc, cell_id: str, *, source: str | None = None, name: str | None = None
) -> None:
    """Change a cell's source and/or name. ``None`` leaves a field as it is.

    The source is changed by a text diff (``LoroText.update``), not replaced, so concurrent
    edits elsewhere in the text survive. Raises :class:`CellNotFoundError`,
    :class:`ValidationError`.
    """
    _, cell = find_cell(doc, cell_id)
    if name is not None:
        if name or _value(cell.get("kind")) in ("sql", "input"):
            validate_cell_name(name)
        cell.insert("name", name)
    if source is not None:
        text = cell_text(cell)
        if text.to_string() != source:
            text.update(source)


def read_chart(doc: LoroDoc, cell_id: str) -> ChartSpec:
    """The chart spec of cell ``cell_id`` (defaults for missing or ill-typed entries).

    Raises :class:`CellNotFoundError`, or :class:`ValidationError` if it is not a chart cell.
    """
    _, cell = find_cell(doc, cell_id)
    _require_chart(cell, cell_id)
    got = cell.get("chart")
    container = getattr(got, "container", None)
    value = container.get_deep_value() if isinstance(container, LoroMap) else None
    got_fields = value if isinstance(value, dict) else {}
    fields: dict[str, str] = {}
    for key, default in vars(ChartSpec()).items():
        entry = got_fields.get(key)
        fields[key] = entry if isinstance(entry, str) else default
    return ChartSpec(**fields)


def set_chart(doc: LoroDoc, cell_id: str, **fields: str) -> None:
    """Set some fields of a chart cell's spec (the keys of :data:`CHART_FIELDS`).

    Each field is its own map entry (only changed ones are written), so people changing
    different fields concurrently all keep their change. ``mark`` must be one of
    :data:`CHART_MARKS`, ``aggregate`` one of :data:`CHART_AGGREGATES`, ``source`` ``""`` or a
    valid result name; ``x`` / ``y`` / ``color`` are column names (checked when the chart's
    data is queried). Raises :class:`CellNotFoundError`, :class:`ValidationError`.
    """
    _, cell = find_cell(doc, cell_id)
    _require_chart(cell, cell_id)
    for key, value in fields.items():
        if key not in CHART_FIELDS:
            raise ValidationError(f"chart field {key!r} is not one of {CHART_FIELDS}")
        if not isinstance(value, str) or len(value) > 256:
            raise ValidationError(f"chart field {key!r} must be a string of at most 256 characters")
    if "mark" in fields and fields["mark"] not in CHART_MARKS:
        raise ValidationError(f"chart mark {fields['mark']!r} is not one of {CHART_MARKS}")
    if "aggregate" in fields and fields["aggregate"] not in CHART_AGGREGATES:
        raise ValidationError(
            f"chart aggregate {fields['aggregate']!r} is not one of {CHART_AGGREGATES}"
        )
    if fields.get("source"):
        validate_cell_name(fields["source"])
    got = cell.get("chart")
    chart = getattr(got, "container", None)
    if not isinstance(chart, LoroMap):
        chart = cast(LoroMap, cell.insert_container("chart", LoroMap()))  # type: ignore[no-untyped-call]
    for key, value in fields.items():
        if _value(chart.get(key)) != value:
            chart.insert(key, value)


def _require_chart(cell: LoroMap, cell_id: str) -> None:
    kind = _value(cell.get("kind"))
    if kind != "chart":
        raise ValidationError(f"cell {cell_id!r} is a {kind} cell, not a chart cell")


def read_input(doc: LoroDoc, cell_id: str) -> InputSpec:
    """The spec of input cell ``cell_id`` (defaults for missing or ill-typed entries).

    Raises :class:`CellNotFoundError`, or :class:`ValidationError` if it is not an input cell.
    """
    _, cell = find_cell(doc, cell_id)
    kind = _value(cell.get("kind"))
    if kind != "input":
        raise ValidationError(f"cell {cell_id!r} is a {kind} cell, not an input cell")
    return _input_spec(cell)


def _input_spec(cell: LoroMap) -> InputSpec:
    container = getattr(cell.get("input"), "container", None)
    value = container.get_deep_value() if isinstance(container, LoroMap) else None
    got = value if isinstance(value, dict) else {}
    type_ = got.get("type")
    type_ = type_ if type_ in INPUT_TYPES else "text"
    options_sql = got.get("options_sql")
    return InputSpec(
        type=type_,
        value=_input_value(got.get("value"), type_),
        options_sql=options_sql if isinstance(options_sql, str) else "",
    )


def _input_value(value: object, type_: str) -> InputValue:
    """A stored value read as the input's type (numbers as float, text as str, else None)."""
    if value is None or isinstance(value, bool):
        return None
    if type_ == "number":
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value) if value.strip() else None
            except ValueError:
                return None
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    if isinstance(value, (int, float)):
        return str(int(value))
    return None


def read_input_cells(doc: LoroDoc) -> list[tuple[str, str, InputSpec]]:
    """``(cell id, parameter name, spec)`` of every input cell, in notebook order."""
    out: list[tuple[str, str, InputSpec]] = []
    cells = cells_list(doc)
    for i in range(len(cells)):
        container = getattr(cells.get(i), "container", None)
        if not isinstance(container, LoroMap) or _value(container.get("kind")) != "input":
            continue
        cid, name = _value(container.get("id")), _value(container.get("name"))
        if isinstance(cid, str):
            out.append((cid, name if isinstance(name, str) else "", _input_spec(container)))
    return out


def read_inputs(doc: LoroDoc) -> dict[str, InputSpec]:
    """Every input cell's spec by parameter name (the first cell wins when two share a name)."""
    out: dict[str, InputSpec] = {}
    for _, name, spec in read_input_cells(doc):
        if name and name not in out:
            out[name] = spec
    return out


UNSET: Any = object()
"""Default of :func:`set_input`'s ``value``: leave the value as it is."""


def set_input(
    doc: LoroDoc,
    cell_id: str,
    *,
    type: str | None = None,
    value: InputValue = UNSET,
    options_sql: str | None = None,
) -> None:
    """Set fields of an input cell's spec (``None`` / unset leaves ``type`` and
    ``options_sql`` as they are; ``value=None`` clears the value).

    ``type`` must be one of :data:`INPUT_TYPES`; a number input's value must be a finite
    number (a numeric string is converted), a text or select input's a string (numbers are
    converted); strings hold at most :data:`MAX_INPUT_TEXT` characters. Changing ``type``
    alone converts the current value (``"12"`` -> ``12.0``; text that is not a number ->
    ``None``). Only changed entries are written. Raises :class:`CellNotFoundError`,
    :class:`ValidationError`.
    """
    _, cell = find_cell(doc, cell_id)
    current = read_input(doc, cell_id)
    if type is not None and type not in INPUT_TYPES:
        raise ValidationError(f"input type {type!r} is not one of {INPUT_TYPES}")
    new_type = type or current.type
    if options_sql is not None and (
        not isinstance(options_sql, str) or len(options_sql) > MAX_INPUT_TEXT
    ):
        raise ValidationError(
            f"options_sql must be a string of at most {MAX_INPUT_TEXT} characters"
        )
    fields: dict[str, Any] = {}
    if type is not None:
        fields["type"] = type
    if options_sql is not None:
        fields["options_sql"] = options_sql
    if value is not UNSET:
        fields["value"] = _checked_value(value, new_type)
    elif type is not None and type != current.type:
        fields["value"] = _input_value(current.value, new_type)
    container = getattr(cell.get("input"), "container", None)
    if not isinstance(container, LoroMap):
        container = cast(LoroMap, cell.insert_container("input", LoroMap()))  # type: ignore[no-untyped-call]
    for key, entry in fields.items():
        got = container.get(key)
        old = _value(got)
        if got is None or old != entry or _type_name(old) != _type_name(entry):
            container.insert(key, entry)


def _type_name(value: object) -> str:
    """The type's name (so ``1`` and ``1.0`` count as different stored values)."""
    return type(value).__name__


def _checked_value(value: object, type_: str) -> InputValue:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError("an input value must be a string or a number, not a bool")
    if type_ == "number":
        if isinstance(value, str):
            text = value
            try:
                value = float(text)
            except ValueError:
                raise ValidationError(
                    f"{text[:40]!r} is not a number: a number input takes a number"
                ) from None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(f"a number input's value must be a finite number, not {value!r}")
        return float(value)
    if isinstance(value, (int, float)):
        value = _input_value(value, "text")
    if not isinstance(value, str) or len(value) > MAX_INPUT_TEXT:
        raise ValidationError(
            f"a {type_} input's value must be a string of at most {MAX_INPUT_TEXT} characters"
        )
    return value


def move_cell(doc: LoroDoc, cell_id: str, index: int) -> None:
    """Move a cell to ``index`` (0-based position after the move) with the list's ``mov``."""
    i, _ = find_cell(doc, cell_id)
    n = len(cells_list(doc))
    if not isinstance(index, int) or not 0 <= index < n:
        raise ValidationError(f"index {index!r} is out of range 0..{n - 1}")
    if i != index:
        cells_list(doc).mov(i, index)


def delete_cell(doc: LoroDoc, cell_id: str) -> None:
    """Delete a cell. Raises :class:`CellNotFoundError`."""
    i, _ = find_cell(doc, cell_id)
    cells_list(doc).delete(i, 1)


def cell_ids_for_containers(doc: LoroDoc, container_ids: Iterable[Any]) -> list[str]:
    """Ids of the cells that contain the given Loro containers (in the current state).

    Used to say which cells a change touched. Containers of deleted cells, and containers
    outside ``cells`` (e.g. ``meta``), contribute nothing. Order follows first appearance.
    """
    cells = cells_list(doc)
    found: dict[str, None] = {}
    for cid in container_ids:
        try:
            path = doc.get_path_to_container(cid)
        except BaseException:  # loro raises BaseException subclasses for unknown containers
            continue
        if not path or len(path) < 2:
            continue
        index = getattr(path[1][1], "index", None)  # ("cells", Seq(index)) on the path
        if not isinstance(index, int) or index >= len(cells):
            continue
        item = cells.get(index)
        container = getattr(item, "container", None)
        if isinstance(container, LoroMap):
            value = _value(container.get("id"))
            if isinstance(value, str):
                found.setdefault(value, None)
    return list(found)


def _value(got: Any) -> Any:
    """Plain value from a ``LoroMap.get`` result (``ValueOrContainer`` or ``None``)."""
    if got is None:
        return None
    return getattr(got, "value", None)
