"""The webhook's POSTs are answered in front of Flask: what it takes, what it leaves to Flask, how it answers."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from config import Settings
from receiver import create_app
from tests.receiver.test_webhook import SECRET, SUB, delivery


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    return app.test_client()


def test_a_delivery_is_answered_as_the_flask_view_answered_it(client: FlaskClient) -> None:
    headers, body = delivery()
    answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status == "202 ACCEPTED"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Content-Length"] == str(len(answer.data))
    assert answer.json == {"status": "queued"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/webhooks/aiwyn", 405, id="another method: Flask's 405"),
        pytest.param("PUT", "/webhooks/aiwyn", 405, id="put"),
        pytest.param("POST", "/webhooks/aiwyn/a/b", 404, id="a path with two segments after the route"),
        pytest.param("POST", "/webhooks/aiwynx", 404, id="a longer name"),
    ],
)
def test_what_is_not_the_webhooks_post_is_left_to_flask(client: FlaskClient, method: str, path: str, status: int) -> None:
    headers, body = delivery()
    assert client.open(path, method=method, data=body, headers=headers).status_code == status


def _chunked(app: Flask, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
    """POST as gunicorn passes a chunked body: no Content-Length, the stream marked as ending by itself."""
    environ = EnvironBuilder("/webhooks/aiwyn", method="POST", headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    answered: list[str] = []
    data = b"".join(app.wsgi_app(environ, lambda status, _headers: answered.append(status)))
    return answered[0], data


@pytest.mark.parametrize(("limit", "status"), [pytest.param(100_000, "202 ACCEPTED", id="within the limit"), pytest.param(100, "413 REQUEST ENTITY TOO LARGE", id="over it")])
def test_a_chunked_body_is_read_and_held_to_the_limit(settings: Settings, redis_client: redis.Redis, limit: int, status: str) -> None:
    app = create_app(replace(settings, max_body_bytes=limit))
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    headers, body = delivery()
    answered, _ = _chunked(app, body, headers)
    assert answered == status


def test_an_unexpected_error_answers_500_and_is_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    runtime = client.application.extensions["aiwyn"]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    runtime.queue.enqueue = broken
    headers, body = delivery()
    answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 500 and answer.json == {"error": "internal server error"}
    assert any("Exception on /webhooks/aiwyn [POST]" in record.getMessage() and record.exc_info for record in caplog.records)
