"""Ordered handlers: each sees the changes of one record only in increasing order.

A cursor row per (handler, record) holds the newest change the handler has been given; it is
advanced by the same guarded upsert as the mirror, in the handler's transaction. An older
change arriving later is skipped (recorded as ``skipped``), never delivered out of order.
Cost: one more upsert per event, and two events of one record wait for each other (the
cursor row is locked until the handler's transaction ends); a handler sees every change it
is given in order, but not necessarily every change (a late one is skipped, not replayed).
On SQLite the lock is the whole database's write lock, held while the handler runs: moving the
upsert after the handler would let two changes of one record run at once, out of order.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from workers.database import db_time, dialect_insert
from workers.events import Event
from workers.mirror import newer_than
from workers.models import HandlerCursor


def advance_cursor(session: Session, handler: str, event: Event) -> bool:
    """Move the handler's cursor of this record to ``event``; False when the event is older."""
    dialect = session.get_bind().dialect.name
    statement = dialect_insert(session, HandlerCursor.__table__).values(
        handler=handler,
        entity_type=event.entity_type,
        record_id=event.record.id,
        version=event.record.version,
        occurred_at=db_time(event.occurred_at, dialect),
        event_id=event.id,
    )
    table = HandlerCursor.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.handler, table.c.entity_type, table.c.record_id],
        set_={key: statement.excluded[key] for key in ("version", "occurred_at", "event_id")},
        where=newer_than(statement.excluded, table.c),
    ).returning(table.c.event_id)
    return session.execute(statement).first() is not None
