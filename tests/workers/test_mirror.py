"""The mirror's ordering rule and the ledger's exactly-once, in batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.job_contract import MAX_EVENT_ID
from devstack.databases import clear_tables
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, run_row
from workers.events import Event
from workers.mirror import mirror_record
from workers.models import HandlerRun, MirroredRecord
from workers.registry import HandlerRegistry
from workers.runtime import WorkerRuntime


def apply(runtime: WorkerRuntime, event_id: str, **fields: object) -> None:
    deliver(runtime, (event_id, event_body(event_id, **fields)))


def mirrored(engine: sqlalchemy.Engine, record_id: str = "rec_1") -> MirroredRecord:
    with Session(engine) as session:
        return session.scalars(select(MirroredRecord).where(MirroredRecord.record_id == record_id)).one()


def test_create_update_delete_and_back(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    apply(runtime, "evt_1", operation="CREATE", version=1, attributes={"name": "Acme"})
    apply(runtime, "evt_2", version=2, attributes={"name": "Acme LLP"})
    row = mirrored(engine)
    assert (row.version, row.active, row.attributes, row.event_id) == (2, True, {"name": "Acme LLP"}, "evt_2")
    assert row.system_ref == {"system": "erp", "id": "ref-rec_1"}
    apply(runtime, "evt_3", operation="DELETE", version=3, attributes={"name": "Acme LLP"}, active=True)
    row = mirrored(engine)
    assert (row.version, row.active, row.attributes) == (3, False, {"name": "Acme LLP"})  # soft delete keeps the row
    apply(runtime, "evt_4", operation="UPDATE", version=4, attributes={"name": "Back"})
    assert (mirrored(engine).active, mirrored(engine).version) == (True, 4)


ORDERING_CASES = [
    pytest.param(dict(version=5), dict(version=4, occurred_at="2026-12-01T00:00:00.000Z"), "evt_a", id="version-beats-time"),
    pytest.param(dict(version=4), dict(version=5, occurred_at="2026-01-01T00:00:00.000Z"), "evt_b", id="higher-version-wins"),
    pytest.param(dict(version=None, occurred_at="2026-11-23T10:00:00.002Z"), dict(version=None, occurred_at="2026-11-23T10:00:00.001Z"), "evt_a", id="no-version-later-time"),
    pytest.param(dict(version=7), dict(version=7, occurred_at="2026-11-23T10:00:01.000Z"), "evt_b", id="same-version-later-time"),
    pytest.param(dict(version=7), dict(version=7), "evt_b", id="full-tie-higher-event-id"),
    pytest.param(dict(version=None), dict(version=3, occurred_at="2026-11-23T09:00:00.000Z"), "evt_a", id="mixed-falls-back-to-time"),
]


@pytest.mark.parametrize(("first", "second", "winner"), ORDERING_CASES)
def test_an_older_change_never_overwrites_a_newer_one(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, first: dict, second: dict, winner: str) -> None:
    runtime = make_runtime()
    a, b = ("evt_a", event_body("evt_a", **first)), ("evt_b", event_body("evt_b", **second))
    for batches in ([[a], [b]], [[b], [a]], [[a, b]], [[b, a]]):  # one by one in both orders, and in one batch
        clear_tables(engine)
        for batch in batches:
            deliver(runtime, *batch)
        assert mirrored(engine).event_id == winner, batches


def test_a_late_update_does_not_resurrect_a_deleted_record(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    apply(runtime, "evt_9", operation="DELETE", version=9)
    apply(runtime, "evt_8", operation="UPDATE", version=8)
    row = mirrored(engine)
    assert (row.active, row.version) == (False, 9)


def test_a_batch_of_many_records_mirrors_each_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    batch = [(f"evt_{i:03}", event_body(f"evt_{i:03}", record_id=f"rec_{i % 40}", version=i)) for i in range(200)]
    deliver(runtime, *batch, batch[5])  # with a copy of one event inside the batch
    with Session(engine) as session:
        rows = {r.record_id: r.version for r in session.scalars(select(MirroredRecord))}
        assert session.scalar(select(func.count()).select_from(HandlerRun)) == 200
    assert rows == {f"rec_{k}": 160 + k for k in range(40)}  # the newest change of each record
    assert ledger_row(engine, "evt_007").status == "processed"


def test_a_repeated_event_is_recorded_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    apply(runtime, "evt_1")
    apply(runtime, "evt_1")
    entry = ledger_row(engine, "evt_1")
    assert (entry.status, entry.attempts, entry.entity_type, entry.operation, entry.record_id) == ("processed", 1, "client", "UPDATE", "rec_1")
    assert b'"evt_1"' in entry.payload.encode()
    assert run_row(engine, "evt_1", "mirror").attempts == 1


def test_the_longest_event_id_the_receiver_accepts_fits_the_ledger(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    event_id = "evt_" + "x" * (MAX_EVENT_ID - 4)  # PostgreSQL would refuse one character more
    apply(make_runtime(), event_id)
    assert ledger_row(engine, event_id).status == "processed"


def test_two_workers_on_one_batch_at_once_apply_it_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    batch = [(f"evt_{i}", event_body(f"evt_{i}", record_id=f"rec_{i}")) for i in range(50)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            deliver(runtime, *batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(MirroredRecord)) == 50
        assert set(session.scalars(select(HandlerRun.attempts))) == {1}  # each applied by one worker only


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{oops", "body is not JSON"),
        (b'{"operation": "UPDATE", "entityType": "client", "occurredAt": "2026-11-23T10:00:00Z"}', "record is missing"),
        (b'{"operation": "MERGE", "entityType": "client", "record": {"id": "r"}}', "operation is not one of"),
        (b'{"operation": "UPDATE", "entityType": "client", "record": {"id": "r"}, "occurredAt": "yesterday"}', "occurredAt is not a time"),
    ],
)
def test_an_invalid_event_is_kept_with_its_reason_and_not_retried(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, body: bytes, problem: str) -> None:
    runtime = make_runtime()
    follow_ups = deliver(runtime, ("evt_bad", body), ("evt_good", event_body("evt_good")))
    entry = ledger_row(engine, "evt_bad")
    assert entry.status == "invalid" and problem in entry.last_error
    assert entry.payload == body.decode()
    assert follow_ups.runs == {}
    assert run_row(engine, "evt_bad", "mirror") is None
    assert mirrored(engine).event_id == "evt_good"  # the rest of the batch is unaffected


def test_a_clean_batch_is_one_transaction(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, caplog: pytest.LogCaptureFixture) -> None:
    runtime = make_runtime()
    deliver(runtime, *[(f"evt_{i}", event_body(f"evt_{i}", record_id=f"rec_{i}")) for i in range(20)])
    assert not [m for m in caplog.messages if "one by one" in m]


def test_an_event_that_breaks_the_batch_is_isolated_and_retried(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def poisoned(event: Event, session: Session) -> None:
        if event.id == "evt_poison":
            raise sqlalchemy.exc.IntegrityError("INSERT ...", {}, Exception("value too long"))
        mirror_record(event, session)

    registry = HandlerRegistry()
    registry.register(poisoned, name="mirror", batch_handler=lambda events, session: [poisoned(e, session) for e in events])
    runtime = make_runtime(registry)
    follow_ups = deliver(runtime, *[(f"evt_{i}", event_body(f"evt_{i}", record_id=f"rec_{i}")) for i in range(5)], ("evt_poison", event_body("evt_poison", record_id="rec_p")))
    with Session(engine) as session:
        assert set(session.scalars(select(MirroredRecord.event_id))) == {f"evt_{i}" for i in range(5)}
    assert follow_ups.runs == {"mirror": ["evt_poison"]}
    entry = ledger_row(engine, "evt_poison")
    assert entry.status == "pending" and "value too long" in entry.last_error
    run = run_row(engine, "evt_poison", "mirror")
    assert (run.status, run.attempts) == ("retrying", 1) and "value too long" in run.last_error
