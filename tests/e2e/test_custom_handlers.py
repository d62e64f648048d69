"""Custom handlers in the real worker: retries, the failed list, replay, a hanging handler, a handler package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from devstack.databases import throwaway_database
from devstack.services import ROOT
from tests.databases import KINDS, POSTGRES_URL
from tests.e2e.stack import Stack, start_stack, wait_for
from workers.models import HandlerRun

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "examples" / "aiwyn-audit-log"


def install_example(target: Path) -> None:
    """Install the example package as a user would (a wheel, its entry points), into a folder of its own.

    From a copy: building in place would leave build/ and egg-info in the work tree.
    """
    source = target.parent / "example-src"
    shutil.copytree(EXAMPLE, source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module", params=KINDS)
def handler_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    directory = tmp_path_factory.mktemp(f"handlers-{request.param}")
    (directory / "state").mkdir()
    (directory / "archive").mkdir()
    install_example(directory / "site")
    with throwaway_database(request.param, directory) as database_url:
        running = start_stack(
            directory,
            database_url,
            AIWYN_RECEIVER_HANDLER_MODULES="tests.e2e.handlers_under_test",
            AIWYN_RECEIVER_HANDLER_ATTEMPTS="3",
            AIWYN_RECEIVER_HANDLER_RETRY_DELAY="0.3",
            AIWYN_E2E_STATE=str(directory / "state"),
            AIWYN_AUDIT_ARCHIVE=str(directory / "archive"),
            AIWYN_AUDIT_GIVE_UPS=str(directory / "give-ups.jsonl"),
            PYTHONPATH=str(directory / "site"),
        )
        try:
            yield running
        finally:
            running.stop()


def runs_of(stack: Stack, handler: str) -> dict[str, HandlerRun]:
    with Session(stack.engine) as session:
        return {r.event_id: r for r in session.scalars(sqlalchemy.select(HandlerRun).where(HandlerRun.handler == handler))}


def workers_cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers", *args], env=stack.env | env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def state(stack: Stack, name: str) -> list[str]:
    path = stack.directory / "state" / name
    return path.read_text().split() if path.exists() else []


def test_flaky_and_broken_handlers_then_a_replay(handler_stack: Stack) -> None:
    stack = handler_stack
    staff = stack.records("POST", {"type": "staff", "systemRef": {"system": "hr", "id": "S-1"}, "attributes": {"name": "Ada"}}).json()
    created = stack.records(
        "POST", *({"type": "client", "systemRef": {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"}, "attributes": {"n": n}} for n in range(5))
    ).json()["data"]["records"]
    clients = {c["id"] for c in created}

    # The mirror is not held up by the failing, retrying or hanging handlers.
    # Both the mirror rows and the events' ledger entries (a backfill, when on, could write the rows first).
    ledgered = lambda: {e.event_id for e in stack.ledger() if e.record_id in clients}
    wait_for(lambda: all(stack.mirror(c) for c in clients) and len(ledgered()) == 5, timeout=20, what="the clients in the mirror and their events")
    events = ledgered()
    assert len(events) == 5

    # The flaky handler succeeds on its third attempt; the broken one is in the failed list after three.
    wait_for(lambda: {r.status for r in runs_of(stack, "flaky").values()} == {"succeeded"} and len(runs_of(stack, "flaky")) == 5, timeout=30, what="flaky to succeed")
    assert all(r.attempts == 3 for r in runs_of(stack, "flaky").values())
    assert sorted(state(stack, "flaky.done")) == sorted(events)
    wait_for(lambda: [r.status for r in runs_of(stack, "broken").values()] == ["failed"] * 5, timeout=30, what="broken to give up")
    assert all(r.attempts == 3 and "rejects the payload" in r.last_error for r in runs_of(stack, "broken").values())

    listed = workers_cli(stack, "failed", "list", "--handler", "broken")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[2] for line in listed.stdout.splitlines()) == sorted(events)
    shown = workers_cli(stack, "failed", "show", sorted(events)[0])
    assert "RuntimeError: the CRM rejects the payload" in shown.stdout and '"entityType": "client"' in shown.stdout

    # The hanging handler was stopped at its timeout and retried, and it did not stop the worker.
    staff_event = wait_for(lambda: [e.event_id for e in stack.ledger() if e.entity_type == "staff"], what="the staff event")[0]
    wait_for(lambda: (r := runs_of(stack, "hangs").get(staff_event)) and r.status == "failed", timeout=30, what="hangs to give up")
    assert "timed out after 1 s" in runs_of(stack, "hangs")[staff_event].last_error
    assert state(stack, "hangs.attempts") == [staff_event, staff_event]
    assert staff["data"]["records"][0]["id"]

    # The operator fixes the handler (a setting) and replays: each event completes once.
    replayed = workers_cli(stack, "failed", "replay", "--handler", "broken", AIWYN_E2E_FIXED="1")
    assert replayed.returncode == 0, replayed.stderr
    assert "5 succeeded" in replayed.stdout
    assert sorted(state(stack, "broken.done")) == sorted(events)
    # One attempt of a fresh set (the replay's), after the three that gave up; the total is kept.
    assert all((r.status, r.attempts, r.attempt_base) == ("succeeded", 4, 3) for r in runs_of(stack, "broken").values())
    again = workers_cli(stack, "failed", "replay", "--handler", "broken", AIWYN_E2E_FIXED="1")
    assert "nothing to replay" in again.stdout
    assert sorted(state(stack, "broken.done")) == sorted(events)  # exactly once
    assert {e.status for e in stack.ledger() if e.event_id in events} == {"processed"}
    assert sorted(state(stack, "flaky.done")) == sorted(events)  # the replay re-ran only the failed handler

    # The example package's handler, found through its entry point, logged every event once,
    # in its own table, made by its own migration.
    audit = audit_rows(stack)
    assert sorted(e for e, row in audit.items() if row["entity_type"] == "client") == sorted(events)
    assert any(row["entity_type"] == "staff" for row in audit.values())
    assert all((row["attempt"], bool(row["replay"])) == (1, False) for row in audit.values())
    payloads = {e.event_id: e.payload for e in stack.ledger()}
    some = sorted(events)[0]
    assert (stack.directory / "archive" / f"{some}.json").read_bytes() == payloads[some].encode()  # event.raw


def audit_rows(stack: Stack) -> dict[str, dict]:
    with Session(stack.engine) as session:
        return {row["event_id"]: dict(row) for row in session.execute(sqlalchemy.text("SELECT * FROM aiwyn_audit_log")).mappings()}


def test_the_example_package_retries_as_asked_gives_up_and_is_replayed_by_the_workers(handler_stack: Stack) -> None:
    stack = handler_stack
    with Session(stack.engine) as session:
        heads = set(session.scalars(sqlalchemy.text("SELECT version_num FROM alembic_version")))
    assert "audit_log_0001" in heads and len(heads) == 2  # the service's branch and the package's
    archive = stack.directory / "archive"
    archive.rename(stack.directory / "archive-unmounted")
    created = stack.records("POST", *({"type": "contact", "attributes": {"email": f"c{n}@example.com"}} for n in range(2))).json()["data"]["records"]
    contacts = {c["id"] for c in created}
    ledgered = lambda: {e.event_id for e in stack.ledger() if e.record_id in contacts}
    wait_for(lambda: len(ledgered()) == 2, timeout=20, what="the contacts' events")
    events = ledgered()

    # Retry(after=1) three times (attempts=3), then the failed list and the package's give-up hook.
    wait_for(lambda: all((r := runs_of(stack, "audit-log").get(e)) and r.status == "failed" for e in events), timeout=30, what="audit-log to give up")
    give_ups = [json.loads(line) for line in (stack.directory / "give-ups.jsonl").read_text().splitlines()]
    assert sorted(g["event"] for g in give_ups) == sorted(events)
    assert all(g["attempts"] == 3 and g["error"].startswith("Retry: the archive") for g in give_ups)
    listed = workers_cli(stack, "failed", "list", "--json", "--handler", "audit-log")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["event_id"] for r in rows) == sorted(events)
    assert all("aiwyn_audit_log/handlers.py" in r["traceback"] and "raise Retry(after=1" in r["traceback"] for r in rows)
    assert not set(events) & set(audit_rows(stack))  # nothing written by the failed attempts

    # The disk is back: the replay is handed to the workers, and each change is logged once, as a replay.
    (stack.directory / "archive-unmounted").rename(archive)
    queued = workers_cli(stack, "failed", "replay", "--handler", "audit-log", "--enqueue", AIWYN_RECEIVER_HANDLER_MODULES="")
    assert queued.returncode == 0 and "queued 2 replay(s)" in queued.stdout, queued.stderr
    wait_for(lambda: all(runs_of(stack, "audit-log")[e].status == "succeeded" for e in events), timeout=30, what="the replays")
    audit = audit_rows(stack)
    assert all((audit[e]["attempt"], bool(audit[e]["replay"])) == (1, True) for e in events)
    assert all((archive / f"{e}.json").exists() for e in events)
