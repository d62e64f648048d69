"""RQ job entry points: ``drain_deliveries`` (named in config.job_contract), ``run_handler``, and the sync's ``backfill_page`` and ``reconcile``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

from config.job_contract import wake_key
from workers import backfill_events, processing, shutdown
from workers.runtime import current_runtime
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
        try:
            follow_ups = processing.process_batch(runtime, batch.deliveries, batch.claimed_at)
            processing.enqueue_follow_ups(runtime, follow_ups)
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


def run_handler(handler: str, event_ids: Sequence[str], mode: str = "new", claimed_at: datetime | None = None) -> dict[str, str]:
    """Run one custom handler on events of a committed batch, or retry it on one event."""
    return processing.run_handler(current_runtime(), handler, event_ids, mode, claimed_at)


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
