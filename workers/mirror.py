"""The built-in handler: keep ``aiwyn_records`` at the newest known state of every record.

Ordering rule (the contract's): changes of one record are ordered by ``record.version`` when
both sides have one, else by ``occurredAt``, then by event id. The rule lives in the upsert's
``WHERE`` clause, so the database applies it atomically: two workers racing on one record,
a duplicate, or an older change arriving late can never overwrite a newer state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, not_, or_
from sqlalchemy.orm import Session

from workers.database import db_time, dialect_insert, execute_many
from workers.events import Event, plain
from workers.models import MirroredRecord

SOURCE_EVENT = "event"  # aiwyn_records.source of a row an event wrote (workers.sync writes the others)


def newer_than(incoming: Any, current: Any) -> Any:
    """SQL for "incoming is a later change than current" by the contract's ordering rule."""
    # A row read from Aiwyn's listing has no event id (null, read as ""): at the same version and
    # time, the event carrying that change takes the row over, so ``event_id`` names it.
    later_time = or_(
        incoming.occurred_at > current.occurred_at,
        and_(incoming.occurred_at == current.occurred_at, func.coalesce(incoming.event_id, "") > func.coalesce(current.event_id, "")),
    )
    both_versioned = and_(incoming.version.is_not(None), current.version.is_not(None))
    return or_(
        and_(both_versioned, or_(incoming.version > current.version, and_(incoming.version == current.version, later_time))),
        and_(not_(both_versioned), later_time),
    )


def is_newer(incoming: Event, current: Event) -> bool:
    """The ordering rule of ``newer_than`` in Python, to keep one change per record within a batch."""
    later_time = (incoming.occurred_at, incoming.id) > (current.occurred_at, current.id)
    if incoming.record.version is not None and current.record.version is not None:
        return incoming.record.version > current.record.version or (
            incoming.record.version == current.record.version and later_time
        )
    return later_time


def _row(event: Event, dialect: str, now: datetime) -> dict[str, Any]:
    record = event.record
    return {
        "entity_type": event.entity_type,
        "record_id": record.id,
        "system_ref": plain(record.system_ref),
        "attributes": plain(record.attributes),
        "active": record.active,
        "version": record.version,
        "occurred_at": db_time(event.occurred_at, dialect),
        "event_id": event.id,
        "updated_at": db_time(now, dialect),
        "source": SOURCE_EVENT,
        "inactive_reason": None,
    }


def mirror_records(events: Sequence[Event], session: Session) -> None:
    """Upsert many events' records in one statement; each record only moves forward.

    Only the newest change of each record in the batch is sent: one statement may not touch a
    row twice, and by the ordering rule the older changes would lose to it anyway. Rows go in
    key order so that two workers' batches lock shared rows in the same order (no deadlock).
    """
    if not events:
        return
    dialect = session.get_bind().dialect.name
    newest: dict[tuple[str, str], Event] = {}
    for event in events:
        key = (event.entity_type, event.record.id)
        if key not in newest or is_newer(event, newest[key]):
            newest[key] = event
    now = datetime.now(UTC)
    upsert_rows(session, [_row(newest[key], dialect, now) for key in sorted(newest)])


def upsert_rows(session: Session, rows: list[dict[str, Any]], returning: bool = False) -> set[tuple[str, str]]:
    """Insert or move forward mirror rows (one per record, in key order) under the ordering rule.

    Events, backfill pages and reconcile repairs all come through here, so none can overwrite a
    newer state. With ``returning``, the keys of the rows that were written (new or newer).
    """
    if not rows:
        return set()
    table = MirroredRecord.__table__
    statement = dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.entity_type, table.c.record_id],
        set_={key: statement.excluded[key] for key in rows[0] if key not in ("entity_type", "record_id")},
        where=newer_than(statement.excluded, table.c),
    )
    if not returning:
        execute_many(session, statement, rows)
        return set()
    statement = statement.returning(table.c.entity_type, table.c.record_id)
    # SQLAlchemy runs RETURNING over many parameter sets in batches ("insertmanyvalues") on both databases.
    return {tuple(row) for row in session.connection().execute(statement, rows)}  # type: ignore[misc]


def mirror_record(event: Event, session: Session) -> None:
    """Upsert the event's record unless the mirror already holds a newer change of it."""
    mirror_records([event], session)
