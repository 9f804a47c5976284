"""Presence: the kernel's copy of the views' ephemeral state (checked, kept, never persisted)."""

import time

import pytest
from loro import EphemeralStore

from sqlrooms_nb.errors import ProtocolError
from sqlrooms_nb.presence import Presence


def later() -> None:
    """Loro stamps entries in whole ms and ignores an update not newer than the entry it has."""
    time.sleep(0.002)


def update_from(view: str, value: dict, timeout_ms: int = 30_000) -> bytes:
    """What a browser view sends: its own entry, encoded."""
    later()
    store = EphemeralStore(timeout_ms)
    store.set(view, value)
    return store.encode(view)


def test_a_views_update_is_kept_and_in_the_snapshot():
    presence = Presence()
    assert presence.snapshot() is None
    presence.apply("a", update_from("a", {"name": "Ana", "cell": "c1", "anchor": b"\x01"}))
    assert presence.views() == ["a"]
    newcomer = EphemeralStore(30_000)
    snapshot = presence.snapshot()
    assert snapshot is not None
    newcomer.apply(snapshot)
    assert newcomer.get_all_states() == {"a": {"name": "Ana", "cell": "c1", "anchor": b"\x01"}}


def test_a_view_can_withdraw_its_entry():
    presence = Presence()
    store = EphemeralStore(30_000)
    store.set("a", {"name": "Ana"})
    presence.apply("a", store.encode("a"))
    later()
    store.delete("a")
    presence.apply("a", store.encode("a"))
    assert presence.views() == []
    assert presence.snapshot() is None


@pytest.mark.parametrize("garbage", [b"garbage", b"\xff\xff\xff", b"\x01\x02"])
def test_garbage_raises_a_protocol_error_and_changes_nothing(garbage):
    presence = Presence()
    presence.apply("a", update_from("a", {"name": "Ana"}))
    before = presence.snapshot()
    with pytest.raises(ProtocolError, match="does not decode"):
        presence.apply("b", garbage)
    assert presence.views() == ["a"]
    assert presence.state("a") == {"name": "Ana"}
    assert presence.snapshot() is not None and before is not None


def test_a_view_may_not_set_or_delete_another_views_entry():
    presence = Presence()
    presence.apply("a", update_from("a", {"name": "Ana"}))
    with pytest.raises(ProtocolError, match="only change its own entry"):
        presence.apply("b", update_from("a", {"name": "not Ana"}))
    spoof = EphemeralStore(30_000)
    spoof.set("a", {"name": "x"})
    later()
    spoof.delete("a")
    with pytest.raises(ProtocolError, match="only change its own entry"):
        presence.apply("b", spoof.encode("a"))
    assert presence.state("a") == {"name": "Ana"}


def test_entries_expire_after_the_timeout():
    presence = Presence(timeout_ms=100)
    presence.apply("a", update_from("a", {"name": "Ana"}, 100))
    assert presence.views() == ["a"]
    time.sleep(0.25)
    assert presence.views() == []
    assert presence.snapshot() is None
