"""The batch path: turning drained deliveries into committed ledger rows and mirror changes.

It writes the ledger rows and applies the batch handlers (the mirror) for a whole batch in one
transaction: a few statements for up to ``AIWYN_RECEIVER_BATCH_SIZE`` events. Custom handlers
are not run here: the batch names the runs to queue (``FollowUps``), and ``workers.handler_runs``
runs each in its own job, transaction, timeout and retries, so a failing, slow or hanging
handler never delays, retries or fails the mirror or another handler.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from workers import ledger, metrics, runs
from workers.events import InvalidEvent, parse_event
from workers.ledger import Delivery
from workers.registry import Registration
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# A stored error is cut to this many characters: a ledger row stays small, the message still says what.
ERROR_CHARS = 2000


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
            parsed[event_id] = Delivery(event_id, subscription_id, body, None, f"cannot be parsed: {describe(exc)}")
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
            return _set_aside(runtime, deliveries[0], f"cannot be applied: {describe(exc)}")
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
    error = describe(exc)
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


def describe(exc: BaseException) -> str:
    """``Type: message``, cut to ``ERROR_CHARS``."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
