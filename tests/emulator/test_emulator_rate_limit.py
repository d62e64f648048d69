"""The rate-limit fault: calls of /api/v1 above N a second are refused with 429 and Retry-After, not applied."""

from __future__ import annotations

import time

from emulator import Settings
from emulator.__main__ import parse_args
from emulator.rate_limit import RateLimiter


def client(ref: str) -> dict:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": ref}}


def test_the_limiter_counts_a_fixed_one_second_window():
    limiter = RateLimiter()
    assert [limiter.admit(2, now=10.2) for _ in range(3)] == [0, 0, 1]
    assert limiter.admit(2, now=10.9) == 1 and limiter.refused == 2
    assert limiter.admit(2, now=11.0) == 0  # a new second
    assert limiter.admit(0, now=11.0) == 0 and limiter.admit(0, now=11.0) == 0  # 0 = off
    limiter.reset()
    assert limiter.refused == 0


def test_calls_above_the_limit_are_429_with_retry_after_and_are_not_applied(api):
    assert api.http.put("/_emulator/faults", json={"rateLimitPerSecond": 2}).json()["rateLimitPerSecond"] == 2
    statuses = []
    for n in range(12):
        response = api.records("POST", client(f"L-{n}"))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"  # whole seconds, at least 1
            body = response.json()
            assert body["data"] is None and body["meta"]["success"] is False
            assert body["error"]["code"] == "RATE_LIMITED"
    served, refused = statuses.count(200), statuses.count(429)
    assert served + refused == 12 and refused >= 1
    assert len(api.stored("client")) == served  # a refused upsert changed nothing
    assert api.stats()["rateLimited"] == refused
    calls = api.http.get("/_emulator/api-calls").json()["calls"]
    assert calls["POST /api/v1/records"] == served  # only served calls are counted


def test_every_api_call_counts_the_token_endpoint_too_but_not_emulator_paths(api):
    api.http.put("/_emulator/faults", json={"rateLimitPerSecond": 1})
    form = {"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        token = api.http.post("/api/v1/auth/token", data=form)
        if token.status_code == 429:
            break
    assert token.status_code == 429 and token.headers["Retry-After"] == "1"
    assert token.json()["error"]["code"] == "RATE_LIMITED"
    for _ in range(5):
        assert api.http.get("/_emulator/health").status_code == 200
    time.sleep(1.05)  # the next second has room again
    assert api.http.get("/api/v1/records/types").status_code == 200


def test_zero_turns_it_off_and_reset_restores_the_start_up_limit(make_emulator, client_for):
    server = make_emulator(rate_limit_per_second=1000)
    api = client_for(server)
    assert api.http.get("/_emulator/faults").json()["rateLimitPerSecond"] == 1000
    api.http.put("/_emulator/faults", json={"rateLimitPerSecond": 1})
    while api.http.get("/api/v1/records/types").status_code != 429:
        pass
    assert api.stats()["rateLimited"] >= 1
    api.http.put("/_emulator/faults", json={"rateLimitPerSecond": 0})
    assert all(api.http.get("/api/v1/records/types").status_code == 200 for _ in range(20))
    assert api.http.post("/_emulator/reset").status_code == 204
    assert api.stats()["rateLimited"] == 0
    assert api.http.get("/_emulator/faults").json()["rateLimitPerSecond"] == 1000


def test_bad_limits_are_refused(api):
    for value in (-1, 1.5, True, "3"):
        response = api.http.put("/_emulator/faults", json={"rateLimitPerSecond": value})
        assert response.status_code == 400, value
    assert api.http.get("/_emulator/faults").json()["rateLimitPerSecond"] == 0


def test_the_start_up_setting_and_its_flag():
    assert Settings.from_env({}).rate_limit_per_second == 0
    assert Settings.from_env({"EMULATOR_RATE_LIMIT_PER_SECOND": "50"}).rate_limit_per_second == 50
    assert Settings.from_env({"EMULATOR_RATE_LIMIT_PER_SECOND": "5"}, {"EMULATOR_RATE_LIMIT_PER_SECOND": "7"}).rate_limit_per_second == 7
    assert parse_args(["--rate-limit-per-second", "9"]) == {"EMULATOR_RATE_LIMIT_PER_SECOND": "9"}


def test_a_client_honouring_retry_after_gets_through(api):
    api.http.put("/_emulator/faults", json={"rateLimitPerSecond": 3})
    done = 0
    started = time.monotonic()
    while done < 8:
        response = api.records("POST", client(f"H-{done}"))
        if response.status_code == 429:
            time.sleep(float(response.headers["Retry-After"]) / 4)  # a quarter: the window is one second
            continue
        assert response.status_code == 200
        done += 1
    assert len(api.stored("client")) == 8 and time.monotonic() - started < 10
