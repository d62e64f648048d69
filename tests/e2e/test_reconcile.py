"""Registration reconciles: five releases at once, a changed configuration, others' subscriptions left alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.services import ROOT, start_emulator, start_redis
from devstack.stack import emulator_api
from tests.e2e.stack import CLIENT_ID, CLIENT_SECRET, SECRETS_KEY, base_env

pytestmark = pytest.mark.e2e
CALLBACK = "https://hooks.example.test/webhooks/aiwyn"
OTHER = "https://other.example/webhooks/aiwyn"
TWO = """
[[subscription]]
name = "aiwyn-receiver-clients"
entity_types = ["client", "contact"]
operations = ["CREATE", "UPDATE", "DELETE"]

[[subscription]]
name = "aiwyn-receiver-staff"
entity_types = ["staff"]
operations = ["CREATE", "UPDATE"]
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    redis_process, redis_url = start_redis(tmp_path / "redis")
    environment = base_env() | {"EMULATOR_CLIENT_ID": CLIENT_ID, "EMULATOR_CLIENT_SECRET": CLIENT_SECRET}
    emulator, url = start_emulator(environment, tmp_path / "emulator.log")
    (tmp_path / "subscriptions.toml").write_text(TWO)
    yield environment | {
        "AIWYN_BASE_URL": url, "AIWYN_CLIENT_ID": CLIENT_ID, "AIWYN_CLIENT_SECRET": CLIENT_SECRET, "REDIS_URL": redis_url,
        "PUBLIC_URL": "https://hooks.example.test", "AIWYN_RECEIVER_SECRETS_KEY": SECRETS_KEY,
        "AIWYN_RECEIVER_SUBSCRIPTIONS_FILE": str(tmp_path / "subscriptions.toml"),
    }  # fmt: skip
    emulator.stop()
    redis_process.stop()


def api(env: dict[str, str]) -> httpx.Client:
    return emulator_api(env["AIWYN_BASE_URL"], CLIENT_ID, CLIENT_SECRET)


def subscriptions(env: dict[str, str]) -> list[dict]:
    """Aiwyn's raw list, inactive ones included."""
    return api(env).get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]["subscriptions"]


def summary(env: dict[str, str]) -> list[tuple[str, str, bool]]:
    """The raw list as sorted (name, url, active): any duplicate or stray subscription shows."""
    return sorted((s["name"], s["url"], s["active"]) for s in subscriptions(env))


def by_url(env: dict[str, str], url: str = CALLBACK) -> dict[str, dict]:
    return {s["name"]: s for s in subscriptions(env) if s["url"] == url}


def others(env: dict[str, str], *subs: dict) -> list[dict]:
    return sorted((s for s in subscriptions(env) if s["id"] in {sub["id"] for sub in subs}), key=lambda s: s["id"])


def register(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "receiver", "register", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_five_releases_at_once_then_a_changed_configuration(env: dict[str, str], tmp_path: Path) -> None:
    # Someone else's subscription, and another deployment's one of a name we configure: never touched.
    foreign = api(env).post("/api/v1/event-subscriptions", json={"name": "crm-sync", "url": CALLBACK, "entityTypes": ["client"], "operations": ["CREATE"]}).json()["data"]
    elsewhere = api(env).post("/api/v1/event-subscriptions", json={"name": "aiwyn-receiver-staff", "url": OTHER, "entityTypes": ["client"], "operations": ["CREATE"],
                                                                   "description": "managed by aiwyn-receiver (instance other)"}).json()["data"]  # fmt: skip
    untouched = sorted([foreign, elsewhere], key=lambda s: s["id"])

    releases = [subprocess.Popen([sys.executable, "-m", "receiver", "register"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(5)]
    outputs = [release.communicate(timeout=120)[0] for release in releases]
    assert all(release.returncode == 0 for release in releases), outputs
    assert summary(env) == [("aiwyn-receiver-clients", CALLBACK, True), ("aiwyn-receiver-staff", CALLBACK, True),
                            ("aiwyn-receiver-staff", OTHER, True), ("crm-sync", CALLBACK, True)]  # fmt: skip
    first = by_url(env)
    printed = [line for output in outputs for line in output.splitlines()]
    assert sum(line.startswith("create ") for line in printed) == 2  # one release created them
    assert sum(line.startswith("unchanged ") for line in printed) == 8  # the four others found them
    assert first["aiwyn-receiver-staff"]["operations"] == ["CREATE", "UPDATE"]
    assert first["aiwyn-receiver-staff"]["description"] == "managed by aiwyn-receiver (instance default)"

    # The configuration changes: staff gains DELETE, clients is dropped, offices are new.
    (tmp_path / "subscriptions.toml").write_text(
        TWO.replace('operations = ["CREATE", "UPDATE"]', 'operations = ["CREATE", "UPDATE", "DELETE"]').replace("aiwyn-receiver-clients", "aiwyn-receiver-offices").replace('["client", "contact"]', '["office"]')
    )
    before = subscriptions(env)
    planned = register(env, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "dry run" in planned.stdout and "deactivate aiwyn-receiver-clients" in planned.stdout and "create     aiwyn-receiver-offices" in planned.stdout
    assert subscriptions(env) == before  # the dry run changed nothing

    applied = register(env)
    assert applied.returncode == 0, applied.stderr
    assert summary(env) == [("aiwyn-receiver-clients", CALLBACK, False), ("aiwyn-receiver-offices", CALLBACK, True), ("aiwyn-receiver-staff", CALLBACK, True),
                            ("aiwyn-receiver-staff", OTHER, True), ("crm-sync", CALLBACK, True)]  # fmt: skip
    after = by_url(env)
    for name in ("aiwyn-receiver-clients", "aiwyn-receiver-staff"):  # updated or deactivated in place
        assert after[name]["id"] == first[name]["id"]
    assert after["aiwyn-receiver-staff"]["operations"] == ["CREATE", "UPDATE", "DELETE"]
    assert others(env, foreign, elsewhere) == untouched

    # A deliberate uninstall deactivates ours only.
    refused = subprocess.run([sys.executable, "-m", "receiver", "uninstall"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    done = subprocess.run([sys.executable, "-m", "receiver", "uninstall", "--yes"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "2 subscription(s) deactivated" in done.stdout, done.stdout + done.stderr
    assert summary(env) == [("aiwyn-receiver-clients", CALLBACK, False), ("aiwyn-receiver-offices", CALLBACK, False), ("aiwyn-receiver-staff", CALLBACK, False),
                            ("aiwyn-receiver-staff", OTHER, True), ("crm-sync", CALLBACK, True)]  # fmt: skip
    assert others(env, foreign, elsewhere) == untouched


def test_an_entity_type_unknown_to_aiwyn_stops_the_release(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "subscriptions.toml").write_text('[[subscription]]\nname = "aiwyn-receiver-x"\nentity_types = ["client", "invoice"]\n')
    run = register(env)
    assert run.returncode != 0
    assert "aiwyn-receiver-x: entity type(s) invoice unknown to Aiwyn" in run.stderr and "subscriptions.toml" in run.stderr
    assert subscriptions(env) == []
