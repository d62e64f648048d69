"""Typed views per entity type, from the emulator's schema API, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from config import Settings
from tests.workers.conftest import AIWYN_CLIENT, MakeRuntime
from workers.models import MirroredRecord
from workers.sync import views
from workers.sync.view_columns import snake

CLIENT = AIWYN_CLIENT
STANDARD = ["client", "contact", "clientBusinessEntity", "contactClient", "contactInfo", "department", "industry", "jobTemplate", "office", "serviceLine", "staff"]
LETTER_FIELDS = [
    {"name": "title", "type": "string", "required": True},
    {"name": "fee", "type": "decimal"},
    {"name": "version", "type": "integer"},  # collides with a fixed column
    {"name": "signedOn", "type": "date"},
]


@pytest.fixture
def api(api: httpx.Client) -> httpx.Client:
    """The emulator with a custom type besides the standard ones."""
    assert api.post("/api/v1/records/custom", json={"name": "engagementLetter", "fields": LETTER_FIELDS}).status_code == 201
    return api


@pytest.fixture
def runtime(make_runtime: MakeRuntime, settings: Settings, aiwyn: str, tmp_path: Any) -> Any:
    subscriptions = tmp_path / "subscriptions.toml"
    subscriptions.write_text('[[subscription]]\nname = "aiwyn-receiver-mirror"\nentity_types = ["*"]\n')
    made = make_runtime(aiwyn_base_url=aiwyn, aiwyn_client_id=CLIENT[0], aiwyn_client_secret=CLIENT[1], subscriptions_file=subscriptions, http_retries=1)
    with made.engine.begin() as connection:  # the database outlives a test; its views start afresh
        for name in sqlalchemy.inspect(connection).get_view_names():
            connection.exec_driver_sql(f'DROP VIEW "{name}"')
    return made


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("employeeCount", "employee_count", id="camel"),
        pytest.param("taxID", "tax_id", id="capitals-kept-together"),
        pytest.param("address2", "address2", id="digit"),
        pytest.param("clientBusinessEntity", "client_business_entity", id="type"),
        pytest.param("line2Text", "line2_text", id="after-a-digit"),
    ],
)
def test_names_are_snake_case_by_the_documented_rule(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_a_name_that_collides_gets_the_field_suffix() -> None:
    view = views.view_for("thing", [{"name": "version", "type": "integer"}, {"name": "fooBar", "type": "string"}, {"name": "foo_bar", "type": "string"}])
    assert [c.name for c in view.columns] == ["version_field", "foo_bar", "foo_bar_field"]
    assert views.view_for("thing", [{"name": "bad name; drop", "type": "string"}]).columns == ()
    with pytest.raises(ValueError):
        views.view_for("x'; drop table aiwyn_records; --", [])


def _columns(engine: sqlalchemy.Engine, view: str) -> dict[str, str]:
    return {c["name"]: str(c["type"]) for c in sqlalchemy.inspect(engine).get_columns(view)}


def test_every_type_gets_a_view_with_its_schemas_columns(api: httpx.Client, runtime: Any) -> None:
    changes = views.refresh(runtime.engine, runtime.listing, runtime.sync.types())
    names = {c.view.name for c in changes}
    assert {f"aiwyn_{snake(t)}" for t in STANDARD} | {"aiwyn_engagement_letter"} <= names
    assert set(sqlalchemy.inspect(runtime.engine).get_view_names()) >= names
    client = _columns(runtime.engine, "aiwyn_client")
    assert list(client)[:7] == ["record_id", "active", "version", "system_ref_system", "system_ref_id", "occurred_at", "updated_at"]
    assert {"name", "client_number", "employee_count", "fiscal_year_end", "is_prospect", "annual_revenue"} <= set(client)
    assert list(_columns(runtime.engine, "aiwyn_engagement_letter"))[7:] == ["title", "fee", "version_field", "signed_on"]
    if runtime.engine.dialect.name == "postgresql":
        assert (client["employee_count"], client["is_prospect"], client["fiscal_year_end"], client["annual_revenue"]) == ("BIGINT", "BOOLEAN", "DATE", "NUMERIC")
        assert _columns(runtime.engine, "aiwyn_staff")["last_login_at"] == "TIMESTAMP"
    again = views.refresh(runtime.engine, runtime.listing, runtime.sync.types())
    assert {c.action for c in again} == {"unchanged"}


def _mirror(engine: sqlalchemy.Engine, entity_type: str, record_id: str, attributes: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.add(MirroredRecord(entity_type=entity_type, record_id=record_id, system_ref={"system": "erp", "id": record_id}, attributes=attributes,
                                   active=True, version=1, occurred_at=now, event_id=None, updated_at=now, source="backfill"))  # fmt: skip


def test_values_read_back_typed_and_a_value_of_another_shape_is_null(api: httpx.Client, runtime: Any) -> None:
    views.refresh(runtime.engine, runtime.listing, runtime.sync.types())
    engine = runtime.engine
    _mirror(engine, "client", "c1", {"name": "Acme", "employeeCount": "120", "isProspect": "true", "fiscalYearEnd": "2026-01-31", "annualRevenue": "1234.50"})
    _mirror(engine, "client", "c2", {"name": "Bolt", "employeeCount": 90, "isProspect": False, "fiscalYearEnd": "2026-12-31", "annualRevenue": 12.5})
    _mirror(engine, "client", "c3", {"name": "Cogs", "employeeCount": "many", "isProspect": "maybe", "fiscalYearEnd": "2026-02-30", "annualRevenue": "n/a"})
    _mirror(engine, "staff", "s1", {"name": "Ada", "lastLoginAt": "2026-11-23T10:00:00+01:00"})
    _mirror(engine, "staff", "s2", {"name": "Bob", "lastLoginAt": "yesterday"})
    with engine.connect() as connection:
        run = lambda sql: connection.execute(sqlalchemy.text(sql)).all()
        assert run("SELECT record_id FROM aiwyn_client WHERE employee_count > 100") == [("c1",)]  # "120" > 100 as integers
        assert run("SELECT record_id FROM aiwyn_client WHERE employee_count < 100") == [("c2",)]
        assert run("SELECT record_id FROM aiwyn_client WHERE is_prospect") == [("c1",)]
        assert run("SELECT record_id FROM aiwyn_client WHERE fiscal_year_end < '2026-06-01'") == [("c1",)]
        rows = {r[0]: r[1:] for r in run("SELECT record_id, employee_count, is_prospect, fiscal_year_end, annual_revenue FROM aiwyn_client")}
        assert rows["c3"] == (None, None, None, None)  # never an error for the whole query
        if engine.dialect.name == "postgresql":
            assert rows["c1"] == (120, True, date(2026, 1, 31), Decimal("1234.50")) and rows["c2"] == (90, False, date(2026, 12, 31), Decimal("12.5"))
            login = dict(run("SELECT record_id, last_login_at FROM aiwyn_staff"))
            assert login["s1"] == datetime(2026, 11, 23, 9, tzinfo=UTC) and login["s2"] is None
        else:
            assert rows["c1"] == (120, 1, "2026-01-31", 1234.5) and rows["c2"] == (90, 0, "2026-12-31", 12.5)
            login = dict(run("SELECT record_id, last_login_at FROM aiwyn_staff"))
            assert login == {"s1": "2026-11-23T09:00:00.000Z", "s2": None}  # ISO 8601, normalised to UTC


def test_a_changed_custom_type_changes_its_view_within_one_check_interval(api: httpx.Client, runtime: Any, make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture) -> None:
    checking = make_runtime(**{k: getattr(runtime.settings, k) for k in ("aiwyn_base_url", "aiwyn_client_id", "aiwyn_client_secret", "subscriptions_file")},
                            schema_check_interval=1, backfill_on_start=False, reconcile_interval=0)  # fmt: skip
    checking.sync.tick()
    assert "fee" in _columns(checking.engine, "aiwyn_engagement_letter")
    fields = [f for f in LETTER_FIELDS if f["name"] != "fee"] + [{"name": "partnerEmail", "type": "email"}]
    assert api.put("/api/v1/records/custom/engagementLetter", json={"fields": fields}).status_code == 200
    checking.sync.tick()  # within the interval: nothing is checked yet
    assert "fee" in _columns(checking.engine, "aiwyn_engagement_letter")
    time.sleep(1.1)
    with caplog.at_level(logging.INFO, logger="workers.sync.views"):
        checking.sync.tick()
    columns = _columns(checking.engine, "aiwyn_engagement_letter")
    assert "fee" not in columns and "partner_email" in columns
    assert "field added partnerEmail (email); field removed fee" in caplog.text
    from prometheus_client import generate_latest

    from receiver.metrics import registry_for

    scraped = generate_latest(registry_for(checking.settings, checking.redis, checking.engine)).decode()
    assert 'aiwyn_view_changes_total{action="replace",entity_type="engagementLetter"} 1.0' in scraped


def test_a_dry_run_says_what_would_change_and_changes_nothing(api: httpx.Client, runtime: Any) -> None:
    planned = views.refresh(runtime.engine, runtime.listing, runtime.sync.types(), dry_run=True)
    assert any(c.line() == "aiwyn_engagement_letter (engagementLetter): create (4 fields)" for c in planned)
    assert "aiwyn_client" not in sqlalchemy.inspect(runtime.engine).get_view_names()


def test_two_hosts_making_the_views_at_once_both_succeed_and_make_them_once(api: httpx.Client, runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``release`` on two hosts at once: each reads which views exist, then creates them. The
    barrier makes both read before either writes, as happens when they start together (without
    the schema lock, one fails: ``CREATE VIEW`` of a name the other has just made)."""
    read_together = threading.Barrier(2, timeout=2)
    read = views.stored

    def stored_then_wait(engine: sqlalchemy.Engine) -> dict[str, str]:
        found = read(engine)
        try:
            read_together.wait()
        except threading.BrokenBarrierError:
            pass  # the other waited for our lock: it reads after we commit
        return found

    monkeypatch.setattr(views, "stored", stored_then_wait)
    types = runtime.sync.types()
    outcomes: dict[int, list[views.Change] | BaseException] = {}

    def host(n: int) -> None:
        try:
            outcomes[n] = views.refresh(runtime.engine, runtime.listing, types)
        except Exception as exc:  # reported by the assertion below
            outcomes[n] = exc

    hosts = [threading.Thread(target=host, args=(n,)) for n in range(2)]
    for thread in hosts:
        thread.start()
    for thread in hosts:
        thread.join(30)
    assert not [o for o in outcomes.values() if isinstance(o, BaseException)], outcomes
    made = [{c.view.name for c in changes if c.action != "unchanged"} for changes in outcomes.values()]
    assert sorted(map(len, made))[0] == 0 and "aiwyn_client" in made[0] | made[1]  # one host made them, the other found them




