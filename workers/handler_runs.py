"""The handler-run path: each custom handler on each event in its own transaction, under its own
timeout, with retries and back-off, then the failed list and the give-up hooks.

A batch's follow-ups (``processing.FollowUps``) become one RQ job per handler
(``RUN_HANDLER``); a run is claimed (``runs.claim``), run, and its outcome committed with the
handler's writes.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.job_contract import RUN_HANDLER, seen_key
from config.states import ClaimMode, RunOutcome
from workers import ledger, metrics, runs, shutdown
from workers.events import Event
from workers.handler_session import HandlerSession
from workers.handlers import Failure, Retry
from workers.ledger import Delivery
from workers.models import LedgerEntry
from workers.ordering import advance_cursor
from workers.processing import FollowUps, describe, parse
from workers.registry import Registration
from workers.runtime import WorkerRuntime
from workers.timeouts import time_limit

log = logging.getLogger(__name__)

# A claimed run's lease outlives the handler's timeout by this much: time to record the outcome
# after a handler that ran to its limit, before another worker may take the run over.
LEASE_MARGIN_SECONDS = 60
# A run that cannot start is claimed only to record why: a short lease is enough.
UNRUNNABLE_LEASE_SECONDS = 60
# An RQ handler job may run each of its events to the timeout, plus this much each to claim and
# record, plus the margin above for the job as a whole.
PER_EVENT_OVERHEAD_SECONDS = 5


class _LeaseLost(Exception):
    pass


def load_deliveries(runtime: WorkerRuntime, event_ids: Sequence[str]) -> dict[str, Delivery]:
    """The stored deliveries of these events, parsed again from the ledger's payload."""
    with Session(runtime.engine) as session:
        rows = session.execute(
            select(LedgerEntry.event_id, LedgerEntry.subscription_id, LedgerEntry.payload).where(LedgerEntry.event_id.in_(list(event_ids)))
        ).all()
    return {d.event_id: d for d in parse((e, s, p.encode("utf-8")) for e, s, p in rows)}


@dataclass(frozen=True)
class Policy:
    timeout: float
    attempts: int
    retry_delay: float
    max_delay: float

    def delay(self, attempt: int) -> float:
        """Exponential back-off, capped, then up to a quarter longer (never shorter), so that the
        retries of many events failed at once spread apart without coming before their time."""
        nominal = min(self.max_delay, self.retry_delay * 2 ** min(attempt - 1, 64))  # past 2**1023 a float overflows
        return nominal * random.uniform(1, 1.25)


def policy_for(runtime: WorkerRuntime, registration: Registration) -> Policy:
    settings = runtime.settings
    options = registration.options
    return Policy(
        timeout=options.timeout or settings.handler_timeout,
        attempts=options.attempts or settings.handler_attempts,
        retry_delay=settings.handler_retry_delay if options.retry_delay is None else options.retry_delay,
        max_delay=settings.handler_retry_max_delay,
    )


def run_handler(runtime: WorkerRuntime, handler: str, event_ids: Sequence[str], mode: str = ClaimMode.NEW, claimed_at: datetime | None = None) -> dict[str, str]:
    """Run one handler on these events, each on its own; returns the outcome per event id.

    ``mode`` says why (``new``, ``retry``, ``replay``: see ``runs.CLAIMABLE``), which decides
    which of the runs it may take. A ``new`` job also re-runs a failed run, but only one that
    failed before ``claimed_at`` (its batch's): a redelivery after the failure, not another
    job for the delivery that failed (a retaken batch, a follow-up queued twice).
    """
    registration = runtime.registry.get(handler)
    if registration is None:
        # Deployed workers disagree (a rolling deploy): the runs stay as they are, and the sweep
        # of a worker that has the handler queues them again after the grace (workers.recovery).
        log.warning("handler %s is not registered in this worker: %d run(s) left to a worker that has it", handler, len(event_ids))
        return dict.fromkeys(event_ids, RunOutcome.HANDLER_NOT_HERE)
    deliveries = load_deliveries(runtime, event_ids)
    outcomes: dict[str, str] = {}
    for position, event_id in enumerate(event_ids):
        if shutdown.stopping.is_set():
            rest = list(event_ids[position:])
            enqueue_runs(runtime, handler, rest, mode, claimed_at)
            log.info("stopping: %d event(s) of handler %s handed to another job", len(rest), handler)
            break
        outcomes[event_id] = run_one(runtime, registration, deliveries.get(event_id), mode, claimed_at)
    return outcomes


