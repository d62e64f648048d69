"""The worker process: an RQ ``SimpleWorker`` (no fork per job) that also sweeps for lost wake-ups and lost
handler jobs; beside it, a thread that starts the sync that is due."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from rq import SimpleWorker
from sqlalchemy.exc import SQLAlchemyError

from aiwyn_api.client import AiwynAPIError
from config import SettingsError
from config.job_contract import DRAIN_DELIVERIES, JOB_SERIALIZER, RUN_HANDLER
from config.reachability import database_place, redis_place
from workers import outages, processing, shutdown
from workers.outages import wait_until_back
from workers.recovery import requeue_stuck_runs
from workers.runtime import WorkerRuntime
from workers.sync.listing import SyncError
from workers.sync.schedule import BACKFILL_PAGE, RECONCILE

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

# The only functions a worker runs: every job the project queues. Anyone who can write to Redis
# can queue a job naming any importable function (``subprocess.getoutput``); it is failed unrun.
ALLOWED_JOBS = frozenset({DRAIN_DELIVERIES, RUN_HANDLER, BACKFILL_PAGE, RECONCILE})


def refusal(job: Any) -> str | None:
    """Why this job must not run, or None: a function off the allow-list, a bound instance, or callbacks (ours set none)."""
    try:
        name = job.func_name
        instance = job.instance
    except Exception:  # any undecodable job (rq's DeserializationError, a bad JSON shape) is refused
        return "its data cannot be read as a JSON job"
    if name not in ALLOWED_JOBS or instance is not None:
        return f"{str(name)[:100]!r} is not one of the project's job functions"
    if any(getattr(job, f"_{kind}_callback_name", None) for kind in ("success", "failure", "stopped")):  # rq keeps the names private
        return "it names callbacks"
    return None


class DrainWorker(SimpleWorker):
    """Runs the drain and handler jobs in this process, and queues a drain job when one is due."""

    def __init__(self, *args: Any, runtime: WorkerRuntime, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JOB_SERIALIZER)
        super().__init__(*args, worker_ttl=WORKER_TTL, **kwargs)
        self._runtime = runtime
        self._next_run_sweep = 0.0
        self._failing_sweeps: set[str] = set()

    # RQ's work loop quits on any exception it does not expect, a lost Redis among them: the
    # steps of the loop that talk to Redis wait for it instead. A job in hand when Redis went
    # away is left: its batch's lease runs out and another drain job takes the batch over.
    _REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)

    def _ride_out(self, error: BaseException) -> None:
        where = f"Redis at {redis_place(self._runtime.settings.redis_url)}"
        wait_until_back(where, self.connection.ping, error, self.log, self._REDIS_ERRORS, stop=shutdown.stopping.is_set)
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None and (not scheduler._process or not scheduler._process.is_alive()):
            try:
                scheduler.acquire_locks(auto_start=True)  # RQ would restart it only at its next maintenance
            except redis.RedisError as exc:
                self.log.warning("scheduler not restarted: %s", type(exc).__name__)

    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        reason = refusal(job)
        if reason is None:
            return super().perform_job(job, queue, execution)
        log.error("job %s refused, not run: %s", str(job.id)[:100], reason)
        job.retries_left, job.webhooks = None, []  # failed for good, and nobody is told anything
        self.handle_job_failure(job, queue=queue, exc_string=f"refused: {reason}", execution=execution)
        return False

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)
        except self._REDIS_ERRORS as exc:
            self._ride_out(exc)
        lost = outages.database_lost.take()
        if lost is not None:
            self._ride_out_database(lost)

    # A job that loses the database gives its work back (a drain job its batch, see
    # ``jobs.drain_deliveries``; others through RQ's retry) and the worker waits for the
    # database before it takes another job: one line when it goes, one when it is back.
    def _ride_out_database(self, error: BaseException) -> None:
        def check() -> None:
            try:
                SimpleWorker.heartbeat(self)  # still alive to RQ while it waits
            except redis.RedisError:
                pass  # the loop's next step that needs Redis waits for it
            outages.ping_database(self._runtime.engine)

        where = f"database {database_place(self._runtime.settings.database_url)}"
        wait_until_back(where, check, error, self.log, (SQLAlchemyError,), stop=shutdown.stopping.is_set)
        try:
            self._runtime.batches.wake_if_needed()  # the batches given back are due: drain them now
        except redis.RedisError:
            pass

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if error is not None and processing.is_outage(error) and not outages.database_answers(self._runtime.engine):
            self.log.warning("job %s (%s): the database does not answer (%s); RQ retries the job", job.id, job.description, type(error).__name__)
            outages.database_lost.notice(error)
            return
        super().handle_exception(job, *exc_info)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except self._REDIS_ERRORS as exc:
                self._ride_out(exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except self._REDIS_ERRORS as exc:
            self._ride_out(exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except self._REDIS_ERRORS as exc:
            self._ride_out(exc)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if isinstance(exc, redis.ConnectionError):
            time.sleep(2.0)  # the main loop says when Redis goes and comes back; this thread just retries
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def request_stop(self, signum: int, frame: Any) -> None:
        shutdown.stopping.set()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        try:
            super().heartbeat(timeout, pipeline)
        except self._REDIS_ERRORS as exc:
            if pipeline is not None:
                raise
            self._ride_out(exc)
        if pipeline is None:
            self._sweep("waiting deliveries", self._runtime.batches.wake_if_needed)
            # Only where handler jobs are taken: idle then means none of them waits in the queue.
            if self._runtime.handler_queue.name in self.queue_names() and time.monotonic() >= self._next_run_sweep:
                self._next_run_sweep = time.monotonic() + RUN_SWEEP_INTERVAL
                self._sweep("stuck handler runs", lambda: requeue_stuck_runs(self._runtime))

    def _sweep(self, what: str, sweep: Callable[[], object]) -> None:
        """One of the idle worker's sweeps; a failure is said when it starts and when it ends, not at
        every heartbeat, and a lost database is waited for as a job would."""
        try:
            sweep()
        except SQLAlchemyError as exc:
            if processing.is_outage(exc) and not outages.database_answers(self._runtime.engine):
                self._ride_out_database(exc)
                return
            problem = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:300]
        except redis.RedisError as exc:
            problem = type(exc).__name__
        else:
            if what in self._failing_sweeps:
                self._failing_sweeps.discard(what)
                self.log.warning("sweep for %s works again", what)
            return
        if what not in self._failing_sweeps:
            self._failing_sweeps.add(what)
            self.log.warning("sweep for %s failed: %s; tried again at each heartbeat", what, problem)


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
            interval = min(SYNC_TICK_INTERVAL, runtime.settings.schema_check_interval or SYNC_TICK_INTERVAL)
            shutdown.stopping.wait(SYNC_RETRY_INTERVAL if failing else interval)

    thread = threading.Thread(target=loop, name="sync-ticker", daemon=True)
    thread.start()
    return thread
