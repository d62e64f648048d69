"""Putting a verified delivery on the RQ queue, exactly once per event id.

The job id is derived from the event id and RQ's ``unique`` enqueue checks and writes it in
one Lua script, so two copies of a delivery racing each other queue one job. A job whose
hash still exists (queued, running, or finished within ``dedupe_ttl``) makes a redelivery a
no-op; a job that ended in RQ's failed registry is re-queued, so Aiwyn's retry is not lost.
"""

from __future__ import annotations

import enum

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from config import Settings
from config.job_contract import PROCESS_DELIVERY, job_id_for


class Enqueued(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    REQUEUED = "requeued"


class DeliveryQueue:
    """The receiver's side of the job contract."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self._queue = Queue(settings.queue_name, connection=connection)
        self._settings = settings
        intervals = list(settings.job_retry_intervals)
        self._retry = Retry(max=len(intervals), interval=intervals) if intervals else None

    def enqueue(self, event_id: str, subscription_id: str, body: bytes) -> Enqueued:
        """Queue the delivery; raises ``redis.RedisError`` when Redis cannot take it."""
        job_id = job_id_for(event_id)
        outcome = self._enqueue_unique(job_id, event_id, subscription_id, body)
        if outcome is None:  # the old job expired between RQ's check and our read: queue anew
            outcome = self._enqueue_unique(job_id, event_id, subscription_id, body) or Enqueued.DUPLICATE
        return outcome

    def _enqueue_unique(self, job_id: str, event_id: str, subscription_id: str, body: bytes) -> Enqueued | None:
        try:
            self._queue.enqueue_call(
                PROCESS_DELIVERY,
                args=(event_id, subscription_id, body),
                job_id=job_id,
                unique=True,
                timeout=self._settings.job_timeout,
                result_ttl=self._settings.dedupe_ttl,
                retry=self._retry,
                description=f"aiwyn event {event_id}",
            )
            return Enqueued.QUEUED
        except DuplicateJobError:
            return self._requeue_if_failed(job_id)

    def _requeue_if_failed(self, job_id: str) -> Enqueued | None:
        try:
            job = Job.fetch(job_id, connection=self._queue.connection)
        except NoSuchJobError:
            return None
        if job.get_status(refresh=False) == JobStatus.FAILED:
            self._queue.failed_job_registry.requeue(job)
            return Enqueued.REQUEUED
        return Enqueued.DUPLICATE
