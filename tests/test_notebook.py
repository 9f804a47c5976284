"""Document operations on the Loro schema."""

import pytest
from loro import ExportMode, LoroDoc

from sqlrooms_nb import notebook as nb
from sqlrooms_nb.errors import CellNotFoundError, ValidationError


@pytest.fixture
def doc():
    d = nb.new_doc()
    nb.ensure_schema(d, title="t")
    d.commit()
    return d


def test_new_document_records_its_schema_version(doc):
    assert doc.get_map("meta").get_deep_value() == {"schema": nb.SCHEMA_VERSION, "title": "t"}
    assert nb.ensure_schema(doc) is False


def test_a_newer_schema_is_refused_not_overwritten():
    d = LoroDoc()
    d.get_map("meta").insert("schema", nb.SCHEMA_VERSION + 1)
    with pytest.raises(ValidationError, match="upgrade"):
        nb.ensure_schema(d)
    assert d.get_map("meta").get_deep_value()["schema"] == nb.SCHEMA_VERSION + 1


def test_add_update_move_delete(doc):
    a = nb.add_cell(doc, "select 1", name="one")
    b = nb.add_cell(doc, "select 2")
    m = nb.add_cell(doc, "# notes", kind="markdown", index=0)
    doc.commit()
    assert [(c.id, c.kind, c.name) for c in nb.read_cells(doc)] == [
        (m, "markdown", ""),
        (a, "sql", "one"),
        (b, "sql", "q1"),
    ]
    nb.update_cell(doc, a, source="select 10", name="ten")
    nb.move_cell(doc, b, 0)
    nb.delete_cell(doc, m)
    doc.commit()
    assert [(c.name, c.source) for c in nb.read_cells(doc)] == [
        ("q1", "select 2"),
        ("ten", "select 10"),
    ]


def test_move_uses_the_movable_list_so_concurrent_edits_follow_the_cell(doc):
    a = nb.add_cell(doc, "select 1", name="a")
    b = nb.add_cell(doc, "select 2", name="b")
    doc.commit()
    other = LoroDoc()
    other.import_(doc.export(ExportMode.Snapshot()))
    nb.move_cell(doc, b, 0)  # here: move b first
    doc.commit()
    nb.update_cell(other, b, source="select 2 + 2")  # there: edit b concurrently
    other.commit()
    doc.import_(other.export(ExportMode.Updates(doc.oplog_vv)))
    cells = nb.read_cells(doc)
    assert [(c.id, c.source) for c in cells] == [(b, "select 2 + 2"), (a, "select 1")]


def test_update_source_is_a_diff_so_concurrent_typing_survives(doc):
    a = nb.add_cell(doc, "select x from t", name="a")
    doc.commit()
    other = LoroDoc()
    other.import_(doc.export(ExportMode.Snapshot()))
    nb.update_cell(doc, a, source="select x, y from t")
    doc.commit()
    text = nb.cell_text(nb.find_cell(other, a)[1])
    text.insert(len("select x from t"), " where x > 1")
    other.commit()
    doc.import_(other.export(ExportMode.Updates(doc.oplog_vv)))
    assert nb.read_cells(doc)[0].source == "select x, y from t where x > 1"


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "drop table x", 'x"', "a" * 64])
def test_bad_cell_names_are_refused(doc, name):
    with pytest.raises(ValidationError):
        nb.add_cell(doc, "select 1", name=name)


def test_bad_kind_and_index_are_refused(doc):
    with pytest.raises(ValidationError):
        nb.add_cell(doc, "x", kind="python")
    with pytest.raises(ValidationError):
        nb.add_cell(doc, "x", index=5)


def test_unknown_cells_raise_cell_not_found(doc):
    with pytest.raises(CellNotFoundError):
        nb.update_cell(doc, "nope", source="x")
    with pytest.raises(CellNotFoundError):
        nb.delete_cell(doc, "nope")


def test_unique_names_skip_taken_ones(doc):
    nb.add_cell(doc, "", name="q1")
    nb.add_cell(doc, "", name="q3")
    assert nb.unique_name(doc) == "q2"


def test_cell_ids_for_containers_maps_texts_to_their_cells(doc):
    a = nb.add_cell(doc, "select 1", name="a")
    b = nb.add_cell(doc, "select 2", name="b")
    doc.commit()
    ta = nb.cell_text(nb.find_cell(doc, a)[1])
    tb = nb.cell_text(nb.find_cell(doc, b)[1])
    meta = doc.get_map("meta").id
    assert nb.cell_ids_for_containers(doc, [tb.id, meta, ta.id, tb.id]) == [b, a]


def test_malformed_items_are_skipped_when_reading(doc):
    nb.cells_list(doc).push("not a map")
    nb.add_cell(doc, "select 1", name="ok")
    doc.commit()
    assert [c.name for c in nb.read_cells(doc)] == ["ok"]
