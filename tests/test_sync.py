"""The sync core: handshake and steady state between the kernel's hub and Loro peers."""

import pytest
from loro import ExportMode, LoroDoc, VersionVector

from sqlrooms_nb import notebook as nb
from sqlrooms_nb import protocol as p
from sqlrooms_nb.errors import ProtocolError
from sqlrooms_nb.sync import SyncHub


class Peer:
    """A view as the browser runs it (same steps as js/sync.ts), on Python's Loro."""

    def __init__(self, name: str, doc: LoroDoc | None = None):
        self.view = p.ViewId(name)
        self.doc = doc or LoroDoc()

    def hello(self) -> p.Hello:
        return p.Hello(view=self.view, version=self.doc.oplog_vv.encode())

    def on_welcome(self, welcome: p.Welcome) -> p.ClientUpdate | None:
        assert welcome.to == self.view
        if welcome.missing:
            self.doc.import_(welcome.missing)
        ahead = self.doc.export(ExportMode.Updates(VersionVector.decode(welcome.version)))
        if LoroDoc.decode_import_blob_meta(ahead, False).change_num == 0:
            return None
        return p.ClientUpdate(view=self.view, updates=(ahead,))

    def edit(self, text: str) -> p.ClientUpdate:
        before = self.doc.oplog_vv
        t = self.doc.get_text("t")
        t.insert(t.len_unicode, text)
        self.doc.commit()
        return p.ClientUpdate(
            view=self.view, updates=(self.doc.export(ExportMode.Updates(before)),)
        )


class Kernel:
    def __init__(self):
        self.doc = LoroDoc()
        self.saved = VersionVector()
        self.imported: list[tuple[int, int]] = []
        self.hub = SyncHub(
            self.doc,
            "r",
            "main",
            saved_version=lambda: self.saved,
            on_imported=lambda c, n: self.imported.append((c, n)),
        )

    def text(self) -> str:
        return self.doc.get_text("t").to_string()


def handshake(kernel: Kernel, peer: Peer) -> list[p.ServerMessage]:
    [welcome] = kernel.hub.handle(peer.hello())
    assert isinstance(welcome, p.Welcome)
    reply = peer.on_welcome(welcome)
    return kernel.hub.handle(reply) if reply else []


def test_an_empty_peer_receives_everything():
    k = Kernel()
    k.doc.get_text("t").insert(0, "kernel text")
    k.doc.commit()
    peer = Peer("empty")
    relayed = handshake(k, peer)
    assert peer.doc.get_text("t").to_string() == "kernel text"
    assert relayed == [] and k.imported == []


def test_a_peer_ahead_sends_what_the_kernel_lacks_and_it_is_relayed():
    k = Kernel()
    peer = Peer("ahead")
    peer.edit("typed offline")
    relayed = handshake(k, peer)
    assert k.text() == "typed offline"
    assert [type(m) for m in relayed] == [p.ServerUpdate]
    assert relayed[0].origin == "ahead"
    assert k.imported and k.imported[0][0] == 1


def test_a_peer_behind_catches_up_without_duplicates():
    k = Kernel()
    peer = Peer("behind")
    handshake(k, peer)
    k.doc.get_text("t").insert(0, "abc")
    k.doc.commit()
    k.doc.get_text("t").insert(3, "def")
    k.doc.commit()
    handshake(k, peer)
    handshake(k, peer)  # a second hello (e.g. a re-rendered view) must not duplicate text
    assert peer.doc.get_text("t").to_string() == "abcdef"
    assert k.text() == "abcdef"


def test_both_sides_diverged_converge():
    k = Kernel()
    k.doc.get_text("t").insert(0, "K")
    k.doc.commit()
    peer = Peer("both")
    peer.edit("P")
    handshake(k, peer)
    assert k.text() == peer.doc.get_text("t").to_string()
    assert sorted(k.text()) == ["K", "P"]


def test_welcome_carries_the_saved_version():
    k = Kernel()
    k.doc.get_text("t").insert(0, "x")
    k.doc.commit()
    k.saved = k.doc.oplog_vv
    [welcome] = k.hub.handle(Peer("v").hello())
    assert VersionVector.decode(welcome.saved) == k.doc.oplog_vv


def test_a_malformed_update_is_refused_and_changes_nothing():
    k = Kernel()
    k.doc.get_text("t").insert(0, "safe")
    k.doc.commit()
    before = k.doc.oplog_vv
    good = Peer("v").edit("x").updates[0]
    with pytest.raises(ProtocolError):
        k.hub.handle(p.ClientUpdate(view=p.ViewId("v"), updates=(good, b"\x00garbage")))
    assert k.doc.oplog_vv == before and k.text() == "safe"
    assert k.imported == []


def test_a_malformed_version_vector_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="version vector"):
        Kernel().hub.handle(p.Hello(view=p.ViewId("v"), version=b"\xff\xff\xff"))


def test_an_update_with_missing_dependencies_is_refused_and_the_view_told_to_resync():
    k = Kernel()
    peer = Peer("gap")
    first = peer.edit("a")
    second = peer.edit("b")
    out = k.hub.handle(second)  # the kernel never saw `first`
    assert [(type(m), m.code, m.to) for m in out] == [(p.Error, "resync", "gap")]
    # Refused before import: nothing relayed, counted, applied, or parked in Loro's pending queue.
    assert k.text() == "" and k.doc.oplog_vv == VersionVector() and k.imported == []
    assert k.doc.export_pending_updates() is None
    reply = peer.on_welcome(k.hub.handle(peer.hello())[0])  # the view resyncs: hello again
    assert reply is not None
    k.hub.handle(reply)
    assert k.text() == "ab"
    del first


