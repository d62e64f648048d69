"""Secrets in production: rotation while events flow, Ed25519 subscriptions, and no secret in any log."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.databases import throwaway_database
from tests.e2e.stack import CLIENT_SECRET, SECRETS_KEY, Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e


ED25519_SUBSCRIPTION = """
[[subscription]]
name = "aiwyn-receiver-mirror"
entity_types = ["client"]
signature_algorithm = "v1a"
"""


@pytest.fixture(scope="module", params=[("0", "v1"), ("30", "v1"), ("30", "v1a")], ids=["no-grace", "grace", "ed25519-grace"])
def rotation_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("rotation")
    grace, algorithm = request.param
    extra = {"EMULATOR_SECRET_GRACE": grace, "AIWYN_RECEIVER_SECRETS_REFRESH_INTERVAL": "1"}
    if algorithm == "v1a":  # Aiwyn keeps the private key; the receiver verifies with whpk_ public keys
        (directory / "subscriptions.toml").write_text(ED25519_SUBSCRIPTION)
        extra["AIWYN_RECEIVER_SUBSCRIPTIONS_FILE"] = str(directory / "subscriptions.toml")
    with throwaway_database("sqlite", directory) as database_url:
        # No grace: after a rotation only the new secret signs, so the receiver must notice.
        # A grace longer than the test: the old secret keeps signing beside the new ones, as on Aiwyn.
        running = start_stack(directory, database_url, **extra)
        try:
            yield running
        finally:
            running.stop()


def rotate(stack: Stack) -> list[dict]:
    answer = stack.api().post(f"/api/v1/event-subscriptions/{stack.subscription()['id']}/secret/rotate")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["secrets"]


def test_rotations_while_events_flow_lose_no_event_and_apply_each_once(rotation_stack: Stack) -> None:
    stack = rotation_stack
    old_secret = stack.api().get(f"/api/v1/event-subscriptions/{stack.subscription()['id']}/secret").json()["data"]["secrets"][0]["secret"]
    refs, producer = stack.produce_clients(40, pause=0.05)
    time.sleep(0.5)
    new_secrets = rotate(stack)
    time.sleep(0.7)
    newest = rotate(stack)
    producer.join()
    grace = stack.env["EMULATOR_SECRET_GRACE"] != "0"
    prefix = "whpk_" if "AIWYN_RECEIVER_SUBSCRIPTIONS_FILE" in stack.env else "whsec_"
    assert all(s["secret"].startswith(prefix) for s in [{"secret": old_secret}, *new_secrets, *newest])
    assert (len(new_secrets), len(newest)) == ((2, 3) if grace else (1, 1))
    assert newest[0]["secret"] not in (old_secret, new_secrets[0]["secret"])

    wait_for(stack.emulator_idle, timeout=60, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    assert len(events) == 40 and {e["outcome"] for e in events} == {"delivered"}
    wait_for(lambda: all(ledger_entry.status == "processed" for ledger_entry in stack.ledger()), what="every event processed")
    ledger = stack.ledger()
    assert sorted(e.event_id for e in ledger) == sorted(e["id"] for e in events)  # each event exactly once
    for event in events:
        record = stack.mirror(event["recordId"])
        assert (record.active, record.event_id) == (True, event["id"])
    assert sorted(stack.mirror(e["recordId"]).attributes["ref"] for e in events) == sorted(refs)
    refused = [a for a in stack.deliveries() if a["status"] == 401]
    logs = stack.logs()
    if grace:
        assert refused == [], "the old secret still signs during the grace period: nothing may be refused"
    else:
        # The rotations did cost some first attempts, and Aiwyn's retries carried them in.
        assert refused, "expected deliveries signed only with a secret the receiver had not fetched yet"
        assert "reason='no signature matches a current secret'" in logs

    # No secret in any log line of any process (web, worker, release, emulator, redis).
    assert "webhook accepted" in logs
    for secret in (old_secret, new_secrets[0]["secret"], newest[0]["secret"]):
        key = base64.b64decode(secret.removeprefix(prefix))
        for shown in (secret, secret.removeprefix(prefix), key.hex(), base64.urlsafe_b64encode(key).decode()):
            assert shown not in logs
    assert CLIENT_SECRET not in logs and SECRETS_KEY not in logs
