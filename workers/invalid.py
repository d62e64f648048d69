"""Events set aside as ``invalid``: bodies the worker could not use when they arrived, kept with the reason.

Nothing is set aside for good. After an upgrade or a setting change, ``replay`` parses each
stored payload again with today's code and, where it now makes an event, applies it through
the normal batch path (the ledger row's runs, the mirror's ordering guard, the custom
handlers' follow-up jobs), then gives the ledger row the status its runs say. A payload that
still does not parse stays invalid, with today's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from config.states import RunOutcome
from workers import handler_runs, ledger, processing
from workers.database import db_time
from workers.models import LedgerEntry
from workers.runtime import WorkerRuntime


@dataclass(frozen=True)
class SetAside:
    """One ``invalid`` ledger row."""

    event_id: str
    subscription_id: str
    received_at: datetime
    reason: str
    payload: str


def find(engine: Engine, event_ids: Sequence[str] = (), limit: int | None = None) -> list[SetAside]:
    """The invalid events (these ids only, when given), oldest first."""
    query = select(LedgerEntry).where(LedgerEntry.status == ledger.INVALID).order_by(LedgerEntry.received_at, LedgerEntry.event_id)
    if event_ids:
        query = query.where(LedgerEntry.event_id.in_(list(event_ids)))
    if limit is not None:
        query = query.limit(limit)
    with Session(engine) as session:
        return [SetAside(r.event_id, r.subscription_id, r.received_at, r.last_error or "(no reason kept)", r.payload) for r in session.scalars(query)]


def today(found: SetAside) -> str | None:
    """What today's code says of the stored payload: None when it now parses, else why not."""
    (delivery,) = processing.parse([(found.event_id, found.subscription_id, found.payload.encode("utf-8"))])
    return None if delivery.event is not None else delivery.problem


def replay(runtime: WorkerRuntime, found: Sequence[SetAside]) -> dict[str, str]:
    """Re-parse and apply these events; the outcome per event id: its ledger status now, or ``invalid: <reason>``."""
    deliveries = processing.parse((f.event_id, f.subscription_id, f.payload.encode("utf-8")) for f in found)
    usable = [d for d in deliveries if d.event is not None]
    outcomes = {d.event_id: f"invalid: {d.problem}" for d in deliveries if d.event is None}
    with Session(runtime.engine) as session, session.begin():
        for delivery in deliveries:
            if delivery.event is None:
                session.execute(update(LedgerEntry).where(LedgerEntry.event_id == delivery.event_id, LedgerEntry.status == ledger.INVALID).values(last_error=delivery.problem))
    if not usable:
        return outcomes
    # The mirror's upserts and the handlers' run rows, as for a fresh batch. The ledger row is
    # still ``invalid`` here, which settling leaves alone: a crash before the next transaction
    # leaves it listed, and a second replay finds the mirror's run done and changes nothing twice.
    follow_ups = processing.process_batch(runtime, [(d.event_id, d.subscription_id, d.body) for d in usable], datetime.now(UTC))
    dialect = runtime.engine.dialect.name
    with Session(runtime.engine) as session, session.begin():
        for delivery in usable:
            event = delivery.event
            assert event is not None
            session.execute(
                update(LedgerEntry)
                .where(LedgerEntry.event_id == delivery.event_id, LedgerEntry.status == ledger.INVALID)
                .values(
                    status=ledger.PENDING,
                    last_error=None,
                    entity_type=event.entity_type,
                    operation=event.operation,
                    record_id=event.record.id,
                    occurred_at=db_time(event.occurred_at, dialect),
                )
            )
        ledger.settle(session, [d.event_id for d in usable])
    handler_runs.enqueue_follow_ups(runtime, follow_ups)
    with Session(runtime.engine) as session:
        statuses = dict(session.execute(select(LedgerEntry.event_id, LedgerEntry.status).where(LedgerEntry.event_id.in_([d.event_id for d in usable]))).all())
    return outcomes | {d.event_id: statuses.get(d.event_id, RunOutcome.UNKNOWN) for d in usable}
