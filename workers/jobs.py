"""RQ job entry points: ``drain_deliveries`` (named in config.job_contract), ``run_handler``, and the sync's ``backfill_page`` and ``reconcile``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

import redis
from rq.timeouts import JobTimeoutException

from config.job_contract import wake_key
from config.states import ClaimMode
from workers import backfill_events, handler_runs, outages, processing, shutdown
from workers.delivery_batches import Batch
from workers.runtime import WorkerRuntime, current_runtime
from workers.sync import backfill
from workers.sync import state as sync_state
from workers.sync.listing import EntityType
from workers.sync.reconcile import reconcile_type
from workers.sync.schedule import lease_seconds, reconcile_lock, scheduled_key

log = logging.getLogger(__name__)

# A drain job hands over to a fresh one after this long, so that RQ's job timeout stays
# meaningful and a worker asked to stop finishes its job in hand within seconds.
DRAIN_BUDGET_SECONDS = 5.0
# Under load (a batch came back part full but not small), wait a moment before the next claim:
# bigger batches cost less CPU per event, which a burst's ingest, on the same cores, needs more.
# A trickle (small batches) never waits, so the latency of a single event stays as it was.
LINGER_SECONDS = 0.05
LINGER_FROM = 2


def drain_deliveries(queue_name: str) -> int:
    """Commit batches of queued deliveries until the list is empty; returns how many events."""
    runtime = current_runtime()
    # From here on, a new delivery queues another drain job: with two workers, both drain.
    runtime.redis.delete(wake_key(queue_name))
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    done = 0
    while True:
        batch = runtime.batches.claim(runtime.settings.batch_size)
        if batch is None:
            break
        if batch.waiting >= runtime.settings.batch_size:
            # A backlog of another batch or more: queue a drain job for an idle worker now, not at its
            # next heartbeat. That job does the same when it starts, so W workers share a backlog from
            # the first second; at most one drain job waits at a time (the wake flag), so no more run
            # at once than there are workers free to take them.
            runtime.batches.wake_if_needed()
        try:
            follow_ups = processing.process_batch(runtime, batch.deliveries, batch.claimed_at)
            handler_runs.enqueue_follow_ups(runtime, follow_ups)
        except Exception as exc:
            if processing.is_outage(exc):
                _database_error(runtime, batch, exc)
                break
            if isinstance(exc, redis.RedisError):
                runtime.batches.abandon(batch, retry_in=(runtime.settings.job_retry_intervals or (5,))[0])
                raise
            # Not an outage: counted, so that a batch that cannot succeed is split, then dead-lettered.
            _batch_failed(runtime, batch, exc)
            if isinstance(exc, JobTimeoutException):
                raise
            continue
        except BaseException:
            # Nothing is lost: a later drain job takes the batch over. Not at once: during a
            # database outage, every worker's sweep would otherwise fail on it in a loop.
            runtime.batches.abandon(batch, retry_in=(runtime.settings.job_retry_intervals or (5,))[0])
            raise
        runtime.batches.release(batch)
        done += len(batch.deliveries)
        if time.monotonic() > deadline or shutdown.stopping.is_set():
            runtime.batches.wake_if_needed()
            break
        if LINGER_FROM <= len(batch.deliveries) < runtime.settings.batch_size:
            time.sleep(LINGER_SECONDS)
    if done:
        log.info("drained %d deliveries", done)
    return done


def _database_error(runtime: WorkerRuntime, batch: Batch, exc: Exception) -> None:
    """Give the batch back, without RQ's failure path (a traceback and a retry per attempt). A
    database that is gone: the batch is due at once, and the worker waits for the database
    before its next job (``DrainWorker``). One that answers (a locked or full database, say):
    the batch is retried after the first retry interval, so nothing spins on it."""
    if outages.database_answers(runtime.engine):
        retry_in = (runtime.settings.job_retry_intervals or (5,))[0]
        log.warning("batch %s given back for %d s: %s", batch.key, retry_in, _first_line(exc))
        runtime.batches.abandon(batch, retry_in=retry_in)
        return
    runtime.batches.abandon(batch, retry_in=0)
    outages.database_lost.notice(exc)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:300]


def _batch_failed(runtime: WorkerRuntime, batch: Batch, exc: Exception) -> None:
    """Count the failure and log it: with its traceback the first time, then as one line."""
    settings = runtime.settings
    error = processing.describe(exc)
    outcome, count = runtime.batches.fail(batch, error, settings.batch_max_failures, (settings.job_retry_intervals or (5,))[0])
    if count == 1:
        log.error("batch %s (%d deliveries) failed; it is retried", batch.key, len(batch.deliveries), exc_info=exc)
    else:
        log.error("batch %s failed again (%d of %d): %s", batch.key, count, settings.batch_max_failures, error.splitlines()[0][:300])
    if outcome == "split":
        log.warning("batch %s failed %d times: split into single deliveries", batch.key, count)
    elif outcome == "dead":
        event_id = batch.deliveries[0][0] if batch.deliveries else "?"
        log.error("event %s failed alone %d times: moved to the dead-letter list (python -m workers dead-letter show %s)", event_id, count, event_id)


def run_handler(handler: str, event_ids: Sequence[str], mode: str = ClaimMode.NEW, claimed_at: datetime | str | None = None) -> dict[str, str]:
    """Run one custom handler on events of a committed batch, or retry it on one event (``claimed_at`` in ISO 8601: jobs are JSON)."""
    if isinstance(claimed_at, str):
        claimed_at = datetime.fromisoformat(claimed_at)
    return handler_runs.run_handler(current_runtime(), handler, event_ids, mode, claimed_at)


def backfill_page(entity_type: str, records_url: str, token: str) -> int:
    """Copy the next page of a type's backfill, then queue the page after it; records so far."""
    runtime = current_runtime()
    try:
        held = sync_state.current(runtime.engine, entity_type, token)
        hook = backfill_events.Hook(runtime) if runtime.settings.backfill_runs_handlers else None
        held, progress = backfill.step(
            runtime.engine, runtime.listing, EntityType(entity_type, records_url), held,
            runtime.settings.backfill_page_size, lease_seconds(runtime.settings), hook,
        )  # fmt: skip
    except sync_state.LeaseLost:
        log.info("backfill of %s: another process holds it now; this page job stops", entity_type)
        return 0
    if hook is not None:
        hook.enqueue()
    if progress.finished:
        log.info("backfill of %s complete: %d records", entity_type, progress.done)
    else:
        runtime.sync.enqueue_page(EntityType(entity_type, records_url), token)
    return progress.done


def reconcile() -> dict[str, str]:
    """A scheduled reconcile of every subscribed type (one at a time across workers); the summaries."""
    runtime = current_runtime()
    lock = reconcile_lock(runtime.settings, runtime.redis)
    summaries: dict[str, str] = {}
    try:
        if not lock.acquire():
            log.info("a reconcile is already running; this one is skipped")
            return summaries
        try:
            for entity_type in runtime.sync.types():
                drift = reconcile_type(runtime.engine, runtime.listing, entity_type, runtime.settings.backfill_page_size, on_page=lock.reacquire)
                summaries[entity_type.name] = drift.summary()
                log.info("reconcile of %s: %s", entity_type.name, drift.summary())
        finally:
            lock.release()
    finally:
        runtime.redis.delete(scheduled_key(runtime.settings))  # the next tick schedules the next one
    return summaries
