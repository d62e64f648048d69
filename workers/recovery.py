"""Handler runs whose job was lost: the idle worker's sweep finds them and queues them again.

A run can be left with no job that will ever take it: ``retrying`` whose scheduled retry was
never queued (the enqueue failed after the commit) or was lost, ``running`` whose worker died
or lost the database mid-run (its lease passed), ``pending`` whose follow-up job was never
queued. The sweep reads a bounded batch of them in one query on the status index, then takes
each by a conditional UPDATE that moves its due time on by the grace: two workers' sweeps
never queue one run twice, and the run's own claim still keeps it from running twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from config.states import ClaimMode
from workers import database, handler_runs, ledger, runs
from workers.handlers import Failure
from workers.models import HandlerRun
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

SWEEP_LIMIT = 100  # runs per sweep; a longer backlog is taken over the next sweeps


def _stuck(now: datetime, grace: timedelta):  # noqa: ANN202 - a SQL condition
    return or_(
        and_(HandlerRun.status == runs.RETRYING, HandlerRun.next_attempt_at < now - grace),
        and_(HandlerRun.status == runs.RUNNING, HandlerRun.lease_until < now),
        and_(HandlerRun.status == runs.PENDING, HandlerRun.updated_at < now - grace),
    )


def requeue_stuck_runs(runtime: WorkerRuntime, limit: int = SWEEP_LIMIT) -> int:
    """Queue a job again for each run that lost its own; returns how many were queued or failed."""
    engine = runtime.engine
    grace = timedelta(seconds=runtime.settings.handler_sweep_grace)
    now = database.now_for(engine)
    with Session(engine) as session:
        found = session.execute(
            select(HandlerRun.event_id, HandlerRun.handler, HandlerRun.status, HandlerRun.attempts - HandlerRun.attempt_base)
            .where(_stuck(now, grace), HandlerRun.handler.in_([registration.name for registration in runtime.registry]))
            .order_by(HandlerRun.updated_at)
            .limit(limit)
        ).all()
    to_queue: dict[tuple[str, str], list[str]] = {}
    taken = 0
    for event_id, handler, status, attempts in found:
        registration = runtime.registry.get(handler)
        values: dict[str, object] = {"updated_at": now, "next_attempt_at": now}
        final = False
        if status == runs.RUNNING:  # its worker died: that attempt counts
            final = attempts >= handler_runs.policy_for(runtime, registration).attempts
            error = f"the worker died or lost the database during attempt {attempts}"
            values |= {"status": runs.FAILED if final else runs.RETRYING, "next_attempt_at": None if final else now,
                       "lease_token": None, "lease_until": None, "last_error": error}  # fmt: skip
        with Session(engine) as session, session.begin():
            row = (HandlerRun.event_id == event_id, HandlerRun.handler == handler, HandlerRun.status == status)
            if not session.execute(update(HandlerRun).where(*row, _stuck(now, grace)).values(**values)).rowcount:
                continue  # another sweep or a job took it meanwhile
            if final:
                ledger.settle(session, [event_id])
        taken += 1
        if final:
            handler_runs.gave_up(runtime, event_id)
            handler_runs.call_give_up_hooks(runtime, registration, Failure(handler, event_id, None, error, None, attempts))
        else:
            to_queue.setdefault((handler, ClaimMode.NEW if status == runs.PENDING else ClaimMode.RETRY), []).append(event_id)
    for (handler, mode), event_ids in to_queue.items():
        handler_runs.enqueue_runs(runtime, handler, event_ids, mode)
    if taken:
        log.warning("requeued or failed %d handler run(s) left without a job: %s", taken, sorted(to_queue))
    return taken
