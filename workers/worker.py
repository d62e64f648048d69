"""The worker process: an RQ ``SimpleWorker`` (no fork per job) that also sweeps for lost wake-ups and lost
handler jobs; beside it, a thread that starts the sync that is due."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from rq import SimpleWorker
from sqlalchemy.exc import SQLAlchemyError

from aiwyn_api.client import AiwynAPIError
from config import SettingsError
from workers import shutdown
from workers.recovery import requeue_stuck_runs
from workers.runtime import WorkerRuntime
from workers.sync.listing import SyncError

# RQ heartbeats once per dequeue timeout (ttl - 15 s): with 20 s, an idle worker looks for
# deliveries left without a drain job (a receiver crashed between storing and queueing,
# a batch abandoned by a dead worker) every 5 seconds.
WORKER_TTL = 20
# RQ also heartbeats after every job: the database sweep for stuck handler runs is throttled.
RUN_SWEEP_INTERVAL = 5.0
# Sync's tick (a backfill to start or to take over, the next reconcile to schedule): one query,
# and a call of Aiwyn's API every few minutes; after a failure, the next try waits longer.
SYNC_TICK_INTERVAL = 15.0
SYNC_RETRY_INTERVAL = 60.0

log = logging.getLogger(__name__)


class DrainWorker(SimpleWorker):
    """Runs the drain and handler jobs in this process, and queues a drain job when one is due."""

    def __init__(self, *args: Any, runtime: WorkerRuntime, **kwargs: Any) -> None:
        super().__init__(*args, worker_ttl=WORKER_TTL, **kwargs)
        self._runtime = runtime
        self._next_run_sweep = 0.0

    def request_stop(self, signum: int, frame: Any) -> None:
        shutdown.stopping.set()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:
            try:
                self._runtime.batches.wake_if_needed()
            except redis.RedisError as exc:
                self.log.warning("sweep for waiting deliveries failed: %s", type(exc).__name__)
            # Only where handler jobs are taken: idle then means none of them waits in the queue.
            if self._runtime.handler_queue.name in self.queue_names() and time.monotonic() >= self._next_run_sweep:
                self._next_run_sweep = time.monotonic() + RUN_SWEEP_INTERVAL
                try:
                    requeue_stuck_runs(self._runtime)
                except (SQLAlchemyError, redis.RedisError) as exc:
                    self.log.warning("sweep for stuck handler runs failed: %s", type(exc).__name__)


def start_sync_ticker(runtime: WorkerRuntime) -> threading.Thread:
    """Tick the sync (``workers.sync.schedule``) in a thread beside the worker's loop, so a slow or
    unreachable Aiwyn never delays draining; one log line when it starts failing, one when it recovers."""

    def loop() -> None:
        failing = False
        while not shutdown.stopping.is_set():
            try:
                runtime.sync.tick()
            except (SQLAlchemyError, redis.RedisError, AiwynAPIError, SyncError, SettingsError) as exc:
                if not failing:
                    log.warning("sync: %s; trying again every %.0f s", exc if isinstance(exc, (SyncError, SettingsError)) else f"{type(exc).__name__}: {exc}", SYNC_RETRY_INTERVAL)
                failing = True
            except Exception:  # a bug must not end the ticker unseen
                log.exception("sync: the tick failed")
                failing = True
            else:
                if failing:
                    log.info("sync: working again")
                failing = False
            shutdown.stopping.wait(SYNC_RETRY_INTERVAL if failing else SYNC_TICK_INTERVAL)

    thread = threading.Thread(target=loop, name="sync-ticker", daemon=True)
    thread.start()
    return thread
