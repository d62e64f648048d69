"""The callback token never reaches a log line or a command's output (issue 14, finding 1)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from config import Settings
from config.logs import configure_logging
from config.subscriptions import SubscriptionSpec
from receiver import create_app
from receiver.registration import Owner, apply, plan
from tests.receiver.test_webhook import SUB, delivery

TOKEN = "Tk9Tm4Ck3vJ8zXq2LpW7"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the processes' own log handler writes (stderr in production)."""
    configure_logging("INFO")
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_aiwyn", False)]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_registration_logs_and_prints_the_callback_url_without_the_token(logged: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    owner = Owner("default", f"https://hooks.example.test/webhooks/aiwyn/{TOKEN}")
    spec = SubscriptionSpec(name="aiwyn-receiver-mirror", entity_types=("*",), operations=("CREATE", "UPDATE", "DELETE"))
    steps = plan([], [spec], owner)  # what --dry-run prints

    class Client:
        def create_subscription(self, changes: dict) -> dict:
            return {"id": "sub_1"}

    done = apply(Client(), steps)  # type: ignore[arg-type]
    printed = "\n".join(step.describe() for step in steps + done)
    assert "/webhooks/aiwyn/[token]" in printed and TOKEN not in printed
    assert "/webhooks/aiwyn/[token]" in caplog.text and TOKEN not in caplog.text + logged.getvalue()


def test_an_unhandled_exception_is_logged_without_the_token(settings: Settings, redis_client: redis.Redis, logged: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(replace(settings, callback_token=TOKEN))
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": "whsec_" + "c" * 40, "algorithm": "v1", "expiresAt": None}])

    def broken(*args: object) -> None:
        raise RuntimeError(f"boom while serving /webhooks/aiwyn/{TOKEN}")

    monkeypatch.setattr(app.extensions["aiwyn"].secrets, "secrets_for", broken)
    headers, body = delivery()
    answer = app.test_client().post(f"/webhooks/aiwyn/{TOKEN}", data=body, headers=headers)
    assert answer.status_code == 500
    text = logged.getvalue()
    assert "Exception on /webhooks/aiwyn/[token] [POST]" in text and "boom while serving /webhooks/aiwyn/[token]" in text
    assert TOKEN not in text


def test_gunicorns_error_log_is_redacted_too(logged: io.StringIO) -> None:
    stream = io.StringIO()
    gunicorn_log = logging.getLogger("gunicorn.error")
    own = logging.StreamHandler(stream)
    gunicorn_log.addHandler(own)
    try:
        gunicorn_log.error("Error handling request %s", f"/webhooks/aiwyn/{TOKEN}")
    finally:
        gunicorn_log.removeHandler(own)
    assert "Error handling request /webhooks/aiwyn/[token]" in stream.getvalue() and TOKEN not in stream.getvalue()
