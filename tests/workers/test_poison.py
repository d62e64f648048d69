"""A delivery the web accepts but the worker cannot parse or store is set aside; its batch commits."""

from __future__ import annotations

import json

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row
from workers.models import MirroredRecord


def deep_attributes(levels: int) -> bytes:
    nested = "[" * levels + "]" * levels
    body = json.loads(event_body("evt_poison", record_id="rec_poison"))
    return json.dumps(body).replace('{"name": "name at evt_poison"}', '{"deep": ' + nested + "}").encode()


POISON = [
    pytest.param(deep_attributes(600), "record nests deeper than 100 levels", id="600-levels-deep"),
    pytest.param(event_body("evt_poison", record_id="rec_poison", version=2**64), "record.version is out of range", id="version-2**64"),
    pytest.param(event_body("evt_poison", record_id="rec_poison", version=-(2**63) - 1), "record.version is out of range", id="version-below-bigint"),
    pytest.param(
        event_body("evt_poison", record_id="rec_poison", occurred_at="0001-01-01T00:00:00+01:00"), "occurredAt is out of range", id="before-year-1-in-utc"
    ),
    pytest.param(event_body("evt_poison", record_id="r" * 201), "record.id is longer than 200", id="record-id-too-long"),
    pytest.param(b'{"id": "evt_poison", "hello": "world"}', "record is missing", id="json-but-not-an-event"),
]


def mirrored_ids(engine: sqlalchemy.Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(sqlalchemy.select(MirroredRecord.record_id)))


@pytest.mark.parametrize(("body", "reason"), POISON)
def test_a_poison_delivery_is_set_aside_and_its_neighbours_are_mirrored(
    make_runtime: MakeRuntime, engine: sqlalchemy.Engine, body: bytes, reason: str
) -> None:
    runtime = make_runtime()
    deliver(runtime, ("evt_a", event_body("evt_a", record_id="rec_a")), ("evt_poison", body), ("evt_b", event_body("evt_b", record_id="rec_b")))
    assert mirrored_ids(engine) == {"rec_a", "rec_b"}
    row = ledger_row(engine, "evt_poison")
    assert row.status == "invalid" and reason in row.last_error
    assert {ledger_row(engine, e).status for e in ("evt_a", "evt_b")} == {"processed"}


def test_any_error_while_applying_one_delivery_sets_only_it_aside(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.mirror

    real = workers.mirror.plain

    def plain(value):
        if isinstance(value, dict | type(None)) or "boom" not in str(dict(value)):
            return real(value)
        raise TypeError("an unexpected bug")

    monkeypatch.setattr(workers.mirror, "plain", plain)
    runtime = make_runtime()
    deliver(
        runtime,
        ("evt_a", event_body("evt_a", record_id="rec_a")),
        ("evt_bad", event_body("evt_bad", record_id="rec_bad", attributes={"boom": 1})),
        ("evt_b", event_body("evt_b", record_id="rec_b")),
    )
    assert mirrored_ids(engine) == {"rec_a", "rec_b"}
    row = ledger_row(engine, "evt_bad")
    assert row.status == "invalid" and row.last_error == "cannot be applied: TypeError: an unexpected bug"
