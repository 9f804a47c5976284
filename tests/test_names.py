"""Names and paths (issue 6, part 6): room ids, branch, tag and cell names are checked before
they reach SQL or a file; injection strings, ``../`` and friends get a clear error through the
Python API, the wire protocol and the command line, and the lake is intact afterwards."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from loro import VersionVector

from sqlrooms_nb import SqlRoom, names
from sqlrooms_nb import export as ex
from sqlrooms_nb import notebook as nb
from sqlrooms_nb import protocol as p
from sqlrooms_nb.cli import main as cli
from sqlrooms_nb.errors import ProtocolError, ValidationError
from sqlrooms_nb.query import quote_ident
from sqlrooms_nb.store import Branch, Lake, add_tag, create_branch, parse_lake
from sqlrooms_nb.store.config import s3_secret_sql
from sqlrooms_nb.store.lake import quote_ident as lake_quote_ident

from .fakes import FakeView

BAD_NAMES = [
    "x'; drop table updates; --",
    "x' OR '1'='1",
    '"',
    'a"b',
    ";",
    "a;b",
    "m\u0430in",  # Cyrillic a: looks like "main"
    "\uff4d\uff41\uff49\uff4e",  # fullwidth "main"
    "a" * 10_000,
    "a" * 129,
    "a\x00b",
    "\x00",
    "../../etc/passwd",
    "..",
    ".",
    "...",
    "a/b",
    "a\\b",
    "",
    " ",
    " main",
    "main ",
    "main\n",
    "ma\nin",
    "tab\there",
    "\u202emain",  # right-to-left override
    "main\u200b",  # zero-width space
]
GOOD_NAMES = ["main", "sales-review", "a.b_c-1", "x" * 128, ".hidden", "a..b", "v1.2"]
BAD_CELL_NAMES = [
    "x'; drop table t; --",
    'x"; drop table t; --',
    "a b",
    "1abc",
    "q1\n",
    "a\x00",
    "a" * 64,
    "\uff58",  # fullwidth x
    "",
    "../x",
]


def lake_state(folder: Path) -> dict[str, int]:
    """Every table of the project in the lake and its row count."""
    lake = Lake.open(folder)
    try:
        cur = lake.cursor()
        tables = [
            row[0]
            for row in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' "
                "AND schema_name = 'sqlrooms_nb' ORDER BY table_name"
            ).fetchall()
        ]
        out = {
            t: int(cur.execute(f"SELECT count(*) FROM {lake.table(t)}").fetchone()[0])
            for t in tables
        }
        cur.close()
    finally:
        lake.release()
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("names") / "lake"


@pytest.fixture(scope="module")
def room(folder: Path) -> Iterator[SqlRoom]:
    """A room with two SQL cells, a branch and a tag, saved."""
    with SqlRoom("names", lake=folder) as opened:
        opened.add_cell("select 1 as x", name="one")
        opened.add_cell("select x + 1 as y from one", name="two")
        opened.branch("what-if")
        opened.tag("v1")
        opened.flush()
        yield opened


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_every_bad_name_gets_a_short_clear_validation_error(bad: str) -> None:
    for validate in (names.validate_room_id, names.validate_branch_name, names.validate_tag_name):
        with pytest.raises(ValidationError) as raised:
            validate(bad)
        message = str(raised.value)
        assert "is not valid" in message and "ASCII letters, digits" in message
        assert len(message) < 400  # a 10,000-character name is not echoed whole
        assert "\n" not in message and "\x00" not in message  # control characters escaped
    assert not names.is_valid_name(bad)


def test_good_names_pass_unchanged() -> None:
    for good in GOOD_NAMES:
        assert names.validate_name(good, "name") == good


def test_the_messages_say_what_is_wrong() -> None:
    cases = {
        "": "is empty",
        "a" * 200: "is 200 characters long",
        "..": "is only dots",
        "a/b": "holds '/'",
        "main\n": "holds '\\n'",
        "m\u0430in": "holds '\u0430'",
    }
    for name, says in cases.items():
        with pytest.raises(ValidationError, match=None) as raised:
            names.validate_name(name, "branch name")
        assert says in str(raised.value), (name, str(raised.value))
    with pytest.raises(ValidationError, match="is a int"):
        names.validate_name(7, "room id")


def test_the_protocol_branch_pattern_agrees_with_the_names_rule() -> None:
    for name in [*BAD_NAMES, *GOOD_NAMES]:
        assert (p._NAME.match(name) is not None) == names.is_valid_name(name), repr(name)


@pytest.mark.parametrize("bad", BAD_CELL_NAMES, ids=range(len(BAD_CELL_NAMES)))
def test_every_bad_cell_name_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="cell name"):
        nb.validate_cell_name(bad)


def test_sql_quoting_refuses_a_nul_and_doubles_quotes() -> None:
    for quote in (quote_ident, lake_quote_ident):
        assert quote('a"; drop table t; --') == '"a""; drop table t; --"'
        with pytest.raises(ValidationError, match="NUL"):
            quote("a\x00b")
    con = duckdb.connect()
    con.execute("create table t (x int)")
    name = quote_ident('v"; drop table t; --')
    con.execute(f"create view {name} as select 1 as x")
    assert con.execute("select count(*) from t").fetchone() == (0,)  # t is still there


def test_names_spliced_into_lake_sql_must_be_plain_identifiers(tmp_path: Path) -> None:
    config = parse_lake(str(tmp_path / "lake"))
    assert config.attach_sql("lake").startswith("ATTACH IF NOT EXISTS 'ducklake:sqlite:")
    for bad in ["lake; drop table x", 'lake"', "", "1lake"]:
        with pytest.raises(ValidationError, match="plain SQL identifier"):
            config.attach_sql(bad)
        with pytest.raises(ValidationError, match="plain SQL identifier"):
            s3_secret_sql(config, bad)


def test_lake_strings_with_control_characters_are_refused(tmp_path: Path) -> None:
    for text in [f"{tmp_path}/a\x00b", "postgres:host=a\x00 dbname=b?data=/tmp/x", "x\ny"]:
        with pytest.raises(ValidationError, match="control characters"):
            parse_lake(text)
    assert not any(tmp_path.iterdir())  # nothing created


# --- the Python API ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_python_api_refuses_bad_names_and_leaves_the_lake_as_it_was(
    room: SqlRoom, folder: Path, tmp_path: Path
) -> None:
    before = lake_state(folder)
    cells = room.cells
    calls: dict[str, Callable[[str], Any]] = {
        "SqlRoom(room_id)": lambda bad: SqlRoom(bad, lake=tmp_path / "never"),
        "SqlRoom(branch=)": lambda bad: SqlRoom("names", lake=tmp_path / "never", branch=bad),
        "branch(name)": lambda bad: room.branch(bad),
        "branch(source=)": lambda bad: room.branch("fine", source=bad),
        "checkout_branch": lambda bad: room.checkout_branch(bad),
        "tag": lambda bad: room.tag(bad),
        "merge(source)": lambda bad: room.merge(bad),
        "merge(into=)": lambda bad: room.merge("what-if", into=bad),
        "merge_preview": lambda bad: room.merge_preview(bad),
    }
    for what, call in calls.items():
        for bad in BAD_NAMES:
            with pytest.raises(ValidationError, match="is not valid"):
                call(bad)
                pytest.fail(f"{what} accepted {bad!r:.40}")
    for bad in BAD_CELL_NAMES:
        with pytest.raises(ValidationError, match="cell name"):
            room.add_cell("select 3", name=bad)
        with pytest.raises(ValidationError, match="cell name"):
            room.update_cell(cells[0].id, name=bad)
    assert not (tmp_path / "never").exists()  # refused before any lake was made
    room.flush()
    assert lake_state(folder) == before
    assert room.cells == cells and room.current_branch == "main"
    assert [b.name for b in room.branches()] == ["main", "what-if"]


@pytest.mark.timeout(60)
def test_the_store_refuses_bad_names_too(room: SqlRoom, folder: Path) -> None:
    """Defence in depth: the lake's own writers check names before any SQL."""
    before = lake_state(folder)
    lake = Lake.open(folder)
    try:
        for bad in BAD_NAMES:
            with pytest.raises(ValidationError):
                add_tag(lake, "names", "main", bad, room.version, "ana")
            with pytest.raises(ValidationError):
                add_tag(lake, bad, "main", "t", room.version, "ana")
            with pytest.raises(ValidationError):
                create_branch(lake, Branch(bad, "main", room.version), "names", None)  # type: ignore[arg-type]
    finally:
        lake.release()
    assert lake_state(folder) == before


