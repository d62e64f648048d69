"""A secrets refresh never runs on the request path (issue 14, finding 6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from config import Settings
from receiver import create_app
from tests.receiver.test_webhook import SECRET, SUB, delivery


@pytest.fixture
def slow_aiwyn() -> Iterator[tuple[str, list[str]]]:
    """An Aiwyn that takes 2 s to answer anything (then 503): the worst a request could wait for."""
    seen: list[str] = []

    class Slow(BaseHTTPRequestHandler):
        def _slow(self) -> None:
            seen.append(self.path)
            time.sleep(2)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _slow

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_a_request_needing_a_refresh_is_answered_at_once_and_starts_one_refresh(
    settings: Settings, redis_client: redis.Redis, slow_aiwyn: tuple[str, list[str]]
) -> None:
    url, seen = slow_aiwyn
    app = create_app(replace(settings, aiwyn_base_url=url, secrets_refresh_interval=60, http_timeout=5.0))
    client = app.test_client()
    for n in range(20):  # unknown subscription: 401 without waiting for Aiwyn
        headers, body = delivery(f"evt_{n}")
        started = time.monotonic()
        answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
        assert answer.status_code == 401 and answer.json == {"error": "signature verification failed"}
        assert time.monotonic() - started < 0.5
    app.extensions["aiwyn"].secrets.settle()
    assert len(seen) == 1  # one token call for the one refresh of the interval, then it gave up


def test_a_rotation_is_learned_in_the_background_and_the_retry_passes(settings: Settings, redis_client: redis.Redis, slow_aiwyn: tuple[str, list[str]]) -> None:
    url, seen = slow_aiwyn
    app = create_app(replace(settings, aiwyn_base_url=url, secrets_refresh_interval=60))
    store = app.extensions["aiwyn"].secrets
    store.store(SUB, [{"secret": "whsec_" + "A" * 40, "algorithm": "v1", "expiresAt": None}])  # the old secret
    headers, body = delivery("evt_rotated", secret=SECRET)
    started = time.monotonic()
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
    assert time.monotonic() - started < 0.5
    store.settle()
    assert len(seen) == 1
    store.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])  # as the refresh (or registration) stores it
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
