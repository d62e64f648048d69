"""``python -m workers invalid list|show|replay``: nothing the worker set aside stays aside for good."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from config.settings import _FIELDS
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row
from workers import ledger
from workers.cli import cli
from workers.ledger import Delivery
from workers.models import MirroredRecord

# Stored by an older version that knew neither snake_case nor past-tense operations.
OLD_STYLE = json.dumps({"id": "evt_old", "subscription_id": "sub_1", "entity_type": "client", "operation": "UPDATED",
                        "occurred_at": 1795428000123, "record": {"id": 4711, "type": "client", "version": "3",
                                                                  "system_ref": {"system": "erp", "id": "C-9"}, "attributes": {"name": "Late LLP"}}}).encode()  # fmt: skip
HOPELESS = b'{"id": "evt_bad", "record": "not an object"}'


@pytest.fixture
def env(database_url: str, redis_url: str, engine: sqlalchemy.Engine, redis_client: redis.Redis) -> Iterator[dict[str, str]]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield dict.fromkeys(_FIELDS, "") | {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}
    root.handlers[:], root.level = handlers, level


def set_aside(engine: sqlalchemy.Engine, event_id: str, body: bytes, reason: str) -> None:
    """An invalid ledger row as an older version stored it."""
    with Session(engine) as session, session.begin():
        ledger.record(session, [Delivery(event_id, "sub_1", body, None, reason)], {event_id: ledger.INVALID})


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["invalid", *args], env=env)


def mirror(engine: sqlalchemy.Engine, record_id: str) -> MirroredRecord | None:
    with Session(engine) as session:
        return session.scalars(sqlalchemy.select(MirroredRecord).where(MirroredRecord.record_id == record_id)).first()


def test_list_show_and_replay(env: dict[str, str], engine: sqlalchemy.Engine) -> None:
    set_aside(engine, "evt_old", OLD_STYLE, "operation is not one of CREATE, UPDATE, DELETE")
    set_aside(engine, "evt_bad", HOPELESS, "record is missing")

    listed = invoke(env, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["evt_old", "evt_bad"]
    assert lines[0].endswith("operation is not one of CREATE, UPDATE, DELETE") and lines[1].endswith("record is missing")

    shown = invoke(env, "show", "evt_old")
    assert shown.exit_code == 0 and "today's code: parses it" in shown.stdout and '"entity_type": "client"' in shown.stdout
    assert "still invalid: record is missing" in invoke(env, "show", "evt_bad").stdout
    assert invoke(env, "replay").exit_code == 2  # neither ids nor --all

    replayed = invoke(env, "replay", "--all")
    assert replayed.exit_code == 1, replayed.output  # one stays invalid
    assert "evt_bad" in replayed.stdout and "invalid: record is missing" in replayed.stdout
    row = mirror(engine, "4711")
    assert row is not None and (row.entity_type, row.version, row.attributes, row.event_id) == ("client", 3, {"name": "Late LLP"}, "evt_old")
    entry = ledger_row(engine, "evt_old")
    assert entry.status in ("processed", "pending") and (entry.operation, entry.record_id, entry.last_error) == ("UPDATE", "4711", None)
    assert [line.split()[2] for line in invoke(env, "list").stdout.splitlines()] == ["evt_bad"]

    again = invoke(env, "replay", "evt_old")
    assert again.exit_code == 0 and "nothing to replay" in again.stdout


def test_a_replayed_older_change_does_not_overwrite_a_newer_one(env: dict[str, str], engine: sqlalchemy.Engine, make_runtime: MakeRuntime) -> None:
    deliver(make_runtime(), ("evt_new", event_body("evt_new", record_id="4711", version=5, attributes={"name": "Newer"})))
    set_aside(engine, "evt_old", OLD_STYLE, "operation is not one of CREATE, UPDATE, DELETE")
    replayed = invoke(env, "replay", "evt_old")
    assert replayed.exit_code == 0, replayed.output
    row = mirror(engine, "4711")
    assert (row.version, row.attributes) == (5, {"name": "Newer"})  # the ordering guard held
    assert ledger_row(engine, "evt_old").status != "invalid"
