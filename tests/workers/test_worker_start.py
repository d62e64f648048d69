"""A worker whose Redis goes away during its start-up waits for it again, never exits."""

from __future__ import annotations

import logging

import pytest
import redis
from click.testing import CliRunner

from config import Settings
from config.settings import _FIELDS
from workers.cli import cli
from workers.delivery_batches import DeliveryBatches


def test_redis_gone_between_the_start_check_and_the_first_wake_is_waited_for(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    calls = []
    original = DeliveryBatches.wake_if_needed

    def flaky(self: DeliveryBatches) -> bool:
        calls.append(1)
        if len(calls) == 1:  # Redis restarted just after the start-up check said it answers
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return original(self)

    monkeypatch.setattr(DeliveryBatches, "wake_if_needed", flaky)
    env = dict.fromkeys(_FIELDS, "") | {"DATABASE_URL": database_url, "REDIS_URL": settings.redis_url, "AIWYN_RECEIVER_LOG_LEVEL": "WARNING",
                                        "AIWYN_RECEIVER_SECRETS_KEY": settings.secrets_key[0]}  # fmt: skip
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, ["work", "--burst", "--queues", "drain"], env=env)
    finally:
        root.handlers[:], root.level = handlers, level
    assert result.exit_code == 0, result.output
    # The CLI's own log handler writes to its stderr, unless an earlier test left logging set up (then caplog has it).
    assert "Redis went away during start-up (ConnectionError); waiting for it again" in result.output + caplog.text
    assert len(calls) >= 2  # the start-up went on once Redis answered again
