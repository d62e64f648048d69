"""The workers' side of the counters behind ``/metrics`` (``config.metrics_contract``): added once per batch.

Counted after the transaction commits, so an event counts once it is in the mirror: each
event once (its first ledger row), with the status it got then. A Redis error here loses
these counts only (logged); the events themselves are committed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from config.metrics_contract import (
    EVENTS_HOUR_TTL,
    LAG_BUCKETS,
    LAG_MINUTE_TTL,
    SUM_FIELD,
    bucket_field,
    events_hour_key,
    events_key,
    field,
    lag_key,
    lag_minute_key,
    micros,
    runs_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """One event stored for the first time, as the worker applied it."""

    entity_type: str
    operation: str
    status: str
    occurred_at: datetime | None  # None for an invalid event: no lag to count


def applied(deliveries: Iterable, status_of: dict[str, str], new: set[str]) -> list[Applied]:  # of ledger.Delivery
    """The new ledger rows of a commit (``ledger.record``'s answer), for ``count``."""
    return [
        Applied(d.event.entity_type if d.event else "", d.event.operation if d.event else "", status_of[d.event_id], d.event.occurred_at if d.event else None)
        for d in deliveries
        if d.event_id in new
    ]


def count(connection: redis.Redis, queue: str, events: Iterable[Applied], runs: Counter[tuple[str, str]] | None = None) -> None:
    """Add a committed batch's events (and its batch handlers' runs) to the shared counters: one round trip."""
    events = list(events)
    if not events and not runs:
        return
    now = time.time()
    hour, minute = events_hour_key(queue, int(now // 3600)), lag_minute_key(queue, int(now // 60))
    totals: Counter[tuple[str, str]] = Counter()
    for event in events:
        labels = field(event.entity_type, event.operation, event.status)
        totals[(events_key(queue), labels)] += 1
        totals[(hour, labels)] += 1
        if event.occurred_at is not None:
            lag = max(0.0, now - event.occurred_at.astimezone(UTC).timestamp())
            for key in (lag_key(queue), minute):
                totals[(key, bucket_field(LAG_BUCKETS, lag))] += 1
                totals[(key, SUM_FIELD)] += micros(lag)
    for (handler, outcome), number in (runs or {}).items():
        totals[(runs_key(queue), field(handler, outcome))] += number
    try:
        pipe = connection.pipeline(transaction=True)
        for (key, name), number in totals.items():
            pipe.hincrby(key, name, number)
        pipe.expire(hour, EVENTS_HOUR_TTL)
        pipe.expire(minute, LAG_MINUTE_TTL)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("%d event count(s) lost, Redis did not take them: %s", len(events), type(exc).__name__)


def count_run(connection: redis.Redis, queue: str, handler: str, outcome: str) -> None:
    """A custom handler's run ended (succeeded, skipped, retrying, failed)."""
    try:
        connection.hincrby(runs_key(queue), field(handler, outcome), 1)
    except redis.RedisError as exc:
        log.warning("a run count was lost, Redis did not take it: %s", type(exc).__name__)
