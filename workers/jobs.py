"""RQ job entry points; ``process_delivery`` is the name the receiver enqueues (config.job_contract)."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from workers import ledger
from workers.events import InvalidEvent, parse_event
from workers.registry import HandlerRegistry
from workers.runtime import current_runtime

log = logging.getLogger(__name__)


def process_delivery(event_id: str, subscription_id: str, body: bytes) -> str:
    """Run one verified delivery through the ledger and its handlers (the RQ job)."""
    runtime = current_runtime()
    return handle_delivery(runtime.engine, runtime.registry, event_id, subscription_id, body)


def handle_delivery(engine: Engine, registry: HandlerRegistry, event_id: str, subscription_id: str, body: bytes) -> str:
    """Ledger row and handler effects commit together, or not at all; returns the outcome.

    A failure rolls everything back, is recorded on the ledger row in its own transaction,
    and is raised again so RQ retries the job with back-off.
    """
    try:
        event = parse_event(body, event_id, subscription_id)
        problem = None
    except InvalidEvent as exc:
        event, problem = None, str(exc)
    try:
        with Session(engine) as session, session.begin():
            entry = ledger.claim(session, event_id, subscription_id, body, event)
            if entry.status in (ledger.PROCESSED, ledger.INVALID):
                log.info("event %s already %s, skipped", event_id, entry.status)
                return "duplicate"
            if event is None:
                # Kept with its payload for an operator to inspect; retrying cannot fix it.
                ledger.finish(session, entry, ledger.INVALID, problem)
                log.error("event %s is invalid: %s", event_id, problem)
                return "invalid"
            for registration in registry.handlers_for(event):
                registration.handler(event, session)
            ledger.finish(session, entry, ledger.PROCESSED)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("event %s failed: %s", event_id, error)
        with Session(engine) as session, session.begin():
            ledger.finish(session, ledger.claim(session, event_id, subscription_id, body, event), ledger.FAILED, error)
        raise
    log.info("event %s processed (%s %s %s)", event_id, event.entity_type, event.operation, event.record.id)
    return "processed"