# --- the wire protocol ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_protocol_messages_with_bad_names_get_an_error_reply_and_change_nothing(
    room: SqlRoom, folder: Path
) -> None:
    before = lake_state(folder)
    doc_before = room.doc.get_deep_value()
    sent: list[dict[str, Any]] = []
    disconnect = room.connect(lambda content, buffers: sent.append(content))
    messages: list[tuple[dict[str, Any], list[bytes]]] = []
    for bad in BAD_NAMES:
        vv = [VersionVector().encode()]
        messages += [
            ({"kind": "hello", "branch": bad}, vv),
            ({"kind": "branch", "id": "r1", "name": bad}, []),
            ({"kind": "branch", "id": "r2", "name": "fine", "source": bad}, []),
            ({"kind": "merge", "id": "r3", "source": bad, "into": "main", "preview": True}, []),
            ({"kind": "merge", "id": "r4", "source": "what-if", "into": bad, "preview": False}, []),
            ({"kind": "history", "id": "r5", "branch": bad}, []),
            ({"kind": "run", "id": "r6", "cell": bad}, []),
        ]
    for i, (content, buffers) in enumerate(messages):
        view = f"v{i}"  # (one view per message: the per-view rate limit stays out of it)
        with pytest.raises(ProtocolError):
            p.decode_client({"view": view, **content}, buffers)
        room.receive({"view": view, **content}, buffers)
        replies = [m for m in sent if m.get("to") == view]
        assert [m["kind"] for m in replies] == ["error"], (content, replies)
        assert replies[0]["code"] == "protocol" and "field" in replies[0]["message"]
    disconnect()
    room.flush()
    assert lake_state(folder) == before
    assert room.doc.get_deep_value() == doc_before
    assert [b.name for b in room.branches()] == ["main", "what-if"]


