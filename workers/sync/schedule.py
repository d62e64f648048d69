"""What the workers do for sync on their own: start the backfills a type still needs, one page
per RQ job, and keep one reconcile scheduled through RQ's scheduler.

Called from an idle worker's heartbeat (throttled), so a page job lost with its worker is
started again once its lease has run out, and a new entity type is copied when it appears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
from rq import Queue
from sqlalchemy import Engine

from config import Settings
from config.metrics_contract import field, view_changes_key
from config.subscriptions import load_subscriptions
from workers.models import SyncState
from workers.sync import state, views
from workers.sync.listing import EntityType, RecordsListing

log = logging.getLogger(__name__)

BACKFILL_PAGE = "workers.jobs.backfill_page"
RECONCILE = "workers.jobs.reconcile"
TYPES_TTL = 600.0  # seconds the resolved list of subscribed types is reused ("*" may grow)
RECONCILE_JOB_TIMEOUT = 6 * 3600  # a whole pass over every type; one page renews its lock


def lease_seconds(settings: Settings) -> float:
    """How long a page job may wait in the queue and run before another worker takes over."""
    return 2.0 * settings.job_timeout


def subscribed_types(settings: Settings) -> list[str]:
    """Entity types of the configured subscriptions (``*`` stands for every type Aiwyn lists)."""
    return list(dict.fromkeys(name for spec in load_subscriptions(settings.subscriptions_file) for name in spec.entity_types))


def reconcile_lock(settings: Settings, connection: redis.Redis) -> redis.lock.Lock:
    """One reconcile at a time across all workers and commands."""
    return connection.lock(f"aiwyn:{settings.queue_name}:reconcile:running", timeout=600, blocking=False)


def scheduled_key(settings: Settings) -> str:
    return f"aiwyn:{settings.queue_name}:reconcile:scheduled"


class SyncScheduler:
    """A worker's automatic sync; every failure is logged and tried again later, never raised."""

    def __init__(self, settings: Settings, engine: Engine, connection: redis.Redis, queue: Queue, listing: Callable[[], RecordsListing]) -> None:
        self._settings = settings
        self._engine = engine
        self._redis = connection
        self._queue = queue
        self._listing = listing
        self._types: list[EntityType] = []
        self._types_until = 0.0

    def types(self) -> list[EntityType]:
        if time.monotonic() >= self._types_until:
            self._types = self._listing().types(subscribed_types(self._settings))
            self._types_until = time.monotonic() + TYPES_TTL
        return self._types

    def tick(self) -> None:
        """Start what is due: backfills of types never completed (or whose pass lost its worker), the next reconcile."""
        if self._settings.missing_for_api():
            return
        types = self.types()
        known = state.states(self._engine)
        if self._settings.backfill_on_start:
            for entity_type in types:
                held = known.get(entity_type.name)
                if held is not None and held.backfill_completed_at is not None and not state.in_progress(held):
                    continue
                started = state.begin(self._engine, entity_type.name, lease_seconds(self._settings), unfinished_only=True)
                if started is not None:
                    self.enqueue_page(entity_type, started.token)
                    log.info("backfill of %s: %s", entity_type.name, "resumed" if started.done else "started")
        if self._settings.reconcile_interval > 0:
            self._schedule_reconcile([known.get(t.name) for t in types])
        self._check_views()

    def _check_views(self) -> None:
        """Every ``AIWYN_RECEIVER_SCHEMA_CHECK_INTERVAL``, one worker of all re-reads the schemas and
        replaces the views whose fields changed (``workers.sync.views`` logs what changed)."""
        interval = self._settings.schema_check_interval
        if interval > 0 and self._redis.set(f"aiwyn:{self._settings.queue_name}:views:checked", "1", nx=True, ex=interval):
            self._types_until = 0.0  # a custom type made since the last look gets its view now, not in TYPES_TTL
            made = [c for c in views.refresh(self._engine, self._listing(), self.types()) if c.action != "unchanged"]
            for change in made:
                self._redis.hincrby(view_changes_key(self._settings.queue_name), field(change.view.entity_type, change.action), 1)

    def enqueue_page(self, entity_type: EntityType, token: str) -> None:
        self._queue.enqueue_call(
            BACKFILL_PAGE,
            args=(entity_type.name, entity_type.records_url, token),
            timeout=self._settings.job_timeout,
            result_ttl=0,
            failure_ttl=24 * 3600,
            description=f"backfill a page of {entity_type.name}",
        )

    def _schedule_reconcile(self, rows: list[SyncState | None]) -> None:
        """One reconcile job waits in RQ's scheduler at a time: due an interval after the oldest
        type's last reconcile (or full copy); none while a type has never been copied."""
        lasts = [state.aware(row.reconcile_completed_at or row.backfill_completed_at) if row is not None else None for row in rows]
        known = [last for last in lasts if last is not None]
        if not known or len(known) < len(lasts):
            return
        due = min(known) + timedelta(seconds=self._settings.reconcile_interval)
        delay = max(0.0, (due - datetime.now(UTC)).total_seconds())
        if not self._redis.set(scheduled_key(self._settings), "1", nx=True, ex=int(delay) + RECONCILE_JOB_TIMEOUT):
            return
        self._queue.enqueue_in(
            timedelta(seconds=delay), RECONCILE, job_timeout=RECONCILE_JOB_TIMEOUT, result_ttl=24 * 3600, description="reconcile the mirror with Aiwyn"
        )
        log.info("reconcile scheduled in %.0f s", delay)
