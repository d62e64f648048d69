"""RQ job entry points: ``drain_deliveries`` (named in config.job_contract) and ``run_handler``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

from config.job_contract import wake_key
from workers import processing, shutdown
from workers.runtime import current_runtime

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
