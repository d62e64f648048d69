"""The counters behind /metrics: a known stream through two web apps and a worker, the same exact figures from either app."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import redis
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from config.job_contract import deliveries_key
from config.metrics_contract import arrivals_key
from receiver import create_app
from receiver.signatures import NO_MATCH
from tests.events import event_body
from tests.receiver.test_webhook import SECRET, SUB, delivery
from tests.workers.conftest import MakeRuntime
from workers import dead_letters
from workers.handlers import DoNotRetry
from workers.registry import MIRROR, default_registry
from workers.worker import DrainWorker


def scrape(app, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = app.test_client().get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def web_app(settings: Settings):
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    return app


def test_a_known_stream_shows_exact_counts_from_either_web_process(
    make_runtime: MakeRuntime, settings: Settings, database_url: str, redis_client: redis.Redis, engine: sqlalchemy.Engine
) -> None:
    def refuses(event, session) -> None:
        raise DoNotRetry("the CRM refuses staff")

    registry = default_registry()
    registry.register(refuses, "staff", name="refuses")
    runtime = make_runtime(registry)
    settings = replace(settings, database_url=database_url)
    first, second = web_app(settings), web_app(settings)  # two processes (or deployments): one Redis, one database
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    bodies = {f"evt_c{i}": event_body(f"evt_c{i}", record_id=f"rec_c{i}", operation="CREATE", occurred_at=now) for i in range(3)}
    bodies |= {f"evt_s{i}": event_body(f"evt_s{i}", record_id=f"rec_s{i}", entity_type="staff", occurred_at=now) for i in range(2)}
    bodies["evt_bad"] = json.dumps({"id": "evt_bad", "subscriptionId": SUB}).encode()
    for n, (event_id, body) in enumerate(bodies.items()):
        headers, body = delivery(event_id, body=body.replace(b'"sub_1"', f'"{SUB}"'.encode()))
        assert (first if n % 2 else second).test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    headers, body = delivery("evt_c0", body=bodies["evt_c0"].replace(b'"sub_1"', f'"{SUB}"'.encode()))
    assert first.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 200
    for event_id in ("evt_x1", "evt_x2"):
        headers, body = delivery(event_id, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
        assert second.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
    assert first.test_client().post("/webhooks/aiwyn", data=b"x", headers={"Content-Type": "text/plain"}).status_code == 415

    waiting = scrape(first)
    assert waiting[("aiwyn_queue_deliveries", ())] == 6 and waiting[("aiwyn_queue_oldest_age_seconds", ())] >= 0
    assert redis_client.llen(arrivals_key(settings.queue_name)) == 6
    DrainWorker([runtime.queue, runtime.handler_queue], connection=redis_client, runtime=runtime).work(burst=True)

    figures = scrape(first)
    assert figures == scrape(second) == scrape(first)  # every scrape, whichever process answers
    requests = {labels: value for (name, labels), value in figures.items() if name == "aiwyn_webhook_requests_total"}
    assert requests == {
        (("reason", "queued"), ("status", "202")): 6,
        (("reason", "already queued or done"), ("status", "200")): 1,
        (("reason", NO_MATCH), ("status", "401")): 2,
        (("reason", "wrong content type"), ("status", "415")): 1,
    }
    assert figures[("aiwyn_webhook_request_duration_seconds_count", ())] == 10
    events = {labels: value for (name, labels), value in figures.items() if name == "aiwyn_events_total"}
    assert events == {
        (("entity_type", "client"), ("operation", "CREATE"), ("status", "processed")): 3,
        (("entity_type", "staff"), ("operation", "UPDATE"), ("status", "pending")): 2,
        (("entity_type", ""), ("operation", ""), ("status", "invalid")): 1,
    }
    runs = {labels: value for (name, labels), value in figures.items() if name == "aiwyn_handler_runs_total"}
    assert runs == {(("handler", MIRROR), ("outcome", "succeeded")): 5, (("handler", "refuses"), ("outcome", "failed")): 2}
    assert figures[("aiwyn_failed_runs", (("handler", "refuses"),))] == 2
    assert figures[("aiwyn_invalid_events", ())] == 1
    assert figures[("aiwyn_mirror_lag_seconds_count", ())] == 5
    assert figures[("aiwyn_mirror_lag_seconds_bucket", (("le", "60.0"),))] == 5  # occurred a moment ago
    assert figures[("aiwyn_queue_deliveries", ())] == 0 and figures[("aiwyn_queue_oldest_age_seconds", ())] == 0
    assert time.time() - figures[("aiwyn_last_event_timestamp_seconds", (("subscription", SUB),))] < 60
    assert figures[("aiwyn_dead_letters", ())] == 0
    assert figures[("aiwyn_secret_fetches_total", (("outcome", "error"),))] == 1  # the forged signatures' one look at Aiwyn (unreachable here)
    assert figures[("aiwyn_workers", ())] == 0  # a burst worker leaves when done
    assert redis_client.llen(arrivals_key(settings.queue_name)) == 0


def test_the_oldest_waiting_delivery_is_timed_from_its_arrival(settings: Settings, database_url: str, redis_client: redis.Redis, engine: sqlalchemy.Engine) -> None:
    app = web_app(replace(settings, database_url=database_url))
    headers, body = delivery("evt_old")
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    time.sleep(0.3)
    headers, body = delivery("evt_new")
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    figures = scrape(app)
    assert figures[("aiwyn_queue_deliveries", ())] == 2
    assert 0.3 <= figures[("aiwyn_queue_oldest_age_seconds", ())] < 5


def test_dead_letters_replayed_keep_the_arrival_times_in_step(settings: Settings, redis_client: redis.Redis) -> None:
    queue = settings.queue_name
    redis_client.hset(dead_letters.dead_letters_key(queue), "evt_d", b"evt_d\nsub_1\n{}")
    assert dead_letters.replay(redis_client, queue, ["evt_d"]) == 1
    assert redis_client.llen(deliveries_key(queue)) == redis_client.llen(arrivals_key(queue)) == 1


def test_refusals_counted_while_redis_is_away_are_added_when_it_is_back(settings: Settings, database_url: str, redis_client: redis.Redis, engine: sqlalchemy.Engine) -> None:
    app = web_app(replace(settings, database_url=database_url))
    counts = app.extensions["aiwyn"].counts
    good = counts._connection
    counts._connection = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nobody listens there
    counts.rejected(503, "redis: ConnectionError", 0.01)
    counts._connection = good
    counts.rejected(401, NO_MATCH, 0.001)
    figures = scrape(app)
    assert figures[("aiwyn_webhook_requests_total", (("reason", "redis: ConnectionError"), ("status", "503")))] == 1
    assert figures[("aiwyn_webhook_request_duration_seconds_count", ())] == 2


@pytest.mark.parametrize("given, status", [pytest.param(None, 401, id="none"), pytest.param("wrong-token-0000000000", 401, id="wrong"),
                                           pytest.param("metrics-token-000000000", 200, id="right")])  # fmt: skip
def test_a_metrics_token_is_asked_for_as_a_bearer_token(
    settings: Settings, database_url: str, redis_client: redis.Redis, engine: sqlalchemy.Engine, given: str | None, status: int
) -> None:
    app = web_app(replace(settings, database_url=database_url, metrics_token="metrics-token-000000000"))
    headers = {"Authorization": f"Bearer {given}"} if given else {}
    for path in ("/metrics", "/status"):
        assert app.test_client().get(path, headers=headers).status_code == status
