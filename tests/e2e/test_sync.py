"""A tenant's existing records reach the mirror: the first start's backfill under live changes, a
backfill command killed half way, and reconcile after deliveries were lost for good."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from devstack.databases import throwaway_database
from devstack.services import ROOT, start_web
from tests.databases import KINDS, POSTGRES_URL
from tests.e2e.stack import Stack, start_stack, wait_for
from workers.database import make_engine
from workers.models import MirroredRecord, SyncState

pytestmark = pytest.mark.e2e

# 20,000 records of four types, one of them a custom type, before the service first starts.
SEEDED = {"client": 8000, "contact": 6000, "staff": 2000, "engagementLetter": 4000}
CHANGES_PER_SECOND, CHANGE_SECONDS = 50, 8
Rows = dict[tuple[str, str], tuple[bool, Any, int | None]]


def _seed_tenant(stack: Stack) -> None:
    fields = [{"name": "title", "type": "string", "required": True}, {"name": "fee", "type": "decimal"}]
    created = stack.api().post("/api/v1/records/custom", json={"name": "engagementLetter", "displayName": "Engagement letter", "fields": fields})
    assert created.status_code == 201, created.text
    for entity_type, count in SEEDED.items():
        httpx.post(f"{stack.emulator_url}/_emulator/seed", json={"type": entity_type, "count": count}, timeout=60).raise_for_status()
    stack.env["STARTED_AT"] = str(time.monotonic())


@pytest.fixture(scope="module", params=KINDS)
def tenant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose Aiwyn already holds the tenant's records when the service first starts."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    directory = tmp_path_factory.mktemp(f"tenant-{request.param}")
    with throwaway_database(request.param, directory) as database_url:
        # Quick retries: a delivery refused while the web process is down is dropped within a second.
        running = start_stack(directory, database_url, retry_schedule="0.2,0.3", prepare=_seed_tenant, AIWYN_RECEIVER_BACKFILL_ON_START="1")
        try:
            yield running
        finally:
            running.stop()


def aiwyn_rows(stack: Stack, entity_type: str | None = None) -> Rows:
    params = {"type": entity_type} if entity_type else None
    records = httpx.get(f"{stack.emulator_url}/_emulator/records", params=params, timeout=60).json()["records"]
    return {(r["type"], r["id"]): (r["active"], r["attributes"], r["version"]) for r in records}


def mirror_rows(engine: sqlalchemy.Engine, entity_type: str | None = None) -> Rows:
    query = sqlalchemy.select(MirroredRecord.entity_type, MirroredRecord.record_id, MirroredRecord.active, MirroredRecord.attributes, MirroredRecord.version)
    if entity_type:
        query = query.where(MirroredRecord.entity_type == entity_type)
    with Session(engine) as session:
        return {(t, i): (a, attributes, v) for t, i, a, attributes, v in session.execute(query)}


def change_records(stack: Stack, per_second: int, seconds: float) -> threading.Thread:
    """Update random existing records at a steady rate, in the background, through Aiwyn's API."""
    records = httpx.get(f"{stack.emulator_url}/_emulator/records", timeout=60).json()["records"]
    chosen = random.Random(7)

    def run() -> None:
        for n in range(int(per_second * seconds)):
            began = time.monotonic()
            record = chosen.choice(records)
            item = {"type": record["type"], "systemRef": record["systemRef"], "attributes": {"changed": n}}
            stack.records("PUT", item)
            time.sleep(max(0.0, 1 / per_second - (time.monotonic() - began)))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_first_start_copies_the_tenants_records_while_they_change(tenant: Stack) -> None:
    started = float(tenant.env["STARTED_AT"])
    changing = change_records(tenant, CHANGES_PER_SECOND, CHANGE_SECONDS)
    changing.join()
    expected = aiwyn_rows(tenant)
    assert len(expected) == sum(SEEDED.values())
    budget = 60 - (time.monotonic() - started)
    wait_for(lambda: mirror_rows(tenant.engine) == expected, timeout=max(budget, 1), what="the mirror to equal Aiwyn's records")
    assert time.monotonic() - started < 60
    status = subprocess.run([sys.executable, "-m", "workers", "sync-status"], env=tenant.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()}
    assert all(lines[entity_type] == "complete" for entity_type in SEEDED), status.stdout
    with Session(tenant.engine) as session:
        sources = dict(session.execute(sqlalchemy.select(MirroredRecord.source, sqlalchemy.func.count()).group_by(MirroredRecord.source)).all())
    assert sources.get("backfill", 0) > 0 and sources.get("event", 0) > 0  # both paths wrote, neither undid the other


