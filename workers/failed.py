"""The failed list: handler runs that gave up (or whose worker died mid-run), to inspect, replay or discard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session

from config.states import ClaimMode
from workers import database, handler_runs, ledger, runs
from workers.database import db_time
from workers.models import HandlerRun, LedgerEntry
from workers.runtime import WorkerRuntime


@dataclass(frozen=True)
class Filter:
    """Which failed runs; every field left empty matches all."""

    event_ids: Sequence[str] = ()
    handler: str | None = None
    entity_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.event_ids or self.handler or self.entity_type or self.since or self.until)


@dataclass(frozen=True)
class FailedRun:
    event_id: str
    handler: str
    status: str
    attempts: int
    last_error: str | None  # "Type: message" (the traceback apart, below)
    updated_at: datetime
    entity_type: str | None
    operation: str | None
    record_id: str | None
    payload: str = field(repr=False)
    traceback: str | None = field(default=None, repr=False)  # the last attempt's, its innermost 8,000 characters


def find(engine: Engine, which: Filter, limit: int | None = None) -> list[FailedRun]:
    """Failed runs, oldest first; a run still "running" after its lease counts as failed (its worker died)."""
    dialect = engine.dialect.name
    now = database.now_for(engine)
    query = (
        select(HandlerRun, LedgerEntry)
        .join(LedgerEntry, LedgerEntry.event_id == HandlerRun.event_id)
        .where(or_(HandlerRun.status == runs.FAILED, and_(HandlerRun.status == runs.RUNNING, HandlerRun.lease_until < now)))
        .order_by(HandlerRun.updated_at, HandlerRun.event_id, HandlerRun.handler)
        .limit(limit)
    )
    if which.event_ids:
        query = query.where(HandlerRun.event_id.in_(list(which.event_ids)))
    if which.handler:
        query = query.where(HandlerRun.handler == which.handler)
    if which.entity_type:
        query = query.where(LedgerEntry.entity_type == which.entity_type)
    if which.since:
        query = query.where(HandlerRun.updated_at >= db_time(which.since, dialect))
    if which.until:
        query = query.where(HandlerRun.updated_at < db_time(which.until, dialect))
    with Session(engine) as session:
        return [
            FailedRun(run.event_id, run.handler, run.status, run.attempts, error, run.updated_at,
                      entry.entity_type, entry.operation, entry.record_id, entry.payload, trace)  # fmt: skip
            for run, entry in session.execute(query).all()
            for error, trace in [runs.split_error(run.last_error)]
        ]


def replay(runtime: WorkerRuntime, failed: Iterable[FailedRun], progress: Callable[[FailedRun], None] = lambda run: None) -> Counter[str]:
    """Run each failed handler again on its event, here and now; other handlers of the event are untouched."""
    outcomes: Counter[str] = Counter()
    for run in failed:
        registration = runtime.registry.get(run.handler)
        if registration is None:
            outcomes["handler not registered here"] += 1
        else:
            delivery = handler_runs.load_deliveries(runtime, [run.event_id]).get(run.event_id)
            outcomes[handler_runs.run_one(runtime, registration, delivery, mode=ClaimMode.REPLAY)] += 1
        progress(run)
    return outcomes


def enqueue_replays(runtime: WorkerRuntime, failed: Iterable[FailedRun]) -> int:
    """Queue the replays for the workers, one job per handler; returns how many jobs."""
    by_handler: dict[str, list[str]] = {}
    for run in failed:
        by_handler.setdefault(run.handler, []).append(run.event_id)
    for handler, event_ids in by_handler.items():
        handler_runs.enqueue_runs(runtime, handler, event_ids, ClaimMode.REPLAY)
    return len(by_handler)


def discard(engine: Engine, failed: Iterable[FailedRun]) -> int:
    """Give up on these runs for good: they leave the failed list and their events count as processed."""
    done = 0
    with Session(engine) as session, session.begin():
        for run in failed:
            result = session.execute(
                update(HandlerRun)
                .where(HandlerRun.event_id == run.event_id, HandlerRun.handler == run.handler, HandlerRun.status == run.status)
                .values(status=runs.DISCARDED, lease_token=None, lease_until=None, updated_at=database.now_for(session))
            )
            done += result.rowcount
            ledger.settle(session, [run.event_id])
    return done
