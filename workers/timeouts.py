"""Stopping a handler that runs past its timeout, inside a worker that does not fork.

The only way to interrupt Python code that hangs in the same process is a signal: SIGALRM
raises ``HandlerTimeout`` in the main thread, as RQ does for a whole job. RQ's own job alarm
is saved and re-armed afterwards, so the two nest. In another thread (no signals there) the
handler runs without a limit; the worker always calls handlers from its main thread.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class HandlerTimeout(Exception):
    """The handler ran longer than its timeout."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``HandlerTimeout`` in the block after ``seconds``, unless an outer alarm comes first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_remaining and outer_remaining <= seconds:
        yield  # the job's own timeout is nearer: leave it in charge
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise HandlerTimeout(f"handler timed out after {seconds:g} s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining:
            signal.setitimer(signal.ITIMER_REAL, max(outer_remaining - (time.monotonic() - started), 0.001))
