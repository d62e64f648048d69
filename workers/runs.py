"""Per-handler runs (``aiwyn_handler_runs``): who may run a handler on an event, and its outcome.

A run is claimed by one conditional UPDATE (status claimable, or running with a lapsed lease),
so two workers holding copies of one event never both run a handler. The claim is committed
on its own, before the handler starts: a slow handler then holds no lock that would block the
mirror. The handler's own writes and its ``succeeded`` mark commit together, guarded by the
lease token: a worker whose lease was taken over cannot commit a second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, or_, update
from sqlalchemy.orm import Session

from config.states import ClaimMode, RunStatus
from workers.database import db_time, dialect_insert, execute_many, now_for
from workers.models import HandlerRun

PENDING, RUNNING, SUCCEEDED, RETRYING = RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.RETRYING
FAILED, SKIPPED, DISCARDED = RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.DISCARDED
DONE = (SUCCEEDED, SKIPPED, DISCARDED)
# Which runs a job may take, by why it runs. A run left "running" by a dead worker (its lease
# passed) may be taken by any of them.
CLAIMABLE = {
    ClaimMode.NEW: (PENDING,),  # a batch's follow-up job (and FAILED before the batch: see ``claim``)
    ClaimMode.RETRY: (RETRYING,),  # the scheduled next attempt
    ClaimMode.REPLAY: (FAILED,),  # an operator's replay from the failed list
}

def _claimable(now: datetime, statuses: Sequence[str], *more: Any):  # noqa: ANN202 - a SQL condition
    # Equalities, not IN: an IN list is an "expanding" parameter, which executemany refuses.
    return or_(
        *(HandlerRun.status == status for status in statuses),
        and_(HandlerRun.status == RUNNING, HandlerRun.lease_until < now),
        *more,
    )


def add_pending(session: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Create the run rows of (event id, handler) pairs not seen before, as ``pending``."""
    now = now_for(session)
    rows = [
        {"event_id": e, "handler": h, "status": PENDING, "attempts": 0, "created_at": now, "updated_at": now}
        for e, h in sorted(set(pairs))
    ]
    if rows:
        statement = dialect_insert(session, HandlerRun.__table__).on_conflict_do_nothing(index_elements=["event_id", "handler"])
        execute_many(session, statement, rows)


def claim_batch(session: Session, handler: str, event_ids: Sequence[str]) -> set[str]:
    """Mark a batch handler's runs succeeded, in the caller's transaction; returns the event ids
    that were not already done, i.e. the ones the handler must now apply.

    Another transaction inserting the same rows waits for this one, then sees them succeeded.
    """
    if not event_ids:
        return set()
    now = now_for(session)
    rows = [
        {"event_id": e, "handler": handler, "status": SUCCEEDED, "attempts": 1, "created_at": now, "updated_at": now}
        for e in sorted(set(event_ids))
    ]
    table = HandlerRun.__table__
    statement = dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["event_id", "handler"],
        set_={
            "status": SUCCEEDED,
            "attempts": HandlerRun.attempts + 1,
            "last_error": None,
            "lease_token": None,
            "lease_until": None,
            "updated_at": now,
        },
        where=_claimable(now, (PENDING, RETRYING, FAILED)),
    ).returning(table.c.event_id)
    return set(execute_many(session, statement, rows).scalars())


TRACEBACK_LIMIT = 8000  # characters of a failure's traceback kept in ``last_error`` (its innermost frames)
_TRACEBACK_START = "\n\nTraceback (most recent call last):\n"


def error_text(error: str, traceback: str | None) -> str:
    """What ``last_error`` holds: the one-line ``Type: message``, then the traceback, bounded."""
    if not traceback:
        return error
    body = traceback.removeprefix(_TRACEBACK_START[2:])
    if len(body) > TRACEBACK_LIMIT:
        body = "  ...\n" + body[-TRACEBACK_LIMIT:]
    return error + _TRACEBACK_START + body


def split_error(last_error: str | None) -> tuple[str | None, str | None]:
    """``last_error`` as (error, traceback or None)."""
    if last_error is None or _TRACEBACK_START not in last_error:
        return last_error, None
    error, _, body = last_error.partition(_TRACEBACK_START)
    return error, _TRACEBACK_START[2:] + body


@dataclass(frozen=True)
class Claim:
    token: str
    attempt: int  # this one, counting from 1 since the run was last replayed or redelivered
    replay: bool = False  # the run had failed for good before: this set of attempts is a replay's or a redelivery's


def claim(engine: Engine, event_id: str, handler: str, lease_seconds: float, mode: str = ClaimMode.NEW, failed_before: datetime | None = None) -> Claim | None:
    """Take the run for this worker, in a transaction of its own; None when it is not to be taken.

    ``failed_before``: a failed run is taken too if it failed before then (a redelivery).
    """
    token = uuid.uuid4().hex
    now = now_for(engine)
    more = []
    if failed_before is not None:
        more.append(and_(HandlerRun.status == FAILED, HandlerRun.updated_at < db_time(failed_before, engine.dialect.name)))
    with Session(engine) as session, session.begin():
        claimed = session.execute(
            update(HandlerRun)
            .where(HandlerRun.event_id == event_id, HandlerRun.handler == handler, _claimable(now, CLAIMABLE[mode], *more))
            .values(
                status=RUNNING,
                lease_token=token,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=HandlerRun.attempts + 1,
                # A replay or a redelivery starts a fresh set of attempts; the total stays.
                attempt_base=case((HandlerRun.status == FAILED, HandlerRun.attempts), else_=HandlerRun.attempt_base),
                next_attempt_at=None,
                updated_at=now,
            )
            .returning(HandlerRun.attempts - HandlerRun.attempt_base, HandlerRun.attempt_base)
        ).one_or_none()
    return None if claimed is None else Claim(token, claimed[0], claimed[1] > 0)


def finish(
    session: Session,
    event_id: str,
    handler: str,
    token: str,
    status: str,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> bool:
    """Record the outcome of the run this worker holds; False when its lease was taken over."""
    dialect = session.get_bind().dialect.name
    result = session.execute(
        update(HandlerRun)
        .where(HandlerRun.event_id == event_id, HandlerRun.handler == handler, HandlerRun.lease_token == token)
        .values(
            status=status,
            last_error=error,
            lease_token=None,
            lease_until=None,
            next_attempt_at=db_time(retry_at, dialect) if retry_at else None,
            updated_at=now_for(session),
        )
    )
    return result.rowcount == 1