BOSTON = """SELECT c.name, c.employee_count FROM aiwyn_client c JOIN aiwyn_office o ON o.record_id = c.office
WHERE c.active AND o.city = 'Boston' AND c.employee_count > 50 ORDER BY c.name;"""
CONTACTS = """SELECT ct.name, ct.email, cc.role FROM aiwyn_contact_client cc JOIN aiwyn_contact ct ON ct.record_id = cc.contact
WHERE cc.client = 'rec_01JD3Z9' AND cc.active AND ct.active ORDER BY ct.name;"""
TODAY = {
    "postgresql": "SELECT entity_type, record_id, occurred_at FROM aiwyn_records WHERE occurred_at >= CURRENT_DATE;",
    "sqlite": "SELECT entity_type, record_id, occurred_at FROM aiwyn_records WHERE occurred_at >= date('now');",
}


def test_the_readmes_queries_answer_on_both_databases(api: httpx.Client, runtime: Any) -> None:
    from devstack.services import ROOT

    readme = (ROOT / "README.md").read_text()
    assert BOSTON in readme and CONTACTS in readme and all(query in readme for query in TODAY.values())
    views.refresh(runtime.engine, runtime.listing, runtime.sync.types())
    engine = runtime.engine
    _mirror(engine, "office", "o-bos", {"name": "Boston", "city": "Boston"})
    _mirror(engine, "office", "o-nyc", {"name": "New York", "city": "New York"})
    _mirror(engine, "client", "c-big", {"name": "Big", "office": "o-bos", "employeeCount": "120"})
    _mirror(engine, "client", "c-small", {"name": "Small", "office": "o-bos", "employeeCount": 12})
    _mirror(engine, "client", "c-ny", {"name": "Far", "office": "o-nyc", "employeeCount": 500})
    _mirror(engine, "contact", "p-1", {"name": "Ada", "email": "ada@example.com"})
    _mirror(engine, "contactClient", "cc-1", {"contact": "p-1", "client": "rec_01JD3Z9", "role": "CFO"})
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text(BOSTON)).all() == [("Big", 120)]
        assert connection.execute(sqlalchemy.text(CONTACTS)).all() == [("Ada", "ada@example.com", "CFO")]
        assert len(connection.execute(sqlalchemy.text(TODAY[engine.dialect.name])).all()) == 7
