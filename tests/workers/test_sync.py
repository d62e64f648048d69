"""Backfill and reconcile against a real emulator (HTTP on loopback) and a real database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy
from click.testing import CliRunner
from sqlalchemy.orm import Session

from aiwyn_api.client import AiwynAPIError, AiwynClient
from config import Settings
from tests.events import event_body
from tests.workers.conftest import AIWYN_CLIENT, MakeRuntime, deliver
from workers import backfill_events, handler_runs
from workers.cli import cli
from workers.models import LedgerEntry, MirroredRecord, SyncState
from workers.registry import default_registry
from workers.sync import backfill, state
from workers.sync.listing import EntityType, ListingUnavailable, RecordsListing
from workers.sync.reconcile import reconcile_type

CLIENT = AIWYN_CLIENT




@pytest.fixture
def synced(settings: Settings, aiwyn: str, database_url: str) -> Settings:
    return replace(settings, aiwyn_base_url=aiwyn, aiwyn_client_id=CLIENT[0], aiwyn_client_secret=CLIENT[1], database_url=database_url, http_retries=3)


@pytest.fixture
def listing(synced: Settings) -> Iterator[RecordsListing]:
    client = AiwynClient(synced)
    yield RecordsListing(client)
    client.close()


def seed(api: httpx.Client, entity_type: str, count: int) -> None:
    httpx.post(f"{api.base_url}/_emulator/seed", json={"type": entity_type, "count": count}, timeout=30).raise_for_status()


def aiwyn_records(api: httpx.Client) -> dict[tuple[str, str], tuple[bool, dict[str, Any], int]]:
    records = httpx.get(f"{api.base_url}/_emulator/records", timeout=30).json()["records"]
    return {(r["type"], r["id"]): (r["active"], r["attributes"], r["version"]) for r in records}


def mirror(engine: sqlalchemy.Engine) -> dict[tuple[str, str], tuple[bool, dict[str, Any], int]]:
    with Session(engine) as session:
        return {(r.entity_type, r.record_id): (r.active, r.attributes, r.version) for r in session.scalars(sqlalchemy.select(MirroredRecord))}


def listing_calls(api: httpx.Client) -> int:
    """Pages the emulator served (a 429 is not served)."""
    return httpx.get(f"{api.base_url}/_emulator/api-calls", timeout=5).json()["calls"].get("GET /api/v1/records/<entity_type>", 0)


def create_custom_type(api: httpx.Client, name: str = "engagementLetter") -> None:
    fields = [{"name": "title", "type": "string", "required": True}, {"name": "fee", "type": "decimal"}]
    answer = api.post("/api/v1/records/custom", json={"name": name, "displayName": "Engagement letter", "fields": fields})
    assert answer.status_code == 201, answer.text


def test_a_backfill_copies_every_type_custom_ones_too_row_for_row(api: httpx.Client, engine: sqlalchemy.Engine, listing: RecordsListing) -> None:
    create_custom_type(api)
    for entity_type, count in (("client", 1200), ("contact", 700), ("staff", 30), ("engagementLetter", 450)):
        seed(api, entity_type, count)
    api.request("DELETE", "/api/v1/records", json={"records": [{"type": "client", "systemRef": {"system": "seed", "id": _first_ref(api, "client")}}]})
    types = listing.types(["*"])
    assert "engagementLetter" in {t.name for t in types}
    done = backfill.run(engine, listing, types, page_size=500, lease_seconds=60)
    assert done["client"] == 1200 and done["engagementLetter"] == 450
    assert mirror(engine) == aiwyn_records(api)
    with Session(engine) as session:
        sources = set(session.scalars(sqlalchemy.select(MirroredRecord.source)))
        event_ids = set(session.scalars(sqlalchemy.select(MirroredRecord.event_id)))
    assert sources == {"backfill"} and event_ids == {None}
    assert state.states(engine)["client"].backfill_completed_at is not None


def _first_ref(api: httpx.Client, entity_type: str) -> str:
    records = httpx.get(f"{api.base_url}/_emulator/records", params={"type": entity_type}, timeout=10).json()["records"]
    return records[0]["systemRef"]["id"]


def test_a_page_never_undoes_a_newer_event(api: httpx.Client, make_runtime: MakeRuntime, listing: RecordsListing, synced: Settings) -> None:
    seed(api, "client", 3)
    record = httpx.get(f"{api.base_url}/_emulator/records", timeout=5).json()["records"][0]
    runtime = make_runtime(aiwyn_base_url=synced.aiwyn_base_url)
    body = event_body("evt_newer", record_id=record["id"], version=record["version"] + 5, attributes={"name": "from an event"})
    deliver(runtime, ("evt_newer", body))
    backfill.run(runtime.engine, listing, [EntityType("client", "/api/v1/records/client")], page_size=2, lease_seconds=60)
    with Session(runtime.engine) as session:
        row = session.scalars(sqlalchemy.select(MirroredRecord).where(MirroredRecord.record_id == record["id"])).one()
        assert (row.version, row.attributes, row.event_id, row.source) == (record["version"] + 5, {"name": "from an event"}, "evt_newer", "event")
        assert session.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(MirroredRecord)) == 3


def test_a_killed_pass_resumes_from_its_cursor_and_fetches_only_the_page_in_hand_again(
    api: httpx.Client, engine: sqlalchemy.Engine, listing: RecordsListing
) -> None:
    seed(api, "contact", 1000)
    contact = EntityType("contact", "/api/v1/records/contact")
    held = state.begin(engine, "contact", 60)
    assert held is not None
    for _ in range(4):
        held, _progress = backfill.step(engine, listing, contact, held, 100, 60)
    listing.page(contact, held.cursor, 100)  # the page in hand when the process was killed: fetched, never committed
    assert listing_calls(api) == 5
    done = backfill.run(engine, listing, [contact], page_size=100, lease_seconds=60)  # an operator starts it again
    assert done == {"contact": 1000}
    assert listing_calls(api) == 5 + 6  # pages 5 to 10: the one in hand again, then the rest
    assert mirror(engine) == aiwyn_records(api)


def test_under_a_rate_limit_the_backfill_completes_with_one_served_call_a_page(api: httpx.Client, engine: sqlalchemy.Engine, synced: Settings) -> None:
    seed(api, "client", 1500)
    httpx.put(f"{api.base_url}/_emulator/faults", json={"rateLimitPerSecond": 5}, timeout=5).raise_for_status()
    try:
        client = AiwynClient(replace(synced, http_retries=0))  # a 429 never counts as a failed attempt here
        backfill.run(engine, RecordsListing(client), [EntityType("client", "/api/v1/records/client")], page_size=100, lease_seconds=60)
        stats = httpx.get(f"{api.base_url}/_emulator/stats", timeout=5).json()
    finally:
        httpx.put(f"{api.base_url}/_emulator/faults", json={"rateLimitPerSecond": 0}, timeout=5)
    assert stats["rateLimited"] > 0
    assert listing_calls(api) == 15  # no page twice: 429s are waited out, never counted as pages
    assert len(mirror(engine)) == 1500


def test_reconcile_repairs_missing_and_behind_rows_and_marks_gone_ones(api: httpx.Client, engine: sqlalchemy.Engine, listing: RecordsListing) -> None:
    seed(api, "client", 40)
    client_type = EntityType("client", "/api/v1/records/client")
    backfill.run(engine, listing, [client_type], page_size=500, lease_seconds=60)
    records = httpx.get(f"{api.base_url}/_emulator/records", timeout=5).json()["records"]
    changed, removed = records[0]["id"], records[1]["id"]
    httpx.put(f"{api.base_url}/_emulator/records/{changed}", json={"attributes": {"name": "changed unseen"}, "deliver": False}, timeout=5).raise_for_status()
    httpx.delete(f"{api.base_url}/_emulator/records/{removed}", params={"hard": "true"}, timeout=5).raise_for_status()
    seed(api, "client", 2)

    preview = reconcile_type(engine, listing, client_type, 500, dry_run=True)
    assert (len(preview.missing), preview.behind, preview.gone) == (2, [changed], [removed])
    assert mirror(engine)[("client", changed)][1]["name"] != "changed unseen"  # a dry run changes nothing

    drift = reconcile_type(engine, listing, client_type, 500)
    assert drift.summary() == "missing 2, behind 1, gone 1"
    expected = aiwyn_records(api)
    mirrored = mirror(engine)
    gone = mirrored.pop(("client", removed))
    assert mirrored == expected and gone[0] is False
    with Session(engine) as session:
        row = session.scalars(sqlalchemy.select(MirroredRecord).where(MirroredRecord.record_id == removed)).one()
        assert row.inactive_reason.startswith("not listed by Aiwyn") and row.source == "reconcile"
        assert session.get(SyncState, "client").reconcile_summary == "missing 2, behind 1, gone 1"
    assert reconcile_type(engine, listing, client_type, 500).summary() == "missing 0, behind 0, gone 0"


def _api_without_listing(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/auth/token"):
        return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
    if request.url.path.endswith("/records/types"):
        return httpx.Response(200, json={"data": {"entityTypes": [{"name": "client", "recordsUrl": "/api/v1/records/client"}]}, "error": None})
    if request.url.path.endswith("/records/contact"):
        return httpx.Response(200, json={"data": {"items": [], "next": None}, "error": None})
    return httpx.Response(404, json={"data": None, "error": {"code": "NOT_FOUND", "message": "no such route"}})


@pytest.mark.parametrize(
    ("entity_type", "said"),
    [
        pytest.param("client", "answered 404 NOT_FOUND", id="404"),
        pytest.param("contact", "answered in another shape: GET /api/v1/records/contact gave data ['items', 'next']", id="other-shape"),
    ],
)
def test_an_api_without_the_listing_stops_the_sync_with_one_clear_line(settings: Settings, entity_type: str, said: str) -> None:
    listing = RecordsListing(AiwynClient(settings, transport=httpx.MockTransport(_api_without_listing)))
    with pytest.raises(ListingUnavailable) as caught:
        listing.page(EntityType(entity_type, f"/api/v1/records/{entity_type}"), None, 100)
    assert said in str(caught.value) and "webhook path is not affected" in str(caught.value)


def test_a_records_url_on_another_host_is_refused_so_the_token_stays_with_aiwyn(settings: Settings) -> None:
    listing = RecordsListing(AiwynClient(settings, transport=httpx.MockTransport(_api_without_listing)))
    with pytest.raises(AiwynAPIError) as caught:
        listing.page(EntityType("client", "https://elsewhere.example/records/client"), None, 100)
    assert "not at AIWYN_BASE_URL" in str(caught.value)


def test_with_the_setting_custom_handlers_run_for_backfilled_records(api: httpx.Client, make_runtime: MakeRuntime, synced: Settings) -> None:
    seen: list[tuple[str, str, int]] = []
    registry = default_registry()

    def note(event: Any, session: Session) -> None:
        seen.append((event.id, event.operation, event.record.version))

    registry.register(note, "client", name="note")

    seed(api, "client", 5)
    runtime = make_runtime(registry, aiwyn_base_url=synced.aiwyn_base_url, aiwyn_client_id=CLIENT[0], aiwyn_client_secret=CLIENT[1], backfill_runs_handlers=True)
    hook = backfill_events.Hook(runtime)
    backfill.run(runtime.engine, runtime.listing, [EntityType("client", "/api/v1/records/client")], 500, 60, on_rows=hook)
    for handler, event_ids in hook._follow_ups.runs.items():
        handler_runs.run_handler(runtime, handler, event_ids, "new", datetime.now(UTC))
    assert len(seen) == 5 and all(event_id.startswith("backfill:client:") and op == "UPDATE" for event_id, op, _ in seen)
    with Session(runtime.engine) as session:
        assert set(session.scalars(sqlalchemy.select(LedgerEntry.status))) == {"processed"}
    # A second pass writes nothing new, so no handler runs again.
    again = backfill_events.Hook(runtime)
    backfill.run(runtime.engine, runtime.listing, [EntityType("client", "/api/v1/records/client")], 500, 60, on_rows=again)
    assert again._follow_ups.runs == {}


def test_the_commands_backfill_show_status_and_reconcile(api: httpx.Client, synced: Settings, engine: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    seed(api, "office", 30)
    subscriptions = tmp_path / "subscriptions.toml"
    subscriptions.write_text('[[subscription]]\nname = "aiwyn-receiver-offices"\nentity_types = ["office", "department"]\n')
    for name, value in {
        "AIWYN_BASE_URL": synced.aiwyn_base_url, "AIWYN_CLIENT_ID": CLIENT[0], "AIWYN_CLIENT_SECRET": CLIENT[1],
        "DATABASE_URL": synced.database_url, "REDIS_URL": synced.redis_url, "AIWYN_RECEIVER_SUBSCRIPTIONS_FILE": str(subscriptions),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    before = runner.invoke(cli, ["sync-status"])
    assert before.exit_code == 0 and before.output.split() == ["office", "never", "reconciled", "never", "department", "never", "reconciled", "never"]
    done = runner.invoke(cli, ["backfill"])
    assert done.exit_code == 0, done.output
    assert "backfill complete: 30 records of 2 type(s)" in done.output
    after = runner.invoke(cli, ["sync-status"]).output.splitlines()
    assert after[0].split()[:2] == ["office", "complete"] and after[1].split()[:2] == ["department", "complete"]
    unknown = runner.invoke(cli, ["backfill", "--type", "nosuchtype"])
    assert unknown.exit_code == 1 and "unknown entity type(s): nosuchtype" in unknown.output
    record = httpx.get(f"{api.base_url}/_emulator/records", timeout=5).json()["records"][0]
    httpx.put(f"{api.base_url}/_emulator/records/{record['id']}", json={"attributes": {"name": "x"}, "deliver": False}, timeout=5).raise_for_status()
    report = runner.invoke(cli, ["reconcile", "--type", "office"])
    assert report.exit_code == 0, report.output
    assert f"office: missing 0, behind 1, gone 0\n  behind {record['id']}" in report.output
    assert "reconciled" in runner.invoke(cli, ["sync-status"]).output.splitlines()[0]
    assert json.dumps(mirror(engine)[("office", record["id"])][1]) == json.dumps(record["attributes"] | {"name": "x"})


def test_the_event_of_a_change_the_backfill_already_copied_takes_the_row_over(api: httpx.Client, make_runtime: MakeRuntime, listing: RecordsListing, synced: Settings) -> None:
    seed(api, "client", 1)
    (record,) = httpx.get(f"{api.base_url}/_emulator/records", timeout=5).json()["records"]
    runtime = make_runtime(aiwyn_base_url=synced.aiwyn_base_url)
    backfill.run(runtime.engine, listing, [EntityType("client", "/api/v1/records/client")], page_size=10, lease_seconds=60)
    same = event_body("evt_same", record_id=record["id"], version=record["version"], occurred_at=record["updatedAt"], attributes=record["attributes"])
    deliver(runtime, ("evt_same", same))
    with Session(runtime.engine) as session:
        row = session.scalars(sqlalchemy.select(MirroredRecord)).one()
        assert (row.event_id, row.source, row.version) == ("evt_same", "event", record["version"])


def test_workers_copy_a_new_type_by_page_jobs_and_keep_one_reconcile_scheduled(
    api: httpx.Client, make_runtime: MakeRuntime, synced: Settings, tmp_path: Any
) -> None:
    from rq import SimpleWorker

    from config.job_contract import JOB_SERIALIZER

    seed(api, "client", 120)
    subscriptions = tmp_path / "subscriptions.toml"
    subscriptions.write_text('[[subscription]]\nname = "aiwyn-receiver-clients"\nentity_types = ["client"]\n')
    runtime = make_runtime(
        aiwyn_base_url=synced.aiwyn_base_url, aiwyn_client_id=CLIENT[0], aiwyn_client_secret=CLIENT[1],
        subscriptions_file=subscriptions, backfill_page_size=50, reconcile_interval=1,
    )  # fmt: skip
    runtime.sync.tick()  # a type never copied: its first page job is queued
    assert runtime.sync_queue.count == 1
    runtime.sync.tick()  # its lease is held: no second chain
    assert runtime.sync_queue.count == 1
    SimpleWorker([runtime.sync_queue], connection=runtime.redis, serializer=JOB_SERIALIZER).work(burst=True)  # three pages, one job each
    assert len(mirror(runtime.engine)) == 120 and state.states(runtime.engine)["client"].backfill_completed_at is not None

    runtime.sync.tick()  # complete: nothing to copy, and a reconcile is scheduled an interval after the copy
    runtime.sync.tick()
    assert (runtime.sync_queue.count, runtime.sync_queue.scheduled_job_registry.count) == (0, 1)
    record = httpx.get(f"{api.base_url}/_emulator/records", timeout=5).json()["records"][0]
    httpx.put(f"{api.base_url}/_emulator/records/{record['id']}", json={"attributes": {"name": "lost"}, "deliver": False}, timeout=5).raise_for_status()
    time.sleep(1.5)
    SimpleWorker([runtime.sync_queue], connection=runtime.redis, serializer=JOB_SERIALIZER).work(burst=True, with_scheduler=True)
    assert state.states(runtime.engine)["client"].reconcile_summary == "missing 0, behind 1, gone 0"
    assert mirror(runtime.engine)[("client", record["id"])][1]["name"] == "lost"
    runtime.sync.tick()  # the next one
    assert runtime.sync_queue.scheduled_job_registry.count == 1
