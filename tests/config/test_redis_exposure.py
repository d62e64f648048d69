"""The web and the worker warn at start when Redis answers anyone on the network (issue 14, finding 3)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.redis_exposure import open_redis_warning
from devstack.services import Process, free_port, redis_server_binary, wait_until


def routable_address() -> str | None:
    """This host's address on its network (no packet is sent), or None on a host with loopback only."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    address = routable_address()
    if address is None:
        pytest.skip("this host has no non-loopback address")
    port = free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", address, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = Process("redis", argv, os.environ, tmp_path / "redis.log")
    wait_until(redis.Redis(host=address, port=port, socket_connect_timeout=0.5).ping, 15, "redis", process)
    yield address, port
    process.stop()


def test_a_redis_without_a_password_on_the_network_is_warned_about(open_redis: tuple[str, int]) -> None:
    address, port = open_redis
    warning = open_redis_warning(f"redis://{address}:{port}/0")
    assert warning is not None and "accepts connections without a password" in warning


def test_a_redis_that_wants_a_password_is_not(open_redis: tuple[str, int]) -> None:
    address, port = open_redis
    redis.Redis(host=address, port=port).config_set("requirepass", "s3cret-pass")
    assert open_redis_warning(f"redis://:s3cret-pass@{address}:{port}/0") is None


def test_loopback_and_unix_sockets_are_not_checked(redis_url: str) -> None:
    assert open_redis_warning(redis_url) is None
    assert open_redis_warning("unix:///run/redis.sock") is None


def test_an_open_sentinel_and_the_open_primary_it_names_are_warned_about(open_redis: tuple[str, int], tmp_path: Path) -> None:
    address, port = open_redis
    if shutil.which("redis-sentinel") is None:
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    sentinel_port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"port {sentinel_port}\nbind {address}\nprotected-mode no\ndir {tmp_path}\nsentinel monitor aiwyn {address} {port} 1\n")
    process = Process("sentinel", [shutil.which("redis-sentinel"), str(config)], os.environ, tmp_path / "sentinel.log")
    try:
        wait_until(redis.Redis(host=address, port=sentinel_port, socket_connect_timeout=0.5).ping, 15, "sentinel", process)
        warning = open_redis_warning(f"redis+sentinel://{address}:{sentinel_port}/aiwyn/0")
        assert warning is not None
        assert f"Redis at {address}:{port} (service aiwyn) accepts connections without a password" in warning
        assert f"Sentinel at {address}:{sentinel_port} accepts connections without a password" in warning
    finally:
        process.stop()


def test_a_sentinel_set_on_loopback_is_not_checked() -> None:
    assert open_redis_warning("redis+sentinel://127.0.0.1:1,localhost:2/aiwyn/0") is None
