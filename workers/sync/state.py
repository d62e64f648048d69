"""``aiwyn_sync_state``: per entity type, the backfill's cursor and lease, and the last completions.

One process at a time reads a type's pages: it holds the lease (a token and a deadline). A
page's rows, the cursor after it and the lease's renewal commit in one transaction guarded by
the token, so a process whose lease was taken over cannot write a page or move the cursor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from workers.database import db_time, dialect_insert, now_for
from workers.models import SyncState


class LeaseLost(Exception):
    """Another process holds this type's backfill now: stop without writing."""


@dataclass(frozen=True)
class Pass:
    """The backfill pass a lease holder continues: where it is and what it has done."""

    entity_type: str
    token: str
    cursor: str | None
    since: datetime | None
    done: int


def aware(moment: datetime | None) -> datetime | None:
    """Stored times as aware UTC (SQLite keeps them naive)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def in_progress(state: SyncState) -> bool:
    started, completed = aware(state.backfill_started_at), aware(state.backfill_completed_at)
    return started is not None and (completed is None or completed < started)


def states(engine: Engine) -> dict[str, SyncState]:
    with Session(engine) as session:
        return {row.entity_type: row for row in session.scalars(select(SyncState))}


def begin(
    engine: Engine, entity_type: str, lease_seconds: float, since: datetime | None = None, steal: bool = False, unfinished_only: bool = False
) -> Pass | None:
    """Take the type's lease and resume its pass in progress (same ``since``), or start a new one.

    ``steal``: an operator's command takes over from a worker (the worker stops at its next page);
    otherwise None while another holder's lease runs. ``unfinished_only``: None for a type whose
    full copy is complete (a worker's automatic start never copies a type twice).
    """
    now = now_for(engine)
    token = uuid.uuid4().hex
    since = db_time(since, engine.dialect.name) if since else None
    with Session(engine) as session, session.begin():
        insert = dialect_insert(session, SyncState.__table__).values(entity_type=entity_type, updated_at=now)
        session.execute(insert.on_conflict_do_nothing(index_elements=["entity_type"]))
        free = or_(SyncState.lease_until.is_(None), SyncState.lease_until < now)
        claimed = session.execute(
            update(SyncState)
            .where(SyncState.entity_type == entity_type, True if steal else free)
            .values(lease_token=token, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        ).rowcount
        if not claimed:
            return None
        state = session.get(SyncState, entity_type)
        assert state is not None
        if unfinished_only and state.backfill_completed_at is not None and not in_progress(state):
            session.rollback()
            return None
        same_pass = in_progress(state) and aware(state.backfill_since) == aware(since)
        if not same_pass:
            state.backfill_cursor, state.backfill_since, state.backfill_records, state.backfill_estimate = None, since, 0, None
            state.backfill_started_at = now
        return Pass(entity_type, token, state.backfill_cursor, since, state.backfill_records)


def current(engine: Engine, entity_type: str, token: str) -> Pass:
    """The pass as stored, for a holder that continues it (a page job); ``LeaseLost`` if not ours."""
    with Session(engine) as session:
        state = session.get(SyncState, entity_type)
        if state is None or state.lease_token != token or not in_progress(state):
            raise LeaseLost(entity_type)
        return Pass(entity_type, token, state.backfill_cursor, aware(state.backfill_since), state.backfill_records)


def advance(session: Session, held: Pass, cursor: str | None, added: int, estimate: int | None, lease_seconds: float) -> Pass:
    """Record a page in the caller's transaction (with its rows); the pass ends when ``cursor`` is None."""
    now = now_for(session)
    done = held.done + added
    values: dict[str, object] = {"backfill_cursor": cursor, "backfill_records": done, "updated_at": now}
    # Only where the API says how many it lists (``total``); without it the status says "about ?".
    values["backfill_estimate"] = (max(estimate, done) if estimate is not None else None) if cursor else done
    if cursor is None:
        values |= {"lease_token": None, "lease_until": None}
        if held.since is None:
            values["backfill_completed_at"] = now
        else:  # a partial pass (--since) does not make the type complete, nor leave it "in progress"
            values["backfill_started_at"] = None
    else:
        values["lease_until"] = now + timedelta(seconds=lease_seconds)
    moved = session.execute(
        update(SyncState).where(SyncState.entity_type == held.entity_type, SyncState.lease_token == held.token).values(**values)
    ).rowcount
    if not moved:
        raise LeaseLost(held.entity_type)
    return Pass(held.entity_type, held.token, cursor, held.since, done)


def release(engine: Engine, held: Pass) -> None:
    """Give the lease back early (an interrupted command), so a worker may go on at once."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(SyncState).where(SyncState.entity_type == held.entity_type, SyncState.lease_token == held.token).values(lease_until=None, lease_token=None)
        )


def reconciled(session: Session, entity_type: str, summary: str) -> None:
    now = now_for(session)
    insert = dialect_insert(session, SyncState.__table__).values(entity_type=entity_type, updated_at=now)
    session.execute(insert.on_conflict_do_nothing(index_elements=["entity_type"]))
    session.execute(
        update(SyncState).where(SyncState.entity_type == entity_type).values(reconcile_completed_at=now, reconcile_summary=summary, updated_at=now)
    )
