"""Riding out a lost connection: wait with back-off, and say so once when it goes and once when it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_PAUSE = 5.0


def wait_until_back(what: str, check: Callable[[], object], error: BaseException, log: logging.Logger,
                    errors: tuple[type[BaseException], ...], stop: Callable[[], bool] = lambda: False,
                    sleep: Callable[[float], None] = time.sleep) -> float:  # fmt: skip
    """Block until ``check()`` stops raising ``errors`` (or ``stop()``: the process is asked to
    stop); returns how long it took. Never gives up: a worker outlives the outages of what it depends on."""
    log.warning("%s lost (%s): waiting for it", what, type(error).__name__)
    started = time.monotonic()
    pause = 0.2
    while True:
        try:
            check()
        except errors:
            if stop():
                return time.monotonic() - started
            sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            continue
        waited = time.monotonic() - started
        log.warning("%s is back after %.1fs", what, waited)
        return waited
