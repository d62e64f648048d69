"""Turning drained deliveries into committed effects: the batch path and the per-run path.

The batch path writes the ledger rows and applies the batch handlers (the mirror) for a whole
batch in one transaction: a few statements for up to ``AIWYN_RECEIVER_BATCH_SIZE`` events.
Custom handlers are not run there: each one gets its own RQ job per batch, and in it its own
transaction, timeout and retries per event, so a failing, slow or hanging handler never
delays, retries or fails the mirror or another handler.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from config.job_contract import seen_key
from config.states import ClaimMode
from workers import ledger, metrics, runs, shutdown
from workers.events import Event, InvalidEvent, parse_event
from workers.handler_session import HandlerSession
from workers.handlers import Failure, Retry
from workers.ledger import Delivery
from workers.models import LedgerEntry
from workers.ordering import advance_cursor
from workers.registry import Registration
from workers.runtime import WorkerRuntime
from workers.timeouts import time_limit

log = logging.getLogger(__name__)

RUN_HANDLER = "workers.jobs.run_handler"


class _LeaseLost(Exception):
    pass


def is_outage(exc: BaseException) -> bool:
    """Errors that say the database is unreachable or busy, not that an event is bad: retry all."""
    return isinstance(exc, (OperationalError, InterfaceError))


def parse(deliveries: Iterable[tuple[str, str, bytes]]) -> list[Delivery]:
    """Parsed deliveries, one per event id (a batch can hold a redelivered copy)."""
    parsed: dict[str, Delivery] = {}
    for event_id, subscription_id, body in deliveries:
        if event_id in parsed:
            continue
        try:
            parsed[event_id] = Delivery(event_id, subscription_id, body, parse_event(body, event_id, subscription_id))
        except InvalidEvent as exc:
            parsed[event_id] = Delivery(event_id, subscription_id, body, None, str(exc))
            log.error("event %s is invalid: %s", event_id, exc)
        except Exception as exc:  # untrusted input: whatever parsing it raises is this delivery's problem
            parsed[event_id] = Delivery(event_id, subscription_id, body, None, f"cannot be parsed: {_describe(exc)}")
            log.error("event %s is invalid: cannot be parsed: %s", event_id, type(exc).__name__)
    return list(parsed.values())


@dataclass
class FollowUps:
    """Handler runs to queue once the batch is committed: handler name -> event ids."""

    runs: dict[str, list[str]] = field(default_factory=dict)
    claimed_at: datetime | None = None  # the batch's (see ``run_handler``)
    # For the counters (workers.metrics), once committed: the new ledger rows, the batch handlers' runs.
    applied: list[metrics.Applied] = field(default_factory=list)
    batch_runs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, handler: str, event_id: str) -> None:
        self.runs.setdefault(handler, []).append(event_id)

    def merge(self, other: FollowUps) -> None:
        for handler, event_ids in other.runs.items():
            self.runs.setdefault(handler, []).extend(event_ids)
        self.applied += other.applied
        self.batch_runs += other.batch_runs


def process_batch(runtime: WorkerRuntime, raw: Iterable[tuple[str, str, bytes]], claimed_at: datetime | None = None) -> FollowUps:
    """Commit a batch; if one event in it breaks the transaction, commit the others one by one.

    ``claimed_at``: when the batch was first claimed from Redis (``Batch.claimed_at``).
    """
    follow_ups = _process(runtime, parse(raw))
    follow_ups.claimed_at = claimed_at
    return follow_ups


def _process(runtime: WorkerRuntime, deliveries: Sequence[Delivery]) -> FollowUps:
    try:
        follow_ups = _commit(runtime, deliveries)
    except Exception as exc:  # any error, not only the database's: one bad delivery never holds up the rest
        if is_outage(exc):
            raise
        if len(deliveries) == 1:
            if isinstance(exc, SQLAlchemyError):
                return _commit_failure(runtime, deliveries[0], exc)
            return _set_aside(runtime, deliveries[0], f"cannot be applied: {_describe(exc)}")
        log.warning("a batch of %d failed (%s); committing its events one by one", len(deliveries), type(exc).__name__)
        follow_ups = FollowUps()
        for delivery in deliveries:
            follow_ups.merge(_process(runtime, [delivery]))
    return follow_ups


def _commit(runtime: WorkerRuntime, deliveries: Sequence[Delivery]) -> FollowUps:
    registry = runtime.registry
    follow_ups = FollowUps()
    matched: dict[str, list[Registration]] = {d.event_id: registry.handlers_for(d.event) for d in deliveries if d.event}
    status_of = {}
    for delivery in deliveries:
        if delivery.event is None:
            status_of[delivery.event_id] = ledger.INVALID
            continue
        custom = [r.name for r in matched[delivery.event_id] if r.batch_handler is None]
        for name in custom:
            follow_ups.add(name, delivery.event_id)
        status_of[delivery.event_id] = ledger.PENDING if custom else ledger.PROCESSED
    with Session(runtime.engine) as session, session.begin():
        new = ledger.record(session, deliveries, status_of)
        runs.add_pending(session, ((event_id, name) for name, ids in follow_ups.runs.items() for event_id in ids))
        redone: set[str] = set()
        for registration in registry:
            if registration.batch_handler is None:
                continue
            events = [d.event for d in deliveries if d.event and registration in matched[d.event_id]]
            claimed = runs.claim_batch(session, registration.name, [e.id for e in events])
            registration.batch_handler([e for e in events if e.id in claimed], session)
            redone |= claimed - new
            follow_ups.batch_runs[(registration.name, runs.SUCCEEDED)] += len(claimed)
        ledger.settle(session, redone)  # copies of known events whose batch run was still to do
    follow_ups.applied = metrics.applied(deliveries, status_of, new)
    return follow_ups


def _commit_failure(runtime: WorkerRuntime, delivery: Delivery, exc: SQLAlchemyError) -> FollowUps:
    """One event the batch handlers cannot apply: ledger it as failed and retry its handlers on
    their own; if even its ledger row cannot be stored, keep its payload as invalid."""
    error = _describe(exc)
    log.error("event %s: the batch handlers failed: %s", delivery.event_id, error)
    follow_ups = FollowUps()
    handlers = runtime.registry.handlers_for(delivery.event) if delivery.event else []
    try:
        with Session(runtime.engine) as session, session.begin():
            new = ledger.record(session, [delivery], {delivery.event_id: ledger.FAILED}, {delivery.event_id: error})
            runs.add_pending(session, ((delivery.event_id, r.name) for r in handlers))
            ledger.settle(session, [delivery.event_id])
    except SQLAlchemyError as again:
        if is_outage(again):
            raise
        unusable = Delivery(delivery.event_id, delivery.subscription_id, delivery.body, None, f"cannot be stored: {error}")
        with Session(runtime.engine) as session, session.begin():
            new = ledger.record(session, [unusable], {delivery.event_id: ledger.INVALID})
        follow_ups.applied = metrics.applied([unusable], {delivery.event_id: ledger.INVALID}, new)
        return follow_ups
    for registration in handlers:
        follow_ups.add(registration.name, delivery.event_id)
    follow_ups.applied = metrics.applied([delivery], {delivery.event_id: ledger.FAILED}, new)
    return follow_ups


def _set_aside(runtime: WorkerRuntime, delivery: Delivery, reason: str) -> FollowUps:
    """Ledger a delivery that cannot be applied as invalid, with the reason, so that its batch goes on."""
    log.error("event %s is invalid: %s", delivery.event_id, reason.splitlines()[0][:300])
    unusable = Delivery(delivery.event_id, delivery.subscription_id, delivery.body, None, reason)
    with Session(runtime.engine) as session, session.begin():
        new = ledger.record(session, [unusable], {delivery.event_id: ledger.INVALID})
    return FollowUps(applied=metrics.applied([unusable], {delivery.event_id: ledger.INVALID}, new))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


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
        return dict.fromkeys(event_ids, "handler not here")
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
        return "unknown"  # no ledger row, hence no run row either: they are written together
    if delivery.event is None:  # e.g. a stricter parser since it was stored
        reason = f"the stored payload no longer parses: {delivery.problem}"
        return _fail_unrunnable(runtime, registration.name, delivery.event_id, reason, mode, claimed_at)
    policy = policy_for(runtime, registration)
    claimed = runs.claim(runtime.engine, delivery.event_id, registration.name, lease_seconds=policy.timeout + 60, mode=mode, failed_before=claimed_at)
    if claimed is None:
        return "not claimable"  # done, discarded, or running elsewhere
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
        return "lease lost"  # another worker took the run over: its result stands, ours rolled back
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
    claimed = runs.claim(runtime.engine, event_id, handler, lease_seconds=60, mode=mode, failed_before=claimed_at)
    if claimed is None:
        return "not claimable"
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
    error = _describe(exc)
    trace = "".join(traceback.format_exception(exc))
    attempt = claimed.attempt
    final = attempt >= policy.attempts or not registration.options.retries(exc)
    delay = 0.0 if final else exc.after if isinstance(exc, Retry) else policy.delay(attempt)
    retry_at = None if final else retry_due(delay) if delay > 0 else datetime.now(UTC)
    status = runs.FAILED if final else runs.RETRYING
    with Session(runtime.engine) as session, session.begin():
        if not runs.finish(session, event.id, registration.name, claimed.token, status, runs.error_text(error, trace), retry_at):
            return "lease lost"
    if final:
        log.error("handler %s on event %s failed for good after %d attempt(s): %s\n%s", registration.name, event.id, attempt, error, trace.rstrip())
        gave_up(runtime, event.id)
        call_give_up_hooks(runtime, registration, Failure(registration.name, event.id, event, error, trace, attempt, exc))
        return runs.FAILED
    # The traceback the first time; the run's last_error keeps the latest one.
    detail = "\n" + trace.rstrip() if attempt == 1 else ""
    log.warning("handler %s on event %s failed (attempt %d of %d), retry at %s: %s%s", registration.name, event.id, attempt, policy.attempts, retry_at.isoformat(timespec="seconds"), error, detail)
    if delay > 0:
        runtime.handler_queue.enqueue_at(retry_at, RUN_HANDLER, registration.name, [event.id], ClaimMode.RETRY, job_timeout=int(policy.timeout) + 60)
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
            log.error("the give-up hook %s of handler %s failed on event %s: %s", getattr(hook, "__qualname__", hook), registration.name, failure.event_id, _describe(exc), exc_info=exc)


def enqueue_runs(runtime: WorkerRuntime, handler: str, event_ids: list[str], mode: str = ClaimMode.NEW, claimed_at: datetime | None = None) -> None:
    """Queue one job that runs this handler on these events (see ``run_handler`` for ``mode``)."""
    registration = runtime.registry.get(handler)
    timeout = policy_for(runtime, registration).timeout if registration else runtime.settings.handler_timeout
    runtime.handler_queue.enqueue_call(
        RUN_HANDLER,
        args=(handler, event_ids, mode, claimed_at.isoformat() if claimed_at else None),  # JSON: jobs are never pickled
        timeout=int(len(event_ids) * (timeout + 5)) + 60,
        retry=runtime.job_retry,
        description=f"handler {handler} on {len(event_ids)} event(s)",
    )


def enqueue_follow_ups(runtime: WorkerRuntime, follow_ups: FollowUps) -> None:
    """One RQ job per handler and batch: RQ's bookkeeping is paid per batch, not per event.
    Called once the batch is committed, it also counts the batch (``workers.metrics``)."""
    metrics.count(runtime.redis, runtime.settings.queue_name, follow_ups.applied, follow_ups.batch_runs)
    for handler, event_ids in follow_ups.runs.items():
        enqueue_runs(runtime, handler, event_ids, ClaimMode.NEW, follow_ups.claimed_at)
