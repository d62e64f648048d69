"""The API client's token handling, retries and errors, against a transport made of a function.

(Aiwyn's own faults, 429s and 5xx answers, cannot be produced by the emulator on demand; the
end-to-end tests use the client against the emulator for everything else.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from operator import methodcaller

import httpx
import pytest
import redis

from aiwyn_api.client import AiwynAPIError, AiwynClient, AiwynUnavailable
from config import Settings
from receiver.secret_store import SecretStore, cipher_for
from tests.conftest import TEST_SECRETS_KEY

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(data: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"data": data, "error": None, "meta": {"success": True}})


def failure(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"data": None, "error": {"code": code, "message": f"{code} happened"}, "meta": {"success": False}}
    return httpx.Response(status, json=body, headers=headers)


class FakeAiwyn:
    """Answers token requests, then hands API calls to ``api``; records what it saw."""

    def __init__(self, api: Handler, expires_in: int = 3600) -> None:
        self.api = api
        self.expires_in = expires_in
        self.tokens_issued = 0
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/token":
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": f"tok-{self.tokens_issued}", "token_type": "Bearer", "expires_in": self.expires_in})
        self.calls.append(request)
        return self.api(request)


def make_client(settings: Settings, fake: FakeAiwyn, retries: int = 3) -> tuple[AiwynClient, list[float]]:
    slept: list[float] = []
    client = AiwynClient(replace(settings, http_retries=retries), transport=httpx.MockTransport(fake), sleep=slept.append)
    return client, slept


def test_one_token_serves_many_calls(settings: Settings) -> None:
    fake = FakeAiwyn(lambda request: envelope({"subscriptions": []}))
    client, _ = make_client(settings, fake)
    for _ in range(3):
        assert client.list_subscriptions() == []
    assert fake.tokens_issued == 1
    assert all(call.headers["Authorization"] == "Bearer tok-1" for call in fake.calls)
    assert fake.calls[0].url.params["includeInactive"] == "true"


def test_a_401_renews_the_token_once_and_retries(settings: Settings) -> None:
    fake = FakeAiwyn(lambda request: failure(401, "UNAUTHORIZED") if request.headers["Authorization"] == "Bearer tok-1" else envelope({"secrets": []}))
    client, _ = make_client(settings, fake)
    assert client.signing_secrets("sub_1") == []
    assert fake.tokens_issued == 2


def test_a_token_about_to_expire_is_renewed_before_use(settings: Settings) -> None:
    fake = FakeAiwyn(lambda request: envelope({"subscriptions": []}), expires_in=30)  # under the one-minute margin
    client, _ = make_client(settings, fake)
    client.list_subscriptions()
    client.list_subscriptions()
    assert fake.tokens_issued == 2


def test_429_and_5xx_are_retried_with_back_off_honouring_retry_after(settings: Settings) -> None:
    answers = iter([failure(429, "RATE_LIMITED", {"Retry-After": "7"}), failure(503, "UNAVAILABLE"), envelope({"id": "sub_1"})])
    fake = FakeAiwyn(lambda request: next(answers))
    client, slept = make_client(settings, fake)
    assert client.get_subscription("sub_1") == {"id": "sub_1"}
    assert slept == [7.0, 1.0]


def test_giving_up_says_status_and_code(settings: Settings) -> None:
    fake = FakeAiwyn(lambda request: failure(502, "BAD_GATEWAY"))
    client, slept = make_client(settings, fake, retries=2)
    with pytest.raises(AiwynUnavailable) as caught:
        client.catalog()
    assert (caught.value.status, caught.value.code) == (502, "BAD_GATEWAY")
    assert len(fake.calls) == 3 and slept == [0.5, 1.0]


def test_network_errors_are_retried_then_reported(settings: Settings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = make_client(settings, FakeAiwyn(refuse), retries=1)
    with pytest.raises(AiwynUnavailable) as caught:
        client.catalog()
    assert (caught.value.status, caught.value.code) == (0, "NETWORK_ERROR")


def test_a_4xx_is_not_retried_and_carries_the_error_code(settings: Settings) -> None:
    fake = FakeAiwyn(lambda request: failure(400, "VALIDATION_ERROR"))
    client, slept = make_client(settings, fake)
    with pytest.raises(AiwynAPIError) as caught:
        client.create_subscription({"name": ""})
    assert (caught.value.status, caught.value.code, caught.value.message) == (400, "VALIDATION_ERROR", "VALIDATION_ERROR happened")
    assert slept == [] and len(fake.calls) == 1
    assert json.loads(fake.calls[0].content) == {"name": ""}


def test_wrong_credentials_fail_without_leaking_them(settings: Settings) -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    client = AiwynClient(settings, transport=httpx.MockTransport(transport))
    with pytest.raises(AiwynAPIError) as caught:
        client.catalog()
    assert (caught.value.status, caught.value.code) == (401, "invalid_client")
    assert settings.aiwyn_client_secret not in str(caught.value) + repr(caught.value)


LIST, SECRETS = methodcaller("list_subscriptions"), methodcaller("signing_secrets", "sub_1")
MALFORMED = [
    pytest.param(LIST, None, id="list-no-data"),
    pytest.param(LIST, {}, id="list-no-key"),
    pytest.param(LIST, {"subscriptions": {"id": "sub_1"}}, id="list-not-a-list"),
    pytest.param(LIST, {"subscriptions": ["sub_1"]}, id="list-of-strings"),
    pytest.param(LIST, {"subscriptions": [{"name": "mirror"}]}, id="list-no-id"),
    pytest.param(SECRETS, [], id="secrets-data-a-list"),
    pytest.param(SECRETS, {"secrets": "whsec_AAAA"}, id="secrets-not-a-list"),
    pytest.param(SECRETS, {"secrets": [{"algorithm": "v1"}]}, id="secrets-no-secret"),
    pytest.param(SECRETS, {"secrets": [{"secret": 17}]}, id="secret-not-a-string"),
    pytest.param(SECRETS, {"secrets": [{"secret": "whsec_AAAA", "expiresAt": 1700000000}]}, id="expiry-not-a-string"),
]


@pytest.mark.parametrize(("call", "data"), MALFORMED)
def test_a_malformed_list_or_secret_answer_is_an_api_error(settings: Settings, call: methodcaller, data: object) -> None:
    client, _ = make_client(settings, FakeAiwyn(lambda request: envelope(data)))
    with pytest.raises(AiwynAPIError) as caught:
        call(client)
    assert caught.value.code == "INVALID_RESPONSE"


def test_the_secret_store_survives_malformed_answers(settings: Settings, redis_client: redis.Redis) -> None:
    """The request path (a miss, a signature that matches nothing) handles them as a failed call."""
    answers = {"/api/v1/event-subscriptions": {"subscriptions": [{"id": "sub_1", "active": True}]}, "/api/v1/event-subscriptions/sub_1/secret": {"secrets": [{}]}}
    client, _ = make_client(settings, FakeAiwyn(lambda request: envelope(answers[request.url.path])))
    store = SecretStore(redis_client, lambda: client, None, 60, cipher_for((TEST_SECRETS_KEY,)))
    assert store.secrets_for("sub_1") is None
    assert store.refreshed_secrets("sub_1", ["whsec_AAAA"]) is None


@pytest.mark.parametrize(
    ("call", "answer", "names"),
    [
        pytest.param(methodcaller("catalog"), {"types": []}, "GET /api/v1/event-subscriptions/catalog", id="catalog-other-key"),
        pytest.param(methodcaller("catalog"), {"entityTypes": ["client"]}, "GET /api/v1/event-subscriptions/catalog", id="catalog-names-only"),
        pytest.param(methodcaller("list_subscriptions"), [{"id": "sub_1"}], "GET /api/v1/event-subscriptions", id="list-bare"),
        pytest.param(methodcaller("create_subscription", {"name": "x"}), {"subscription": {"id": "sub_1"}}, "POST /api/v1/event-subscriptions", id="create-wrapped"),
        pytest.param(methodcaller("signing_secrets", "sub_1"), {"secret": "whsec_x"}, "GET /api/v1/event-subscriptions/sub_1/secret", id="secret-single"),
        pytest.param(methodcaller("signing_secrets", "sub_1"), {"secrets": [{"key": "whsec_x"}]}, "GET /api/v1/event-subscriptions/sub_1/secret", id="secret-other-field"),
    ],
)
def test_an_answer_of_another_shape_is_an_api_error_naming_the_call_and_what_came(settings: Settings, call: Callable, answer: object, names: str) -> None:
    client, _ = make_client(settings, FakeAiwyn(lambda request: envelope(answer)))
    with pytest.raises(AiwynAPIError) as caught:
        call(client)
    assert names in str(caught.value) and "found " in str(caught.value)
    assert caught.value.code == "INVALID_RESPONSE"


def test_a_paged_subscription_list_is_followed_and_integer_ids_become_strings(settings: Settings) -> None:
    pages = {None: ({"id": "sub_1"}, "c1"), "c1": ({"id": 2}, "c2"), "c2": ({"id": "sub_3"}, None)}

    def api(request: httpx.Request) -> httpx.Response:
        item, following = pages[request.url.params.get("cursor")]
        return envelope({"subscriptions": [item], "nextCursor": following})

    client, _ = make_client(settings, FakeAiwyn(api))
    assert [s["id"] for s in client.list_subscriptions()] == ["sub_1", "2", "sub_3"]


def test_the_api_paths_follow_the_settings(settings: Settings) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 60})
        return envelope({"subscriptions": []})

    client = AiwynClient(replace(settings, api_prefix="/v2", token_path="/oauth/token"), transport=httpx.MockTransport(handler))
    client.list_subscriptions()
    assert seen == ["/oauth/token", "/v2/event-subscriptions"]


def test_a_listing_waits_out_every_429_token_fetch_included_without_counting_them_as_failures(settings: Settings) -> None:
    answers = iter([failure(429, "RATE_LIMITED", {"Retry-After": "2"})] * 5)

    def api(request: httpx.Request) -> httpx.Response:
        return next(answers, envelope({"records": [], "nextCursor": None}))

    token_answers = iter([httpx.Response(429, headers={"Retry-After": "1"})] * 5)

    def aiwyn(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/token":
            return next(token_answers, httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600}))
        return api(request)

    slept: list[float] = []
    client = AiwynClient(replace(settings, http_retries=0), transport=httpx.MockTransport(aiwyn), sleep=slept.append)
    assert client.list_records("/api/v1/records/client", {"limit": "10"}) == {"records": [], "nextCursor": None}
    assert slept == [1.0] * 5 + [2.0] * 5  # Retry-After honoured each time; no retry budget spent
    with pytest.raises(AiwynUnavailable):  # a call that is not patient still gives up
        AiwynClient(replace(settings, http_retries=0), transport=httpx.MockTransport(lambda r: failure(429, "RATE_LIMITED")), sleep=slept.append).catalog()
