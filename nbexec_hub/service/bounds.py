"""The service's bounds (CONTRACT B.4 "Bounds"): streams per caller, sizes and times.

A stream holds two sockets and an upstream connection for as long as its reader stays;
without a bound one caller could take every upstream connection from the others. Each
caller (a user, or a service) holds at most `StreamSlots.limit` streams; past it a new one
is a 429. `RelayLimits` bounds what relaying one request may cost (see relay.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .. import errors, protocol


class StreamSlots:
    """Counts open streams per caller; `take` raises TooManyRequests past the limit."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def take(self, caller: str) -> None:
        """Take a slot for `caller` (give it back with `give_back`)."""
        if self.limit and self._held[caller] >= self.limit:
            raise errors.TooManyRequests(
                f"{caller} already holds {self._held[caller]} streams (the limit is "
                f"{self.limit}); close some, or wait for them to end"
            )
        self._held[caller] += 1

    def give_back(self, caller: str) -> None:
        self._held[caller] -= 1
        if self._held[caller] <= 0:
            del self._held[caller]

    @property
    def open_streams(self) -> int:
        return sum(self._held.values())


class ByteBudgets:
    """Bytes that all of each caller's requests hold together, of one kind.

    Two kinds have one: request bodies (held until they are forwarded; `max_body_size`
    bounds one) and unfinished event lines (held whole until they end; `max_event_bytes`
    bounds one line of one stream). Without a bound across a caller's requests, one caller
    with many at once would hold them all.
    """

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def take(self, caller: str, size: int) -> bool:
        """Hold `size` more bytes for `caller`; False (nothing held) past the limit."""
        if self.limit and self._held[caller] + size > self.limit:
            return False
        self._held[caller] += size
        return True

    def give_back(self, caller: str, size: int) -> None:
        self._held[caller] -= size
        if self._held[caller] <= 0:
            del self._held[caller]


@dataclass
class RelayLimits:
    """Time and size bounds of relaying (traits of the service application)."""

    keepalive_seconds: float = protocol.KEEPALIVE_SECONDS
    request_timeout: float = 60.0
    max_answer_bytes: int = 64 * 1024 * 1024
    max_error_bytes: int = 1024 * 1024
    max_event_bytes: int = 64 * 1024 * 1024
    max_pending_bytes: int = 16 * 1024 * 1024
