"""``probe`` against the emulator (all confirmed, nothing written) and against an API of another shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from click.testing import CliRunner

from aiwyn_api.client import AiwynClient
from config import Settings
from config.settings import _FIELDS
from emulator.server import EmulatorServer
from emulator.settings import Settings as EmulatorSettings
from receiver.cli import cli
from receiver.probe import CONFIRMED, DIFFERS, probe


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    server = EmulatorServer(EmulatorSettings(port=0, retry_schedule=(), sender_threads=1))
    url = server.start()
    api = httpx.Client(base_url=url, timeout=10)
    token = api.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}).json()
    api.headers["Authorization"] = f"Bearer {token['access_token']}"
    api.post("/api/v1/event-subscriptions", json={"name": "aiwyn-receiver-mirror", "url": "https://hooks.example.test/webhooks/aiwyn", "entityTypes": ["client"], "operations": ["CREATE"]})
    api.post("/api/v1/records", json={"records": [{"type": "client", "systemRef": {"system": "erp", "id": "P-1"}, "attributes": {"name": "Probe"}}]})
    yield url
    server.stop()


def writes(url: str) -> dict[str, int]:
    calls = httpx.get(f"{url}/_emulator/api-calls", timeout=5).json()["calls"]
    return {route: n for route, n in calls.items() if not route.startswith("GET ") and "/auth/token" not in route}


def test_against_the_emulator_every_assumption_is_confirmed_and_nothing_is_written(emulator: str) -> None:
    before = writes(emulator)
    env = dict.fromkeys(_FIELDS, "") | {"AIWYN_BASE_URL": emulator, "AIWYN_CLIENT_ID": "local-client", "AIWYN_CLIENT_SECRET": "local-secret",
                                        "PUBLIC_URL": "https://hooks.example.test", "AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}  # fmt: skip
    result = CliRunner().invoke(cli, ["probe"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 7 and all(" confirmed" in line for line in lines), result.stdout
    assert writes(emulator) == before
    as_json = CliRunner().invoke(cli, ["probe", "--json"], env=env)
    assert as_json.exit_code == 0 and '"status": "confirmed"' in as_json.stdout


def other_shapes(request: httpx.Request) -> httpx.Response:
    """An Aiwyn whose answers differ from the contract's in shape."""
    path = request.url.path
    if path == "/api/v1/auth/token":
        return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
    data = {
        "/api/v1/event-subscriptions/catalog": {"types": [{"entity": "client"}]},
        "/api/v1/event-subscriptions": {"items": [{"id": "sub_1", "active": True}]},
        "/api/v1/records/types": {"entityTypes": [{"name": "client"}]},
    }.get(path)
    return httpx.Response(200, json={"data": data}) if data is not None else httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "no"}})


def test_against_an_api_of_another_shape_the_differing_lines_name_what_they_saw(settings: Settings) -> None:
    client = AiwynClient(replace(settings, http_retries=0), transport=httpx.MockTransport(other_shapes))
    checks = {c.assumption.split(":")[0]: c for c in probe(client, settings)}
    assert checks["token"].status == CONFIRMED
    assert checks["catalog"].status == DIFFERS and "found an object with types" in checks["catalog"].seen
    assert checks["subscription list"].status == DIFFERS and "found an object with items" in checks["subscription list"].seen
    assert checks["record types"].status == DIFFERS and "no recordsUrl for client" in checks["record types"].seen
    assert all(c.fix for c in checks.values() if c.status == DIFFERS)


def test_a_token_endpoint_elsewhere_names_the_setting(settings: Settings) -> None:
    client = AiwynClient(replace(settings, http_retries=0), transport=httpx.MockTransport(lambda request: httpx.Response(404, json={})))
    (check,) = probe(client, settings)
    assert check.status == DIFFERS and check.seen.startswith("404") and "AIWYN_RECEIVER_TOKEN_PATH" in check.fix
