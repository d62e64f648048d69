"""The worker process: an RQ ``SimpleWorker`` (no fork per job) that also sweeps for lost wake-ups and lost
handler jobs, and starts the sync that is due."""

from __future__ import annotations

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
# Sync's tick (a backfill to start or to take over, the next reconcile to schedule): one query.
SYNC_TICK_INTERVAL = 15.0


class DrainWorker(SimpleWorker):
    """Runs the drain and handler jobs in this process, and queues a drain job when one is due."""

    def __init__(self, *args: Any, runtime: WorkerRuntime, **kwargs: Any) -> None:
        super().__init__(*args, worker_ttl=WORKER_TTL, **kwargs)
        self._runtime = runtime
        self._next_run_sweep = 0.0
        self._next_sync_tick = 0.0

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
            if self._runtime.sync_queue.name in self.queue_names() and time.monotonic() >= self._next_sync_tick:
                self._next_sync_tick = time.monotonic() + SYNC_TICK_INTERVAL
                self.sync_tick()

    def sync_tick(self) -> None:
        """Start the backfills and the reconcile that are due (see ``workers.sync.schedule``)."""
        try:
            self._runtime.sync.tick()
        except (SQLAlchemyError, redis.RedisError, AiwynAPIError, SyncError, SettingsError) as exc:
            self.log.warning("sync: %s", exc if isinstance(exc, (SyncError, SettingsError)) else f"{type(exc).__name__}: {exc}")
