"""``GET /metrics``: the Prometheus figures of the whole service, rendered at scrape time.

A custom collector reads the shared counters in Redis and the gauges in Redis and the
database (``receiver.observed``), so every web process, of any deployment, answers the same
figures, whoever counted them; no per-process state, no prometheus multiprocess directory.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

import redis
import sqlalchemy
from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from config import Settings
from receiver.observed import Histogram, Snapshot, read

observe = Blueprint("observe", __name__)


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], histogram.cumulative(), histogram.sum)
    return family


def families(snapshot: Snapshot, settings: Settings) -> Iterator[Metric]:
    """The metric families of a snapshot (names fixed by the issue; the README lists them)."""
    requests = CounterMetricFamily("aiwyn_webhook_requests", "Deliveries answered, by status and reason.", labels=["status", "reason"])
    for (status, reason), count in sorted(snapshot.requests.items()):
        requests.add_metric([status, reason], count)
    yield requests
    yield _histogram("aiwyn_webhook_request_duration_seconds", "Time the endpoint spent on a delivery.", snapshot.request_duration)
    yield GaugeMetricFamily("aiwyn_queue_deliveries", "Deliveries stored and not yet committed (waiting or claimed).", snapshot.deliveries)
    yield GaugeMetricFamily("aiwyn_queue_oldest_age_seconds", "How long the oldest uncommitted delivery has waited (0: none).", snapshot.oldest_age)
    events = CounterMetricFamily("aiwyn_events", "Events applied by the workers, each once, with the status it got.",
                                 labels=["entity_type", "operation", "status"])  # fmt: skip
    for labels, count in sorted(snapshot.events.items()):
        events.add_metric(list(labels), count)
    yield events
    yield _histogram("aiwyn_mirror_lag_seconds", "From an event's occurredAt to its commit in the mirror.", snapshot.lag)
    last = GaugeMetricFamily("aiwyn_last_event_timestamp_seconds", "When the newest delivery of a subscription was accepted.",
                             labels=["subscription"])  # fmt: skip
    for subscription, at in sorted(snapshot.last_event.items()):
        last.add_metric([subscription], at)
    yield last
    runs = CounterMetricFamily("aiwyn_handler_runs", "Handler runs ended, by outcome.", labels=["handler", "outcome"])
    for (handler, outcome), count in sorted(snapshot.runs.items()):
        runs.add_metric([handler, outcome], count)
    yield runs
    failed = GaugeMetricFamily("aiwyn_failed_runs", "Handler runs on the failed list now.", labels=["handler"])
    for handler, count in sorted(snapshot.failed_runs.items()):
        failed.add_metric([handler], count)
    yield failed
    yield GaugeMetricFamily("aiwyn_invalid_events", "Events set aside as invalid now.", snapshot.invalid_events)
    yield GaugeMetricFamily("aiwyn_dead_letters", "Deliveries on the dead-letter list now.", snapshot.dead_letters)
    synced = GaugeMetricFamily("aiwyn_sync_completed_timestamp_seconds", "The last completed backfill or reconcile of a type.",
                               labels=["entity_type"])  # fmt: skip
    backfill = GaugeMetricFamily("aiwyn_backfill_records", "Records copied by the type's latest backfill pass.", labels=["entity_type"])
    for row in snapshot.sync:
        if row.completed_at is not None:
            synced.add_metric([row.entity_type], row.completed_at.timestamp())
        backfill.add_metric([row.entity_type], row.backfill_records)
    yield synced
    yield backfill
    yield GaugeMetricFamily("aiwyn_reconcile_interval_seconds", "AIWYN_RECEIVER_RECONCILE_INTERVAL (0: no scheduled reconcile).",
                            settings.reconcile_interval)  # fmt: skip
    fetches = CounterMetricFamily("aiwyn_secret_fetches", "Calls of Aiwyn's API for signing secrets, by outcome.", labels=["outcome"])
    for outcome, count in sorted(snapshot.secret_fetches.items()):
        fetches.add_metric([outcome], count)
    yield fetches
    yield GaugeMetricFamily("aiwyn_workers", "RQ workers alive on this service's queues.", snapshot.workers)
    changed = CounterMetricFamily("aiwyn_view_changes", "Typed views created or replaced after a schema change.", labels=["entity_type", "action"])
    for labels, count in sorted(snapshot.view_changes.items()):
        changed.add_metric(list(labels), count)
    yield changed


class ServiceCollector(Collector):
    """Reads the figures at each scrape: Redis (two or three round trips) and three indexed queries."""

    def __init__(self, settings: Settings, connection: redis.Redis, engine: sqlalchemy.Engine) -> None:
        self._settings, self._connection, self._engine = settings, connection, engine

    def collect(self) -> Iterator[Metric]:
        yield from families(read(self._connection, self._engine, self._settings.queue_name), self._settings)


def registry_for(settings: Settings, connection: redis.Redis, engine: sqlalchemy.Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(settings, connection, engine))
    return registry


def allowed(settings: Settings) -> bool:
    """Without AIWYN_RECEIVER_METRICS_TOKEN, anyone who reaches the route (keep it off the public server);
    with it, only ``Authorization: Bearer <token>``."""
    if not settings.metrics_token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), settings.metrics_token.encode())


def refused() -> Response:
    return Response("a bearer token is required\n", 401, {"WWW-Authenticate": 'Bearer realm="aiwyn-receiver"'}, mimetype="text/plain")


@observe.get("/metrics")
def metrics() -> Response:
    runtime = current_app.extensions["aiwyn"]
    if not allowed(runtime.settings):
        return refused()
    try:
        body = generate_latest(runtime.metrics)
    except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
        # Prometheus marks the target down (up == 0): the alerts on absent series then fire.
        return Response(f"figures unavailable: {type(exc).__name__}\n", 503, mimetype="text/plain")
    return Response(body, 200, content_type=CONTENT_TYPE_LATEST)