@pytest.mark.timeout(120)
def test_a_cell_name_set_through_the_document_never_reaches_sql_unchecked(room: SqlRoom) -> None:
    """A view can write any name into the CRDT; running the cell refuses it before DuckDB."""
    con = room._con
    con.execute("create table if not exists victim (x int)")
    view = FakeView(room, "v2")
    view.hello()
    view.pump()
    cell = room.add_cell("select 42 as x", name="ok")
    view.pump()

    def rename(doc: Any) -> None:
        _, item = nb.find_cell(doc, cell)
        item.insert("name", 'ok"; drop table victim; --')

    view.edit(rename)
    view.pump()
    assert [c.name for c in room.cells if c.id == cell] == ['ok"; drop table victim; --']
    view.received.clear()
    room.receive({"view": "v2", "kind": "run", "id": "r9", "cell": cell}, [])
    error = view.wait_for("error", "r9", timeout_s=30)
    assert error["code"] == "invalid" and "cell name" in error["message"]
    assert con.execute("select count(*) from victim").fetchone() == (0,)
    room.delete_cell(cell)


def test_names_written_into_the_document_cannot_inject_code_into_exports() -> None:
    """Exports put cell names in comments and in quoted identifiers; a name with line
    breaks must neither end a comment nor leave the quotes: the generated file holds exactly
    the statements and imports it would hold with a plain name."""
    doc = nb.new_doc()
    nb.ensure_schema(doc)
    cell = nb.add_cell(doc, "select $missing as x", name="q1")
    _, item = nb.find_cell(doc, cell)
    evil = "q1\nimport os; os.system('echo pwned')\r\n;drop table t;\u2028x"
    item.insert("name", evil)
    doc.commit()
    notebook = ex.from_doc(doc, room="r", branch="main")
    sql = ex.export(notebook, "sql")
    statements = duckdb.extract_statements(sql)
    assert [s.type for s in statements] == [duckdb.StatementType.CREATE]  # one view, no DROP
    comments = [line for line in sql.splitlines() if line.startswith("-- cell")]
    assert comments and "import os" in comments[0]  # the name stays inside the comment
    tree = ast.parse(ex.export(notebook, "marimo"))
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import)]
    imported = {alias.name for node in imports for alias in node.names}
    assert imported == {"marimo"}  # no "os"
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    assert not any(node.attr == "system" for node in calls)


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_cli_refuses_bad_names_and_paths_with_exit_2_and_changes_nothing(
    room: SqlRoom, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    room.flush()
    before = lake_state(folder)
    lake = str(folder)
    for bad in [*BAD_NAMES[::3], "../../etc/passwd", "..", "a\x00b"]:
        for argv in (
            ["--lake", lake, "history", bad],
            ["--lake", lake, "export", bad, "--format", "json"],
            ["--lake", lake, "history", "names", "--branch", bad],
            ["--lake", lake, "export", "names", "--format", "sql", "--branch", bad],
        ):
            assert cli(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("sqlrooms-nb: error:") and "is not valid" in err, err
            assert "Traceback" not in err
    out = tmp_path / "out\x00.sql"
    assert cli(["--lake", lake, "export", "names", "--format", "sql", "-o", str(out)]) == 2
    assert "control character" in capsys.readouterr().err
    assert cli(["--lake", f"{tmp_path}/x\x00", "rooms"]) == 2
    assert "control characters" in capsys.readouterr().err
    assert lake_state(folder) == before
    assert not list(tmp_path.iterdir())