def run_one(runtime: WorkerRuntime, registration: Registration, delivery: Delivery | None, mode: str = ClaimMode.NEW, claimed_at: datetime | None = None) -> str:
    """Claim, run under the time limit, and record one handler's run on one event."""
    if delivery is None:
        return RunOutcome.UNKNOWN  # no ledger row, hence no run row either: they are written together
    if delivery.event is None:  # e.g. a stricter parser since it was stored
        reason = f"the stored payload no longer parses: {delivery.problem}"
        return _fail_unrunnable(runtime, registration.name, delivery.event_id, reason, mode, claimed_at)
    policy = policy_for(runtime, registration)
    claimed = runs.claim(runtime.engine, delivery.event_id, registration.name, lease_seconds=policy.timeout + LEASE_MARGIN_SECONDS, mode=mode, failed_before=claimed_at)
    if claimed is None:
        return RunOutcome.NOT_CLAIMABLE  # done, discarded, or running elsewhere
    event = replace(delivery.event, attempt=claimed.attempt, replay=claimed.replay)
    try:
        # The handler's writes and its "succeeded" commit here, once: its session refuses commit().
        with HandlerSession(runtime.engine) as session, session.begin():
            if registration.options.ordered and not advance_cursor(session, registration.name, event):
                outcome = runs.SKIPPED
            else:
                with time_limit(policy.timeout):
                    registration.handler(event, session)
                outcome = runs.SUCCEEDED
            if not runs.finish(session, event.id, registration.name, claimed.token, outcome):
                raise _LeaseLost
    except _LeaseLost:
        return RunOutcome.LEASE_LOST  # another worker took the run over: its result stands, ours rolled back
    except Exception as exc:  # a handler's error of any kind is its own, never the worker's
        outcome = _record_failure(runtime, registration, policy, event, claimed, exc)
    with Session(runtime.engine) as session, session.begin():
        ledger.settle(session, [event.id])
    log.info("handler %s on event %s: %s", registration.name, event.id, outcome)
    if outcome in (runs.SUCCEEDED, runs.SKIPPED, runs.RETRYING, runs.FAILED):  # not "lease lost": the other worker counts it
        metrics.count_run(runtime.redis, runtime.settings.queue_name, registration.name, outcome)
    return outcome


def _fail_unrunnable(runtime: WorkerRuntime, handler: str, event_id: str, reason: str, mode: str, claimed_at: datetime | None) -> str:
    """A run that cannot even start goes to the failed list at once, with the reason, to replay once fixed."""
    claimed = runs.claim(runtime.engine, event_id, handler, lease_seconds=UNRUNNABLE_LEASE_SECONDS, mode=mode, failed_before=claimed_at)
    if claimed is None:
        return RunOutcome.NOT_CLAIMABLE
    with Session(runtime.engine) as session, session.begin():
        runs.finish(session, event_id, handler, claimed.token, runs.FAILED, reason)
        ledger.settle(session, [event_id])
    log.error("handler %s on event %s cannot run: %s", handler, event_id, reason)
    metrics.count_run(runtime.redis, runtime.settings.queue_name, handler, runs.FAILED)
    gave_up(runtime, event_id)
    registration = runtime.registry.get(handler)
    if registration is not None:
        call_give_up_hooks(runtime, registration, Failure(handler, event_id, None, reason, None, claimed.attempt))
    return runs.FAILED


def retry_due(delay: float, now: datetime | None = None) -> datetime:
    """When a retry ``delay`` seconds from now is due, rounded up to a whole second: RQ's scheduler
    keeps due times in whole seconds, cut down, which would run it up to a second early."""
    due = (now or datetime.now(UTC)) + timedelta(seconds=delay)
    return due if due.microsecond == 0 else due.replace(microsecond=0) + timedelta(seconds=1)


