"""Identifiers: short random ids for subscriptions, sortable ULID-style ids for records and events."""

from __future__ import annotations

import os
import threading
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(CROCKFORD[digit])
    return "".join(reversed(chars))


def short_id(prefix: str) -> str:
    """`prefix` + 12 uppercase Crockford base32 characters (60 random bits), e.g. `sub_01JD3Z8Y6T4W`."""
    return prefix + _base32(int.from_bytes(os.urandom(8), "big") >> 4, 12)


class SortableIds:
    """ULIDs (48-bit millisecond time + 80 random bits) that sort in creation order.

    Within one millisecond the random part is incremented instead of redrawn, so ids made
    by one process never sort out of creation order; the lock makes that hold across threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, prefix: str) -> str:
        """`prefix` + a 26-character ULID greater than every one made before by this object."""
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._last_random += 1
            else:
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = now_ms
            return prefix + _base32(now_ms, 10) + _base32(self._last_random, 16)
