"""While Redis is away (an outage, a failover's seconds), every route answers 503, never a 500 (issue 19)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from config import Settings
from devstack.services import free_port
from receiver import create_app
from tests.receiver.test_webhook import delivery


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:{port}/0", "redis+sentinel://127.0.0.1:{port}/aiwyn/0"], ids=["plain", "sentinel"])
def test_every_route_answers_503_while_redis_is_unreachable(settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = create_app(replace(settings, redis_url=redis_url.format(port=free_port()))).test_client()  # nothing listens there
    headers, body = delivery()
    with caplog.at_level(logging.WARNING):
        answers = {path: client.get(path).status_code for path in ("/readyz", "/metrics", "/status")}
        answers["/webhooks/aiwyn"] = client.post("/webhooks/aiwyn", data=body, headers=headers).status_code
    assert answers == {"/readyz": 503, "/metrics": 503, "/status": 503, "/webhooks/aiwyn": 503}
    assert "status.status_page answered 503: Redis unavailable" in caplog.text
