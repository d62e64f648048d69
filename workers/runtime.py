"""What a worker process builds once at start and every job of it shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import redis
from rq import Queue, Retry
from sqlalchemy import Engine

from aiwyn_api.client import AiwynClient
from config import Settings, load_settings
from config.job_contract import JOB_SERIALIZER
from config.redis_connection import connect
from workers.database import make_engine
from workers.delivery_batches import DeliveryBatches
from workers.registry import HandlerRegistry
from workers.sync.listing import RecordsListing
from workers.sync.schedule import SyncScheduler


@dataclass(frozen=True)
class WorkerRuntime:
    settings: Settings
    engine: Engine
    registry: HandlerRegistry
    redis: redis.Redis
    queue: Queue  # drain jobs (the receiver queues them here)
    handler_queue: Queue  # custom handlers' jobs, apart, so they never hold up the mirror
    batches: DeliveryBatches
    sync_queue: Queue  # backfill pages and reconcile runs, taken after the other two

    @cached_property
    def listing(self) -> RecordsListing:
        """Aiwyn's records listing, through a client built on first use (only sync needs the API)."""
        return RecordsListing(AiwynClient(self.settings))

    @cached_property
    def sync(self) -> SyncScheduler:
        return SyncScheduler(self.settings, self.engine, self.redis, self.sync_queue, lambda: self.listing)

    @property
    def job_retry(self) -> Retry | None:
        """RQ's retry for jobs that fail for want of the database or Redis, not for a handler's error."""
        intervals = list(self.settings.job_retry_intervals)
        return Retry(max=len(intervals), interval=intervals) if intervals else None


def handler_queue_name(queue_name: str) -> str:
    """The RQ queue of the custom handlers' jobs, beside the drain queue ``queue_name``."""
    return f"{queue_name}-handlers"


def sync_queue_name(queue_name: str) -> str:
    """The RQ queue of backfill and reconcile jobs, beside the drain queue ``queue_name``."""
    return f"{queue_name}-sync"


_lock = threading.Lock()
_current: WorkerRuntime | None = None


def start_runtime(settings: Settings, registry: HandlerRegistry | None = None) -> WorkerRuntime:
    """Build this process's runtime (engine, handlers, Redis); called once by the worker command.

    Without a registry, the handlers are found as the worker finds them (``workers.discovery``).
    """
    from workers.discovery import load_registry

    global _current
    connection = connect(settings.redis_url)
    with _lock:
        _current = WorkerRuntime(
            settings,
            make_engine(settings.database_url),
            registry if registry is not None else load_registry(settings),
            connection,
            Queue(settings.queue_name, connection=connection, serializer=JOB_SERIALIZER),
            Queue(handler_queue_name(settings.queue_name), connection=connection, serializer=JOB_SERIALIZER),
            # A batch is retaken if its worker has not committed it within the job timeout.
            DeliveryBatches(settings, connection, lease_seconds=settings.job_timeout),
            Queue(sync_queue_name(settings.queue_name), connection=connection, serializer=JOB_SERIALIZER),
        )
        return _current


def current_runtime() -> WorkerRuntime:
    """The process's runtime, built from the environment on first use under a plain ``rq worker``."""
    if _current is None:
        return start_runtime(load_settings())
    return _current
