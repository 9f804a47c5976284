"""Protocol fuzzing with hypothesis: the decoder and the kernel's message handler.

- ``decode_client`` on arbitrary JSON-like content and buffers either decodes or raises a
  :class:`ProtocolError` (never anything else, never a crash);
- ``SqlRoom.receive`` on arbitrary messages — random ones, and valid messages with fields
  dropped, replaced or retyped and Loro blobs truncated, bit-flipped or sent out of order —
  from one view never raises, answers every refusal with an ``error`` addressed to that view,
  leaves the document (oplog version vector and cells) unchanged unless it relayed an update,
  and a second view keeps working throughout.

Sizes: CI runs a few hundred examples per test with a fixed seed (``derandomize``), the slow
suite 10,000 each with random seeds (hypothesis prints the seed of a failure). Each test prints
how many cases ran and how long they took.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loro import ExportMode, LoroDoc

import sqlrooms_nb as snb
from sqlrooms_nb import notebook as nb
from sqlrooms_nb import protocol as p
from sqlrooms_nb.errors import ProtocolError
from sqlrooms_nb.ratelimit import RateLimiter

from .fakes import FakeView

CI_EXAMPLES = 300
SLOW_EXAMPLES = 10_000


def fuzz_settings(slow: bool, ci_examples: int = CI_EXAMPLES) -> settings:
    return settings(
        max_examples=SLOW_EXAMPLES if slow else ci_examples,
        derandomize=not slow,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# --- strategies ----------------------------------------------------------------------------------

KEYS = [
    *("kind", "view", "id", "cell", "offset", "limit", "sort", "branch", "version", "name"),
    *("source", "into", "preview", "format", "cascade", "author", "at", "column", "desc"),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(p.CLIENT_KINDS)
    | st.sampled_from(["a", "v1", "main", "x" * 64, "x" * 65, "../etc", "", "ok"])
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
binary = st.binary(max_size=64) | st.sampled_from([b"", b"loro", b"\x00" * 9])
buffers = st.none() | st.lists(
    binary | st.sampled_from([bytearray(b"ab"), memoryview(b"xyz")]), max_size=4
)
odd_buffers = st.lists(st.one_of(binary, st.integers(), st.text(max_size=3), st.none()), max_size=3)


VALID_FIELDS: dict[str, Any] = {
    "view": "v", "id": "r1", "cell": "c1", "offset": 3, "limit": 10, "version": "AQID",
    "name": "what-if", "source": "main", "into": "main", "preview": True, "format": "csv",
    "cascade": False, "author": "ana", "at": "AQID", "branch": "main",
    "sort": [{"column": "x", "desc": True}],
}  # fmt: skip


@st.composite
def client_content(draw: st.DrawFn) -> Any:
    """A well-formed message with a few fields dropped or replaced, a message-shaped dict
    (known kind, random fields), or anything JSON-like."""
    shape = draw(st.integers(0, 2))
    if shape == 0:
        content = {"kind": draw(st.sampled_from(p.CLIENT_KINDS)), **VALID_FIELDS}
        for key in draw(st.lists(st.sampled_from(sorted(VALID_FIELDS)), max_size=3)):
            if draw(st.booleans()):
                content.pop(key, None)
            else:
                content[key] = draw(json_like)
        return content
    if shape == 1:
        return draw(json_like)
    content = draw(st.dictionaries(st.sampled_from(KEYS), json_like, max_size=8))
    content["kind"] = draw(st.sampled_from(p.CLIENT_KINDS) | scalars)
    if draw(st.booleans()):
        content["view"] = draw(st.sampled_from(["v", "fuzz"]) | scalars)
    return content


@pytest.mark.timeout(3600)
def test_decode_client_raises_only_protocol_errors(slow):
    cases = {"n": 0, "decoded": 0}

    @fuzz_settings(slow)
    @given(
        content=client_content(),
        bufs=buffers | odd_buffers | st.lists(binary, min_size=1, max_size=1),
    )
    def check(content: Any, bufs: Any) -> None:
        cases["n"] += 1
        try:
            message = p.decode_client(content, bufs)
        except ProtocolError as exc:
            assert str(exc)
            return
        cases["decoded"] += 1
        assert message.kind in p.CLIENT_KINDS
        assert isinstance(content, dict) and content["view"] == message.view

    start = time.perf_counter()
    check()
    print(f"\ndecode_client: {cases['n']} cases ({cases['decoded']} decoded) in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    assert cases["n"] >= (SLOW_EXAMPLES if slow else CI_EXAMPLES) // 2


# --- the kernel's message handler ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_room(tmp_path_factory):
    lake = tmp_path_factory.mktemp("fuzz") / "lake"
    with snb.SqlRoom("fuzz", lake=str(lake), author="ana") as room:
        room.add_cell("select 1 as x", name="one")
        room.add_cell("# notes", kind="markdown")
        # The fuzz is about decoding and handling, not flooding: no rate limit here.
        room._limiter = RateLimiter(messages_per_s=1e12, message_burst=1e12)
        yield room


def _templates(room: snb.SqlRoom, fuzz: FakeView) -> list[tuple[dict[str, Any], list[bytes]]]:
    """Valid messages of every kind from view ``fuzz`` (to be mutated)."""
    cid = room.cells[0].id
    version = room.version
    before = fuzz.doc.oplog_vv
    nb.cell_text(nb.find_cell(fuzz.doc, cid)[1]).insert(0, "-- f\n")
    fuzz.doc.commit()
    mid = fuzz.doc.oplog_vv
    nb.cell_text(nb.find_cell(fuzz.doc, cid)[1]).insert(0, "-- g\n")
    fuzz.doc.commit()
    first = fuzz.doc.export(ExportMode.Updates(before))
    second = fuzz.doc.export(ExportMode.Updates(mid))  # a gap without `first`
    fuzz.presence.set("fuzz", {"name": "f"})
    return [
        ({"kind": "hello"}, [fuzz.doc.oplog_vv.encode()]),
        ({"kind": "update"}, [second]),
        ({"kind": "update"}, [first, second]),
        ({"kind": "ping", "id": "r1"}, []),
        ({"kind": "awareness"}, [fuzz.presence.encode("fuzz")]),
        ({"kind": "history", "id": "r2", "offset": 0, "limit": 5}, []),
        ({"kind": "preview", "id": "r3", "version": version}, []),
        (
            {
                "kind": "page",
                "id": "r4",
                "cell": cid,
                "offset": 0,
                "limit": 10,
                "sort": [{"column": "x", "desc": True}],
            },
            [],
        ),
        ({"kind": "export", "id": "r5", "cell": cid, "format": "csv"}, []),
        ({"kind": "chart_data", "id": "r6", "cell": cid}, []),
        ({"kind": "merge", "id": "r7", "source": "main", "into": "main", "preview": True}, []),
        ({"kind": "cancel", "id": "r8", "cell": "nope"}, []),
    ]


@st.composite
def mutated_blob(draw: st.DrawFn, blob: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "insert", "splice"]))
    if how == "truncate":
        return blob[: draw(st.integers(0, max(0, len(blob) - 1)))]
    at = draw(st.integers(0, len(blob) - 1))
    if how == "flip":
        out = bytearray(blob)
        out[at] ^= draw(st.integers(1, 255))
        return bytes(out)
    if how == "insert":
        return blob[:at] + draw(st.binary(min_size=1, max_size=8)) + blob[at:]
    return blob[:at] + blob[at + draw(st.integers(1, 16)) :]


@st.composite
def fuzz_message(draw: st.DrawFn, templates: list[tuple[dict[str, Any], list[bytes]]]) -> Any:
    """A message from view "fuzz": random, or a template mutated."""
    if draw(st.integers(0, 4)) == 0:
        content = draw(client_content())
        if isinstance(content, dict) and draw(st.booleans()):
            content["view"] = "fuzz"
        return content, draw(buffers)
    content, bufs = templates[draw(st.integers(0, len(templates) - 1))]
    content = {**content, "view": "fuzz"}
    bufs = list(bufs)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "set", "blob", "buffers", "none"]))
        if how == "drop" and content:
            content.pop(draw(st.sampled_from(sorted(content))))
        elif how == "set":
            content[draw(st.sampled_from(KEYS))] = draw(json_like)
        elif how == "blob" and bufs and bufs[0]:
            i = draw(st.integers(0, len(bufs) - 1))
            if bufs[i]:
                bufs[i] = draw(mutated_blob(bufs[i]))
        elif how == "buffers":
            bufs = draw(st.lists(binary, max_size=3))
    return content, bufs


@pytest.mark.timeout(3600)
def test_the_kernel_survives_any_message_and_bad_ones_change_nothing(fuzz_room, slow):
    room = fuzz_room
    fuzz, good = FakeView(room, "fuzz"), FakeView(room, "good")
    for v in (fuzz, good):
        v.hello()
        v.pump()
    templates = _templates(room, fuzz)
    relayed: list[str] = []
    room.connect(lambda c, b: relayed.append(c["kind"]) if c["kind"] == "update" else None)
    cases = {"n": 0, "refused": 0, "changed": 0}

    def state() -> tuple[bytes, list[Any]]:
        room.doc.commit()
        return room.doc.oplog_vv.encode(), nb.read_cells(room.doc)

    @fuzz_settings(slow)
    @given(message=fuzz_message(templates))
    def check(message: Any) -> None:
        content, bufs = message
        cases["n"] += 1
        before = state()
        relayed.clear()
        fuzz.inbox.clear()
        room.receive(content, bufs)  # must never raise
        after = state()
        errors = [
            c
            for c, _ in fuzz.inbox
            if c["kind"] == "error"  # not the outcome of a run, which every view gets
            and not ("to" not in c and c.get("code") in ("query", "cancelled", "storage"))
            # nor a reader thread's late answer to an earlier message of another view
            and c.get("to") in (None, "fuzz")
        ]
        for error in errors:  # addressed to the sender when it named itself
            assert error["code"] and error["message"]
            if p.view_of(content) == "fuzz":
                assert error.get("to") == "fuzz", error
        if errors:
            cases["refused"] += 1
        if not relayed:  # nothing was imported: the document must be exactly as before
            assert after == before, (content, errors)
        else:
            cases["changed"] += 1
        if cases["n"] % 50 == 0:  # the other view still works
            _check_good_view(room, good, cases["n"])

    start = time.perf_counter()
    check()
    elapsed = time.perf_counter() - start
    _check_good_view(room, good, -1)
    print(f"\nSqlRoom.receive: {cases['n']} cases ({cases['refused']} answered by an error, "
          f"{cases['changed']} changed the document) in {elapsed:.1f} s")  # fmt: skip
    assert cases["n"] >= (SLOW_EXAMPLES if slow else CI_EXAMPLES) // 2
    assert cases["refused"] > 0


def _check_good_view(room: snb.SqlRoom, good: FakeView, n: int) -> None:
    good.pump()
    good.received.clear()
    good.send({"kind": "ping", "id": f"alive{n}"})
    good.pump()
    assert [m["kind"] for m in good.received if m.get("to") == "good"] == ["pong"]
    cid = nb.read_cells(good.doc)[0].id
    good.edit(lambda d: nb.cell_text(nb.find_cell(d, cid)[1]).insert(0, "."))
    good.pump()
    room.doc.commit()
    assert room.doc.oplog_vv.includes_vv(good.doc.oplog_vv)
    assert [m for m in good.received if m["kind"] == "error" and m.get("to") == "good"] == []


@pytest.mark.timeout(3600)
def test_gap_blobs_are_never_imported_whatever_their_order(fuzz_room, slow):
    """Random batches of one peer's consecutive updates, some left out: what the kernel imports
    is exactly the prefix it can apply, nothing is left pending, the rest is refused."""
    room = fuzz_room
    cases = {"n": 0}

    @fuzz_settings(slow, ci_examples=100)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        cases["n"] += 1
        writer = LoroDoc()
        writer.import_(room.doc.export(ExportMode.Snapshot()))
        cid = nb.read_cells(writer)[0].id
        blobs = []
        for i in range(data.draw(st.integers(2, 6))):
            mark = writer.oplog_vv
            nb.cell_text(nb.find_cell(writer, cid)[1]).insert(0, f"{i}")
            writer.commit()
            blobs.append(writer.export(ExportMode.Updates(mark)))
        keep = data.draw(st.lists(st.integers(0, len(blobs) - 1), min_size=1, unique=True))
        batch = [blobs[i] for i in data.draw(st.permutations(keep))]
        sent = sorted(keep)
        prefix = 0
        while prefix < len(blobs) and prefix in sent:
            prefix += 1
        view = FakeView(room, "gapper")
        room.receive({"kind": "update", "view": "gapper"}, batch)
        codes = [c.get("code") for c, _ in view.inbox if c["kind"] == "error"]
        view.disconnect()
        room.doc.commit()
        assert room.doc.export_pending_updates() is None
        expected = LoroDoc()
        expected.import_(room.doc.export(ExportMode.Snapshot()))
        applied = writer.fork()
        del applied
        have = room.doc.oplog_vv
        for i, blob in enumerate(blobs):
            end = LoroDoc.decode_import_blob_meta(blob, False).partial_end_vv
            assert have.includes_vv(end) == (i < prefix), (i, prefix, sent)
        assert codes == ([] if prefix == len(sent) else ["resync"])

    check()
    print(f"\ngap batches: {cases['n']} cases")