def test_a_batch_with_a_gap_imports_what_it_can_and_refuses_the_rest():
    k = Kernel()
    peer = Peer("v")
    first = peer.edit("a").updates[0]
    second = peer.edit("b").updates[0]
    third = peer.edit("c").updates[0]
    # Out of order: `second` waits for `first`, which comes later in the batch.
    out = k.hub.handle(p.ClientUpdate(view=peer.view, updates=(second, first)))
    assert [type(m) for m in out] == [p.ServerUpdate] and k.text() == "ab"
    assert set(out[0].updates) == {first, second}
    # A duplicate adds nothing and is not relayed again.
    assert k.hub.handle(p.ClientUpdate(view=peer.view, updates=(first,))) == []
    other = Peer("w")
    lost = other.edit("x")  # never reaches the kernel
    del lost
    after = other.edit("y").updates[0]
    out = k.hub.handle(p.ClientUpdate(view=other.view, updates=(third, after)))
    assert [type(m) for m in out] == [p.ServerUpdate, p.Error]
    assert out[0].updates == (third,) and out[1].code == "resync" and out[1].to == "w"
    assert k.text() == "abc"


def test_three_peers_typing_concurrently_converge_through_the_hub():
    k = Kernel()
    peers = [Peer(f"v{i}") for i in range(3)]
    for peer in peers:
        handshake(k, peer)
    outbox: list[p.ServerMessage] = []
    for round_ in range(20):
        for i, peer in enumerate(peers):
            outbox += k.hub.handle(peer.edit(f"{i}{round_};"))
    for message in outbox:  # deliver every relay to every peer (their own bytes too: idempotent)
        assert isinstance(message, p.ServerUpdate)
        for peer in peers:
            for blob in message.updates:
                peer.doc.import_(blob)
    texts = {peer.doc.get_text("t").to_string() for peer in peers}
    assert texts == {k.text()} and len(k.text()) == 3 * sum(len(f"0{r};") for r in range(20))


def test_document_edits_via_the_notebook_schema_sync():
    k = Kernel()
    cid = nb.add_cell(k.doc, "select 1", name="one")
    k.doc.commit()
    peer = Peer("v")
    handshake(k, peer)
    assert [(c.id, c.source) for c in nb.read_cells(peer.doc)] == [(cid, "select 1")]


# --- several messages, one import (the room's inbox hands a backlog over as one batch) ---------


class CountingDoc:
    """The kernel's document, counting the imports the hub makes (Loro's types cannot be
    subclassed or patched)."""

    def __init__(self, doc: LoroDoc):
        self.doc = doc
        self.imports: list[int] = []  # blobs per import call

    def import_(self, blob):
        self.imports.append(1)
        return self.doc.import_(blob)

    def import_batch(self, blobs):
        self.imports.append(len(blobs))
        return self.doc.import_batch(blobs)

    def __getattr__(self, name):
        return getattr(self.doc, name)


def test_a_backlog_of_concurrent_updates_goes_in_as_one_import():
    k = Kernel()
    peers = [Peer(f"v{i}") for i in range(4)]
    for peer in peers:
        handshake(k, peer)
    # Each peer types five updates without seeing the others: a backlog of 20 concurrent
    # messages, each view's own updates chained, handed over newest first.
    backlog = [peer.edit(f"{i}.{n};") for n in range(5) for i, peer in enumerate(peers)]
    backlog.reverse()
    counting = CountingDoc(k.doc)
    k.hub.doc = counting  # type: ignore[assignment]
    out = k.hub.handle_updates(backlog)
    assert counting.imports == [20]
    # One relay per message, in message order, carrying exactly that message's blob.
    assert [(type(m), m.origin, m.updates) for m in out] == [
        (p.ServerUpdate, m.view, m.updates) for m in backlog
    ]
    every = peers[0].doc
    for peer in peers[1:]:
        every.import_(peer.doc.export(ExportMode.Snapshot()))
    assert k.text() == every.get_text("t").to_string()
    assert k.doc.oplog_vv == every.oplog_vv
    assert k.imported[-1][0] == 20 and len(k.imported) == 1  # reported to the writer once
    # The same backlog again: all duplicates, nothing imported or relayed.
    assert k.hub.handle_updates(backlog) == [] and counting.imports == [20]


def test_in_a_batch_a_bad_or_gapped_message_is_answered_alone_and_the_rest_go_in():
    k = Kernel()
    good, gapped, bad = Peer("good"), Peer("gapped"), Peer("bad")
    lost = gapped.edit("lost")  # never reaches the kernel
    messages = [
        good.edit("a"),
        gapped.edit("b"),
        p.ClientUpdate(view=bad.view, updates=(b"\x00garbage",)),
        good.edit("c"),
    ]
    out = k.hub.handle_updates(messages)
    kinds = [
        (type(m).__name__, getattr(m, "code", None), getattr(m, "to", None) or m.origin)
        for m in out
    ]
    assert ("Error", "protocol", "bad") in kinds
    assert ("Error", "resync", "gapped") in kinds
    assert [m.origin for m in out if isinstance(m, p.ServerUpdate)] == ["good", "good"]
    assert k.text() == "ac"
    assert k.doc.export_pending_updates() is None  # the gapped blob never entered Loro
    del lost
