"""Each wire variant, sent by the real emulator to the real stack: every event mirrored with the right
values, the tolerated ones with the default settings, svix once its profile is set (and refused, with
``rejections`` naming the setting, before). One stack for the module: the variants are emulator faults."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.databases import throwaway_database
from devstack.services import start_web
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e

OFF = {"dialect": "standard", "noSubscriptionHeader": False, "timestampMillis": False, "integerIds": False, "snakeCase": False,
       "pastTenseOperations": False, "separateMessageId": False}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("stack-wire")
    with throwaway_database("sqlite", directory) as database_url:
        # A longer retry schedule: the svix test restarts the web process while Aiwyn retries.
        running = start_stack(directory, database_url, retry_schedule="0.2,0.5,1,2,3,5,8,13,21")
        try:
            yield running
        finally:
            running.stop()


def faults(stack: Stack, **changes: Any) -> None:
    answer = httpx.put(f"{stack.emulator_url}/_emulator/faults", json=OFF | changes, timeout=5)
    assert answer.status_code == 200, answer.text


def change_a_client(stack: Stack) -> str:
    """Create, update and delete one client; returns its Aiwyn id."""
    ref = {"system": "erp", "id": f"W-{uuid.uuid4().hex[:8]}"}
    record_id = stack.records("POST", {"type": "client", "systemRef": ref, "attributes": {"name": "Wire LLP"}}).json()["data"]["records"][0]["id"]
    stack.records("PUT", {"type": "client", "systemRef": ref, "attributes": {"name": "Wire & Co LLP"}})
    stack.records("DELETE", {"type": "client", "systemRef": ref})
    return record_id


def sent_bodies(stack: Stack, record_id: str) -> list[dict[str, Any]]:
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    return [json.loads(e["body"]) for e in events if e["recordId"] == record_id]


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"noSubscriptionHeader": True}, id="no-subscription-header"),
        pytest.param({"timestampMillis": True}, id="timestamp-in-milliseconds"),
        pytest.param({"integerIds": True}, id="integer-ids"),
        pytest.param({"snakeCase": True}, id="snake-case-body"),
        pytest.param({"pastTenseOperations": True}, id="operations-past-tense"),
        pytest.param({"separateMessageId": True}, id="body-id-other-than-webhook-id"),
        pytest.param({k: True for k in OFF if k != "dialect"}, id="all-at-once"),
    ],
)
def test_a_tolerated_variant_is_mirrored_with_the_default_settings(stack: Stack, variant: dict[str, bool]) -> None:
    faults(stack, **variant)
    record_id = change_a_client(stack)
    wait_for(stack.emulator_idle, what="the emulator to finish sending")
    bodies = sent_bodies(stack, record_id)
    assert len(bodies) == 3
    mirrored_id = str(bodies[0]["record"]["id"])  # the integer under integerIds, as a string
    row = wait_for(lambda: (r := stack.mirror(mirrored_id)) and r.version == 3 and r, what="the delete in the mirror")
    assert (row.entity_type, row.active, row.attributes["name"], row.system_ref["system"]) == ("client", False, "Wire & Co LLP", "erp")
    events = [e for e in stack.ledger() if e.record_id == mirrored_id]
    assert sorted(e.operation for e in events) == ["CREATE", "DELETE", "UPDATE"] and {e.status for e in events} == {"processed"}
    assert all(d["status"] in (200, 202) for d in stack.deliveries() if d["eventId"] in {b.get("id") for b in bodies})


def test_svix_deliveries_are_refused_until_the_profile_is_set_then_mirrored(stack: Stack) -> None:
    faults(stack, dialect="svix")
    ref = {"system": "erp", "id": f"S-{uuid.uuid4().hex[:8]}"}
    record_id = stack.records("POST", {"type": "client", "systemRef": ref, "attributes": {"name": "Svix LLP"}}).json()["data"]["records"][0]["id"]
    wait_for(lambda: any(d["status"] == 401 for d in stack.deliveries()), what="a refused svix delivery")
    assert stack.mirror(record_id) is None

    told = subprocess.run([sys.executable, "-m", "receiver", "rejections"], env=stack.env, capture_output=True, text=True, timeout=60)
    assert told.returncode == 0, told.stderr
    assert "set AIWYN_RECEIVER_WIRE_PROFILE=svix" in told.stdout
    assert "svix-signature" in told.stdout and "v1," not in told.stdout  # header names, never their values

    port = int(stack.env["PORT"])
    stack.processes["web"].stop()
    stack.env["AIWYN_RECEIVER_WIRE_PROFILE"] = "svix"
    stack.processes["web"] = start_web(stack.env, stack.directory / "web-svix.log", port)
    row = wait_for(lambda: stack.mirror(record_id), timeout=60, what="the svix delivery, retried, in the mirror")
    assert row.attributes["name"] == "Svix LLP"
