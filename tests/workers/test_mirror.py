"""The mirror's ordering rule and the ledger's exactly-once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.events import event_body
from workers.events import Event
from workers.jobs import handle_delivery
from workers.models import LedgerEntry, MirroredRecord
from workers.registry import HandlerRegistry, default_registry


def apply(engine: sqlalchemy.Engine, event_id: str, registry: HandlerRegistry | None = None, **fields: object) -> str:
    return handle_delivery(engine, registry or default_registry(), event_id, "sub_1", event_body(event_id, **fields))


def mirrored(engine: sqlalchemy.Engine, record_id: str = "rec_1") -> MirroredRecord:
    with Session(engine) as session:
        return session.scalars(select(MirroredRecord).where(MirroredRecord.record_id == record_id)).one()


def test_create_update_delete_and_back(engine: sqlalchemy.Engine) -> None:
    apply(engine, "evt_1", operation="CREATE", version=1, attributes={"name": "Acme"})
    apply(engine, "evt_2", version=2, attributes={"name": "Acme LLP"})
    row = mirrored(engine)
    assert (row.version, row.active, row.attributes, row.event_id) == (2, True, {"name": "Acme LLP"}, "evt_2")
    assert row.system_ref == {"system": "erp", "id": "ref-rec_1"}
    apply(engine, "evt_3", operation="DELETE", version=3, attributes={"name": "Acme LLP"}, active=True)
    row = mirrored(engine)
    assert (row.version, row.active, row.attributes) == (3, False, {"name": "Acme LLP"})  # soft delete keeps the row
    apply(engine, "evt_4", operation="UPDATE", version=4, attributes={"name": "Back"})
    assert (mirrored(engine).active, mirrored(engine).version) == (True, 4)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        pytest.param(dict(version=5), dict(version=4, occurred_at="2026-12-01T00:00:00.000Z"), "evt_a", id="version-beats-time"),
        pytest.param(dict(version=4), dict(version=5, occurred_at="2026-01-01T00:00:00.000Z"), "evt_b", id="higher-version-wins"),
        pytest.param(dict(version=None, occurred_at="2026-11-23T10:00:00.002Z"), dict(version=None, occurred_at="2026-11-23T10:00:00.001Z"), "evt_a", id="no-version-later-time"),
        pytest.param(dict(version=7), dict(version=7, occurred_at="2026-11-23T10:00:01.000Z"), "evt_b", id="same-version-later-time"),
        pytest.param(dict(version=7), dict(version=7), "evt_b", id="full-tie-higher-event-id"),
        pytest.param(dict(version=None), dict(version=3, occurred_at="2026-11-23T09:00:00.000Z"), "evt_a", id="mixed-falls-back-to-time"),
    ],
)
def test_an_older_change_never_overwrites_a_newer_one(engine: sqlalchemy.Engine, first: dict, second: dict, winner: str) -> None:
    apply(engine, "evt_a", **first)
    apply(engine, "evt_b", **second)
    assert mirrored(engine).event_id == winner
    # And the same pair in the other order ends in the same state.
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM aiwyn_records"))
        connection.execute(sqlalchemy.text("DELETE FROM aiwyn_events"))
    apply(engine, "evt_b", **second)
    apply(engine, "evt_a", **first)
    assert mirrored(engine).event_id == winner


def test_a_late_update_does_not_resurrect_a_deleted_record(engine: sqlalchemy.Engine) -> None:
    apply(engine, "evt_9", operation="DELETE", version=9)
    apply(engine, "evt_8", operation="UPDATE", version=8)
    row = mirrored(engine)
    assert (row.active, row.version) == (False, 9)


def counting_registry(calls: list[str], delay: float = 0.0, fail: int = 0) -> HandlerRegistry:
    registry = default_registry()
    failures = {"left": fail}

    def count(event: Event, session: Session) -> None:
        time.sleep(delay)
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("handler failed on purpose")
        calls.append(event.id)

    registry.register(count, name="count")
    return registry


def ledger_row(engine: sqlalchemy.Engine, event_id: str) -> LedgerEntry:
    with Session(engine) as session:
        return session.get(LedgerEntry, event_id)


def test_a_repeated_event_runs_its_handlers_once(engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []
    registry = counting_registry(calls)
    assert apply(engine, "evt_1", registry) == "processed"
    assert apply(engine, "evt_1", registry) == "duplicate"
    assert calls == ["evt_1"]
    entry = ledger_row(engine, "evt_1")
    assert (entry.status, entry.attempts, entry.entity_type, entry.operation, entry.record_id) == ("processed", 1, "client", "UPDATE", "rec_1")
    assert b'"evt_1"' in entry.payload.encode()


def test_two_workers_on_one_event_at_once_apply_it_once(engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []
    registry = counting_registry(calls, delay=0.3)
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(apply(engine, "evt_1", registry))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate", "processed"]
    assert calls == ["evt_1"]


def test_a_failure_rolls_back_the_mirror_and_is_recorded(engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []
    registry = counting_registry(calls, fail=1)
    with pytest.raises(RuntimeError, match="on purpose"):
        apply(engine, "evt_1", registry)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(MirroredRecord)) == 0
    entry = ledger_row(engine, "evt_1")
    assert (entry.status, entry.attempts) == ("failed", 1)
    assert "handler failed on purpose" in entry.last_error
    assert apply(engine, "evt_1", registry) == "processed"  # RQ's retry
    entry = ledger_row(engine, "evt_1")
    assert (entry.status, entry.attempts, entry.last_error) == ("processed", 2, None)
    assert mirrored(engine).event_id == "evt_1"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{oops", "body is not JSON"),
        (b'{"operation": "UPDATE", "entityType": "client", "occurredAt": "2026-11-23T10:00:00Z"}', "record is missing"),
        (b'{"operation": "MERGE", "entityType": "client", "record": {"id": "r"}}', "operation is not one of"),
        (b'{"operation": "UPDATE", "entityType": "client", "record": {"id": "r"}, "occurredAt": "yesterday"}', "occurredAt is not a time"),
    ],
)
def test_an_invalid_event_is_kept_with_its_reason_and_not_retried(engine: sqlalchemy.Engine, body: bytes, problem: str) -> None:
    assert handle_delivery(engine, default_registry(), "evt_bad", "sub_1", body) == "invalid"
    entry = ledger_row(engine, "evt_bad")
    assert entry.status == "invalid" and problem in entry.last_error
    assert entry.payload == body.decode()
    assert handle_delivery(engine, default_registry(), "evt_bad", "sub_1", body) == "duplicate"
