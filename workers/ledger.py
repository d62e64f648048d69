"""The event ledger (``aiwyn_events``): one row per event id, the guard of exactly-once.

``claim`` inserts the event's row if it is new and then locks it, in the caller's
transaction: a second copy of the event, processed at the same moment by another worker,
waits for the first to commit and then finds it processed. (PostgreSQL: the unique key and
``FOR UPDATE``; SQLite: its single writer lock, taken by the insert.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from workers.events import Event
from workers.mirror import db_time
from workers.models import LedgerEntry

RECEIVED = "received"
PROCESSED = "processed"
FAILED = "failed"
INVALID = "invalid"

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def claim(session: Session, event_id: str, subscription_id: str, body: bytes, event: Event | None) -> LedgerEntry:
    """The event's ledger row, created on first sight and locked until the transaction ends."""
    dialect = session.get_bind().dialect.name
    insert = _INSERTS[dialect]
    values = {
        "event_id": event_id,
        "subscription_id": subscription_id,
        "payload": body.decode("utf-8", errors="replace"),
        "status": RECEIVED,
        "attempts": 0,
        "received_at": db_time(datetime.now(UTC), dialect),
    }
    if event is not None:
        values.update(
            entity_type=event.entity_type,
            operation=event.operation,
            record_id=event.record.id,
            occurred_at=db_time(event.occurred_at, dialect),
        )
    session.execute(insert(LedgerEntry).values(**values).on_conflict_do_nothing(index_elements=["event_id"]))
    entry = session.scalars(
        select(LedgerEntry).where(LedgerEntry.event_id == event_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    return entry


def finish(session: Session, entry: LedgerEntry, status: str, error: str | None = None) -> None:
    """Record the outcome of one processing attempt on the locked row."""
    dialect = session.get_bind().dialect.name
    entry.status = status
    entry.attempts = (entry.attempts or 0) + 1
    entry.last_error = error
    if status == PROCESSED:
        entry.processed_at = db_time(datetime.now(UTC), dialect)
