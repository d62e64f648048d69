"""What must hold when things go wrong: Redis down, many processes registering at once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.services import ROOT, free_port, start_redis
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def sqlite_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path, f"sqlite:///{tmp_path / 'mirror.sqlite3'}")
    try:
        yield stack
    finally:
        stack.stop()


def test_an_event_sent_while_redis_is_down_is_refused_with_503_and_lands_after(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    ref = {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"}
    first = stack.records("POST", {"type": "client", "systemRef": ref, "attributes": {"name": "before"}}).json()["data"]["records"][0]["id"]
    wait_for(lambda: stack.mirror(first), what="the event sent while Redis was up")

    redis_port = int(stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    stack.processes["redis"].stop()
    stack.records("PUT", {"type": "client", "systemRef": ref, "attributes": {"name": "during"}})
    refused = wait_for(lambda: [d for d in stack.deliveries() if d["status"] == 503], what="a 503 answer to the emulator")
    assert refused[0]["outcome"] == "retrying"

    stack.processes["redis"], _ = start_redis(stack.directory / "redis", port=redis_port)
    row = wait_for(lambda: (r := stack.mirror(first)) and r.version == 2 and r, timeout=40, what="the event refused during the outage")
    assert row.attributes["name"] == "during"


def test_concurrent_registrations_leave_one_subscription_per_name(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    runs = [
        subprocess.Popen([sys.executable, "-m", "receiver", "register"], env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=60)[0].decode() for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    subscriptions = stack.api().get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]["subscriptions"]
    assert [s["name"] for s in subscriptions] == ["aiwyn-receiver-mirror"]
    assert subscriptions[0]["url"] == stack.env["PUBLIC_URL"] + "/webhooks/aiwyn"
    assert all("unchanged" in output for output in outputs)


def test_a_changed_public_url_updates_the_subscription_in_place(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    before = stack.subscription()
    env = stack.env | {"PUBLIC_URL": "https://hooks.example.test"}
    run = subprocess.run([sys.executable, "-m", "receiver", "register"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("update ")
    after = stack.subscription()
    assert after["id"] == before["id"] and after["url"] == "https://hooks.example.test/webhooks/aiwyn"


def test_registration_without_settings_names_what_is_missing(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "receiver", "register"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "AIWYN_BASE_URL" in run.stderr and "Traceback" not in run.stderr


def test_web_and_release_refuse_to_start_without_a_secrets_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AIWYN_BASE_URL": "http://127.0.0.1:9", "AIWYN_API_KEY": "k",
           "PUBLIC_URL": "https://hooks.example.test", "PORT": str(free_port())}  # fmt: skip
    release = subprocess.run([sys.executable, "-m", "receiver", "register"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert release.returncode != 0 and "missing setting: AIWYN_RECEIVER_SECRETS_KEY" in release.stderr
    web = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "receiver:create_app()"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert web.returncode != 0 and "missing setting: AIWYN_RECEIVER_SECRETS_KEY" in web.stderr
