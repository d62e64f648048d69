"""The web process says so at start when Redis could lose deliveries it acknowledged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from config import Settings
from devstack.services import start_redis
from receiver import create_app
from receiver.redis_durability import durability_warnings


def test_a_redis_that_keeps_nothing_on_disk_or_evicts_is_named(redis_client: redis.Redis) -> None:
    [warning] = durability_warnings(redis_client)  # the test Redis runs with appendonly no
    assert "appendonly no" in warning
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        warnings = durability_warnings(redis_client)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert len(warnings) == 2 and "maxmemory-policy is allkeys-lru" in warnings[1]


def test_a_durable_redis_draws_no_warning_and_the_app_logs_the_others(tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    process, url = start_redis(tmp_path / "redis", durable=True)
    try:
        assert durability_warnings(redis.Redis.from_url(url)) == []
    finally:
        process.stop()
    with caplog.at_level(logging.WARNING, logger="receiver.app"):
        create_app(settings)
    assert any("appendonly no" in message for message in caplog.messages), caplog.messages
