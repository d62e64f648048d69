"""What a worker waits for before it takes jobs: Redis and its database, said in one line.

A worker started during an outage waits (saying so once) instead of exiting, up to
``AIWYN_RECEIVER_STARTUP_WAIT`` seconds (0: for ever); a setting that points at the wrong place
(a database that does not exist, tables never migrated) stops the start at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from config import Settings, SettingsError
from config.reachability import Check, check_database, check_redis, summary

log = logging.getLogger(__name__)

MAX_PAUSE = 5.0


class StartupTimeout(Exception):
    """Redis or the database still did not answer after ``AIWYN_RECEIVER_STARTUP_WAIT`` seconds."""


def wait_for_services(settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once Redis and the database answer; ``SettingsError`` for a wrong place, ``StartupTimeout`` past the wait."""
    deadline = time.monotonic() + settings.startup_wait if settings.startup_wait else None
    pause, said = 0.5, ""
    while True:
        checks: list[Check] = [check_redis(settings.redis_url), check_database(settings.database_url)]
        for check in checks:
            if check.misconfigured:
                name = "REDIS_URL" if check.what.startswith("Redis") else "DATABASE_URL"
                raise SettingsError(f"bad setting: {name}: {check.describe()}")
        line = summary(checks)
        if all(check.answering for check in checks):
            log.info("%s", line)
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise StartupTimeout(f"gave up after AIWYN_RECEIVER_STARTUP_WAIT={settings.startup_wait}s: {line}")
        if line != said:  # one line per change, not per attempt
            until = f"up to {settings.startup_wait}s" if deadline is not None else "for ever (AIWYN_RECEIVER_STARTUP_WAIT=0)"
            log.warning("%s; waiting %s", line, until)
            said = line
        sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
