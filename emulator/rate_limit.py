"""The rate-limit fault: a fixed one-second window shared by every client of `/api/v1`.

Kept apart from the store's lock so that a refused call costs no contention with record writes.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """Counts calls per whole second of the monotonic clock; refuses those above the limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self.refused = 0

    def admit(self, limit: int, now: float | None = None) -> int:
        """0 if the call may go on (always, when `limit` is 0); else the whole seconds to wait (at least 1)."""
        if limit <= 0:
            return 0
        now = time.monotonic() if now is None else now
        window = math.floor(now)
        with self._lock:
            if window != self._window:
                self._window, self._used = window, 0
            if self._used < limit:
                self._used += 1
                return 0
            self.refused += 1
        return max(1, math.ceil(window + 1 - now))

    def reset(self) -> None:
        """Start a fresh window and forget the count of refused calls."""
        with self._lock:
            self._window, self._used, self.refused = -1, 0, 0