def _record_failure(runtime: WorkerRuntime, registration: Registration, policy: Policy, event: Event, claimed: runs.Claim, exc: Exception) -> str:
    error = describe(exc)
    trace = "".join(traceback.format_exception(exc))
    attempt = claimed.attempt
    final = attempt >= policy.attempts or not registration.options.retries(exc)
    delay = 0.0 if final else exc.after if isinstance(exc, Retry) else policy.delay(attempt)
    retry_at = None if final else retry_due(delay) if delay > 0 else datetime.now(UTC)
    status = runs.FAILED if final else runs.RETRYING
    with Session(runtime.engine) as session, session.begin():
        if not runs.finish(session, event.id, registration.name, claimed.token, status, runs.error_text(error, trace), retry_at):
            return RunOutcome.LEASE_LOST
    if final:
        log.error("handler %s on event %s failed for good after %d attempt(s): %s\n%s", registration.name, event.id, attempt, error, trace.rstrip())
        gave_up(runtime, event.id)
        call_give_up_hooks(runtime, registration, Failure(registration.name, event.id, event, error, trace, attempt, exc))
        return runs.FAILED
    # The traceback the first time; the run's last_error keeps the latest one.
    detail = "\n" + trace.rstrip() if attempt == 1 else ""
    log.warning("handler %s on event %s failed (attempt %d of %d), retry at %s: %s%s", registration.name, event.id, attempt, policy.attempts, retry_at.isoformat(timespec="seconds"), error, detail)
    if delay > 0:
        runtime.handler_queue.enqueue_at(retry_at, RUN_HANDLER, registration.name, [event.id], ClaimMode.RETRY, job_timeout=int(policy.timeout) + LEASE_MARGIN_SECONDS)
    else:  # no wait asked for: queued now, not rounded up to the scheduler's next second
        enqueue_runs(runtime, registration.name, [event.id], ClaimMode.RETRY)
    return runs.RETRYING


def gave_up(runtime: WorkerRuntime, event_id: str) -> None:
    """A handler failed for good on this event: a redelivery of it must be queued again, to re-run it."""
    runtime.redis.delete(seen_key(event_id))


def call_give_up_hooks(runtime: WorkerRuntime, registration: Registration, failure: Failure) -> None:
    """The handler's ``on_give_up``, then the global one, once the run is recorded as failed: a hook
    that raises or hangs is logged and stopped at the handler's timeout, never changing the outcome."""
    timeout = policy_for(runtime, registration).timeout
    for hook in (registration.options.on_give_up, runtime.registry.on_give_up):
        if hook is None:
            continue
        try:
            with time_limit(timeout):
                hook(failure)
        except Exception as exc:
            log.error("the give-up hook %s of handler %s failed on event %s: %s", getattr(hook, "__qualname__", hook), registration.name, failure.event_id, describe(exc), exc_info=exc)


def enqueue_runs(runtime: WorkerRuntime, handler: str, event_ids: list[str], mode: str = ClaimMode.NEW, claimed_at: datetime | None = None) -> None:
    """Queue one job that runs this handler on these events (see ``run_handler`` for ``mode``)."""
    registration = runtime.registry.get(handler)
    timeout = policy_for(runtime, registration).timeout if registration else runtime.settings.handler_timeout
    runtime.handler_queue.enqueue_call(
        RUN_HANDLER,
        args=(handler, event_ids, mode, claimed_at.isoformat() if claimed_at else None),  # JSON: jobs are never pickled
        timeout=int(len(event_ids) * (timeout + PER_EVENT_OVERHEAD_SECONDS)) + LEASE_MARGIN_SECONDS,
        retry=runtime.job_retry,
        description=f"handler {handler} on {len(event_ids)} event(s)",
    )


def enqueue_follow_ups(runtime: WorkerRuntime, follow_ups: FollowUps) -> None:
    """One RQ job per handler and batch: RQ's bookkeeping is paid per batch, not per event.
    Called once the batch is committed, it also counts the batch (``workers.metrics``)."""
    metrics.count(runtime.redis, runtime.settings.queue_name, follow_ups.applied, follow_ups.batch_runs)
    for handler, event_ids in follow_ups.runs.items():
        enqueue_runs(runtime, handler, event_ids, ClaimMode.NEW, follow_ups.claimed_at)
