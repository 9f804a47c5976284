"""Per-view rate limits on client messages: a flooding view is refused, the others carry on.

All views' messages are handled one at a time on the kernel's comm thread, so a view that
floods it (a bug, a stuck key, a hostile script) delays everyone's edits. The room checks each
message against two token buckets of the sending view — messages and bytes — *before* decoding
it, so a refused message costs a dictionary lookup and a few float operations.

Limits (per view id): :data:`MESSAGES_PER_S` sustained with bursts of :data:`MESSAGE_BURST`
(a ``hello`` counts as :data:`HELLO_COST` messages), and :data:`BYTES_PER_S` with bursts of
:data:`BYTE_BURST`. A well-behaved view sends at most
~50 updates/s (its 20 ms throttle), ~20 presence updates/s (50 ms throttle) and a few result
page requests per scroll frame; opening a notebook sends one request per chart cell at once.

The first refused message of a spell gets a ``rate_limited`` error to its view; later ones are
refused silently, and the spell lasts until the view's buckets have refilled to
:data:`RECOVER_FRACTION` (so neither the refusals nor a trickle of admitted messages become a
flood of their own). A view that is told re-sends its refused document updates by a new handshake
(``hello``), so nothing it typed is lost.

Thread-safety: any thread (a lock guards the buckets).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MESSAGES_PER_S = 200.0
"""Messages one view may send per second, sustained."""
MESSAGE_BURST = 500.0
"""Messages one view may send at once (the bucket's size)."""
RECOVER_FRACTION = 0.5
"""A refused view stays refused until both its buckets refill to this fraction of their size
(250 messages: 1.25 s at the sustained rate), so a view that keeps flooding is not let through
a message at a time (each of which would then be a gap)."""
BYTES_PER_S = 16.0 * 1024 * 1024
"""Bytes (buffers plus a flat 256 per message) one view may send per second, sustained."""
BYTE_BURST = 64.0 * 1024 * 1024
"""Bytes one view may send at once: two messages of the largest size the protocol accepts."""
HELLO_COST = 25.0
"""Message tokens a ``hello`` takes: answering one reads the branch list from the lake and the
connection's catalog (5-10 ms idle, 100s of ms on a loaded machine), ~100 times the cost of an
update; a view sends one per handshake."""
MAX_VIEWS = 4096
"""Buckets kept; past this the oldest view's bucket is dropped (it starts full again)."""

Verdict = Literal["admit", "refuse", "refuse_quietly"]
"""``admit``: handle the message; ``refuse``: refuse it and tell the view (first refusal of a
spell); ``refuse_quietly``: refuse it, the view was told already."""


@dataclass
class _Bucket:
    messages: float
    nbytes: float
    at: float
    limited: bool = False


class RateLimiter:
    """Token buckets per view id.

    Args:
        messages_per_s, message_burst: message refill rate (per second) and bucket size.
        bytes_per_s, byte_burst: byte refill rate (bytes per second) and bucket size.
        max_views: buckets kept (oldest dropped first).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        messages_per_s: float = MESSAGES_PER_S,
        message_burst: float = MESSAGE_BURST,
        bytes_per_s: float = BYTES_PER_S,
        byte_burst: float = BYTE_BURST,
        max_views: int = MAX_VIEWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages_per_s = messages_per_s
        self.message_burst = message_burst
        self.bytes_per_s = bytes_per_s
        self.byte_burst = byte_burst
        self.max_views = max_views
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.refused = 0
        """Messages refused so far (for tests and diagnostics)."""

    def check(self, view: str | None, nbytes: int, cost: float = 1.0) -> Verdict:
        """Take one message of ``nbytes`` bytes, worth ``cost`` message tokens, from ``view``'s
        buckets (``None``: messages that name no readable view share one bucket). Never
        raises."""
        key = view if view is not None else ""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_views:
                    del self._buckets[next(iter(self._buckets))]
                bucket = self._buckets[key] = _Bucket(self.message_burst, self.byte_burst, now)
            elapsed = max(0.0, now - bucket.at)
            bucket.at = now
            bucket.messages = min(
                self.message_burst, bucket.messages + elapsed * self.messages_per_s
            )
            bucket.nbytes = min(self.byte_burst, bucket.nbytes + elapsed * self.bytes_per_s)
            if bucket.limited and (
                bucket.messages >= self.message_burst * RECOVER_FRACTION
                and bucket.nbytes >= self.byte_burst * RECOVER_FRACTION
            ):
                bucket.limited = False  # the spell is over
            if not bucket.limited and bucket.messages >= cost and bucket.nbytes >= nbytes:
                bucket.messages -= cost
                bucket.nbytes -= nbytes
                return "admit"
            self.refused += 1
            if bucket.limited:
                return "refuse_quietly"
            bucket.limited = True
            return "refuse"
