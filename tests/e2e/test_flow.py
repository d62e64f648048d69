"""Emulator -> gunicorn -> Redis -> RQ worker -> mirror, all real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from redis import Redis
from rq import Queue

from tests.e2e.stack import CLIENT_SECRET, Stack, wait_for

pytestmark = pytest.mark.e2e


def ref() -> dict[str, str]:
    return {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"}


def test_created_updated_and_deleted_records_land_in_the_mirror(stack: Stack) -> None:
    client_ref, staff_ref = ref(), ref()
    created = stack.records(
        "POST",
        {"type": "client", "systemRef": client_ref, "attributes": {"name": "Acme LLP"}},
        {"type": "staff", "systemRef": staff_ref, "attributes": {"name": "Ada"}},
    ).json()["data"]["records"]
    client_id, staff_id = created[0]["id"], created[1]["id"]
    row = wait_for(lambda: stack.mirror(client_id), what="the client in the mirror")
    assert (row.entity_type, row.version, row.active, row.attributes["name"], row.system_ref) == ("client", 1, True, "Acme LLP", client_ref)
    assert wait_for(lambda: stack.mirror(staff_id), what="the staff member").entity_type == "staff"

    stack.records("PUT", {"type": "client", "systemRef": client_ref, "attributes": {"name": "Acme & Co LLP"}})
    row = wait_for(lambda: (r := stack.mirror(client_id)) and r.version == 2 and r, what="the update")
    assert row.attributes["name"] == "Acme & Co LLP"

    stack.records("DELETE", {"type": "client", "systemRef": client_ref})
    row = wait_for(lambda: (r := stack.mirror(client_id)) and r.version == 3 and r, what="the delete")
    assert row.active is False and row.attributes["name"] == "Acme & Co LLP"

    stack.records("POST", {"type": "client", "systemRef": client_ref, "attributes": {"industry": "ind_04"}})
    row = wait_for(lambda: (r := stack.mirror(client_id)) and r.version == 4 and r, what="the come-back")
    assert row.active is True

    wait_for(stack.emulator_idle, what="the emulator to finish sending")
    events = [e for e in stack.ledger() if e.record_id == client_id]
    assert sorted(e.operation for e in events) == ["CREATE", "DELETE", "UPDATE", "UPDATE"]
    assert {e.status for e in events} == {"processed"}
    attempts = stack.deliveries()
    assert attempts and all(a["outcome"] != "dropped" for a in attempts)


def test_duplicated_and_reordered_deliveries_leave_the_newest_state(stack: Stack) -> None:
    client_ref = ref()
    record_id = stack.records("POST", {"type": "client", "systemRef": client_ref, "attributes": {"n": 0}}).json()["data"]["records"][0]["id"]
    wait_for(lambda: stack.mirror(record_id), what="the first version")
    answer = httpx.put(f"{stack.emulator_url}/_emulator/faults", json={"duplicate": True, "reorder": True, "reorderWindowMs": 300}, timeout=5)
    assert answer.status_code == 200
    for n in range(1, 8):
        stack.records("PUT", {"type": "client", "systemRef": client_ref, "attributes": {"n": n}})
    wait_for(stack.emulator_idle, what="every (duplicated) delivery")
    row = wait_for(lambda: (r := stack.mirror(record_id)) and r.version == 8 and r, what="the newest version")
    assert row.attributes["n"] == 7
    # Acknowledged is not yet drained: an older copy can still wait in Redis when the newest is mirrored.
    wait_for(lambda: sum(e.record_id == record_id and e.status == "processed" for e in stack.ledger()) >= 8, what="every event in the ledger")
    events = [e for e in stack.ledger() if e.record_id == record_id]
    assert len(events) == 8 and all(e.status == "processed" and e.attempts == 1 for e in events)
    assert stack.mirror(record_id).attributes["n"] == 7  # no older copy undid the newest


def test_forged_stale_and_unsigned_requests_never_reach_the_queue(stack: Stack) -> None:
    sub = stack.subscription()
    body = b'{"id": "evt_FORGED", "entityType": "client", "operation": "CREATE", "record": {"id": "rec_x"}}'
    base = {"Content-Type": "application/json", "webhook-id": "evt_FORGED", "aiwyn-subscription-id": sub["id"]}
    now = str(int(time.time()))
    attempts = {
        "unsigned": base | {"webhook-timestamp": now},
        "forged": base | {"webhook-timestamp": now, "webhook-signature": "v1,Zm9yZ2VkIHNpZ25hdHVyZSBmb3JnZWQgc2lnbmF0dXJlIQ=="},
        "stale": base | {"webhook-timestamp": str(int(time.time()) - 3600), "webhook-signature": "v1,AAAA"},
        "unknown subscription": base | {"webhook-timestamp": now, "webhook-signature": "v1,AAAA", "aiwyn-subscription-id": "sub_NOTOURS"},
    }
    for name, headers in attempts.items():
        answer = httpx.post(f"{stack.web_url}/webhooks/aiwyn", content=body, headers=headers, timeout=5)
        assert answer.status_code == 401, name
    redis = Redis.from_url(stack.env["REDIS_URL"])
    queue = Queue("aiwyn-events", connection=redis)
    assert not any("evt_FORGED" in job_id for job_id in queue.get_job_ids() + queue.finished_job_registry.get_job_ids() + queue.failed_job_registry.get_job_ids())
    assert not any(e.event_id == "evt_FORGED" for e in stack.ledger())


def test_no_secret_appears_in_any_log(stack: Stack) -> None:
    secrets = httpx.get(f"{stack.emulator_url}/api/v1/event-subscriptions/{stack.subscription()['id']}/secret",
                        headers=stack.api().headers, timeout=5).json()["data"]["secrets"]  # fmt: skip
    logs = stack.logs()
    assert "webhook accepted" in logs  # the logs are the real ones
    for secret in [s["secret"] for s in secrets] + [CLIENT_SECRET, stack.api().headers["Authorization"].split()[1]]:
        assert secret not in logs
        assert secret.removeprefix("whsec_") not in logs


def test_gunicorn_refuses_oversized_headers_before_the_app(stack: Stack) -> None:
    answer = httpx.post(f"{stack.web_url}/webhooks/aiwyn", content=b"{}", headers={"Content-Type": "application/json", "webhook-signature": "v1," + "A" * 5000})
    assert answer.status_code == 431  # Request Header Fields Too Large (our 4096-byte limit)
    assert httpx.get(f"{stack.web_url}/healthz?" + "x" * 1100).status_code == 414  # request line over 1024 bytes