def test_reconcile_repairs_a_change_whose_deliveries_were_all_dropped(tenant: Stack) -> None:
    record = next(r for r in httpx.get(f"{tenant.emulator_url}/_emulator/records", params={"type": "contact"}, timeout=60).json()["records"])
    tenant.processes["web"].stop()  # the receiver is down
    tenant.records("PUT", {"type": "contact", "systemRef": record["systemRef"], "attributes": {"name": "changed while we were down"}})

    def dropped() -> bool:
        events = httpx.get(f"{tenant.emulator_url}/_emulator/events", timeout=10).json()["events"]
        return any(e["recordId"] == record["id"] and e["outcome"] == "dropped" for e in events)

    wait_for(dropped, timeout=30, what="Aiwyn to give up on the delivery")
    tenant.processes["web"] = start_web(tenant.env, tenant.directory / "web-again.log", int(tenant.env["PORT"]))
    assert mirror_rows(tenant.engine, "contact")[("contact", record["id"])][1].get("name") != "changed while we were down"
    run = subprocess.run([sys.executable, "-m", "workers", "reconcile", "--type", "contact"], env=tenant.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"contact: missing 0, behind 1, gone 0\n  behind {record['id']}" in run.stdout
    assert mirror_rows(tenant.engine, "contact") == aiwyn_rows(tenant, "contact")
    with Session(tenant.engine) as session:
        assert session.get(SyncState, "contact").reconcile_summary == "missing 0, behind 1, gone 0"


def _listing_calls(stack: Stack) -> int:
    return httpx.get(f"{stack.emulator_url}/_emulator/api-calls", timeout=10).json()["calls"].get("GET /api/v1/records/<entity_type>", 0)


def test_a_backfill_killed_half_way_goes_on_where_it_stopped(tenant: Stack, tmp_path: Path) -> None:
    kind = "postgres" if "postgresql" in tenant.database_url else "sqlite"
    page_size, total = 50, SEEDED["client"]
    pages = -(-total // page_size)
    with throwaway_database(kind, tmp_path) as database_url:
        env = tenant.env | {"DATABASE_URL": database_url, "AIWYN_RECEIVER_BACKFILL_PAGE_SIZE": str(page_size)}
        migrate = subprocess.run([sys.executable, "-m", "workers", "migrate"], env=env, cwd=ROOT, capture_output=True, timeout=120)
        assert migrate.returncode == 0, migrate.stderr[-2000:]
        engine = make_engine(database_url)
        try:
            before = _listing_calls(tenant)
            command = [sys.executable, "-m", "workers", "backfill", "--type", "client"]
            first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(lambda: _done(engine) >= total // 2, timeout=120, what="half the backfill")
            finally:
                os.kill(first.pid, signal.SIGKILL)
                first.wait(10)
            assert _done(engine) < total  # killed half way indeed
            again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stderr[-2000:]
            assert f"backfill complete: {total:,} records of 1 type(s)" in again.stdout  # the pass's count, resumed
            fetched = _listing_calls(tenant) - before
            assert pages <= fetched <= pages + 1  # no page twice but the one in hand when it was killed
            assert mirror_rows(engine, "client") == aiwyn_rows(tenant, "client")
        finally:
            engine.dispose()


def _done(engine: sqlalchemy.Engine) -> int:
    with Session(engine) as session:
        row = session.get(SyncState, "client")
        return row.backfill_records if row is not None else 0
