"""Riding out a lost connection: wait with back-off, and say so once when it goes and once when it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

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


class Noticed:
    """A dependency a job found gone, after giving its work back: the worker's loop waits for it
    before the next job (a job never waits itself: RQ's job timeout would end it)."""

    def __init__(self) -> None:
        self._error: BaseException | None = None

    def notice(self, error: BaseException) -> None:
        self._error = error

    def take(self) -> BaseException | None:
        """The error noticed since the last call, if any; clears it."""
        error, self._error = self._error, None
        return error


database_lost = Noticed()


def ping_database(engine: Engine) -> None:
    """Raise ``SQLAlchemyError`` unless the database answers a ``SELECT 1``."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def database_answers(engine: Engine) -> bool:
    try:
        ping_database(engine)
    except SQLAlchemyError:
        return False
    return True
