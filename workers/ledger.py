"""The event ledger (``aiwyn_events``): one row per event id, written with the batch's effects.

Rows are inserted "if new" in the same transaction as the batch handlers' effects, so an
event is in the ledger exactly when its mirror change is committed. The status sums up the
event's handler runs: ``processed`` (all done), ``pending`` (a handler is still to run or
retrying), ``failed`` (a handler gave up: see ``python -m workers failed``), ``invalid`` (the
body is not a usable event; kept with its reason, never retried).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, exists, or_, select, update
from sqlalchemy.orm import Session

from config.states import LedgerStatus, RunStatus
from workers.database import db_time, dialect_insert, execute_many, now_for
from workers.events import Event
from workers.models import HandlerRun, LedgerEntry
from workers.runs import DONE

PENDING, PROCESSED, FAILED, INVALID = LedgerStatus.PENDING, LedgerStatus.PROCESSED, LedgerStatus.FAILED, LedgerStatus.INVALID

@dataclass(frozen=True)
class Delivery:
    """A delivery as drained from Redis, with its parsed event or the reason it has none."""

    event_id: str
    subscription_id: str
    body: bytes
    event: Event | None
    problem: str | None = None


def payload_text(body: bytes) -> str:
    # PostgreSQL text cannot hold NUL; the body is JSON, where a NUL is always escaped anyway.
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def record(session: Session, deliveries: Sequence[Delivery], status_of: dict[str, str], error_of: dict[str, str] | None = None) -> set[str]:
    """Insert the ledger rows of events not seen before; returns the ids that were new."""
    if not deliveries:
        return set()
    dialect = session.get_bind().dialect.name
    now = now_for(session)
    rows = []
    for delivery in sorted(deliveries, key=lambda d: d.event_id):
        event = delivery.event
        rows.append(
            {
                "event_id": delivery.event_id,
                "subscription_id": delivery.subscription_id,
                "payload": payload_text(delivery.body),
                "status": status_of[delivery.event_id],
                "attempts": 1,
                "last_error": (error_of or {}).get(delivery.event_id) or delivery.problem,
                "received_at": now,
                "processed_at": now if status_of[delivery.event_id] == PROCESSED else None,
                "entity_type": event.entity_type if event else None,
                "operation": event.operation if event else None,
                "record_id": event.record.id if event else None,
                "occurred_at": db_time(event.occurred_at, dialect) if event else None,
            }
        )
    table = LedgerEntry.__table__
    statement = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.event_id)
    return set(execute_many(session, statement, rows).scalars())


def settle(session: Session, event_ids: Iterable[str]) -> None:
    """Set each event's ledger status from its runs: failed if one gave up, processed when all are done.

    Two handlers of one event finishing at once both settle it: the ledger rows are locked
    first (PostgreSQL), and the status is computed inside the UPDATE (SQLite takes its write
    lock there), so the last one to write has read both outcomes.
    """
    ids = sorted(set(event_ids))
    if not ids:
        return
    session.execute(select(LedgerEntry.event_id).where(LedgerEntry.event_id.in_(ids)).order_by(LedgerEntry.event_id).with_for_update())
    now = now_for(session)

    def any_run(*where: Any):  # noqa: ANN202 - a SQL condition
        return exists().where(HandlerRun.event_id == LedgerEntry.event_id, *where)

    failed, undone = any_run(HandlerRun.status == RunStatus.FAILED), any_run(HandlerRun.status.not_in(DONE))
    session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.event_id.in_(ids), LedgerEntry.status != INVALID)
        .values(
            status=case((failed, FAILED), (undone, PENDING), else_=PROCESSED),
            processed_at=case((or_(failed, undone), LedgerEntry.processed_at), else_=now),
        )
    )
